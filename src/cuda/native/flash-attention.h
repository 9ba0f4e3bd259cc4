// The bfloat16 tensor-core flash-attention forward of the wan_cuda addon: the fallback when cuDNN is
// missing or refuses a shape.
#pragma once
#include "common.cuh"

namespace wan {

/**
 * out = softmax(scale · Q·Kᵀ) · V per (batch, head) with bf16 tensor cores (mma.sync m16n8k16, fp32 accumulation) and an online
 * softmax whose statistics stay fp32. q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], o [B, Lq, H, Dv], contiguous (BSHD);
 * q, k, v bfloat16; o stored as outType (BF16 or F32). Any Lq, Lk ≥ 1 (no tile-multiple requirement).
 * Returns false when the head size is unsupported (D = Dv ∈ {32, 64, 128} are) or a pointer is misaligned (q, k, v need 16 bytes,
 * o 4 for BF16 and 8 for F32); true when queued on stream(). Throws CudaFailure when B·H exceeds 65,535 (the grid's y limit),
 * Lk is 0, outType is neither BF16 nor F32, or the launch fails.
 * WAN_CUDA_FLASH_WARPS=8 selects 128-row CTAs of 8 warps for D = 128 instead of 64-row CTAs of 4 warps (for tuning).
 */
bool flashAttentionBf16(const void* q, const void* k, const void* v, void* o, int B, int Lq, int Lk, int H, int D, int Dv, float scale,
                        DType outType);

}  // namespace wan
