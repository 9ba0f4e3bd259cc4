import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { attention, conv3d, geluTanh, layerNorm, linear, rmsNorm } from '../src/backend/ops.js';
import { registerTrainingKernels } from '../src/train/kernels.js';
import { maxAbsDiffArrays } from './helpers/compare.js';

/** Plain float64 attention: q [B,Lq,H,D], k/v [B,Lk,H,D]; bias [H,Lq,Lk]; mask [B,Lk]. */
function naiveAttention(
  q: Float32Array, k: Float32Array, v: Float32Array,
  B: number, Lq: number, Lk: number, H: number, D: number,
  scale: number, bias?: Float32Array, mask?: number[],
): Float64Array {
  const out = new Float64Array(B * Lq * H * D);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < Lq; i++) {
    const s = new Float64Array(Lk);
    for (let j = 0; j < Lk; j++) {
      let acc = 0;
      for (let d = 0; d < D; d++) acc += q[((b * Lq + i) * H + h) * D + d] * k[((b * Lk + j) * H + h) * D + d];
      s[j] = acc * scale + (bias ? bias[(h * Lq + i) * Lk + j] : 0) + (mask && mask[b * Lk + j] === 0 ? -1e30 : 0);
    }
    const m = Math.max(...s);
    let z = 0;
    for (let j = 0; j < Lk; j++) { s[j] = Math.exp(s[j] - m); z += s[j]; }
    for (let d = 0; d < D; d++) {
      let acc = 0;
      for (let j = 0; j < Lk; j++) acc += (s[j] / z) * v[((b * Lk + j) * H + h) * D + d];
      out[((b * Lq + i) * H + h) * D + d] = acc;
    }
  }
  return out;
}

describe('attention op', () => {
  it('equals the plain formula for any chunk size, with bias and key mask, and leaks nothing', () => {
    fc.assert(
      fc.property(
        fc.record({ B: fc.integer({ min: 1, max: 2 }), Lq: fc.integer({ min: 1, max: 9 }), Lk: fc.integer({ min: 1, max: 9 }), H: fc.integer({ min: 1, max: 3 }), D: fc.integer({ min: 1, max: 6 }), chunk: fc.integer({ min: 1, max: 10 }), withBias: fc.boolean(), withMask: fc.boolean(), seed: fc.nat(1000) }),
        ({ B, Lq, Lk, H, D, chunk, withBias, withMask, seed }) => {
          const q = tf.randomNormal([B, Lq, H, D], 0, 1, 'float32', seed);
          const k = tf.randomNormal([B, Lk, H, D], 0, 1, 'float32', seed + 1);
          const v = tf.randomNormal([B, Lk, H, D], 0, 1, 'float32', seed + 2);
          const bias = withBias ? tf.randomNormal([1, H, Lq, Lk], 0, 1, 'float32', seed + 3) : undefined;
          const maskArr = Array.from({ length: B * Lk }, (_, i) => (i % Lk === 0 || (i * 7 + seed) % 3 !== 0 ? 1 : 0));
          const mask = withMask ? tf.tensor2d(maskArr, [B, Lk]) : undefined;
          const before = tf.memory().numTensors;
          const got = attention(q, k, v, { scale: 0.7, bias, keyMask: mask, chunkSize: chunk });
          expect(tf.memory().numTensors).toBe(before + 1);
          expect(got.shape).toEqual([B, Lq, H, D]);
          const want = naiveAttention(q.dataSync() as Float32Array, k.dataSync() as Float32Array, v.dataSync() as Float32Array, B, Lq, Lk, H, D, 0.7, bias?.dataSync() as Float32Array | undefined, withMask ? maskArr : undefined);
          expect(maxAbsDiffArrays(got.dataSync(), want)).toBeLessThan(1e-5);
          tf.dispose([q, k, v, got, bias, mask].filter((t): t is tf.Tensor => t !== undefined));
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('norm and activation ops', () => {
  it('rmsNorm, layerNorm, geluTanh and linear match their formulas', () => {
    const x = [0.5, -1.5, 2, 0.25];
    const xt = tf.tensor2d([x]);
    const w = tf.tensor1d([1, 2, 3, 4]);
    const ms = x.reduce((a, b) => a + b * b, 0) / 4;
    const rms = x.map((xi, i) => (xi / Math.sqrt(ms + 1e-6)) * (i + 1));
    expect(maxAbsDiffArrays(rmsNorm(xt, w, 1e-6).dataSync(), rms)).toBeLessThan(1e-6);
    const mean = x.reduce((a, b) => a + b) / 4;
    const variance = x.reduce((a, b) => a + (b - mean) ** 2, 0) / 4;
    const ln = x.map((xi) => (xi - mean) / Math.sqrt(variance + 1e-6));
    expect(maxAbsDiffArrays(layerNorm(xt, 1e-6).dataSync(), ln)).toBeLessThan(1e-6);
    const gelu = x.map((xi) => 0.5 * xi * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (xi + 0.044715 * xi ** 3))));
    expect(maxAbsDiffArrays(geluTanh(xt).dataSync(), gelu)).toBeLessThan(1e-6);
    const W = tf.tensor2d([[1, 0, 0, 0], [0, 1, 1, 0]]);
    expect(Array.from(linear(tf.tensor3d([[x]]), W, tf.tensor1d([1, 2])).dataSync())).toEqual([1.5, 2.5]);
  });
});

describe('conv3d op', () => {
  it('the per-tap conv2d composite equals tf.conv3d for random shapes and strides', () => {
    fc.assert(
      fc.property(
        fc.record({ B: fc.integer({ min: 1, max: 2 }), T: fc.integer({ min: 1, max: 6 }), H: fc.integer({ min: 3, max: 7 }), W: fc.integer({ min: 3, max: 7 }), C: fc.integer({ min: 1, max: 3 }), Co: fc.integer({ min: 1, max: 3 }), kt: fc.integer({ min: 1, max: 3 }), k: fc.integer({ min: 1, max: 3 }), st: fc.integer({ min: 1, max: 2 }), s: fc.integer({ min: 1, max: 2 }), seed: fc.nat(1000) }),
        ({ B, T, H, W, C, Co, kt, k, st, s, seed }) => {
          fc.pre(kt <= T);
          const x = tf.randomNormal([B, T, H, W, C], 0, 1, 'float32', seed);
          const w = tf.randomNormal([kt, k, k, C, Co], 0, 1, 'float32', seed + 1);
          const before = tf.memory().numTensors;
          const got = conv3d(x, w, [st, s, s]);
          expect(tf.memory().numTensors).toBe(before + 1);
          const want = tf.conv3d(x as tf.Tensor5D, w as tf.Tensor5D, [st, s, s], 'valid');
          expect(got.shape).toEqual(want.shape);
          expect(maxAbsDiffArrays(got.dataSync(), want.dataSync())).toBeLessThan(1e-4);
          tf.dispose([x, w, got, want]);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('has the gradients of tf.conv3d, temporal strides included (training a VAE that downsamples time)', () => {
    registerTrainingKernels();
    fc.assert(
      fc.property(
        fc.record({ T: fc.integer({ min: 1, max: 7 }), C: fc.integer({ min: 1, max: 2 }), Co: fc.integer({ min: 1, max: 2 }), kt: fc.integer({ min: 1, max: 3 }), st: fc.integer({ min: 1, max: 3 }), seed: fc.nat(1000) }),
        ({ T, C, Co, kt, st, seed }) => {
          fc.pre(kt <= T);
          const x = tf.randomNormal([2, T, 4, 4, C], 0, 1, 'float32', seed);
          const w = tf.randomNormal([kt, 2, 2, C, Co], 0, 1, 'float32', seed + 1);
          const probe = (f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor) =>
            tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(f(a, b))))([x, w]);
          const got = probe((a, b) => conv3d(a, b, [st, 1, 1]));
          const want = probe((a, b) => tf.conv3d(a as tf.Tensor5D, b as tf.Tensor5D, [st, 1, 1], 'valid'));
          for (let i = 0; i < 2; i++) expect(maxAbsDiffArrays(got[i].dataSync(), want[i].dataSync())).toBeLessThan(1e-3);
          tf.dispose([x, w, ...got, ...want]);
        },
      ),
      { numRuns: 25 },
    );
  });
});
