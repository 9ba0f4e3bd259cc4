// Chooses the bfloat16 attention kernel: cuDNN's fused SDPA, else the flash kernel of this addon.
#include "attention-bf16.h"

#include "cudnn-attention.h"
#include "flash-attention.h"

namespace wan {

namespace {

std::string& note() {
  static std::string n;
  return n;
}

}  // namespace

const std::string& attentionNote() { return note(); }

int attentionBf16(const void* q, const void* k, const void* v, void* o, int B, int Lq, int Lk, int H, int D, int Dv, float scale, DType outType,
                  AttentionMode mode) {
  if (outType != BF16 && outType != F32) throw CudaFailure("attention: the output must be stored as bfloat16 or float32");
  note().clear();
  if (mode != AttentionMode::Flash) {
    std::string why;
    if (outType != BF16) why = "cuDNN writes bfloat16 outputs only";
    else if (cudnnAttention(q, k, v, o, B, Lq, Lk, H, D, Dv, scale, &why)) return CudnnPath;
    if (mode == AttentionMode::Cudnn) throw CudaFailure("attention: cuDNN did not run: " + why);
    note() = why;
  }
  return flashAttentionBf16(q, k, v, o, B, Lq, Lk, H, D, Dv, scale, outType) ? FlashPath : NoPath;
}

}  // namespace wan
