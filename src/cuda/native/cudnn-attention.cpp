// cuDNN's fused scaled-dot-product attention forward for bfloat16, through the backend graph API
// (cudnnBackendCreateDescriptor / SetAttribute / Finalize / Execute) of a cuDNN loaded at run time.
//
// The operation graph is the one cudnn-frontend's composite SDPA node lowers an inference call to
// (no mask, no dropout, no stats output; softmax as reductions and pointwise operations, as the
// frontend does for cuDNN before 9.21), which cuDNN's fused attention engines match as a whole.
// Tensors carry cuDNN's [b, h, s, d] dims order over the BSHD memory of the callers:
//
//   S   = Q · Kᵀ         matmul     Q [B,H,Lq,D] bf16, Kᵀ [B,H,D,Lk] bf16 → fp32 virtual [B,H,Lq,Lk]
//   T   = S · scale      MUL        scale: fp32 [1,1,1,1] passed by value at execution
//   M   = max_k T        reduction  MAX → fp32 virtual [B,H,Lq,1]
//   Z   = T − M          SUB
//   E   = exp Z          EXP
//   L   = Σ_k E          reduction  ADD → [B,H,Lq,1]
//   lnL = log L          LOG        } the log-sum-exp statistics M + log L, a virtual tensor no one
//   St  = M + lnL        ADD        } reads: the frontend emits it for inference too
//   P   = E / L          DIV        → bf16 virtual [B,H,Lq,Lk] (P converted for the second matmul)
//   O   = P · V          matmul     V [B,H,Lk,Dv] bf16 → O [B,H,Lq,Dv] bf16
//
// so out = softmax(scale · Q·Kᵀ) · V with fp32 accumulation and P rounded to bf16. Every
// intermediate is virtual (never in memory); matmuls, pointwise and reductions compute in fp32.
// Plans are built once per shape (heuristics mode A, then B; the first engine configuration whose
// execution plan finalizes) and kept; a shape cuDNN refuses is remembered with the reasons.
#include "cudnn-attention.h"

#include "common.cuh"
#include "cudnn-loader.h"

#ifdef WAN_HAVE_CUDNN
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>
#endif

namespace wan {

#ifdef WAN_HAVE_CUDNN

namespace {

/** The backend-API functions, looked up by name in the loaded cuDNN. */
struct Api {
  decltype(&cudnnBackendCreateDescriptor) create = nullptr;
  decltype(&cudnnBackendDestroyDescriptor) destroy = nullptr;
  decltype(&cudnnBackendSetAttribute) set = nullptr;
  decltype(&cudnnBackendGetAttribute) get = nullptr;
  decltype(&cudnnBackendFinalize) finalize = nullptr;
  decltype(&cudnnBackendExecute) execute = nullptr;
};

template <typename F>
void bind(F& f, const char* name) {
  f = reinterpret_cast<F>(cudnnSymbol(name));
  if (!f) throw CudaFailure(std::string("cuDNN attention: ") + name + " not found in " + cudnnInfo().library);
}

/** The table, complete or throwing (execute is bound last and marks it complete). */
const Api& api() {
  static Api a;
  if (!a.execute) {
    bind(a.create, "cudnnBackendCreateDescriptor");
    bind(a.destroy, "cudnnBackendDestroyDescriptor");
    bind(a.set, "cudnnBackendSetAttribute");
    bind(a.get, "cudnnBackendGetAttribute");
    bind(a.finalize, "cudnnBackendFinalize");
    bind(a.execute, "cudnnBackendExecute");
  }
  return a;
}

/** One backend descriptor, destroyed with this object. */
class Desc {
 public:
  Desc(cudnnBackendDescriptorType_t type, const std::string& what) { checkCudnn(api().create(type, &d_), (what + ": create").c_str()); }
  Desc(Desc&& other) noexcept : d_(other.d_) { other.d_ = nullptr; }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  Desc& operator=(Desc&&) = delete;
  ~Desc() {
    if (d_) api().destroy(d_);
  }
  cudnnBackendDescriptor_t get() const { return d_; }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

void set(cudnnBackendDescriptor_t d, const std::string& what, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
         int64_t count, const void* values) {
  checkCudnn(api().set(d, name, type, count, values), what.c_str());
}

void setDesc(cudnnBackendDescriptor_t d, const std::string& what, cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t value) {
  set(d, what, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &value);
}

void finalize(cudnnBackendDescriptor_t d, const std::string& what) { checkCudnn(api().finalize(d), (what + ": finalize").c_str()); }

using Dims = std::array<int64_t, 4>;

/** Unique ids of the tensors the variant pack binds (virtual tensors take 101 and up). */
enum Uid : int64_t { UID_Q = 1, UID_K = 2, UID_V = 3, UID_O = 4, UID_SCALE = 5 };

/** Creates and finalizes the descriptors of one operation graph, keeping each alive in `keep`. */
struct Builder {
  std::vector<Desc> keep;

  cudnnBackendDescriptor_t make(cudnnBackendDescriptorType_t type, const std::string& what) {
    keep.emplace_back(type, what);
    return keep.back().get();
  }

  /** A tensor of `dims` ([b, h, s, d] order) over `strides` in elements, 16-byte aligned (the frontend's default). */
  cudnnBackendDescriptor_t tensor(const char* name, int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides,
                                  bool isVirtual, bool byValue = false) {
    const std::string w = std::string("tensor ") + name;
    cudnnBackendDescriptor_t t = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR, w);
    const int64_t alignment = 16;
    set(t, w + ": data type", CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
    set(t, w + ": dimensions", CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data());
    set(t, w + ": strides", CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data());
    set(t, w + ": unique id", CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    set(t, w + ": byte alignment", CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
    set(t, w + ": is virtual", CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &isVirtual);
    if (byValue) set(t, w + ": is by value", CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &byValue);
    finalize(t, w);
    return t;
  }

  /** y = mode(x) or mode(x, b), computed in fp32, alpha1 = alpha2 = 1 (as the frontend sets them). */
  cudnnBackendDescriptor_t pointwise(const char* name, cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                                     cudnnBackendDescriptor_t y) {
    const std::string w = std::string("pointwise ") + name;
    cudnnBackendDescriptor_t pw = make(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, w + " descriptor");
    const cudnnDataType_t precision = CUDNN_DATA_FLOAT;
    set(pw, w + ": mode", CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    set(pw, w + ": math precision", CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &precision);
    finalize(pw, w + " descriptor");
    cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, w);
    const float one = 1.0f;
    setDesc(op, w + ": descriptor", CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw);
    setDesc(op, w + ": x", CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
    setDesc(op, w + ": y", CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
    set(op, w + ": alpha1", CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one);
    set(op, w + ": alpha2", CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one);
    if (b) setDesc(op, w + ": b", CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b);
    finalize(op, w);
    return op;
  }

  /** y = reduce(x) over the axes where y has extent 1, in fp32. */
  cudnnBackendDescriptor_t reduction(const char* name, cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    const std::string w = std::string("reduction ") + name;
    cudnnBackendDescriptor_t rd = make(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, w + " descriptor");
    const cudnnDataType_t precision = CUDNN_DATA_FLOAT;
    set(rd, w + ": operator", CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode);
    set(rd, w + ": compute type", CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &precision);
    finalize(rd, w + " descriptor");
    cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, w);
    setDesc(op, w + ": descriptor", CUDNN_ATTR_OPERATION_REDUCTION_DESC, rd);
    setDesc(op, w + ": x", CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x);
    setDesc(op, w + ": y", CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y);
    finalize(op, w);
    return op;
  }

  /** c = a · b over the last two dims (batched over the first two), accumulated in fp32. */
  cudnnBackendDescriptor_t matmul(const char* name, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
    const std::string w = std::string("matmul ") + name;
    cudnnBackendDescriptor_t md = make(CUDNN_BACKEND_MATMUL_DESCRIPTOR, w + " descriptor");
    const cudnnDataType_t precision = CUDNN_DATA_FLOAT;
    set(md, w + ": compute type", CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &precision);
    finalize(md, w + " descriptor");
    cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, w);
    setDesc(op, w + ": a", CUDNN_ATTR_OPERATION_MATMUL_ADESC, a);
    setDesc(op, w + ": b", CUDNN_ATTR_OPERATION_MATMUL_BDESC, b);
    setDesc(op, w + ": c", CUDNN_ATTR_OPERATION_MATMUL_CDESC, c);
    setDesc(op, w + ": descriptor", CUDNN_ATTR_OPERATION_MATMUL_DESC, md);
    finalize(op, w);
    return op;
  }
};

/** A built plan with everything it was built from, or why there is none. */
struct Plan {
  std::vector<Desc> keep;
  cudnnBackendDescriptor_t plan = nullptr;
  int64_t workspace = 0;
  std::string info;
  std::string refusal;
};

/** Plans per (B, Lq, Lk, H, D, Dv): the scale is a by-value input of execution, not part of a plan. */
using Key = std::tuple<int, int, int, int, int, int>;

/** Never destroyed: at exit cuDNN may be finalized before this would be. */
std::map<Key, Plan>& plans() {
  static auto* m = new std::map<Key, Plan>();
  return *m;
}

std::string shapeText(int B, int Lq, int Lk, int H, int D, int Dv) {
  return "[B=" + std::to_string(B) + " Lq=" + std::to_string(Lq) + " Lk=" + std::to_string(Lk) + " H=" + std::to_string(H) +
         " D=" + std::to_string(D) + " Dv=" + std::to_string(Dv) + "]";
}

/** The engine behind an engine configuration: its global index and whether it compiles at run time (NVRTC). */
std::string describeEngine(cudnnBackendDescriptor_t config) {
  try {
    Desc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR, "engine");
    cudnnBackendDescriptor_t e = engine.get();
    int64_t n = 0, index = -1;
    checkCudnn(api().get(config, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &e), "engine config: engine");
    checkCudnn(api().get(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &index), "engine: global index");
    cudnnBackendBehaviorNote_t notes[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
    int64_t count = 0;
    checkCudnn(api().get(e, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE, CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &count, notes),
               "engine: behavior notes");
    bool compiled = false;
    for (int64_t i = 0; i < count && i < CUDNN_BEHAVIOR_NOTE_TYPE_COUNT; i++) {
      compiled |= notes[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION;
    }
    return "engine " + std::to_string(index) + (compiled ? " (runtime-compiled)" : "");
  } catch (const CudaFailure& e) {
    return std::string("engine ? (") + e.what() + ")";
  }
}

/**
 * The operations of the graph of the header comment for q [B, Lq, H, D], k [B, Lk, H, D],
 * v [B, Lk, H, Dv], o [B, Lq, H, Dv] in BSHD memory, K described as Kᵀ [B, H, D, Lk].
 */
std::vector<cudnnBackendDescriptor_t> attentionGraph(Builder& g, int64_t b, int64_t lq, int64_t lk, int64_t h, int64_t d, int64_t dv) {
  cudnnBackendDescriptor_t Q = g.tensor("Q", UID_Q, CUDNN_DATA_BFLOAT16, {b, h, lq, d}, {lq * h * d, d, h * d, 1}, false);
  cudnnBackendDescriptor_t K = g.tensor("K^T", UID_K, CUDNN_DATA_BFLOAT16, {b, h, d, lk}, {lk * h * d, d, 1, h * d}, false);
  cudnnBackendDescriptor_t V = g.tensor("V", UID_V, CUDNN_DATA_BFLOAT16, {b, h, lk, dv}, {lk * h * dv, dv, h * dv, 1}, false);
  cudnnBackendDescriptor_t O = g.tensor("O", UID_O, CUDNN_DATA_BFLOAT16, {b, h, lq, dv}, {lq * h * dv, dv, h * dv, 1}, false);
  cudnnBackendDescriptor_t scale = g.tensor("scale", UID_SCALE, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
  const Dims scores = {b, h, lq, lk}, scoreStrides = {h * lq * lk, lq * lk, lk, 1};
  const Dims rows = {b, h, lq, 1}, rowStrides = {h * lq, lq, 1, 1};
  cudnnBackendDescriptor_t S = g.tensor("S", 101, CUDNN_DATA_FLOAT, scores, scoreStrides, true);
  cudnnBackendDescriptor_t T = g.tensor("S*scale", 102, CUDNN_DATA_FLOAT, scores, scoreStrides, true);
  cudnnBackendDescriptor_t M = g.tensor("max", 103, CUDNN_DATA_FLOAT, rows, rowStrides, true);
  cudnnBackendDescriptor_t Z = g.tensor("T-max", 104, CUDNN_DATA_FLOAT, scores, scoreStrides, true);
  cudnnBackendDescriptor_t E = g.tensor("exp", 105, CUDNN_DATA_FLOAT, scores, scoreStrides, true);
  cudnnBackendDescriptor_t L = g.tensor("sum", 106, CUDNN_DATA_FLOAT, rows, rowStrides, true);
  cudnnBackendDescriptor_t lnL = g.tensor("log(sum)", 107, CUDNN_DATA_FLOAT, rows, rowStrides, true);
  cudnnBackendDescriptor_t stats = g.tensor("stats", 108, CUDNN_DATA_FLOAT, rows, rowStrides, true);
  cudnnBackendDescriptor_t P = g.tensor("P", 109, CUDNN_DATA_BFLOAT16, scores, scoreStrides, true);
  return {
      g.matmul("Q*K^T", Q, K, S),
      g.pointwise("scale", CUDNN_POINTWISE_MUL, S, scale, T),
      g.reduction("max", CUDNN_REDUCE_TENSOR_MAX, T, M),
      g.pointwise("sub", CUDNN_POINTWISE_SUB, T, M, Z),
      g.pointwise("exp", CUDNN_POINTWISE_EXP, Z, nullptr, E),
      g.reduction("sum", CUDNN_REDUCE_TENSOR_ADD, E, L),
      g.pointwise("log", CUDNN_POINTWISE_LOG, L, nullptr, lnL),
      g.pointwise("stats", CUDNN_POINTWISE_ADD, M, lnL, stats),
      g.pointwise("div", CUDNN_POINTWISE_DIV, E, L, P),
      g.matmul("P*V", P, V, O),
  };
}

/**
 * The operation graph of `ops` and the first execution plan that finalizes (heuristics mode A, then
 * B), stored in `p` with every descriptor of `g`; false, with the reasons appended to `failures`, if
 * no configuration finalizes (a failure before the heuristics throws).
 */
bool planGraph(Builder& g, const std::vector<cudnnBackendDescriptor_t>& ops, Plan& p, std::vector<std::string>& failures) {
  cudnnHandle_t handle = cudnnHandle();
  const std::string wg = "operation graph";
  cudnnBackendDescriptor_t graph = g.make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, wg);
  set(graph, wg + ": operations", CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, int64_t(ops.size()), ops.data());
  set(graph, wg + ": handle", CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  finalize(graph, wg);

  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_B}) {
    const std::string w = std::string("heuristics mode ") + (mode == CUDNN_HEUR_MODE_A ? "A" : "B");
    try {
      Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, w);
      setDesc(heur.get(), w + ": operation graph", CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph);
      set(heur.get(), w + ": mode", CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
      finalize(heur.get(), w);
      int64_t count = 0;
      checkCudnn(api().get(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
                 (w + ": result count").c_str());
      if (count < 1) throw CudaFailure(w + ": no engine configuration for this graph");
      std::vector<Desc> configs;
      std::vector<cudnnBackendDescriptor_t> raw;
      for (int64_t i = 0; i < count; i++) {
        configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, w + ": engine config");
        raw.push_back(configs.back().get());
      }
      int64_t returned = 0;
      checkCudnn(api().get(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned, raw.data()),
                 (w + ": results").c_str());
      for (int64_t i = 0; i < returned && i < count; i++) {
        const std::string config = "config " + std::to_string(i + 1) + " of " + std::to_string(returned);
        const std::string pw = w + ": execution plan (" + config + ")";
        try {
          Desc plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, pw);
          set(plan.get(), pw + ": handle", CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
          setDesc(plan.get(), pw + ": engine config", CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, raw[i]);
          finalize(plan.get(), pw);
          int64_t workspace = 0, n = 0;
          checkCudnn(api().get(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, &workspace),
                     (pw + ": workspace size").c_str());
          p.info = w + " " + config + ": " + describeEngine(raw[i]) + ", workspace " + std::to_string(workspace) + " bytes";
          p.plan = plan.get();
          p.workspace = workspace;
          g.keep.push_back(std::move(configs[size_t(i)]));
          g.keep.push_back(std::move(plan));
          p.keep = std::move(g.keep);
          return true;
        } catch (const CudaFailure& e) {
          failures.push_back(e.what());
        }
      }
    } catch (const CudaFailure& e) {
      failures.push_back(e.what());
    }
  }
  return false;
}

/**
 * The plan for q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], o [B, Lq, H, Dv] (BSHD); throws
 * with cuDNN's reasons if there is none.
 */
void build(Plan& p, int B, int Lq, int Lk, int H, int D, int Dv) {
  std::vector<std::string> failures;
  Builder g;
  if (planGraph(g, attentionGraph(g, B, Lq, Lk, H, D, Dv), p, failures)) return;
  std::string message = failures.empty() ? std::string("no execution plan") : failures[0];
  for (size_t i = 1; i < failures.size() && i < 6; i++) message += " | " + failures[i];
  if (failures.size() > 6) message += " | (" + std::to_string(failures.size() - 6) + " more)";
  throw CudaFailure(message);
}

}  // namespace

bool cudnnAttention(const void* q, const void* k, const void* v, void* o, int B, int Lq, int Lk, int H, int D, int Dv, float scale,
                    std::string* why) {
  // q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], o [B, Lq, H, Dv]: bf16, BSHD.
  auto decline = [why](const std::string& reason) {
    if (why) *why = reason;
    return false;
  };
  const CudnnInfo& info = cudnnInfo();
  if (!info.available) return decline("cuDNN attention: cuDNN is not available (" + info.error + ")");
  const std::string shape = shapeText(B, Lq, Lk, H, D, Dv);
  if (B < 1 || Lq < 1 || Lk < 1 || H < 1 || D < 1 || Dv < 1) {
    return decline("cuDNN attention " + shape + ": every extent must be at least 1");
  }
  if (D % 8 != 0 || Dv % 8 != 0) return decline("cuDNN attention " + shape + ": head sizes must be multiples of 8 (16-byte rows)");
  for (const void* ptr : {q, k, v, static_cast<const void*>(o)}) {
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return decline("cuDNN attention " + shape + ": tensors must start 16-byte aligned");
  }

  auto [it, fresh] = plans().try_emplace(Key{B, Lq, Lk, H, D, Dv});
  Plan& p = it->second;
  if (fresh) {
    try {
      build(p, B, Lq, Lk, H, D, Dv);
    } catch (const CudaFailure& e) {
      p.refusal = "cuDNN attention " + shape + ": " + e.what();
    }
  }
  if (!p.refusal.empty()) return decline(p.refusal);

  float scaleValue = scale;
  void* workspace = deviceAlloc(size_t(p.workspace));
  std::string failure;
  try {
    Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
    const int64_t uids[] = {UID_Q, UID_K, UID_V, UID_O, UID_SCALE};
    void* pointers[] = {const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), o, &scaleValue};
    set(pack.get(), "variant pack: unique ids", CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 5, uids);
    set(pack.get(), "variant pack: data pointers", CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 5, pointers);
    set(pack.get(), "variant pack: workspace", CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
    finalize(pack.get(), "variant pack");
    checkCudnn(api().execute(cudnnHandle(), p.plan, pack.get()), "execute");
  } catch (const CudaFailure& e) {
    failure = e.what();
  }
  deviceFree(workspace);  // stream-ordered: released after the queued attention
  if (!failure.empty()) {
    p.refusal = "cuDNN attention " + shape + ": " + failure;
    return decline(p.refusal);
  }
  return true;
}

std::string cudnnAttentionPlan(int B, int Lq, int Lk, int H, int D, int Dv) {
  auto it = plans().find(Key{B, Lq, Lk, H, D, Dv});
  if (it == plans().end()) return "";
  return it->second.refusal.empty() ? it->second.info : it->second.refusal;
}

#else

bool cudnnAttention(const void*, const void*, const void*, void*, int, int, int, int, int, int, float, std::string* why) {
  if (why) *why = "cuDNN attention: " + cudnnInfo().error;
  return false;
}

std::string cudnnAttentionPlan(int, int, int, int, int, int) { return ""; }

#endif

}  // namespace wan
