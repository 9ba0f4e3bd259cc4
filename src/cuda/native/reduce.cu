// Reductions over the innermost axis of a [outer, inner] view (the binding transposes the reduced
// axes to the end first), arg-reductions, row softmax / log-softmax and cumulative sums.
// Sums, means and products accumulate in double, as the tfjs cpu backend does in JavaScript.
// Float inputs may be stored as float32 or bfloat16; results are float32 (or int32).
#include <cfloat>

#include "ops.h"
#include "storage.cuh"

namespace wan {

namespace {

constexpr int THREADS = 256;

__device__ __forceinline__ double identityOf(int op) {
  switch (op) {
    case red::Prod:
    case red::All: return 1.0;
    case red::Max: return -INFINITY;
    case red::Min: return INFINITY;
    default: return 0.0;
  }
}

__device__ __forceinline__ double combine(int op, double a, double b) {
  switch (op) {
    case red::Prod: return a * b;
    case red::Max: return (isnan(a) || isnan(b)) ? NAN : fmax(a, b);
    case red::Min: return (isnan(a) || isnan(b)) ? NAN : fmin(a, b);
    case red::All: return (a != 0.0 && b != 0.0) ? 1.0 : 0.0;
    case red::Any: return (a != 0.0 || b != 0.0) ? 1.0 : 0.0;
    default: return a + b;
  }
}

template <typename TO>
__device__ __forceinline__ TO finish(int op, double acc, int64_t inner) {
  if (op == red::Mean) acc /= double(inner);
  if constexpr (std::is_same<TO, float>::value) {
    return float(acc);
  } else {
    if (!isfinite(acc)) return 0;
    double m = fmod(trunc(acc), 4294967296.0);
    if (m < 0) m += 4294967296.0;
    return int32_t(uint32_t(m));
  }
}

template <typename T>
__device__ __forceinline__ T warpReduce(int op, T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = combine(op, v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/** Reduces v over the block (all threads get the result). */
__device__ double blockReduce(int op, double v) {
  __shared__ double partial[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warpReduce(op, v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  int warps = (blockDim.x + 31) >> 5;
  double r = lane < warps ? partial[lane] : identityOf(op);
  return warpReduce(op, r);
}

template <typename TI, typename TO>
__global__ void reduceRowsThread(int op, const TI* x, TO* y, int64_t outer, int64_t inner) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < outer; r += int64_t(gridDim.x) * blockDim.x) {
    double acc = identityOf(op);
    const TI* row = x + r * inner;
    for (int64_t j = 0; j < inner; j++) acc = combine(op, acc, double(toFloat(row[j])));
    y[r] = finish<TO>(op, acc, inner);
  }
}

template <typename TI, typename TO>
__global__ void reduceRowsBlock(int op, const TI* x, TO* y, int64_t outer, int64_t inner) {
  for (int64_t r = blockIdx.x; r < outer; r += gridDim.x) {
    double acc = identityOf(op);
    const TI* row = x + r * inner;
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x) acc = combine(op, acc, double(toFloat(row[j])));
    acc = blockReduce(op, acc);
    if (threadIdx.x == 0) y[r] = finish<TO>(op, acc, inner);
  }
}

struct ArgAcc {
  double v;
  int64_t i;
};

__device__ __forceinline__ ArgAcc argCombine(bool isMax, ArgAcc a, ArgAcc b) {
  bool takeB = isMax ? (b.v > a.v || (b.v == a.v && b.i < a.i)) : (b.v < a.v || (b.v == a.v && b.i < a.i));
  return takeB ? b : a;
}

template <typename TI>
__global__ void argReduceKernel(bool isMax, const TI* x, int32_t* y, int64_t outer, int64_t inner) {
  __shared__ ArgAcc partial[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t r = blockIdx.x; r < outer; r += gridDim.x) {
    const TI* row = x + r * inner;
    ArgAcc acc{double(toFloat(row[0])), 0};
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x) acc = argCombine(isMax, acc, ArgAcc{double(toFloat(row[j])), j});
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      ArgAcc other{__shfl_xor_sync(0xffffffffu, acc.v, o), __shfl_xor_sync(0xffffffffu, acc.i, o)};
      acc = argCombine(isMax, acc, other);
    }
    __syncthreads();
    if (lane == 0) partial[warp] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      ArgAcc best = partial[0];
      int warps = (blockDim.x + 31) >> 5;
      for (int w = 1; w < warps; w++) best = argCombine(isMax, best, partial[w]);
      y[r] = int32_t(best.i);
    }
  }
}

__device__ float blockMaxF(float v, float* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  int warps = (blockDim.x + 31) >> 5;
  float r = lane < warps ? scratch[lane] : -INFINITY;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) r = fmaxf(r, __shfl_xor_sync(0xffffffffu, r, o));
  return r;
}

__device__ float blockSumF(float v, float* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  int warps = (blockDim.x + 31) >> 5;
  float r = lane < warps ? scratch[lane] : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) r += __shfl_xor_sync(0xffffffffu, r, o);
  return r;
}

template <typename TI, typename TO>
__global__ void softmaxKernel(const TI* x, TO* y, int64_t rows, int64_t cols, bool logSoftmax) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const TI* row = x + r * cols;
    TO* out = y + r * cols;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, toFloat(row[j]));
    m = blockMaxF(m, scratch);
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += expf(toFloat(row[j]) - m);
    s = blockSumF(s, scratch);
    if (logSoftmax) {
      float ls = logf(s);
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) out[j] = fromFloat<TO>(toFloat(row[j]) - m - ls);
    } else {
      float inv = 1.0f / s;
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) out[j] = fromFloat<TO>(expf(toFloat(row[j]) - m) * inv);
    }
  }
}

template <typename T>
__global__ void cumsumKernel(const T* x, T* y, int64_t outer, int64_t len, int64_t inner, bool exclusive, bool reverse) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < outer * inner; t += int64_t(gridDim.x) * blockDim.x) {
    int64_t o = t / inner, in = t % inner;
    const T* src = x + o * len * inner + in;
    T* dst = y + o * len * inner + in;
    T acc = T(0);
    for (int64_t s = 0; s < len; s++) {
      int64_t j = reverse ? len - 1 - s : s;
      T v = src[j * inner];
      if (exclusive) {
        dst[j * inner] = acc;
        acc += v;
      } else {
        acc += v;
        dst[j * inner] = acc;
      }
    }
  }
}

template <typename TI, typename TO>
void launchReduce(int op, const TI* x, TO* y, int64_t outer, int64_t inner) {
  if (inner <= 32) {
    reduceRowsThread<TI, TO><<<gridFor(outer, THREADS), THREADS, 0, stream()>>>(op, x, y, outer, inner);
  } else {
    int64_t blocks = outer < 65535 * 16 ? outer : 65535 * 16;
    reduceRowsBlock<TI, TO><<<unsigned(blocks), THREADS, 0, stream()>>>(op, x, y, outer, inner);
  }
}

}  // namespace

void reduce(int op, DType in, DType out, const void* x, void* y, int64_t outer, int64_t inner) {
  if (outer == 0) return;
  auto launch = [&](auto ti) {
    using TI = decltype(ti);
    if (out == F32) launchReduce(op, static_cast<const TI*>(x), static_cast<float*>(y), outer, inner);
    else if (out == I32) launchReduce(op, static_cast<const TI*>(x), static_cast<int32_t*>(y), outer, inner);
    else throw CudaFailure("reduce: results are float32 or int32");
  };
  if (in == I32) launch(int32_t{});
  else withFloatType(in, launch);
  checkLaunch("reduce");
}

void argReduce(int op, DType in, const void* x, int32_t* y, int64_t outer, int64_t inner) {
  if (outer == 0 || inner == 0) return;
  unsigned blocks = unsigned(outer < 65535 * 16 ? outer : 65535 * 16);
  bool isMax = op == red::Max;
  auto launch = [&](auto ti) {
    using TI = decltype(ti);
    argReduceKernel<TI><<<blocks, THREADS, 0, stream()>>>(isMax, static_cast<const TI*>(x), y, outer, inner);
  };
  if (in == I32) launch(int32_t{});
  else withFloatType(in, launch);
  checkLaunch("argReduce");
}

void softmax(const void* x, void* y, int64_t rows, int64_t cols, bool log, DType in, DType out) {
  if (rows == 0 || cols == 0) return;
  unsigned blocks = unsigned(rows < 65535 * 16 ? rows : 65535 * 16);
  withFloatType(in, [&](auto ti) {
    withFloatType(out, [&](auto to) {
      using TI = decltype(ti);
      using TO = decltype(to);
      softmaxKernel<TI, TO><<<blocks, THREADS, 0, stream()>>>(static_cast<const TI*>(x), static_cast<TO*>(y), rows, cols, log);
    });
  });
  checkLaunch("softmax");
}

void cumsum(DType t, const void* x, void* y, int64_t outer, int64_t len, int64_t inner, bool exclusive, bool reverse) {
  if (outer * inner == 0 || len == 0) return;
  unsigned g = gridFor(outer * inner, THREADS);
  if (t == F32) cumsumKernel<float><<<g, THREADS, 0, stream()>>>(static_cast<const float*>(x), static_cast<float*>(y), outer, len, inner, exclusive, reverse);
  else cumsumKernel<int32_t><<<g, THREADS, 0, stream()>>>(static_cast<const int32_t*>(x), static_cast<int32_t*>(y), outer, len, inner, exclusive, reverse);
  checkLaunch("cumsum");
}

}  // namespace wan
