// cuDNN's backend graph API (cudnnBackendCreateDescriptor / SetAttribute / Finalize / Execute) of a
// cuDNN loaded at run time: descriptors owned by RAII objects, a builder for the tensors and
// operations of one graph, and the search for the first execution plan that finalizes. Used by
// cudnn-attention.cpp (fused SDPA) and cudnn-conv.cpp (convolutions with their epilogue).
#pragma once
#ifdef WAN_HAVE_CUDNN
#include <cstdint>
#include <string>
#include <vector>

#include "cudnn-loader.h"

namespace wan {
namespace cudnn_graph {

/** The backend-API functions, looked up by name in the loaded cuDNN. */
struct Api {
  decltype(&cudnnBackendCreateDescriptor) create = nullptr;
  decltype(&cudnnBackendDestroyDescriptor) destroy = nullptr;
  decltype(&cudnnBackendSetAttribute) set = nullptr;
  decltype(&cudnnBackendGetAttribute) get = nullptr;
  decltype(&cudnnBackendFinalize) finalize = nullptr;
  decltype(&cudnnBackendExecute) execute = nullptr;
};

/** The table, complete, or a CudaFailure naming the missing function (call only once cuDNN loaded). */
const Api& api();

/** One backend descriptor, destroyed with this object. */
class Desc {
 public:
  Desc(cudnnBackendDescriptorType_t type, const std::string& what);
  Desc(Desc&& other) noexcept : d_(other.d_) { other.d_ = nullptr; }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  Desc& operator=(Desc&&) = delete;
  ~Desc();
  cudnnBackendDescriptor_t get() const { return d_; }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

/** Sets one attribute; a failure throws CudaFailure naming `what`. */
void set(cudnnBackendDescriptor_t d, const std::string& what, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
         int64_t count, const void* values);
void setDesc(cudnnBackendDescriptor_t d, const std::string& what, cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t value);
void finalize(cudnnBackendDescriptor_t d, const std::string& what);

/** Creates and finalizes the descriptors of one operation graph, keeping each alive in `keep`. */
struct Builder {
  std::vector<Desc> keep;

  cudnnBackendDescriptor_t make(cudnnBackendDescriptorType_t type, const std::string& what);

  /** A tensor of `dims` over `strides` (elements, the same count), 16-byte aligned. */
  cudnnBackendDescriptor_t tensor(const char* name, int64_t uid, cudnnDataType_t type, const std::vector<int64_t>& dims,
                                  const std::vector<int64_t>& strides, bool isVirtual, bool byValue = false);

  /** y = mode(x) or mode(x, b), computed in fp32, alpha1 = alpha2 = 1. */
  cudnnBackendDescriptor_t pointwise(const char* name, cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                                     cudnnBackendDescriptor_t y);

  /** y = reduce(x) over the axes where y has extent 1, in fp32. */
  cudnnBackendDescriptor_t reduction(const char* name, cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y);

  /** c = a · b over the last two dims (batched over the others), accumulated in fp32. */
  cudnnBackendDescriptor_t matmul(const char* name, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c);

  /**
   * y = 1·conv(x, w) + 0·y (cross-correlation, fp32 accumulation) over the spatial dims after [N, C]: per spatial axis its
   * stride, leading and trailing pad, and dilation.
   */
  cudnnBackendDescriptor_t convolution(const char* name, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t w, cudnnBackendDescriptor_t y,
                                       const std::vector<int64_t>& strides, const std::vector<int64_t>& prePads,
                                       const std::vector<int64_t>& postPads, const std::vector<int64_t>& dilations);
};

/** A built plan with everything it was built from. */
struct Plan {
  std::vector<Desc> keep;
  cudnnBackendDescriptor_t plan = nullptr;
  int64_t workspace = 0;
  /** "heuristics mode A config 1 of 7: engine 12 (runtime-compiled), workspace 0 bytes, planned in 3.1 ms". */
  std::string info;
};

/** Which engine configurations a plan may use. */
struct EngineFilter {
  /** The most workspace a plan may ask for, in bytes (negative: any). */
  int64_t maxWorkspace = -1;
};

/**
 * The operation graph of `ops` and the first execution plan that finalizes (heuristics mode A, then B), moved into `p` with
 * every descriptor of `g`; false, with the reasons appended to `failures`, when no configuration finalizes.
 */
bool planGraph(Builder& g, const std::vector<cudnnBackendDescriptor_t>& ops, Plan& p, std::vector<std::string>& failures,
               const EngineFilter& filter = {});

/** Runs `p` on the handle's stream with the tensors bound by unique id and a workspace of p.workspace bytes. */
void execute(const Plan& p, const std::vector<int64_t>& uids, const std::vector<void*>& pointers, void* workspace);

/** The first failures joined by " | " (at most six, then a count). */
std::string joinFailures(const std::vector<std::string>& failures);

}  // namespace cudnn_graph
}  // namespace wan
#endif
