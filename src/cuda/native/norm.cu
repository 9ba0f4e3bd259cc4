// Row norms over the last axis, and the rotary embedding of attention heads:
//   rmsNorm:           y = x · rsqrt(mean(x²) + eps) · w, then optionally SiLU: y · sigmoid(y)
//   layerNorm:         y = (x − mean) · rsqrt(mean((x − mean)²) + eps) [· w] [+ b]   (biased variance)
//   layerNormModulate: y = layerNorm(x) · (1 + scale[m]) + shift[m], m = ⌊r / rowsPerMod⌋ mod modCount
//   rope:              (y₂ⱼ, y₂ⱼ₊₁) = (x₂ⱼ·cos₂ⱼ − x₂ⱼ₊₁·sin₂ⱼ₊₁, x₂ⱼ·sin₂ⱼ₊₁ + x₂ⱼ₊₁·cos₂ⱼ) per head
// x and y are float32 or bfloat16; weights, modulation and tables are float32 and all arithmetic is
// float32 (the statistics of a bfloat16 row too). Rows of up to 1024 columns take one warp each,
// longer rows one block.
#include "storage.cuh"

namespace wan {

namespace {

constexpr int THREADS = 256;
constexpr int WARP_ROWS_MAX_COLS = 1024;

/** The sum of v over the group that reduces one row: a warp (WARP) or the whole block. */
template <bool WARP>
__device__ float rowSum(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if constexpr (WARP) return v;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < int(blockDim.x >> 5) ? scratch[lane] : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) r += __shfl_xor_sync(0xffffffffu, r, o);
  return r;
}

/**
 * Walks the rows this thread helps with: WARP = one row per warp (lanes stride the columns),
 * else one row per block. body(row, first column, column step) is called once per row.
 */
template <bool WARP, typename F>
__device__ __forceinline__ void forRows(int64_t rows, F&& body) {
  if constexpr (WARP) {
    int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
    for (int64_t r = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) body(r, int(threadIdx.x & 31), 32);
  } else {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) body(r, int(threadIdx.x), int(blockDim.x));
  }
}

template <bool WARP, typename TI, typename TO>
__global__ void rmsNormKernel(const TI* x, const float* w, TO* y, int64_t rows, int64_t cols, float eps, bool silu) {
  __shared__ float scratch[32];
  forRows<WARP>(rows, [&](int64_t r, int first, int step) {
    const TI* row = x + r * cols;
    float s = 0.0f;
    for (int64_t j = first; j < cols; j += step) {
      float v = toFloat(row[j]);
      s += v * v;
    }
    float inv = rsqrtf(rowSum<WARP>(s, scratch) / float(cols) + eps);
    TO* out = y + r * cols;
    for (int64_t j = first; j < cols; j += step) {
      float v = toFloat(row[j]) * inv * w[j];
      out[j] = fromFloat<TO>(silu ? v / (1.0f + expf(-v)) : v);
    }
  });
}

/** mean and rsqrt(var + eps) of one row (two passes over it). */
template <bool WARP, typename TI>
__device__ __forceinline__ float2 rowMoments(const TI* row, int64_t cols, int first, int step, float eps, float* scratch) {
  float s = 0.0f;
  for (int64_t j = first; j < cols; j += step) s += toFloat(row[j]);
  float mean = rowSum<WARP>(s, scratch) / float(cols);
  float q = 0.0f;
  for (int64_t j = first; j < cols; j += step) {
    float d = toFloat(row[j]) - mean;
    q += d * d;
  }
  return make_float2(mean, rsqrtf(rowSum<WARP>(q, scratch) / float(cols) + eps));
}

template <bool WARP, typename TI, typename TO>
__global__ void layerNormKernel(const TI* x, const float* w, const float* b, TO* y, int64_t rows, int64_t cols, float eps) {
  __shared__ float scratch[32];
  forRows<WARP>(rows, [&](int64_t r, int first, int step) {
    const TI* row = x + r * cols;
    float2 m = rowMoments<WARP>(row, cols, first, step, eps, scratch);
    TO* out = y + r * cols;
    for (int64_t j = first; j < cols; j += step) {
      float v = (toFloat(row[j]) - m.x) * m.y;
      if (w) v *= w[j];
      if (b) v += b[j];
      out[j] = fromFloat<TO>(v);
    }
  });
}

template <bool WARP, typename TI, typename TO>
__global__ void layerNormModulateKernel(const TI* x, const float* scale, const float* shift, TO* y, int64_t rows, int64_t cols, float eps,
                                        int64_t rowsPerMod, int64_t modCount) {
  __shared__ float scratch[32];
  forRows<WARP>(rows, [&](int64_t r, int first, int step) {
    const TI* row = x + r * cols;
    float2 m = rowMoments<WARP>(row, cols, first, step, eps, scratch);
    int64_t mod = (r / rowsPerMod) % modCount;
    const float* sc = scale + mod * cols;
    const float* sh = shift + mod * cols;
    TO* out = y + r * cols;
    for (int64_t j = first; j < cols; j += step) {
      float v = __fmul_rn(toFloat(row[j]) - m.x, m.y);
      out[j] = fromFloat<TO>(__fadd_rn(__fmul_rn(v, __fadd_rn(sc[j], 1.0f)), sh[j]));
    }
  });
}

// One thread per rotated pair: rows = B·L token rows of H heads × D channels; cos/sin [L, D].
template <typename TI, typename TO>
__global__ void ropeKernel(const TI* x, const float* cos, const float* sin, TO* y, int64_t rows, int64_t L, int64_t H, int64_t D) {
  int64_t half = D / 2;
  int64_t n = rows * H * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t j = i % half;
    int64_t rh = i / half;  // row · H + head
    int64_t l = (rh / H) % L;
    int64_t at = rh * D + 2 * j;
    float x0 = toFloat(x[at]), x1 = toFloat(x[at + 1]);
    float c = cos[l * D + 2 * j], s = sin[l * D + 2 * j + 1];
    y[at] = fromFloat<TO>(__fadd_rn(__fmul_rn(x0, c), __fmul_rn(x1, -s)));
    y[at + 1] = fromFloat<TO>(__fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s)));
  }
}

/** Launches a row kernel with one warp per row (narrow rows) or one block per row. */
template <typename Launch>
void launchRows(int64_t rows, int64_t cols, Launch&& launch) {
  const int64_t cap = int64_t(1) << 30;
  if (cols <= WARP_ROWS_MAX_COLS) {
    int64_t blocks = (rows + THREADS / 32 - 1) / (THREADS / 32);
    launch(std::true_type{}, unsigned(blocks < cap ? blocks : cap));
  } else {
    launch(std::false_type{}, unsigned(rows < cap ? rows : cap));
  }
}

}  // namespace

void rmsNorm(const void* x, const float* w, void* y, int64_t rows, int64_t cols, float eps, bool silu, DType in, DType out) {
  if (rows == 0 || cols == 0) return;
  withFloatType(in, [&](auto ti) {
    withFloatType(out, [&](auto to) {
      using TI = decltype(ti);
      using TO = decltype(to);
      launchRows(rows, cols, [&](auto warp, unsigned blocks) {
        rmsNormKernel<decltype(warp)::value, TI, TO><<<blocks, THREADS, 0, stream()>>>(static_cast<const TI*>(x), w, static_cast<TO*>(y), rows, cols, eps, silu);
      });
    });
  });
  checkLaunch("rmsNorm");
}

void layerNorm(const void* x, const float* w, const float* b, void* y, int64_t rows, int64_t cols, float eps, DType in, DType out) {
  if (rows == 0 || cols == 0) return;
  withFloatType(in, [&](auto ti) {
    withFloatType(out, [&](auto to) {
      using TI = decltype(ti);
      using TO = decltype(to);
      launchRows(rows, cols, [&](auto warp, unsigned blocks) {
        layerNormKernel<decltype(warp)::value, TI, TO><<<blocks, THREADS, 0, stream()>>>(static_cast<const TI*>(x), w, b, static_cast<TO*>(y), rows, cols, eps);
      });
    });
  });
  checkLaunch("layerNorm");
}

void layerNormModulate(const void* x, const float* scale, const float* shift, void* y, int64_t rows, int64_t cols, float eps, int64_t rowsPerMod,
                       int64_t modCount, DType in, DType out) {
  if (rows == 0 || cols == 0) return;
  if (rowsPerMod < 1 || modCount < 1) throw CudaFailure("layerNormModulate: rowsPerMod and modCount must be ≥ 1");
  withFloatType(in, [&](auto ti) {
    withFloatType(out, [&](auto to) {
      using TI = decltype(ti);
      using TO = decltype(to);
      launchRows(rows, cols, [&](auto warp, unsigned blocks) {
        layerNormModulateKernel<decltype(warp)::value, TI, TO><<<blocks, THREADS, 0, stream()>>>(
            static_cast<const TI*>(x), scale, shift, static_cast<TO*>(y), rows, cols, eps, rowsPerMod, modCount);
      });
    });
  });
  checkLaunch("layerNormModulate");
}

void rope(const void* x, const float* cos, const float* sin, void* y, int64_t rows, int64_t L, int64_t H, int64_t D, DType in, DType out) {
  int64_t n = rows * H * (D / 2);
  if (n == 0) return;
  if (D % 2 != 0) throw CudaFailure("rope: the head size must be even");
  withFloatType(in, [&](auto ti) {
    withFloatType(out, [&](auto to) {
      using TI = decltype(ti);
      using TO = decltype(to);
      ropeKernel<TI, TO><<<gridFor(n, THREADS), THREADS, 0, stream()>>>(static_cast<const TI*>(x), cos, sin, static_cast<TO*>(y), rows, L, H, D);
    });
  });
  checkLaunch("rope");
}

}  // namespace wan
