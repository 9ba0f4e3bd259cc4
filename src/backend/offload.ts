import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';

/**
 * A backend whose tensors live in device memory and can be moved to pinned host memory and back
 * under the same DataId (backend 'cuda': CudaBackend.offload / prefetch).
 */
export interface OffloadingBackend {
  /** Moves the buffers to host memory (stream-ordered); returns the device bytes freed. */
  offload(dataIds: Iterable<tf.DataId>): number;
  /** Starts copying offloaded buffers back to the device, overlapped with the kernels queued meanwhile. */
  prefetch(dataIds: Iterable<tf.DataId>): void;
  /** Device bytes a call may still take (free memory, capped by WAN_CUDA_MEMORY_LIMIT). */
  freeDeviceBytes(): number;
  /** Bytes the buffers take on the device when there (elements × their stored width). */
  bytesOf(dataIds: Iterable<tf.DataId>): number;
}

function isOffloading(b: tf.KernelBackend): b is tf.KernelBackend & OffloadingBackend {
  const o = b as Partial<OffloadingBackend>;
  return typeof o.offload === 'function' && typeof o.prefetch === 'function' && typeof o.freeDeviceBytes === 'function' && typeof o.bytesOf === 'function';
}

/** The active backend if it can offload tensors to host memory (backend 'cuda'), else undefined. */
export function offloadingBackend(): OffloadingBackend | undefined {
  const b = tf.backend();
  return isOffloading(b) ? b : undefined;
}

/**
 * The active backend, which must offload: `option` (e.g. "offloadBlocks: 4") is refused with a
 * ConfigError on a backend that keeps tensors in host memory already (cpu, wasm, tensorflow),
 * where moving them to host memory would save nothing.
 */
export function requireOffloading(option: string): OffloadingBackend {
  const b = offloadingBackend();
  if (!b) {
    throw new ConfigError(`${option}: backend '${tf.getBackend()}' keeps every tensor in host memory already, so there is no device memory to save; this option needs backend 'cuda' (leave it out elsewhere)`);
  }
  return b;
}
