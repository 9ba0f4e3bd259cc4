#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "common.cuh"
#include "gemm-lt.h"

namespace wan {

/**
 * Bytes before the activation's codes in gemmFp8's scratch: amax bits (u32) at byte 0, s_x and s_w (float32) at bytes
 * FP8_HEAD_SX and FP8_HEAD_SW, each on its own 16-byte boundary (cuBLASLt's scale pointers), padded to 256.
 */
constexpr int64_t FP8_SCRATCH_HEAD = 256;
constexpr int64_t FP8_HEAD_SX = 16;
constexpr int64_t FP8_HEAD_SW = 32;

/** Scratch bytes gemmFp8 needs for an [m, k] activation: the head, then its m·k e4m3 codes. */
inline int64_t fp8ScratchBytes(int64_t m, int64_t k) { return FP8_SCRATCH_HEAD + m * k; }

/**
 * float32 → float8_e4m3fn code, rounded to nearest even and saturated to ±448 (as PTX's
 * cvt.rn.satfinite.e4m3x2.f32 and cuda_fp8.h's __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3)):
 *   |v| ≥ 448 (and ±∞) → ±448 (0x7e); NaN → 0x7f;
 *   |v| < 2⁻⁶ (subnormal e4m3: m·2⁻⁹) → code rne(|v|·2⁹) ∈ 0..8 (8 is 2⁻⁶, the smallest normal, code 0x08);
 *   else 2^e·1.f (e = ⌊log2|v|⌋ ∈ −6..8) → ((e + 7) << 3 | top 3 bits of f), rounded on the 20 dropped bits,
 *   a carry moving to the next exponent, 0x7f (480, e4m3fn's NaN) clamped to 0x7e.
 * The sign bit is v's (−0 → 0x80). Host and device share it: test/cuda/native/gemm-fp8-check.cu compares it
 * with __nv_cvt_float_to_fp8 over every float32 bit pattern, test/cuda/mock-native.ts mirrors it.
 */
__host__ __device__ inline uint8_t encodeE4m3(float v) {
  uint32_t u;
#ifdef __CUDA_ARCH__
  u = __float_as_uint(v);
#else
  std::memcpy(&u, &v, 4);
#endif
  const uint32_t sign = (u >> 24) & 0x80;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7f;
  if (a >= 0x43e00000u) return uint8_t(sign | 0x7e);  // 448 = 2⁸·1.75
  const int e = int(a >> 23) - 127;
  // |v|·2⁹ is exact (a power-of-two scaling of a value below 2⁻⁶); rintf rounds to nearest even
  if (e < -6) return uint8_t(sign | uint32_t(rintf(fabsf(v) * 512.0f)));
  uint32_t t = (uint32_t(e + 7) << 3) | ((a >> 20) & 7);
  const uint32_t rest = a & 0xfffffu;
  if (rest > 0x80000u || (rest == 0x80000u && (t & 1))) t++;
  if (t > 0x7e) t = 0x7e;
  return uint8_t(sign | t);
}

/**
 * Row-major D[m, n] (bf16) = epilogue((s_x·s_w)·(q_x · q_wᵀ)) through a cuBLASLt FP8 GEMM (CUDA_R_8F_E4M3 inputs,
 * CUBLAS_COMPUTE_32F, bf16 C/D), where
 *   x: [m, k] stored as xType (BF16 or F32), read as stored;
 *   s_x = amax(|x|) / 448 in float32 (1 when amax is 0), computed on the GPU (no host synchronisation);
 *   q_x = e4m3(x / s_x) (encodeE4m3: round to nearest even, saturated to ±448), written to scratch;
 *   w: [n, k] float8_e4m3fn codes with per-tensor scale s_w (w = decode(q_w)·s_w);
 *   epilogue None, Bias (+ bias[n], bf16), Gelu or GeluBias (GELU-tanh after the bias), as gemmLt's.
 * Both scales reach cuBLASLt as device pointers (CUBLASLT_MATMUL_DESC_A_SCALE_POINTER = s_w,
 * B_SCALE_POINTER = s_x: cuBLASLt's A is our W, as in gemm-lt.cu), so D = α·scaleA·scaleB·(A·B) + bias, α = 1.
 * The layout is cuBLASLt's "TN" (both operands K-major), the only one Hopper's FP8 kernels take.
 * fastAccum sets CUBLASLT_MATMUL_DESC_FAST_ACCUM (Hopper's fp8 accumulation without periodic promotion to fp32).
 * scratch: fp8ScratchBytes(m, k) bytes, 16-byte aligned (the codes start FP8_SCRATCH_HEAD bytes in); it must stay allocated until the GEMM has run
 * (a stream-ordered free after this call is enough).
 *
 * Returns "" when the GEMM was queued, else why it was not (D untouched): a GPU older than sm_89, k or n not a
 * multiple of 16, a pointer not 16-byte aligned, no cuBLASLt algorithm for the problem, or cublasLtMatmul refusing
 * (CUBLAS_STATUS_NOT_SUPPORTED) the algorithm the heuristic chose; each refusal of a shape is cached.
 * CUDA and cuBLASLt failures after that throw CudaFailure. Not thread-safe (one host thread, as gemmLt).
 */
std::string gemmFp8(const void* x, DType xType, const uint8_t* w, float wScale, void* d, int64_t m, int64_t n, int64_t k, const void* bias,
                    Epilogue epilogue, bool fastAccum, void* scratch);

}  // namespace wan
