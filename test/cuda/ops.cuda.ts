// The op suite of backend 'cuda': every kernel against @tensorflow/tfjs-backend-cpu on random
// shapes and values (fast-check), plus the fused Wan kernels against their composite definitions.
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { attention, geluTanh, layerNorm, rmsNorm } from '../../src/backend/ops.js';
import { CUDA_KERNEL_NAMES, checkKernels, kernelsUsedBy, missingKernels } from '../../src/cuda/index.js';
import { MOCK, matchesCpu, setupCuda, type Spec } from './harness.js';

const RUNS = MOCK ? 25 : 40;
const seed = fc.nat(1 << 20);
const shape = (minRank = 0, maxRank = 4, maxDim = 5) => fc.array(fc.integer({ min: 1, max: maxDim }), { minLength: minRank, maxLength: maxRank });

/** A shape and a second shape that broadcasts against it (some axes 1, some leading axes dropped). */
const broadcastPair = fc
  .tuple(shape(0, 4), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), fc.integer({ min: 0, max: 4 }), fc.boolean())
  .map(([s, ones, drop, swap]) => {
    const t = s.map((d, i) => (ones[i] ? 1 : d)).slice(Math.min(drop, s.length));
    return swap ? [t, s] : [s, t];
  });

async function prop<T>(arb: fc.Arbitrary<T>, check: (v: T) => Promise<void>, numRuns = RUNS): Promise<void> {
  await fc.assert(fc.asyncProperty(arb, check), { numRuns });
}

beforeAll(() => setupCuda());

describe('cuda backend basics', () => {
  it('round-trips float32, int32 and bool data and reports GPU memory', async () => {
    await tf.setBackend('cuda');
    const before = tf.memory() as tf.MemoryInfo & { numBytesInGPU: number };
    const f = tf.tensor([1.5, -2.25, 3e30, Number.NaN]);
    const i = tf.tensor([1, -2, 2147483647], [3], 'int32');
    const b = tf.tensor([true, false, true], [3], 'bool');
    expect(Array.from(f.dataSync())).toEqual([1.5, -2.25, Math.fround(3e30), Number.NaN]);
    expect(Array.from(i.dataSync())).toEqual([1, -2, 2147483647]);
    expect(b.dataSync()).toBeInstanceOf(Uint8Array);
    expect(Array.from(await b.data())).toEqual([1, 0, 1]);
    const during = tf.memory() as tf.MemoryInfo & { numBytesInGPU: number };
    expect(during.numBytesInGPU - before.numBytesInGPU).toBe(40);
    tf.dispose([f, i, b]);
    expect((tf.memory() as tf.MemoryInfo & { numBytesInGPU: number }).numBytesInGPU).toBe(before.numBytesInGPU);
  });

  it('moves tensors created on cpu when a cuda kernel reads them', async () => {
    await tf.setBackend('cpu');
    const x = tf.tensor([1, 2, 3, 4], [2, 2]);
    await tf.setBackend('cuda');
    const y = tf.add(x, 1);
    expect(Array.from(y.dataSync())).toEqual([2, 3, 4, 5]);
    tf.dispose([x, y]);
  });

  it('checkKernels names what the backend lacks', () => {
    expect(missingKernels(['Add', 'NoSuchKernel', 'BatchMatMul'])).toEqual(['NoSuchKernel']);
    expect(() => checkKernels(['Add', 'NoSuchKernel'])).toThrow(/lacks 1 kernel\(s\).*NoSuchKernel/);
    expect(() => checkKernels(CUDA_KERNEL_NAMES)).not.toThrow();
  });

  it('kernelsUsedBy profiles a function on cpu and restores the backend', async () => {
    await tf.setBackend('cuda');
    const names = await kernelsUsedBy(() => tf.tidy(() => tf.softmax(tf.matMul(tf.ones([2, 3]), tf.ones([3, 4])))));
    expect(names).toEqual(expect.arrayContaining(['BatchMatMul', 'Softmax']));
    expect(tf.getBackend()).toBe('cuda');
    expect(missingKernels(names)).toEqual([]);
  });
});

const UNARY_DOMAINS: Record<string, [number, number]> = {
  Log: [0.05, 4], Sqrt: [0, 4], Rsqrt: [0.05, 4], Log1p: [-0.9, 4], Reciprocal: [0.1, 3], Asin: [-0.99, 0.99], Acos: [-0.99, 0.99],
  Atanh: [-0.95, 0.95], Acosh: [1.01, 5], Tan: [-1.4, 1.4],
};
const UNARY_OPS: Array<[string, (x: tf.Tensor) => tf.Tensor]> = [
  ['Abs', tf.abs], ['Neg', tf.neg], ['Exp', tf.exp], ['Expm1', tf.expm1], ['Log', tf.log], ['Log1p', tf.log1p], ['Sqrt', tf.sqrt],
  ['Rsqrt', tf.rsqrt], ['Square', tf.square], ['Reciprocal', tf.reciprocal], ['Sin', tf.sin], ['Cos', tf.cos], ['Tan', tf.tan],
  ['Asin', tf.asin], ['Acos', tf.acos], ['Atan', tf.atan], ['Sinh', tf.sinh], ['Cosh', tf.cosh], ['Tanh', tf.tanh], ['Asinh', tf.asinh],
  ['Acosh', tf.acosh], ['Atanh', tf.atanh], ['Sigmoid', tf.sigmoid], ['Softplus', tf.softplus], ['Relu', tf.relu], ['Relu6', tf.relu6],
  ['Elu', tf.elu], ['Selu', tf.selu], ['Erf', tf.erf], ['Floor', tf.floor], ['Ceil', tf.ceil], ['Round', tf.round], ['Sign', tf.sign],
  ['IsNan', tf.isNaN], ['IsFinite', tf.isFinite], ['Step', (x) => tf.step(x, 0.3)], ['LeakyRelu', (x) => tf.leakyRelu(x, 0.1)],
  ['ClipByValue', (x) => tf.clipByValue(x, -0.5, 0.7)],
];

describe('elementwise kernels match cpu', () => {
  it('unary float ops', async () => {
    await prop(fc.tuple(fc.constantFrom(...UNARY_OPS), shape(), seed), async ([[name, f], s, sd]) => {
      const [lo, hi] = UNARY_DOMAINS[name] ?? [-3, 3];
      await matchesCpu(([x]) => f(x), [{ shape: s, lo, hi }], sd, { atol: 1e-5, rtol: 2e-5 });
    }, RUNS * 3);
  });

  it('unary int ops', async () => {
    await prop(fc.tuple(fc.constantFrom<[string, (x: tf.Tensor) => tf.Tensor]>(['Abs', tf.abs], ['Neg', tf.neg], ['Square', tf.square], ['Sign', tf.sign], ['Exp', tf.exp]), shape(), seed), async ([[, f], s, sd]) => {
      await matchesCpu(([x]) => f(x), [{ shape: s, dtype: 'int32', lo: -5, hi: 5 }], sd);
    });
  });

  const BINARY: Array<[string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor]> = [
    ['add', tf.add], ['sub', tf.sub], ['mul', tf.mul], ['div', tf.div], ['floorDiv', tf.floorDiv], ['mod', tf.mod], ['maximum', tf.maximum],
    ['minimum', tf.minimum], ['pow', tf.pow], ['squaredDifference', tf.squaredDifference], ['atan2', tf.atan2], ['equal', tf.equal],
    ['notEqual', tf.notEqual], ['less', tf.less], ['lessEqual', tf.lessEqual], ['greater', tf.greater], ['greaterEqual', tf.greaterEqual],
    ['prelu', tf.prelu],
  ];

  it('binary float ops with broadcasting', async () => {
    await prop(fc.tuple(fc.constantFrom(...BINARY), broadcastPair, seed), async ([[name, f], [sa, sb], sd]) => {
      const pos = name === 'pow' ? { lo: 0.1, hi: 2 } : {};
      const nonzero = name === 'div' || name === 'floorDiv' || name === 'mod' ? { lo: 0.5, hi: 2 } : {};
      await matchesCpu(([a, b]) => f(a, b), [{ shape: sa, ...pos }, { shape: sb, ...nonzero }], sd, { atol: 1e-5, rtol: 2e-5 });
    }, RUNS * 3);
  });

  it('binary int ops with broadcasting', async () => {
    const ops = BINARY.filter(([n]) => !['atan2', 'prelu', 'pow'].includes(n));
    await prop(fc.tuple(fc.constantFrom(...ops), broadcastPair, seed), async ([[, f], [sa, sb], sd]) => {
      await matchesCpu(([a, b]) => f(a, b), [{ shape: sa, dtype: 'int32', lo: -9, hi: 9 }, { shape: sb, dtype: 'int32', lo: 1, hi: 5 }], sd);
    }, RUNS * 2);
  });

  it('logical ops, where, casts', async () => {
    await prop(fc.tuple(broadcastPair, seed), async ([[sa, sb], sd]) => {
      const bools: Spec[] = [{ shape: sa, dtype: 'bool' }, { shape: sb, dtype: 'bool' }];
      await matchesCpu(([a, b]) => [tf.logicalAnd(a, b), tf.logicalOr(a, b), tf.logicalXor(a, b), tf.logicalNot(a)], bools, sd);
      await matchesCpu(([c, a, b]) => tf.where(tf.cast(c, 'bool'), a, b), [{ shape: sa, dtype: 'bool' }, { shape: sa }, { shape: sb }], sd);
      await matchesCpu(([x]) => [tf.cast(x, 'int32'), tf.cast(x, 'bool'), tf.cast(tf.cast(x, 'int32'), 'float32')], [{ shape: sa, lo: -3, hi: 3 }], sd);
      await matchesCpu(([x]) => [tf.cast(x, 'float32'), tf.cast(x, 'int32')], [{ shape: sb, dtype: 'bool' }], sd);
    });
  });

  it('fill, zerosLike, onesLike, addN, range, linspace, oneHot', async () => {
    await prop(fc.tuple(shape(), seed), async ([s, sd]) => {
      await matchesCpu(([x, y]) => [tf.fill(s, 2.5), tf.fill(s, 3, 'int32'), tf.zerosLike(x), tf.onesLike(x), tf.addN([x, y, x])], [{ shape: s }, { shape: s }], sd);
      await matchesCpu(([i]) => [tf.range(0, s.length + 3, 1), tf.range(5, -2, -1.5), tf.linspace(-1, 2, s.length + 2), tf.oneHot(tf.cast(i, 'int32'), 4)], [{ shape: [s.length + 1], dtype: 'int32', lo: 0, hi: 4 }], sd);
    });
  });
});

describe('reductions match cpu', () => {
  const REDUCE: Array<[string, (x: tf.Tensor, axis: number[], keep: boolean) => tf.Tensor]> = [
    ['sum', tf.sum], ['mean', tf.mean], ['max', tf.max], ['min', tf.min], ['prod', tf.prod],
  ];
  const axesOf = (s: number[]) => fc.subarray(s.map((_, i) => i)).map((a) => a);

  it('sum, mean, max, min, prod over any axes', async () => {
    await prop(
      shape(1, 4).chain((s) => fc.tuple(fc.constant(s), axesOf(s), fc.constantFrom(...REDUCE), fc.boolean(), fc.constantFrom<'float32' | 'int32'>('float32', 'int32'), seed)),
      async ([s, axes, [, f], keep, dtype, sd]) => {
        const ax = axes.length ? axes : undefined;
        await matchesCpu(([x]) => f(x, ax ?? s.map((_, i) => i), keep), [{ shape: s, dtype, lo: dtype === 'int32' ? -3 : 0.5, hi: dtype === 'int32' ? 4 : 1.5 }], sd, { rtol: 1e-5 });
      },
      RUNS * 3,
    );
  });

  it('all, any, argMax, argMin, softmax, logSoftmax, cumsum', async () => {
    await prop(shape(1, 4).chain((s) => fc.tuple(fc.constant(s), fc.integer({ min: 0, max: s.length - 1 }), fc.boolean(), fc.boolean(), seed)), async ([s, axis, excl, rev, sd]) => {
      await matchesCpu(([b]) => [tf.all(b, axis), tf.any(b, axis), tf.all(b)], [{ shape: s, dtype: 'bool' }], sd);
      await matchesCpu(([x]) => [tf.argMax(x, axis), tf.argMin(x, axis), tf.softmax(x), tf.logSoftmax(x), tf.cumsum(x, axis, excl, rev)], [{ shape: s, lo: -4, hi: 4 }], sd);
      await matchesCpu(([x]) => tf.cumsum(x, axis, excl, rev), [{ shape: s, dtype: 'int32', lo: -4, hi: 4 }], sd);
    });
  });

  it('moments (Mean + SquaredDifference) and large rows', async () => {
    await matchesCpu(([x]) => {
      const { mean, variance } = tf.moments(x, -1, true);
      return [mean, variance, tf.softmax(x), tf.sum(x, 0)];
    }, [{ shape: [3, MOCK ? 2000 : 70000] }], 11, { atol: 1e-5, rtol: 1e-4 });
  });
});

describe('shape kernels match cpu', () => {
  it('transpose, reshape, expandDims, squeeze', async () => {
    await prop(shape(1, 6, 4).chain((s) => fc.tuple(fc.constant(s), fc.shuffledSubarray(s.map((_, i) => i), { minLength: s.length, maxLength: s.length }), seed)), async ([s, perm, sd]) => {
      await matchesCpu(([x]) => [tf.transpose(x, perm), tf.reshape(x, [-1]), tf.expandDims(x, 1), tf.squeeze(tf.expandDims(x, 0), [0])], [{ shape: s }], sd, { atol: 0, rtol: 0 });
      await matchesCpu(([x]) => tf.transpose(x, perm), [{ shape: s, dtype: 'int32', lo: -100, hi: 100 }], sd, { atol: 0, rtol: 0 });
    });
  });

  it('slice, stridedSlice, reverse, tile, broadcastTo', async () => {
    const arb = shape(1, 4).chain((s) =>
      fc.tuple(
        fc.constant(s),
        fc.tuple(...s.map((d) => fc.integer({ min: 0, max: d - 1 }))),
        fc.array(fc.integer({ min: 1, max: 3 }), { minLength: s.length, maxLength: s.length }),
        fc.array(fc.constantFrom(1, 2, -1), { minLength: s.length, maxLength: s.length }),
        seed,
      ),
    );
    await prop(arb, async ([s, begin, reps, strides, sd]) => {
      const size = s.map((d, i) => Math.max(1, Math.floor((d - begin[i]) / 2)));
      const ends = strides.map((st, i) => (st > 0 ? s[i] : -s[i] - 1));
      const starts = strides.map((st, i) => (st > 0 ? begin[i] : s[i] - 1 - begin[i]));
      await matchesCpu(
        ([x]) => [
          tf.slice(x, begin, size),
          tf.stridedSlice(x, starts, ends, strides),
          tf.stridedSlice(x, begin, s, s.map(() => 1), 0, 0, 0, 0, 1),
          tf.reverse(x, s.map((_, i) => i).filter((i) => i % 2 === 0)),
          tf.tile(x, reps),
          tf.broadcastTo(tf.slice(x, s.map(() => 0), s.map(() => 1)), [2, ...s]),
        ],
        [{ shape: s }],
        sd,
        { atol: 0, rtol: 0 },
      );
    });
  });

  it('concat, stack, unstack, split, pad, mirrorPad, gather', async () => {
    const arb = shape(1, 4).chain((s) =>
      fc.tuple(
        fc.constant(s),
        fc.integer({ min: 0, max: s.length - 1 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 })), { minLength: s.length, maxLength: s.length }),
        fc.boolean(),
        seed,
      ),
    );
    await prop(arb, async ([s, axis, pads, batched, sd]) => {
      const other = s.map((d, i) => (i === axis ? d + 1 : d));
      const mirror = pads.map(([a, b], i) => [Math.min(a, s[i] - 1), Math.min(b, s[i] - 1)] as [number, number]);
      await matchesCpu(
        ([x, y, z, idx]) => [
          tf.concat([x, y, x], axis),
          tf.stack([x, z], axis),
          ...tf.unstack(x, axis),
          ...tf.split(y, [1, s[axis]], axis),
          tf.pad(x, pads, 1.5),
          tf.mirrorPad(x, mirror, 'reflect'),
          tf.mirrorPad(x, mirror, 'symmetric'),
          tf.gather(x, idx, axis),
          ...(batched && s.length > 1 ? [tf.gather(x, tf.tile(tf.reshape(tf.slice(idx, [0], [2]), [1, 2]), [s[0], 1]), 1, 1)] : []),
        ],
        [{ shape: s }, { shape: other }, { shape: s }, { shape: [5], dtype: 'int32', lo: 0, hi: Math.min(...s) }],
        sd,
        { atol: 0, rtol: 0 },
      );
    });
  });
});

describe('matmul and convolution match cpu', () => {
  it('batched matMul with transposes and batch broadcasting, fused bias and activation', async () => {
    const arb = fc.tuple(
      fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }),
      fc.constantFrom<number[][]>([[], []], [[3], [3]], [[1], [4]], [[2, 3], [3]], [[2, 3], [1, 1]]),
      fc.boolean(), fc.boolean(), fc.constantFrom<'linear' | 'relu' | 'sigmoid'>('linear', 'relu', 'sigmoid'), seed,
    );
    await prop(arb, async ([m, n, k, [ba, bb], ta, tb, act, sd]) => {
      const sa = [...ba, ...(ta ? [k, m] : [m, k])];
      const sb = [...bb, ...(tb ? [n, k] : [k, n])];
      await matchesCpu(([a, b, bias]) => [tf.matMul(a, b, ta, tb), ...(ba.length === bb.length && ba.every((d, i) => d === bb[i]) ? [tf.fused.matMul({ a, b, transposeA: ta, transposeB: tb, bias, activation: act })] : [])], [{ shape: sa }, { shape: sb }, { shape: [n] }], sd, { atol: 1e-4, rtol: 1e-4 });
    });
  });

  it('matMul broadcasts batch axes the numpy way ([2,1] with [1,3]; tfjs-cpu wraps indices instead)', async () => {
    const full = (t: tf.Tensor, s: number[]) => (tf.getBackend() === 'cuda' ? t : tf.broadcastTo(t, s));
    await matchesCpu(([a, b]) => tf.matMul(full(a, [2, 3, 4, 5]), full(b, [2, 3, 5, 6])), [{ shape: [2, 1, 4, 5] }, { shape: [1, 3, 5, 6] }], 9, { atol: 1e-5, rtol: 1e-5 });
  });

  it('a large matMul (cuBLAS path) stays within float32 rounding', async () => {
    const n = MOCK ? 40 : 700;
    await matchesCpu(([a, b]) => tf.matMul(a, b, false, true), [{ shape: [n + 3, n] }, { shape: [n - 5, n] }], 5, { atol: 1e-4, rtol: 1e-4 });
  });

  it('conv2d (stride, dilation, same/valid/explicit pad, NCHW) and conv3d', async () => {
    const arb = fc.tuple(
      fc.integer({ min: 1, max: 2 }), fc.integer({ min: 3, max: 7 }), fc.integer({ min: 3, max: 7 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 2 }), fc.constantFrom<'same' | 'valid'>('same', 'valid'), seed,
    );
    await prop(arb, async ([nb, h, w, c, o, kk, stride, dil, pad, sd]) => {
      const dilation = stride > 1 || (kk - 1) * dil + 1 > Math.min(h, w) ? 1 : dil;
      await matchesCpu(
        ([x, f, f3, x3]) => [
          tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, stride, pad, 'NHWC', dilation),
          tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, 1, [[0, 0], [1, 0], [0, 1], [0, 0]]),
          tf.conv3d(x3 as tf.Tensor5D, f3 as tf.Tensor5D, stride, pad),
          tf.conv3d(x3 as tf.Tensor5D, tf.slice(f3, [0, 0, 0, 0, 0], [1, 1, 1, c, o]) as tf.Tensor5D, 1, 'valid'),
        ],
        [{ shape: [nb, h, w, c] }, { shape: [kk, kk, c, o] }, { shape: [kk, kk, kk, c, o] }, { shape: [nb, 3, h, w, c] }],
        sd,
        { atol: 1e-4, rtol: 1e-4 },
      );
    });
    await matchesCpu(([x, f]) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, 1, 'same', 'NCHW'), [{ shape: [1, 3, 5, 6] }, { shape: [3, 3, 3, 2] }], 3, { atol: 1e-4, rtol: 1e-4 });
  });

  it('resize nearest neighbour and bilinear', async () => {
    const arb = fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 12 }), fc.boolean(), fc.boolean(), seed);
    await prop(arb, async ([h, w, oh, ow, align, half, sd]) => {
      const hp = align ? false : half;
      await matchesCpu(
        ([x]) => [tf.image.resizeNearestNeighbor(x as tf.Tensor4D, [oh, ow], align, hp), tf.image.resizeBilinear(x as tf.Tensor4D, [oh, ow], align, hp)],
        [{ shape: [2, h, w, 3] }],
        sd,
        { atol: 1e-5, rtol: 1e-5 },
      );
    });
  });
});

describe('fused Wan kernels match their composite definitions', () => {
  it('WanAttention for head sizes 1 to 200 and any lengths', async () => {
    const arb = fc.tuple(
      fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: MOCK ? 20 : 150 }), fc.integer({ min: 1, max: MOCK ? 20 : 150 }), fc.integer({ min: 1, max: 3 }),
      fc.constantFrom(1, 3, 8, 64, 100, 128, 130, 200), fc.double({ min: 0.05, max: 1, noNaN: true }), seed,
    );
    await prop(arb, async ([B, Lq, Lk, H, D, scale, sd]) => {
      await matchesCpu(([q, k, v]) => attention(q, k, v, { scale }), [{ shape: [B, Lq, H, D] }, { shape: [B, Lk, H, D] }, { shape: [B, Lk, H, D] }], sd, { atol: 2e-5, rtol: 1e-4 });
    });
  });

  it('WanAttention at transformer sizes (D 128, thousands of keys) and a single VAE head of 384', async () => {
    if (MOCK) return;
    await matchesCpu(([q, k, v]) => attention(q, k, v), [{ shape: [1, 1500, 2, 128] }, { shape: [1, 2100, 2, 128] }, { shape: [1, 2100, 2, 128] }], 21, { atol: 2e-5, rtol: 1e-4 });
    await matchesCpu(([q, k, v]) => attention(q, k, v, { scale: 1 / Math.sqrt(384) }), [{ shape: [2, 300, 1, 384] }, { shape: [2, 300, 1, 384] }, { shape: [2, 300, 1, 384] }], 22, { atol: 2e-5, rtol: 1e-4 });
  });

  it('WanRmsNorm, WanLayerNorm (with and without affine), WanGeluTanh', async () => {
    await prop(fc.tuple(shape(1, 3, 6), fc.integer({ min: 16, max: 1600 }), seed), async ([lead, c, sd]) => {
      const s = [...lead, c];
      await matchesCpu(
        ([x, w, b]) => [rmsNorm(x, w, 1e-6), layerNorm(x, 1e-6), layerNorm(x, 1e-5, w, b), layerNorm(x, 1e-6, w), geluTanh(x)],
        [{ shape: s, lo: -3, hi: 3 }, { shape: [c] }, { shape: [c] }],
        sd,
        { atol: 2e-5, rtol: 1e-4 },
      );
    }, Math.ceil(RUNS / 2));
  });

  it('fused kernels are registered and leak nothing', async () => {
    await tf.setBackend('cuda');
    for (const k of ['WanAttention', 'WanRmsNorm', 'WanLayerNorm', 'WanGeluTanh']) expect(tf.getKernel(k, 'cuda')).toBeDefined();
    const q = tf.randomNormal([1, 7, 2, 16]);
    const before = tf.memory().numTensors;
    const bytes = (tf.memory() as tf.MemoryInfo & { numBytesInGPU: number }).numBytesInGPU;
    const o = attention(q, q, q);
    o.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect((tf.memory() as tf.MemoryInfo & { numBytesInGPU: number }).numBytesInGPU).toBe(bytes);
    q.dispose();
  });
});
