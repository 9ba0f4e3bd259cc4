// Loads and stores of the stored element types. A float32 tensor lives on the device as float32 or
// as bfloat16 (the precision policy's storage tag); arithmetic is always float32, so kernels load
// through toFloat and store through fromFloat (round to nearest even, as PyTorch's .to(bfloat16)).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common.cuh"

namespace wan {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float toFloat(float v) { return v; }
__device__ __forceinline__ float toFloat(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float toFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float toFloat(int32_t v) { return float(v); }

template <typename T>
__device__ __forceinline__ T fromFloat(float v);
template <>
__device__ __forceinline__ float fromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ bf16 fromFloat<bf16>(float v) { return __float2bfloat16_rn(v); }

/** Calls f with a value of the C++ type of a float storage type (float or bf16). */
template <typename F>
void withFloatType(DType t, F&& f) {
  if (t == BF16) f(bf16{});
  else if (t == F32) f(float{});
  else throw CudaFailure("expected a float32 or bfloat16 buffer, got type code " + std::to_string(int(t)));
}

/** Calls f with an unsigned integer type of `width` bytes (2 or 4), for kernels that only move elements. */
template <typename F>
void withWidth(int width, F&& f) {
  if (width == 2) f(uint16_t{});
  else if (width == 4) f(uint32_t{});
  else throw CudaFailure("element width must be 2 or 4 bytes, got " + std::to_string(width));
}

}  // namespace wan
