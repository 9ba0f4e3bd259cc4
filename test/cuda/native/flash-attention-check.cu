// Standalone check of wan::flashAttentionBf16 (src/cuda/native/flash-attention.cu) on a GPU, without Node: every case
// against a float64 reference computed from the same bf16 inputs, then the speed of the long self-attention shapes.
// From the repository root:
//
//   nvcc -std=c++17 -O3 -arch=sm_90 -I src/cuda/native test/cuda/native/flash-attention-check.cu src/cuda/native/flash-attention.cu -o /tmp/fa-check && /tmp/fa-check
//
// /tmp/fa-check --quick [WORD] runs the correctness cases only, those whose name holds WORD if given (for compute-sanitizer:
// `compute-sanitizer --tool racecheck /tmp/fa-check --quick odd`). Prints one `PASS|FAIL <case> rel_l2=… max_abs=…`
// line per case (a FAIL adds where it is wrong), `TIME …` lines, and `N passed, N failed`; exits 1 on any failure.
// Every buffer has 1 MiB guards of NaN on both sides: reading q/k/v rows past the end without zero-fill turns outputs NaN, and
// a store outside o shows as a changed guard.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "flash-attention.h"

namespace wan {

cudaStream_t stream() {
  static cudaStream_t s = [] {
    cudaStream_t created;
    check(cudaStreamCreate(&created), "stream create");
    return created;
  }();
  return s;
}

int smCount() {
  static int n = [] {
    int device = 0, count = 0;
    check(cudaGetDevice(&device), "get device");
    check(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device), "SM count");
    return count;
  }();
  return n;
}

void* deviceAlloc(size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc");
  return p;
}

void deviceFree(void* p) { check(cudaFree(p), "cudaFree"); }

}  // namespace wan

namespace {

using bf16 = __nv_bfloat16;
using wan::check;

constexpr size_t GUARD = size_t(1) << 20;
int passed = 0, failed = 0;

void verdict(bool ok) { ok ? passed++ : failed++; }

/** A device buffer of `bytes` between two GUARD-byte guards, everything set to 0xFF bytes (NaN as bf16 and fp32). */
struct Guarded {
  unsigned char* base = nullptr;
  size_t bytes = 0;
  explicit Guarded(size_t n) : bytes(n) {
    base = static_cast<unsigned char*>(wan::deviceAlloc(n + 2 * GUARD));
    check(cudaMemset(base, 0xFF, n + 2 * GUARD), "poison");
  }
  ~Guarded() { cudaFree(base); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  void* ptr() const { return base + GUARD; }
  /** Whether both guards still hold only 0xFF bytes. */
  bool guardsIntact() const {
    std::vector<unsigned char> h(GUARD);
    for (size_t off : {size_t(0), GUARD + bytes}) {
      check(cudaMemcpy(h.data(), base + off, GUARD, cudaMemcpyDeviceToHost), "read guard");
      if (std::any_of(h.begin(), h.end(), [](unsigned char c) { return c != 0xFF; })) return false;
    }
    return true;
  }
};

__device__ uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/** x[i] = ±u, u uniform in [0.05, 2) (never 0); with outliers, 1 in 400 is ±[25, 35). */
__global__ void fillRandom(bf16* x, int64_t n, uint64_t seed, bool outliers) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t r = mix(seed * 0x100000001B3ull + uint64_t(i));
    float u = float(r >> 40) * (1.0f / 16777216.0f);
    float mag = outliers && (r & 0xFFFF) % 400 == 0 ? 25.0f + 10.0f * u : 0.05f + 1.95f * u;
    x[i] = __float2bfloat16_rn((r >> 39) & 1 ? -mag : mag);
  }
}

/**
 * Float64 attention for the query rows rows[0..nRows) of every (batch, head): out[(bh · nRows + r) · D + c], one 128-thread
 * block per (row, bh), streaming keys in chunks of CH with an exact online softmax (exp, no bf16 rounding of P).
 */
constexpr int CH = 1024;
__global__ void reference(const bf16* q, const bf16* k, const bf16* v, const int* rows, int nRows, int Lq, int Lk, int H, int D,
                          double scale, double* out) {
  __shared__ double qs[128], p[CH], red[128];
  const int tid = threadIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H, row = rows[blockIdx.x];
  const int64_t rs = int64_t(H) * D;
  for (int d = tid; d < D; d += blockDim.x) qs[d] = double(__bfloat162float(q[(int64_t(b) * Lq + row) * rs + int64_t(h) * D + d]));
  __syncthreads();
  double m = -INFINITY, l = 0.0, acc = 0.0;
  for (int k0 = 0; k0 < Lk; k0 += CH) {
    const int n = min(CH, Lk - k0);
    double localMax = -INFINITY;
    for (int j = tid; j < n; j += blockDim.x) {
      const bf16* kr = k + (int64_t(b) * Lk + k0 + j) * rs + int64_t(h) * D;
      double s = 0.0;
      for (int d = 0; d < D; d += 8) {
        uint4 w = *reinterpret_cast<const uint4*>(kr + d);
        const bf16* e = reinterpret_cast<const bf16*>(&w);
        for (int t = 0; t < 8; t++) s += qs[d + t] * double(__bfloat162float(e[t]));
      }
      p[j] = s * scale;
      localMax = fmax(localMax, p[j]);
    }
    red[tid] = localMax;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
      if (tid < w) red[tid] = fmax(red[tid], red[tid + w]);
      __syncthreads();
    }
    const double mNew = fmax(m, red[0]);
    const double corr = exp(m - mNew);
    for (int j = tid; j < n; j += blockDim.x) p[j] = exp(p[j] - mNew);
    __syncthreads();
    double sum = 0.0, dot = 0.0;
    for (int j = 0; j < n; j++) {
      sum += p[j];
      if (tid < D) dot += p[j] * double(__bfloat162float(v[(int64_t(b) * Lk + k0 + j) * rs + int64_t(h) * D + tid]));
    }
    l = l * corr + sum;
    acc = acc * corr + dot;
    m = mNew;
    __syncthreads();
  }
  if (tid < D) out[(int64_t(bh) * nRows + blockIdx.x) * D + tid] = acc / l;
}

struct Shape {
  std::string name;
  int B, Lq, Lk, H, D;
  wan::DType out;
  int warps;  // WAN_CUDA_FLASH_WARPS for D = 128
};

void selectWarps(int warps) {
  if (warps == 8) setenv("WAN_CUDA_FLASH_WARPS", "8", 1);
  else unsetenv("WAN_CUDA_FLASH_WARPS");
}

/** Inputs of one shape: q, k, v filled (q and k with outliers), o poisoned. */
struct Problem {
  Shape s;
  Guarded q, k, v, o;
  explicit Problem(const Shape& sh)
      : s(sh),
        q(size_t(sh.B) * sh.Lq * sh.H * sh.D * 2),
        k(size_t(sh.B) * sh.Lk * sh.H * sh.D * 2),
        v(size_t(sh.B) * sh.Lk * sh.H * sh.D * 2),
        o(size_t(sh.B) * sh.Lq * sh.H * sh.D * wan::elemBytes(sh.out)) {
    fillRandom<<<1024, 256>>>(static_cast<bf16*>(q.ptr()), int64_t(q.bytes / 2), 1, true);
    fillRandom<<<1024, 256>>>(static_cast<bf16*>(k.ptr()), int64_t(k.bytes / 2), 2, true);
    fillRandom<<<1024, 256>>>(static_cast<bf16*>(v.ptr()), int64_t(v.bytes / 2), 3, false);
    check(cudaGetLastError(), "fill");
    check(cudaDeviceSynchronize(), "fill");
  }
  float scale() const { return 1.0f / std::sqrt(float(s.D)); }
  /** Queues the kernel under test; false if it declined the shape. */
  bool run() {
    selectWarps(s.warps);
    return wan::flashAttentionBf16(q.ptr(), k.ptr(), v.ptr(), o.ptr(), s.B, s.Lq, s.Lk, s.H, s.D, s.D, scale(), s.out);
  }
};

/** Compares o with the reference on `rows` (all B·H heads) and prints the verdict line. */
bool compare(Problem& P, const std::vector<int>& rows, const std::string& label) {
  const Shape& s = P.s;
  const int nRows = int(rows.size()), BH = s.B * s.H;
  int* dRows = static_cast<int*>(wan::deviceAlloc(rows.size() * sizeof(int)));
  double* dRef = static_cast<double*>(wan::deviceAlloc(size_t(BH) * nRows * s.D * sizeof(double)));
  check(cudaMemcpy(dRows, rows.data(), rows.size() * sizeof(int), cudaMemcpyHostToDevice), "rows");
  reference<<<dim3(nRows, BH), 128>>>(static_cast<const bf16*>(P.q.ptr()), static_cast<const bf16*>(P.k.ptr()),
                                      static_cast<const bf16*>(P.v.ptr()), dRows, nRows, s.Lq, s.Lk, s.H, s.D, double(P.scale()), dRef);
  check(cudaGetLastError(), "reference launch");
  check(cudaDeviceSynchronize(), "reference");
  std::vector<double> ref(size_t(BH) * nRows * s.D);
  check(cudaMemcpy(ref.data(), dRef, ref.size() * sizeof(double), cudaMemcpyDeviceToHost), "read reference");
  wan::deviceFree(dRows);
  wan::deviceFree(dRef);
  std::vector<unsigned char> raw(P.o.bytes);
  check(cudaMemcpy(raw.data(), P.o.ptr(), raw.size(), cudaMemcpyDeviceToHost), "read output");
  const bool f32 = s.out == wan::F32;
  auto got = [&](int64_t i) {
    if (f32) return double(reinterpret_cast<const float*>(raw.data())[i]);
    return double(__bfloat162float(reinterpret_cast<const bf16*>(raw.data())[i]));
  };
  const double threshold = f32 ? 5e-3 : 1e-2;

  double err2 = 0, ref2 = 0, maxAbs = 0;
  int64_t nonFinite = 0, badRows = 0;
  std::string firstNonFinite, worst, firstBad;
  auto where = [&](int b, int r, int h, int c) {
    char buf[200];
    const int64_t i = ((int64_t(b) * s.Lq + rows[r]) * s.H + h) * s.D + c;
    snprintf(buf, sizeof buf, "b=%d row=%d (row mod 64 = %d) h=%d col=%d got=%.6g want=%.6g", b, rows[r], rows[r] % 64, h, c, got(i),
             ref[(size_t(b * s.H + h) * nRows + r) * s.D + c]);
    return std::string(buf);
  };
  int worstAt[4] = {0, 0, 0, 0};
  for (int bh = 0; bh < BH; bh++) {
    const int b = bh / s.H, h = bh % s.H;
    for (int r = 0; r < nRows; r++) {
      double rowErr2 = 0, rowRef2 = 0;
      for (int c = 0; c < s.D; c++) {
        const double want = ref[(size_t(bh) * nRows + r) * s.D + c];
        const double have = got(((int64_t(b) * s.Lq + rows[r]) * s.H + h) * s.D + c);
        if (!std::isfinite(have)) {
          if (nonFinite++ == 0) firstNonFinite = where(b, r, h, c);
          continue;
        }
        const double e = std::fabs(have - want);
        if (e > maxAbs) {
          maxAbs = e;
          worstAt[0] = b, worstAt[1] = r, worstAt[2] = h, worstAt[3] = c;
        }
        err2 += e * e, ref2 += want * want;
        rowErr2 += e * e, rowRef2 += want * want;
      }
      if (rowErr2 > threshold * threshold * rowRef2 && badRows++ == 0) {
        char buf[120];
        snprintf(buf, sizeof buf, "b=%d row=%d h=%d row_rel_l2=%.3g", b, rows[r], h, std::sqrt(rowErr2 / rowRef2));
        firstBad = buf;
      }
    }
  }
  worst = where(worstAt[0], worstAt[1], worstAt[2], worstAt[3]);
  const double rel = std::sqrt(err2 / ref2);
  const bool guards = P.o.guardsIntact();
  const bool ok = nonFinite == 0 && rel <= threshold && guards;
  printf("%s %s rel_l2=%.3e max_abs=%.3e\n", ok ? "PASS" : "FAIL", label.c_str(), rel, maxAbs);
  if (!ok) {
    printf("     threshold %.0e; %lld non-finite outputs%s%s; %lld of %lld rows over the threshold%s%s; output guards %s\n", threshold,
           (long long)nonFinite, nonFinite ? ", first at " : "", firstNonFinite.c_str(), (long long)badRows, (long long)BH * nRows,
           badRows ? ", first " : "", firstBad.c_str(), guards ? "intact" : "WRITTEN (a store outside o)");
    printf("     largest error at %s\n", worst.c_str());
  }
  return ok;
}

std::string label(const Shape& s) {
  char buf[200];
  snprintf(buf, sizeof buf, "%s [B=%d Lq=%d Lk=%d H=%d D=%d out=%s warps=%d]", s.name.c_str(), s.B, s.Lq, s.Lk, s.H, s.D,
           s.out == wan::F32 ? "f32" : "bf16", s.D == 128 ? s.warps : 4);
  return buf;
}

void correctness(const Shape& s) {
  try {
    Problem P(s);
    if (!P.run()) {
      printf("FAIL %s: flashAttentionBf16 declined the shape\n", label(s).c_str());
      return verdict(false);
    }
    check(cudaStreamSynchronize(wan::stream()), "kernel");
    std::vector<int> rows(s.Lq);
    for (int i = 0; i < s.Lq; i++) rows[i] = i;
    verdict(compare(P, rows, label(s)));
  } catch (const std::exception& e) {
    printf("FAIL %s: %s\n", label(s).c_str(), e.what());
    verdict(false);
  }
}

/** One API expectation: `ok` says whether it held. */
void expect(const char* what, bool ok) {
  printf("%s api: %s\n", ok ? "PASS" : "FAIL", what);
  verdict(ok);
}

void api() {
  Guarded buf(1 << 16);
  unsigned char* p = static_cast<unsigned char*>(buf.ptr());
  auto call = [&](const void* q, int B, int Lq, int Lk, int H, int D, int Dv, wan::DType out) {
    return wan::flashAttentionBf16(q, p, p, p, B, Lq, Lk, H, D, Dv, 0.1f, out);
  };
  auto throws = [&](int B, int Lq, int Lk, int H, wan::DType out) {
    try {
      call(p, B, Lq, Lk, H, 64, 64, out);
    } catch (const wan::CudaFailure&) {
      return true;
    }
    return false;
  };
  try {
    expect("D = 96 is declined", !call(p, 1, 8, 8, 1, 96, 96, wan::BF16));
    expect("D = 128, Dv = 64 is declined", !call(p, 1, 8, 8, 1, 128, 64, wan::BF16));
    expect("q 2 bytes off 16-byte alignment is declined", !call(p + 2, 1, 8, 8, 1, 64, 64, wan::BF16));
    expect("Lq = 0 queues nothing and succeeds", call(p, 1, 0, 8, 1, 64, 64, wan::BF16));
    expect("B·H = 70,000 throws (grid y limit)", throws(70000, 1, 1, 1, wan::BF16));
    expect("Lk = 0 throws", throws(1, 8, 0, 1, wan::BF16));
    expect("outType I32 throws", throws(1, 8, 8, 1, wan::I32));
    check(cudaStreamSynchronize(wan::stream()), "api");
    expect("no kernel touched the buffer's guards", buf.guardsIntact());
  } catch (const std::exception& e) {
    printf("FAIL api: %s\n", e.what());
    verdict(false);
  }
}

/** Median of 10 timed runs (after one warm-up), then the output checked on sampled rows (first 64, last 80, 48 spread). */
void timing(const Shape& s, const char* yardstick) {
  try {
    Problem P(s);
    cudaEvent_t a, b;
    check(cudaEventCreate(&a), "event");
    check(cudaEventCreate(&b), "event");
    if (!P.run()) throw wan::CudaFailure("flashAttentionBf16 declined the shape");
    check(cudaStreamSynchronize(wan::stream()), "warm-up");
    std::vector<float> ms;
    for (int i = 0; i < 10; i++) {
      check(cudaEventRecord(a, wan::stream()), "record");
      P.run();
      check(cudaEventRecord(b, wan::stream()), "record");
      check(cudaEventSynchronize(b), "kernel");
      float t = 0;
      check(cudaEventElapsedTime(&t, a, b), "elapsed");
      ms.push_back(t);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(ms.begin(), ms.end());
    const double median = 0.5 * (ms[4] + ms[5]);
    const double flops = 4.0 * s.B * s.H * double(s.Lq) * s.Lk * s.D;
    printf("TIME %s median=%.2f ms (min %.2f, max %.2f) %.1f TFLOP/s  [%s]\n", label(s).c_str(), median, ms.front(), ms.back(),
           flops / (median * 1e-3) / 1e12, yardstick);
    std::set<int> picked;
    for (int i = 0; i < 64 && i < s.Lq; i++) picked.insert(i);
    for (int i = std::max(0, s.Lq - 80); i < s.Lq; i++) picked.insert(i);
    for (int i = 0; i < 48; i++) picked.insert(int((int64_t(i) * s.Lq / 48 + 17) % s.Lq));
    verdict(compare(P, std::vector<int>(picked.begin(), picked.end()), label(s) + " sampled rows"));
  } catch (const std::exception& e) {
    printf("FAIL %s timing: %s\n", label(s).c_str(), e.what());
    verdict(false);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const std::string only = quick && argc > 2 ? argv[2] : "";
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, 0), "device properties");
  printf("device: %s, sm_%d%d, %d SMs, %zu KB shared memory per SM\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
         prop.sharedMemPerMultiprocessor >> 10);

  if (only.empty()) api();
  using wan::BF16;
  using wan::F32;
  const Shape cases[] = {
      {"self", 2, 1000, 1000, 4, 128, BF16, 4},
      {"self", 2, 1000, 1000, 4, 128, BF16, 8},
      {"odd lengths", 1, 777, 333, 4, 128, BF16, 4},
      {"odd lengths", 1, 777, 333, 4, 128, BF16, 8},
      {"one key", 1, 777, 1, 4, 128, BF16, 4},
      {"one query", 1, 1, 1000, 4, 128, BF16, 4},
      {"cross", 1, 3000, 512, 12, 128, BF16, 4},
      {"D=64", 2, 1000, 999, 4, 64, BF16, 4},
      {"D=64 odd", 1, 77, 65, 3, 64, BF16, 4},
      {"D=32", 2, 1000, 999, 4, 32, BF16, 4},
      {"D=32 odd", 1, 50, 70, 3, 32, BF16, 4},
      {"f32 out", 1, 1000, 1000, 4, 128, F32, 4},
      {"f32 out", 1, 1000, 1000, 4, 128, F32, 8},
      {"f32 out D=64", 1, 333, 777, 4, 64, F32, 4},
      {"f32 out D=32", 1, 333, 777, 4, 32, F32, 4},
      {"many heads", 1, 300, 300, 40, 128, BF16, 4},
  };
  for (const Shape& s : cases)
    if (s.name.find(only) != std::string::npos) correctness(s);

  if (!quick) {
    const char* h100 = "H100: PyTorch flash 18.1 ms = 365 TFLOP/s, cuDNN 11.2 ms";
    timing({"speed", 1, 32760, 32760, 12, 128, BF16, 4}, h100);
    timing({"speed", 1, 32760, 32760, 12, 128, BF16, 8}, h100);
    timing({"speed", 1, 75600, 75600, 40, 128, BF16, 4}, "Wan2.1 14B 720p");
    timing({"speed", 1, 75600, 75600, 40, 128, BF16, 8}, "Wan2.1 14B 720p");
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
