import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, describe, expect, it } from 'vitest';
import { Linear } from '../layers/linear.js';
import { WanModule } from '../layers/module.js';
import { RMSNorm } from '../layers/rms-norm.js';
import { CheckpointError } from '../src/errors.js';
import { decodeTensorBytes } from '../weights/dtypes.js';
import { describeFp8 } from '../weights/fp8.js';
import { loadWeights, type LoadOptions } from '../weights/load.js';
import { SafetensorsFile, writeSafetensors, type RawTensorToWrite, type TensorToWrite } from '../weights/safetensors.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-fp8-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/**
 * The value of an fp8 code by definition: sign s, E exponent bits e, M mantissa bits m, bias b.
 * Normal: (-1)^s · 2^(e−b) · (1 + m/2^M); subnormal (e = 0): (-1)^s · 2^(1−b) · m/2^M.
 * E4M3FN (b = 7) has no infinities, S.1111.111 is NaN; E5M2 (b = 15) is IEEE-like: e = 31 is
 * ±∞ (m = 0) or NaN.
 */
function fp8ByDefinition(code: number, format: 'e4m3fn' | 'e5m2'): number {
  const [E, M, bias] = format === 'e4m3fn' ? [4, 3, 7] : [5, 2, 15];
  const sign = code >= 128 ? -1 : 1;
  const e = Math.floor((code % 128) / 2 ** M);
  const m = code % 2 ** M;
  const eMax = 2 ** E - 1;
  if (format === 'e4m3fn' && e === eMax && m === 2 ** M - 1) return NaN;
  if (format === 'e5m2' && e === eMax) return m === 0 ? sign * Infinity : NaN;
  if (e === 0) return sign * Math.pow(2, 1 - bias) * (m / 2 ** M);
  return sign * Math.pow(2, e - bias) * (1 + m / 2 ** M);
}

const ALL_CODES = new Uint8Array(256).map((_, i) => i);

describe('fp8 decoding', () => {
  for (const [dtype, format] of [['F8_E4M3', 'e4m3fn'], ['F8_E5M2', 'e5m2']] as const) {
    it(`${dtype}: every one of the 256 codes equals its value by definition`, () => {
      const got = decodeTensorBytes(dtype, ALL_CODES);
      const mismatches = [...ALL_CODES].filter((c) => !Object.is(got[c], Math.fround(fp8ByDefinition(c, format))));
      expect(mismatches).toEqual([]);
    });
  }

  it('knows the landmarks: e4m3fn ±448 and 2^-9, e5m2 57344 and 2^-16, signed zeros', () => {
    const e4 = decodeTensorBytes('F8_E4M3', ALL_CODES);
    const e5 = decodeTensorBytes('F8_E5M2', ALL_CODES);
    expect([e4[0x7e], e4[0xfe], e4[0x01], e4[0x38]]).toEqual([448, -448, 2 ** -9, 1]);
    expect([e5[0x7b], e5[0x01], e5[0x7c], e5[0xfc]]).toEqual([57344, 2 ** -16, Infinity, -Infinity]);
    expect(Object.is(e4[0x80], -0) && Object.is(e5[0x80], -0)).toBe(true);
    expect([0x7f, 0xff].every((c) => Number.isNaN(e4[c]))).toBe(true);
    expect([...ALL_CODES].filter((c) => Number.isNaN(e4[c])).length).toBe(2);
    expect([...ALL_CODES].filter((c) => Number.isNaN(e5[c])).length).toBe(6);
  });
});

class Tiny extends WanModule {
  readonly proj = this.addModule('proj', new Linear({ inFeatures: 4, outFeatures: 3 }));
  readonly norm = this.addModule('norm', new RMSNorm({ dim: 3 }));
}

/** The e4m3fn code nearest to x (ties to the lower code), from the definition table; |x| ≤ 448. */
function nearestE4m3(x: number): number {
  let best = 0;
  for (let c = 0; c < 256; c++) {
    const v = fp8ByDefinition(c, 'e4m3fn');
    if (!Number.isNaN(v) && Math.abs(v - x) < Math.abs(fp8ByDefinition(best, 'e4m3fn') - x)) best = c;
  }
  return best;
}

/** A deterministic weight [3, 4] quantized as ComfyUI does: s = max|W| / 448, q = e4m3(W / s). */
function quantized(): { codes: Uint8Array; scale: number; dequantized: Float32Array } {
  const w = Array.from({ length: 12 }, (_, i) => Math.sin(1.7 * i + 0.3) * (i % 5 === 0 ? 3 : 0.4));
  const scale = Math.fround(Math.max(...w.map(Math.abs)) / 448);
  const codes = new Uint8Array(w.map((x) => nearestE4m3(x / scale)));
  // the fp32 twin: w = decode(q) · s, rounded to float32
  const dequantized = new Float32Array([...codes].map((c) => Math.fround(fp8ByDefinition(c, 'e4m3fn') * scale)));
  return { codes, scale, dequantized };
}

const OTHERS: Record<string, TensorToWrite> = {
  'proj.bias': { shape: [3], data: new Float32Array([0.25, -0.5, 0.125]) },
  'norm.weight': { shape: [3], data: new Float32Array([1, 0.5, 2]) },
};
const X = tf.tensor2d([[0.3, -1.1, 2.5, 0.7], [-0.2, 0.9, -1.4, 3.1]]);

function loadTiny(file: string, options?: LoadOptions): Tiny {
  const m = new Tiny();
  const src = SafetensorsFile.open(file);
  try {
    loadWeights(m, src, options);
  } finally {
    src.close();
  }
  return m;
}

function write(name: string, tensors: Record<string, TensorToWrite | RawTensorToWrite>, metadata?: Record<string, string>): string {
  const f = path.join(tmp, name);
  writeSafetensors(f, tensors, metadata);
  return f;
}

function loadError(file: string): CheckpointError {
  try {
    loadTiny(file).dispose();
  } catch (e) {
    if (e instanceof CheckpointError) return e;
    throw e;
  }
  throw new Error('expected a CheckpointError');
}

const jsonBytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

describe('scaled fp8 checkpoints (ComfyUI)', () => {
  const { codes, scale, dequantized } = quantized();
  const twinFile = write('twin.safetensors', { ...OTHERS, 'proj.weight': { shape: [3, 4], data: dequantized } });
  const fp8Weight: RawTensorToWrite = { shape: [3, 4], dtype: 'F8_E4M3', raw: codes };
  const scalar = (v: number): TensorToWrite => ({ shape: [], data: new Float32Array([v]) });

  function expectTwin(m: Tiny): void {
    const twin = loadTiny(twinFile);
    expect(Array.from(m.proj.weight.read()!.dataSync())).toEqual(Array.from(dequantized));
    expect(Array.from(m.proj.forward(X).dataSync())).toEqual(Array.from(twin.proj.forward(X).dataSync()));
    twin.dispose();
    m.dispose();
  }

  it('scaled fp8 layers equal their dequantized fp32 twins: older files (scale_weight, scale_input, scaled_fp8 marker)', () => {
    expect(scale).not.toBe(1);
    const f = write('old.safetensors', {
      ...OTHERS,
      'proj.weight': fp8Weight,
      'proj.scale_weight': scalar(scale),
      'proj.scale_input': { shape: [1], data: new Float32Array([1]) },
      scaled_fp8: { shape: [0], dtype: 'F8_E4M3', raw: new Uint8Array(0) },
    });
    expectTwin(loadTiny(f));
  });

  it('scaled fp8 layers equal their dequantized fp32 twins: newer files (weight_scale, comfy_quant, _quantization_metadata)', () => {
    const quant = { format: 'float8_e4m3fn' };
    const f = write(
      'new.safetensors',
      {
        ...OTHERS,
        'proj.weight': fp8Weight,
        'proj.weight_scale': scalar(scale),
        'proj.input_scale': scalar(0.5),
        'proj.comfy_quant': { shape: [jsonBytes(quant).length], dtype: 'U8', raw: jsonBytes(quant) },
      },
      { _quantization_metadata: JSON.stringify({ format_version: '1.0', layers: { proj: quant } }) },
    );
    expectTwin(loadTiny(f));
  });

  it('keys with a model prefix: scales and the marker bypass the rename', () => {
    const p = 'model.diffusion_model.';
    const f = write('prefixed.safetensors', {
      [`${p}proj.bias`]: OTHERS['proj.bias'],
      [`${p}norm.weight`]: OTHERS['norm.weight'],
      [`${p}proj.weight`]: fp8Weight,
      [`${p}proj.scale_weight`]: scalar(scale),
      [`${p}scaled_fp8`]: { shape: [2], dtype: 'F8_E4M3', raw: new Uint8Array(2) },
    });
    const renamed: string[] = [];
    const m = loadTiny(f, { rename: (k) => (renamed.push(k), k.slice(p.length)) });
    expect(renamed.sort()).toEqual([`${p}norm.weight`, `${p}proj.bias`, `${p}proj.weight`]);
    expectTwin(m);
  });

  it('plain fp8_e4m3fn files (no scales) load decode(q)', () => {
    const f = write('plain.safetensors', { ...OTHERS, 'proj.weight': fp8Weight });
    const m = loadTiny(f);
    expect(Array.from(m.proj.weight.read()!.dataSync())).toEqual([...codes].map((c) => fp8ByDefinition(c, 'e4m3fn')));
    m.dispose();
  });

  it('reports a scale without its weight as unexpected and a scale of several elements as mis-shaped, with the rest', () => {
    const f = write('bad-scales.safetensors', {
      ...OTHERS,
      'proj.weight': fp8Weight,
      'proj.scale_weight': { shape: [3], data: new Float32Array(3) },
      'gone.weight_scale': scalar(1),
    });
    const err = loadError(f);
    expect(err.message).toContain('bad-scales.safetensors');
    expect(err.message).toMatch(/unexpected 1: gone\.weight_scale/);
    expect(err.message).toMatch(/mis-shaped 1: proj\.scale_weight: file \[3\] vs a per-tensor scale \(1 element\)/);
  });

  it('refuses inconsistent quantization with a CheckpointError naming file and key', () => {
    const nvfp4 = { format: 'nvfp4' };
    const cases: Array<[string, Record<string, TensorToWrite | RawTensorToWrite>, RegExp, string]> = [
      ['format.safetensors', { 'proj.comfy_quant': { shape: [jsonBytes(nvfp4).length], dtype: 'U8', raw: jsonBytes(nvfp4) } }, /format 'nvfp4' is not supported/, 'proj.comfy_quant'],
      ['e5m2.safetensors', { 'proj.comfy_quant': { shape: [jsonBytes({ format: 'float8_e5m2' }).length], dtype: 'U8', raw: jsonBytes({ format: 'float8_e5m2' }) } }, /stores F8_E5M2 weights, but the weight is F8_E4M3/, 'proj.comfy_quant'],
      ['two.safetensors', { 'proj.scale_weight': scalar(scale), 'proj.weight_scale': scalar(scale) }, /two weight scales/, 'proj.weight'],
      ['nan.safetensors', { 'proj.scale_weight': scalar(NaN) }, /scale is NaN/, 'proj.scale_weight'],
    ];
    for (const [name, extra, message, key] of cases) {
      const err = loadError(write(name, { ...OTHERS, 'proj.weight': fp8Weight, ...extra }));
      expect(err.message).toMatch(message);
      expect(err.file).toContain(name);
      expect(err.tensor).toBe(key);
    }
    const bf16 = loadError(write('bf16.safetensors', { ...OTHERS, 'proj.weight': { shape: [3, 4], data: dequantized, dtype: 'BF16' }, 'proj.scale_weight': scalar(2) }));
    expect(bf16.message).toMatch(/has a weight scale, but the weight is BF16, not float8/);
    const meta = loadError(write('meta.safetensors', { ...OTHERS, 'proj.weight': fp8Weight }, { _quantization_metadata: JSON.stringify({ layers: { proj: { format: 'int8_tensorwise' } } }) }));
    expect(meta.message).toMatch(/_quantization_metadata layer 'proj'.*format 'int8_tensorwise' is not supported/);
  });

  it('writeSafetensors checks the length of raw bytes', () => {
    expect(() => write('short.safetensors', { w: { shape: [3], dtype: 'F8_E4M3', raw: new Uint8Array(2) } })).toThrow(/needs 3 bytes but raw has 2/);
  });

  it('describeFp8 counts the stored types and the scales from the header', () => {
    const f = write('describe.safetensors', {
      ...OTHERS,
      'proj.weight': fp8Weight,
      'proj.scale_weight': scalar(scale),
      scaled_fp8: { shape: [0], dtype: 'F8_E4M3', raw: new Uint8Array(0) },
    });
    const src = SafetensorsFile.open(f);
    const d = describeFp8(src);
    src.close();
    expect(d).toEqual({
      dtypeCounts: { F32: 3, F8_E4M3: 2 },
      fp8Tensors: 1,
      scaledWeights: 1,
      scaleKeys: 'scale_weight',
      marker: true,
      text: 'F32 3, F8_E4M3 2; 1 fp8 weights scaled (scale_weight)',
    });
    const plain = SafetensorsFile.open(twinFile);
    expect(describeFp8(plain).text).toBe('F32 3; no fp8');
    plain.close();
  });
});
