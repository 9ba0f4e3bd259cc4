import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../../errors.js';
import { isFp8Storage, type CudaBackend } from '../backend.js';
import { DeviceType, Epilogue } from '../native.js';
import { asDtype, asStorage, binaryOp, castOp, disposeAll, unaryOp } from './elementwise.js';
import { fp8GemmLinear } from './fp8-gemm.js';
import { boolAttr, broadcastStrides, cudaKernel, input, numAttr, sizeOf, strAttr, stridesOf } from './util.js';

/** What a bfloat16 product may fuse after it (cuBLASLt epilogues): a bias [N] and the tanh GELU. */
export interface ProductEpilogue {
  bias?: tf.TensorInfo;
  gelu?: boolean;
}

/**
 * Batched matrix product with numpy broadcasting of the batch axes.
 * a: [..., M, K] (or [..., K, M] transposed), b: [..., K, N] (or [..., N, K]) → [..., M, N].
 * In the backend's bf16 mode float operands are taken as bfloat16 (cuBLASLt, fp32 accumulation,
 * a bfloat16 result, `epilogue` fused); otherwise as float32 (cuBLAS SGEMM, float32 result), and
 * `epilogue` must be empty (the caller applies it).
 */
export function matMulOp(
  backend: CudaBackend,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transA: boolean,
  transB: boolean,
  epilogue: ProductEpilogue = {},
): tf.TensorInfo {
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2) throw new BackendError(`BatchMatMul: operands need rank ≥ 2, got [${a.shape}] and [${b.shape}]`);
  const m = transA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (k !== kb) throw new BackendError(`BatchMatMul: inner dimensions differ: [${a.shape}]${transA ? 'ᵀ' : ''} · [${b.shape}]${transB ? 'ᵀ' : ''}`);
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const batchOut = tf.backend_util.assertAndGetBroadcastShape(batchA, batchB);
  const nA = sizeOf(batchA);
  const nB = sizeOf(batchB);
  const nOut = sizeOf(batchOut);
  const temps: tf.TensorInfo[] = [];
  const bf16 = backend.bf16Mode() && a.dtype === 'float32' && b.dtype === 'float32';
  const storage = bf16 ? DeviceType.BF16 : DeviceType.F32;
  if (!bf16 && (epilogue.bias || epilogue.gelu)) throw new BackendError('BatchMatMul: a fused bias or GELU needs the bf16 path');
  const af = asStorage(backend, asDtype(backend, a, 'float32', temps), storage, temps);
  const bf = asStorage(backend, asDtype(backend, b, 'float32', temps), storage, temps);
  const out = backend.makeOutput([...batchOut, m, n], 'float32', storage);
  const pa = backend.ptr(af);
  const pb = backend.ptr(bf);
  const pc = backend.ptr(out);
  // cuBLASLt takes a bias stored as the result is.
  const bias = epilogue.bias ? asStorage(backend, asDtype(backend, epilogue.bias, 'float32', temps), storage, temps) : undefined;
  if (bias && sizeOf(bias.shape) !== n) throw new BackendError(`BatchMatMul: bias [${bias.shape}] does not match the ${n} output columns`);
  const code = bias ? (epilogue.gelu ? Epilogue.GELU_BIAS : Epilogue.BIAS) : epilogue.gelu ? Epilogue.GELU : Epilogue.NONE;
  const biasPtr = bias ? backend.ptr(bias) : 0;
  const biasType = bias ? backend.storage(bias) : DeviceType.F32;
  const mm = (batch: number, strideA: number, strideB: number, strideC: number, offA: number, offB: number, offC: number) =>
    backend.native.matmul(pa, pb, pc, batch, m, n, k, transA, transB, strideA, strideB, strideC, offA, offB, offC, storage, storage, biasPtr, biasType, code);
  const sa = m * k;
  const sb = k * n;
  const sc = m * n;
  if ((nA === nOut || nA === 1) && (nB === nOut || nB === 1)) {
    mm(nOut, nA === 1 ? 0 : sa, nB === 1 ? 0 : sb, sc, 0, 0, 0);
  } else {
    const strideA = broadcastStrides(batchA, batchOut);
    const strideB = broadcastStrides(batchB, batchOut);
    const outStrides = stridesOf(batchOut);
    for (let i = 0; i < nOut; i++) {
      let ia = 0;
      let ib = 0;
      let rest = i;
      for (let d = 0; d < batchOut.length; d++) {
        const c = Math.floor(rest / outStrides[d]);
        rest -= c * outStrides[d];
        ia += c * strideA[d];
        ib += c * strideB[d];
      }
      mm(1, 0, 0, 0, ia * sa, ib * sb, i * sc);
    }
  }
  disposeAll(backend, temps);
  if (tf.upcastType(a.dtype, b.dtype) === 'int32') {
    const asInt = castOp(backend, out, 'int32');
    backend.disposeIntermediate(out);
    return asInt;
  }
  return out;
}

/** The fused ops' activation (tfjs fused_util.applyActivation), consuming x. */
export function applyActivation(backend: CudaBackend, x: tf.TensorInfo, activation: string, prelu: tf.TensorInfo | undefined, alpha: number): tf.TensorInfo {
  let y: tf.TensorInfo;
  switch (activation) {
    case 'linear':
      return x;
    case 'relu':
      y = unaryOp(backend, 'Relu', x);
      break;
    case 'relu6':
      y = unaryOp(backend, 'Relu6', x);
      break;
    case 'elu':
      y = unaryOp(backend, 'Elu', x);
      break;
    case 'sigmoid':
      y = unaryOp(backend, 'Sigmoid', x);
      break;
    case 'leakyrelu':
      y = unaryOp(backend, 'LeakyRelu', x, alpha);
      break;
    case 'prelu':
      if (!prelu) throw new BackendError('prelu activation needs preluActivationWeights');
      y = binaryOp(backend, 'Prelu', x, prelu);
      break;
    default:
      throw new BackendError(`unknown fused activation '${activation}'`);
  }
  backend.disposeIntermediate(x);
  return y;
}

/** x + bias (broadcast), consuming x. */
export function addBias(backend: CudaBackend, x: tf.TensorInfo, bias: tf.TensorInfo | undefined): tf.TensorInfo {
  if (!bias) return x;
  const y = binaryOp(backend, 'Add', x, bias);
  backend.disposeIntermediate(x);
  return y;
}

/**
 * y = x · wᵀ + bias, then GELU-tanh when `gelu` (the Linear layers' product, w in PyTorch layout
 * [out, in]). x: [..., in] → [..., out]. In bf16 mode bias and GELU are cuBLASLt epilogues.
 * An fp8-stored w (a checkpoint weight kept in fp8, 1 byte an element) is dequantized,
 * w = decode(q) · s, into a scratch buffer stored as the policy stores parameters (bf16 under
 * precision 'bf16', the operand of the bf16 GEMM; f32 under 'fp32'), which is freed as soon as the
 * product is queued (the pool is stream-ordered): one layer's copy exists at a time.
 * With WAN_FP8_GEMM (backend.fp8Gemm, off by default) a float8_e4m3fn w runs as a cuBLASLt fp8 GEMM instead
 * (fp8GemmLinear: x quantized per tensor on the GPU), unless that cannot run (backend.fp8GemmNote says why).
 */
export function linearOp(backend: CudaBackend, x: tf.TensorInfo, w: tf.TensorInfo, bias: tf.TensorInfo | undefined, gelu: boolean): tf.TensorInfo {
  const inDim = x.shape[x.shape.length - 1];
  if (w.shape.length !== 2 || w.shape[1] !== inDim) throw new BackendError(`linear: weight [${w.shape}] does not take inputs [${x.shape}]`);
  const outDim = w.shape[0];
  const rows = sizeOf(x.shape) / Math.max(1, inDim);
  const x2 = { ...x, shape: [rows, inDim] };
  const fp8 = fp8GemmLinear(backend, x2, w, bias, gelu);
  if (fp8) return { ...fp8, shape: [...x.shape.slice(0, -1), outDim] };
  const temps: tf.TensorInfo[] = [];
  const wd = isFp8Storage(backend.storage(w)) ? asStorage(backend, w, backend.policyStorage(), temps) : w;
  const bf16 = backend.bf16Mode();
  let y = bf16 ? matMulOp(backend, x2, wd, false, true, { bias, gelu }) : matMulOp(backend, x2, wd, false, true);
  disposeAll(backend, temps);
  if (!bf16) {
    y = addBias(backend, y, bias);
    if (gelu) {
      const g = backend.makeOutput(y.shape, 'float32', backend.storage(y));
      backend.native.geluTanh(backend.ptr(y), backend.ptr(g), sizeOf(y.shape), backend.storage(y), backend.storage(g));
      backend.disposeIntermediate(y);
      y = g;
    }
  }
  return { ...y, shape: [...x.shape.slice(0, -1), outDim] };
}

/** Matrix products read bfloat16-stored operands themselves. */
const BF16 = { bf16: true };

export const matmulKernels: tf.KernelConfig[] = [
  cudaKernel(
    'BatchMatMul',
    ({ inputs, backend, attrs }) =>
      matMulOp(backend, input(inputs, 'a', 'BatchMatMul'), input(inputs, 'b', 'BatchMatMul'), boolAttr(attrs, 'transposeA', false), boolAttr(attrs, 'transposeB', false)),
    BF16,
  ),
  cudaKernel(
    '_FusedMatMul',
    ({ inputs, backend, attrs }) => {
      const a = input(inputs, 'a', '_FusedMatMul');
      const b = input(inputs, 'b', '_FusedMatMul');
      const transA = boolAttr(attrs, 'transposeA', false);
      const transB = boolAttr(attrs, 'transposeB', false);
      const activation = strAttr(attrs, 'activation', 'linear') ?? 'linear';
      const n = transB ? b.shape[b.shape.length - 2] : b.shape[b.shape.length - 1];
      // A bias over the output columns fuses into the bf16 product; any other broadcast is added after.
      const bias = inputs.bias;
      const fuseBias = backend.bf16Mode() && a.dtype === 'float32' && bias !== undefined && sizeOf(bias.shape) === n && bias.shape[bias.shape.length - 1] === n;
      const y = matMulOp(backend, a, b, transA, transB, fuseBias ? { bias } : {});
      return applyActivation(
        backend,
        fuseBias ? y : addBias(backend, y, bias),
        activation,
        inputs.preluActivationWeights,
        numAttr(attrs, 'leakyreluAlpha', '_FusedMatMul', 0.2),
      );
    },
    BF16,
  ),
];
