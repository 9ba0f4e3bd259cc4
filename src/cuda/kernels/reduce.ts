import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../../errors.js';
import { deviceType, type CudaBackend } from '../backend.js';
import { asDtype, disposeAll } from './elementwise.js';
import { transposeOp } from './shape.js';
import { boolAttr, cudaKernel, input, numAttr, sizeOf } from './util.js';

/** The reduced axes of an attribute (number, list, or absent = all). */
function axesOf(attrs: tf.NamedAttrMap, shape: number[]): number[] {
  const a: unknown = attrs.axis ?? attrs.reductionIndices;
  const spec = typeof a === 'number' ? a : Array.isArray(a) ? (a as number[]) : shape.map((_, i) => i);
  return tf.util.parseAxisParam(spec, shape);
}

/**
 * x moved so that `axes` are innermost: [outer, inner] with the reduced axes flattened into inner.
 * Returns the moved tensor (x itself when no transpose is needed) and the kept shape.
 */
function toRows(backend: CudaBackend, x: tf.TensorInfo, axes: number[], temps: tf.TensorInfo[]) {
  const rank = x.shape.length;
  const perm = tf.backend_util.getAxesPermutation(axes, rank);
  let src = x;
  let inner = axes;
  if (perm !== null) {
    src = transposeOp(backend, x, perm);
    temps.push(src);
    inner = tf.backend_util.getInnerMostAxes(axes.length, rank);
  }
  const [outShape, reduceShape] = tf.backend_util.computeOutAndReduceShapes(src.shape, inner);
  return { src, outShape, outer: sizeOf(outShape), inner: sizeOf(reduceShape) };
}

/** Reductions read bfloat16-stored inputs themselves. */
const BF16 = { bf16: true };

function reduceOutDtype(name: string, dtype: tf.DataType): tf.DataType {
  if (name === 'Mean') return 'float32';
  if (name === 'All' || name === 'Any') return 'bool';
  if (name === 'Sum' || name === 'Prod') return tf.sumOutType(dtype);
  return dtype;
}

/** Reduction `name` (Sum, Mean, Prod, Max, Min, All, Any) over `axes`; float results are stored as float32 (accumulated in double). */
export function reduceOp(backend: CudaBackend, name: string, x: tf.TensorInfo, axes: number[], keepDims: boolean): tf.TensorInfo {
  const op = backend.reduceOps.get(name);
  if (op === undefined) throw new BackendError(`reduction ${name} is not in the addon`);
  const temps: tf.TensorInfo[] = [];
  const { src, outShape, outer, inner } = toRows(backend, x, axes, temps);
  const outDtype = reduceOutDtype(name, x.dtype);
  const shape = keepDims ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape;
  const out = backend.makeOutput(shape, outDtype);
  backend.native.reduce(op, backend.storage(src), deviceType(outDtype), backend.ptr(src), backend.ptr(out), outer, inner);
  disposeAll(backend, temps);
  return out;
}

function reduceKernel(name: string): tf.KernelConfig {
  return cudaKernel(name, ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', name);
    return reduceOp(backend, name, x, axesOf(attrs, x.shape), boolAttr(attrs, 'keepDims', false));
  }, BF16);
}

function argKernel(name: 'ArgMax' | 'ArgMin'): tf.KernelConfig {
  return cudaKernel(name, ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', name);
    const axes = axesOf(attrs, x.shape);
    if (axes.length !== 1) throw new BackendError(`${name}: expected one axis, got [${axes}]`);
    const temps: tf.TensorInfo[] = [];
    const { src, outShape, outer, inner } = toRows(backend, x, axes, temps);
    const out = backend.makeOutput(outShape, 'int32');
    const op = backend.reduceOps.get(name === 'ArgMax' ? 'Max' : 'Min') ?? 0;
    backend.native.argReduce(op, backend.storage(src), backend.ptr(src), backend.ptr(out), outer, inner);
    disposeAll(backend, temps);
    return out;
  }, BF16);
}

function softmaxKernel(name: 'Softmax' | 'LogSoftmax', axisAttr: string): tf.KernelConfig {
  return cudaKernel(name, ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'logits', name);
    const rank = x.shape.length;
    let dim = numAttr(attrs, axisAttr, name, -1);
    if (dim < 0) dim += rank;
    if (dim !== rank - 1) throw new BackendError(`${name}: only the last axis is supported, got axis ${dim} of rank ${rank}`);
    const temps: tf.TensorInfo[] = [];
    const xf = asDtype(backend, x, 'float32', temps);
    const out = backend.makeOutput(x.shape, 'float32', backend.followStorage([xf]));
    const cols = rank === 0 ? 1 : x.shape[rank - 1];
    const rows = cols === 0 ? 0 : sizeOf(x.shape) / cols;
    backend.native.softmax(backend.ptr(xf), backend.ptr(out), rows, cols, name === 'LogSoftmax', backend.storage(xf), backend.storage(out));
    disposeAll(backend, temps);
    return out;
  }, BF16);
}

export const reduceKernels: tf.KernelConfig[] = [
  ...['Sum', 'Mean', 'Prod', 'Max', 'Min', 'All', 'Any'].map(reduceKernel),
  argKernel('ArgMax'),
  argKernel('ArgMin'),
  softmaxKernel('Softmax', 'dim'),
  softmaxKernel('LogSoftmax', 'axis'),
  cudaKernel('Cumsum', ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', 'Cumsum');
    const rank = x.shape.length;
    let axis = numAttr(attrs, 'axis', 'Cumsum', 0);
    if (axis < 0) axis += rank;
    const temps: tf.TensorInfo[] = [];
    const dtype = tf.upcastType(x.dtype, 'int32');
    const src = asDtype(backend, x, dtype, temps);
    const out = backend.makeOutput(x.shape, dtype);
    const outer = sizeOf(x.shape.slice(0, axis));
    const inner = sizeOf(x.shape.slice(axis + 1));
    backend.native.cumsum(deviceType(dtype), backend.ptr(src), backend.ptr(out), outer, x.shape[axis] ?? 1, inner, boolAttr(attrs, 'exclusive', false), boolAttr(attrs, 'reverse', false));
    disposeAll(backend, temps);
    return out;
  }),
];

