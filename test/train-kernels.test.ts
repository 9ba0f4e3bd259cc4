import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collapseSlice } from '../src/backend/wasm-kernels.js';
import { registerTrainingKernels } from '../src/train/kernels.js';
import { uniform } from '../src/random.js';
import { maxAbsDiffArrays } from './helpers/compare.js';

type Pad = 'valid' | 'same' | [[0, 0], [number, number], [number, number], [0, 0]];

/** Output size and leading padding of a conv2d, from the TensorFlow padding rules. */
function convGeometry(xs: number[], ws: number[], stride: number, pad: Pad) {
  const [, H, W] = xs;
  const [kh, kw] = ws;
  if (pad === 'valid') return { Ho: Math.floor((H - kh) / stride) + 1, Wo: Math.floor((W - kw) / stride) + 1, top: 0, left: 0 };
  if (pad === 'same') {
    const Ho = Math.ceil(H / stride);
    const Wo = Math.ceil(W / stride);
    return { Ho, Wo, top: Math.floor(Math.max((Ho - 1) * stride + kh - H, 0) / 2), left: Math.floor(Math.max((Wo - 1) * stride + kw - W, 0) / 2) };
  }
  return {
    Ho: Math.floor((H + pad[1][0] + pad[1][1] - kh) / stride) + 1,
    Wo: Math.floor((W + pad[2][0] + pad[2][1] - kw) / stride) + 1,
    top: pad[1][0],
    left: pad[2][0],
  };
}

/** Conv2d gradients of L = Σ y ⊙ r by the definition, NHWC, a loop over every term. */
function bruteConvGrads(x: Float32Array, xs: number[], w: Float32Array, ws: number[], r: Float32Array, stride: number, pad: Pad) {
  const [N, H, W, C] = xs;
  const [kh, kw, , O] = ws;
  const { Ho, Wo, top, left } = convGeometry(xs, ws, stride, pad);
  const dx = new Float32Array(x.length);
  const dw = new Float32Array(w.length);
  for (let n = 0; n < N; n++)
    for (let ho = 0; ho < Ho; ho++)
      for (let wo = 0; wo < Wo; wo++)
        for (let i = 0; i < kh; i++)
          for (let j = 0; j < kw; j++) {
            const h = ho * stride + i - top;
            const ww = wo * stride + j - left;
            if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
            for (let c = 0; c < C; c++)
              for (let o = 0; o < O; o++) {
                const rv = r[((n * Ho + ho) * Wo + wo) * O + o];
                const xi = ((n * H + h) * W + ww) * C + c;
                const wi = ((i * kw + j) * C + c) * O + o;
                dw[wi] += x[xi] * rv;
                dx[xi] += w[wi] * rv;
              }
          }
  return { dx, dw };
}

const seeded = (n: number, seed: number) => {
  const rand = uniform(seed);
  return Float32Array.from({ length: n }, () => rand() * 2 - 1);
};

describe('training kernels (conv2d gradient, rank > 4 slices on wasm)', () => {
  let before: string;
  beforeAll(async () => {
    await tf.ready();
    before = tf.getBackend();
    registerTrainingKernels();
  });
  afterAll(async () => {
    await tf.setBackend(before);
  });

  const cases: Array<{ xs: number[]; ws: number[]; stride: number; pad: Pad }> = [
    { xs: [2, 7, 6, 3], ws: [3, 3, 3, 4], stride: 1, pad: 'valid' },
    { xs: [2, 7, 6, 3], ws: [3, 3, 3, 4], stride: 1, pad: 'same' },
    { xs: [1, 8, 9, 2], ws: [3, 3, 2, 5], stride: 2, pad: 'valid' },
    { xs: [3, 9, 8, 2], ws: [3, 2, 2, 3], stride: 2, pad: 'same' },
    { xs: [2, 6, 6, 4], ws: [1, 1, 4, 2], stride: 1, pad: 'valid' },
    { xs: [2, 6, 5, 2], ws: [2, 3, 2, 2], stride: 1, pad: [[0, 0], [1, 0], [0, 2], [0, 0]] },
    { xs: [2, 7, 7, 3], ws: [3, 3, 3, 2], stride: 2, pad: [[0, 0], [0, 1], [0, 1], [0, 0]] },
  ];
  for (const backend of ['cpu', 'wasm']) {
    it.each(cases)(`${backend}: conv2d gradients equal the definition for x $xs, w $ws, stride $stride, pad $pad`, async ({ xs, ws, stride, pad }) => {
      await tf.setBackend(backend);
      const x = seeded(xs.reduce((a, b) => a * b), 1);
      const w = seeded(ws.reduce((a, b) => a * b), 2);
      const { Ho, Wo } = convGeometry(xs, ws, stride, pad);
      const outShape: [number, number, number, number] = [xs[0], Ho, Wo, ws[3]];
      const r = seeded(outShape.reduce((a, b) => a * b), 3);
      const want = bruteConvGrads(x, xs, w, ws, r, stride, pad);
      const start = tf.memory().numTensors;
      const [gx, gw] = tf.tidy(() => {
        const xt = tf.tensor4d(x, xs as [number, number, number, number]);
        const wt = tf.tensor4d(w, ws as [number, number, number, number]);
        const rt = tf.tensor4d(r, outShape);
        return tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad), rt)))([xt, wt]);
      });
      expect(maxAbsDiffArrays(gx.dataSync(), want.dx)).toBeLessThan(1e-4);
      expect(maxAbsDiffArrays(gw.dataSync(), want.dw)).toBeLessThan(1e-4);
      tf.dispose([gx, gw]);
      expect(tf.memory().numTensors).toBe(start);
    });
  }

  it('wasm slices and splits of rank-5 tensors equal the cpu backend', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 5, maxLength: 6 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        async (shape, seed) => {
          const rand = uniform(seed);
          const begin = shape.map((d) => Math.floor(rand() * d));
          const size = shape.map((d, i) => 1 + Math.floor(rand() * (d - begin[i])));
          const axis = Math.floor(rand() * shape.length);
          const first = Math.floor(rand() * (shape[axis] + 1));
          const data = seeded(shape.reduce((a, b) => a * b), seed);
          const run = async (b: string) => {
            await tf.setBackend(b);
            return tf.tidy(() => {
              const t = tf.tensor(data, shape);
              const parts = tf.split(t, [first, shape[axis] - first], axis);
              return [tf.slice(t, begin, size), ...parts].map((p) => Array.from(p.dataSync()));
            });
          };
          const cpu = await run('cpu');
          const wasm = await run('wasm');
          expect(wasm).toEqual(cpu);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('collapseSlice merges the axes a slice keeps whole', () => {
    expect(collapseSlice([2, 3, 4, 5], [0, 1, 0, 0], [2, 1, 4, 5])).toEqual({ shape: [2, 60], begin: [0, 20], size: [2, 20] });
    expect(collapseSlice([2, 3, 4, 5], [1, 0, 0, 0], [1, 3, 4, 5])).toEqual({ shape: [120], begin: [60], size: [60] });
    expect(collapseSlice([2, 3, 4, 5], [0, 0, 1, 0], [2, 3, 2, 5])).toEqual({ shape: [6, 20], begin: [0, 5], size: [6, 10] });
  });

  it('sum and mean gradients equal the definition: the upstream gradient repeated over the reduced axes', async () => {
    await tf.setBackend('cpu');
    await fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.boolean(),
        fc.boolean(),
        (shape, seed, keepDims, mean) => {
          const rand = uniform(seed);
          const axes = shape.map((_, i) => i).filter(() => rand() < 0.5);
          const outShape = shape.flatMap((d, i) => (axes.includes(i) ? (keepDims ? [1] : []) : [d]));
          const r = seeded(outShape.reduce((a, b) => a * b, 1), seed + 1);
          const size = axes.reduce((n, a) => n * shape[a], 1);
          const start = tf.memory().numTensors;
          const g = tf.tidy(() => {
            const rt = tf.tensor(r, outShape);
            const f = (x: tf.Tensor) => tf.sum(tf.mul(mean ? tf.mean(x, axes, keepDims) : tf.sum(x, axes, keepDims), rt));
            return tf.grad(f)(tf.tensor(seeded(shape.reduce((a, b) => a * b, 1), seed), shape));
          });
          // dL/dx at index i is r at i's position with the reduced axes dropped (÷ size for the mean)
          const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
          const want = new Float32Array(g.size);
          for (let i = 0; i < g.size; i++) {
            let rest = i;
            let j = 0;
            for (let a = 0; a < shape.length; a++) {
              const stride = shape.slice(a + 1).reduce((p, d) => p * d, 1);
              const idx = Math.floor(rest / stride);
              rest %= stride;
              j = j * kept[a] + (axes.includes(a) ? 0 : idx);
            }
            want[i] = mean ? r[j] / size : r[j];
          }
          expect(maxAbsDiffArrays(g.dataSync(), want)).toBeLessThan(1e-6);
          g.dispose();
          expect(tf.memory().numTensors).toBe(start);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('tf.matMul on wasm (the wrapped BatchMatMul: 2-D products of transposed copies) equals tf.matMul on cpu, batched and flagged, and frees its intermediates', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 0, maxLength: 2 }),
        fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 })),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 1_000_000 }),
        async (batch, [m, k, n], ta, tb, seed) => {
          const aShape = [...batch, ...(ta ? [k, m] : [m, k])];
          const bShape = [...batch, ...(tb ? [n, k] : [k, n])];
          const a = seeded(aShape.reduce((p, d) => p * d, 1), seed);
          const b = seeded(bShape.reduce((p, d) => p * d, 1), seed + 7);
          await tf.setBackend('cpu');
          const want = tf.tidy(() => tf.matMul(tf.tensor(a, aShape), tf.tensor(b, bShape), ta, tb).dataSync());
          await tf.setBackend('wasm');
          const tensors = tf.memory().numTensors;
          const dataIds = tf.backend().numDataIds();
          const got = tf.tidy(() => tf.matMul(tf.tensor(a, aShape), tf.tensor(b, bShape), ta, tb));
          expect(got.shape).toEqual([...batch, m, n]);
          expect(maxAbsDiffArrays(got.dataSync(), want)).toBeLessThan(1e-5);
          got.dispose();
          expect(tf.memory().numTensors).toBe(tensors);
          expect(tf.backend().numDataIds()).toBe(dataIds);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('the wrapped wasm BatchMatMul gives the 2-D products of the unwrapped kernel bit for bit, and broadcast batches as cpu does', async () => {
    const [N, m, k, n] = [3, 5, 7, 4];
    const aData = seeded(N * k * m, 1);
    const bData = seeded(N * n * k, 2);
    await tf.setBackend('wasm');
    const a = tf.tensor(aData, [N, k, m]);
    const b = tf.tensor(bData, [N, n, k]);
    const got = tf.matMul(a, b, true, true);
    // unflagged 2-D products run the wasm kernel unchanged
    const want = tf.tidy(() =>
      tf.stack(Array.from({ length: N }, (_, i) => tf.matMul(tf.transpose(tf.gather(a, i)), tf.transpose(tf.gather(b, i))))),
    );
    expect(got.shape).toEqual([N, m, n]);
    expect(Array.from(got.dataSync())).toEqual(Array.from(want.dataSync()));
    tf.dispose([a, b, got, want]);

    // a: [N, k, m] with b: [1, n, k] or [n, k] (batch 1 broadcast), both flagged
    const broadcast = () =>
      tf.tidy(() => {
        const x = tf.tensor(aData, [N, k, m]);
        const y = tf.tensor(bData.subarray(0, n * k), [1, n, k]);
        return [tf.matMul(x, y, true, true).dataSync(), tf.matMul(x, tf.reshape(y, [n, k]), true, true).dataSync()];
      });
    const onWasm = broadcast();
    await tf.setBackend('cpu');
    const onCpu = broadcast();
    for (let i = 0; i < 2; i++) expect(maxAbsDiffArrays(onWasm[i], onCpu[i])).toBeLessThan(1e-5);
  });
});
