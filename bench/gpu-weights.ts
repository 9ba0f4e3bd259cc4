import * as tf from '@tensorflow/tfjs-core';
import type { HasNamedWeights } from '../weights/load.js';
import { loadNative, registerCudaBackendWith, type NativeCuda } from '../src/cuda/index.js';

const POOL_SIZE = 1 << 25;
let hostPool: Float32Array | undefined;

/**
 * POOL_SIZE N(0, 1) values, drawn once per process on the host (Box–Muller over a 32-bit LCG).
 * tf.randomNormal draws on the host too, in JavaScript, at about 2 s a pool: drawn per call, it made
 * the setup of a 40-block A14B bench take minutes of device time.
 */
function normalPool(): Float32Array {
  if (hostPool) return hostPool;
  const pool = new Float32Array(POOL_SIZE);
  let state = 0x2545f491;
  const uniform = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state + 0.5) / 2 ** 32;
  };
  for (let i = 0; i < POOL_SIZE; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const t = 2 * Math.PI * uniform();
    pool[i] = r * Math.cos(t);
    pool[i + 1] = r * Math.sin(t);
  }
  hostPool = pool;
  return pool;
}

/**
 * Fills every weight of `model` with N(0, std) values taken from slices of one random pool, uploaded
 * to the active backend for the call (drawing a billion normals in JavaScript would take minutes),
 * as the PyTorch yardsticks draw random weights; `seed` picks where the slices start. Each weight
 * goes through its slot's assign, so it is stored as the backend's precision policy and the layer
 * say (bf16, or fp32 for norm weights).
 */
export function initializeFromPool(model: HasNamedWeights, seed: number, std = 0.02): void {
  const pool = tf.tidy(() => tf.mul(tf.tensor1d(normalPool()), std));
  let offset = (seed * 7919) % POOL_SIZE;
  for (const slot of model.namedWeights().values()) {
    const n = slot.shape.reduce((a, b) => a * b, 1);
    if (n > POOL_SIZE) {
      // A weight larger than the pool repeats it (random weights for timing only).
      slot.assign(tf.tidy(() => tf.reshape(tf.slice(tf.tile(pool, [Math.ceil(n / POOL_SIZE)]), [0], [n]), [...slot.shape])));
      continue;
    }
    if (offset + n > POOL_SIZE) offset = (offset * 7919) % (POOL_SIZE - n + 1);
    slot.assign(tf.tidy(() => tf.reshape(tf.slice(pool, [offset], [n]), [...slot.shape])));
    offset += n;
  }
  pool.dispose();
}

/** The value after `--name`, or `fallback`. */
export function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

/** Kernel names grouped as the per-kernel profile reports them. */
export function kernelGroup(name: string): 'attention' | 'GEMM' | 'norm + modulation' | 'rope' | 'convolution' | 'the rest' {
  if (name === 'WanAttention') return 'attention';
  if (name === 'WanLinear' || name === 'BatchMatMul' || name === '_FusedMatMul') return 'GEMM';
  if (name === 'WanConv3d' || name === 'Conv3D' || name === 'Conv2D' || name === 'FusedConv2D') return 'convolution';
  if (name === 'WanLayerNormModulate' || name === 'WanLayerNorm' || name === 'WanRmsNorm') return 'norm + modulation';
  if (name === 'WanRope') return 'rope';
  return 'the rest';
}

/** Per-kernel and per-group kernel time of one call of `run` (tf.profile: each kernel timed by the backend). */
export async function kernelProfile(run: () => tf.Tensor): Promise<{ totalMs: number; groups: Record<string, number>; kernels: Array<[string, number, number]> }> {
  const info = await tf.profile(run);
  tf.dispose(info.result as tf.Tensor);
  const byKernel = new Map<string, { ms: number; count: number }>();
  for (const kp of info.kernels) {
    const ms = Number(await kp.kernelTimeMs);
    const e = byKernel.get(kp.name) ?? { ms: 0, count: 0 };
    e.ms += Number.isFinite(ms) ? ms : 0;
    e.count++;
    byKernel.set(kp.name, e);
  }
  const groups: Record<string, number> = {};
  let totalMs = 0;
  for (const [name, e] of byKernel) {
    const g = kernelGroup(name);
    groups[g] = (groups[g] ?? 0) + e.ms;
    totalMs += e.ms;
  }
  const kernels = [...byKernel].sort((a, b) => b[1].ms - a[1].ms).map(([n, e]): [string, number, number] => [n, Number(e.ms.toFixed(2)), e.count]);
  for (const g of Object.keys(groups)) groups[g] = Number(groups[g].toFixed(2));
  return { totalMs: Number(totalMs.toFixed(2)), groups, kernels };
}

/** Host milliseconds spent inside each addon function, and its call count, since registerHostTimedCuda. */
export interface HostTimes {
  byFunction(): Array<[string, number, number]>;
  reset(): void;
}

/**
 * Registers backend 'cuda' over the addon with every function wrapped in a host clock, so a bench
 * can tell time spent queueing work (or blocked inside a call) from time the GPU computes.
 * Call before selectBackend('cuda').
 */
export function registerHostTimedCuda(native: NativeCuda = loadNative()): HostTimes {
  const times = new Map<string, { ms: number; calls: number }>();
  // A copy of the addon object with each function wrapped (the addon's own properties are read-only).
  const timed = Object.fromEntries(
    Object.getOwnPropertyNames(native).map((name) => {
      const v: unknown = Reflect.get(native, name);
      if (typeof v !== 'function') return [name, v];
      const f = v as (...args: unknown[]) => unknown;
      const wrapped = (...args: unknown[]) => {
        const start = performance.now();
        try {
          return f.apply(native, args);
        } finally {
          const e = times.get(name) ?? { ms: 0, calls: 0 };
          e.ms += performance.now() - start;
          e.calls++;
          times.set(name, e);
        }
      };
      return [name, wrapped];
    }),
  ) as unknown as NativeCuda;
  registerCudaBackendWith(timed, timed.init());
  return {
    byFunction: () => [...times].sort((a, b) => b[1].ms - a[1].ms).map(([n, e]): [string, number, number] => [n, Number(e.ms.toFixed(2)), e.calls]),
    reset: () => times.clear(),
  };
}
