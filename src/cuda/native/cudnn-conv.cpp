// Channels-last convolution through cuDNN, by two APIs:
// - the backend graph API (cudnn-graph.h) for bf16: the convolution as one operation with channels-
//   last strides, and, fused, its epilogue as pointwise operations on the fp32 result
//     Yc = conv(X, W)  (fp32, virtual)   A = Yc + bias   Y = A + R  (bf16, rounded once)
//   with an execution plan built once per geometry and executed with a variant pack per call;
// - the legacy descriptor API (cudnnConvolutionForward), which cuDNN 9 still ships (deprecated, not
//   removed): NHWC tensor and filter descriptors, fp32 compute type, the algorithm from cuDNN's
//   heuristics; fp32 (FMA math, no TF32) and what the graph API refuses.
// Every cuDNN function is looked up by name through cudnnSymbol, never linked. The addon calls this
// from one thread only, so the plan caches are unguarded.
#include "cudnn-conv.h"

#include "cudnn-loader.h"

#ifdef WAN_HAVE_CUDNN
#include <array>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "cudnn-graph.h"
#endif

namespace wan {

#ifndef WAN_HAVE_CUDNN

bool cudnnConv(const void*, const void*, void*, const Conv&, DType, const ConvEpilogue&, std::string* why) {
  if (why) *why = "built without cuDNN headers";
  return false;
}

std::string cudnnConvPlans() { return ""; }

std::string cudnnConvPlan(const Conv&, DType) { return "refused: built without cuDNN headers"; }

#else

namespace {

#define WAN_CUDNN_CONV_API(X)                   \
  X(cudnnGetErrorString)                        \
  X(cudnnGetLastErrorString)                    \
  X(cudnnCreateTensorDescriptor)                \
  X(cudnnSetTensorNdDescriptorEx)               \
  X(cudnnDestroyTensorDescriptor)               \
  X(cudnnCreateFilterDescriptor)                \
  X(cudnnSetFilterNdDescriptor)                 \
  X(cudnnDestroyFilterDescriptor)               \
  X(cudnnCreateConvolutionDescriptor)           \
  X(cudnnSetConvolutionNdDescriptor)            \
  X(cudnnSetConvolutionMathType)                \
  X(cudnnDestroyConvolutionDescriptor)          \
  X(cudnnGetConvolutionNdForwardOutputDim)      \
  X(cudnnGetConvolutionForwardAlgorithmMaxCount) \
  X(cudnnGetConvolutionForwardAlgorithm_v7)     \
  X(cudnnGetConvolutionForwardWorkspaceSize)    \
  X(cudnnConvolutionForward)

/** The cuDNN functions used here, as found by name; `missing` names those the loaded library lacks. */
struct Api {
#define WAN_DECLARE(name) decltype(&::name) name = nullptr;
  WAN_CUDNN_CONV_API(WAN_DECLARE)
#undef WAN_DECLARE
  std::string missing;
};

/** Looked up on first use, which comes only after cuDNN loaded (see unavailable()). */
const Api& api() {
  static const Api a = [] {
    Api r;
#define WAN_BIND(name)                                                \
  r.name = reinterpret_cast<decltype(&::name)>(cudnnSymbol(#name)); \
  if (!r.name) r.missing += (r.missing.empty() ? "" : ", ") + std::string(#name);
    WAN_CUDNN_CONV_API(WAN_BIND)
#undef WAN_BIND
    return r;
  }();
  return a;
}

/** Why cuDNN can't be called now, "" when it can. */
std::string unavailable() {
  const CudnnInfo& info = cudnnInfo();
  if (!info.available) return "cuDNN is not loaded" + (info.error.empty() ? std::string() : ": " + info.error);
  if (!api().missing.empty()) return "cuDNN " + std::to_string(info.version) + " lacks " + api().missing;
  return "";
}

/** "what: CUDNN_STATUS_… (cuDNN's last error message)", as checkCudnn words it. */
std::string statusText(cudnnStatus_t s, const char* what) {
  const Api& a = api();
  char detail[512] = {};
  a.cudnnGetLastErrorString(detail, sizeof detail);
  std::string m = std::string(what) + ": " + a.cudnnGetErrorString(s);
  if (detail[0]) m += " (" + std::string(detail) + ")";
  return m;
}

const char* algoName(cudnnConvolutionFwdAlgo_t a) {
  static const char* const names[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM",     "DIRECT",
                                      "FFT",           "FFT_TILING",            "WINOGRAD", "WINOGRAD_NONFUSED"};
  const int i = int(a);
  return i >= 0 && i < int(CUDNN_CONVOLUTION_FWD_ALGO_COUNT) ? names[i] : "?";
}

const char* mathName(cudnnMathType_t m) {
  static const char* const names[] = {"DEFAULT", "TENSOR_OP", "TENSOR_OP_ALLOW_CONVERSION", "FMA"};
  const int i = int(m);
  return i >= int(CUDNN_DEFAULT_MATH) && i <= int(CUDNN_FMA_MATH) ? names[i] : "?";
}

/** Workspace bound for an algorithm: faster ones needing more are passed over. */
constexpr size_t WORKSPACE_LIMIT = size_t(1) << 30;

/** Legacy API: descriptors and algorithm of one (geometry, type), or why cuDNN refused it (then no descriptors). */
struct LegacyPlan {
  std::string refused;
  int rank = 0;  // 4 (depth folded into the batch) or 5
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};

void release(LegacyPlan& p) {
  const Api& a = api();
  if (p.x) a.cudnnDestroyTensorDescriptor(p.x);
  if (p.y) a.cudnnDestroyTensorDescriptor(p.y);
  if (p.w) a.cudnnDestroyFilterDescriptor(p.w);
  if (p.conv) a.cudnnDestroyConvolutionDescriptor(p.conv);
  p.x = p.y = nullptr;
  p.w = nullptr;
  p.conv = nullptr;
}

/** Records a failed plan step in p.refused. */
bool ok(LegacyPlan& p, cudnnStatus_t s, const char* what) {
  if (s == CUDNN_STATUS_SUCCESS) return true;
  p.refused = statusText(s, what);
  return false;
}

std::string dims(const int* d, int rank) {
  std::string s = "[";
  for (int i = 0; i < rank; i++) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

/**
 * Plans y [N, od, oh, ow, O] = conv(x [N, D, H, W, C], w [O, kd, kh, kw, C]). cuDNN describes NHWC-format tensors by
 * logical dims [N, C, spatial…] (filters [O, C, spatial…]) and lays them out channels-last itself. With kd = 1, sd = 1
 * and pd = 0 the depth folds into the batch: x is then [N·D, H, W, C], the same memory, and the convolution 2-D.
 */
LegacyPlan makeLegacyPlan(const Conv& c, DType type) {
  LegacyPlan p;
  if (type != BF16 && type != F32) {
    p.refused = "type " + std::to_string(int(type)) + " is neither BF16 nor F32";
    return p;
  }
  const char* axis[3] = {"depth", "height", "width"};
  const int64_t in[3] = {c.d, c.h, c.w}, k[3] = {c.kd, c.kh, c.kw}, out[3] = {c.od, c.oh, c.ow};
  const int64_t stride[3] = {c.sd, c.sh, c.sw}, pad[3] = {c.pd, c.ph, c.pw}, dil[3] = {c.dd, c.dh, c.dw};
  if (c.n < 1 || c.c < 1 || c.o < 1) {
    p.refused = "empty batch or channels";
    return p;
  }
  for (int i = 0; i < 3; i++) {
    if (in[i] < 1 || k[i] < 1 || out[i] < 1 || stride[i] < 1 || dil[i] < 1 || pad[i] < 0) {
      p.refused = std::string("bad ") + axis[i] + " geometry";
      return p;
    }
    // cuDNN pads both sides by p: out = ⌊(in + 2p − dil·(k − 1) − 1) / s⌋ + 1.
    int64_t span = in[i] + 2 * pad[i] - dil[i] * (k[i] - 1) - 1;
    int64_t symmetric = span < 0 ? 0 : span / stride[i] + 1;
    if (symmetric != out[i]) {
      p.refused = std::string(axis[i]) + " output " + std::to_string(out[i]) + " implies a trailing pad other than the leading " +
                  std::to_string(pad[i]) + " (cuDNN pads symmetrically and would give " + std::to_string(symmetric) + ")";
      return p;
    }
  }
  const int64_t counts[3] = {c.n * c.d * c.h * c.w * c.c, c.n * c.od * c.oh * c.ow * c.o, c.o * c.kd * c.kh * c.kw * c.c};
  for (int64_t n : counts) {
    if (n > INT_MAX) {
      p.refused = "a tensor of " + std::to_string(n) + " elements is beyond the legacy API's int indexing";
      return p;
    }
  }

  const bool fold = c.kd == 1 && c.sd == 1 && c.pd == 0;
  p.rank = fold ? 4 : 5;
  const int spatial = p.rank - 2, first = fold ? 1 : 0;  // first spatial axis of in/k/out used
  int xDims[5], wDims[5], yDims[5], pads[3], strides[3], dilations[3];
  xDims[0] = int(fold ? c.n * c.d : c.n);
  yDims[0] = int(fold ? c.n * c.od : c.n);
  wDims[0] = yDims[1] = int(c.o);
  xDims[1] = wDims[1] = int(c.c);
  for (int i = 0; i < spatial; i++) {
    xDims[2 + i] = int(in[first + i]);
    wDims[2 + i] = int(k[first + i]);
    yDims[2 + i] = int(out[first + i]);
    pads[i] = int(pad[first + i]);
    strides[i] = int(stride[first + i]);
    dilations[i] = int(dil[first + i]);
  }

  const Api& a = api();
  const cudnnDataType_t data = type == BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
  const bool described =
      ok(p, a.cudnnCreateTensorDescriptor(&p.x), "cudnnCreateTensorDescriptor(x)") &&
      ok(p, a.cudnnSetTensorNdDescriptorEx(p.x, CUDNN_TENSOR_NHWC, data, p.rank, xDims), "cudnnSetTensorNdDescriptorEx(x)") &&
      ok(p, a.cudnnCreateTensorDescriptor(&p.y), "cudnnCreateTensorDescriptor(y)") &&
      ok(p, a.cudnnSetTensorNdDescriptorEx(p.y, CUDNN_TENSOR_NHWC, data, p.rank, yDims), "cudnnSetTensorNdDescriptorEx(y)") &&
      ok(p, a.cudnnCreateFilterDescriptor(&p.w), "cudnnCreateFilterDescriptor") &&
      ok(p, a.cudnnSetFilterNdDescriptor(p.w, data, CUDNN_TENSOR_NHWC, p.rank, wDims), "cudnnSetFilterNdDescriptor") &&
      ok(p, a.cudnnCreateConvolutionDescriptor(&p.conv), "cudnnCreateConvolutionDescriptor") &&
      ok(p, a.cudnnSetConvolutionNdDescriptor(p.conv, spatial, pads, strides, dilations, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
         "cudnnSetConvolutionNdDescriptor") &&
      ok(p, a.cudnnSetConvolutionMathType(p.conv, type == BF16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH), "cudnnSetConvolutionMathType");
  int outDims[5] = {};
  if (!described ||
      !ok(p, a.cudnnGetConvolutionNdForwardOutputDim(p.conv, p.x, p.w, p.rank, outDims), "cudnnGetConvolutionNdForwardOutputDim")) {
    release(p);
    return p;
  }
  for (int i = 0; i < p.rank; i++) {
    if (outDims[i] != yDims[i]) {
      p.refused = "cuDNN's output dims " + dims(outDims, p.rank) + " differ from " + dims(yDims, p.rank);
      release(p);
      return p;
    }
  }

  // Heuristic candidates, best first: the first that ran through planning, keeps fp32 on FMA (no TF32) and needs at most
  // WORKSPACE_LIMIT. The descriptor takes the candidate's math type, which is what selects tensor-core kernels.
  cudnnHandle_t h = cudnnHandle();
  int maxCount = 0;
  if (!ok(p, a.cudnnGetConvolutionForwardAlgorithmMaxCount(h, &maxCount), "cudnnGetConvolutionForwardAlgorithmMaxCount")) {
    release(p);
    return p;
  }
  std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(size_t(maxCount > 0 ? maxCount : 1));
  int count = 0;
  if (!ok(p, a.cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, int(perf.size()), &count, perf.data()),
          "cudnnGetConvolutionForwardAlgorithm_v7")) {
    release(p);
    return p;
  }
  std::string passed;
  for (int i = 0; i < count; i++) {
    const cudnnConvolutionFwdAlgoPerf_t& r = perf[size_t(i)];
    std::string name = std::string(algoName(r.algo)) + "/" + mathName(r.mathType);
    if (r.status != CUDNN_STATUS_SUCCESS) {
      passed += "; " + name + ": " + a.cudnnGetErrorString(r.status);
      continue;
    }
    if (type == F32 && r.mathType != CUDNN_FMA_MATH) {
      passed += "; " + name + ": not FMA math for fp32";
      continue;
    }
    if (!ok(p, a.cudnnSetConvolutionMathType(p.conv, r.mathType), "cudnnSetConvolutionMathType")) {
      release(p);
      return p;
    }
    size_t bytes = 0;
    cudnnStatus_t s = a.cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, r.algo, &bytes);
    if (s != CUDNN_STATUS_SUCCESS) {
      passed += "; " + name + ": workspace size " + a.cudnnGetErrorString(s);
      continue;
    }
    if (bytes < r.memory) bytes = r.memory;
    if (bytes > WORKSPACE_LIMIT) {
      passed += "; " + name + ": workspace " + std::to_string(bytes) + " B";
      continue;
    }
    p.algo = r.algo;
    p.math = r.mathType;
    p.workspace = bytes;
    return p;
  }
  p.refused = "no usable algorithm among cuDNN's " + std::to_string(count) + passed;
  release(p);
  return p;
}

/** The 21 numbers of a geometry, then what else tells plans apart. */
using Key = std::array<int64_t, 25>;

Key keyOf(const Conv& c, int64_t a, int64_t b = 0, int64_t d = 0, int64_t e = 0) {
  return {c.n,  c.d,  c.h,  c.w,  c.c,  c.kd, c.kh, c.kw, c.o,  c.od, c.oh, c.ow, c.sd,
          c.sh, c.sw, c.pd, c.ph, c.pw, c.dd, c.dh, c.dw, a,    b,    d,    e};
}

/** Legacy plans by (geometry, type), kept for the life of the process (never destroyed: cuDNN may be gone at exit). */
std::map<Key, LegacyPlan>& legacyPlans() {
  static auto* plans = new std::map<Key, LegacyPlan>();
  return *plans;
}

LegacyPlan& legacyPlan(const Conv& c, DType type) {
  const Key key = keyOf(c, int64_t(type));
  auto it = legacyPlans().find(key);
  if (it == legacyPlans().end()) it = legacyPlans().emplace(key, makeLegacyPlan(c, type)).first;
  return it->second;
}

std::string legacyText(const LegacyPlan& p) {
  if (!p.refused.empty()) return "refused: " + p.refused;
  return std::to_string(p.rank) + "-D, algo " + algoName(p.algo) + ", math " + mathName(p.math) + ", workspace " +
         std::to_string(p.workspace) + " B";
}

/** Which API runs bf16 convolutions (WAN_CUDNN_CONV, read once). */
enum class ConvApi { Fused, Graph, Legacy };

ConvApi convApi() {
  static const ConvApi api = [] {
    const char* e = std::getenv("WAN_CUDNN_CONV");
    if (e && std::strcmp(e, "legacy") == 0) return ConvApi::Legacy;
    if (e && std::strcmp(e, "graph") == 0) return ConvApi::Graph;
    return ConvApi::Fused;
  }();
  return api;
}

/** Unique ids of the tensors a variant pack binds (virtual tensors take 101 and up). */
enum Uid : int64_t { UID_X = 1, UID_W = 2, UID_Y = 3, UID_R = 4, UID_BIAS = 5 };

/** Graph API: a plan of (geometry, epilogue), or why there is none. */
struct GraphPlan {
  cudnn_graph::Plan graph;
  bool bias = false, residual = false;
  std::string refused;
};

/** Logical dims [N, C, spatial…] and the strides of channels-last memory over them. */
void channelsLast(int64_t n, int64_t c, const std::vector<int64_t>& spatial, std::vector<int64_t>& dims, std::vector<int64_t>& strides) {
  dims = {n, c};
  dims.insert(dims.end(), spatial.begin(), spatial.end());
  strides.assign(dims.size(), 0);
  strides[1] = 1;
  int64_t step = c;
  for (size_t i = dims.size(); i-- > 2;) {
    strides[i] = step;
    step *= dims[i];
  }
  strides[0] = step;
}

/**
 * The bf16 graph of y [N, od, oh, ow, O] = conv(x, w) (+ bias[o]) (+ r), rank 4 when the depth folds into the batch (as the legacy
 * plan does). Pads: c's leading pads, and per axis the trailing pad that makes cuDNN's output size c's.
 */
GraphPlan makeGraphPlan(const Conv& c, bool bias, DType biasType, bool residual) {
  GraphPlan p;
  p.bias = bias;
  p.residual = residual;
  const int64_t in[3] = {c.d, c.h, c.w}, k[3] = {c.kd, c.kh, c.kw}, out[3] = {c.od, c.oh, c.ow};
  const int64_t stride[3] = {c.sd, c.sh, c.sw}, pad[3] = {c.pd, c.ph, c.pw}, dil[3] = {c.dd, c.dh, c.dw};
  if (c.n < 1 || c.c < 1 || c.o < 1) {
    p.refused = "empty batch or channels";
    return p;
  }
  const bool fold = c.kd == 1 && c.sd == 1 && c.pd == 0;
  const int first = fold ? 1 : 0;
  std::vector<int64_t> inS, kS, outS, strides, pre, post, dilations;
  for (int i = first; i < 3; i++) {
    if (in[i] < 1 || k[i] < 1 || out[i] < 1 || stride[i] < 1 || dil[i] < 1 || pad[i] < 0) {
      p.refused = "bad geometry";
      return p;
    }
    // cuDNN: out = ⌊(in + pre + post − dil·(k − 1) − 1) / s⌋ + 1; post is the least that reaches c's output.
    int64_t trailing = (out[i] - 1) * stride[i] + dil[i] * (k[i] - 1) + 1 - in[i] - pad[i];
    if (trailing < 0) trailing = 0;
    const int64_t span = in[i] + pad[i] + trailing - dil[i] * (k[i] - 1) - 1;
    if (span < 0 || span / stride[i] + 1 != out[i]) {
      p.refused = "output size " + std::to_string(out[i]) + " is not reachable with a trailing pad on axis " + std::to_string(i);
      return p;
    }
    inS.push_back(in[i]);
    kS.push_back(k[i]);
    outS.push_back(out[i]);
    strides.push_back(stride[i]);
    pre.push_back(pad[i]);
    post.push_back(trailing);
    dilations.push_back(dil[i]);
  }
  const int64_t batch = fold ? c.n * c.d : c.n, outBatch = fold ? c.n * c.od : c.n;
  std::vector<int64_t> xDims, xStrides, wDims, wStrides, yDims, yStrides, bDims, bStrides;
  channelsLast(batch, c.c, inS, xDims, xStrides);
  channelsLast(c.o, c.c, kS, wDims, wStrides);
  channelsLast(outBatch, c.o, outS, yDims, yStrides);
  bDims.assign(yDims.size(), 1);
  bDims[1] = c.o;
  bStrides.assign(yDims.size(), c.o);
  bStrides[1] = 1;
  try {
    cudnn_graph::Builder g;
    cudnnBackendDescriptor_t X = g.tensor("x", UID_X, CUDNN_DATA_BFLOAT16, xDims, xStrides, false);
    cudnnBackendDescriptor_t W = g.tensor("w", UID_W, CUDNN_DATA_BFLOAT16, wDims, wStrides, false);
    cudnnBackendDescriptor_t Y = g.tensor("y", UID_Y, CUDNN_DATA_BFLOAT16, yDims, yStrides, false);
    const bool fused = bias || residual;
    cudnnBackendDescriptor_t conv = fused ? g.tensor("conv", 101, CUDNN_DATA_FLOAT, yDims, yStrides, true) : Y;
    std::vector<cudnnBackendDescriptor_t> ops = {g.convolution("forward", X, W, conv, strides, pre, post, dilations)};
    cudnnBackendDescriptor_t sum = conv;
    if (bias) {
      const cudnnDataType_t bt = biasType == BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
      cudnnBackendDescriptor_t B = g.tensor("bias", UID_BIAS, bt, bDims, bStrides, false);
      cudnnBackendDescriptor_t A = residual ? g.tensor("conv+bias", 102, CUDNN_DATA_FLOAT, yDims, yStrides, true) : Y;
      ops.push_back(g.pointwise("bias", CUDNN_POINTWISE_ADD, sum, B, A));
      sum = A;
    }
    if (residual) {
      cudnnBackendDescriptor_t R = g.tensor("residual", UID_R, CUDNN_DATA_BFLOAT16, yDims, yStrides, false);
      ops.push_back(g.pointwise("residual", CUDNN_POINTWISE_ADD, sum, R, Y));
    }
    std::vector<std::string> failures;
    cudnn_graph::EngineFilter filter;
    filter.maxWorkspace = int64_t(WORKSPACE_LIMIT);
    if (!cudnn_graph::planGraph(g, ops, p.graph, failures, filter)) p.refused = cudnn_graph::joinFailures(failures);
  } catch (const CudaFailure& e) {
    p.refused = e.what();
  }
  return p;
}

/** Graph plans by (geometry, epilogue), kept for the life of the process. */
std::map<Key, GraphPlan>& graphPlans() {
  static auto* plans = new std::map<Key, GraphPlan>();
  return *plans;
}

GraphPlan& graphPlan(const Conv& c, bool bias, DType biasType, bool residual) {
  const Key key = keyOf(c, int64_t(BF16), bias, bias ? int64_t(biasType) : -1, residual);
  auto it = graphPlans().find(key);
  if (it == graphPlans().end()) it = graphPlans().emplace(key, makeGraphPlan(c, bias, biasType, residual)).first;
  return it->second;
}

/** Queues p; false (p then refused) when cuDNN declines at execution. */
bool runGraph(GraphPlan& p, const void* x, const void* w, void* y, const ConvEpilogue& e) {
  std::vector<int64_t> uids = {UID_X, UID_W, UID_Y};
  std::vector<void*> pointers = {const_cast<void*>(x), const_cast<void*>(w), y};
  if (p.bias) {
    uids.push_back(UID_BIAS);
    pointers.push_back(const_cast<void*>(e.bias));
  }
  if (p.residual) {
    uids.push_back(UID_R);
    pointers.push_back(const_cast<void*>(e.residual));
  }
  void* workspace = p.graph.workspace ? deviceAlloc(size_t(p.graph.workspace)) : nullptr;
  try {
    cudnn_graph::execute(p.graph, uids, pointers, workspace);
  } catch (const CudaFailure& failure) {
    p.refused = std::string("at execution: ") + failure.what();
  }
  if (workspace) deviceFree(workspace);  // stream-ordered: reused only after the convolution queued before the free
  return p.refused.empty();
}

/** Queues the legacy convolution; false with *why when the plan is refused. */
bool runLegacy(const void* x, const void* w, void* y, const Conv& c, DType type, std::string* why) {
  LegacyPlan& p = legacyPlan(c, type);
  if (!p.refused.empty()) {
    if (why) *why = p.refused;
    return false;
  }
  const Api& a = api();
  cudnnHandle_t h = cudnnHandle();  // bound to stream()
  const float one = 1.0f, zero = 0.0f;  // fp32 compute type: fp32 scaling factors
  void* workspace = p.workspace ? deviceAlloc(p.workspace) : nullptr;
  cudnnStatus_t s = a.cudnnConvolutionForward(h, &one, p.x, x, p.w, w, p.conv, p.algo, workspace, p.workspace, &zero, p.y, y);
  if (workspace) deviceFree(workspace);
  if (CUDNN_STATUS_CATEGORY(s) == CUDNN_STATUS_NOT_SUPPORTED) {
    p.refused = statusText(s, "cudnnConvolutionForward");
    release(p);
    if (why) *why = p.refused;
    return false;
  }
  checkCudnn(s, "cudnnConvolutionForward");
  return true;
}

std::string shapeText(const Conv& c) {
  char s[256];
  std::snprintf(s, sizeof s, "x [%lld,%lld,%lld,%lld,%lld] k [%lld,%lld,%lld] o %lld s [%lld,%lld,%lld] p [%lld,%lld,%lld]", (long long)c.n,
                (long long)c.d, (long long)c.h, (long long)c.w, (long long)c.c, (long long)c.kd, (long long)c.kh, (long long)c.kw,
                (long long)c.o, (long long)c.sd, (long long)c.sh, (long long)c.sw, (long long)c.pd, (long long)c.ph, (long long)c.pw);
  return s;
}

Conv convOfKey(const Key& k) {
  return Conv{k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9], k[10], k[11], k[12], k[13], k[14], k[15], k[16], k[17], k[18], k[19], k[20]};
}

}  // namespace

bool cudnnConv(const void* x, const void* w, void* y, const Conv& c, DType type, const ConvEpilogue& e, std::string* why) {
  // x [N, D, H, W, C], w [O, kd, kh, kw, C], y [N, od, oh, ow, O] (+ bias [O], residual like y).
  std::string no = unavailable();
  const uintptr_t addresses = reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(y) |
                              reinterpret_cast<uintptr_t>(e.bias) | reinterpret_cast<uintptr_t>(e.residual);
  if (no.empty() && addresses % 16 != 0) no = "x, w, y, the bias and the residual must be 16-byte aligned";
  if (no.empty() && e.residual && type != BF16) no = "a residual epilogue is for bf16 convolutions";
  if (!no.empty()) {
    if (why) *why = no;
    return false;
  }
  const bool epilogue = e.bias || e.residual;
  bool ran = false, fusedIn = false;
  if (type == BF16 && convApi() != ConvApi::Legacy) {
    if (epilogue && convApi() == ConvApi::Fused) {
      GraphPlan& p = graphPlan(c, e.bias != nullptr, e.biasType, e.residual != nullptr);
      ran = fusedIn = p.refused.empty() && runGraph(p, x, w, y, e);
    }
    if (!ran) {
      GraphPlan& p = graphPlan(c, false, F32, false);
      ran = p.refused.empty() && runGraph(p, x, w, y, e);
    }
  }
  if (!ran && !runLegacy(x, w, y, c, type, why)) return false;
  if (epilogue && !fusedIn) {
    const int64_t cols = c.o, rows = c.n * c.od * c.oh * c.ow;
    biasResidual(y, e.bias, e.residual, y, rows, cols, type, e.biasType, type, type);
  }
  return true;
}

std::string cudnnConvPlans() {
  std::string lines;
  for (const auto& [key, p] : graphPlans()) {
    const std::string what = p.bias || p.residual ? std::string(" graph+") + (p.bias ? "bias" : "") + (p.bias && p.residual ? "+" : "") +
                                                        (p.residual ? "residual" : "")
                                                  : std::string(" graph");
    lines += shapeText(convOfKey(key)) + what + ": " + (p.refused.empty() ? p.graph.info : "refused: " + p.refused) + "\n";
  }
  for (const auto& [key, p] : legacyPlans()) {
    lines += shapeText(convOfKey(key)) + (key[21] == int64_t(BF16) ? " legacy bf16: " : " legacy fp32: ") + legacyText(p) + "\n";
  }
  return lines;
}

std::string cudnnConvPlan(const Conv& c, DType type) {
  std::string no = unavailable();
  if (!no.empty()) return "refused: " + no;
  if (type == BF16 && convApi() != ConvApi::Legacy) {
    const GraphPlan& p = graphPlan(c, false, F32, false);
    if (p.refused.empty()) return "graph API: " + p.graph.info;
    return "graph API refused (" + p.refused + "), legacy API: " + legacyText(legacyPlan(c, type));
  }
  return "legacy API: " + legacyText(legacyPlan(c, type));
}

#endif

}  // namespace wan
