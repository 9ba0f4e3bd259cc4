// Standalone GPU check of wan::gemmFp8 (src/cuda/native/gemm-fp8.cu), no Node. From the repository root:
//
//   nvcc -std=c++17 -O2 -arch=sm_90 -I src/cuda/native test/cuda/native/gemm-fp8-check.cu src/cuda/native/gemm-fp8.cu src/cuda/native/gemm-lt.cu -lcublasLt -lcublas -o /tmp/gemm-fp8-check && /tmp/gemm-fp8-check
//
// 1. encodeE4m3 (gemm-fp8.h, the activation's rounding, shared with the host and mirrored by the mock addon) against
//    cuda_fp8.h's __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3) over all 2³² float32 bit patterns (NaN codes
//    count as equal whatever their sign bit).
// 2. gemmFp8 cases (bf16 and f32 x with outliers, each epilogue): the scratch's codes equal the host's
//    encodeE4m3(x / s_x) with s_x = amax|x|/448 computed on the host; s_x and s_w in the scratch head equal the
//    host's; D equals a double-precision reference from the decoded codes (rel L2 ≤ 4e-3, bf16 output rounding and
//    float32 accumulation; 1e-2 with fast accumulation).
// 3. Refusals: k or n not a multiple of 16 returns a reason and leaves D untouched.
// 4. TIME lines (cudaEvent, median of 10): gemmFp8 (quantize + GEMM) against gemmLt bf16 for [75600, 5120]·[5120, 5120]ᵀ
//    and [75600, 5120]·[13824, 5120]ᵀ with a bias.
// Ends with "N passed, N failed"; exit code 1 on any failure.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gemm-check-harness.h"
#include "gemm-fp8.h"

using wan::Epilogue;

namespace {

__global__ void encodeSweep(uint64_t start, uint64_t count, unsigned long long* mismatches, unsigned* firstBad) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < count; i += uint64_t(gridDim.x) * blockDim.x) {
    uint32_t bits = uint32_t(start + i);
    float v = __uint_as_float(bits);
    uint8_t ours = wan::encodeE4m3(v);
    uint8_t theirs = uint8_t(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
    bool nan = (ours & 0x7f) == 0x7f && (theirs & 0x7f) == 0x7f;
    if (ours != theirs && !nan) {
      if (atomicAdd(mismatches, 1ull) == 0) *firstBad = bits;
    }
  }
}

float decodeE4m3(uint8_t b) {
  int e = (b >> 3) & 15, m = b & 7;
  float mag = (e == 15 && m == 7) ? NAN : e == 0 ? std::ldexp(float(m), -9) : std::ldexp(1.0f + m / 8.0f, e - 7);
  return (b & 0x80) ? -mag : mag;
}

float bf16ToFloat(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t floatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/** Deterministic values in [−2, 2), one in 61 ×16 (outliers), rounded to bf16 (so bf16 and f32 x hold the same values). */
std::vector<float> randomValues(size_t n, uint32_t seed, float scale) {
  std::vector<float> v(n);
  uint32_t a = seed * 2654435761u;
  for (size_t i = 0; i < n; i++) {
    a = a * 1664525u + 1013904223u;
    float x = (float(a) / 4294967296.0f * 4.0f - 2.0f) * scale;
    if (i % 61 == 7) x *= 16;
    v[i] = bf16ToFloat(floatToBf16(x));
  }
  return v;
}

double gelu(double x) { return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

void gemmCase(const char* name, int64_t m, int64_t n, int64_t k, bool bf16x, Epilogue e, bool fast) {
  const bool withBias = e == Epilogue::Bias || e == Epilogue::GeluBias, useGelu = e == Epilogue::Gelu || e == Epilogue::GeluBias;
  std::vector<float> x = randomValues(size_t(m * k), 11 + uint32_t(m), 1.0f), wv = randomValues(size_t(n * k), 12 + uint32_t(n), 0.02f);
  std::vector<float> bias = randomValues(size_t(n), 13, 1.0f);
  float wamax = 0;
  for (float v : wv) wamax = std::max(wamax, std::fabs(v));
  const float sw = wamax / 448.0f;
  std::vector<uint8_t> wq(wv.size());
  for (size_t i = 0; i < wv.size(); i++) wq[i] = wan::encodeE4m3(wv[i] / sw);
  std::vector<uint16_t> xh(x.size()), bh(bias.size());
  for (size_t i = 0; i < x.size(); i++) xh[i] = floatToBf16(x[i]);
  for (size_t i = 0; i < bias.size(); i++) bh[i] = floatToBf16(bias[i]);

  void *dx, *dw, *dd, *db, *ds;
  const size_t scratchBytes = size_t(wan::fp8ScratchBytes(m, k));
  cuda(cudaMalloc(&dx, x.size() * 4), "malloc x");
  cuda(cudaMalloc(&dw, wq.size()), "malloc w");
  cuda(cudaMalloc(&dd, size_t(m * n) * 2), "malloc d");
  cuda(cudaMalloc(&db, size_t(n) * 2), "malloc bias");
  cuda(cudaMalloc(&ds, scratchBytes), "malloc scratch");
  if (bf16x) cuda(cudaMemcpy(dx, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice), "upload x");
  else cuda(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice), "upload x");
  cuda(cudaMemcpy(dw, wq.data(), wq.size(), cudaMemcpyHostToDevice), "upload w");
  cuda(cudaMemcpy(db, bh.data(), bh.size() * 2, cudaMemcpyHostToDevice), "upload bias");
  std::string label = std::string(name) + " [" + std::to_string(m) + "," + std::to_string(k) + "]x[" + std::to_string(n) + "," + std::to_string(k) +
                      "]T x " + (bf16x ? "bf16" : "f32") + " epilogue " + std::to_string(int(e)) + (fast ? " fast" : "");
  try {
    std::string why = wan::gemmFp8(dx, bf16x ? wan::BF16 : wan::F32, static_cast<const uint8_t*>(dw), sw, dd, m, n, k, withBias ? db : nullptr, e,
                                   fast, ds);
    cuda(cudaStreamSynchronize(wan::gStream), "gemmFp8");
    if (!why.empty()) {
      report(false, label + ": refused: " + why);
    } else {
      std::vector<uint8_t> scratch(scratchBytes);
      std::vector<uint16_t> d(size_t(m * n));
      cuda(cudaMemcpy(scratch.data(), ds, scratchBytes, cudaMemcpyDeviceToHost), "download scratch");
      cuda(cudaMemcpy(d.data(), dd, d.size() * 2, cudaMemcpyDeviceToHost), "download d");
      float amax = 0;
      for (float v : x) amax = std::max(amax, std::fabs(v));
      float sx = amax / 448.0f;
      if (sx == 0) sx = 1;
      float head[3];
      std::memcpy(&head[0], scratch.data(), 4);
      std::memcpy(&head[1], scratch.data() + wan::FP8_HEAD_SX, 4);
      std::memcpy(&head[2], scratch.data() + wan::FP8_HEAD_SW, 4);
      size_t badCodes = 0;
      const uint8_t* codes = scratch.data() + wan::FP8_SCRATCH_HEAD;
      for (size_t i = 0; i < x.size(); i++) badCodes += codes[i] != wan::encodeE4m3(x[i] / sx);
      double num = 0, den = 0;
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
          double s = 0;
          for (int64_t l = 0; l < k; l++) s += double(decodeE4m3(codes[i * k + l])) * decodeE4m3(wq[j * k + l]);
          double v = double(sx * sw) * s + (withBias ? bf16ToFloat(bh[j]) : 0.0);
          if (useGelu) v = gelu(v);
          double diff = bf16ToFloat(d[i * n + j]) - v;
          num += std::isfinite(diff) ? diff * diff : INFINITY;
          den += v * v;
        }
      double rel = std::sqrt(num / std::max(den, 1e-30)), tol = fast ? 1e-2 : 4e-3;
      bool ok = badCodes == 0 && head[1] == sx && head[2] == sw && rel <= tol;
      char detail[256];
      std::snprintf(detail, sizeof detail, ": rel_l2=%.3e (tol %.0e) wrong codes=%zu s_x=%g (host %g) s_w=%g (host %g)", rel, tol, badCodes, head[1], sx,
                    head[2], sw);
      report(ok, label + detail);
    }
  } catch (const std::exception& ex) {
    report(false, label + ": threw " + ex.what());
  }
  for (void* p : {dx, dw, dd, db, ds}) cudaFree(p);
}

void refusal(int64_t k, int64_t n) {
  void *dx, *dw, *dd, *ds;
  cuda(cudaMalloc(&dx, size_t(32 * k) * 2), "malloc");
  cuda(cudaMalloc(&dw, size_t(n * k)), "malloc");
  cuda(cudaMalloc(&dd, size_t(32 * n) * 2), "malloc");
  cuda(cudaMalloc(&ds, size_t(wan::fp8ScratchBytes(32, k))), "malloc");
  cuda(cudaMemset(dd, 0xff, size_t(32 * n) * 2), "memset");
  std::string why = wan::gemmFp8(dx, wan::BF16, static_cast<const uint8_t*>(dw), 1.0f, dd, 32, n, k, nullptr, Epilogue::None, false, ds);
  cuda(cudaStreamSynchronize(wan::gStream), "sync");
  std::vector<uint8_t> d(size_t(32 * n) * 2);
  cuda(cudaMemcpy(d.data(), dd, d.size(), cudaMemcpyDeviceToHost), "download");
  bool untouched = std::all_of(d.begin(), d.end(), [](uint8_t b) { return b == 0xff; });
  report(why.find("multiples of 16") != std::string::npos && untouched,
         "refusal k=" + std::to_string(k) + " n=" + std::to_string(n) + ": \"" + why + "\"" + (untouched ? "" : " (D was written)"));
  for (void* p : {dx, dw, dd, ds}) cudaFree(p);
}

template <typename F>
float medianMs(F f) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  f();
  f();
  std::vector<float> t;
  for (int i = 0; i < 10; i++) {
    cudaEventRecord(a, wan::gStream);
    f();
    cudaEventRecord(b, wan::gStream);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void timeShape(int64_t m, int64_t n, int64_t k) {
  void *dx, *dw8, *dw16, *dd, *db, *ds;
  cuda(cudaMalloc(&dx, size_t(m * k) * 2), "malloc");
  cuda(cudaMalloc(&dw8, size_t(n * k)), "malloc");
  cuda(cudaMalloc(&dw16, size_t(n * k) * 2), "malloc");
  cuda(cudaMalloc(&dd, size_t(m * n) * 2), "malloc");
  cuda(cudaMalloc(&db, size_t(n) * 2), "malloc");
  cuda(cudaMalloc(&ds, size_t(wan::fp8ScratchBytes(m, k))), "malloc");
  // bf16 0x3c00 = 0.0078125, e4m3 0x30 = 1: finite operands
  cuda(cudaMemset(dx, 0x3c, size_t(m * k) * 2), "memset");
  cuda(cudaMemset(dw8, 0x30, size_t(n * k)), "memset");
  cuda(cudaMemset(dw16, 0x3c, size_t(n * k) * 2), "memset");
  cuda(cudaMemset(db, 0, size_t(n) * 2), "memset");
  try {
    std::string why;
    float fp8 = medianMs([&] { why = wan::gemmFp8(dx, wan::BF16, static_cast<const uint8_t*>(dw8), 1.0f, dd, m, n, k, db, Epilogue::Bias, false, ds); });
    float fast = medianMs([&] { wan::gemmFp8(dx, wan::BF16, static_cast<const uint8_t*>(dw8), 1.0f, dd, m, n, k, db, Epilogue::Bias, true, ds); });
    float bf16 = medianMs([&] {
      wan::gemmLt(dx, dw16, dd, 1, m, n, k, false, true, 0, 0, 0, wan::BF16, db, wan::BF16, Epilogue::Bias);
    });
    auto tf = [&](float ms) { return 2.0 * double(m) * double(n) * double(k) / (ms * 1e-3) / 1e12; };
    std::printf("TIME [%lld,%lld]x[%lld,%lld]T + bias: bf16 gemmLt %.3f ms (%.0f TFLOP/s); gemmFp8 (amax + quantize + GEMM) %.3f ms (%.0f); fast accumulation %.3f ms (%.0f)%s%s\n",
                (long long)m, (long long)k, (long long)n, (long long)k, bf16, tf(bf16), fp8, tf(fp8), fast, tf(fast), why.empty() ? "" : " refused: ",
                why.c_str());
  } catch (const std::exception& ex) {
    report(false, std::string("time: threw ") + ex.what());
  }
  cuda(cudaStreamSynchronize(wan::gStream), "sync");
  for (void* p : {dx, dw8, dw16, dd, db, ds}) cudaFree(p);
}

}  // namespace

int main() {
  const cudaDeviceProp prop = startHarness();
  std::printf("device %s (sm_%d%d), cuBLASLt %zu\n", prop.name, prop.major, prop.minor, cublasLtGetVersion());

  {
    unsigned long long* bad;
    unsigned* first;
    cuda(cudaMallocManaged(&bad, sizeof(*bad)), "managed");
    cuda(cudaMallocManaged(&first, sizeof(*first)), "managed");
    *bad = 0;
    *first = 0;
    encodeSweep<<<prop.multiProcessorCount * 16, 256>>>(0, uint64_t(1) << 32, bad, first);
    cuda(cudaDeviceSynchronize(), "encode sweep");
    char line[200];
    std::snprintf(line, sizeof line, "encodeE4m3 = __nv_cvt_float_to_fp8(satfinite, e4m3) on all 2^32 float32 patterns: %llu mismatches (first 0x%08x)", *bad,
                  *first);
    report(*bad == 0, line);
    cudaFree(bad);
    cudaFree(first);
  }

  gemmCase("small", 64, 48, 96, true, Epilogue::None, false);
  gemmCase("small", 64, 48, 96, false, Epilogue::Bias, false);
  gemmCase("small", 77, 64, 128, true, Epilogue::GeluBias, false);
  gemmCase("small", 77, 64, 128, true, Epilogue::Gelu, false);
  gemmCase("odd m, k = 16", 33, 32, 16, false, Epilogue::Bias, false);
  gemmCase("medium", 512, 1024, 1536, true, Epilogue::Bias, false);
  gemmCase("medium", 512, 1024, 1536, true, Epilogue::Bias, true);
  gemmCase("medium", 300, 512, 5120, true, Epilogue::GeluBias, false);
  refusal(40, 32);
  refusal(32, 24);

  timeShape(75600, 5120, 5120);
  timeShape(75600, 13824, 5120);

  cuda(cudaStreamSynchronize(wan::gStream), "final synchronize");
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
