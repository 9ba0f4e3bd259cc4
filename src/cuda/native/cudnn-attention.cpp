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
#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "cudnn-graph.h"
#endif

namespace wan {

#ifdef WAN_HAVE_CUDNN

namespace {

using cudnn_graph::Builder;

/** Unique ids of the tensors the variant pack binds (virtual tensors take 101 and up). */
enum Uid : int64_t { UID_Q = 1, UID_K = 2, UID_V = 3, UID_O = 4, UID_SCALE = 5 };

/** A built plan, or why there is none. */
struct Plan {
  cudnn_graph::Plan graph;
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
  const std::vector<int64_t> scores = {b, h, lq, lk}, scoreStrides = {h * lq * lk, lq * lk, lk, 1};
  const std::vector<int64_t> rows = {b, h, lq, 1}, rowStrides = {h * lq, lq, 1, 1};
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
 * The plan for q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], o [B, Lq, H, Dv] (BSHD); throws
 * with cuDNN's reasons if there is none.
 */
void build(Plan& p, int B, int Lq, int Lk, int H, int D, int Dv) {
  std::vector<std::string> failures;
  Builder g;
  if (cudnn_graph::planGraph(g, attentionGraph(g, B, Lq, Lk, H, D, Dv), p.graph, failures)) return;
  throw CudaFailure(cudnn_graph::joinFailures(failures));
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
  void* workspace = deviceAlloc(size_t(p.graph.workspace));
  std::string failure;
  try {
    cudnn_graph::execute(p.graph, {UID_Q, UID_K, UID_V, UID_O, UID_SCALE},
                         {const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), o, &scaleValue}, workspace);
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
  return it->second.refusal.empty() ? it->second.graph.info : it->second.refusal;
}

#else

bool cudnnAttention(const void*, const void*, const void*, void*, int, int, int, int, int, int, float, std::string* why) {
  if (why) *why = "cuDNN attention: " + cudnnInfo().error;
  return false;
}

std::string cudnnAttentionPlan(int, int, int, int, int, int) { return ""; }

#endif

}  // namespace wan
