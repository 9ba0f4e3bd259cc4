import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { BackendError } from '../errors.js';
import type { PrecisionOptions } from '../kernels/registry.js';

export type BackendName = 'cpu' | 'wasm' | 'tensorflow' | 'cuda';

/** selectBackend's options: backend 'cuda''s precision and attention kernel. */
export type BackendOptions = PrecisionOptions;

export const BACKENDS: readonly BackendName[] = ['cuda', 'tensorflow', 'wasm', 'cpu'];

async function register(name: BackendName): Promise<void> {
  switch (name) {
    case 'cpu':
      return;
    case 'wasm': {
      await import('@tensorflow/tfjs-backend-wasm');
      const { registerWasmKernels } = await import('./wasm-kernels.js');
      registerWasmKernels();
      return;
    }
    case 'tensorflow': {
      const candidates = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];
      for (const m of candidates) {
        try {
          await import(/* @vite-ignore */ m);
          return;
        } catch {
          // try the next one
        }
      }
      throw new BackendError(
        "backend 'tensorflow' needs @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node, and neither is installed (npm install @tensorflow/tfjs-node)",
      );
    }
    case 'cuda': {
      const { registerCudaBackend } = await import('../cuda/index.js');
      registerCudaBackend();
      return;
    }
  }
}

/** Applies the options to backend `b`, now active. */
async function configure(b: BackendName, options: BackendOptions): Promise<void> {
  if (b === 'cuda') {
    const { configureCudaBackend } = await import('../cuda/index.js');
    configureCudaBackend(tf.backend(), options);
    return;
  }
  if (options.precision === 'bf16') {
    throw new BackendError(`precision 'bf16' needs backend 'cuda'; backend '${b}' computes in float32 (use precision 'fp32' or leave it out)`);
  }
  if (options.attention !== undefined) throw new BackendError(`the attention option is for backend 'cuda', not '${b}'`);
}

/**
 * Makes `name` the active tfjs backend, registering it first. Without a name, picks the fastest
 * available: cuda, then tensorflow, then wasm, then cpu. Returns the backend's name. `options`
 * set backend 'cuda''s precision and attention kernel (see BackendOptions).
 */
export async function selectBackend(name?: string, options: BackendOptions = {}): Promise<BackendName> {
  if (name !== undefined && !BACKENDS.includes(name as BackendName)) {
    throw new BackendError(`unknown backend '${name}'; choose one of ${BACKENDS.join(', ')}`);
  }
  const order = name ? [name as BackendName] : BACKENDS;
  let lastError: unknown;
  for (const b of order) {
    try {
      await register(b);
      if (await tf.setBackend(b)) {
        await tf.ready();
        await configure(b, options);
        return b;
      }
      lastError = new BackendError(`backend '${b}' failed to initialise`);
    } catch (e) {
      lastError = e;
    }
    if (name) break;
  }
  throw lastError instanceof BackendError ? lastError : new BackendError(`backend '${name}' is unavailable: ${(lastError as Error)?.message}`);
}
