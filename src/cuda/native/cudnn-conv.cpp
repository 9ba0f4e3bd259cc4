// Channels-last convolution through cuDNN's legacy descriptor API (cudnnConvolutionForward), which
// cuDNN 9 still ships (deprecated, not removed; libcudnn_cnn behind the libcudnn shim): NHWC tensor
// and filter descriptors, fp32 compute type, the algorithm from cuDNN's heuristics. Every cuDNN
// function is looked up by name through cudnnSymbol, never linked. The addon calls this from one
// thread only, so the plan cache is unguarded.
#include "cudnn-conv.h"

#include "cudnn-loader.h"

#ifdef WAN_HAVE_CUDNN
#include <array>
#include <climits>
#include <cstdint>
#include <map>
#include <vector>
#endif

namespace wan {

#ifndef WAN_HAVE_CUDNN

bool cudnnConv(const void*, const void*, void*, const Conv&, DType, std::string* why) {
  if (why) *why = "built without cuDNN headers";
  return false;
}

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

/** Descriptors and algorithm of one (geometry, type), or why cuDNN refused it (then no descriptors). */
struct Plan {
  std::string refused;
  int rank = 0;  // 4 (depth folded into the batch) or 5
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};

void release(Plan& p) {
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
bool ok(Plan& p, cudnnStatus_t s, const char* what) {
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
Plan makePlan(const Conv& c, DType type) {
  Plan p;
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

/** Plans by (geometry, type), kept for the life of the process (never destroyed: cuDNN may be gone at exit). */
Plan& plan(const Conv& c, DType type) {
  using Key = std::array<int64_t, 22>;
  static auto* plans = new std::map<Key, Plan>();
  const Key key = {c.n,  c.d,  c.h,  c.w,  c.c,  c.kd, c.kh, c.kw, c.o,  c.od, c.oh,
                   c.ow, c.sd, c.sh, c.sw, c.pd, c.ph, c.pw, c.dd, c.dh, c.dw, int64_t(type)};
  auto it = plans->find(key);
  if (it == plans->end()) it = plans->emplace(key, makePlan(c, type)).first;
  return it->second;
}

}  // namespace

bool cudnnConv(const void* x, const void* w, void* y, const Conv& c, DType type, std::string* why) {
  // x [N, D, H, W, C], w [O, kd, kh, kw, C], y [N, od, oh, ow, O]: y = 1·conv(x, w) + 0·y.
  std::string no = unavailable();
  if (no.empty() && (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(y)) % 16 != 0) {
    no = "x, w and y must be 16-byte aligned";
  }
  Plan* p = nullptr;
  if (no.empty()) {
    p = &plan(c, type);
    no = p->refused;
  }
  if (!no.empty()) {
    if (why) *why = no;
    return false;
  }
  const Api& a = api();
  cudnnHandle_t h = cudnnHandle();  // bound to stream()
  const float one = 1.0f, zero = 0.0f;  // fp32 compute type: fp32 scaling factors
  void* workspace = p->workspace ? deviceAlloc(p->workspace) : nullptr;
  cudnnStatus_t s =
      a.cudnnConvolutionForward(h, &one, p->x, x, p->w, w, p->conv, p->algo, workspace, p->workspace, &zero, p->y, y);
  if (workspace) deviceFree(workspace);  // stream-ordered: reused only after the convolution queued before the free
  if (CUDNN_STATUS_CATEGORY(s) == CUDNN_STATUS_NOT_SUPPORTED) {
    p->refused = statusText(s, "cudnnConvolutionForward");
    release(*p);
    if (why) *why = p->refused;
    return false;
  }
  checkCudnn(s, "cudnnConvolutionForward");
  return true;
}

std::string cudnnConvPlan(const Conv& c, DType type) {
  std::string no = unavailable();
  if (!no.empty()) return "refused: " + no;
  const Plan& p = plan(c, type);
  if (!p.refused.empty()) return "refused: " + p.refused;
  return std::to_string(p.rank) + "-D, algo " + algoName(p.algo) + ", math " + mathName(p.math) + ", workspace " +
         std::to_string(p.workspace) + " B";
}

#endif

}  // namespace wan
