// Channels-last 3-D convolution through cuDNN (loaded at run time, see cudnn-loader.h): bf16 on
// tensor cores with fp32 accumulation, or fp32 with FMA math (no TF32).
#pragma once
#include <string>

#include "common.cuh"

namespace wan {

/**
 * y = conv3d(x, w) (cross-correlation) through cuDNN, channels-last: x [N, D, H, W, C], w [O, kd, kh, kw, C] (KTRSC: note the
 * filter layout differs from the addon's im2col path), y [N, od, oh, ow, O], with the strides, leading pads and dilations of `c`
 * (c.kd/kh/kw/o describe the filter; pads are symmetric in cuDNN: accept only geometries whose trailing pad is implied, see below).
 * type: BF16 (tensor cores, fp32 accumulation) or F32 (fp32 math, no TF32). Returns true when queued on stream(); false with *why
 * when cuDNN is not loaded, or the geometry or type is refused.
 *
 * A geometry is accepted when cuDNN's output size with the leading pads on both sides, ⌊(in + 2·p − dil·(k−1) − 1)/s⌋ + 1, equals
 * c.od/oh/ow: outputs never read past the trailing pad they imply, so the result matches any trailing pad giving that size.
 * The first call per (geometry, type) plans (descriptors, algorithm, workspace size) and caches the plan or the refusal.
 */
bool cudnnConv(const void* x, const void* w, void* y, const Conv& c, DType type, std::string* why);

/**
 * The plan for (c, type), made now when not cached: "<rank>-D, algo <name>, math <name>, workspace <bytes> B", or "refused: why".
 * For logs and the standalone check; needs cuDNN loaded like cudnnConv.
 */
std::string cudnnConvPlan(const Conv& c, DType type);

}  // namespace wan
