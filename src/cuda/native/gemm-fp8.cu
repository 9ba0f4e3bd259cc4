// FP8 Linear GEMMs through cuBLASLt (issue 17: "cuBLASLt fp8 GEMMs with scales as a measured option", opt-in with
// WAN_FP8_GEMM=1). For y = x·wᵀ (+ bias) (→ GELU) with w stored as float8_e4m3fn codes and a per-tensor scale s_w:
//   1. amax = max|x| over the whole activation (amaxKernel: per-block maxima of the float32 bit patterns of |x|,
//      combined with atomicMax; non-negative floats order as their bits, NaN above +∞, so a NaN propagates);
//   2. s_x = amax / 448 (float32, correctly rounded; 1 when amax is 0), q_x = e4m3(x / s_x) (quantizeKernel, which
//      also writes s_x and s_w beside amax for cuBLASLt to read: no host synchronisation);
//   3. D = epilogue(scaleA·scaleB·(A·B)) by cublasLtMatmul with A = q_w, B = q_x (CUDA_R_8F_E4M3), scaleA = s_w,
//      scaleB = s_x as device pointers (CUBLASLT_MATMUL_DESC_A/B_SCALE_POINTER), CUBLAS_COMPUTE_32F, C = D bf16.
// As in gemm-lt.cu the row-major D[m, n] is cuBLASLt's column-major n × m matrix, D = op(A)·op(B) with A = W
// (column-major [k, n], ld k, TRANSA = T) and B = X (column-major [k, m], ld k, TRANSB = N): the "TN" layout,
// both operands K-major, that Hopper's FP8 kernels require (cuBLAS guide, cublasLtMatmul, "FP8 ... A must be
// transposed and B non-transposed"), with leading dimensions multiple of 16 bytes: k % 16 == 0; n % 16 == 0 keeps
// D's rows 16-byte aligned too. The cuBLASLt FP8 table pairs a bf16 D with a bf16 C and a bf16 bias.
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <map>
#include <memory>
#include <tuple>

#include "cublaslt-plan.h"
#include "gemm-fp8.h"

namespace wan {

namespace {

constexpr int64_t DIM_LIMIT = 2147483647;
constexpr int THREADS = 256;
constexpr float E4M3_MAX = 448.0f;

// ---- quantization of the activation --------------------------------------------------------------------------

__device__ __forceinline__ float loadAt(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float loadAt(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }

/** 8 consecutive elements from a 16-byte aligned address. */
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float* v) {
  uint4 u = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int j = 0; j < 4; j++) {
    float2 f = __bfloat1622float2(h[j]);
    v[2 * j] = f.x;
    v[2 * j + 1] = f.y;
  }
}
__device__ __forceinline__ void load8(const float* p, float* v) {
  float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

/** The bit pattern of |v|: for non-negative floats (and NaN, above +∞) the order of the bits is the order of the values. */
__device__ __forceinline__ unsigned absBits(float v) { return __float_as_uint(v) & 0x7fffffffu; }

/** *amax = max(*amax, max_i bits(|x_i|)) over n elements (VEC: x 16-byte aligned, read 8 at a time). */
template <typename T, bool VEC>
__global__ void amaxKernel(const T* x, int64_t n, unsigned* amax) {
  unsigned m = 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x, first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t groups = VEC ? n / 8 : 0;
  for (int64_t g = first; g < groups; g += stride) {
    float v[8];
    load8(x + g * 8, v);
#pragma unroll
    for (int j = 0; j < 8; j++) m = max(m, absBits(v[j]));
  }
  for (int64_t i = groups * 8 + first; i < n; i += stride) m = max(m, absBits(loadAt(x, i)));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
  __shared__ unsigned warpMax[THREADS / 32];
  if ((threadIdx.x & 31) == 0) warpMax[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x < 32) {
    m = threadIdx.x < THREADS / 32 ? warpMax[threadIdx.x] : 0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (threadIdx.x == 0) atomicMax(amax, m);
  }
}

/** s_x = amax / 448 rounded once (float32 division), or 1 when that is 0 (x all zeros, or below 448·2⁻¹⁴⁹). */
__device__ __forceinline__ float activationScale(unsigned amaxBits) {
  float s = __fdiv_rn(__uint_as_float(amaxBits), E4M3_MAX);
  return s == 0.0f ? 1.0f : s;
}

/**
 * q[i] = encodeE4m3(x[i] / s_x) for n elements, s_x from head[0] (amax bits); thread 0 writes s_x and s_w at bytes
 * FP8_HEAD_SX and FP8_HEAD_SW of the head (the floats cuBLASLt's scale pointers read). VEC: x 16-byte aligned and q
 * 8-byte aligned.
 */
template <typename T, bool VEC>
__global__ void quantizeKernel(const T* x, uint8_t* q, int64_t n, unsigned* head, float wScale) {
  const float s = activationScale(head[0]);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    reinterpret_cast<float*>(head)[FP8_HEAD_SX / 4] = s;
    reinterpret_cast<float*>(head)[FP8_HEAD_SW / 4] = wScale;
  }
  const int64_t stride = int64_t(gridDim.x) * blockDim.x, first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t groups = VEC ? n / 8 : 0;
  for (int64_t g = first; g < groups; g += stride) {
    float v[8];
    load8(x + g * 8, v);
    uint32_t lo = 0, hi = 0;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      lo |= uint32_t(encodeE4m3(__fdiv_rn(v[j], s))) << (8 * j);
      hi |= uint32_t(encodeE4m3(__fdiv_rn(v[4 + j], s))) << (8 * j);
    }
    reinterpret_cast<uint2*>(q)[g] = make_uint2(lo, hi);
  }
  for (int64_t i = groups * 8 + first; i < n; i += stride) q[i] = encodeE4m3(__fdiv_rn(loadAt(x, i), s));
}

template <typename T>
void quantize(const T* x, uint8_t* q, int64_t n, unsigned* head, float wScale) {
  const bool vec = reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(q) % 8 == 0;
  const unsigned blocks = gridFor(vec ? (n + 7) / 8 : n, THREADS);
  check(cudaMemsetAsync(head, 0, sizeof(unsigned), stream()), "gemmFp8: clear amax");
  if (vec) amaxKernel<T, true><<<blocks, THREADS, 0, stream()>>>(x, n, head);
  else amaxKernel<T, false><<<blocks, THREADS, 0, stream()>>>(x, n, head);
  checkLaunch("gemmFp8: amax");
  if (vec) quantizeKernel<T, true><<<blocks, THREADS, 0, stream()>>>(x, q, n, head, wScale);
  else quantizeKernel<T, false><<<blocks, THREADS, 0, stream()>>>(x, q, n, head, wScale);
  checkLaunch("gemmFp8: quantize");
}

// ---- cuBLASLt ----------------------------------------------------------------------------------------------------

struct Problem {
  int64_t m, n, k;
  Epilogue epilogue;
  bool fastAccum;

  std::string describe() const {
    return "m " + std::to_string(m) + ", n " + std::to_string(n) + ", k " + std::to_string(k) + ", epilogue " + std::to_string(int(epilogue)) +
           (fastAccum ? ", fast accumulation" : "");
  }
};

[[noreturn]] void throwFor(const Problem& p, const std::string& what) { throw CudaFailure("gemmFp8 [" + p.describe() + "]: " + what); }

/** ltContext (the handle and workspace gemmLt uses too) for one of this module's problems. */
LtContext& contextFor(const Problem& p) { return ltContext("gemmFp8 [" + p.describe() + "]"); }

/** A shape's descriptors and algorithm (the scale and bias pointers are set per call). */
struct Plan : LtPlan {
  /** Why no algorithm was found ("" when one was): the refusal is cached too. */
  std::string refusal;
};

using Preference = LtPreference;

using Key = std::tuple<int64_t, int64_t, int64_t, int, bool, bool>;

/** The cached plan of (m, n, k, epilogue, fastAccum, bias given); every pointer is 16-byte aligned (checked by the caller). */
Plan& planFor(const Problem& p, bool withBias, const void* bias, const void* scaleA, const void* scaleB) {
  static std::map<Key, std::unique_ptr<Plan>> plans;
  const Key key{p.m, p.n, p.k, int(p.epilogue), p.fastAccum, withBias};
  auto found = plans.find(key);
  if (found != plans.end()) return *found->second;

  auto plan = std::make_unique<Plan>();
  checkLt(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_8F_E4M3, uint64_t(p.k), uint64_t(p.n), p.k), "cublasLtMatrixLayoutCreate A", p);
  checkLt(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_8F_E4M3, uint64_t(p.k), uint64_t(p.m), p.k), "cublasLtMatrixLayoutCreate B", p);
  checkLt(cublasLtMatrixLayoutCreate(&plan->d, CUDA_R_16BF, uint64_t(p.n), uint64_t(p.m), p.n), "cublasLtMatrixLayoutCreate D", p);
  checkLt(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate", p);
  setAttr(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T, "set CUBLASLT_MATMUL_DESC_TRANSA", p);
  setAttr(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N, "set CUBLASLT_MATMUL_DESC_TRANSB", p);
  setAttr(plan->desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, int8_t(p.fastAccum ? 1 : 0), "set CUBLASLT_MATMUL_DESC_FAST_ACCUM", p);
  setAttr(plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, scaleA, "set CUBLASLT_MATMUL_DESC_A_SCALE_POINTER", p);
  setAttr(plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, scaleB, "set CUBLASLT_MATMUL_DESC_B_SCALE_POINTER", p);
  setAttr(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, ltEpilogue(p.epilogue), "set CUBLASLT_MATMUL_DESC_EPILOGUE", p);
  if (withBias) {
    setAttr(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, CUDA_R_16BF, "set CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE", p);
    setAttr(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, "set CUBLASLT_MATMUL_DESC_BIAS_POINTER", p);
  }

  Preference pref;
  checkLt(cublasLtMatmulPreferenceCreate(&pref.pref), "cublasLtMatmulPreferenceCreate", p);
  setAttr(pref.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(LT_WORKSPACE_BYTES), "set CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES", p);
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    setAttr(pref.pref, attr, uint32_t(16), "set CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES", p);
  }
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  cublasStatus_t s =
      cublasLtMatmulAlgoGetHeuristic(contextFor(p).handle, plan->desc, plan->a, plan->b, plan->d, plan->d, pref.pref, 1, &result, &returned);
  if (s != CUBLAS_STATUS_SUCCESS || returned < 1 || result.state != CUBLAS_STATUS_SUCCESS) {
    plan->refusal = std::string("cublasLtMatmulAlgoGetHeuristic found no fp8 algorithm (e4m3 TN, bf16 D, epilogue ") +
                    std::to_string(int(p.epilogue)) + "): " + cublasGetStatusString(s != CUBLAS_STATUS_SUCCESS ? s : result.state);
  } else {
    plan->algo = result.algo;
  }
  return *plans.emplace(key, std::move(plan)).first->second;
}

/** The device's compute capability (major·10 + minor), read once. */
int computeCapability() {
  static int cc = -1;
  if (cc < 0) {
    int device = 0, major = 0, minor = 0;
    check(cudaGetDevice(&device), "gemmFp8: cudaGetDevice");
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "gemmFp8: compute capability");
    check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "gemmFp8: compute capability");
    cc = major * 10 + minor;
  }
  return cc;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

std::string gemmFp8(const void* x, DType xType, const uint8_t* w, float wScale, void* d, int64_t m, int64_t n, int64_t k, const void* bias,
                    Epilogue epilogue, bool fastAccum, void* scratch) {
  const Problem p{m, n, k, epilogue, fastAccum};
  if (xType != BF16 && xType != F32) throwFor(p, "x must be bf16 or f32");
  if (epilogue != Epilogue::None && epilogue != Epilogue::Bias && epilogue != Epilogue::Gelu && epilogue != Epilogue::GeluBias) {
    throwFor(p, "unknown epilogue " + std::to_string(int(epilogue)));
  }
  const bool withBias = epilogue == Epilogue::Bias || epilogue == Epilogue::GeluBias;
  if (withBias != (bias != nullptr)) throwFor(p, withBias ? "the epilogue needs a bias, and bias is null" : "a bias was given to an epilogue without one");
  if (m < 0 || n < 0 || k < 0) throwFor(p, "negative dimension");
  if (m > DIM_LIMIT || n > DIM_LIMIT || k > DIM_LIMIT) throwFor(p, "a dimension exceeds 2^31 - 1");
  if (!scratch || reinterpret_cast<uintptr_t>(scratch) % 16 != 0) throwFor(p, "scratch must be a 16-byte aligned buffer of fp8ScratchBytes(m, k) bytes");

  const int cc = computeCapability();
  if (cc < 89) return "fp8 tensor-core GEMMs need compute capability 8.9 or newer; this GPU is " + std::to_string(cc / 10) + "." + std::to_string(cc % 10);
  if (m == 0 || n == 0 || k == 0) return "an empty product (m, n or k is 0)";
  if (k % 16 != 0 || n % 16 != 0) {
    return "k = " + std::to_string(k) + " and n = " + std::to_string(n) + " must both be multiples of 16 (cuBLASLt's fp8 TN layout)";
  }
  if (!aligned16(w) || !aligned16(d) || (bias && !aligned16(bias))) return "the weight, output or bias is not 16-byte aligned";

  unsigned* head = static_cast<unsigned*>(scratch);
  uint8_t* codes = static_cast<uint8_t*>(scratch) + FP8_SCRATCH_HEAD;
  const float* scaleX = reinterpret_cast<const float*>(static_cast<const uint8_t*>(scratch) + FP8_HEAD_SX);
  const float* scaleW = reinterpret_cast<const float*>(static_cast<const uint8_t*>(scratch) + FP8_HEAD_SW);
  Plan& plan = planFor(p, withBias, bias, scaleW, scaleX);
  if (!plan.refusal.empty()) return plan.refusal;

  if (xType == BF16) quantize(static_cast<const __nv_bfloat16*>(x), codes, m * k, head, wScale);
  else quantize(static_cast<const float*>(x), codes, m * k, head, wScale);

  // cuBLASLt's A is W (scale s_w), its B is X (scale s_x); pointers may differ from the call that built the plan.
  setAttr(plan.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(scaleW), "set CUBLASLT_MATMUL_DESC_A_SCALE_POINTER", p);
  setAttr(plan.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(scaleX), "set CUBLASLT_MATMUL_DESC_B_SCALE_POINTER", p);
  if (withBias) setAttr(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, "set CUBLASLT_MATMUL_DESC_BIAS_POINTER", p);
  LtContext& ctx = contextFor(p);
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t s = cublasLtMatmul(ctx.handle, plan.desc, &alpha, w, plan.a, codes, plan.b, &beta, d, plan.d, d, plan.d, &plan.algo,
                                         ctx.workspace, LT_WORKSPACE_BYTES, stream());
  if (s == CUBLAS_STATUS_NOT_SUPPORTED) {
    // the algorithm the heuristic chose refuses to run: a refusal of this shape, cached like the heuristic's (D unwritten)
    plan.refusal = std::string("cublasLtMatmul refused the fp8 algorithm the heuristic chose (e4m3 TN, bf16 D, epilogue ") +
                   std::to_string(int(p.epilogue)) + "): " + cublasGetStatusString(s);
    return plan.refusal;
  }
  checkLt(s, "cublasLtMatmul", p);
  return "";
}

}  // namespace wan
