import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../errors.js';

/** The kernels among `names` that `backend` has no implementation for. */
export function missingKernels(names: Iterable<string>, backend = 'cuda'): string[] {
  return [...new Set(names)].filter((n) => tf.getKernel(n, backend) === undefined).sort();
}

/** Throws a BackendError naming every kernel in `names` that `backend` lacks (call before the first forward). */
export function checkKernels(names: Iterable<string>, backend = 'cuda'): void {
  const missing = missingKernels(names, backend);
  if (missing.length > 0) {
    throw new BackendError(`backend '${backend}' lacks ${missing.length} kernel(s) this model needs: ${missing.join(', ')}`);
  }
}

/**
 * The kernel names `run` executes, found by running it under tf.profile on `backend` (default
 * cpu; give it a tiny configuration of the model). The active backend is restored afterwards.
 */
export async function kernelsUsedBy(run: () => tf.TensorContainer | Promise<tf.TensorContainer>, backend = 'cpu'): Promise<string[]> {
  const previous = tf.getBackend();
  if (!(await tf.setBackend(backend))) throw new BackendError(`backend '${backend}' could not be activated to profile the model`);
  try {
    const info = await tf.profile(run);
    tf.dispose(info.result);
    return [...new Set(info.kernelNames)].sort();
  } finally {
    if (previous && previous !== backend) await tf.setBackend(previous);
  }
}
