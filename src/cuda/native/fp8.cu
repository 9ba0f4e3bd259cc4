// Dequantization of fp8 checkpoint weights: w = decode(q) · s with a per-tensor float32 scale s,
// into float32 or bfloat16 (the scratch buffer a GEMM reads). The codes decode exactly as
// weights/dtypes.ts decodes them on the host:
//   float8_e4m3fn (bias 7): e = 0 → (−1)^s · m · 2^−9; else (−1)^s · (1 + m/8) · 2^(e−7); no
//     infinities, S.1111.111 is NaN (so 0x7e = 448 is the largest);
//   float8_e5m2 (bias 15): the high byte of an IEEE binary16 (e = 31: ±∞ for m = 0, else NaN).
// Every fp8 value is exact in float32; the product with s is one float32 multiply (rounded once),
// then bfloat16 output rounds that to nearest even.
#include "storage.cuh"

namespace wan {

namespace {

constexpr int THREADS = 256;

__device__ __forceinline__ float decodeE4m3(uint8_t b) {
  int e = (b >> 3) & 15, m = b & 7;
  float magnitude = (e == 15 && m == 7) ? __int_as_float(0x7fc00000)
                    : e == 0            ? float(m) * 0x1p-9f
                                        : __int_as_float(((e + 120) << 23) | (m << 20));  // exponent field e − 7 + 127
  return (b & 0x80) ? -magnitude : magnitude;
}

__device__ __forceinline__ float decodeE5m2(uint8_t b) { return __half2float(__ushort_as_half(uint16_t(b) << 8)); }

template <bool E4M3, typename TO>
__global__ void dequantFp8Kernel(const uint8_t* q, TO* y, int64_t n, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = E4M3 ? decodeE4m3(q[i]) : decodeE5m2(q[i]);
    y[i] = fromFloat<TO>(__fmul_rn(v, scale));
  }
}

}  // namespace

void dequantFp8(const uint8_t* src, void* dst, int64_t n, DType format, float scale, DType out) {
  if (format != F8_E4M3 && format != F8_E5M2) throw CudaFailure("dequantFp8: format must be F8_E4M3 or F8_E5M2, got type code " + std::to_string(int(format)));
  if (n == 0) return;
  withFloatType(out, [&](auto t) {
    using TO = decltype(t);
    TO* y = static_cast<TO*>(dst);
    if (format == F8_E4M3) dequantFp8Kernel<true, TO><<<gridFor(n, THREADS), THREADS, 0, stream()>>>(src, y, n, scale);
    else dequantFp8Kernel<false, TO><<<gridFor(n, THREADS), THREADS, 0, stream()>>>(src, y, n, scale);
  });
  checkLaunch("dequantFp8");
}

}  // namespace wan
