// Pinned host buffers and a second ("copy") stream for moving tensors between GPU and host memory
// while the compute stream runs (host-offload.cu).
#pragma once
#include <cstddef>
#include <cstdint>

namespace wan {

/** Direction of copyAsync: device → host (offload) or host → device (prefetch). */
enum CopyDirection : int { DEVICE_TO_HOST = 0, HOST_TO_DEVICE = 1 };

/** `bytes` of page-locked host memory (cudaHostAlloc); throws "out of pinned host memory" when refused. */
void* hostAlloc(size_t bytes);

/** Frees a hostAlloc buffer after every copy queued on the copy stream has finished (none may still read or write it). */
void hostFree(void* p);

/**
 * Queues a copy of `bytes` on the copy stream, after the work queued on the compute stream so far
 * (which wrote `src` or allocated `dst` from the stream-ordered pool); returns the id of an event
 * recorded after it. Ids increase; an id no longer tracked belongs to a copy that has finished.
 */
uint64_t copyAsync(void* dst, const void* src, size_t bytes, CopyDirection direction);

/** Makes the compute stream wait for copy `id` (cudaStreamWaitEvent): later kernels see its bytes. */
void waitEvent(uint64_t id);

/** Whether copy `id` has finished (cudaEventQuery), without blocking. */
bool eventDone(uint64_t id);

/** Blocks until every copy queued on the copy stream has finished. */
void synchronizeCopies();

}  // namespace wan
