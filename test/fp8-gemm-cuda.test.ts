// The opt-in fp8 Linear GEMM (issue 17, deliverable 2: WAN_FP8_GEMM=1) on backend 'cuda' over the host stand-in of
// the addon (test/cuda/mock-native.ts, gemmFp8 by definition). The TypeScript dispatch is what is tested: with the
// option on, a Linear whose weight is stored float8_e4m3fn equals, bit for bit, a reference computed here from the
// definition (its own e4m3 rounding, by nearest-code search over the decode table, ties to the even code):
//   s_x = amax|x| / 448 (float32), q_x = e4m3(x / s_x), y = bf16(GELU?(fround(s_x·s_w)·Σ decode(q_x)·decode(q_w) + bf16(b)));
// shapes whose k or n is not a multiple of 16 (and every other refusal) give exactly the dequantize + bf16 path,
// with the reason recorded; the option off changes nothing; and no tensor or device byte is left behind.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { linear } from '../src/backend/ops.js';
import { tensorFromFp8 } from '../src/backend/precision.js';
import { BackendError } from '../src/errors.js';
import { CudaBackend, configureCudaBackend, registerCudaBackendWith } from '../src/cuda/index.js';
import { fp8GemmFromEnv } from '../src/cuda/backend.js';
import { DeviceType, FP8_SCRATCH_HEAD } from '../src/cuda/native.js';
import { E4M3, nearestE4m3 } from './helpers/e4m3.js';
import { valuesWithOutliers } from './helpers/test-values.js';
import { createMockNative, encodeE4m3, roundBf16, type MockNative } from './cuda/mock-native.js';

let native: MockNative;
let backend: CudaBackend;

beforeAll(async () => {
  // The option as a user sets it, read when the backend is made; an H100's compute capability.
  process.env.WAN_FP8_GEMM = '1';
  native = createMockNative();
  registerCudaBackendWith(native, { ...native.init(), computeCapability: 90 }, []);
  await tf.setBackend('cuda');
  backend = tf.backend() as CudaBackend;
  delete process.env.WAN_FP8_GEMM;
  vi.spyOn(console, 'warn').mockImplementation(() => {});
});

afterEach(() => {
  configureCudaBackend(backend, { precision: 'bf16' });
  backend.fp8Gemm = 'on';
  native.fp8GemmRefusal = '';
  backend.device.computeCapability = 90;
});

const geluTanh = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

/**
 * y [m, n] of the fp8 GEMM by definition, from x [m, k] as stored (values), w's codes [n, k] and scale, the bias
 * (rounded to bf16, as the GEMM takes it); the sum is exact in float64 (e4m3 products have 8 significant bits).
 */
function reference(x: Float32Array, m: number, k: number, codes: Uint8Array, sw: number, n: number, bias: Float32Array | undefined, gelu: boolean): Float32Array {
  let amax = 0;
  for (const v of x) amax = Math.max(amax, Math.abs(v));
  const sx = Math.fround(amax / 448) || 1;
  const qx = Float32Array.from(x, (v) => E4M3[nearestE4m3(Math.fround(v / sx))]);
  const scale = Math.fround(sx * Math.fround(sw));
  const y = new Float32Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let l = 0; l < k; l++) s += qx[i * k + l] * E4M3[codes[j * k + l]];
      let v = scale * s + (bias ? roundBf16(bias[j]) : 0);
      if (gelu) v = geluTanh(v);
      y[i * n + j] = roundBf16(v);
    }
  return y;
}

/** n·k random finite e4m3fn codes of both signs (never the NaN codes S.1111.111). */
function randomCodes(count: number, seed: number): Uint8Array {
  let a = seed >>> 0;
  return Uint8Array.from({ length: count }, () => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return ((a >>> 24) % 0x7f) | (a & 0x80);
  });
}

/** An activation with outliers: valuesWithOutliers (±2, one in 97 ×20) plus a few ±300s, so that s_x is set by them. */
function activation(count: number, seed: number): Float32Array {
  const x = valuesWithOutliers(count, seed);
  for (let i = 5; i < count; i += 173) x[i] = i % 2 ? 300 : -300;
  return x;
}

interface Case {
  m: number;
  k: number;
  n: number;
  codes: Uint8Array;
  scale: number;
  bias: Float32Array;
  x: Float32Array;
}

function makeCase(m: number, k: number, n: number, seed: number): Case {
  return { m, k, n, codes: randomCodes(n * k, seed), scale: Math.fround(0.05 / 448), bias: valuesWithOutliers(n, seed + 1), x: activation(m * k, seed + 2) };
}

const fp8Weight = (c: Case, format: 'e4m3fn' | 'e5m2' = 'e4m3fn') =>
  tensorFromFp8(() => c.codes, [c.n, c.k], format, c.scale, () => {
    throw new Error('the weight stays fp8 on cuda');
  });

/** The Linear's output (and its storage) from an fp8 weight, with the backend's fp8Gemm as set; `bf16x`: x stored bf16. */
function run(c: Case, opts: { gelu?: boolean; bias?: boolean; bf16x?: boolean; format?: 'e4m3fn' | 'e5m2' } = {}): { y: Float32Array; xUsed: Float32Array; storage: DeviceType } {
  const w = fp8Weight(c, opts.format);
  const b = opts.bias === false ? undefined : tf.tensor1d(c.bias);
  const x0 = tf.tensor3d(c.x, [2, c.m / 2, c.k]);
  // a bf16-stored activation: a product of bf16 operands (x·I) holds bf16(x) exactly
  const x = opts.bf16x ? tf.tidy(() => tf.reshape(tf.matMul(tf.reshape(x0, [c.m, c.k]), tf.eye(c.k)), [2, c.m / 2, c.k])) : x0;
  const out = linear(x, w, b, opts.gelu ? 'gelu_tanh' : 'none');
  expect(out.shape).toEqual([2, c.m / 2, c.n]);
  const result = { y: out.dataSync() as Float32Array, xUsed: x.dataSync() as Float32Array, storage: backend.storage(out) };
  tf.dispose([w, b, x0, x, out]);
  return result;
}

/** The same Linear through the dequantize + bf16 path (the option off). */
function dequantizePath(c: Case, opts: { gelu?: boolean; bias?: boolean; bf16x?: boolean; format?: 'e4m3fn' | 'e5m2' } = {}): Float32Array {
  const mode = backend.fp8Gemm;
  backend.fp8Gemm = 'off';
  try {
    return run(c, opts).y;
  } finally {
    backend.fp8Gemm = mode;
  }
}

describe('the e4m3 rounding of the activation (stand-in of encodeE4m3)', () => {
  it('is the nearest code, ties to even, saturating at ±448: on every code value, every midpoint, subnormals and random values', () => {
    const probes: number[] = [0, -0, 448, 449, 463.9, 464, 465, 1e6, Infinity, -Infinity, 2 ** -6, 2 ** -7, 2 ** -9, 2 ** -10, 3 * 2 ** -11, 2 ** -30, 1e-45];
    for (let c = 0; c < 0x7e; c++) probes.push(E4M3[c], (E4M3[c] + E4M3[c + 1]) / 2, Math.fround(E4M3[c] * (1 + 2 ** -20)), Math.fround(E4M3[c + 1] * (1 - 2 ** -20)));
    probes.push(...valuesWithOutliers(5000, 9).map((v) => v * 11));
    const wrong = [...probes, ...probes.map((v) => -v)].map((v) => Math.fround(v)).filter((v) => encodeE4m3(v) !== nearestE4m3(v));
    expect(wrong).toEqual([]);
    expect(encodeE4m3(NaN)).toBe(0x7f);
  });
});

describe('WAN_FP8_GEMM', () => {
  it('is read when the backend is made: unset, "" or 0 off, 1 on, fast on with fast accumulation, anything else a BackendError', () => {
    expect(backend.fp8Gemm).toBe('on');
    expect(fp8GemmFromEnv({})).toBe('off');
    expect(fp8GemmFromEnv({ WAN_FP8_GEMM: '' })).toBe('off');
    expect(fp8GemmFromEnv({ WAN_FP8_GEMM: '0' })).toBe('off');
    expect(fp8GemmFromEnv({ WAN_FP8_GEMM: '1' })).toBe('on');
    expect(fp8GemmFromEnv({ WAN_FP8_GEMM: 'fast' })).toBe('fast');
    expect(() => fp8GemmFromEnv({ WAN_FP8_GEMM: 'yes' })).toThrow(BackendError);
  });
});

describe('a Linear with a float8_e4m3fn weight under WAN_FP8_GEMM=1', () => {
  const c = makeCase(14, 64, 48, 100);

  for (const [label, opts] of [
    ['f32 x, bias', {}],
    ['f32 x, bias, GELU', { gelu: true }],
    ['bf16 x, bias, GELU', { bf16x: true, gelu: true }],
    ['bf16 x, no bias', { bf16x: true, bias: false }],
  ] as const) {
    it(`runs the fp8 GEMM and equals the definition bit for bit (${label}; outliers in x)`, () => {
      const runs = native.fp8GemmRuns;
      const got = run(c, opts);
      expect(native.fp8GemmRuns).toBe(runs + 1);
      expect(backend.fp8GemmNote).toBe('');
      expect(got.storage).toBe(DeviceType.BF16);
      const want = reference(got.xUsed, c.m, c.k, c.codes, c.scale, c.n, 'bias' in opts && opts.bias === false ? undefined : c.bias, 'gelu' in opts && opts.gelu === true);
      expect(Array.from(got.y)).toEqual(Array.from(want));
      // the activation's quantization shows: not the dequantize path's result
      expect(Array.from(got.y)).not.toEqual(Array.from(dequantizePath(c, opts)));
    });
  }

  it("'fast' runs it too (fast accumulation is the device's concern: the same definition)", () => {
    backend.fp8Gemm = 'fast';
    const got = run(c);
    expect(backend.fp8GemmNote).toBe('');
    expect(Array.from(got.y)).toEqual(Array.from(reference(got.xUsed, c.m, c.k, c.codes, c.scale, c.n, c.bias, false)));
  });

  it('quantizes x per tensor: with ±300 outliers the small values keep coarse steps or vanish (the definition, not a threshold)', () => {
    let amax = 0;
    for (const v of c.x) amax = Math.max(amax, Math.abs(v));
    const sx = Math.fround(amax / 448);
    // |x| < 2⁻¹⁰·s_x rounds to 0; values below 2⁻⁶·s_x (subnormal e4m3) keep steps of 2⁻⁹·s_x
    const zeroed = Array.from(c.x).filter((v) => v !== 0 && encodeE4m3(Math.fround(v / sx)) % 0x80 === 0).length;
    const subnormal = Array.from(c.x).filter((v) => Math.abs(v / sx) < 2 ** -6).length;
    expect(sx).toBeCloseTo(300 / 448, 6);
    expect(subnormal).toBeGreaterThan(0);
    expect(zeroed).toBeLessThan(subnormal);
  });

  it('holds out + scratch (256 + m·k bytes) + the bias copy during the call and leaves nothing: tensors, device bytes, buffers', () => {
    const w = fp8Weight(c);
    const b = tf.tensor1d(c.bias);
    const x = tf.tensor2d(c.x, [c.m, c.k]);
    const tensors = tf.memory().numTensors;
    const held = backend.heldBytes;
    const buffers = native.liveBuffers;
    backend.resetPeak();
    const y = linear(x, w, b, 'gelu_tanh');
    const out = c.m * c.n * 2;
    const scratch = Math.ceil((FP8_SCRATCH_HEAD + c.m * c.k) / 4) * 4;
    expect(backend.memory().peakBytesInGPU - held).toBe(out + scratch + c.n * 2);
    expect(backend.heldBytes - held).toBe(out);
    y.dispose();
    expect(tf.memory().numTensors).toBe(tensors);
    expect(backend.heldBytes).toBe(held);
    expect(native.liveBuffers).toBe(buffers);
    tf.dispose([w, b, x]);
  });
});

describe('falls back to the dequantize + bf16 path, exactly, recording why', () => {
  const fallsBack = (c: Case, expectNote: RegExp, opts: { gelu?: boolean; bf16x?: boolean; format?: 'e4m3fn' | 'e5m2' } = {}) => {
    const runs = native.fp8GemmRuns;
    const want = dequantizePath(c, opts);
    const tensors = tf.memory().numTensors;
    const held = backend.heldBytes;
    const buffers = native.liveBuffers;
    const got = run(c, opts);
    expect(Array.from(got.y)).toEqual(Array.from(want));
    expect(backend.fp8GemmNote).toMatch(expectNote);
    expect(native.fp8GemmRuns).toBe(runs);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(backend.heldBytes).toBe(held);
    expect(native.liveBuffers).toBe(buffers);
  };

  it('k not a multiple of 16 (k = 40)', () => fallsBack(makeCase(6, 40, 32, 200), /k = 40 and n = 32 must both be multiples of 16/, { gelu: true }));
  it('n not a multiple of 16 (n = 24)', () => fallsBack(makeCase(6, 32, 24, 201), /k = 32 and n = 24 must both be multiples of 16/, { bf16x: true }));
  it('a float8_e5m2 weight', () => fallsBack(makeCase(6, 32, 32, 202), /float8_e5m2/, { format: 'e5m2' }));
  it('a GPU below sm_89', () => {
    backend.device.computeCapability = 80;
    fallsBack(makeCase(6, 32, 32, 203), /compute capability 8\.9 or newer; this GPU is 8\.0/);
  });
  it('the addon refusing it (no cuBLASLt algorithm): its reason', () => {
    native.fp8GemmRefusal = 'cublasLtMatmulAlgoGetHeuristic found no fp8 algorithm (mock)';
    fallsBack(makeCase(6, 32, 32, 204), /found no fp8 algorithm \(mock\)/, { gelu: true });
  });
  it('an addon built before gemmFp8', () => {
    const gemm = native.gemmFp8;
    delete (native as Partial<MockNative>).gemmFp8;
    try {
      expect(backend.hasFp8Gemm).toBe(false);
      fallsBack(makeCase(6, 32, 32, 205), /the addon has no gemmFp8/);
    } finally {
      native.gemmFp8 = gemm;
    }
    expect(backend.hasFp8Gemm).toBe(true);
  });
  it("precision 'fp32' (the fp8 GEMM writes bf16)", () => {
    configureCudaBackend(backend, { precision: 'fp32' });
    fallsBack(makeCase(6, 32, 32, 206), /precision 'fp32'/);
  });
});

describe('with the option off', () => {
  it('changes nothing: the dequantize + bf16 path, no fp8 GEMM, no note', () => {
    const c = makeCase(14, 64, 48, 300);
    backend.fp8Gemm = 'off';
    backend.fp8GemmNote = '';
    const runs = native.fp8GemmRuns;
    // the weight dequantized up front (bf16 under the policy) through the same Linear
    const twin = tf.tensor2d(Float32Array.from(c.codes, (q) => Math.fround(E4M3[q] * c.scale)), [c.n, c.k]);
    const twinStored = tf.tidy(() => tf.matMul(tf.eye(c.n), twin));
    const x = tf.tensor3d(c.x, [2, c.m / 2, c.k]);
    const b = tf.tensor1d(c.bias);
    const want = linear(x, twinStored, b, 'gelu_tanh');
    const got = run(c, { gelu: true });
    expect(Array.from(got.y)).toEqual(Array.from(want.dataSync()));
    expect(native.fp8GemmRuns).toBe(runs);
    expect(backend.fp8GemmNote).toBe('');
    tf.dispose([twin, twinStored, x, b, want]);
  });
});
