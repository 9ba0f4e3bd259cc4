// Standalone GPU check of wan::gemmLt (src/cuda/native/gemm-lt.cu), no Node. From the repository root:
//
//   nvcc -std=c++17 -O2 -arch=sm_90 -I src/cuda/native test/cuda/native/gemm-lt-check.cu src/cuda/native/gemm-lt.cu -lcublasLt -lcublas -o /tmp/gemm-lt-check && /tmp/gemm-lt-check
//
// Each case fills A and B (bf16) and the bias with seeded random values on the device (uniform in [-1, 1), about one
// element in a thousand an outlier of magnitude ~50; biases uniform in [-2, 2)), runs gemmLt, and compares D with a
// reference computed by a naive kernel from the same stored inputs, accumulating in double:
//   ref_b[i, j] = epilogue(Σ_l op(A_b)[i, l]·op(B_b)[l, j]),  GELU(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
// It prints one line per case:
//   PASS|FAIL <case> max_rel_err=E (‖D−ref‖/‖ref‖) max_abs_err=A [tol T] [diagnostics]
// E is over the checked rows (all rows, or `rows` evenly spaced ones for the Wan shapes). Tolerances: 1e-2 for a bf16 D
// (its rounding), 1e-4 for an f32 D, 1e-3 for an f32 D with a GELU epilogue (an approximate tanh in the epilogue
// stays within it; the product itself is held to 1e-4 by the None / Bias cases of the same shapes). A case also fails
// if D holds a non-finite value or if gemmLt wrote outside its D matrices (D buffers are pre-filled with 0xFF bytes
// and every byte outside the matrices is checked). "gelu-form" measures which GELU the library's epilogue computes;
// cases named "throws:" must raise a wan::CudaFailure containing the quoted text. Then the three Wan Linear shapes
// are timed (median of 20, cudaEvent). The last line is "N passed, N failed"; the exit code is 1 on any failure.
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "gemm-check-harness.h"
#include "gemm-lt.h"

using wan::BF16;
using wan::DType;
using wan::Epilogue;
using wan::F32;

namespace {

const char* typeName(DType t) { return t == BF16 ? "bf16" : "f32"; }
const char* epiName(Epilogue e) {
  return e == Epilogue::None ? "None" : e == Epilogue::Bias ? "Bias" : e == Epilogue::Gelu ? "Gelu" : "GeluBias";
}
bool epiBias(Epilogue e) { return e == Epilogue::Bias || e == Epilogue::GeluBias; }
bool epiGelu(Epilogue e) { return e == Epilogue::Gelu || e == Epilogue::GeluBias; }

uint16_t bf16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float bf16Value(uint16_t bits) {
  uint32_t u = uint32_t(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

__host__ __device__ double geluTanh(double x) { return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

__device__ __forceinline__ double load(const void* p, int64_t i, bool bf16) {
  return bf16 ? double(__bfloat162float(static_cast<const __nv_bfloat16*>(p)[i])) : double(static_cast<const float*>(p)[i]);
}

__device__ uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/** p[i] = scale·u, u uniform in [-1, 1); with `outliers`, one element in 997 becomes ±(37.5 … 62.5) instead. */
__global__ void randomKernel(void* p, int64_t count, bool bf16, uint64_t seed, float scale, bool outliers) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t h = mix(seed * 0x100000001B3ull + uint64_t(i));
    float u = float(h >> 40) * (1.0f / 8388608.0f) - 1.0f;
    float v = scale * u;
    if (outliers && (h & 0xFFFFF) % 997 == 0) v = (u < 0 ? -50.0f : 50.0f) * (0.75f + 0.5f * std::fabs(u));
    if (bf16) {
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v);
    } else {
      static_cast<float*>(p)[i] = v;
    }
  }
}

/** ref[(b·R + r)·n + j] = epilogue(Σ_l op(A_b)[rows[r], l]·op(B_b)[l, j]) in double; a, b point at matrix 0. */
__global__ void referenceKernel(const __nv_bfloat16* a, const __nv_bfloat16* b, const void* bias, bool biasBf16, double* ref, const int64_t* rows,
                                int64_t R, int64_t batch, int64_t m, int64_t n, int64_t k, bool transA, bool transB, int64_t sA, int64_t sB,
                                bool gelu) {
  int64_t total = batch * R * n;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    int64_t j = t % n, r = (t / n) % R, bi = t / (n * R), i = rows[r];
    const __nv_bfloat16* ab = a + bi * sA;
    const __nv_bfloat16* bb = b + bi * sB;
    double s = 0;
    for (int64_t l = 0; l < k; l++) {
      double x = __bfloat162float(transA ? ab[l * m + i] : ab[i * k + l]);
      double y = __bfloat162float(transB ? bb[j * k + l] : bb[l * n + j]);
      s += x * y;
    }
    if (bias) s += load(bias, j, biasBf16);
    ref[t] = gelu ? geluTanh(s) : s;
  }
}

/** got[(b·R + r)·n + j] = D_b[rows[r], j] as double; d points at matrix 0. */
__global__ void gatherKernel(const void* d, bool bf16, double* got, const int64_t* rows, int64_t R, int64_t batch, int64_t n, int64_t sD) {
  int64_t total = batch * R * n;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    int64_t j = t % n, r = (t / n) % R, bi = t / (n * R);
    got[t] = load(d, bi * sD + rows[r] * n + j, bf16);
  }
}

/** Counts the elements of the whole D buffer outside the batch's D matrices whose bytes are no longer all 0xFF. */
__global__ void strayKernel(const void* buf, bool bf16, int64_t total, int64_t off, int64_t batch, int64_t m, int64_t n, int64_t sD,
                            unsigned long long* stray) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    int64_t rel = e - off;
    bool inside = false;
    if (rel >= 0 && batch > 0) {
      int64_t bi = sD > 0 ? rel / sD : 0;
      inside = bi < batch && rel - bi * sD < m * n;
    }
    if (inside) continue;
    bool intact = bf16 ? static_cast<const uint16_t*>(buf)[e] == 0xFFFFu : static_cast<const uint32_t*>(buf)[e] == 0xFFFFFFFFu;
    if (!intact) atomicAdd(stray, 1ull);
  }
}

unsigned gridOf(int64_t n) { return unsigned(std::min<int64_t>((n + 255) / 256, int64_t(wan::gSms) * 32)) + (n == 0 ? 1 : 0); }

/** Device buffer of `count` elements of a stored type (freed by the harness). */
struct Buffer {
  void* p = nullptr;
  int64_t count = 0;
  int bytes = 2;
  Buffer(int64_t n, DType t) : count(n), bytes(t == BF16 ? 2 : 4) { cuda(cudaMalloc(&p, size_t(std::max<int64_t>(n, 1)) * bytes), "cudaMalloc"); }
  ~Buffer() {
    cudaStreamSynchronize(wan::gStream);
    cudaFree(p);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  char* at(int64_t offset) const { return static_cast<char*>(p) + offset * bytes; }
  void random(uint64_t seed, float scale, bool outliers) {
    randomKernel<<<gridOf(count), 256, 0, wan::gStream>>>(p, count, bytes == 2, seed, scale, outliers);
    cuda(cudaGetLastError(), "randomKernel");
  }
};

struct Case {
  std::string name;
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool transA = false, transB = false;
  int64_t strideA = -1, strideB = -1, strideD = -1;  // -1: packed (m·k, k·n, m·n)
  DType dType = BF16, biasType = BF16;
  Epilogue epi = Epilogue::None;
  int64_t offA = 0, offB = 0, offD = 0, offBias = 0;  // element offsets into 256-byte aligned buffers
  int64_t rows = 0;                                   // rows checked per matrix, evenly spaced (0: all)
  bool repeat = false;                                // first run with a decoy bias: the cached plan must take the new pointer

  Case(std::string name, int64_t m, int64_t n, int64_t k) : name(std::move(name)), m(m), n(n), k(k) {}
  Case& batched(int64_t count) { return batch = count, *this; }
  Case& trans(bool a, bool b) { return transA = a, transB = b, *this; }
  Case& strides(int64_t a, int64_t b, int64_t d) { return strideA = a, strideB = b, strideD = d, *this; }
  Case& out(DType d) { return dType = d, biasType = d, *this; }
  Case& epilogue(Epilogue e) { return epi = e, *this; }
  Case& offsets(int64_t a, int64_t b, int64_t d, int64_t bias) { return offA = a, offB = b, offD = d, offBias = bias, *this; }
  Case& sample(int64_t count) { return rows = count, *this; }
  Case& repeated() { return repeat = true, *this; }
};

std::string shape(const Case& c) {
  char s[256];
  std::snprintf(s, sizeof s, "[batch %lld, %lldx%lldx%lld, %s%s, D %s%s%s, %s]", (long long)c.batch, (long long)c.m, (long long)c.n, (long long)c.k,
                c.transA ? "T" : "N", c.transB ? "T" : "N", typeName(c.dType), epiBias(c.epi) ? ", bias " : "",
                epiBias(c.epi) ? typeName(c.biasType) : "", epiName(c.epi));
  return s;
}

void runCase(const Case& c) {
  const std::string label = c.name + " " + shape(c);
  const int64_t sA = c.strideA >= 0 ? c.strideA : c.m * c.k, sB = c.strideB >= 0 ? c.strideB : c.k * c.n, sD = c.strideD >= 0 ? c.strideD : c.m * c.n;
  const int64_t spanA = c.offA + (c.batch > 0 ? (c.batch - 1) * sA : 0) + c.m * c.k;
  const int64_t spanB = c.offB + (c.batch > 0 ? (c.batch - 1) * sB : 0) + c.k * c.n;
  const int64_t spanD = c.offD + (c.batch > 0 ? (c.batch - 1) * sD : 0) + c.m * c.n + 64;  // 64 guard elements after
  Buffer A(spanA, BF16), B(spanB, BF16), D(spanD, c.dType);
  Buffer bias(c.offBias + c.n + 16, c.biasType), decoy(c.offBias + c.n + 16, c.biasType);
  A.random(1, 1.0f, true);
  B.random(2, 1.0f, true);
  bias.random(3, 2.0f, false);
  decoy.random(4, 2.0f, false);
  cuda(cudaMemsetAsync(D.p, 0xFF, size_t(spanD) * D.bytes, wan::gStream), "cudaMemsetAsync D");
  const bool useBias = epiBias(c.epi);
  try {
    if (c.repeat) {
      wan::gemmLt(A.at(c.offA), B.at(c.offB), D.at(c.offD), c.batch, c.m, c.n, c.k, c.transA, c.transB, sA, sB, sD, c.dType,
                  useBias ? decoy.at(c.offBias) : nullptr, c.biasType, c.epi);
    }
    wan::gemmLt(A.at(c.offA), B.at(c.offB), D.at(c.offD), c.batch, c.m, c.n, c.k, c.transA, c.transB, sA, sB, sD, c.dType,
                useBias ? bias.at(c.offBias) : nullptr, c.biasType, c.epi);
    wan::check(cudaStreamSynchronize(wan::gStream), "synchronize after gemmLt");
  } catch (const wan::CudaFailure& e) {
    report(false, label + " threw: " + e.what());
    cuda(cudaGetLastError(), "sticky error after the failed case");
    return;
  }

  unsigned long long* strayDev = nullptr;
  cuda(cudaMalloc(&strayDev, sizeof(unsigned long long)), "cudaMalloc stray");
  cuda(cudaMemsetAsync(strayDev, 0, sizeof(unsigned long long), wan::gStream), "cudaMemsetAsync stray");
  strayKernel<<<gridOf(spanD), 256, 0, wan::gStream>>>(D.p, c.dType == BF16, spanD, c.offD, c.batch, c.m, c.n, sD, strayDev);
  cuda(cudaGetLastError(), "strayKernel");
  unsigned long long stray = 0;
  cuda(cudaMemcpyAsync(&stray, strayDev, sizeof stray, cudaMemcpyDeviceToHost, wan::gStream), "copy stray");
  cuda(cudaStreamSynchronize(wan::gStream), "synchronize stray");
  cudaFree(strayDev);

  double errSq = 0, refSq = 0, maxAbs = 0, worstGot = 0, worstWant = 0;
  int64_t worst = -1, nonFinite = 0, R = 0;
  std::vector<int64_t> rows;
  if (c.batch > 0 && c.m > 0 && c.n > 0) {
    R = c.rows > 0 && c.rows < c.m ? c.rows : c.m;
    for (int64_t r = 0; r < R; r++) rows.push_back(R == c.m ? r : (R == 1 ? 0 : r * (c.m - 1) / (R - 1)));
    int64_t total = c.batch * R * c.n;
    int64_t* rowsDev = nullptr;
    double *refDev = nullptr, *gotDev = nullptr;
    cuda(cudaMalloc(&rowsDev, size_t(R) * sizeof(int64_t)), "cudaMalloc rows");
    cuda(cudaMalloc(&refDev, size_t(total) * sizeof(double)), "cudaMalloc ref");
    cuda(cudaMalloc(&gotDev, size_t(total) * sizeof(double)), "cudaMalloc got");
    cuda(cudaMemcpyAsync(rowsDev, rows.data(), size_t(R) * sizeof(int64_t), cudaMemcpyHostToDevice, wan::gStream), "copy rows");
    referenceKernel<<<gridOf(total), 256, 0, wan::gStream>>>(static_cast<const __nv_bfloat16*>(static_cast<void*>(A.at(c.offA))),
                                                              static_cast<const __nv_bfloat16*>(static_cast<void*>(B.at(c.offB))),
                                                              useBias ? bias.at(c.offBias) : nullptr, c.biasType == BF16, refDev, rowsDev, R,
                                                              c.batch, c.m, c.n, c.k, c.transA, c.transB, sA, sB, epiGelu(c.epi));
    cuda(cudaGetLastError(), "referenceKernel");
    gatherKernel<<<gridOf(total), 256, 0, wan::gStream>>>(D.at(c.offD), c.dType == BF16, gotDev, rowsDev, R, c.batch, c.n, sD);
    cuda(cudaGetLastError(), "gatherKernel");
    std::vector<double> ref(total), got(total);
    cuda(cudaMemcpyAsync(ref.data(), refDev, size_t(total) * sizeof(double), cudaMemcpyDeviceToHost, wan::gStream), "copy ref");
    cuda(cudaMemcpyAsync(got.data(), gotDev, size_t(total) * sizeof(double), cudaMemcpyDeviceToHost, wan::gStream), "copy got");
    cuda(cudaStreamSynchronize(wan::gStream), "synchronize reference");
    cudaFree(rowsDev);
    cudaFree(refDev);
    cudaFree(gotDev);
    for (int64_t t = 0; t < total; t++) {
      if (!std::isfinite(got[t])) {
        nonFinite++;
        continue;
      }
      double e = std::fabs(got[t] - ref[t]);
      errSq += e * e;
      refSq += ref[t] * ref[t];
      if (e > maxAbs || worst < 0) maxAbs = e, worst = t, worstGot = got[t], worstWant = ref[t];
    }
  }
  const double rel = std::sqrt(errSq) / std::max(std::sqrt(refSq), 1e-30);
  const double tol = c.dType == BF16 ? 1e-2 : epiGelu(c.epi) ? 1e-3 : 1e-4;
  const bool ok = rel <= tol && nonFinite == 0 && stray == 0;
  char line[512];
  std::snprintf(line, sizeof line, " max_rel_err=%.3e (‖D−ref‖/‖ref‖) max_abs_err=%.3e tol %.0e", rel, maxAbs, tol);
  std::string msg = label + line;
  if (!ok && worst >= 0) {
    int64_t j = worst % c.n, r = (worst / c.n) % R, bi = worst / (c.n * R);
    std::snprintf(line, sizeof line, " | worst at b=%lld i=%lld j=%lld: got %.6g want %.6g", (long long)bi, (long long)rows[r], (long long)j,
                  worstGot, worstWant);
    msg += line;
  }
  if (nonFinite) msg += " | " + std::to_string(nonFinite) + " non-finite values in D (unwritten elements read as NaN)";
  if (stray) msg += " | " + std::to_string(stray) + " elements written outside the D matrices";
  report(ok, msg);
}

/** A call that must throw a wan::CudaFailure whose message contains `expect`. */
void expectThrow(const std::string& name, const std::string& expect, const std::function<void()>& call) {
  std::string label = "throws: " + name + " (\"" + expect + "\")";
  try {
    call();
    wan::check(cudaStreamSynchronize(wan::gStream), "synchronize");
  } catch (const wan::CudaFailure& e) {
    std::string what = e.what();
    report(what.find(expect) != std::string::npos, label + " -> " + what);
    return;
  }
  report(false, label + " -> returned without throwing");
}

/**
 * Which GELU the epilogue computes: D = GELU(x_j) for x_j = bf16(−6 + 12·j/(n−1)) (k = 8, A[i, 0] = 1, B[0, j] = x_j,
 * all else 0), f32 D, compared with the tanh form and the erf form 0.5·x·(1 + erf(x/√2)) in double. The form whose
 * ‖D − form‖/‖form‖ is smaller is the library's; it passes if that is tanh, within 2e-3 absolute.
 */
void geluForm() {
  const int64_t m = 16, n = 4096, k = 8;
  std::vector<uint16_t> a(m * k, 0), b(k * n, 0);
  std::vector<double> x(n);
  for (int64_t i = 0; i < m; i++) a[i * k] = bf16Bits(1.0f);
  for (int64_t j = 0; j < n; j++) {
    b[j] = bf16Bits(float(-6.0 + 12.0 * double(j) / double(n - 1)));
    x[j] = bf16Value(b[j]);
  }
  Buffer A(m * k, BF16), B(k * n, BF16), D(m * n, F32);
  cuda(cudaMemcpyAsync(A.p, a.data(), a.size() * 2, cudaMemcpyHostToDevice, wan::gStream), "copy A");
  cuda(cudaMemcpyAsync(B.p, b.data(), b.size() * 2, cudaMemcpyHostToDevice, wan::gStream), "copy B");
  std::vector<float> d(m * n);
  try {
    wan::gemmLt(A.p, B.p, D.p, 1, m, n, k, false, false, 0, 0, 0, F32, nullptr, F32, Epilogue::Gelu);
    wan::check(cudaMemcpyAsync(d.data(), D.p, d.size() * 4, cudaMemcpyDeviceToHost, wan::gStream), "copy D");
    wan::check(cudaStreamSynchronize(wan::gStream), "synchronize");
  } catch (const wan::CudaFailure& e) {
    report(false, std::string("gelu-form threw: ") + e.what());
    return;
  }
  double eT = 0, eE = 0, nT = 0, nE = 0, maxT = 0, maxE = 0;
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < n; j++) {
      double t = geluTanh(x[j]), e = 0.5 * x[j] * (1.0 + std::erf(x[j] / std::sqrt(2.0))), g = d[i * n + j];
      eT += (g - t) * (g - t), eE += (g - e) * (g - e), nT += t * t, nE += e * e;
      maxT = std::max(maxT, std::fabs(g - t)), maxE = std::max(maxE, std::fabs(g - e));
    }
  }
  double relT = std::sqrt(eT / nT), relE = std::sqrt(eE / nE);
  char line[384];
  std::snprintf(line, sizeof line,
                "gelu-form: the epilogue computes the %s form | vs tanh: max_rel_err=%.3e (‖D−ref‖/‖ref‖) max_abs_err=%.3e | vs erf: "
                "max_rel_err=%.3e max_abs_err=%.3e",
                relT < relE ? "tanh" : "erf", relT, maxT, relE, maxE);
  report(relT < relE && maxT <= 2e-3, line);
}

/** Median of 20 timed runs (after 3 warm-ups) of one Wan Linear shape: x[m, k] · W[n, k]ᵀ (+ bias) (→ GELU), bf16 D. */
void timeShape(const char* name, int64_t m, int64_t n, int64_t k, Epilogue epi, const Buffer& A, const Buffer& B, const Buffer& D,
               const Buffer& bias) {
  cudaEvent_t start, stop;
  cuda(cudaEventCreate(&start), "cudaEventCreate");
  cuda(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<float> ms;
  try {
    for (int it = 0; it < 23; it++) {
      cuda(cudaEventRecord(start, wan::gStream), "cudaEventRecord");
      wan::gemmLt(A.p, B.p, D.p, 1, m, n, k, false, true, 0, 0, 0, BF16, epiBias(epi) ? bias.p : nullptr, BF16, epi);
      cuda(cudaEventRecord(stop, wan::gStream), "cudaEventRecord");
      cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
      float t = 0;
      cuda(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
      if (it >= 3) ms.push_back(t);
    }
  } catch (const wan::CudaFailure& e) {
    report(false, std::string("timing ") + name + " threw: " + e.what());
    return;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  double median = 0.5 * (ms[9] + ms[10]);
  std::printf("TIME %-34s %lldx%lldx%lld %-8s median %.3f ms  %.0f TFLOP/s\n", name, (long long)m, (long long)n, (long long)k, epiName(epi), median,
              2.0 * double(m) * double(n) * double(k) / (median * 1e-3) / 1e12);
  std::fflush(stdout);
}

}  // namespace

int main() {
  const cudaDeviceProp prop = startHarness();
  std::printf("device %s (sm_%d%d, %d SMs), cuBLASLt %zu, CUDA runtime %zu\n", prop.name, prop.major, prop.minor, wan::gSms, cublasLtGetVersion(),
              cublasLtGetCudartVersion());

  std::vector<Case> cases;
  // Shapes and transposes.
  cases.push_back(Case("square", 256, 256, 256));
  cases.push_back(Case("odd NN", 77, 33, 129));
  cases.push_back(Case("odd NT", 77, 33, 129).trans(false, true));
  cases.push_back(Case("odd TN", 77, 33, 129).trans(true, false));
  cases.push_back(Case("odd TT", 77, 33, 129).trans(true, true));
  cases.push_back(Case("odd NT f32", 77, 33, 129).trans(false, true).out(F32));
  // Batches: strided with gaps between the matrices (the D gaps must stay untouched), broadcast A or B (stride 0).
  cases.push_back(Case("batch strided+gaps", 77, 33, 129).batched(3).trans(true, false).strides(77 * 129 + 8, 129 * 33 + 24, 77 * 33 + 40));
  cases.push_back(Case("batch strideB=0 (shared W)", 77, 33, 129).batched(3).trans(false, true).strides(-1, 0, -1).epilogue(Epilogue::Bias));
  cases.push_back(Case("batch strideA=0", 77, 33, 129).batched(3).strides(0, -1, -1).out(F32));
  cases.push_back(Case("batch aligned", 128, 256, 64).batched(3).trans(false, true).epilogue(Epilogue::GeluBias));
  cases.push_back(Case("batch 65537 (two calls)", 8, 8, 8).batched(65537).trans(false, true).epilogue(Epilogue::Bias));
  // Every epilogue with each D type, the bias in D's type (the other pairings are among the "throws:" cases).
  for (Epilogue e : {Epilogue::None, Epilogue::Bias, Epilogue::Gelu, Epilogue::GeluBias}) {
    for (DType t : {BF16, F32}) cases.push_back(Case("epilogue", 200, 320, 256).trans(false, true).out(t).epilogue(e));
  }
  cases.push_back(Case("cached plan takes a new bias", 200, 320, 256).trans(false, true).epilogue(Epilogue::GeluBias).repeated());
  // Pointers only 2-byte (bf16) or 4-byte (f32) aligned: offset by one element.
  cases.push_back(Case("misaligned A", 128, 128, 128).trans(false, true).epilogue(Epilogue::Bias).offsets(1, 0, 0, 0));
  cases.push_back(Case("misaligned B", 128, 128, 128).trans(false, true).epilogue(Epilogue::Bias).offsets(0, 1, 0, 0));
  cases.push_back(Case("misaligned D", 128, 128, 128).trans(false, true).epilogue(Epilogue::Bias).offsets(0, 0, 1, 0));
  cases.push_back(Case("misaligned bias (copied)", 128, 128, 128).trans(false, true).epilogue(Epilogue::GeluBias).offsets(0, 0, 0, 1));
  cases.push_back(Case("misaligned f32 bias (copied)", 128, 128, 128).trans(false, true).out(F32).epilogue(Epilogue::Bias).offsets(0, 0, 0, 1));
  cases.push_back(Case("misaligned all", 77, 33, 129).trans(false, true).epilogue(Epilogue::GeluBias).offsets(1, 1, 1, 1));
  cases.push_back(Case("misaligned all f32", 64, 64, 64).batched(2).out(F32).epilogue(Epilogue::Bias).offsets(1, 1, 1, 1));
  // k = 0: D = epilogue(0 [+ bias]); empty products write nothing.
  cases.push_back(Case("k=0", 50, 40, 0));
  cases.push_back(Case("k=0", 50, 40, 0).out(F32).epilogue(Epilogue::GeluBias));
  cases.push_back(Case("k=0 strided", 50, 40, 0).batched(2).strides(-1, -1, 50 * 40 + 7).epilogue(Epilogue::Bias).offsets(0, 0, 0, 1));
  cases.push_back(Case("m=0 writes nothing", 0, 40, 16).epilogue(Epilogue::Bias));
  cases.push_back(Case("batch=0 writes nothing", 16, 40, 16).batched(0));
  // Wan 2.x Linear layers at 81 frames of 720p (32760 tokens): x[m, k] · W[n, k]ᵀ, 256 of the rows checked.
  cases.push_back(Case("wan attention proj", 32760, 1536, 1536).trans(false, true).epilogue(Epilogue::Bias).sample(256));
  cases.push_back(Case("wan attention proj f32", 32760, 1536, 1536).trans(false, true).out(F32).epilogue(Epilogue::Bias).sample(256));
  cases.push_back(Case("wan ffn up", 32760, 8960, 1536).trans(false, true).epilogue(Epilogue::GeluBias).sample(256));
  cases.push_back(Case("wan ffn down", 32760, 1536, 8960).trans(false, true).epilogue(Epilogue::Bias).sample(256));
  for (const Case& c : cases) runCase(c);

  geluForm();

  Buffer A(64 * 64, BF16), B(64 * 64, BF16), Dh(64 * 64, BF16), Df(64 * 64, F32), bh(64, BF16), bf(64, F32);
  auto call = [&](void* d, DType dt, const void* bias, DType bt, Epilogue e, int64_t batch, int64_t m, int64_t strideD) {
    return [=, &A, &B] { wan::gemmLt(A.p, B.p, d, batch, m, 64, 64, false, true, 0, 0, strideD, dt, bias, bt, e); };
  };
  expectThrow("bf16 D with an f32 bias", "unsupported combination", call(Dh.p, BF16, bf.p, F32, Epilogue::Bias, 1, 64, 0));
  expectThrow("f32 D with a bf16 bias", "unsupported combination", call(Df.p, F32, bh.p, BF16, Epilogue::GeluBias, 1, 64, 0));
  expectThrow("bias epilogue without a bias", "needs a bias", call(Dh.p, BF16, nullptr, BF16, Epilogue::Bias, 1, 64, 0));
  expectThrow("a bias without a bias epilogue", "without one", call(Dh.p, BF16, bh.p, BF16, Epilogue::Gelu, 1, 64, 0));
  expectThrow("strideD = 0 with batch 3", "overlap", call(Dh.p, BF16, nullptr, BF16, Epilogue::None, 3, 64, 0));
  expectThrow("m = 2^31", "exceeds 2^31 - 1", call(Dh.p, BF16, nullptr, BF16, Epilogue::None, 1, int64_t(1) << 31, 0));
  expectThrow("D of type I32", "D must be bf16 or f32", call(Dh.p, wan::I32, nullptr, BF16, Epilogue::None, 1, 64, 0));

  {
    const int64_t M = 32760;
    Buffer x(M * 8960, BF16), w(8960 * 1536, BF16), y(M * 8960, BF16), bias(8960, BF16);
    x.random(5, 1.0f, true);
    w.random(6, 1.0f, true);
    bias.random(7, 2.0f, false);
    std::printf("TIME reference point: cuBLAS bf16 32760x1536x8960 ran in 1.16 ms (779 TFLOP/s) on an H100\n");
    timeShape("wan attention proj", M, 1536, 1536, Epilogue::Bias, x, w, y, bias);
    timeShape("wan ffn up", M, 8960, 1536, Epilogue::GeluBias, x, w, y, bias);
    timeShape("wan ffn down", M, 1536, 8960, Epilogue::Bias, x, w, y, bias);
    timeShape("wan ffn down, no epilogue", M, 1536, 8960, Epilogue::None, x, w, y, bias);
  }

  cuda(cudaStreamSynchronize(wan::gStream), "final synchronize");
  report(wan::gLiveAllocs == 1, "deviceAlloc balance: " + std::to_string(wan::gLiveAllocs) + " live (expected 1: the workspace)");
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
