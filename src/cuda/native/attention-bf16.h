// bfloat16 attention: cuDNN's fused SDPA when it is loaded and takes the shape, else the addon's own
// tensor-core flash kernel. q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], o [B, Lq, H, Dv].
#pragma once
#include <string>

#include "common.cuh"

namespace wan {

/** Which kernel may run: cuDNN first then flash (Auto), or only one of them (tests compare both). */
enum class AttentionMode : int { Auto = 0, Cudnn = 1, Flash = 2 };

/** The kernel that ran: none could take the shape, cuDNN's SDPA, or the flash kernel. */
enum AttentionPath : int { NoPath = 0, CudnnPath = 1, FlashPath = 2 };

/**
 * softmax(scale · q·kᵀ) · v with q, k, v bfloat16 and o stored as outType (cuDNN writes bfloat16
 * only, so a float32 o goes to the flash kernel). Returns the path that ran; NoPath when neither
 * takes the shape (Mode Cudnn throws instead, with cuDNN's reason). attentionNote() then says why
 * cuDNN did not run (empty when it did).
 */
int attentionBf16(const void* q, const void* k, const void* v, void* o, int B, int Lq, int Lk, int H, int D, int Dv, float scale, DType outType,
                  AttentionMode mode);

/** Why the last attentionBf16 call did not use cuDNN ("" when it did). */
const std::string& attentionNote();

}  // namespace wan
