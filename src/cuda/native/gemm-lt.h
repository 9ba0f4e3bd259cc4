#pragma once
#include <cstdint>
#include "common.cuh"
namespace wan {
/** What cuBLASLt applies after the product: nothing, + bias[N], GELU (tanh form), or GELU(· + bias). */
enum class Epilogue : int { None = 0, Bias = 1, Gelu = 2, GeluBias = 3 };
/**
 * Row-major D_b = op(A_b)·op(B_b) (+ bias) (→ GELU) for b < batch, with A, B bfloat16 and fp32 accumulation.
 * op(A_b) is [m, k] (A_b stored [m, k], or [k, m] with transA); op(B_b) is [k, n] (B_b stored [k, n], or [n, k] with transB).
 * D_b is [m, n], stored as dType (BF16 or F32). bias: [n] stored as biasType (BF16 or F32), null without a bias epilogue.
 * strideA/B/D: elements between consecutive matrices (0 = the same matrix for every b). Queued on stream().
 *
 * GELU is 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), applied after the bias.
 * Supported (D type, bias type) pairs: (BF16, BF16) and (F32, F32). cuBLASLt takes bias elements "the same type as the
 * elements of output matrix (Dtype)", the only documented exceptions being int8 and fp8 kernels (cublasLt.h,
 * CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE); any other pair throws CudaFailure, and the caller converts the bias.
 * strideA and strideB may be 0 (one matrix broadcast to every b); with batch > 1, strideD must be ≥ m·n (D matrices
 * never overlap). k = 0 gives D = 0, bias, GELU(0) = 0 or GELU(bias) per the epilogue. Strides and dimensions must be
 * ≥ 0, and m, n, k at most 2³¹ − 1. Failures throw CudaFailure naming the step, the shapes and cuBLAS's status.
 * Not thread-safe: calls are serialised on the addon's one host thread (cached descriptors are updated per call).
 */
void gemmLt(const void* a, const void* b, void* d, int64_t batch, int64_t m, int64_t n, int64_t k, bool transA, bool transB,
            int64_t strideA, int64_t strideB, int64_t strideD, DType dType, const void* bias, DType biasType, Epilogue epilogue);
}
