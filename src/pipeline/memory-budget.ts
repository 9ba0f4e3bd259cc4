import * as os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { KERNELS } from '../kernels/registry.js';

/** What a call may allocate on a backend. */
export interface MemoryBudget {
  readonly backend: string;
  /** Bytes that tensors may still take: the backend's memory less what its tensors hold now. */
  readonly freeBytes: number;
  /** Bytes of one activation element: 4 (float32), 2 where the backend stores activations in bf16 (cuda). */
  readonly bytesPerElement: number;
  /** Most elements one tensor may have (a JS typed array's length limit, 2^32 − 1). */
  readonly maxTensorElements: number;
  /**
   * Whether attention runs as the op layer's composite (no fused WanAttention kernel), which holds
   * COMPOSITE_ATTENTION_COPIES score tensors of every query chunk until it returns: 3·B·H·Lq·Lk elements.
   */
  readonly compositeAttention: boolean;
}

/**
 * Score-sized tensors the op layer's composite attention (src/backend/ops.ts) holds for every query
 * chunk until it returns: q·kᵀ, its scaled copy and the softmax.
 */
export const COMPOSITE_ATTENTION_COPIES = 3;

/** The wasm backend's whole heap: a 32-bit address space. */
export const WASM_HEAP_BYTES = 2 ** 32;

/**
 * The budget of the current backend (or `backend`): wasm's 4 GiB heap, the machine's memory for
 * the others (cpu, tensorflow; cuda, whose device memory is not known here), less the bytes the
 * backend's tensors hold (weights included).
 */
export function memoryBudget(backend = tf.getBackend()): MemoryBudget {
  const held = tf.memory().numBytes;
  const total = backend === 'wasm' ? WASM_HEAP_BYTES : os.totalmem();
  const precision = (tf.findBackend(backend) as (tf.KernelBackend & { precision?: string }) | null)?.precision;
  return {
    backend,
    freeBytes: Math.max(0, total - held),
    bytesPerElement: precision === 'bf16' ? 2 : 4,
    maxTensorElements: 2 ** 32 - 1,
    compositeAttention: tf.getKernel(KERNELS.attention, backend) === undefined,
  };
}
