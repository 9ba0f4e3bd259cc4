// The precision policy of backend 'cuda', run against the host stand-in of the addon
// (test/cuda/mock-native.ts, whose bfloat16 buffers hold real bfloat16 bits): which tensors are
// stored in bf16, fp32 islands, the bf16 paths of matmul / attention / convolution and their
// fallbacks, parameters kept in fp32, checkpoint tensors uploaded as stored, and no leaks.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import fc from 'fast-check';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { Linear } from '../layers/linear.js';
import { RMSNorm } from '../layers/rms-norm.js';
import { attention, conv3d, fp32, gatedResidual, layerNormModulate, linear, rmsNorm, rope, setFusedKernels } from '../src/backend/ops.js';
import { tensorFromStored } from '../src/backend/precision.js';
import { selectBackend } from '../src/backend/select.js';
import { CudaBackend, configureCudaBackend, defaultPrecision } from '../src/cuda/index.js';
import { DeviceType } from '../src/cuda/native.js';
import { BackendError } from '../src/errors.js';
import { loadWeights } from '../weights/load.js';
import { SafetensorsFile, writeSafetensors } from '../weights/safetensors.js';
import { roundBf16, type MockNative } from './cuda/mock-native.js';
import { registerMockCuda } from './helpers/mock-cuda.js';
import { valuesWithOutliers as values } from './helpers/test-values.js';
import { fixtureDir } from './helpers/fixtures.js';

let native: MockNative;
let backend: CudaBackend;

beforeAll(async () => {
  ({ native, backend } = await registerMockCuda());
});

afterEach(async () => {
  await tf.setBackend('cuda');
  configureCudaBackend(backend, { precision: 'bf16', attention: 'auto' });
  native.cudnn = { available: false, version: 0, library: '', error: 'mock: no cuDNN' };
});

const storage = (t: tf.Tensor) => backend.storage(t);

describe('storage under the bf16 policy', () => {
  it('is bf16 by default, from WAN_CUDA_PRECISION, and rejects other values naming the variable', () => {
    const saved = process.env.WAN_CUDA_PRECISION;
    try {
      delete process.env.WAN_CUDA_PRECISION;
      expect(defaultPrecision()).toBe('bf16');
      process.env.WAN_CUDA_PRECISION = 'fp32';
      expect(defaultPrecision()).toBe('fp32');
      process.env.WAN_CUDA_PRECISION = 'fp16';
      expect(() => defaultPrecision()).toThrow(/WAN_CUDA_PRECISION must be one of bf16, fp32, got 'fp16'/);
    } finally {
      if (saved === undefined) delete process.env.WAN_CUDA_PRECISION;
      else process.env.WAN_CUDA_PRECISION = saved;
    }
  });

  it('stores a matmul result in bf16: bf16(Σ bf16(a)·bf16(b)), and reads it back upcast', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 7 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 6 }), fc.nat(1000), async (m, k, n, seed) => {
        const av = values(m * k, seed);
        const bv = values(k * n, seed + 1);
        const a = tf.tensor2d(av, [m, k]);
        const b = tf.tensor2d(bv, [k, n]);
        expect(storage(a)).toBe(DeviceType.F32);
        const c = tf.matMul(a, b);
        expect(storage(c)).toBe(DeviceType.BF16);
        expect(c.dtype).toBe('float32');
        const got = await c.data();
        for (let i = 0; i < m; i++)
          for (let j = 0; j < n; j++) {
            let s = 0;
            for (let p = 0; p < k; p++) s += roundBf16(av[i * k + p]) * roundBf16(bv[p * n + j]);
            expect(got[i * n + j]).toBe(roundBf16(s));
          }
        tf.dispose([a, b, c]);
      }),
      { numRuns: 15 },
    );
  });

  it('keeps arithmetic in fp32 inside fp32 islands and under precision fp32', () => {
    const a = tf.tensor2d(values(12, 1), [3, 4]);
    const b = tf.tensor2d(values(8, 2), [4, 2]);
    const inIsland = fp32(() => tf.matMul(a, b));
    expect(storage(inIsland)).toBe(DeviceType.F32);
    configureCudaBackend(backend, { precision: 'fp32' });
    const underFp32 = tf.matMul(a, b);
    expect(storage(underFp32)).toBe(DeviceType.F32);
    tf.dispose([a, b, inIsland, underFp32]);
  });

  it('elementwise results are bf16 only when every float input is bf16 (a bf16 + fp32 sum stays fp32)', () => {
    const x = tf.tensor2d(values(6, 3), [2, 3]);
    const w = tf.tensor2d(values(9, 4), [3, 3]);
    const y = tf.matMul(x, w);
    expect(storage(y)).toBe(DeviceType.BF16);
    const both = tf.add(y, y);
    const mixed = tf.add(y, x);
    const unary = tf.sigmoid(y);
    expect(storage(both)).toBe(DeviceType.BF16);
    expect(storage(mixed)).toBe(DeviceType.F32);
    expect(storage(unary)).toBe(DeviceType.BF16);
    const yv = y.dataSync();
    const xv = x.dataSync();
    expect(Array.from(mixed.dataSync())).toEqual(Array.from(yv, (v, i) => Math.fround(v + xv[i])));
    expect(Array.from(both.dataSync())).toEqual(Array.from(yv, (v) => roundBf16(v + v)));
    tf.dispose([x, w, y, both, mixed, unary]);
  });

  it('moves (reshape, transpose, slice, concat, pad, gather) keep bf16 storage and bits', () => {
    const y = tf.matMul(tf.tensor2d(values(24, 5), [6, 4]), tf.tensor2d(values(20, 6), [4, 5]));
    const yv = y.dataSync();
    const t = tf.transpose(y);
    const s = tf.slice(y, [1, 1], [3, 2]);
    const c = tf.concat([y, y], 0);
    const p = tf.pad(y, [[1, 0], [0, 2]], 1.5);
    const g = tf.gather(y, tf.tensor1d([4, 0], 'int32'));
    for (const r of [t, s, c, p, g]) expect(storage(r)).toBe(DeviceType.BF16);
    expect(Array.from(t.dataSync())).toEqual(Array.from(tf.transpose(tf.tensor2d(yv, [6, 5])).dataSync()));
    expect(Array.from(p.dataSync()).slice(0, 7)).toEqual([1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5]);
    expect(Array.from(g.dataSync()).slice(0, 5)).toEqual(Array.from(yv.slice(20, 25)));
    tf.dispose([y, t, s, c, p, g]);
  });

  it('a kernel written for fp32 storage gets a float32 copy of a bf16 input (and frees it)', () => {
    const y = tf.matMul(tf.tensor2d(values(6, 7), [2, 3]), tf.tensor2d(values(12, 8), [3, 4]));
    const live = native.liveBuffers;
    const cs = tf.cumsum(y, 1);
    expect(storage(cs)).toBe(DeviceType.F32);
    const yv = y.dataSync();
    const want = [0, 1].flatMap((r) => {
      let acc = 0;
      return [0, 1, 2, 3].map((j) => (acc = Math.fround(acc + yv[r * 4 + j])));
    });
    expect(Array.from(cs.dataSync())).toEqual(want);
    expect(native.liveBuffers).toBe(live + 1);
    tf.dispose([y, cs]);
  });

  it('no tensor or device buffer outlives a tidy of bf16 work', () => {
    const x = tf.tensor3d(values(2 * 5 * 8, 9), [2, 5, 8]);
    const buffersBefore = native.liveBuffers;
    const tensorsBefore = tf.memory().numTensors;
    const out = tf.tidy(() => {
      const w = tf.tensor2d(values(64, 10), [8, 8]);
      const h = linear(x, w, tf.tensor1d(values(8, 11)), 'gelu_tanh');
      const n = layerNormModulate(h, 1e-6, tf.tensor3d(values(8, 12), [1, 1, 8]), tf.tensor3d(values(16, 13), [2, 1, 8]));
      return tf.sum(n);
    });
    out.dispose();
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(native.liveBuffers).toBe(buffersBefore);
    x.dispose();
  });
});

describe('fused kernels under the bf16 policy', () => {
  it('gatedResidual: x + y · gate stored float32, each op rounded to float32, equal to the composite; gate per sample, per token or none', () => {
    const [B, L, C] = [2, 3, 8];
    const x = tf.tensor3d(values(B * L * C, 40), [B, L, C]);
    const yf = tf.tensor3d(values(B * L * C, 41), [B, L, C]);
    const yb = tf.tidy(() => tf.reshape(tf.matMul(tf.reshape(yf, [B * L, C]), tf.eye(C)), [B, L, C]));
    expect(storage(yb)).toBe(DeviceType.BF16);
    const gates = [tf.tensor3d(values(B * C, 42), [B, 1, C]), tf.tensor3d(values(L * C, 43), [1, L, C]), undefined];
    const xs = x.dataSync();
    for (const y of [yf, yb]) {
      const ys = y.dataSync();
      for (const gate of gates) {
        const out = gatedResidual(x, y, gate);
        expect(storage(out)).toBe(DeviceType.F32);
        const gs = gate?.dataSync();
        const want = Array.from(xs, (xv, i) => {
          const [b, l, c] = [Math.floor(i / (L * C)), Math.floor(i / C) % L, i % C];
          const g = gate === undefined ? 1 : gate.shape[0] === B ? gs![b * C + c] : gs![l * C + c];
          return Math.fround(xv + Math.fround(ys[i] * g));
        });
        expect(Array.from(out.dataSync())).toEqual(want);
        const previous = setFusedKernels(false);
        const composite = gatedResidual(x, y, gate);
        setFusedKernels(previous);
        expect(Array.from(composite.dataSync())).toEqual(want);
        tf.dispose([out, composite]);
      }
    }
    tf.dispose([x, yf, yb, ...gates.filter((g) => g !== undefined)]);
  });

  it('gatedResidual: a gate that is not [1 or B, 1 or L, C] takes the composite (broadcast by tfjs)', () => {
    const x = tf.tensor3d(values(2 * 3 * 4, 44), [2, 3, 4]);
    const y = tf.tensor3d(values(2 * 3 * 4, 45), [2, 3, 4]);
    const gate = tf.tensor2d(values(3 * 4, 47), [3, 4]);
    const got = gatedResidual(x, y, gate);
    const want = tf.tidy(() => fp32(() => tf.add(x, tf.mul(y, gate))));
    expect(Array.from(got.dataSync())).toEqual(Array.from(want.dataSync()));
    tf.dispose([x, y, gate, got, want]);
  });
  it('linear: bias and GELU fused into the bf16 product equal the composite on bf16-rounded operands', () => {
    const xv = values(3 * 5, 20);
    const wv = values(4 * 5, 21);
    const bv = values(4, 22);
    const y = linear(tf.tensor2d(xv, [3, 5]), tf.tensor2d(wv, [4, 5]), tf.tensor1d(bv), 'gelu_tanh');
    expect(storage(y)).toBe(DeviceType.BF16);
    const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    const got = y.dataSync();
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 4; j++) {
        let s = roundBf16(bv[j]);
        for (let p = 0; p < 5; p++) s += roundBf16(xv[i * 5 + p]) * roundBf16(wv[j * 5 + p]);
        expect(got[i * 4 + j]).toBe(roundBf16(gelu(s)));
      }
    y.dispose();
  });

  it('rope: the fused kernel equals the pair-matrix composite (run on cpu) bit for bit in fp32', async () => {
    configureCudaBackend(backend, { precision: 'fp32' });
    const [B, L, H, d] = [2, 3, 2, 6];
    const xv = values(B * L * H * d, 30);
    const cv = values(L * d, 31);
    const sv = values(L * d, 32);
    const run = () => rope(tf.tensor4d(xv, [B, L, H, d]), tf.tensor4d(cv, [1, L, 1, d]), tf.tensor4d(sv, [1, L, 1, d]));
    const onCuda = tf.tidy(run).dataSync();
    await tf.setBackend('cpu');
    const onCpu = tf.tidy(run).dataSync();
    expect(Array.from(onCuda)).toEqual(Array.from(onCpu));
  });

  it('attention runs the bf16 kernels: cuDNN when loaded, else the flash kernel with one warning, else fp32', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const qkv = (D: number) => [0, 1, 2].map((i) => tf.tensor4d(values(2 * 3 * 2 * D, 40 + i), [2, 3, 2, D]));
    native.attentionPaths.length = 0;
    const [q, k, v] = qkv(32);
    const flash1 = attention(q, k, v);
    const flash2 = attention(q, k, v);
    expect(storage(flash1)).toBe(DeviceType.BF16);
    expect(native.attentionPaths).toEqual([2, 2]);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toMatch(/cuDNN attention did not run \(mock: no cuDNN\); using the built-in bf16 flash-attention kernel/);
    native.cudnn = { available: true, version: 91900, library: 'mock', error: '' };
    const viaCudnn = attention(q, k, v);
    expect(native.attentionPaths).toEqual([2, 2, 1]);
    const [q48, k48, v48] = qkv(48);
    native.cudnn = { available: false, version: 0, library: '', error: 'mock: no cuDNN' };
    const f32 = attention(q48, k48, v48);
    expect(storage(f32)).toBe(DeviceType.F32);
    expect(String(warn.mock.calls.at(-1)?.[0])).toMatch(/no bf16 attention kernel takes head size 48; that attention runs in float32/);
    warn.mockRestore();
    tf.dispose([q, k, v, flash1, flash2, viaCudnn, q48, k48, v48, f32]);
  });

  it('a bf16 convolution goes through cuDNN with the filter in [O, kd, kh, kw, C], freed with the filter', () => {
    native.cudnn = { available: true, version: 91900, library: 'mock', error: '' };
    const x = tf.tensor5d(values(1 * 3 * 4 * 4 * 3, 50), [1, 3, 4, 4, 3]);
    const w = tf.tensor5d(values(2 * 2 * 2 * 3 * 5, 51), [2, 2, 2, 3, 5]);
    const live = native.liveBuffers;
    const y = tf.conv3d(x, w, 1, 'valid');
    expect(storage(y)).toBe(DeviceType.BF16);
    configureCudaBackend(backend, { precision: 'fp32' });
    const ref = tf.conv3d(x, w, 1, 'valid');
    const got = y.dataSync();
    const want = ref.dataSync();
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(0.02 * (1 + Math.abs(want[i])));
    tf.dispose([y, ref]);
    expect(native.liveBuffers).toBe(live + 1);
    w.dispose();
    expect(native.liveBuffers).toBe(live - 1);
    x.dispose();
  });

  it('ops.conv3d with spatial pads (one fused kernel on cuda) equals padding then convolving on cpu', async () => {
    configureCudaBackend(backend, { precision: 'fp32' });
    const xv = values(1 * 4 * 5 * 6 * 3, 62);
    const wv = values(3 * 3 * 3 * 3 * 4, 63);
    const run = () => conv3d(tf.tensor5d(xv, [1, 4, 5, 6, 3]), tf.tensor5d(wv, [3, 3, 3, 3, 4]), [1, 2, 1], [1, 1]);
    const onCuda = tf.tidy(run);
    expect(onCuda.shape).toEqual([1, 2, 3, 6, 4]);
    const got = onCuda.dataSync();
    onCuda.dispose();
    await tf.setBackend('cpu');
    const want = tf.tidy(run).dataSync();
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(want[i])));
  });

  it('ops.conv3d with bias and residual (the epilogue of the fused kernel on cuda) equals conv + bias + residual on cpu', async () => {
    configureCudaBackend(backend, { precision: 'fp32' });
    const xv = values(1 * 3 * 5 * 6 * 3, 64);
    const wv = values(3 * 3 * 3 * 3 * 4, 65);
    const bv = values(4, 66);
    const rv = values(1 * 1 * 5 * 6 * 4, 67);
    const run = () =>
      conv3d(tf.tensor5d(xv, [1, 3, 5, 6, 3]), tf.tensor5d(wv, [3, 3, 3, 3, 4]), [1, 1, 1], [1, 1], tf.tensor1d(bv), tf.tensor5d(rv, [1, 1, 5, 6, 4]));
    const onCuda = tf.tidy(run);
    expect(onCuda.shape).toEqual([1, 1, 5, 6, 4]);
    const got = onCuda.dataSync();
    onCuda.dispose();
    await tf.setBackend('cpu');
    const want = tf.tidy(run).dataSync();
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(want[i])));
  });

  it('the conv epilogue sums the fp32 convolution, bias and residual in fp32 and rounds once to bf16, in the cuDNN call; an fp32 residual makes an fp32 result', () => {
    native.cudnn = { available: true, version: 91900, library: 'mock', error: '' };
    const x = tf.tensor5d(values(1 * 1 * 4 * 4 * 8, 68), [1, 1, 4, 4, 8]);
    const w = tf.tensor5d(values(8 * 6, 69), [1, 1, 1, 8, 6]);
    const b = tf.tensor1d(values(6, 70));
    const r = tf.tensor5d(values(96, 71), [1, 1, 4, 4, 6]);
    const rb = tf.tidy(() => tf.reshape(tf.matMul(tf.tensor2d(values(48, 74), [16, 3]), tf.tensor2d(values(18, 75), [3, 6])), [1, 1, 4, 4, 6]));
    expect(storage(rb)).toBe(DeviceType.BF16);
    const live = native.liveBuffers;
    const y = conv3d(x, w, [1, 1, 1], [0, 0], b, rb);
    expect(storage(y)).toBe(DeviceType.BF16);
    expect(native.liveBuffers).toBe(live + 1 + 1); // the result, and the filter's cuDNN layout kept with w
    const plain = conv3d(x, w, [1, 1, 1]);
    const [yv, pv, bv, rv, xv, wv] = [y, plain, b, rb, x, w].map((t) => t.dataSync());
    // The 1×1×1 convolution of the bf16 inputs, accumulated exactly, is fp32 before the epilogue adds to it.
    const convAt = (i: number) => {
      let s = 0;
      for (let c = 0; c < 8; c++) s += roundBf16(xv[Math.floor(i / 6) * 8 + c]) * roundBf16(wv[c * 6 + (i % 6)]);
      return Math.fround(s);
    };
    for (let i = 0; i < yv.length; i++) expect(yv[i]).toBe(roundBf16(Math.fround(Math.fround(convAt(i) + bv[i % 6]) + rv[i])));
    const yf = conv3d(x, w, [1, 1, 1], [0, 0], b, r);
    expect(storage(r)).toBe(DeviceType.F32);
    expect(storage(yf)).toBe(DeviceType.F32);
    const fv = yf.dataSync();
    const rf = r.dataSync();
    for (let i = 0; i < fv.length; i++) expect(fv[i]).toBe(Math.fround(Math.fround(pv[i] + bv[i % 6]) + rf[i]));
    tf.dispose([x, w, b, r, rb, y, plain, yf]);
  });

  it('rmsNorm with silu (one fused kernel on cuda) equals rmsNorm then x·sigmoid(x) on cpu', async () => {
    configureCudaBackend(backend, { precision: 'fp32' });
    const xv = values(7 * 96, 72);
    const gv = values(96, 73);
    const run = () => rmsNorm(tf.tensor2d(xv, [7, 96]), tf.tensor1d(gv), 1e-6, 'silu');
    const got = tf.tidy(run).dataSync();
    await tf.setBackend('cpu');
    const want = tf.tidy(run).dataSync();
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want[i])));
  });

  it('without cuDNN a bf16 convolution runs in float32 and says so once', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const x = tf.tensor4d(values(1 * 5 * 5 * 2, 60), [1, 5, 5, 2]);
    const w = tf.tensor4d(values(3 * 3 * 2 * 4, 61), [3, 3, 2, 4]);
    const y1 = tf.conv2d(x, w, 1, 'valid');
    const y2 = tf.conv2d(x, w, 1, 'valid');
    expect(storage(y1)).toBe(DeviceType.F32);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toMatch(/cuDNN did not take a convolution \(mock: no cuDNN\)/);
    warn.mockRestore();
    tf.dispose([x, w, y1, y2]);
  });
});

describe('parameters and checkpoints', () => {
  it('parameters are stored as the policy says, and norm weights stay fp32', () => {
    const lin = new Linear({ inFeatures: 4, outFeatures: 3 }).initialize(1);
    const norm = new RMSNorm({ dim: 4 }).initialize(1);
    expect(storage(lin.weight.value)).toBe(DeviceType.BF16);
    expect(storage(norm.weight!.value)).toBe(DeviceType.F32);
    configureCudaBackend(backend, { precision: 'fp32' });
    const lin32 = new Linear({ inFeatures: 4, outFeatures: 3 }).initialize(1);
    expect(storage(lin32.weight.value)).toBe(DeviceType.F32);
    for (const m of [lin, norm, lin32]) m.dispose();
  });

  it('a bf16 checkpoint tensor is uploaded as stored (no float32 decode on the host) and converted under fp32', () => {
    const bits = new Uint16Array([0x3f80, 0xc000, 0x4049, 0x0001]);
    const decode = vi.fn(() => new Float32Array(4));
    const kept = tensorFromStored(bits, [2, 2], 'bf16', decode);
    expect(storage(kept)).toBe(DeviceType.BF16);
    expect(Array.from(kept.dataSync())).toEqual([1, -2, 3.140625, new Float32Array(new Uint32Array([0x00010000]).buffer)[0]]);
    configureCudaBackend(backend, { precision: 'fp32' });
    const widened = tensorFromStored(bits, [2, 2], 'bf16', decode);
    expect(storage(widened)).toBe(DeviceType.F32);
    expect(Array.from(widened.dataSync())).toEqual(Array.from(kept.dataSync()));
    const half = tensorFromStored(new Uint16Array([0x3c00, 0xc400, 0x3555]), [3], 'f16', decode);
    expect(Array.from(half.dataSync())).toEqual([1, -4, 0.333251953125]);
    expect(decode).not.toHaveBeenCalled();
    tf.dispose([kept, widened, half]);
  });

  it('loadWeights fills a layer from a BF16 safetensors file with the exact stored values', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-bf16-'));
    const file = path.join(dir, 'w.safetensors');
    const w = values(12, 70);
    const b = values(3, 71);
    writeSafetensors(file, { weight: { shape: [3, 4], data: w, dtype: 'BF16' }, bias: { shape: [3], data: b, dtype: 'BF16' } });
    const lin = new Linear({ inFeatures: 4, outFeatures: 3 });
    const source = SafetensorsFile.open(file);
    loadWeights(lin, source);
    source.close();
    expect(storage(lin.weight.value)).toBe(DeviceType.BF16);
    expect(Array.from(lin.weight.value.dataSync())).toEqual(Array.from(w, roundBf16));
    expect(Array.from(lin.bias!.value.dataSync())).toEqual(Array.from(b, roundBf16));
    lin.dispose();
    fs.rmSync(dir, { recursive: true });
  });
});

describe('a Wan DiT under the bf16 policy', () => {
  it('matches the reference fixture to bf16 accuracy and the fp32 policy to its tolerance, leaking nothing', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const dir = fixtureDir('wan-transformer-t2v');
    const io = SafetensorsFile.open(path.join(dir, 'io.safetensors'));
    const read = (n: string) => {
      const t = io.read(n);
      return tf.tensor(t.data, t.shape, t.dtype);
    };
    const want = io.read('output.sample').data;
    const run = async (precision: 'bf16' | 'fp32') => {
      configureCudaBackend(backend, { precision });
      const model = await WanTransformer3DModel.fromPretrained(path.join(dir, 'transformer'));
      const [x, t, ctx] = ['input.hidden_states', 'input.timestep', 'input.encoder_hidden_states'].map(read);
      const tensors = tf.memory().numTensors;
      const out = model.forward(x, t, ctx);
      const data = out.dataSync();
      out.dispose();
      expect(tf.memory().numTensors).toBe(tensors);
      tf.dispose([x, t, ctx]);
      model.dispose();
      return data;
    };
    const buffers = native.liveBuffers;
    const f32 = await run('fp32');
    native.cudnn = { available: true, version: 91900, library: 'mock', error: '' };
    const bf16 = await run('bf16');
    io.close();
    expect(native.liveBuffers).toBe(buffers);
    const relL2 = (a: ArrayLike<number>) => {
      let num = 0;
      let den = 0;
      for (let i = 0; i < want.length; i++) {
        num += (a[i] - want[i]) ** 2;
        den += want[i] ** 2;
      }
      return Math.sqrt(num / den);
    };
    for (let i = 0; i < want.length; i++) expect(Math.abs(f32[i] - want[i])).toBeLessThanOrEqual(1e-4 + 1e-4 * Math.abs(want[i]));
    expect(relL2(f32)).toBeLessThan(1e-5);
    // bf16 keeps 8 significant bits: the forward lands near 2⁻⁸ relative, far from fp32 and far from garbage.
    expect(relL2(bf16)).toBeGreaterThan(1e-4);
    expect(relL2(bf16)).toBeLessThan(3e-2);
    warn.mockRestore();
  });
});

describe('selectBackend precision', () => {
  it("refuses precision 'bf16' on a backend that computes in float32, and sets it on 'cuda'", async () => {
    await expect(selectBackend('cpu', { precision: 'bf16' })).rejects.toThrow(BackendError);
    await expect(selectBackend('cpu', { precision: 'bf16' })).rejects.toThrow(/precision 'bf16' needs backend 'cuda'/);
    expect(await selectBackend('cpu', { precision: 'fp32' })).toBe('cpu');
    expect(await selectBackend('cuda', { precision: 'fp32' })).toBe('cuda');
    expect(backend.precision).toBe('fp32');
    await expect(selectBackend('cuda', { precision: 'fp8' as 'fp32' })).rejects.toThrow(/precision must be one of bf16, fp32, got 'fp8'/);
  });
});
