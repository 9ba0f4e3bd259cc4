// Channels-last 3-D convolution through cuDNN (loaded at run time, see cudnn-loader.h): bf16 on
// tensor cores with fp32 accumulation (through the graph API, with a bias and residual epilogue), or
// fp32 with FMA math (no TF32, through the legacy API).
#pragma once
#include <string>

#include "common.cuh"

namespace wan {

/** What is added to a convolution's result before it is stored: bias[o] (any float type), then a residual of y's shape and type. */
struct ConvEpilogue {
  const void* bias = nullptr;
  DType biasType = F32;
  const void* residual = nullptr;
};

/**
 * y = conv3d(x, w) + bias + residual (cross-correlation) through cuDNN, channels-last: x [N, D, H, W, C], w [O, kd, kh, kw, C]
 * (KTRSC: the filter layout differs from the addon's im2col path), y [N, od, oh, ow, O], with the strides, leading pads and
 * dilations of `c` (c.kd/kh/kw/o describe the filter; the trailing pad is what gives c.od/oh/ow). type: BF16 (tensor cores, fp32
 * accumulation, the epilogue's sum in fp32, rounded once) or F32 (the legacy API, fp32 math, no TF32; symmetric pads only).
 * Returns true when queued on stream(); false with *why when cuDNN is not loaded, or the geometry or type is refused. The first
 * call per (geometry, type, epilogue) plans and caches the plan or the refusal. The epilogue runs
 * inside cuDNN's kernel when a fused plan exists for the geometry, else as one pass after it (biasResidual); true means all of it
 * was queued. WAN_CUDNN_CONV picks the API: "fused" (default: the graph API with the epilogue in the graph), "graph" (the graph
 * API, the epilogue after it) or "legacy" (cudnnConvolutionForward); a geometry the graph API refuses runs through the legacy one.
 */
bool cudnnConv(const void* x, const void* w, void* y, const Conv& c, DType type, const ConvEpilogue& epilogue, std::string* why);

inline bool cudnnConv(const void* x, const void* w, void* y, const Conv& c, DType type, std::string* why) {
  return cudnnConv(x, w, y, c, type, ConvEpilogue{}, why);
}

/** The plans made so far, one line each: "<geometry> <api>: <plan or refusal>". */
std::string cudnnConvPlans();

/**
 * The plan for (c, type), made now when not cached: "<rank>-D, algo <name>, math <name>, workspace <bytes> B", or "refused: why".
 * For logs and the standalone check; needs cuDNN loaded like cudnnConv.
 */
std::string cudnnConvPlan(const Conv& c, DType type);

}  // namespace wan
