import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../../errors.js';
import type { CudaBackend } from '../backend.js';
import { asDtype, binaryOp, castOp, disposeAll, unaryOp } from './elementwise.js';
import { boolAttr, broadcastStrides, cudaKernel, input, numAttr, sizeOf, strAttr, stridesOf } from './util.js';

/**
 * Batched matrix product with numpy broadcasting of the batch axes.
 * a: [..., M, K] (or [..., K, M] transposed), b: [..., K, N] (or [..., N, K]) → [..., M, N].
 */
export function matMulOp(backend: CudaBackend, a: tf.TensorInfo, b: tf.TensorInfo, transA: boolean, transB: boolean): tf.TensorInfo {
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
  const af = asDtype(backend, a, 'float32', temps);
  const bf = asDtype(backend, b, 'float32', temps);
  const out = backend.makeOutput([...batchOut, m, n], 'float32');
  const pa = backend.ptr(af);
  const pb = backend.ptr(bf);
  const pc = backend.ptr(out);
  const sa = m * k;
  const sb = k * n;
  const sc = m * n;
  if ((nA === nOut || nA === 1) && (nB === nOut || nB === 1)) {
    backend.native.matmul(pa, pb, pc, nOut, m, n, k, transA, transB, nA === 1 ? 0 : sa, nB === 1 ? 0 : sb, sc, 0, 0, 0);
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
      backend.native.matmul(pa, pb, pc, 1, m, n, k, transA, transB, 0, 0, 0, ia * sa, ib * sb, i * sc);
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

export const matmulKernels: tf.KernelConfig[] = [
  cudaKernel('BatchMatMul', ({ inputs, backend, attrs }) =>
    matMulOp(backend, input(inputs, 'a', 'BatchMatMul'), input(inputs, 'b', 'BatchMatMul'), boolAttr(attrs, 'transposeA', false), boolAttr(attrs, 'transposeB', false)),
  ),
  cudaKernel('_FusedMatMul', ({ inputs, backend, attrs }) => {
    const y = matMulOp(backend, input(inputs, 'a', '_FusedMatMul'), input(inputs, 'b', '_FusedMatMul'), boolAttr(attrs, 'transposeA', false), boolAttr(attrs, 'transposeB', false));
    return applyActivation(
      backend,
      addBias(backend, y, inputs.bias),
      strAttr(attrs, 'activation', 'linear') ?? 'linear',
      inputs.preluActivationWeights,
      numAttr(attrs, 'leakyreluAlpha', '_FusedMatMul', 0.2),
    );
  }),
];
