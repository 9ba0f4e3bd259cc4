// The bf16 kernels of backend 'cuda' against its float32 kernels, on the GPU machine (tsx only, no
// vitest): `node node_modules/tsx/dist/cli.mjs test/cuda/bf16-check.ts` (device-run.sh bf16).
// Each case computes an op at precision bf16 and at precision fp32 from the same bf16-rounded
// inputs (random, with outliers, never zeros) and prints PASS|FAIL <case> with the relative L2
// error; moves and elementwise maps must match exactly (to one bf16 step for transcendentals).
// Attention runs through cuDNN and through the flash kernel separately. Ends with
// `N passed, N failed` and exits non-zero on a failure.
import * as tf from '@tensorflow/tfjs-core';
import { attention, conv3d, gatedResidual, layerNorm, layerNormModulate, linear, rmsNorm, rope, setFusedKernels, storeParam } from '../../src/backend/ops.js';
import { tensorFromFp8 } from '../../src/backend/precision.js';
import type { Fp8Format } from '../../src/kernels/registry.js';
import { selectBackend } from '../../src/backend/select.js';
import { CudaBackend, configureCudaBackend, cudnnInfo, type AttentionKernel } from '../../src/cuda/index.js';
import { DeviceType } from '../../src/cuda/native.js';
import type { Precision } from '../../src/kernels/registry.js';
import { decodeTensorBytes } from '../../weights/dtypes.js';
import { scaleFp8 } from '../../weights/fp8.js';
import { roundBf16 } from './mock-native.js';
import { relL2 } from '../helpers/compare.js';

/** WAN_BF16_CHECK_QUICK=1: small shapes only (to check this script against the mock addon). */
const QUICK = process.env.WAN_BF16_CHECK_QUICK === '1';

let passed = 0;
let failed = 0;

function report(ok: boolean, name: string, detail: string): void {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name} ${detail}`);
}

/** Random values in [−2, 2) rounded to bf16, with one in 61 scaled by 16 (outliers); never all zeros. */
function values(n: number, seed: number, scale = 1): Float32Array {
  let a = (seed * 2654435761) >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a * 1664525 + 1013904223) >>> 0;
    let v = ((a / 2 ** 32) * 4 - 2) * scale;
    if (i % 61 === 7) v *= 16;
    out[i] = roundBf16(v);
  }
  return out;
}

let backend: CudaBackend;

/** Runs f at a precision (and attention kernel), returning its output's values and storage. */
function at(precision: Precision, f: () => tf.Tensor, attentionKernel: AttentionKernel = 'auto'): { data: Float32Array; storage: number } {
  configureCudaBackend(backend, { precision, attention: attentionKernel });
  const before = tf.memory().numTensors;
  const out = tf.tidy(f);
  const storage = backend.storage(out);
  const data = out.dataSync() as Float32Array;
  out.dispose();
  if (tf.memory().numTensors !== before) throw new Error(`${tf.memory().numTensors - before} tensors leaked`);
  return { data, storage };
}

/** bf16 result within `tol` relative L2 of the fp32 kernel's, stored as bf16. */
function close(name: string, f: () => tf.Tensor, tol: number, attentionKernel: AttentionKernel = 'auto'): void {
  try {
    const b = at('bf16', f, attentionKernel);
    const r = at('fp32', f);
    const e = relL2(b.data, r.data);
    report(e <= tol && b.storage === DeviceType.BF16, name, `rel_l2=${e.toExponential(2)} (≤ ${tol}) storage=${b.storage === DeviceType.BF16 ? 'bf16' : 'fp32'}`);
  } catch (err) {
    report(false, name, `error: ${(err as Error).message}`);
  }
}

/**
 * One op at bf16 equal to the same op at fp32, rounded to bf16 when the bf16 result is stored so
 * (`rounded`), within `steps` bf16 steps of the expected value.
 */
function exact(name: string, f: () => tf.Tensor, steps = 0, rounded = true): void {
  try {
    const b = at('bf16', f);
    const r = at('fp32', f);
    let worst = 0;
    for (let i = 0; i < r.data.length; i++) {
      const want = rounded ? roundBf16(r.data[i]) : r.data[i];
      const step = Math.max(Math.abs(want), 1e-30) * 2 ** -7;
      const d = Math.abs(b.data[i] - want) / step;
      worst = Math.max(worst, Number.isNaN(d) && !(Number.isNaN(want) && Number.isNaN(b.data[i])) ? Infinity : Number.isNaN(d) ? 0 : d);
    }
    report(worst <= steps, name, `worst=${worst.toFixed(2)} bf16 steps (≤ ${steps})`);
  } catch (err) {
    report(false, name, `error: ${(err as Error).message}`);
  }
}

/** decode(q) · s on the host (weights/fp8.ts), the reference of the device's dequantization. */
function hostDequant(codes: Uint8Array, format: Fp8Format, scale: number): Float32Array {
  return scaleFp8(decodeTensorBytes(format === 'e4m3fn' ? 'F8_E4M3' : 'F8_E5M2', codes) as Float32Array, scale);
}

/** The device's dequantization of all 256 codes to f32 and to bf16, bit for bit the host's decode(q)·s (rounded to bf16 for bf16; NaN codes NaN). */
function fp8Codes(format: Fp8Format): void {
  const name = `fp8: dequantFp8 of all 256 ${format} codes × scale → f32 and bf16 equal the host decoding`;
  try {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const scale = Math.fround(0.0137);
    const want = hostDequant(codes, format, scale);
    const w = { dataId: backend.writeFp8(codes, [256], format, scale), shape: [256], dtype: 'float32' as const };
    const wrong: string[] = [];
    for (const storage of [DeviceType.F32, DeviceType.BF16]) {
      const c = backend.convert(w, storage);
      const got = backend.readSync(c.dataId) as Float32Array;
      backend.disposeData(c.dataId);
      for (let i = 0; i < 256; i++) {
        const v = storage === DeviceType.BF16 ? roundBf16(want[i]) : want[i];
        if (!Object.is(got[i], v) && !(Number.isNaN(got[i]) && Number.isNaN(v))) wrong.push(`0x${i.toString(16)}→${got[i]} (want ${v}, ${storage === DeviceType.BF16 ? 'bf16' : 'f32'})`);
      }
    }
    backend.disposeData(w.dataId);
    report(wrong.length === 0, name, `mismatches=${wrong.length}${wrong.length ? `: ${wrong.slice(0, 4).join(', ')}` : ''}`);
  } catch (err) {
    report(false, name, `error: ${(err as Error).message}`);
  }
}

/**
 * x·Wᵀ + b → GELU-tanh with W kept as fp8 codes and a per-tensor scale (1 byte an element,
 * dequantized per call into a scratch buffer) equals, bit for bit, the same Linear with W
 * dequantized up front and stored as a parameter is (bf16 under 'bf16', f32 under 'fp32'):
 * both GEMMs read the same operands. Codes: every finite e4m3fn code, both signs (outliers to ±448·s).
 */
function fp8Linear(rows: number, inDim: number, outDim: number): void {
  const name = `fp8: linear ${rows}×${inDim}·(${outDim}×${inDim} fp8 e4m3fn)ᵀ + b → GELU = the weight dequantized up front`;
  try {
    let a = 12345;
    const codes = Uint8Array.from({ length: outDim * inDim }, () => {
      a = (a * 1664525 + 1013904223) >>> 0;
      return (a >>> 24) % 0x7f | (a & 0x80); // 0x00..0x7e with a sign: never the NaN codes S.1111.111
    });
    const scale = Math.fround(0.08 / 448);
    const dequantized = hostDequant(codes, 'e4m3fn', scale);
    const details: string[] = [];
    let ok = true;
    for (const precision of ['bf16', 'fp32'] as const) {
      configureCudaBackend(backend, { precision });
      const before = tf.memory().numTensors;
      const [fromFp8, upFront, storage] = tf.tidy(() => {
        const x = tf.tensor3d(values(2 * rows * inDim, 80), [2, rows, inDim]);
        const b = tf.tensor1d(values(outDim, 81));
        const wq = tensorFromFp8(() => codes, [outDim, inDim], 'e4m3fn', scale, () => dequantized);
        const wu = storeParam(tf.tensor2d(dequantized, [outDim, inDim]), false);
        return [linear(x, wq, b, 'gelu_tanh'), linear(x, wu, b, 'gelu_tanh'), backend.storage(wq)];
      });
      const p = fromFp8.dataSync();
      const q = upFront.dataSync();
      let differing = 0;
      for (let i = 0; i < q.length; i++) if (!Object.is(p[i], q[i])) differing++;
      tf.dispose([fromFp8, upFront]);
      const leaked = tf.memory().numTensors - before;
      ok &&= differing === 0 && storage === DeviceType.F8_E4M3 && leaked === 0;
      details.push(`${precision}: differing=${differing} of ${q.length} storage=${storage === DeviceType.F8_E4M3 ? 'fp8' : storage} leaked=${leaked}`);
    }
    report(ok, name, details.join('; '));
  } catch (err) {
    report(false, name, `error: ${(err as Error).message}`);
  }
}

const t4 = (shape: [number, number, number, number], seed: number, scale = 1) => tf.tensor4d(values(shape.reduce((a, b) => a * b), seed, scale), shape);

async function main(): Promise<void> {
  await selectBackend('cuda', { precision: 'bf16' });
  backend = tf.backend() as CudaBackend;
  const info = cudnnInfo();
  console.log(`device ${backend.device.name}; cuDNN ${info.available ? `${info.version} from ${info.library}` : `unavailable: ${info.error}`}`);

  // A bf16 activation: a product of bf16 operands, stored bf16 under the policy.
  const act = (shape: number[], seed: number) => {
    const n = shape.reduce((a, b) => a * b);
    return tf.reshape(tf.matMul(tf.tensor2d(values(n, seed), [n / 8, 8]), tf.eye(8)), shape);
  };

  exact('move: transpose, slice, concat, pad, gather, tile of bf16', () => {
    const x = act([4, 6, 8], 1);
    return tf.concat([tf.reshape(tf.transpose(x, [2, 0, 1]), [8, 24]), tf.reshape(tf.pad(tf.slice(x, [1, 0, 2], [2, 6, 4]), [[1, 1], [0, 0], [2, 2]], 0.5), [8, 24])], 0);
  });
  exact('move: gather rows and tile', () => tf.tile(tf.gather(act([10, 8], 2), tf.tensor1d([9, 0, 3], 'int32')), [2, 1]));
  for (const [op, fn] of [['add', tf.add], ['sub', tf.sub], ['mul', tf.mul], ['div', tf.div], ['maximum', tf.maximum]] as const) {
    exact(`elementwise: ${op} of bf16 operands (broadcast)`, () => fn(act([3, 5, 8], 3), act([1, 5, 8], 4)));
  }
  for (const [op, fn] of [['sigmoid', tf.sigmoid], ['tanh', tf.tanh], ['exp', tf.exp], ['neg', tf.neg]] as const) {
    exact(`elementwise: ${op} of bf16`, () => fn(act([64, 8], 5)), 1);
  }
  exact('elementwise: bf16 + fp32 stays fp32 exactly', () => tf.add(act([16, 8], 7), tf.tensor2d(values(128, 8), [16, 8])), 0, false);
  exact('reduce: sum, max over bf16 rows (fp32 results)', () => tf.concat([tf.sum(act([32, 40], 9), 1), tf.max(act([32, 40], 10), 1)], 0), 0, false);
  close('softmax of bf16 scores', () => tf.softmax(act([24, 80], 11)), 8e-3);

  for (const [m, k, n] of QUICK ? [[33, 48, 40], [77, 129, 33]] : [[333, 1536, 1536], [32760, 64, 256], [77, 129, 33]]) {
    close(`matmul ${m}×${k}·${k}×${n}`, () => tf.matMul(tf.tensor2d(values(m * k, 12 + m), [m, k]), tf.tensor2d(values(k * n, 13 + n), [k, n])), 8e-3);
  }
  close('matmul batched, transposed, broadcast batch', () => tf.matMul(tf.tensor3d(values(3 * 40 * 24, 14), [3, 24, 40]), tf.expandDims(tf.tensor2d(values(24 * 40, 15), [24, 40]), 0), true, false), 8e-3);
  const rows = QUICK ? 20 : 300;
  close('linear x·Wᵀ + b → GELU-tanh (epilogues)', () => linear(tf.tensor3d(values(2 * rows * 256, 16), [2, rows, 256]), tf.tensor2d(values(512 * 256, 17, 0.06), [512, 256]), tf.tensor1d(values(512, 18)), 'gelu_tanh'), 8e-3);
  close('linear without bias', () => linear(tf.tensor2d(values(100 * 96, 19), [100, 96]), tf.tensor2d(values(40 * 96, 20, 0.1), [40, 96])), 8e-3);
  fp8Codes('e4m3fn');
  fp8Codes('e5m2');
  fp8Linear(rows, QUICK ? 96 : 1536, QUICK ? 64 : 4096);
  configureCudaBackend(backend, { precision: 'bf16' });

  close('rmsNorm of bf16 rows (1536 and 96 wide)', () => tf.concat([tf.reshape(rmsNorm(act([50, 1536], 21), tf.tensor1d(values(1536, 22)), 1e-6), [-1]), tf.reshape(rmsNorm(act([400, 96], 23), tf.tensor1d(values(96, 24)), 1e-6), [-1])]), 8e-3);
  close('layerNorm with affine', () => layerNorm(act([70, 512], 25), 1e-6, tf.tensor1d(values(512, 26)), tf.tensor1d(values(512, 27))), 8e-3);
  close('layerNormModulate per sample and per token', () => {
    const x = tf.tensor3d(values(2 * 30 * 256, 28, 3), [2, 30, 256]);
    const a = layerNormModulate(x, 1e-6, tf.tensor3d(values(2 * 256, 29, 0.3), [2, 1, 256]), tf.tensor3d(values(2 * 256, 30), [2, 1, 256]));
    const b = layerNormModulate(x, 1e-6, tf.tensor3d(values(30 * 256, 31, 0.3), [1, 30, 256]), tf.tensor3d(values(30 * 256, 32), [1, 30, 256]));
    return tf.concat([a, b], 0);
  }, 8e-3);
  {
    // x + y·gate fused against its composite (Multiply, then Add, in the fp32 island), bit for bit
    const residuals = (fusedOn: boolean) => {
      const previous = setFusedKernels(fusedOn);
      try {
        return at('bf16', () => {
          const x = tf.tensor3d(values(2 * 300 * 512, 34, 3), [2, 300, 512]);
          const y = act([2, 300, 512], 35);
          const perSample = tf.tensor3d(values(2 * 512, 36, 0.5), [2, 1, 512]);
          const perToken = tf.tensor3d(values(300 * 512, 37, 0.5), [1, 300, 512]);
          return tf.concat([gatedResidual(x, y, perSample), gatedResidual(x, y, perToken), gatedResidual(x, y)], 0);
        });
      } finally {
        setFusedKernels(previous);
      }
    };
    try {
      const f = residuals(true);
      const c = residuals(false);
      const differ = f.data.reduce((n, v, i) => n + (Object.is(v, c.data[i]) ? 0 : 1), 0);
      report(differ === 0 && f.storage === DeviceType.F32, 'gatedResidual (bf16 y, fp32 gate per sample, per token, none) equals its composite', `${differ} of ${f.data.length} differ; storage=${f.storage === DeviceType.F32 ? 'fp32' : 'bf16'}`);
    } catch (err) {
      report(false, 'gatedResidual equals its composite', `error: ${(err as Error).message}`);
    }
  }
  exact('rope of bf16 heads (fp32 tables)', () => {
    const L = 12;
    const ang = Float32Array.from({ length: L * 128 }, (_, i) => (i % 128) * 0.01 * Math.floor(i / 128));
    return rope(act([2, L, 4, 128], 33), tf.tensor4d(ang.map(Math.cos), [1, L, 1, 128]), tf.tensor4d(ang.map(Math.sin), [1, L, 1, 128]));
  }, 1);

  const attentionCases: Array<[string, [number, number, number, number], number]> = QUICK ? [['self 40² × 2 heads × 32', [1, 40, 2, 32], 40], ['cross 30 × 17 × 64', [1, 30, 2, 64], 17]] : [
    ['self 1000² × 4 heads × 128', [2, 1000, 4, 128], 1000],
    ['odd lengths 777 × 333', [1, 777, 3, 128], 333],
    ['cross 3000 × 512 × 12 heads', [1, 3000, 12, 128], 512],
    ['head size 64 (umT5)', [1, 300, 8, 64], 300],
    ['head size 32 (toy)', [2, 64, 6, 32], 64],
  ];
  const kernels: AttentionKernel[] = info.available ? ['cudnn', 'flash'] : ['flash'];
  for (const kernel of kernels) {
    for (const [name, [B, Lq, H, D], Lk] of attentionCases) {
      close(`attention ${kernel}: ${name}`, () => attention(t4([B, Lq, H, D], 40 + Lq, 0.5), t4([B, Lk, H, D], 41 + Lk, 0.5), t4([B, Lk, H, D], 42 + Lk)), 1.5e-2, kernel);
    }
  }
  configureCudaBackend(backend, { attention: 'auto' });

  const conv = (x: number[], w: number[], strides: [number, number, number], seed: number) => () =>
    tf.conv3d(tf.tensor5d(values(x.reduce((a, b) => a * b), seed), x as [number, number, number, number, number]), tf.tensor5d(values(w.reduce((a, b) => a * b), seed + 1, 0.1), w as [number, number, number, number, number]), strides, 'valid');
  close('conv3d 3×3×3, 32 → 48 channels', conv([1, 3, 20, 24, 32], [3, 3, 3, 32, 48], [1, 1, 1], 50), 8e-3);
  close('conv3d 3 input channels (the VAE encoder’s first)', conv([1, 3, 16, 16, 3], [3, 3, 3, 3, 96], [1, 1, 1], 52), 8e-3);
  close('conv3d 3 output channels (the decoder’s last)', conv([1, 3, 16, 16, 96], [3, 3, 3, 96, 3], [1, 1, 1], 54), 8e-3);
  close('conv3d 3×1×1 time stride 2', conv([1, 5, 8, 8, 64], [3, 1, 1, 64, 64], [2, 1, 1], 56), 8e-3);
  close('conv3d 1×1×1', conv([1, 2, 8, 8, 64], [1, 1, 1, 64, 32], [1, 1, 1], 58), 8e-3);
  close('rmsNorm + SiLU of bf16 rows (the VAE blocks’ norm, 384 wide)', () => rmsNorm(act([200, 384], 25), tf.tensor1d(values(384, 26)), 1e-24 / 384, 'silu'), 8e-3);
  close('ops.conv3d + bias + bf16 residual (a VAE block’s second convolution)', () =>
    conv3d(act([1, 3, 12, 14, 32], 64), tf.tensor5d(values(27 * 32 * 32, 65, 0.1), [3, 3, 3, 32, 32]), [1, 1, 1], [1, 1], tf.tensor1d(values(32, 66)), act([1, 1, 12, 14, 32], 67)), 8e-3);
  close('ops.conv3d with spatial pads 1 (the causal convolution)', () => conv3d(tf.tensor5d(values(1 * 3 * 12 * 14 * 32, 62), [1, 3, 12, 14, 32]), tf.tensor5d(values(27 * 32 * 48, 63, 0.1), [3, 3, 3, 32, 48]), [1, 1, 1], [1, 1]), 8e-3);
  close('conv2d 3×3 stride 2 (spatial downsample)', () => tf.conv2d(tf.tensor4d(values(2 * 17 * 17 * 32, 60), [2, 17, 17, 32]), tf.tensor4d(values(9 * 32 * 32, 61, 0.1), [3, 3, 32, 32]), 2, 'valid'), 8e-3);

  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed > 0 ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
