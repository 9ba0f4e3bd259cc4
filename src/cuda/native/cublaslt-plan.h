// What the cuBLASLt GEMM modules (gemm-lt.cu, gemm-fp8.cu) share: the process's handle and workspace, and the
// descriptors each destroys with its owner.
#pragma once

#include <cstddef>
#include <cublasLt.h>
#include <string>

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
