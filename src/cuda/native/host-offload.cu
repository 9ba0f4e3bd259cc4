// Pinned host buffers and the copy stream: tensors offloaded to host memory and brought back ahead
// of use, overlapped with the compute stream (block streaming, the swapped-out expert). Ordering:
// a copy waits for the compute stream's work queued before it (an event recorded there); the
// compute stream waits for a copy through the event copyAsync returns (waitEvent), so a device
// buffer is freed, or read by a kernel, only after the copy that reads or fills it.
#include <map>
#include <vector>

#include "common.cuh"
#include "host-offload.h"

namespace wan {

namespace {

struct Copies {
  cudaStream_t stream = nullptr;
  /** Events of the copies not yet seen finished, by id (in queue order: they finish in this order). */
  std::map<uint64_t, cudaEvent_t> pending;
  /** Events ready for reuse. */
  std::vector<cudaEvent_t> spare;
  uint64_t nextId = 1;
};

Copies& copies() {
  static Copies c;
  if (!c.stream) check(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking), "copy stream: cudaStreamCreate");
  return c;
}

cudaEvent_t takeEvent(Copies& c) {
  if (!c.spare.empty()) {
    cudaEvent_t e = c.spare.back();
    c.spare.pop_back();
    return e;
  }
  cudaEvent_t e;
  check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "copy event: cudaEventCreate");
  return e;
}

/** Returns the events of finished copies to the spare list: the oldest first, up to the first still running (one stream runs them in order). */
void sweep(Copies& c) {
  while (!c.pending.empty()) {
    auto it = c.pending.begin();
    cudaError_t q = cudaEventQuery(it->second);
    if (q == cudaErrorNotReady) return;
    check(q, "copy event: query (an earlier copy failed)");
    c.spare.push_back(it->second);
    c.pending.erase(it);
  }
}

}  // namespace

void* hostAlloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw CudaFailure("out of pinned host memory: could not allocate " + std::to_string(bytes >> 20) + " MiB: " + cudaGetErrorString(e));
  }
  return p;
}

void hostFree(void* p) {
  if (!p) return;
  synchronizeCopies();
  check(cudaFreeHost(p), "hostFree: cudaFreeHost");
}

uint64_t copyAsync(void* dst, const void* src, size_t bytes, CopyDirection direction) {
  Copies& c = copies();
  sweep(c);
  // the copy after the compute stream's work so far: the kernels that wrote src, the allocation of dst
  cudaEvent_t after = takeEvent(c);
  check(cudaEventRecord(after, stream()), "copyAsync: record on the compute stream");
  check(cudaStreamWaitEvent(c.stream, after, 0), "copyAsync: copy stream waits");
  c.spare.push_back(after);  // a later record does not change the wait queued above
  if (bytes) {
    cudaMemcpyKind kind = direction == DEVICE_TO_HOST ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice;
    check(cudaMemcpyAsync(dst, src, bytes, kind, c.stream), direction == DEVICE_TO_HOST ? "copyAsync: device to host" : "copyAsync: host to device");
  }
  cudaEvent_t done = takeEvent(c);
  check(cudaEventRecord(done, c.stream), "copyAsync: record on the copy stream");
  uint64_t id = c.nextId++;
  c.pending.emplace(id, done);
  return id;
}

void waitEvent(uint64_t id) {
  Copies& c = copies();
  auto it = c.pending.find(id);
  if (it == c.pending.end()) {
    if (id == 0 || id >= c.nextId) throw CudaFailure("waitEvent: " + std::to_string(id) + " is not a copy id");
    return;  // finished and swept
  }
  check(cudaStreamWaitEvent(stream(), it->second, 0), "waitEvent: compute stream waits");
}

bool eventDone(uint64_t id) {
  Copies& c = copies();
  if (id == 0 || id >= c.nextId) throw CudaFailure("eventDone: " + std::to_string(id) + " is not a copy id");
  sweep(c);
  return c.pending.find(id) == c.pending.end();
}

void synchronizeCopies() {
  Copies& c = copies();
  check(cudaStreamSynchronize(c.stream), "copy stream: synchronize (an earlier copy failed)");
  sweep(c);
}

}  // namespace wan
