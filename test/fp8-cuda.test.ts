// fp8 checkpoint weights on backend 'cuda' (issue 17, item 2), against the host stand-in of the addon
// (test/cuda/mock-native.ts, bf16 buffers holding real bf16 bits): ComfyUI's fp8 files load as 1-byte
// codes with their per-tensor scale, read back as the host dequantization w = decode(q) · s, and a
// Linear dequantizes its weight per call into a scratch buffer freed after the GEMM. Under either
// precision policy the output equals the one from the same weights dequantized up front, bit for bit.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Linear } from '../layers/linear.js';
import { WanModule } from '../layers/module.js';
import { RMSNorm } from '../layers/rms-norm.js';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { linear } from '../src/backend/ops.js';
import { tensorFromFp8 } from '../src/backend/precision.js';
import { CudaBackend, configureCudaBackend } from '../src/cuda/index.js';
import { DeviceType } from '../src/cuda/native.js';
import { decodeTensorBytes, float32ToBf16Bits } from '../weights/dtypes.js';
import { READ_CHUNK_BYTES, loadWeights } from '../weights/load.js';
import { SafetensorsFile, writeSafetensors, type RawTensorToWrite, type TensorToWrite } from '../weights/safetensors.js';
import { CountingSource } from './helpers/counting-source.js';
import { E4M3, nearestE4m3 } from './helpers/e4m3.js';
import { valuesWithOutliers as values } from './helpers/test-values.js';
import { roundBf16, type MockNative } from './cuda/mock-native.js';
import { registerMockCuda } from './helpers/mock-cuda.js';
import { fixtureDir } from './helpers/fixtures.js';

let native: MockNative;
let backend: CudaBackend;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-fp8-cuda-'));

beforeAll(async () => {
  ({ native, backend } = await registerMockCuda());
});

afterEach(async () => {
  await tf.setBackend('cuda');
  configureCudaBackend(backend, { precision: 'bf16' });
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const E5M2 = decodeTensorBytes('F8_E5M2', Uint8Array.from({ length: 256 }, (_, i) => i));

/**
 * w quantized as ComfyUI's fp8_scaled files are: s = max|w| / 448 (float32), q = the e4m3fn code
 * nearest to w / s; and the dequantized twin decode(q) · s rounded to float32, the weight
 * "dequantized up front".
 */
function quantize(w: Float32Array): { codes: Uint8Array; scale: number; twin: Float32Array } {
  const scale = Math.fround(w.reduce((m, v) => Math.max(m, Math.abs(v)), 0) / 448);
  const codes = Uint8Array.from(w, (v) => nearestE4m3(v / scale));
  return { codes, scale, twin: Float32Array.from(codes, (c) => E4M3[c] * scale) };
}

const scalar = (v: number): TensorToWrite => ({ shape: [], data: new Float32Array([v]) });

class Tiny extends WanModule {
  readonly proj = this.addModule('proj', new Linear({ inFeatures: 40, outFeatures: 24 }));
  readonly norm = this.addModule('norm', new RMSNorm({ dim: 24 }));
}

const W = quantize(values(24 * 40, 1));
const OTHERS: Record<string, TensorToWrite> = {
  'proj.bias': { shape: [24], data: values(24, 2) },
  'norm.weight': { shape: [24], data: values(24, 3) },
};
const jsonBytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

/** ComfyUI's three kinds of fp8 file for Tiny, and the float32 twin with the weight dequantized up front. */
const FILES = (() => {
  const fp8: RawTensorToWrite = { shape: [24, 40], dtype: 'F8_E4M3', raw: W.codes };
  const write = (name: string, tensors: Record<string, TensorToWrite | RawTensorToWrite>) => {
    const f = path.join(tmp, name);
    writeSafetensors(f, tensors);
    return f;
  };
  const quant = { format: 'float8_e4m3fn' };
  return {
    scaleWeight: write('fp8_scaled.safetensors', { ...OTHERS, 'proj.weight': fp8, 'proj.scale_weight': scalar(W.scale), 'proj.scale_input': scalar(1), scaled_fp8: { shape: [0], dtype: 'F8_E4M3', raw: new Uint8Array(0) } }),
    weightScale: write('comfy_quant.safetensors', { ...OTHERS, 'proj.weight': fp8, 'proj.weight_scale': scalar(W.scale), 'proj.comfy_quant': { shape: [jsonBytes(quant).length], dtype: 'U8', raw: jsonBytes(quant) } }),
    plain: write('fp8_e4m3fn.safetensors', { ...OTHERS, 'proj.weight': fp8 }),
    twin: write('twin.safetensors', { ...OTHERS, 'proj.weight': { shape: [24, 40], data: W.twin } }),
  };
})();

function loadTiny(file: string): Tiny {
  const m = new Tiny();
  const source = SafetensorsFile.open(file);
  try {
    loadWeights(m, source);
  } finally {
    source.close();
  }
  return m;
}

describe('the dequantization kernel (stand-in)', () => {
  it('decodes every one of the 256 codes of e4m3fn and e5m2 as the host does, times the scale, into f32 and bf16', () => {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const scale = Math.fround(0.013);
    const src = native.alloc(256);
    const f32 = native.alloc(256 * 4);
    const b16 = native.alloc(256 * 2);
    native.upload(src, codes);
    for (const [format, table] of [[DeviceType.F8_E4M3, E4M3], [DeviceType.F8_E5M2, E5M2]] as const) {
      native.dequantFp8(src, f32, 256, format, scale, DeviceType.F32);
      native.dequantFp8(src, b16, 256, format, scale, DeviceType.BF16);
      const got = new Float32Array(256);
      const bits = new Uint16Array(256);
      native.download(f32, got);
      native.download(b16, bits);
      const want = Float32Array.from(table, (v) => v * scale);
      expect([...codes].filter((c) => !Object.is(got[c], want[c]))).toEqual([]);
      expect([...codes].filter((c) => bits[c] !== float32ToBf16Bits(want[c]) && !(Number.isNaN(want[c]) && Number.isNaN(roundBf16(want[c]))))).toEqual([]);
      // e4m3fn: 2 NaN codes (S.1111.111), no infinities; e5m2: 6 NaN codes and ±∞
      expect(Array.from(got).filter(Number.isNaN).length).toBe(format === DeviceType.F8_E4M3 ? 2 : 6);
      expect(Array.from(got).filter((v) => v === Infinity || v === -Infinity).length).toBe(format === DeviceType.F8_E4M3 ? 0 : 2);
    }
    for (const p of [src, f32, b16]) native.free(p);
  });
});

describe('fp8 checkpoints on backend cuda', () => {
  for (const [kind, file, scale] of [['fp8_scaled (scale_weight)', FILES.scaleWeight, W.scale], ['weight_scale + comfy_quant', FILES.weightScale, W.scale], ['plain fp8_e4m3fn (no scale)', FILES.plain, 1]] as const) {
    it(`${kind}: the weight stays 1 byte an element on the device and reads back as the host dequantization`, () => {
      const held = backend.heldBytes;
      const m = loadTiny(file);
      expect(backend.storage(m.proj.weight.value)).toBe(DeviceType.F8_E4M3);
      // weight 1 byte, bias bf16 (the policy) 2 bytes, norm weight fp32 (kept) 4 bytes an element
      expect(backend.heldBytes - held).toBe(24 * 40 + 24 * 2 + 24 * 4);
      expect(Array.from(m.proj.weight.value.dataSync())).toEqual(Array.from(W.codes, (c) => Math.fround(E4M3[c] * scale)));
      m.dispose();
      expect(backend.heldBytes).toBe(held);
    });
  }

  it('fp8 stays fp8 under precision fp32 too; on cpu the same file loads the float32 twin', async () => {
    configureCudaBackend(backend, { precision: 'fp32' });
    const m = loadTiny(FILES.scaleWeight);
    expect(backend.storage(m.proj.weight.value)).toBe(DeviceType.F8_E4M3);
    const onCuda = m.proj.weight.value.dataSync();
    m.dispose();
    await tf.setBackend('cpu');
    const c = loadTiny(FILES.scaleWeight);
    expect(Array.from(c.proj.weight.value.dataSync())).toEqual(Array.from(onCuda));
    expect(Array.from(onCuda)).toEqual(Array.from(W.twin));
    c.dispose();
  });

  it('an addon without the dequantization kernel (built before it) gets float32 decoded on the host', () => {
    const dequant = native.dequantFp8;
    const stripped = native as Partial<MockNative>;
    delete stripped.dequantFp8;
    try {
      expect(backend.keepsFp8).toBe(false);
      const decode = vi.fn(() => W.twin.slice());
      const readCodes = vi.fn(() => W.codes);
      const t = tensorFromFp8(readCodes, [24, 40], 'e4m3fn', W.scale, decode);
      expect(backend.storage(t)).toBe(DeviceType.F32);
      expect(readCodes).not.toHaveBeenCalled();
      expect(decode).toHaveBeenCalledTimes(1);
      t.dispose();
    } finally {
      native.dequantFp8 = dequant;
    }
    expect(backend.keepsFp8).toBe(true);
  });
});

/**
 * |ỹ − y| for one output of y = x·wᵀ + b computed from bf16 operands (x̃ = bf16(x), w̃ = bf16(w),
 * b̃ = bf16(b), each within u = 2⁻⁸ relative, bf16's unit roundoff), accumulated exactly (the stand-in
 * sums in float64) and rounded once to bf16: |x̃w̃ − xw| ≤ (2u + u²)|xw|, so with
 * E = (2u + u²)·Σ|xᵢwᵢ| + u·|b|, |ỹ − y| ≤ E + u·(|y| + E).
 */
function bf16Bound(absSum: number, b: number, y: number): number {
  const u = 2 ** -8;
  const e = (2 * u + u * u) * absSum + u * Math.abs(b);
  return e + u * (Math.abs(y) + e);
}

describe('a Linear with an fp8-resident weight', () => {
  const X = values(5 * 40, 4);

  for (const precision of ['bf16', 'fp32'] as const) {
    it(`equals the Linear with the weight dequantized up front, bit for bit, under precision ${precision} (bias, GELU epilogue)`, () => {
      configureCudaBackend(backend, { precision });
      const fp8 = loadTiny(FILES.scaleWeight);
      const twin = loadTiny(FILES.twin);
      expect(backend.storage(twin.proj.weight.value)).toBe(precision === 'bf16' ? DeviceType.BF16 : DeviceType.F32);
      const x = tf.tensor3d(X, [1, 5, 40]);
      const tensors = tf.memory().numTensors;
      for (const activation of ['none', 'gelu_tanh'] as const) {
        const a = fp8.proj.forward(x, activation);
        const b = twin.proj.forward(x, activation);
        expect(backend.storage(a)).toBe(backend.storage(b));
        expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()));
        tf.dispose([a, b]);
      }
      expect(tf.memory().numTensors).toBe(tensors);
      x.dispose();
      fp8.dispose();
      twin.dispose();
    });
  }

  it('under bf16 is within the bf16 rounding bound of the float64 product of the dequantized weight; under fp32 within float32 rounding', () => {
    const bias = OTHERS['proj.bias'].data;
    const want = (i: number, j: number) => {
      let y = bias[j];
      let absSum = 0;
      for (let k = 0; k < 40; k++) {
        y += X[i * 40 + k] * W.twin[j * 40 + k];
        absSum += Math.abs(X[i * 40 + k] * W.twin[j * 40 + k]);
      }
      return { y, absSum };
    };
    for (const precision of ['bf16', 'fp32'] as const) {
      configureCudaBackend(backend, { precision });
      const m = loadTiny(FILES.scaleWeight);
      const x = tf.tensor2d(X, [5, 40]);
      const got = m.proj.forward(x).dataSync();
      for (let i = 0; i < 5; i++)
        for (let j = 0; j < 24; j++) {
          const { y, absSum } = want(i, j);
          // fp32: Σ rounded to float32, then + b rounded again (each ≤ 2⁻²⁴ relative): ≤ 2⁻²⁴·(Σ|xw|·(1 + 2⁻²⁴) + |y|)
          const bound = precision === 'bf16' ? bf16Bound(absSum, bias[j], y) : 2 ** -24 * (absSum * (1 + 2 ** -24) + Math.abs(y));
          expect(Math.abs(got[i * 24 + j] - y)).toBeLessThanOrEqual(bound);
        }
      x.dispose();
      m.dispose();
    }
  });

  it('any other kernel reads a dequantized copy, freed after it: bf16-reading kernels the weight as dequantized up front, the others float32', () => {
    const fp8 = loadTiny(FILES.scaleWeight);
    const twin = loadTiny(FILES.twin);
    const w = fp8.proj.weight.value;
    const t = twin.proj.weight.value;
    const x = tf.tensor2d(X, [5, 40]);
    const t32 = tf.tensor2d(W.twin, [24, 40]);
    const buffers = native.liveBuffers;
    // Transpose and BatchMatMul read bf16: they see bf16(decode(q)·s), as the twin is stored under the bf16 policy
    const moved = [tf.transpose(w), tf.transpose(t)];
    expect(moved.map((m) => backend.storage(m))).toEqual([DeviceType.BF16, DeviceType.BF16]);
    expect(Array.from(moved[0].dataSync())).toEqual(Array.from(moved[1].dataSync()));
    const products = [tf.matMul(x, w, false, true), tf.matMul(x, t, false, true)];
    expect(Array.from(products[0].dataSync())).toEqual(Array.from(products[1].dataSync()));
    // Cumsum reads float32: it sees decode(q)·s itself
    const sums = [tf.cumsum(w, 1), tf.cumsum(t32, 1)];
    expect(Array.from(sums[0].dataSync())).toEqual(Array.from(sums[1].dataSync()));
    tf.dispose([...moved, ...products, ...sums]);
    expect(native.liveBuffers).toBe(buffers);
    tf.dispose([x, t32]);
    fp8.dispose();
    twin.dispose();
  });

  it('dequantizes into a scratch buffer only while its GEMM runs: one layer’s bf16 copy at a time, nothing left after', () => {
    const a = loadTiny(FILES.scaleWeight);
    const b = new Linear({ inFeatures: 24, outFeatures: 40 });
    b.weight.assign(tensorFromFp8(() => W.codes, [40, 24], 'e4m3fn', W.scale, () => W.twin));
    expect(backend.storage(b.weight.value)).toBe(DeviceType.F8_E4M3);
    const x = tf.tensor2d(X, [5, 40]);
    const tensors = tf.memory().numTensors;
    const before = backend.heldBytes;
    backend.resetPeak();
    const y1 = linear(x, a.proj.weight.value);
    const y2 = linear(y1, b.weight.value);
    // scratch = 2 bytes an element of a weight (bf16); the float32 x [5, 40] gets a bf16 copy for the
    // first GEMM; outputs bf16 [5, 24] then [5, 40]
    const scratch1 = 24 * 40 * 2;
    const xCopy = 5 * 40 * 2;
    const out1 = 5 * 24 * 2;
    const scratch2 = 40 * 24 * 2;
    const out2 = 5 * 40 * 2;
    expect(backend.memory().peakBytesInGPU - before).toBe(Math.max(scratch1 + xCopy + out1, out1 + scratch2 + out2));
    expect(backend.heldBytes - before).toBe(out1 + out2);
    tf.dispose([y1, y2]);
    expect(backend.heldBytes).toBe(before);
    expect(tf.memory().numTensors).toBe(tensors);
    x.dispose();
    a.dispose();
    b.dispose();
  });
});

describe('loading an fp8 weight streams', () => {
  it('holds the codes alone on the host for cuda, and float32 + one read chunk (≤ 1.1×) on cpu', async () => {
    const [O, I] = [1536, 2048];
    const codes = Uint8Array.from(values(O * I, 5), (v) => (Math.abs(v) < 1 ? 0x30 : 0x48) | (v < 0 ? 0x80 : 0));
    const file = path.join(tmp, 'big.safetensors');
    writeSafetensors(file, { 'proj.weight': { shape: [O, I], dtype: 'F8_E4M3', raw: codes }, 'proj.scale_weight': scalar(0.5) });
    const load = () => {
      const source = new CountingSource(SafetensorsFile.open(file));
      const lin = new Linear({ inFeatures: I, outFeatures: O, bias: false });
      loadWeights(lin, source, { rename: (k) => k.replace(/^proj\./, '') });
      source.close();
      return { lin, bytes: source.bytes };
    };
    const held = backend.heldBytes;
    const cuda = load();
    // on the host: the codes (1 byte an element) and the 4-byte scale; on the device: the codes
    expect(cuda.bytes).toBe(O * I + 4);
    expect(backend.heldBytes - held).toBe(O * I);
    const first = cuda.lin.weight.value.dataSync().slice(0, 4);
    cuda.lin.dispose();
    await tf.setBackend('cpu');
    const cpu = load();
    // one READ_CHUNK_BYTES buffer read into and decoded piece by piece into the float32 tensor (4 bytes an element)
    expect(cpu.bytes).toBe(READ_CHUNK_BYTES + 4);
    expect(O * I * 4 + cpu.bytes).toBeLessThanOrEqual(1.1 * O * I * 4);
    expect(Array.from(cpu.lin.weight.value.dataSync().slice(0, 4))).toEqual(Array.from(first));
    expect(Array.from(first)).toEqual(Array.from(codes.slice(0, 4), (c) => E4M3[c] * 0.5));
    cpu.lin.dispose();
  });
});

describe('a load on cuda stages what it uploads as stored', () => {
  it('reads every bf16, f16 and fp8 tensor into one buffer of the largest one\'s size, each tensor keeping its own values', () => {
    const shapes = { a: [300, 64], b: [200, 128], c: [50], d: [64] } as const;
    const codes = Uint8Array.from(values(200 * 128, 7), (v) => (Math.abs(v) < 1 ? 0x30 : 0x48) | (v < 0 ? 0x80 : 0));
    const [a, c, d] = [values(300 * 64, 8), values(50, 9), values(64, 10)];
    const file = path.join(tmp, 'staged.safetensors');
    writeSafetensors(file, {
      'a.weight': { shape: [...shapes.a], dtype: 'BF16', data: a },
      'b.weight': { shape: [...shapes.b], dtype: 'F8_E4M3', raw: codes },
      'b.scale_weight': scalar(0.25),
      'c.weight': { shape: [...shapes.c], dtype: 'F16', data: c },
      'd.weight': { shape: [...shapes.d], dtype: 'F32', data: d },
    });
    const source = new CountingSource(SafetensorsFile.open(file));
    const read = new Map<string, ArrayBufferLike[]>();
    const loaded = new Map<string, tf.Tensor>();
    const slots = new Map(
      Object.entries(shapes).map(([name, shape]) => [
        name,
        {
          shape,
          assign(value: tf.Tensor) {
            // the buffers read for this tensor, less the 4-byte scale
            read.set(name, [...source.buffers].filter((b) => b.byteLength > 4));
            source.buffers.clear();
            loaded.set(name, value);
          },
          read: () => undefined,
        },
      ]),
    );
    loadWeights({ namedWeights: () => slots }, source, { rename: (k) => k.replace(/\.weight$/, '') });
    source.close();
    const [staging] = read.get('a')!;
    for (const name of ['a', 'b', 'c']) {
      expect(read.get(name)).toHaveLength(1);
      expect(read.get(name)![0]).toBe(staging);
    }
    expect(staging.byteLength).toBe(300 * 64 * 2);
    expect(read.get('d')).toHaveLength(1);
    expect(read.get('d')![0]).not.toBe(staging);
    expect(Array.from(loaded.get('a')!.dataSync())).toEqual(Array.from(a, roundBf16));
    expect(Array.from(loaded.get('b')!.dataSync())).toEqual(Array.from(codes, (q) => E4M3[q] * 0.25));
    const half = loaded.get('c')!.dataSync();
    // float16, stored bf16 under the bf16 policy: within a bf16 rounding and an f16 one
    c.forEach((v, i) => expect(Math.abs(half[i] - v)).toBeLessThanOrEqual(Math.abs(v) * (2 ** -8 + 2 ** -11) + 2 ** -24));
    expect(Array.from(loaded.get('d')!.dataSync())).toEqual(Array.from(d));
    tf.dispose([...loaded.values()]);
  });
});

describe('a Wan DiT from an fp8_scaled checkpoint', () => {
  it('equals the DiT from the same weights dequantized up front, bit for bit under bf16 and fp32, with 1-byte weights and no leaks', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const dir = fixtureDir('wan-transformer-t2v');
    const src = SafetensorsFile.open(path.join(dir, 'transformer', 'diffusion_pytorch_model.safetensors'));
    const fp8: Record<string, TensorToWrite | RawTensorToWrite> = { scaled_fp8: { shape: [0], dtype: 'F8_E4M3', raw: new Uint8Array(0) } };
    const twin: Record<string, TensorToWrite> = {};
    const quantized: string[] = [];
    for (const key of src.keys()) {
      const t = src.read(key);
      if (t.shape.length === 2 && key.endsWith('.weight')) {
        const q = quantize(t.data as Float32Array);
        fp8[key] = { shape: t.shape, dtype: 'F8_E4M3', raw: q.codes };
        fp8[key.replace(/weight$/, 'scale_weight')] = scalar(q.scale);
        twin[key] = { shape: t.shape, data: q.twin };
        quantized.push(key);
      } else {
        fp8[key] = twin[key] = { shape: t.shape, data: t.data };
      }
    }
    src.close();
    const folder = (name: string, tensors: Record<string, TensorToWrite | RawTensorToWrite>) => {
      const d = path.join(tmp, name);
      fs.mkdirSync(d);
      fs.copyFileSync(path.join(dir, 'transformer', 'config.json'), path.join(d, 'config.json'));
      writeSafetensors(path.join(d, 'diffusion_pytorch_model.safetensors'), tensors);
      return d;
    };
    const fp8Dir = folder('dit-fp8', fp8);
    const twinDir = folder('dit-twin', twin);
    const io = SafetensorsFile.open(path.join(dir, 'io.safetensors'));
    const inputs = ['input.hidden_states', 'input.timestep', 'input.encoder_hidden_states'].map((n) => io.read(n));
    io.close();
    const buffers = native.liveBuffers;
    const run = async (modelDir: string) => {
      const held = backend.heldBytes;
      const model = await WanTransformer3DModel.fromPretrained(modelDir);
      const weightBytes = backend.heldBytes - held;
      const fp8Elements = [...model.namedParams().values()].filter((p) => backend.storage(p.value) === DeviceType.F8_E4M3).reduce((a, p) => a + p.value.size, 0);
      const [x, t, ctx] = inputs.map((h) => tf.tensor(h.data, h.shape, h.dtype));
      const tensors = tf.memory().numTensors;
      const out = model.forward(x, t, ctx);
      const data = out.dataSync();
      out.dispose();
      expect(tf.memory().numTensors).toBe(tensors);
      tf.dispose([x, t, ctx]);
      const kept = [...model.namedParams()].filter(([, p]) => p.keepFp32).map(([k]) => k);
      model.dispose();
      return { data, weightBytes, fp8Elements, kept };
    };
    for (const precision of ['bf16', 'fp32'] as const) {
      configureCudaBackend(backend, { precision });
      const a = await run(fp8Dir);
      const b = await run(twinDir);
      expect(b.fp8Elements).toBe(0);
      // every quantized weight not kept in fp32 stays fp8: 1 byte an element instead of 2 (bf16) or 4 (fp32)
      const resident = quantized.filter((k) => !a.kept.includes(k));
      expect(resident.length).toBeGreaterThan(10);
      expect(a.fp8Elements).toBe(resident.reduce((n, k) => n + (fp8[k] as RawTensorToWrite).raw.length, 0));
      expect(b.weightBytes - a.weightBytes).toBe(a.fp8Elements * (precision === 'bf16' ? 1 : 3));
      expect(Array.from(a.data)).toEqual(Array.from(b.data));
    }
    expect(native.liveBuffers).toBe(buffers);
    warn.mockRestore();
  });
});
