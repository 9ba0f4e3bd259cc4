// Shared declarations of the wan_cuda addon: the one stream, error checks, launch shapes and the
// strided-view descriptor that the elementwise and copy kernels take by value.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace wan {

/**
 * Device element types as stored: float32, int32 (which also holds bool as 0/1), bfloat16 (a
 * float32 tensor the precision policy stores in 2 bytes), float16 (upload source only), and the
 * float8 codes of fp8 checkpoint weights (read through dequantFp8 only). Code 2 is bool, a cast
 * target only.
 */
enum DType : int { F32 = 0, I32 = 1, BF16 = 3, F16 = 4, F8_E4M3 = 5, F8_E5M2 = 6 };

/** Bytes per element of a stored type. */
inline int elemBytes(DType t) { return t == F8_E4M3 || t == F8_E5M2 ? 1 : t == BF16 || t == F16 ? 2 : 4; }

/** Highest rank a strided view may have after dimension coalescing (tile doubles the rank). */
constexpr int MAX_RANK = 12;

/** A CUDA failure; the binding turns it into a JavaScript Error with this message. */
struct CudaFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

cudaStream_t stream();
int smCount();

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CudaFailure(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

/** Raises the launch error of the kernel just queued, if any. */
inline void checkLaunch(const char* what) { check(cudaGetLastError(), what); }

/** Blocks for a grid-stride loop over n items. */
inline unsigned gridFor(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  int64_t cap = int64_t(smCount()) * 32;
  if (b > cap) b = cap;
  return unsigned(b < 1 ? 1 : b);
}

/** Up to three strided views over one output shape: offset_k = Σ coord_d · strides[k][d]. */
struct View {
  int rank;
  int64_t shape[MAX_RANK];
  int64_t strides[3][MAX_RANK];
};

/** Offsets of the n-th output element (row-major over shape) in views 0..count-1. */
template <int COUNT>
__device__ __forceinline__ void viewOffsets(const View& v, int64_t i, int64_t* off) {
#pragma unroll
  for (int k = 0; k < COUNT; k++) off[k] = 0;
  for (int d = v.rank - 1; d >= 0; d--) {
    int64_t n = v.shape[d];
    int64_t c = i % n;
    i /= n;
#pragma unroll
    for (int k = 0; k < COUNT; k++) off[k] += c * v.strides[k][d];
  }
}

// Launchers, one per kernel family (defined in the .cu files).
/** Fills n elements of `width` bytes with the bit pattern `bits`. */
void fill(void* dst, int64_t n, uint32_t bits, int width);
/** `to` 2 converts to bool (x != 0, stored as int32); F16 is a source only. */
void cast(const void* src, void* dst, int64_t n, DType from, int to);
/**
 * dst[i] = decode(src[i]) · scale for n float8 codes (format F8_E4M3: float8_e4m3fn, no infinities,
 * S.1111.111 NaN; F8_E5M2: IEEE-like), the float32 product stored as `out` (F32, or BF16 rounded to
 * nearest even).
 */
void dequantFp8(const uint8_t* src, void* dst, int64_t n, DType format, float scale, DType out);
/** Float ops take F32 or BF16 in and out (I32 out for bool results); int ops I32 → I32. */
void unary(int op, DType in, DType out, const void* x, void* y, int64_t n, float a, float b);
/** Each float operand F32 or BF16; int32 operands both I32 with an I32 result. */
void binary(int op, DType inA, DType inB, DType out, const void* a, const void* b, void* y, const View& v, int64_t n);
void select(const int32_t* cond, const void* a, const void* b, void* y, const View& v, int64_t n, int width);
void reduce(int op, DType in, DType out, const void* x, void* y, int64_t outer, int64_t inner);
void argReduce(int op, DType in, const void* x, int32_t* y, int64_t outer, int64_t inner);
void softmax(const void* x, void* y, int64_t rows, int64_t cols, bool log, DType in, DType out);
void cumsum(DType t, const void* x, void* y, int64_t outer, int64_t len, int64_t inner, bool exclusive, bool reverse);
// Moves of `width`-byte elements (2: bfloat16, 4: float32 / int32).
void copyStrided(const void* src, void* dst, const View& v, int64_t n, int64_t srcOffset, int width);
void copyBlock(const void* src, void* dst, int64_t rows, int64_t cols, int64_t srcStride, int64_t dstStride, int64_t srcOffset, int64_t dstOffset,
               int width);
/** Padding of a rank-`rank` tensor: mode 0 constant, 1 reflect, 2 symmetric. */
struct PadDesc {
  int rank;
  int mode;
  int64_t out[MAX_RANK];
  int64_t in[MAX_RANK];
  int64_t before[MAX_RANK];
};
/** value: the fill's bit pattern in the element width (the low 16 bits for bfloat16). */
void pad(const void* src, void* dst, const PadDesc& p, uint32_t value, int64_t n, int width);
void gather(const void* src, const int32_t* idx, void* dst, int64_t batch, int64_t outer, int64_t numIdx, int64_t axisSize, int64_t inner,
            int width);
void resizeNearest(const void* src, void* dst, int64_t batch, int64_t inH, int64_t inW, int64_t ch, int64_t outH, int64_t outW, double scaleH,
                   double scaleW, bool alignCorners, bool halfPixel, int width);
void resizeBilinear(const float* src, float* dst, int64_t batch, int64_t inH, int64_t inW, int64_t ch, int64_t outH, int64_t outW, double scaleH, double scaleW, bool halfPixel);
// Norms of float32 / bfloat16 rows with float32 weights (w, b may be null for layerNorm); rmsNorm
// optionally applies SiLU to its result.
void rmsNorm(const void* x, const float* w, void* y, int64_t rows, int64_t cols, float eps, bool silu, DType in, DType out);
void layerNorm(const void* x, const float* w, const float* b, void* y, int64_t rows, int64_t cols, float eps, DType in, DType out);
/** scale, shift: float32 [modCount, cols]; row r takes modulation row ⌊r / rowsPerMod⌋ mod modCount. */
void layerNormModulate(const void* x, const float* scale, const float* shift, void* y, int64_t rows, int64_t cols, float eps, int64_t rowsPerMod,
                       int64_t modCount, DType in, DType out);
/** x, y: [rows, H, D] with rows = B·L (position = row mod L); cos, sin: float32 [L, D]. */
void rope(const void* x, const float* cos, const float* sin, void* y, int64_t rows, int64_t L, int64_t H, int64_t D, DType in, DType out);
void geluTanh(const void* x, void* y, int64_t n, DType in, DType out);
/**
 * out [rows, cols] float32 = x + y · gate[m, col] (x + y when gate is null), m = ⌊r / rowsPerMod⌋ mod
 * modCount for row r; the product and the sum each rounded to float32 (no fused multiply-add), as the
 * two elementwise ops they replace. x and y float32 or bfloat16; gate float32 [modCount, cols].
 */
void gatedResidual(const void* x, const void* y, const float* gate, float* out, int64_t rows, int64_t cols, int64_t rowsPerMod, int64_t modCount,
                   DType typeX, DType typeY);
/**
 * out [rows, cols] = y + bias[col] + res (a convolution's epilogue; out may be y). bias and res may be
 * null; each buffer float32 or bfloat16, the sum in float32.
 */
void biasResidual(const void* y, const void* bias, const void* res, void* out, int64_t rows, int64_t cols, DType typeY, DType typeBias,
                  DType typeRes, DType typeOut);
void attention(const float* q, const float* k, const float* v, float* o, int B, int Lq, int Lk, int H, int D, int Dv, float scale);

struct Conv {
  int64_t n, d, h, w, c;        // input NDHWC
  int64_t kd, kh, kw, o;        // filter [kd, kh, kw, c, o]
  int64_t od, oh, ow;           // output spatial
  int64_t sd, sh, sw;           // strides
  int64_t pd, ph, pw;           // leading pads
  int64_t dd, dh, dw;           // dilations
};
void im2col(const float* x, float* col, const Conv& c, int64_t p0, int64_t count);

/** Row-major C[M,N] = op(A)[M,K] · op(B)[K,N] for `batch` matrices, element strides between them (0 broadcasts). */
void gemm(const float* a, const float* b, float* c, int64_t batch, int64_t m, int64_t n, int64_t k, bool transA, bool transB,
          int64_t strideA, int64_t strideB, int64_t strideC);

void* deviceAlloc(size_t bytes);
void deviceFree(void* p);

}  // namespace wan
