// Row-major bfloat16 GEMMs through cuBLASLt, fp32 accumulation, bias and GELU fused as epilogues:
//   D_b = epilogue(op(A_b)·op(B_b)),  epilogue(x) = x | x + bias | GELU(x) | GELU(x + bias),
//   GELU(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
// cuBLASLt is column-major, so D_b is issued as D_bᵀ = op(B_b)ᵀ·op(A_b)ᵀ: cuBLASLt's "A" is our B, its "B" our A,
// M' = n, N' = m, and its D (n rows × m columns, ld n) is our row-major D_b. The bias (length n) is then one value
// per row of that D, which is what CUBLASLT_EPILOGUE_BIAS adds: "Bias vector length must match matrix D rows ...
// Bias vector is broadcasted to all columns and added before applying final postprocessing" (cublasLt.h, CUDA 12.6).
//
// GELU's form: cublasLt.h and the cuBLAS guide say only "apply GELU point-wise transform (x:=GELU(x))". NVIDIA's
// nvmath-python tests model CUBLASLT_EPILOGUE_GELU / GELU_BIAS with the tanh form above and DGELU as the derivative
// "of (tanh-approximated) gelu" (tests/nvmath_tests/linalg/advanced/matmul/test_epilog.py), and PyTorch's addmm
// replaces the epilogue, where it cannot use it, with gelu(·, "tanh") (aten/src/ATen/native/cuda/Blas.cpp). The
// epilogue is used as the tanh form; test/cuda/native/gemm-lt-check.cu measures the form the library computes.
//
// Broadcast batches: a batch stride of 0 for A or B is accepted by cuBLASLt (NVIDIA/MatX #473: "cuBLASLt allows a
// stride of 0 for A/B"); every layout carries the same batch count, as cuBLASLt requires.
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include "cublaslt-plan.h"
#include "gemm-lt.h"

namespace wan {

namespace {

constexpr int64_t DIM_LIMIT = 2147483647;
/** Matrices per cuBLASLt call: the grid z limit that the cuBLAS path (matmul.cu) keeps to as well. */
constexpr int64_t MAX_BATCH = 65535;
/**
 * Bias alignment (bytes) below which the bias is first copied to a fresh buffer: the heuristic's alignment
 * preferences cover A, B, C and D only, and the kernel it picks may load the bias in 16-byte vectors.
 */
constexpr uintptr_t BIAS_ALIGN = 16;
constexpr int THREADS = 256;

const char* dtypeLabel(DType t) { return t == BF16 ? "bf16" : t == F32 ? "f32" : "unsupported type"; }

const char* epilogueLabel(Epilogue e) {
  switch (e) {
    case Epilogue::None: return "None";
    case Epilogue::Bias: return "Bias";
    case Epilogue::Gelu: return "Gelu";
    case Epilogue::GeluBias: return "GeluBias";
  }
  return "unknown epilogue";
}

bool hasBias(Epilogue e) { return e == Epilogue::Bias || e == Epilogue::GeluBias; }

cudaDataType_t cudaType(DType t) { return t == BF16 ? CUDA_R_16BF : CUDA_R_32F; }

/** Rounds an address up to a multiple of `align` (a power of two). */
void* alignUp(void* p, uintptr_t align) { return reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(p) + align - 1) & ~(align - 1)); }

/** One gemmLt call's arguments, for the steps and their messages. */
struct Problem {
  int64_t batch, m, n, k;
  bool transA, transB;
  int64_t strideA, strideB, strideD;
  DType dType, biasType;
  Epilogue epilogue;

  std::string describe() const {
    std::string s = "batch " + std::to_string(batch) + ", m " + std::to_string(m) + ", n " + std::to_string(n) + ", k " + std::to_string(k) +
                    ", transA " + std::to_string(int(transA)) + ", transB " + std::to_string(int(transB)) + ", strides A/B/D " +
                    std::to_string(strideA) + "/" + std::to_string(strideB) + "/" + std::to_string(strideD) + ", D " + dtypeLabel(dType);
    if (hasBias(epilogue)) s += std::string(", bias ") + dtypeLabel(biasType);
    return s + ", epilogue " + epilogueLabel(epilogue);
  }
};

[[noreturn]] void throwFor(const Problem& p, const std::string& what) { throw CudaFailure("gemmLt [" + p.describe() + "]: " + what); }

/** Largest power of two ≤ 256 dividing the address and both byte strides (a stride of 0 constrains nothing). */
uint32_t alignment(const void* ptr, int64_t strideBytes0, int64_t strideBytes1) {
  uint64_t bits = uint64_t(reinterpret_cast<uintptr_t>(ptr)) | 256u | uint64_t(strideBytes0) | uint64_t(strideBytes1);
  return uint32_t(bits & (~bits + 1));
}

/** ltContext for one of this module's problems. */
LtContext& contextFor(const Problem& p) { return ltContext("gemmLt [" + p.describe() + "]"); }

/** Everything the chosen algorithm depends on: one batch chunk's shape, strides, types and alignments (bytes). */
struct Key {
  int64_t batch, m, n, k, strideA, strideB, strideD;
  int transA, transB, dType, biasType, epilogue;
  uint32_t alignA, alignB, alignD, alignBias;

  auto tie() const {
    return std::tie(batch, m, n, k, strideA, strideB, strideD, transA, transB, dType, biasType, epilogue, alignA, alignB, alignD, alignBias);
  }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

/** A key's descriptors and algorithm: a describes our B, b our A, d both C and D. */
using Plan = LtPlan;
using Preference = LtPreference;

/** A column-major layout rows × cols (leading dimension ld), `count` of them `stride` elements apart. */
void makeLayout(cublasLtMatrixLayout_t& out, cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int32_t count, int64_t stride,
                const Problem& p) {
  checkLt(cublasLtMatrixLayoutCreate(&out, type, uint64_t(rows), uint64_t(cols), ld), "cublasLtMatrixLayoutCreate", p);
  setAttr(out, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, count, "set CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT", p);
  setAttr(out, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, stride, "set CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET", p);
}

/**
 * The cached plan for `key`, built on first use: descriptors, then cublasLtMatmulAlgoGetHeuristic's top algorithm
 * for the key's alignments within the whole workspace. The bias pointer is set on the descriptor before the
 * heuristic, which reads its alignment from it.
 */
Plan& planFor(const Key& key, const void* bias, const Problem& p) {
  static std::map<Key, std::unique_ptr<Plan>> plans;
  auto found = plans.find(key);
  if (found != plans.end()) return *found->second;

  auto plan = std::make_unique<Plan>();
  int32_t count = int32_t(key.batch);
  // Our B_b is column-major [n, k] (ld n), or [k, n] (ld k) with transB: cuBLASLt's A, transposed iff transB.
  makeLayout(plan->a, CUDA_R_16BF, p.transB ? p.k : p.n, p.transB ? p.n : p.k, p.transB ? p.k : p.n, count, key.strideB, p);
  // Our A_b is column-major [k, m] (ld k), or [m, k] (ld m) with transA: cuBLASLt's B, transposed iff transA.
  makeLayout(plan->b, CUDA_R_16BF, p.transA ? p.m : p.k, p.transA ? p.k : p.m, p.transA ? p.m : p.k, count, key.strideA, p);
  makeLayout(plan->d, cudaType(p.dType), p.n, p.m, p.n, count, key.strideD, p);

  checkLt(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate", p);
  setAttr(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, p.transB ? CUBLAS_OP_T : CUBLAS_OP_N, "set CUBLASLT_MATMUL_DESC_TRANSA", p);
  setAttr(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, p.transA ? CUBLAS_OP_T : CUBLAS_OP_N, "set CUBLASLT_MATMUL_DESC_TRANSB", p);
  setAttr(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, ltEpilogue(p.epilogue), "set CUBLASLT_MATMUL_DESC_EPILOGUE", p);
  if (bias) {
    setAttr(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, cudaType(p.biasType), "set CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE", p);
    setAttr(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, "set CUBLASLT_MATMUL_DESC_BIAS_POINTER", p);
  }

  Preference pref;
  checkLt(cublasLtMatmulPreferenceCreate(&pref.pref), "cublasLtMatmulPreferenceCreate", p);
  setAttr(pref.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(LT_WORKSPACE_BYTES), "set CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES", p);
  // cuBLASLt's A is our B and its B our A; its C is D.
  setAttr(pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.alignB, "set CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES", p);
  setAttr(pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.alignA, "set CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES", p);
  setAttr(pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.alignD, "set CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES", p);
  setAttr(pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.alignD, "set CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES", p);

  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  cublasStatus_t s =
      cublasLtMatmulAlgoGetHeuristic(contextFor(p).handle, plan->desc, plan->a, plan->b, plan->d, plan->d, pref.pref, 1, &result, &returned);
  if (s != CUBLAS_STATUS_SUCCESS || returned < 1 || result.state != CUBLAS_STATUS_SUCCESS) {
    throwFor(p, "cublasLtMatmulAlgoGetHeuristic found no algorithm (A, B bf16, compute 32F, chunk of " + std::to_string(key.batch) +
                ", alignments A/B/D/bias " + std::to_string(key.alignA) + "/" + std::to_string(key.alignB) + "/" + std::to_string(key.alignD) +
                "/" + std::to_string(key.alignBias) + " bytes): " + cublasGetStatusString(s != CUBLAS_STATUS_SUCCESS ? s : result.state));
  }
  plan->algo = result.algo;
  return *plans.emplace(key, std::move(plan)).first->second;
}

__device__ __forceinline__ float loadAsFloat(float v) { return v; }
__device__ __forceinline__ float loadAsFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void storeFloat(float* p, float v) { *p = v; }
__device__ __forceinline__ void storeFloat(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

/** GELU(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
__device__ __forceinline__ float geluOf(float x) { return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))); }

/** k = 0: D_b[i, j] = v or GELU(v), v = bias[j] (0 without a bias); D_b is [m, n] row-major at d + b·strideD. */
template <typename T>
__global__ void emptyProductKernel(T* d, const T* bias, int64_t batch, int64_t m, int64_t n, int64_t strideD, bool gelu) {
  int64_t per = m * n, total = batch * per;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t b = i / per, r = i - b * per;
    float v = bias ? loadAsFloat(bias[r % n]) : 0.0f;
    storeFloat(d + b * strideD + r, gelu ? geluOf(v) : v);
  }
}

void emptyProduct(const Problem& p, void* d, const void* bias) {
  bool gelu = p.epilogue == Epilogue::Gelu || p.epilogue == Epilogue::GeluBias;
  unsigned blocks = gridFor(p.batch * p.m * p.n, THREADS);
  if (p.dType == BF16) {
    emptyProductKernel<<<blocks, THREADS, 0, stream()>>>(static_cast<__nv_bfloat16*>(d), static_cast<const __nv_bfloat16*>(bias), p.batch, p.m,
                                                          p.n, p.strideD, gelu);
  } else {
    emptyProductKernel<<<blocks, THREADS, 0, stream()>>>(static_cast<float*>(d), static_cast<const float*>(bias), p.batch, p.m, p.n, p.strideD,
                                                          gelu);
  }
  checkLaunch("gemmLt: k = 0 fill");
}

/** The cuBLASLt calls, one per chunk of at most MAX_BATCH matrices; bias is null or BIAS_ALIGN-aligned. */
void runProducts(const Problem& p, const void* a, const void* b, void* d, const void* bias) {
  LtContext& ctx = contextFor(p);
  const int64_t ab = 2, db = elemBytes(p.dType);
  // One matrix never uses its strides: 0 keeps them out of the key and the alignments.
  const bool strided = p.batch > 1;
  Key key{};
  key.m = p.m, key.n = p.n, key.k = p.k;
  key.strideA = strided ? p.strideA : 0, key.strideB = strided ? p.strideB : 0, key.strideD = strided ? p.strideD : 0;
  key.transA = int(p.transA), key.transB = int(p.transB), key.dType = int(p.dType), key.epilogue = int(p.epilogue);
  key.biasType = bias ? int(p.biasType) : -1;
  key.alignA = alignment(a, (p.transA ? p.m : p.k) * ab, key.strideA * ab);
  key.alignB = alignment(b, (p.transB ? p.k : p.n) * ab, key.strideB * ab);
  key.alignD = alignment(d, p.n * db, key.strideD * db);
  key.alignBias = bias ? alignment(bias, 0, 0) : 0;
  const float alpha = 1.0f, beta = 0.0f;
  for (int64_t b0 = 0; b0 < p.batch; b0 += MAX_BATCH) {
    key.batch = p.batch - b0 < MAX_BATCH ? p.batch - b0 : MAX_BATCH;
    Plan& plan = planFor(key, bias, p);
    if (bias) setAttr(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, "set CUBLASLT_MATMUL_DESC_BIAS_POINTER", p);
    const char* aAt = static_cast<const char*>(a) + b0 * key.strideA * ab;
    const char* bAt = static_cast<const char*>(b) + b0 * key.strideB * ab;
    char* dAt = static_cast<char*>(d) + b0 * key.strideD * db;
    checkLt(cublasLtMatmul(ctx.handle, plan.desc, &alpha, bAt, plan.a, aAt, plan.b, &beta, dAt, plan.d, dAt, plan.d, &plan.algo, ctx.workspace,
                           LT_WORKSPACE_BYTES, stream()),
            "cublasLtMatmul", p);
  }
}

}  // namespace

void gemmLt(const void* a, const void* b, void* d, int64_t batch, int64_t m, int64_t n, int64_t k, bool transA, bool transB,
            int64_t strideA, int64_t strideB, int64_t strideD, DType dType, const void* bias, DType biasType, Epilogue epilogue) {
  const Problem p{batch, m, n, k, transA, transB, strideA, strideB, strideD, dType, biasType, epilogue};
  if (dType != BF16 && dType != F32) throwFor(p, "D must be bf16 or f32");
  if (epilogue != Epilogue::None && epilogue != Epilogue::Bias && epilogue != Epilogue::Gelu && epilogue != Epilogue::GeluBias) {
    throwFor(p, "unknown epilogue " + std::to_string(int(epilogue)));
  }
  if (hasBias(epilogue)) {
    if (!bias) throwFor(p, "the epilogue needs a bias, and bias is null");
    if (biasType != BF16 && biasType != F32) throwFor(p, "the bias must be bf16 or f32");
    if (biasType != dType) {
      throwFor(p, std::string("a ") + dtypeLabel(biasType) + " bias with a " + dtypeLabel(dType) +
                  " D is an unsupported combination (cuBLASLt takes the bias in D's type): convert the bias to " + dtypeLabel(dType));
    }
  } else if (bias) {
    throwFor(p, "a bias was given to an epilogue without one");
  }
  if (batch < 0 || m < 0 || n < 0 || k < 0 || strideA < 0 || strideB < 0 || strideD < 0) throwFor(p, "negative dimension or stride");
  if (m > DIM_LIMIT || n > DIM_LIMIT || k > DIM_LIMIT) throwFor(p, "a dimension exceeds 2^31 - 1");
  if (batch == 0 || m == 0 || n == 0) return;
  if (batch > 1 && strideD < m * n) throwFor(p, "strideD < m·n: the batch's D matrices would overlap");
  if (k == 0) {
    emptyProduct(p, d, bias);
    return;
  }
  if (!bias || reinterpret_cast<uintptr_t>(bias) % BIAS_ALIGN == 0) {
    runProducts(p, a, b, d, bias);
    return;
  }
  // An under-aligned bias goes through a BIAS_ALIGN-aligned copy, freed (stream-ordered) once the products are queued.
  size_t bytes = size_t(n) * elemBytes(biasType);
  void* copy = deviceAlloc(bytes + BIAS_ALIGN);
  try {
    void* aligned = alignUp(copy, BIAS_ALIGN);
    check(cudaMemcpyAsync(aligned, bias, bytes, cudaMemcpyDeviceToDevice, stream()), "gemmLt: copy the bias to an aligned buffer");
    runProducts(p, a, b, d, aligned);
  } catch (...) {
    deviceFree(copy);
    throw;
  }
  deviceFree(copy);
}

LtContext& ltContext(const std::string& who) {
  static LtContext s;
  if (!s.workspace) s.workspace = alignUp(deviceAlloc(LT_WORKSPACE_BYTES + 256), 256);
  if (!s.handle) {
    const cublasStatus_t status = cublasLtCreate(&s.handle);
    if (status != CUBLAS_STATUS_SUCCESS) throw CudaFailure(who + ": cublasLtCreate: " + cublasGetStatusString(status));
  }
  return s;
}

}  // namespace wan
