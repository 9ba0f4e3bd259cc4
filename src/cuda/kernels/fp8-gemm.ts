import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../../errors.js';
import { type CudaBackend } from '../backend.js';
import { DeviceType, Epilogue, FP8_SCRATCH_HEAD } from '../native.js';
import { asDtype, asStorage, disposeAll } from './elementwise.js';
import { sizeOf } from './util.js';

/** Compute capability from which cuBLASLt runs fp8 tensor-core GEMMs (Ada sm_89, Hopper sm_90 and newer). */
const FP8_MIN_CC = 89;

/**
 * Why the fp8 GEMM cannot take this Linear (x [m, k], w [n, k] float8_e4m3fn), or undefined when it can:
 * the checks the addon makes too, so that a refusal costs no allocation.
 */
function refusal(backend: CudaBackend, x: tf.TensorInfo, w: tf.TensorInfo, m: number, n: number, k: number): string | undefined {
  if (backend.storage(w) !== DeviceType.F8_E4M3) return 'the weight is float8_e5m2 (the fp8 GEMM takes float8_e4m3fn weights)';
  if (!backend.bf16Mode()) return "precision 'fp32' or an fp32 island (the fp8 GEMM writes bf16)";
  const xs = backend.storage(x);
  if (x.dtype !== 'float32' || (xs !== DeviceType.BF16 && xs !== DeviceType.F32)) return `the input is stored as type ${xs} (not bf16 or f32)`;
  if (!backend.hasFp8Gemm) return 'the addon has no gemmFp8 (built before it): rebuild it with `npm run build:cuda`';
  const cc = backend.device.computeCapability;
  if (cc < FP8_MIN_CC) return `fp8 tensor-core GEMMs need compute capability 8.9 or newer; this GPU is ${Math.floor(cc / 10)}.${cc % 10}`;
  if (m === 0 || n === 0 || k === 0) return 'an empty product (m, n or k is 0)';
  if (k % 16 !== 0 || n % 16 !== 0) return `k = ${k} and n = ${n} must both be multiples of 16 (cuBLASLt's fp8 TN layout)`;
  return undefined;
}

/** Records why a Linear fell back to the dequantize + bf16 path (backend.fp8GemmNote, one warning per reason). */
function fallBack(backend: CudaBackend, why: string): undefined {
  backend.fp8GemmNote = why;
  backend.warnOnce(`fp8-gemm: ${why}`, `WAN_FP8_GEMM: a Linear runs the dequantize + bf16 GEMM path instead of the fp8 GEMM: ${why}`);
  return undefined;
}

/**
 * The opt-in fp8 Linear (backend.fp8Gemm, WAN_FP8_GEMM; issue 17): x [m, k], w [n, k] stored float8_e4m3fn with
 * per-tensor scale s_w, bias [n]? → y [m, n] stored bf16, through the addon's gemmFp8 (src/cuda/native/gemm-fp8.h):
 *   s_x = amax(|x|) / 448 (float32; 1 when amax is 0), q_x = e4m3(x / s_x) (round to nearest even, saturate ±448),
 *   y = bf16(GELU?((s_x·s_w)·Σ_l decode(q_x)[i, l]·decode(q_w)[j, l] + bf16(bias)[j])),
 * x read as stored (bf16, or f32), the sum accumulated in float32 by cuBLASLt. Unlike the dequantize path, the
 * activation is quantized too: with one scale per tensor, elements far below amax keep only e4m3's 3 mantissa
 * bits of precision at best and fall into its subnormals (steps of 2⁻⁹·s_x) or to 0 below 2⁻¹⁰·s_x.
 *
 * Returns undefined (the caller runs the dequantize + bf16 path) when the option is off or w is not fp8, and
 * also, recording why in backend.fp8GemmNote, when the fp8 GEMM cannot run: an e5m2 weight, precision fp32,
 * an addon without gemmFp8, a GPU below sm_89, k or n not a multiple of 16, or the addon's refusal (no cuBLASLt
 * algorithm, a misaligned pointer). The scratch (FP8_SCRATCH_HEAD + m·k bytes: amax, the scales and q_x) is a
 * backend buffer, counted against memoryLimit, freed once the GEMM is queued.
 */
export function fp8GemmLinear(backend: CudaBackend, x: tf.TensorInfo, w: tf.TensorInfo, bias: tf.TensorInfo | undefined, gelu: boolean): tf.TensorInfo | undefined {
  const ws = backend.storage(w);
  if (backend.fp8Gemm === 'off' || (ws !== DeviceType.F8_E4M3 && ws !== DeviceType.F8_E5M2)) return undefined;
  if (x.shape.length !== 2 || w.shape.length !== 2 || x.shape[1] !== w.shape[1]) throw new BackendError(`fp8 linear: x [${x.shape}] does not match the weight [${w.shape}]`);
  const [m, k] = x.shape;
  const n = w.shape[0];
  const why = refusal(backend, x, w, m, n, k);
  if (why !== undefined) return fallBack(backend, why);
  if (bias && sizeOf(bias.shape) !== n) throw new BackendError(`fp8 linear: bias [${bias.shape}] does not match the ${n} output columns`);
  const temps: tf.TensorInfo[] = [];
  const out = backend.makeOutput([m, n], 'float32', DeviceType.BF16);
  try {
    const scratch = backend.makeOutput([Math.ceil((FP8_SCRATCH_HEAD + m * k) / 4)], 'int32');
    temps.push(scratch);
    // cuBLASLt's fp8 kernels take a bias of D's type (bf16), as matMulOp's bf16 path does.
    const b = bias ? asStorage(backend, asDtype(backend, bias, 'float32', temps), DeviceType.BF16, temps) : undefined;
    const code = b ? (gelu ? Epilogue.GELU_BIAS : Epilogue.BIAS) : gelu ? Epilogue.GELU : Epilogue.NONE;
    const ran = backend.native.gemmFp8(backend.ptr(x), backend.storage(x), backend.ptr(w), backend.fp8ScaleOf(w), backend.ptr(out), m, n, k, b ? backend.ptr(b) : 0, code, backend.fp8Gemm === 'fast', backend.ptr(scratch));
    if (ran !== '') {
      backend.disposeIntermediate(out);
      return fallBack(backend, ran);
    }
  } finally {
    disposeAll(backend, temps);
  }
  backend.fp8GemmNote = '';
  return out;
}
