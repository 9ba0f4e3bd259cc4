// The shared pieces of cuDNN's backend graph API: see cudnn-graph.h.
#include "cudnn-graph.h"

#ifdef WAN_HAVE_CUDNN
#include <chrono>
#include <cstdio>

#include "common.cuh"

namespace wan {
namespace cudnn_graph {

namespace {

template <typename F>
void bind(F& f, const char* name) {
  f = reinterpret_cast<F>(cudnnSymbol(name));
  if (!f) throw CudaFailure(std::string("cuDNN graph API: ") + name + " not found in " + cudnnInfo().library);
}

/** The engine behind an engine configuration: its global index and whether it compiles at run time. */
struct EngineInfo {
  int64_t index = -1;
  bool runtimeCompiled = false;
  std::string error;
};

EngineInfo engineOf(cudnnBackendDescriptor_t config) {
  EngineInfo info;
  try {
    Desc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR, "engine");
    cudnnBackendDescriptor_t e = engine.get();
    int64_t n = 0;
    checkCudnn(api().get(config, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &e), "engine config: engine");
    checkCudnn(api().get(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &info.index), "engine: global index");
    cudnnBackendBehaviorNote_t notes[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
    int64_t count = 0;
    checkCudnn(api().get(e, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE, CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &count, notes),
               "engine: behavior notes");
    for (int64_t i = 0; i < count && i < CUDNN_BEHAVIOR_NOTE_TYPE_COUNT; i++) {
      info.runtimeCompiled |= notes[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION;
    }
  } catch (const CudaFailure& e) {
    info.error = e.what();
  }
  return info;
}

std::string describe(const EngineInfo& e) {
  if (!e.error.empty()) return "engine ? (" + e.error + ")";
  return "engine " + std::to_string(e.index) + (e.runtimeCompiled ? " (runtime-compiled)" : "");
}

}  // namespace

const Api& api() {
  static Api a;
  if (!a.execute) {
    bind(a.create, "cudnnBackendCreateDescriptor");
    bind(a.destroy, "cudnnBackendDestroyDescriptor");
    bind(a.set, "cudnnBackendSetAttribute");
    bind(a.get, "cudnnBackendGetAttribute");
    bind(a.finalize, "cudnnBackendFinalize");
    bind(a.execute, "cudnnBackendExecute");  // bound last: marks the table complete
  }
  return a;
}

Desc::Desc(cudnnBackendDescriptorType_t type, const std::string& what) { checkCudnn(api().create(type, &d_), (what + ": create").c_str()); }

Desc::~Desc() {
  if (d_) api().destroy(d_);
}

void set(cudnnBackendDescriptor_t d, const std::string& what, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
         int64_t count, const void* values) {
  checkCudnn(api().set(d, name, type, count, values), what.c_str());
}

void setDesc(cudnnBackendDescriptor_t d, const std::string& what, cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t value) {
  set(d, what, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &value);
}

void finalize(cudnnBackendDescriptor_t d, const std::string& what) { checkCudnn(api().finalize(d), (what + ": finalize").c_str()); }

cudnnBackendDescriptor_t Builder::make(cudnnBackendDescriptorType_t type, const std::string& what) {
  keep.emplace_back(type, what);
  return keep.back().get();
}

cudnnBackendDescriptor_t Builder::tensor(const char* name, int64_t uid, cudnnDataType_t type, const std::vector<int64_t>& dims,
                                         const std::vector<int64_t>& strides, bool isVirtual, bool byValue) {
  const std::string w = std::string("tensor ") + name;
  if (dims.size() != strides.size()) throw CudaFailure(w + ": dims and strides differ in rank");
  cudnnBackendDescriptor_t t = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR, w);
  const int64_t alignment = 16;
  const int64_t rank = int64_t(dims.size());
  set(t, w + ": data type", CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
  set(t, w + ": dimensions", CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, rank, dims.data());
  set(t, w + ": strides", CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, rank, strides.data());
  set(t, w + ": unique id", CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  set(t, w + ": byte alignment", CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
  set(t, w + ": is virtual", CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &isVirtual);
  if (byValue) set(t, w + ": is by value", CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &byValue);
  finalize(t, w);
  return t;
}

cudnnBackendDescriptor_t Builder::pointwise(const char* name, cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
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

cudnnBackendDescriptor_t Builder::reduction(const char* name, cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
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

cudnnBackendDescriptor_t Builder::matmul(const char* name, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
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

cudnnBackendDescriptor_t Builder::convolution(const char* name, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t w,
                                              cudnnBackendDescriptor_t y, const std::vector<int64_t>& strides,
                                              const std::vector<int64_t>& prePads, const std::vector<int64_t>& postPads,
                                              const std::vector<int64_t>& dilations) {
  const std::string what = std::string("convolution ") + name;
  const int64_t spatial = int64_t(strides.size());
  cudnnBackendDescriptor_t cd = make(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, what + " descriptor");
  const cudnnDataType_t precision = CUDNN_DATA_FLOAT;
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  set(cd, what + ": compute type", CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &precision);
  set(cd, what + ": mode", CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
  set(cd, what + ": spatial dims", CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &spatial);
  set(cd, what + ": strides", CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, spatial, strides.data());
  set(cd, what + ": pre paddings", CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, spatial, prePads.data());
  set(cd, what + ": post paddings", CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, spatial, postPads.data());
  set(cd, what + ": dilations", CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, spatial, dilations.data());
  finalize(cd, what + " descriptor");
  cudnnBackendDescriptor_t op = make(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, what);
  const float one = 1.0f, zero = 0.0f;  // fp32 compute type: fp32 scaling factors
  setDesc(op, what + ": x", CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, x);
  setDesc(op, what + ": w", CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, w);
  setDesc(op, what + ": y", CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, y);
  setDesc(op, what + ": descriptor", CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, cd);
  set(op, what + ": alpha", CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &one);
  set(op, what + ": beta", CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &zero);
  finalize(op, what);
  return op;
}

bool planGraph(Builder& g, const std::vector<cudnnBackendDescriptor_t>& ops, Plan& p, std::vector<std::string>& failures,
               const EngineFilter& filter) {
  const auto started = std::chrono::steady_clock::now();
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
        const EngineInfo engine = engineOf(raw[size_t(i)]);
        try {
          Desc plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, pw);
          set(plan.get(), pw + ": handle", CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
          setDesc(plan.get(), pw + ": engine config", CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, raw[size_t(i)]);
          finalize(plan.get(), pw);
          int64_t workspace = 0, n = 0;
          checkCudnn(api().get(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, &workspace),
                     (pw + ": workspace size").c_str());
          if (filter.maxWorkspace >= 0 && workspace > filter.maxWorkspace) {
            failures.push_back(pw + ": " + describe(engine) + " needs a workspace of " + std::to_string(workspace) + " bytes");
            continue;
          }
          const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
          char planned[48];
          std::snprintf(planned, sizeof planned, "planned in %.1f ms", ms);
          p.info = w + " " + config + ": " + describe(engine) + ", workspace " + std::to_string(workspace) + " bytes, " + planned;
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

void execute(const Plan& p, const std::vector<int64_t>& uids, const std::vector<void*>& pointers, void* workspace) {
  Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
  const int64_t n = int64_t(uids.size());
  set(pack.get(), "variant pack: unique ids", CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids.data());
  set(pack.get(), "variant pack: data pointers", CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, pointers.data());
  set(pack.get(), "variant pack: workspace", CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  finalize(pack.get(), "variant pack");
  checkCudnn(api().execute(cudnnHandle(), p.plan, pack.get()), "execute");
}

std::string joinFailures(const std::vector<std::string>& failures) {
  std::string message = failures.empty() ? std::string("no execution plan") : failures[0];
  for (size_t i = 1; i < failures.size() && i < 6; i++) message += " | " + failures[i];
  if (failures.size() > 6) message += " | (" + std::to_string(failures.size() - 6) + " more)";
  return message;
}

}  // namespace cudnn_graph
}  // namespace wan
#endif
