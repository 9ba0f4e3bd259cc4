// Row-major (batched) float32 matrix products through cuBLAS on the addon's stream. cuBLAS is
// column-major, so C[M,N] = A·B is issued as Cᵀ = Bᵀ·Aᵀ. TF32 tensor cores stay off unless
// WAN_CUDA_TF32=1 (the parity fixtures are checked against float32 arithmetic).
#include <cublas_v2.h>

#include <cstdlib>

#include "common.cuh"

namespace wan {

namespace {

cublasHandle_t handle() {
  static cublasHandle_t h = nullptr;
  if (!h) {
    cublasStatus_t s = cublasCreate(&h);
    if (s != CUBLAS_STATUS_SUCCESS) throw CudaFailure(std::string("cublasCreate failed: ") + cublasGetStatusString(s));
    const char* tf32 = std::getenv("WAN_CUDA_TF32");
    cublasSetMathMode(h, tf32 && tf32[0] == '1' ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
  }
  cublasSetStream(h, stream());
  return h;
}

void checkBlas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw CudaFailure(std::string(what) + ": " + cublasGetStatusString(s));
}

}  // namespace

void gemm(const float* a, const float* b, float* c, int64_t batch, int64_t m, int64_t n, int64_t k, bool transA, bool transB,
          int64_t strideA, int64_t strideB, int64_t strideC) {
  if (batch == 0 || m == 0 || n == 0) return;
  const int64_t limit = 2147483647;
  if (m > limit || n > limit || k > limit) throw CudaFailure("matmul: a dimension exceeds 2^31 - 1");
  if (k == 0) {
    check(cudaMemsetAsync(c, 0, size_t(batch * m * n) * sizeof(float), stream()), "matmul: zero fill");
    return;
  }
  cublasHandle_t h = handle();
  const float one = 1.0f, zero = 0.0f;
  cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
  int lda = int(transA ? m : k);
  int ldb = int(transB ? k : n);
  const int64_t maxBatch = 65535;
  for (int64_t b0 = 0; b0 < batch; b0 += maxBatch) {
    int count = int(batch - b0 < maxBatch ? batch - b0 : maxBatch);
    if (count == 1) {
      checkBlas(cublasSgemm(h, opB, opA, int(n), int(m), int(k), &one, b + b0 * strideB, ldb, a + b0 * strideA, lda, &zero, c + b0 * strideC,
                            int(n)),
                "cublasSgemm");
    } else {
      checkBlas(cublasSgemmStridedBatched(h, opB, opA, int(n), int(m), int(k), &one, b + b0 * strideB, ldb, strideB, a + b0 * strideA, lda,
                                          strideA, &zero, c + b0 * strideC, int(n), strideC, count),
                "cublasSgemmStridedBatched");
    }
  }
}

}  // namespace wan
