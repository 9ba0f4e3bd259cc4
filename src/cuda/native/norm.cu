// Row norms over the last axis, one block per row:
//   rmsNorm:   y = x · rsqrt(mean(x²) + eps) · w
//   layerNorm: y = (x − mean) · rsqrt(mean((x − mean)²) + eps) [· w] [+ b]   (biased variance)
#include "common.cuh"

namespace wan {

namespace {

constexpr int THREADS = 256;

__device__ float blockSum(float v, float* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < int(blockDim.x >> 5) ? scratch[lane] : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) r += __shfl_xor_sync(0xffffffffu, r, o);
  return r;
}

__global__ void rmsNormKernel(const float* x, const float* w, float* y, int64_t rows, int64_t cols, float eps) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* row = x + r * cols;
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += row[j] * row[j];
    s = blockSum(s, scratch);
    float inv = rsqrtf(s / float(cols) + eps);
    float* out = y + r * cols;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) out[j] = row[j] * inv * w[j];
  }
}

__global__ void layerNormKernel(const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t cols, float eps) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* row = x + r * cols;
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += row[j];
    float mean = blockSum(s, scratch) / float(cols);
    float q = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      float d = row[j] - mean;
      q += d * d;
    }
    float inv = rsqrtf(blockSum(q, scratch) / float(cols) + eps);
    float* out = y + r * cols;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      float v = (row[j] - mean) * inv;
      if (w) v *= w[j];
      if (b) v += b[j];
      out[j] = v;
    }
  }
}

unsigned rowBlocks(int64_t rows) { return unsigned(rows < (int64_t(1) << 30) ? rows : (int64_t(1) << 30)); }

}  // namespace

void rmsNorm(const float* x, const float* w, float* y, int64_t rows, int64_t cols, float eps) {
  if (rows == 0 || cols == 0) return;
  rmsNormKernel<<<rowBlocks(rows), THREADS, 0, stream()>>>(x, w, y, rows, cols, eps);
  checkLaunch("rmsNorm");
}

void layerNorm(const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t cols, float eps) {
  if (rows == 0 || cols == 0) return;
  layerNormKernel<<<rowBlocks(rows), THREADS, 0, stream()>>>(x, w, b, y, rows, cols, eps);
  checkLaunch("layerNorm");
}

}  // namespace wan
