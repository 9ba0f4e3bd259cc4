// cuDNN found at run time: dlopen of libcudnn.so.9 (cuDNN 9 splits into a small front library that
// loads its sub-libraries by name on first use), function lookup by dlsym, and the addon's one
// cuDNN handle on stream(). Nothing here links cuDNN; without WAN_HAVE_CUDNN only the
// "not available" answers are built.
#include "cudnn-loader.h"

#include "common.cuh"

#ifdef WAN_HAVE_CUDNN
#include <dlfcn.h>
#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#endif

namespace wan {

#ifdef WAN_HAVE_CUDNN

namespace {

/** What cudnnLoad found: the outcome, the library handle and the handle bound to a stream. */
struct Loader {
  bool tried = false;
  CudnnInfo info;
  void* library = nullptr;
  cudnnHandle_t handle = nullptr;
  cudaStream_t bound = nullptr;
};

Loader& loader() {
  static Loader l = [] {
    Loader s;
    s.info.error = "not loaded";
    return s;
  }();
  return l;
}

/** The folder part of a path ("" when it has none). */
std::string folderOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

/** dlopen(path, RTLD_NOW | RTLD_GLOBAL), kept in `opened` so a rejected candidate can close it. */
bool openGlobal(const std::string& path, std::vector<void*>& opened) {
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (h) opened.push_back(h);
  return h != nullptr;
}

/**
 * NVRTC for cuDNN's runtime-compiled engines, of the CUDA major the addon is built with: the soname
 * (LD_LIBRARY_PATH, ld.so.cache), then the toolkit's lib64, then the pip wheels' folders beside
 * nvidia/cudnn (nvidia/cu<major>/lib, nvidia/cuda_nvrtc/lib). From a folder its builtins library
 * (libnvrtc-builtins.so.<major>.<minor>, which NVRTC opens by name) is opened first. Absence is not
 * an error: engines that need no compilation still work.
 */
void preloadNvrtc(const std::string& cudnnFolder, std::vector<void*>& opened) {
  const std::string major = std::to_string(CUDART_VERSION / 1000);
  const std::string soname = "libnvrtc.so." + major;
  if (openGlobal(soname, opened)) return;
  std::vector<std::string> folders;
  if (const char* home = std::getenv("CUDA_HOME")) folders.push_back(std::string(home) + "/lib64");
  folders.push_back("/usr/local/cuda/lib64");
  if (!cudnnFolder.empty()) {
    std::string nvidia = folderOf(folderOf(cudnnFolder));  // .../nvidia/cudnn/lib → .../nvidia
    folders.push_back(nvidia + "/cu" + major + "/lib");
    folders.push_back(nvidia + "/cuda_nvrtc/lib");
  }
  const std::string builtins = "libnvrtc-builtins.so." + major + ".";
  for (const std::string& folder : folders) {
    if (!exists(folder + "/" + soname)) continue;
    if (DIR* d = opendir(folder.c_str())) {
      while (dirent* e = readdir(d)) {
        if (std::strncmp(e->d_name, builtins.c_str(), builtins.size()) == 0) openGlobal(folder + "/" + e->d_name, opened);
      }
      closedir(d);
    }
    if (openGlobal(folder + "/" + soname, opened)) return;
  }
}

/**
 * The sub-libraries libcudnn.so.9 opens by soname, opened first from `folder` by absolute path so
 * that its later dlopen by soname finds them loaded (no LD_LIBRARY_PATH needed). Passes repeat
 * while one succeeds, so a library needing another that is opened later still loads.
 */
void preloadSublibraries(const std::string& folder, std::vector<void*>& opened) {
  static const char* const names[] = {"libcudnn_graph.so.9",       "libcudnn_engines_precompiled.so.9",
                                      "libcudnn_engines_runtime_compiled.so.9", "libcudnn_heuristic.so.9",
                                      "libcudnn_ops.so.9",         "libcudnn_cnn.so.9",
                                      "libcudnn_adv.so.9"};
  std::vector<std::string> pending;
  for (const char* n : names) {
    std::string p = folder + "/" + n;
    if (exists(p)) pending.push_back(p);
  }
  bool progress = true;
  while (!pending.empty() && progress) {
    progress = false;
    for (size_t i = 0; i < pending.size();) {
      if (openGlobal(pending[i], opened)) {
        pending.erase(pending.begin() + i);
        progress = true;
      } else {
        i++;
      }
    }
  }
}

void closeAll(std::vector<void*>& opened) {
  for (size_t i = opened.size(); i-- > 0;) dlclose(opened[i]);
  opened.clear();
}

/** Tries one candidate; on success fills `l`, else returns why not (everything it opened closed again). */
std::string tryCandidate(const std::string& candidate, Loader& l) {
  std::vector<void*> opened;
  const bool absolute = !candidate.empty() && candidate[0] == '/';
  const std::string folder = absolute ? folderOf(candidate) : std::string();
  preloadNvrtc(folder, opened);
  if (absolute) preloadSublibraries(folder, opened);
  void* lib = dlopen(candidate.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!lib) {
    const char* e = dlerror();
    closeAll(opened);
    return e ? e : "dlopen failed";
  }
  opened.push_back(lib);
  auto getVersion = reinterpret_cast<decltype(&cudnnGetVersion)>(dlsym(lib, "cudnnGetVersion"));
  if (!getVersion) {
    closeAll(opened);
    return "no cudnnGetVersion in it";
  }
  size_t version = getVersion();
  if (version < 90000) {
    closeAll(opened);
    return "version " + std::to_string(version) + " is older than 9.0 (the backend graph API of cuDNN 9 is needed)";
  }
  l.library = lib;
  l.info.available = true;
  l.info.version = int(version);
  l.info.library = candidate;
  l.info.error.clear();
  return "";
}

/** A cuDNN function as its own pointer type, or throws naming it. */
template <typename F>
F lookup(const char* name) {
  F f = reinterpret_cast<F>(cudnnSymbol(name));
  if (!f) throw CudaFailure(std::string("cuDNN: ") + name + " not found in " + loader().info.library);
  return f;
}

}  // namespace

const CudnnInfo& cudnnLoad(const std::vector<std::string>& candidates) {
  Loader& l = loader();
  if (l.tried) return l.info;
  l.tried = true;
  std::string reasons;
  for (const std::string& c : candidates) {
    std::string why = tryCandidate(c, l);
    if (why.empty()) return l.info;
    reasons += (reasons.empty() ? "" : "; ") + c + ": " + why;
  }
  l.info.error = candidates.empty() ? "no cuDNN library candidates given" : "cuDNN not loaded (" + reasons + ")";
  return l.info;
}

const CudnnInfo& cudnnInfo() { return loader().info; }

void* cudnnSymbol(const char* name) {
  Loader& l = loader();
  return l.library ? dlsym(l.library, name) : nullptr;
}

cudnnHandle_t cudnnHandle() {
  Loader& l = loader();
  if (!l.info.available) throw CudaFailure("cuDNN handle: cuDNN is not available (" + l.info.error + ")");
  if (!l.handle) checkCudnn(lookup<decltype(&cudnnCreate)>("cudnnCreate")(&l.handle), "cudnnCreate");
  cudaStream_t s = stream();
  if (l.bound != s) {
    checkCudnn(lookup<decltype(&cudnnSetStream)>("cudnnSetStream")(l.handle, s), "cudnnSetStream");
    l.bound = s;
  }
  return l.handle;
}

void checkCudnn(cudnnStatus_t s, const char* what) {
  if (s == CUDNN_STATUS_SUCCESS) return;
  auto text = reinterpret_cast<decltype(&cudnnGetErrorString)>(cudnnSymbol("cudnnGetErrorString"));
  std::string message = std::string(what) + ": " + (text ? text(s) : "cuDNN status") + " (" + std::to_string(int(s)) + ")";
  if (auto last = reinterpret_cast<decltype(&cudnnGetLastErrorString)>(cudnnSymbol("cudnnGetLastErrorString"))) {
    char detail[1024] = {0};
    last(detail, sizeof detail);
    if (detail[0]) message += std::string(": ") + detail;
  }
  throw CudaFailure(message);
}

#else

namespace {

const CudnnInfo& unavailable() {
  static const CudnnInfo info = [] {
    CudnnInfo i;
    i.error = "built without cuDNN headers (set WAN_CUDNN_INCLUDE and rebuild)";
    return i;
  }();
  return info;
}

}  // namespace

const CudnnInfo& cudnnLoad(const std::vector<std::string>&) { return unavailable(); }

const CudnnInfo& cudnnInfo() { return unavailable(); }

void* cudnnSymbol(const char*) { return nullptr; }

#endif

}  // namespace wan
