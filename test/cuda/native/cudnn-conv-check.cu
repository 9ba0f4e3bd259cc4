// Standalone GPU check of src/cuda/native/cudnn-conv.cpp (no Node): loads cuDNN, compares cudnnConv
// against a direct fp64-accumulated reference convolution of the same inputs, checks refusals, and
// times the Wan2.1 VAE decoder's largest convolutions at 480×832. Every case prints PASS or FAIL
// with its reason and cuDNN's plan; the last line is "N passed, N failed" (exit status 1 on failure).
//
// Build and run from the repository root, with the python3 of the venv holding PyTorch's cuDNN (three lines):
//   CUDNN=$(python3 -c "import nvidia.cudnn as m; print(m.__path__[0])")
//   nvcc -std=c++17 -O3 -arch=sm_90 -x cu -I src/cuda/native -I $CUDNN/include -DWAN_HAVE_CUDNN -o /tmp/cudnn-conv-check test/cuda/native/cudnn-conv-check.cu src/cuda/native/cudnn-conv.cpp src/cuda/native/cudnn-graph.cpp src/cuda/native/cudnn-loader.cpp src/cuda/native/elementwise.cu -ldl
//   /tmp/cudnn-conv-check $CUDNN
#include <cuda_bf16.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "common.cuh"
#include "cudnn-conv.h"
#include "cudnn-loader.h"

// What cudnn-conv.cpp and cudnn-loader.cpp take from addon.cpp: one non-blocking stream (so work that cuDNN queued
// on the legacy default stream would not wait for it) and CUDA's stream-ordered pool.
namespace wan {
namespace {
cudaStream_t theStream = nullptr;
int theSms = 0;
}  // namespace

cudaStream_t stream() { return theStream; }
int smCount() { return theSms; }

void* deviceAlloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  check(cudaMallocAsync(&p, bytes, theStream), "deviceAlloc");
  return p;
}

void deviceFree(void* p) {
  if (p) check(cudaFreeAsync(p, theStream), "deviceFree");
}
}  // namespace wan

using wan::Conv;
using wan::DType;

namespace {

int passed = 0, failed = 0, notes = 0;

void report(bool ok, const std::string& line) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", line.c_str());
  std::fflush(stdout);
  (ok ? passed : failed)++;
}

const char* typeName(DType t) { return t == wan::BF16 ? "bf16" : t == wan::F32 ? "f32" : "other"; }

/** Geometry of x [n, d, h, w, c] → y [n, od, oh, ow, o]: out = ⌊(in + lead + tail − dil·(k − 1) − 1) / s⌋ + 1 per axis. */
Conv geometry(int64_t n, int64_t d, int64_t h, int64_t w, int64_t c, int64_t o, std::array<int64_t, 3> k,
              std::array<int64_t, 3> s = {1, 1, 1}, std::array<int64_t, 3> lead = {0, 0, 0}, std::array<int64_t, 3> tail = {0, 0, 0},
              std::array<int64_t, 3> dil = {1, 1, 1}) {
  const int64_t in[3] = {d, h, w};
  int64_t out[3];
  for (int i = 0; i < 3; i++) out[i] = (in[i] + lead[i] + tail[i] - dil[i] * (k[i] - 1) - 1) / s[i] + 1;
  return Conv{n, d, h, w, c, k[0], k[1], k[2], o, out[0], out[1], out[2], s[0], s[1], s[2], lead[0], lead[1], lead[2], dil[0], dil[1], dil[2]};
}

std::string shape(const Conv& c) {
  char b[256];
  std::snprintf(b, sizeof b, "x [%lld, %lld, %lld, %lld, %lld] * w [%lld, %lld, %lld, %lld, %lld] -> y [%lld, %lld, %lld, %lld, %lld]",
                (long long)c.n, (long long)c.d, (long long)c.h, (long long)c.w, (long long)c.c, (long long)c.o, (long long)c.kd,
                (long long)c.kh, (long long)c.kw, (long long)c.c, (long long)c.n, (long long)c.od, (long long)c.oh, (long long)c.ow,
                (long long)c.o);
  return b;
}

__device__ uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/**
 * stored[i] = v (bf16-rounded when bf16), ref[i] = the same value as float: v = ±(0.1 + 0.9·u), u uniform in [0, 1),
 * every 101st value ×8 (outliers); never 0.
 */
__global__ void fillInputs(float* ref, void* stored, int64_t n, uint64_t seed, bool bf16) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t r = mix(seed * 0x100000001B3ull + uint64_t(i));
    float u = float(r >> 40) * (1.0f / 16777216.0f);
    float v = (0.1f + 0.9f * u) * ((r >> 8) & 1 ? -1.0f : 1.0f);
    if (i % 101 == 0) v *= 8.0f;
    if (bf16) {
      __nv_bfloat16 b = __float2bfloat16_rn(v);
      static_cast<__nv_bfloat16*>(stored)[i] = b;
      ref[i] = __bfloat162float(b);
    } else {
      static_cast<float*>(stored)[i] = v;
      ref[i] = v;
    }
  }
}

/**
 * ref[i] = Σ_{a,b,e,ci} x[n, od·sd − pd + a·dd, oh·sh − ph + b·dh, ow·sw − pw + e·dw, ci] · w[o, a, b, e, ci] (zero outside x),
 * accumulated in fp64, for output element (n, od, oh, ow, o) at flat index (i·step) mod total, i < count.
 */
__global__ void referenceConv(const float* x, const float* w, float* ref, Conv c, int64_t count, int64_t step, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = (i * step) % total;
    const int64_t o = r % c.o;
    r /= c.o;
    const int64_t ow = r % c.ow;
    r /= c.ow;
    const int64_t oh = r % c.oh;
    r /= c.oh;
    const int64_t od = r % c.od;
    const int64_t n = r / c.od;
    double acc = 0.0;
    for (int64_t a = 0; a < c.kd; a++) {
      const int64_t id = od * c.sd - c.pd + a * c.dd;
      if (id < 0 || id >= c.d) continue;
      for (int64_t b = 0; b < c.kh; b++) {
        const int64_t ih = oh * c.sh - c.ph + b * c.dh;
        if (ih < 0 || ih >= c.h) continue;
        for (int64_t e = 0; e < c.kw; e++) {
          const int64_t iw = ow * c.sw - c.pw + e * c.dw;
          if (iw < 0 || iw >= c.w) continue;
          const float* xp = x + (((n * c.d + id) * c.h + ih) * c.w + iw) * c.c;
          const float* wp = w + (((o * c.kd + a) * c.kh + b) * c.kw + e) * c.c;
          for (int64_t ci = 0; ci < c.c; ci++) acc += double(xp[ci]) * double(wp[ci]);
        }
      }
    }
    ref[i] = float(acc);
  }
}

/** out[i] = y[(i·step) mod total] as float. */
__global__ void gatherOutputs(const void* y, bool bf16, float* out, int64_t count, int64_t step, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = (i * step) % total;
    out[i] = bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(y)[r]) : static_cast<const float*>(y)[r];
  }
}

/** Holds stream() for about `ms` milliseconds. */
__global__ void hold(int ms) {
  for (int i = 0; i < ms; i++) __nanosleep(1000000);
}

unsigned blocksFor(int64_t n) { return unsigned(std::min<int64_t>((n + 255) / 256, int64_t(wan::smCount()) * 32)); }

/** One cudaMalloc'd buffer, freed with the case. */
struct Buffer {
  void* p = nullptr;
  explicit Buffer(size_t bytes) { wan::check(cudaMalloc(&p, bytes), "cudaMalloc"); }
  ~Buffer() { cudaFree(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  float* f() const { return static_cast<float*>(p); }
};

/**
 * Runs cudnnConv on fresh inputs and compares `count` outputs (all when count is 0) with the reference; then, when
 * `timed`, times 10 more calls. x and w are written on stream() only after a 20 ms hold, and x and y start as NaN:
 * a convolution that cuDNN queued elsewhere reads NaN and fails the comparison. A refusal fails unless `mayRefuse`
 * (then it prints a NOTE: the addon falls back to its im2col path).
 */
void runCase(const std::string& name, const Conv& c, DType type, int64_t count, bool timed, bool mayRefuse) {
  const bool bf16 = type == wan::BF16;
  const size_t elem = bf16 ? 2 : 4;
  const int64_t xn = c.n * c.d * c.h * c.w * c.c, wn = c.o * c.kd * c.kh * c.kw * c.c, yn = c.n * c.od * c.oh * c.ow * c.o;
  const std::string label = name + " " + typeName(type);
  if (count == 0 || count > yn) count = yn;
  int64_t step = count == yn ? 1 : 1000003;
  while (std::gcd(step, yn) != 1) step += 2;

  Buffer x(size_t(xn) * elem), w(size_t(wn) * elem), y(size_t(yn) * elem);
  Buffer xRef(size_t(xn) * 4), wRef(size_t(wn) * 4), ref(size_t(count) * 4), got(size_t(count) * 4);
  wan::check(cudaMemset(x.p, 0xFF, size_t(xn) * elem), "cudaMemset x");
  wan::check(cudaMemset(y.p, 0xFF, size_t(yn) * elem), "cudaMemset y");
  wan::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");

  cudaStream_t s = wan::stream();
  hold<<<1, 1, 0, s>>>(20);
  fillInputs<<<blocksFor(xn), 256, 0, s>>>(xRef.f(), x.p, xn, 1, bf16);
  fillInputs<<<blocksFor(wn), 256, 0, s>>>(wRef.f(), w.p, wn, 2, bf16);
  wan::checkLaunch("fillInputs");
  std::string why;
  if (!wan::cudnnConv(x.p, w.p, y.p, c, type, &why)) {
    wan::check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    if (mayRefuse) {
      std::printf("NOTE %s: refused (the addon falls back to im2col): %s | %s\n", label.c_str(), why.c_str(), shape(c).c_str());
      notes++;
    } else {
      report(false, label + ": refused: " + why + " | " + shape(c));
    }
    return;
  }
  referenceConv<<<blocksFor(count), 256, 0, s>>>(xRef.f(), wRef.f(), ref.f(), c, count, step, yn);
  gatherOutputs<<<blocksFor(count), 256, 0, s>>>(y.p, bf16, got.f(), count, step, yn);
  wan::checkLaunch("referenceConv/gatherOutputs");
  wan::check(cudaStreamSynchronize(s), "cudaStreamSynchronize after the convolution");

  std::vector<float> r(static_cast<size_t>(count)), g(static_cast<size_t>(count));
  wan::check(cudaMemcpy(r.data(), ref.p, size_t(count) * 4, cudaMemcpyDeviceToHost), "copy reference");
  wan::check(cudaMemcpy(g.data(), got.p, size_t(count) * 4, cudaMemcpyDeviceToHost), "copy output");
  double diff2 = 0, ref2 = 0, maxAbs = 0;
  int64_t nonFinite = 0;
  for (size_t i = 0; i < r.size(); i++) {
    if (!std::isfinite(g[i])) {
      nonFinite++;
      continue;
    }
    double d = double(g[i]) - double(r[i]);
    diff2 += d * d;
    ref2 += double(r[i]) * double(r[i]);
    maxAbs = std::max(maxAbs, std::fabs(d));
  }
  const double rel = std::sqrt(diff2 / ref2), tolerance = bf16 ? 1e-2 : 1e-5;
  char line[512];
  std::snprintf(line, sizeof line, "%s rel_l2=%.3g max_abs=%.3g (%lld of %lld outputs%s) | %s | %s", label.c_str(), rel, maxAbs,
                (long long)count, (long long)yn, nonFinite ? ", NaN/Inf: unwritten or computed before its inputs (wrong stream?)" : "",
                shape(c).c_str(), wan::cudnnConvPlan(c, type).c_str());
  report(nonFinite == 0 && rel <= tolerance, line);
  if (!timed) return;

  cudaEvent_t start, stop;
  wan::check(cudaEventCreate(&start), "cudaEventCreate");
  wan::check(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<float> ms;
  for (int i = 0; i < 10; i++) {
    wan::check(cudaEventRecord(start, s), "cudaEventRecord");
    if (!wan::cudnnConv(x.p, w.p, y.p, c, type, &why)) throw wan::CudaFailure("refused on a repeat call: " + why);
    wan::check(cudaEventRecord(stop, s), "cudaEventRecord");
    wan::check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    wan::check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  const double median = (ms[4] + ms[5]) / 2;
  const double flops = 2.0 * double(c.n * c.od * c.oh * c.ow * c.o) * double(c.kd * c.kh * c.kw * c.c);
  std::printf("TIME %s: median %.3f ms (min %.3f, max %.3f), %.1f TFLOP/s\n", label.c_str(), median, ms.front(), ms.back(),
              flops / (median * 1e-3) / 1e12);
  std::fflush(stdout);
}

/** Expects cudnnConv to refuse (false with a reason) without queueing anything. */
void refusalCase(const std::string& name, const Conv& c, DType type) {
  std::string why;
  const bool queued = wan::cudnnConv(nullptr, nullptr, nullptr, c, type, &why);
  report(!queued && !why.empty(), name + ": " + (queued ? "queued, expected a refusal" : "refused: " + why));
}

/** Runs one case, turning a thrown CUDA or cuDNN failure into a FAIL. */
template <typename F>
void guarded(const std::string& name, F f) {
  try {
    f();
  } catch (const std::exception& e) {
    report(false, name + ": threw: " + e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("CUDNN");
  const std::string dir = argc > 1 ? argv[1] : env ? env : "";
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess || cudaStreamCreateWithFlags(&wan::theStream, cudaStreamNonBlocking) != cudaSuccess) {
    std::printf("no usable CUDA device\n0 passed, 1 failed\n");
    return 1;
  }
  wan::theSms = prop.multiProcessorCount;
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);

  const std::string library = dir.empty() ? "libcudnn.so.9" : dir + "/lib/libcudnn.so.9";
  const wan::CudnnInfo& info = wan::cudnnLoad({library});
  std::printf("cudnnLoad(%s): available=%d version=%d library=%s error=%s\n", library.c_str(), int(info.available), info.version,
              info.library.c_str(), info.error.empty() ? "-" : info.error.c_str());
  report(info.available, "cudnnLoad");
  if (!info.available) {
    std::printf("%d passed, %d failed\n", passed, failed);
    return 1;
  }

  struct Named {
    const char* name;
    Conv c;
  };
  const Named cases[] = {
      {"3x3x3 C32->O48", geometry(1, 3, 20, 24, 32, 48, {3, 3, 3})},
      {"3x3x3 C3->O96 (VAE first conv)", geometry(1, 3, 20, 24, 3, 96, {3, 3, 3})},
      {"3x3x3 C96->O3 (VAE last conv)", geometry(1, 3, 20, 24, 96, 3, {3, 3, 3})},
      {"1x1x1 C48->O32", geometry(1, 2, 20, 24, 48, 32, {1, 1, 1})},
      {"3x1x1 stride (2,1,1) (time downsample)", geometry(1, 5, 12, 16, 32, 32, {3, 1, 1}, {2, 1, 1})},
      {"1x3x3 stride (1,2,2) N=2 (spatial downsample)", geometry(2, 2, 21, 25, 32, 32, {1, 3, 3}, {1, 2, 2})},
      {"1x3x3 depth 1 (2-D)", geometry(1, 1, 20, 24, 32, 32, {1, 3, 3})},
      {"3x3x3 symmetric pad 1", geometry(1, 3, 12, 16, 32, 32, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1})},
      {"3x3x3 dilation (1,2,2)", geometry(1, 3, 16, 20, 16, 16, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {0, 0, 0}, {1, 2, 2})},
  };
  for (DType type : {wan::F32, wan::BF16}) {
    for (const Named& k : cases) guarded(k.name, [&] { runCase(k.name, k.c, type, 0, false, false); });
  }

  guarded("refusals", [] {
    refusalCase("refuses asymmetric pad (leading 1, trailing 0)", geometry(1, 3, 20, 24, 32, 32, {3, 3, 3}, {1, 1, 1}, {0, 1, 1}), wan::BF16);
    refusalCase("refuses type I32", geometry(1, 3, 20, 24, 32, 32, {3, 3, 3}), wan::I32);
  });

  // Wan2.1 VAE decoder at 480×832: 3×3×3 convolutions over a causal cache of 2 frames + 1 (D=3, od=1) or + 4 (D=6, od=4),
  // spatially pre-padded by 1 as the VAE does (so no cuDNN padding); outputs checked on 4096 sampled elements. fp32 may be
  // refused: its FMA algorithm can need more than the 1 GiB workspace bound (D=6 at 96 channels needs 1.5 GB on cuDNN 9.19).
  const Named timings[] = {
      {"VAE 96ch 480x832 D=3", geometry(1, 3, 482, 834, 96, 96, {3, 3, 3})},
      {"VAE 96ch 480x832 D=6", geometry(1, 6, 482, 834, 96, 96, {3, 3, 3})},
      {"VAE 192ch 240x416 D=3", geometry(1, 3, 242, 418, 192, 192, {3, 3, 3})},
      {"VAE 192ch 240x416 D=6", geometry(1, 6, 242, 418, 192, 192, {3, 3, 3})},
  };
  for (DType type : {wan::BF16, wan::F32}) {
    for (const Named& k : timings) guarded(k.name, [&] { runCase(k.name, k.c, type, 4096, true, type == wan::F32); });
  }

  if (notes) std::printf("%d NOTE(s): refusals allowed for fp32 timing cases\n", notes);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
