import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { configureCudaBackend, registerCudaBackend, registerCudaBackendWith } from '../../src/cuda/index.js';
import type { Precision } from '../../src/kernels/registry.js';
import { createMockNative } from './mock-native.js';

/** True when the suite runs against the host stand-in (WAN_CUDA_MOCK=1) rather than the GPU. */
export const MOCK = process.env.WAN_CUDA_MOCK === '1';

/**
 * Registers backend 'cuda' (the real addon, or the stand-in under WAN_CUDA_MOCK=1) and sets its
 * precision: fp32 by default (the op suite and parity compare with float32 references), or
 * `precision`. The previously active backend stays active.
 */
export async function setupCuda(precision: Precision = 'fp32'): Promise<void> {
  if (MOCK) {
    const native = createMockNative();
    registerCudaBackendWith(native, native.init(), []);
  } else {
    registerCudaBackend();
  }
  const previous = tf.getBackend();
  await tf.setBackend('cuda');
  configureCudaBackend(tf.backend(), { precision });
  if (previous && previous !== 'cuda') await tf.setBackend(previous);
}

/** A deterministic PRNG (mulberry32) so that fast-check shrinks seeds, not arrays. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Spec {
  shape: number[];
  dtype?: 'float32' | 'int32' | 'bool';
  /** Values in [lo, hi) (ints: integers in that range); default [-2, 2). */
  lo?: number;
  hi?: number;
}

export function values(spec: Spec, seed: number): Float32Array | Int32Array | Uint8Array {
  const r = rng(seed);
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const lo = spec.lo ?? -2;
  const hi = spec.hi ?? 2;
  if (spec.dtype === 'bool') return Uint8Array.from({ length: n }, () => (r() < 0.5 ? 1 : 0));
  if (spec.dtype === 'int32') return Int32Array.from({ length: n }, () => Math.floor(lo + r() * (hi - lo)));
  return Float32Array.from({ length: n }, () => lo + r() * (hi - lo));
}

interface Result {
  shape: number[];
  dtype: string;
  data: ArrayLike<number>;
}

async function runOn(backend: string, build: (xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[], specs: Spec[], seed: number): Promise<Result[]> {
  await tf.setBackend(backend);
  const xs = specs.map((s, i) => tf.tensor(values(s, seed + i * 7919), s.shape, s.dtype ?? 'float32'));
  const before = tf.memory().numTensors;
  const out = tf.tidy(() => build(xs));
  const outs = Array.isArray(out) ? out : [out];
  const results = outs.map((t) => ({ shape: t.shape, dtype: t.dtype, data: t.dataSync() as ArrayLike<number> }));
  tf.dispose(outs);
  if (tf.memory().numTensors !== before) throw new Error(`${backend}: ${tf.memory().numTensors - before} tensors leaked`);
  tf.dispose(xs);
  return results;
}

/**
 * Runs `build` on cpu and on cuda over the same random inputs and throws on any difference in
 * shape, dtype or value beyond atol + rtol·|cpu| (NaN must match NaN).
 */
export async function matchesCpu(
  build: (xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  specs: Spec[],
  seed: number,
  tol: { atol?: number; rtol?: number } = {},
): Promise<void> {
  const atol = tol.atol ?? 1e-5;
  const rtol = tol.rtol ?? 1e-4;
  const want = await runOn('cpu', build, specs, seed);
  const got = await runOn('cuda', build, specs, seed);
  if (want.length !== got.length) throw new Error(`output count ${got.length} vs cpu ${want.length}`);
  for (let o = 0; o < want.length; o++) {
    const w = want[o];
    const g = got[o];
    if (JSON.stringify(w.shape) !== JSON.stringify(g.shape)) throw new Error(`output ${o}: shape [${g.shape}] vs cpu [${w.shape}]`);
    if (w.dtype !== g.dtype) throw new Error(`output ${o}: dtype ${g.dtype} vs cpu ${w.dtype}`);
    for (let i = 0; i < w.data.length; i++) {
      const a = g.data[i];
      const b = w.data[i];
      const ok = Number.isNaN(b) ? Number.isNaN(a) : a === b || Math.abs(a - b) <= atol + rtol * Math.abs(b);
      if (!ok) throw new Error(`output ${o} [${w.shape}] index ${i}: cuda ${a} vs cpu ${b} (inputs ${specs.map((s) => `[${s.shape}]`).join(' ')}, seed ${seed})`);
    }
  }
}
