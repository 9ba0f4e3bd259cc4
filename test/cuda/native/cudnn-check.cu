// Standalone check of cuDNN's fused attention (src/cuda/native/cudnn-attention.cpp, loaded through
// cudnn-loader.cpp) on one GPU, without Node: each case against a naive fp32 reference computed from
// the same bf16 inputs, then the speed of two Wan self-attention shapes. From the repository root:
//
//   CUDNN=$(python3 -c "import nvidia.cudnn as m; print(next(iter(m.__path__)))")
//   nvcc -std=c++17 -O3 -arch=sm_90 -DWAN_HAVE_CUDNN -I $CUDNN/include -x cu test/cuda/native/cudnn-check.cu src/cuda/native/cudnn-loader.cpp src/cuda/native/cudnn-graph.cpp src/cuda/native/cudnn-attention.cpp -ldl -o /tmp/cudnn-check
//   /tmp/cudnn-check $CUDNN/lib/libcudnn.so.9
//
// A second argument runs only the case of that name (e.g. `self`). Prints what cudnnLoad reported,
// one `PASS|FAIL <case> rel_l2=… max_abs=…` line per case (with the plan cuDNN chose, or why it
// built none), `TIME` lines, and `N passed, N failed`; exits 1 on a failure.
// For cuDNN's own account of a refusal add CUDNN_LOGLEVEL_DBG=2 CUDNN_LOGDEST_DBG=stderr.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "../../../src/cuda/native/common.cuh"
#include "../../../src/cuda/native/cudnn-attention.h"
#include "../../../src/cuda/native/cudnn-loader.h"

// The addon functions the cuDNN files use (addon.cpp has the real ones): one stream, and memory
// from CUDA's stream-ordered pool on it, as the addon allocates.
namespace wan {

namespace {
cudaStream_t checkStream = nullptr;
}

cudaStream_t stream() { return checkStream; }

int smCount() {
  int n = 0;
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, 0), "multiprocessor count");
  return n;
}

void* deviceAlloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  check(cudaMallocAsync(&p, bytes, checkStream), "cudaMallocAsync");
  return p;
}

void deviceFree(void* p) {
  if (p) check(cudaFreeAsync(p, checkStream), "cudaFreeAsync");
}

}  // namespace wan

namespace {

using wan::check;
using bf16 = __nv_bfloat16;

/** splitmix64 of (seed, i): the random bits of element i. */
__device__ uint64_t mix(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/** x[i] = ±(0.05 … 1) (never 0); with `outliers`, about one in 1000 is ±(20 … 30) instead. */
__global__ void fillRandom(bf16* x, int64_t n, uint64_t seed, bool outliers) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t h = mix(seed, uint64_t(i));
    float u = float(h & 0xFFFFFF) / 16777216.0f;
    float sign = (h >> 24) & 1 ? 1.0f : -1.0f;
    float value = sign * (0.05f + 0.95f * u);
    if (outliers && (h >> 32) % 1000 == 0) value = sign * (20.0f + 10.0f * u);
    x[i] = __float2bfloat16(value);
  }
}

/** The block-wide max (MAX) or sum of x, returned to every thread; `red` holds 32 floats. */
template <bool MAX>
__device__ float blockReduce(float x, float* red) {
  for (int o = 16; o > 0; o >>= 1) {
    float y = __shfl_xor_sync(0xFFFFFFFFu, x, o);
    x = MAX ? fmaxf(x, y) : x + y;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();
  if (lane == 0) red[warp] = x;
  __syncthreads();
  x = lane < warps ? red[lane] : (MAX ? -INFINITY : 0.0f);
  for (int o = 16; o > 0; o >>= 1) {
    float y = __shfl_xor_sync(0xFFFFFFFFu, x, o);
    x = MAX ? fmaxf(x, y) : x + y;
  }
  return x;
}

/**
 * ref[b, r, h, :] = softmax(scale · q[b, r·rowStep, h, :] · kᵀ) · v in fp32 from the bf16 inputs
 * (q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv]); one block per (r, h, b), scores in
 * `scores` [B, H, rows, Lk], q's row in D floats of dynamic shared memory.
 */
__global__ void referenceAttention(const bf16* q, const bf16* k, const bf16* v, float* ref, float* scores, int Lq, int Lk, int H,
                                   int D, int Dv, int rows, int rowStep, float scale) {
  extern __shared__ float qs[];
  __shared__ float red[32];
  const int r = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const bf16* qRow = q + ((int64_t(b) * Lq + int64_t(r) * rowStep) * H + h) * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) qs[i] = __bfloat162float(qRow[i]);
  __syncthreads();
  float* s = scores + ((int64_t(b) * H + h) * rows + r) * Lk;
  float localMax = -INFINITY;
  for (int j = threadIdx.x; j < Lk; j += blockDim.x) {
    const bf16* kRow = k + ((int64_t(b) * Lk + j) * H + h) * D;
    float acc = 0.0f;
    for (int i = 0; i < D; i++) acc += qs[i] * __bfloat162float(kRow[i]);
    s[j] = acc * scale;
    localMax = fmaxf(localMax, s[j]);
  }
  const float m = blockReduce<true>(localMax, red);
  float localSum = 0.0f;
  for (int j = threadIdx.x; j < Lk; j += blockDim.x) {
    s[j] = expf(s[j] - m);
    localSum += s[j];
  }
  const float l = blockReduce<false>(localSum, red);  // its __syncthreads also publishes s[]
  for (int c = threadIdx.x; c < Dv; c += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < Lk; j++) acc += s[j] * __bfloat162float(v[((int64_t(b) * Lk + j) * H + h) * Dv + c]);
    ref[((int64_t(b) * rows + r) * H + h) * Dv + c] = acc / l;
  }
}

struct Case {
  const char* name;
  int B, Lq, Lk, H, D, Dv;
  int rows;        // query rows compared with the reference (Lq: all; fewer: evenly spaced)
  bool timed;      // also time it
  double torchMs;  // PyTorch's cuDNN SDPA on an H100, for reference (0: none)
};

struct Buffer {
  void* p = nullptr;
  explicit Buffer(size_t bytes) { p = wan::deviceAlloc(bytes); }
  ~Buffer() { wan::deviceFree(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

int passed = 0, failed = 0;

void report(bool ok, const std::string& line) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", line.c_str());
  std::fflush(stdout);
  (ok ? passed : failed)++;
}

std::string shapeOf(const Case& c) {
  char s[128];
  std::snprintf(s, sizeof s, "[B=%d Lq=%d Lk=%d H=%d D=%d Dv=%d]", c.B, c.Lq, c.Lk, c.H, c.D, c.Dv);
  return s;
}

/** Runs one case: cuDNN against the reference on `rows` query rows, then (timed cases) 10 timed runs. */
void runCase(const Case& c, uint64_t seed) {
  const std::string label = std::string(c.name) + " " + shapeOf(c);
  const int64_t nq = int64_t(c.B) * c.Lq * c.H * c.D, nk = int64_t(c.B) * c.Lk * c.H * c.D;
  const int64_t nv = int64_t(c.B) * c.Lk * c.H * c.Dv, no = int64_t(c.B) * c.Lq * c.H * c.Dv;
  const int rowStep = c.Lq / c.rows;
  const float scale = 1.0f / std::sqrt(float(c.D));
  Buffer q(nq * 2), k(nk * 2), v(nv * 2), o(no * 2);
  Buffer ref(size_t(c.B) * c.rows * c.H * c.Dv * 4), scores(size_t(c.B) * c.H * c.rows * c.Lk * 4);
  cudaStream_t s = wan::stream();
  fillRandom<<<1024, 256, 0, s>>>(static_cast<bf16*>(q.p), nq, seed, true);
  fillRandom<<<1024, 256, 0, s>>>(static_cast<bf16*>(k.p), nk, seed + 1, true);
  fillRandom<<<1024, 256, 0, s>>>(static_cast<bf16*>(v.p), nv, seed + 2, false);
  check(cudaMemsetAsync(o.p, 0xFF, size_t(no) * 2, s), "poison o");  // NaN bits: a row cuDNN skips fails
  check(cudaGetLastError(), "fill");

  std::string why;
  if (!wan::cudnnAttention(q.p, k.p, v.p, o.p, c.B, c.Lq, c.Lk, c.H, c.D, c.Dv, scale, &why)) {
    report(false, label + ": declined: " + why);
    return;
  }
  dim3 grid(unsigned(c.rows), unsigned(c.H), unsigned(c.B));
  referenceAttention<<<grid, 256, c.D * sizeof(float), s>>>(static_cast<bf16*>(q.p), static_cast<bf16*>(k.p), static_cast<bf16*>(v.p),
                                                            static_cast<float*>(ref.p), static_cast<float*>(scores.p), c.Lq, c.Lk, c.H,
                                                            c.D, c.Dv, c.rows, rowStep, scale);
  check(cudaGetLastError(), "reference launch");
  const size_t rowElems = size_t(c.H) * c.Dv;
  std::vector<bf16> got(size_t(c.B) * c.rows * rowElems);
  std::vector<float> want(got.size());
  for (int b = 0; b < c.B; b++) {
    const bf16* src = static_cast<const bf16*>(o.p) + size_t(b) * c.Lq * rowElems;
    check(cudaMemcpy2DAsync(got.data() + size_t(b) * c.rows * rowElems, rowElems * 2, src, size_t(rowStep) * rowElems * 2, rowElems * 2,
                            size_t(c.rows), cudaMemcpyDeviceToHost, s),
          "copy cuDNN rows");
  }
  check(cudaMemcpyAsync(want.data(), ref.p, want.size() * 4, cudaMemcpyDeviceToHost, s), "copy reference");
  check(cudaStreamSynchronize(s), "attention + reference");
  double diff2 = 0, ref2 = 0, maxAbs = 0;
  for (size_t i = 0; i < got.size(); i++) {
    double g = __bfloat162float(got[i]), w = want[i], d = g - w;
    diff2 += d * d;
    ref2 += w * w;
    maxAbs = std::isnan(d) ? NAN : std::max(maxAbs, std::fabs(d));
  }
  const double rel = std::sqrt(diff2 / ref2);
  char numbers[160];
  std::snprintf(numbers, sizeof numbers, " rel_l2=%.3e max_abs=%.3e (%d of %d query rows)", rel, maxAbs, c.rows, c.Lq);
  report(rel <= 2e-2, label + numbers + " | " + wan::cudnnAttentionPlan(c.B, c.Lq, c.Lk, c.H, c.D, c.Dv));

  if (!c.timed) return;
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  std::vector<float> ms;
  for (int run = 0; run < 11; run++) {  // run 0 warms up
    check(cudaEventRecord(start, s), "record start");
    if (!wan::cudnnAttention(q.p, k.p, v.p, o.p, c.B, c.Lq, c.Lk, c.H, c.D, c.Dv, scale, &why)) {
      report(false, label + ": timed run declined: " + why);
      return;
    }
    check(cudaEventRecord(stop, s), "record stop");
    check(cudaEventSynchronize(stop), "timed run");
    float t = 0;
    check(cudaEventElapsedTime(&t, start, stop), "elapsed");
    if (run > 0) ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  const double median = (ms[4] + ms[5]) / 2;
  const double tflops = 4.0 * c.B * c.H * double(c.Lq) * c.Lk * c.D / (median * 1e-3) / 1e12;
  std::printf("TIME %s median=%.2f ms (min %.2f, max %.2f) %.1f TFLOP/s; PyTorch cuDNN SDPA on an H100: %.1f ms\n", label.c_str(), median,
              ms.front(), ms.back(), tflops, c.torchMs);
  std::fflush(stdout);
}

/** A head size that is not a multiple of 8 must be declined (the caller falls back), not crash. */
void checkDecline() {
  std::string why;
  Buffer x(1 << 20);
  bool ran = wan::cudnnAttention(x.p, x.p, x.p, x.p, 1, 16, 16, 1, 20, 20, 0.2f, &why);
  report(!ran && !why.empty(), "declines D=20: " + (ran ? std::string("it ran") : why));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string library = argc > 1 ? argv[1] : "libcudnn.so.9";
  const std::string only = argc > 2 ? argv[2] : "";
  try {
    check(cudaSetDevice(0), "set device");
    check(cudaStreamCreate(&wan::checkStream), "create stream");
    cudaDeviceProp prop;
    check(cudaGetDeviceProperties(&prop, 0), "device properties");
    std::printf("device: %s, %d SMs, compute capability %d.%d\n", prop.name, prop.multiProcessorCount, prop.major, prop.minor);
  } catch (const wan::CudaFailure& e) {
    report(false, std::string("setup: ") + e.what());
    std::printf("%d passed, %d failed\n", passed, failed);
    return 1;
  }

  const std::vector<std::string> candidates = {library};
  const wan::CudnnInfo& info = wan::cudnnLoad(candidates);
  std::printf("cudnnLoad(%s): available=%d version=%d library=%s error=%s\n", library.c_str(), int(info.available), info.version,
              info.library.c_str(), info.error.c_str());
  const std::string nvrtc = "libnvrtc.so." + std::to_string(CUDART_VERSION / 1000);
  std::printf("  %s: %s\n", nvrtc.c_str(), dlopen(nvrtc.c_str(), RTLD_NOW | RTLD_NOLOAD) ? "loaded" : "not loaded");
  const std::string folder = library.find('/') == std::string::npos ? "" : library.substr(0, library.rfind('/') + 1);
  for (const char* sub : {"libcudnn_graph.so.9", "libcudnn_engines_precompiled.so.9", "libcudnn_engines_runtime_compiled.so.9",
                          "libcudnn_heuristic.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9", "libcudnn_adv.so.9"}) {
    std::string state = "loaded";
    if (!dlopen(sub, RTLD_NOW | RTLD_NOLOAD)) {
      state = "not loaded";
      if (!folder.empty() && !dlopen((folder + sub).c_str(), RTLD_NOW)) state += std::string(": ") + dlerror();
    }
    std::printf("  %s: %s\n", sub, state.c_str());
  }
  std::fflush(stdout);

  const Case cases[] = {
      {"self", 2, 1000, 1000, 4, 128, 128, 1000, false, 0},
      {"odd-lengths", 2, 777, 333, 4, 128, 128, 777, false, 0},
      {"cross", 1, 3000, 512, 12, 128, 128, 3000, false, 0},
      {"umT5-d64", 1, 512, 512, 64, 64, 64, 512, false, 0},
      {"toy-d32", 2, 300, 300, 2, 32, 32, 300, false, 0},
      {"wan-1.3B-self", 1, 32760, 32760, 12, 128, 128, 64, true, 11.2},
      {"wan-14B-self", 1, 75600, 75600, 40, 128, 128, 64, true, 206},
  };
  uint64_t seed = 1;
  for (const Case& c : cases) {
    if (!only.empty() && only != c.name) continue;
    try {
      runCase(c, seed);
    } catch (const wan::CudaFailure& e) {
      report(false, std::string(c.name) + " " + shapeOf(c) + ": " + e.what());
    }
    seed += 3;
  }
  if (only.empty()) {
    try {
      checkDecline();
    } catch (const wan::CudaFailure& e) {
      report(false, std::string("declines D=20: ") + e.what());
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
