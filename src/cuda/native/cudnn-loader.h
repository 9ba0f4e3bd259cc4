// cuDNN found at run time, not linked: the addon dlopens libcudnn.so.9 (and the libraries it loads
// by name) from the first candidate that opens, and looks functions up by name. Built only when
// build.mjs found cuDNN's headers (it then defines WAN_HAVE_CUDNN).
#pragma once
#include <string>
#include <vector>

#ifdef WAN_HAVE_CUDNN
#include <cudnn.h>
#endif

namespace wan {

/** The outcome of loading cuDNN: usable or not, its version (e.g. 91900), the file loaded, and why not. */
struct CudnnInfo {
  bool available = false;
  int version = 0;
  std::string library;
  std::string error;
};

/**
 * Loads cuDNN once, from the first of `candidates` (absolute paths or sonames) that opens and
 * reports a version ≥ 9; later calls return the first outcome. Without WAN_HAVE_CUDNN it reports
 * "built without cuDNN headers".
 */
const CudnnInfo& cudnnLoad(const std::vector<std::string>& candidates);

/** The outcome of the first cudnnLoad (not available, "not loaded", before it). */
const CudnnInfo& cudnnInfo();

/** A cuDNN function by name, or nullptr when cuDNN is not loaded or lacks it. */
void* cudnnSymbol(const char* name);

#ifdef WAN_HAVE_CUDNN
/** The one cuDNN handle, bound to stream() (created on first use; throws CudaFailure when cuDNN is not loaded). */
cudnnHandle_t cudnnHandle();

/** Throws CudaFailure naming `what` and cuDNN's error string when `s` is not CUDNN_STATUS_SUCCESS. */
void checkCudnn(cudnnStatus_t s, const char* what);
#endif

}  // namespace wan
