import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../../errors.js';
import { deviceType, type CudaBackend } from '../backend.js';
import { DeviceType } from '../native.js';
import { bitsOf, broadcastStrides, coalesce, cudaKernel, dtypeAttr, input, inputList, numAttr, sizeOf } from './util.js';

/** Unary ops the device computes on int32 directly; the rest run on float32 (ints are cast first). */
const INT_UNARY = new Set(['Abs', 'Neg', 'Square', 'Sign', 'Relu', 'LogicalNot', 'ClipByValue', 'Identity']);
/** Unary ops whose result is bool. */
const BOOL_UNARY = new Set(['IsNan', 'IsInf', 'IsFinite', 'LogicalNot']);
/** Binary ops whose result is bool. */
const BOOL_BINARY = new Set(['Equal', 'NotEqual', 'Less', 'LessEqual', 'Greater', 'GreaterEqual', 'LogicalAnd', 'LogicalOr', 'LogicalXor']);
/** Binary ops computed in float32 whatever the input dtypes. */
const FLOAT_BINARY = new Set(['RealDiv', 'Atan2']);

/** x as `dtype`: a new buffer (the caller disposes it); float32 results are stored as float32. */
export function castOp(backend: CudaBackend, x: tf.TensorInfo, dtype: tf.DataType): tf.TensorInfo {
  const out = backend.makeOutput(x.shape, dtype);
  const to = dtype === 'bool' ? DeviceType.BOOL : deviceType(dtype);
  backend.native.cast(backend.ptr(x), backend.ptr(out), sizeOf(x.shape), backend.storage(x), to);
  return out;
}

/** x stored as `storage` (x itself when it already is), a copy recorded in `temps` otherwise. */
export function asStorage(backend: CudaBackend, x: tf.TensorInfo, storage: DeviceType, temps: tf.TensorInfo[]): tf.TensorInfo {
  if (x.dtype !== 'float32' || backend.storage(x) === storage) return x;
  const c = backend.convert(x, storage);
  temps.push(c);
  return c;
}

/** x itself when it already has `dtype`, else a cast copy that is recorded in `temps` for disposal. */
export function asDtype(backend: CudaBackend, x: tf.TensorInfo, dtype: tf.DataType, temps: tf.TensorInfo[]): tf.TensorInfo {
  if (x.dtype === dtype) return x;
  const c = castOp(backend, x, dtype);
  temps.push(c);
  return c;
}

export function disposeAll(backend: CudaBackend, temps: tf.TensorInfo[]): void {
  for (const t of temps) backend.disposeIntermediate(t);
}

/** A tensor of `shape` filled with `value` (float32 stored as float32). */
export function fillOp(backend: CudaBackend, shape: number[], dtype: tf.DataType, value: number): tf.TensorInfo {
  const out = backend.makeOutput(shape, dtype);
  backend.native.fill(backend.ptr(out), sizeOf(shape), bitsOf(value, dtype), 4);
  return out;
}

/**
 * A unary map by op name (un:: codes in native/ops.h); `a`, `b` are the op's parameters. A float
 * result is stored as bfloat16 when x is and the policy allows (backend.followStorage).
 */
export function unaryOp(backend: CudaBackend, name: string, x: tf.TensorInfo, a = 0, b = 0): tf.TensorInfo {
  const op = backend.unaryOps.get(name);
  if (op === undefined) throw new BackendError(`unary op ${name} is not in the addon`);
  const temps: tf.TensorInfo[] = [];
  const intPath = x.dtype !== 'float32' && INT_UNARY.has(name);
  const src = intPath ? x : asDtype(backend, x, 'float32', temps);
  const outDtype: tf.DataType = BOOL_UNARY.has(name) ? 'bool' : intPath ? (x.dtype === 'bool' ? 'int32' : x.dtype) : 'float32';
  const out = backend.makeOutput(x.shape, outDtype, outDtype === 'float32' ? backend.followStorage([src]) : undefined);
  backend.native.unary(op, backend.storage(src), backend.storage(out), backend.ptr(src), backend.ptr(out), sizeOf(x.shape), a, b);
  disposeAll(backend, temps);
  return out;
}

/**
 * A broadcasting binary map by op name (bin:: codes in native/ops.h). Float operands may each be
 * stored as float32 or bfloat16; the result is bfloat16 only when both are and the policy allows.
 */
export function binaryOp(backend: CudaBackend, name: string, a: tf.TensorInfo, b: tf.TensorInfo): tf.TensorInfo {
  const op = backend.binaryOps.get(name);
  if (op === undefined) throw new BackendError(`binary op ${name} is not in the addon`);
  if (a.dtype === 'complex64' || b.dtype === 'complex64' || a.dtype === 'string' || b.dtype === 'string') {
    throw new BackendError(`${name}: backend 'cuda' supports float32, int32 and bool operands, got ${a.dtype} and ${b.dtype}`);
  }
  let dtype = tf.upcastType(a.dtype, b.dtype);
  if (FLOAT_BINARY.has(name)) dtype = 'float32';
  else if (dtype === 'bool') dtype = 'int32';
  const temps: tf.TensorInfo[] = [];
  const ac = asDtype(backend, a, dtype, temps);
  const bc = asDtype(backend, b, dtype, temps);
  const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
  const outDtype: tf.DataType = BOOL_BINARY.has(name) ? 'bool' : name === 'FloorDiv' ? 'int32' : dtype;
  const out = backend.makeOutput(outShape, outDtype, outDtype === 'float32' ? backend.followStorage([ac, bc]) : undefined);
  const v = coalesce(outShape, [broadcastStrides(a.shape, outShape), broadcastStrides(b.shape, outShape)]);
  backend.native.binary(
    op,
    backend.storage(ac),
    backend.storage(bc),
    backend.storage(out),
    backend.ptr(ac),
    backend.ptr(bc),
    backend.ptr(out),
    v.shape,
    v.strides[0],
    v.strides[1],
  );
  disposeAll(backend, temps);
  return out;
}

/**
 * condition ? t : e with broadcasting; a rank-1 condition selects along the first axis (tfjs
 * where). Float operands stored differently are both taken as float32.
 */
export function selectOp(backend: CudaBackend, condition: tf.TensorInfo, t: tf.TensorInfo, e: tf.TensorInfo): tf.TensorInfo {
  const dtype = tf.upcastType(t.dtype, e.dtype);
  const temps: tf.TensorInfo[] = [];
  let tc = asDtype(backend, t, dtype, temps);
  let ec = asDtype(backend, e, dtype, temps);
  if (backend.storage(tc) !== backend.storage(ec)) {
    tc = asStorage(backend, tc, DeviceType.F32, temps);
    ec = asStorage(backend, ec, DeviceType.F32, temps);
  }
  const cc = condition.dtype === 'float32' ? asDtype(backend, condition, 'bool', temps) : condition;
  const outShape = tf.backend_util.assertAndGetBroadcastShape(t.shape, e.shape);
  let condStrides: number[];
  if (condition.shape.length === 1 && outShape.length > 1 && condition.shape[0] === outShape[0] && outShape[outShape.length - 1] !== condition.shape[0]) {
    condStrides = outShape.map((_, i) => (i === 0 ? 1 : 0));
  } else {
    condStrides = broadcastStrides(condition.shape, outShape);
  }
  const out = backend.makeOutput(outShape, dtype, backend.storage(tc));
  const v = coalesce(outShape, [condStrides, broadcastStrides(t.shape, outShape), broadcastStrides(e.shape, outShape)]);
  backend.native.select(backend.ptr(cc), backend.ptr(tc), backend.ptr(ec), backend.ptr(out), v.shape, v.strides[0], v.strides[1], v.strides[2], backend.width(tc));
  disposeAll(backend, temps);
  return out;
}

/** Kernels that read bfloat16-stored inputs themselves. */
const BF16 = { bf16: true };

const unaryNames = [
  'Abs', 'Neg', 'Exp', 'Expm1', 'Log', 'Log1p', 'Sqrt', 'Rsqrt', 'Square', 'Reciprocal', 'Sin', 'Cos', 'Tan', 'Asin', 'Acos', 'Atan',
  'Sinh', 'Cosh', 'Tanh', 'Asinh', 'Acosh', 'Atanh', 'Sigmoid', 'Softplus', 'Relu', 'Relu6', 'Elu', 'Selu', 'Erf', 'Floor', 'Ceil',
  'Round', 'Sign', 'IsNan', 'IsInf', 'IsFinite', 'LogicalNot',
];

const binaryNames = [
  'Add', 'Sub', 'Multiply', 'RealDiv', 'FloorDiv', 'Mod', 'Maximum', 'Minimum', 'Pow', 'SquaredDifference', 'Atan2', 'Equal', 'NotEqual',
  'Less', 'LessEqual', 'Greater', 'GreaterEqual', 'LogicalAnd', 'LogicalOr', 'LogicalXor',
];

export const elementwiseKernels: tf.KernelConfig[] = [
  ...unaryNames.map((name) => cudaKernel(name, ({ inputs, backend }) => unaryOp(backend, name, input(inputs, 'x', name)), BF16)),
  ...binaryNames.map((name) =>
    cudaKernel(name, ({ inputs, backend }) => binaryOp(backend, name, input(inputs, 'a', name), input(inputs, 'b', name)), BF16),
  ),
  cudaKernel('Step', ({ inputs, backend, attrs }) => unaryOp(backend, 'Step', input(inputs, 'x', 'Step'), numAttr(attrs, 'alpha', 'Step', 0)), BF16),
  cudaKernel(
    'LeakyRelu',
    ({ inputs, backend, attrs }) => unaryOp(backend, 'LeakyRelu', input(inputs, 'x', 'LeakyRelu'), numAttr(attrs, 'alpha', 'LeakyRelu', 0.2)),
    BF16,
  ),
  cudaKernel(
    'ClipByValue',
    ({ inputs, backend, attrs }) =>
      unaryOp(
        backend,
        'ClipByValue',
        input(inputs, 'x', 'ClipByValue'),
        numAttr(attrs, 'clipValueMin', 'ClipByValue'),
        numAttr(attrs, 'clipValueMax', 'ClipByValue'),
      ),
    BF16,
  ),
  cudaKernel('Prelu', ({ inputs, backend }) => binaryOp(backend, 'Prelu', input(inputs, 'x', 'Prelu'), input(inputs, 'alpha', 'Prelu')), BF16),
  cudaKernel(
    'Select',
    ({ inputs, backend }) => selectOp(backend, input(inputs, 'condition', 'Select'), input(inputs, 't', 'Select'), input(inputs, 'e', 'Select')),
    BF16,
  ),
  cudaKernel('Cast', ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', 'Cast');
    const dtype = dtypeAttr(attrs, 'dtype');
    if (!dtype) throw new BackendError(`Cast: backend 'cuda' casts to float32, int32 or bool, not ${String(attrs.dtype)}`);
    if (dtype === x.dtype) {
      backend.incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype };
    }
    return castOp(backend, x, dtype);
  }, BF16),
  cudaKernel('Fill', ({ backend, attrs }) => {
    const shape = attrs.shape;
    const dtype = attrs.dtype === undefined ? 'float32' : dtypeAttr(attrs, 'dtype');
    if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number')) throw new BackendError('Fill: attribute shape must be a list of numbers');
    if (!dtype) throw new BackendError(`Fill: unsupported dtype ${String(attrs.dtype)}`);
    const value = attrs.value;
    return fillOp(backend, shape as number[], dtype, typeof value === 'boolean' ? Number(value) : numAttr(attrs, 'value', 'Fill'));
  }),
  cudaKernel(
    'ZerosLike',
    ({ inputs, backend }) => {
      const x = input(inputs, 'x', 'ZerosLike');
      return fillOp(backend, x.shape, x.dtype, 0);
    },
    BF16,
  ),
  cudaKernel(
    'OnesLike',
    ({ inputs, backend }) => {
      const x = input(inputs, 'x', 'OnesLike');
      return fillOp(backend, x.shape, x.dtype, 1);
    },
    BF16,
  ),
  cudaKernel('AddN', ({ inputs, backend }) => {
    const xs = inputList(inputs);
    if (xs.length === 0) throw new BackendError('AddN: no inputs');
    if (xs.length === 1) {
      backend.incRef(xs[0].dataId);
      return { dataId: xs[0].dataId, shape: xs[0].shape, dtype: xs[0].dtype };
    }
    let acc = binaryOp(backend, 'Add', xs[0], xs[1]);
    for (let i = 2; i < xs.length; i++) {
      const next = binaryOp(backend, 'Add', acc, xs[i]);
      backend.disposeIntermediate(acc);
      acc = next;
    }
    return acc;
  }, BF16),
];
