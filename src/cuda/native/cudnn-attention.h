// Attention through cuDNN's fused scaled-dot-product-attention forward (bfloat16), cuDNN loaded at
// run time (cudnn-loader.h). Built as stubs that always decline when WAN_HAVE_CUDNN is not defined.
#pragma once
#include <string>

namespace wan {

/**
 * out = softmax(scale · Q·Kᵀ) · V per (batch, head) through cuDNN's fused SDPA forward (inference: no stats output, no mask, no dropout).
 * q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], o [B, Lq, H, Dv]: bfloat16, contiguous (BSHD), any Lq, Lk ≥ 1.
 * Returns true when it ran (queued on stream()); false, with *why set, when cuDNN is not loaded or builds no plan for the shape.
 */
bool cudnnAttention(const void* q, const void* k, const void* v, void* o, int B, int Lq, int Lk, int H, int D, int Dv, float scale,
                    std::string* why);

/**
 * The plan cudnnAttention built for this shape, in words (engine, heuristics mode, workspace), or why it
 * built none; "" before the first call with this shape. For diagnostics (test/cuda/native/cudnn-check.cu).
 */
std::string cudnnAttentionPlan(int B, int Lq, int Lk, int H, int D, int Dv);

}  // namespace wan
