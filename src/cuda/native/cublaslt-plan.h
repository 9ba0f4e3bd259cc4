// cuBLASLt descriptors owned by the GEMM modules (gemm-lt.cu, gemm-fp8.cu): each destroyed with its owner.
#pragma once

#include <cublasLt.h>

namespace wan {

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
