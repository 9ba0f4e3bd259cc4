import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, describe, expect, it } from 'vitest';
import { Linear } from '../layers/linear.js';
import { KERNELS, geluTanh } from '../src/backend/ops.js';
import { AdamW } from '../src/train/adamw.js';
import fc from 'fast-check';
import { FlowMatchingSampler, flowMatchingBatch, flowMatchingFrameBatch, sampleSigmas, shiftSigma } from '../src/train/flow-matching.js';
import { uniform } from '../src/random.js';
import { Trainer, trainableParams } from '../src/train/trainer.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-trainer-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('flow matching', () => {
  it('interpolates x_σ = (1 − σ)x₀ + σε with target ε − x₀ and timestep 1000σ', () => {
    const x0 = tf.tensor2d([[1, 2], [3, 4]]);
    const eps = tf.tensor2d([[0, 0], [1, 1]]);
    const b = flowMatchingBatch(x0, eps, Float32Array.of(0.25, 0.5));
    expect(Array.from(b.noisy.dataSync())).toEqual([0.75, 1.5, 2, 2.5]);
    expect(Array.from(b.target.dataSync())).toEqual([-1, -2, -2, -3]);
    expect(Array.from(b.timestep.dataSync())).toEqual([250, 500]);
    tf.dispose([x0, eps, b.noisy, b.target, b.sigma, b.timestep]);
  });

  it('noises each token frame at its own σ and gives per-token timesteps in frame-major order', () => {
    fc.assert(
      fc.property(
        fc.record({ B: fc.integer({ min: 1, max: 3 }), C: fc.integer({ min: 1, max: 3 }), Fp: fc.integer({ min: 1, max: 4 }), pt: fc.integer({ min: 1, max: 2 }), Hp: fc.integer({ min: 1, max: 2 }), Wp: fc.integer({ min: 1, max: 2 }), ph: fc.integer({ min: 1, max: 2 }), pw: fc.integer({ min: 1, max: 2 }), seed: fc.nat() }),
        ({ B, C, Fp, pt, Hp, Wp, ph, pw, seed }) => {
          const [F, H, W, tpf] = [Fp * pt, Hp * ph, Wp * pw, Hp * Wp];
          const before = tf.memory().numTensors;
          const x0 = tf.randomNormal([B, C, F, H, W], 0, 1, 'float32', seed);
          const eps = tf.randomNormal([B, C, F, H, W], 0, 1, 'float32', seed + 1);
          const rand = uniform(seed);
          const sig = Float32Array.from({ length: B * Fp }, () => rand());
          const b = flowMatchingFrameBatch(x0, eps, sig, [pt, ph, pw]);
          const [x, e, n, tgt] = [x0, eps, b.noisy, b.target].map((t) => t.arraySync() as number[][][][][]);
          for (let i = 0; i < B; i++) for (let c = 0; c < C; c++) for (let f = 0; f < F; f++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) {
            const s = sig[i * Fp + Math.floor(f / pt)];
            expect(n[i][c][f][h][w]).toBeCloseTo((1 - s) * x[i][c][f][h][w] + s * e[i][c][f][h][w], 5);
            expect(tgt[i][c][f][h][w]).toBeCloseTo(e[i][c][f][h][w] - x[i][c][f][h][w], 5);
          }
          expect(b.timestep.shape).toEqual([B, Fp * tpf]);
          const ts = b.timestep.dataSync();
          for (let i = 0; i < B; i++) for (let k = 0; k < Fp * tpf; k++) expect(ts[i * Fp * tpf + k]).toBeCloseTo(1000 * sig[i * Fp + Math.floor(k / tpf)], 2);
          tf.dispose([x0, eps, b.noisy, b.target, b.sigma, b.timestep]);
          expect(tf.memory().numTensors).toBe(before);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('equals the per-sample batch when every frame has the sample\'s σ, and rejects frames that do not split into patches', () => {
    const x0 = tf.randomNormal([2, 2, 3, 2, 2], 0, 1, 'float32', 1);
    const eps = tf.randomNormal([2, 2, 3, 2, 2], 0, 1, 'float32', 2);
    const a = flowMatchingBatch(x0, eps, Float32Array.of(0.3, 0.8));
    const b = flowMatchingFrameBatch(x0, eps, Float32Array.of(0.3, 0.3, 0.3, 0.8, 0.8, 0.8), [1, 1, 1]);
    expect(Array.from(b.noisy.dataSync())).toEqual(Array.from(a.noisy.dataSync()));
    expect(() => flowMatchingFrameBatch(x0, eps, Float32Array.of(0.5, 0.5), [2, 1, 1])).toThrow(/F a positive multiple of the patch size 2/);
    expect(() => flowMatchingFrameBatch(x0, eps, Float32Array.of(0.5), [1, 1, 1])).toThrow(/sigmas/);
    tf.dispose([x0, eps, a.noisy, a.target, a.sigma, a.timestep, b.noisy, b.target, b.sigma, b.timestep]);
  });

  it('anchors one nearly clean token frame per sample when asked', () => {
    const x0 = tf.zeros([64, 1, 5, 2, 2]);
    const b = new FlowMatchingSampler({ sampling: 'logit_normal', shift: 3 }, 4).framewiseBatch(x0, [1, 1, 1], 1);
    const s = b.sigma.arraySync() as number[][];
    for (const row of s) expect(Math.min(...row)).toBeLessThanOrEqual(0.1);
    tf.dispose([x0, b.noisy, b.target, b.sigma, b.timestep]);
  });

  it('shifts σ as s·σ/(1 + (s − 1)σ) and keeps it in (0, 1)', () => {
    expect(shiftSigma(0.5, 3)).toBeCloseTo(0.75, 12);
    const s = sampleSigmas(2000, uniform(1), { sampling: 'logit_normal', shift: 3 });
    expect(Math.min(...s)).toBeGreaterThan(0);
    expect(Math.max(...s)).toBeLessThan(1);
    const median = Float32Array.from(s).sort()[1000];
    // logit-normal(0, 1) has median 0.5, which the shift maps to 0.75
    expect(Math.abs(median - 0.75)).toBeLessThan(0.03);
  });
});

describe('AdamW', () => {
  it('matches torch.optim.AdamW on one step by hand', () => {
    const v = tf.variable(tf.tensor1d([1, -2]));
    const opt = new AdamW(new Map([['w', v]]), { lr: 0.1, weightDecay: 0.5 });
    const g = tf.tensor1d([0.3, -4]);
    opt.applyGradients({ w: g });
    // step 1: m̂ = g, v̂ = g², update = g/(|g| + ε) = sign(g); p = p(1 − lr·λ) − lr·sign(g)
    const got = v.dataSync();
    expect(got[0]).toBeCloseTo(1 * 0.95 - 0.1, 6);
    expect(got[1]).toBeCloseTo(-2 * 0.95 + 0.1, 6);
    opt.dispose();
    tf.dispose([v, g]);
  });
});

describe('Trainer', () => {
  const target = tf.tensor2d([[1, -1, 0.5], [2, 0, -0.5]]);
  const xs = tf.randomNormal([16, 3], 0, 1, 'float32', 7);
  const ys = tf.matMul(xs, target, false, true);
  const make = () => new Linear({ inFeatures: 3, outFeatures: 2 }).initialize(3);
  const lossFor = (m: Linear) => (step: number) => {
    const i = (step * 5) % 12;
    return tf.tidy(() => tf.mean(tf.squaredDifference(m.forward(tf.slice(xs, [i, 0], [4, 3])), tf.slice(ys, [i, 0], [4, 2]))) as tf.Scalar);
  };

  it('reduces the loss, reports as it goes, and leaks no tensors per step or after dispose', async () => {
    const start = tf.memory().numTensors;
    const m = make();
    const logs: number[] = [];
    const t = new Trainer(trainableParams(m), lossFor(m), { steps: 60, optimizer: { lr: 0.05, weightDecay: 0 }, logEvery: 20, onLog: (l) => logs.push(l.loss) });
    t.trainStep();
    const before = tf.memory().numTensors;
    t.trainStep();
    expect(tf.memory().numTensors).toBe(before);
    await t.run();
    expect(logs.length).toBe(3);
    expect(t.losses[t.losses.length - 1]).toBeLessThan(t.losses[0] * 0.2);
    t.dispose();
    m.dispose();
    expect(tf.memory().numTensors).toBe(start);
  });

  it('trains through a fused kernel that has no gradient: the step runs the composite ops', () => {
    const step = () => {
      const m = make();
      const t = new Trainer(trainableParams(m), () => tf.tidy(() => tf.mean(tf.square(geluTanh(m.forward(tf.tensor2d([[0.5, -1, 2]])))))), { steps: 1, optimizer: { lr: 0.1 } });
      t.trainStep();
      const w = Array.from(m.weight.read()!.dataSync());
      t.dispose();
      m.dispose();
      return w;
    };
    const composite = step();
    // A stand-in fused kernel with no gradient, as a CUDA build registers.
    tf.registerKernel({ kernelName: KERNELS.geluTanh, backendName: 'cpu', kernelFunc: ({ inputs, backend }) => {
      const x = inputs.x as tf.TensorInfo;
      return (backend as unknown as { makeTensorInfo(s: number[], d: tf.DataType, v: Float32Array): tf.TensorInfo }).makeTensorInfo(x.shape, 'float32', new Float32Array(tf.util.sizeFromShape(x.shape)));
    } });
    try {
      const fused = tf.tidy(() => Array.from(geluTanh(tf.tensor1d([1, 2])).dataSync()));
      expect(fused).toEqual([0, 0]);
      expect(step()).toEqual(composite);
    } finally {
      tf.unregisterKernel(KERNELS.geluTanh, 'cpu');
    }
  });

  it('resumes from a checkpoint to exactly the weights of an uninterrupted run', async () => {
    const file = path.join(tmp, 'ckpt.safetensors');
    const a = make();
    const ta = new Trainer(trainableParams(a), lossFor(a), { steps: 20, optimizer: { lr: 0.02 } });
    await ta.run();

    const b = make();
    const tb = new Trainer(trainableParams(b), lossFor(b), { steps: 12, optimizer: { lr: 0.02 }, checkpointEvery: 4, checkpointPath: file });
    await tb.run();
    const c = make();
    const tc = new Trainer(trainableParams(c), lossFor(c), { steps: 20, optimizer: { lr: 0.02 } });
    expect(tc.resume(file)).toBe(true);
    expect(tc.step).toBe(12);
    await tc.run();
    expect(Array.from(c.weight.value.dataSync())).toEqual(Array.from(a.weight.value.dataSync()));
    expect(Array.from(c.bias!.value.dataSync())).toEqual(Array.from(a.bias!.value.dataSync()));
    expect(fs.readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
    for (const [t, m] of [[ta, a], [tb, b], [tc, c]] as const) {
      t.dispose();
      m.dispose();
    }
  });
});
