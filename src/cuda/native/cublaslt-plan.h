// What the cuBLASLt GEMM modules (gemm-lt.cu, gemm-fp8.cu) share: the process's handle and workspace, the
// descriptors each destroys with its owner, and the checked steps of building them.
#pragma once

#include <cstddef>
#include <cublasLt.h>
#include <string>

#include "gemm-lt.h"

namespace wan {

/** Bytes of the workspace every cuBLASLt matmul of the process gets (the algorithm search's limit too). */
constexpr size_t LT_WORKSPACE_BYTES = size_t(32) << 20;

/** The process's cuBLASLt handle and its LT_WORKSPACE_BYTES workspace (256-byte aligned). */
struct LtContext {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

/**
 * The one LtContext of the process, made on first use and never freed (defined in gemm-lt.cu). Both modules queue
 * their matmuls on stream(), so they never use the workspace at once. A failure to create it is a CudaFailure
 * starting with `who` (the caller's problem, for the message).
 */
LtContext& ltContext(const std::string& who);

/** cuBLASLt's epilogue for one of ours (gemm-lt.h's Epilogue). */
inline cublasLtEpilogue_t ltEpilogue(Epilogue e) {
  return e == Epilogue::Bias       ? CUBLASLT_EPILOGUE_BIAS
         : e == Epilogue::Gelu     ? CUBLASLT_EPILOGUE_GELU
         : e == Epilogue::GeluBias ? CUBLASLT_EPILOGUE_GELU_BIAS
                                   : CUBLASLT_EPILOGUE_DEFAULT;
}

// The checked steps of building a plan. P is the calling module's problem: a `throwFor(const P&, const std::string&)`
// declared beside it (found by argument-dependent lookup) throws the CudaFailure naming that problem.
template <typename P>
void checkLt(cublasStatus_t s, const char* step, const P& p) {
  if (s != CUBLAS_STATUS_SUCCESS) throwFor(p, std::string(step) + ": " + cublasGetStatusString(s));
}

// Attribute setters: the value's size is the attribute's (cuBLASLt rejects any other size).
template <typename V, typename P>
void setAttr(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr, V value, const char* step, const P& p) {
  checkLt(cublasLtMatrixLayoutSetAttribute(l, attr, &value, sizeof(value)), step, p);
}
template <typename V, typename P>
void setAttr(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, V value, const char* step, const P& p) {
  checkLt(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)), step, p);
}
template <typename V, typename P>
void setAttr(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, V value, const char* step, const P& p) {
  checkLt(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)), step, p);
}

/** A problem's matmul descriptor, its operand layouts and the chosen algorithm. Layouts are cuBLASLt's: a and b its operands, d both C and D. */
struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};

  LtPlan() = default;
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;
  ~LtPlan() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

/** An algorithm-search preference, destroyed at the end of the search. */
struct LtPreference {
  cublasLtMatmulPreference_t pref = nullptr;

  LtPreference() = default;
  LtPreference(const LtPreference&) = delete;
  LtPreference& operator=(const LtPreference&) = delete;
  ~LtPreference() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
  }
};

}  // namespace wan
