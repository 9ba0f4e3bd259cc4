import * as tf from '@tensorflow/tfjs-core';
import { shared } from '@tensorflow/tfjs-backend-cpu';
import { BackendError } from '../../errors.js';
import type { CudaBackend } from '../backend.js';
import { DeviceType } from '../native.js';
import { asDtype, asStorage, disposeAll } from './elementwise.js';
import {
  coalesce,
  cudaKernel,
  type CudaKernelFunc,
  input,
  inputList,
  numAttr,
  numsAttr,
  pairsAttr,
  sizeOf,
  storedBits,
  strAttr,
  stridesOf,
} from './util.js';

/** Shape kernels move elements whatever their storage, so they read bfloat16 buffers as they are. */
const BF16 = { bf16: true };

/** A kernel that only moves elements (its output is stored as its input). */
function moveKernel(name: string, fn: CudaKernelFunc): tf.KernelConfig {
  return cudaKernel(name, fn, BF16);
}

/** The same buffer under another shape (no copy). */
export function reshapeOp(backend: CudaBackend, x: tf.TensorInfo, shape: number[]): tf.TensorInfo {
  const size = sizeOf(x.shape);
  const $shape = tf.util.inferFromImplicitShape(shape, size);
  if (sizeOf($shape) !== size) throw new BackendError(`Reshape: cannot reshape [${x.shape}] (${size} elements) to [${shape}]`);
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: $shape, dtype: x.dtype };
}

/**
 * A contiguous copy of a strided view of x, stored as x is: element i of `shape` (row-major) is
 * read from x[offset + Σ coord_d · strides_d]. Transpose, slice, tile, broadcast and reverse are all this.
 */
export function viewCopy(backend: CudaBackend, x: tf.TensorInfo, shape: number[], strides: number[], offset: number, outShape = shape): tf.TensorInfo {
  const out = backend.makeOutput(outShape, x.dtype, backend.storage(x));
  if (sizeOf(shape) === 0) return out;
  const v = coalesce(shape, [strides]);
  if (v.shape.length > 12) throw new BackendError(`strided copy of rank ${v.shape.length} (at most 12 after merging dimensions)`);
  backend.native.copyStrided(backend.ptr(x), backend.ptr(out), v.shape, v.strides[0], offset, backend.width(x));
  return out;
}

export function transposeOp(backend: CudaBackend, x: tf.TensorInfo, perm: number[]): tf.TensorInfo {
  const xs = stridesOf(x.shape);
  return viewCopy(backend, x, perm.map((p) => x.shape[p]), perm.map((p) => xs[p]), 0);
}

export function sliceOp(backend: CudaBackend, x: tf.TensorInfo, begin: number[], size: number[]): tf.TensorInfo {
  const xs = stridesOf(x.shape);
  const offset = begin.reduce((acc, b, i) => acc + b * xs[i], 0);
  return viewCopy(backend, x, size, xs, offset);
}

/**
 * Concatenation along `axis` of tensors that agree on every other axis; stored as bfloat16 when
 * every part is, else as float32.
 */
export function concatOp(backend: CudaBackend, xs: tf.TensorInfo[], axis: number): tf.TensorInfo {
  const dtype = xs.map((t) => t.dtype).reduce((a, b) => tf.upcastType(a, b));
  const outShape = tf.backend_util.computeOutShape(xs.map((t) => t.shape), axis);
  const storage = dtype === 'float32' && xs.every((t) => backend.storage(t) === DeviceType.BF16) ? DeviceType.BF16 : undefined;
  const out = backend.makeOutput(outShape, dtype, storage);
  const rows = sizeOf(outShape.slice(0, axis));
  const outCols = sizeOf(outShape.slice(axis));
  let colOffset = 0;
  const temps: tf.TensorInfo[] = [];
  for (const t of xs) {
    const cols = sizeOf(t.shape.slice(axis));
    if (cols > 0 && rows > 0) {
      const src = asStorage(backend, asDtype(backend, t, dtype, temps), backend.storage(out), temps);
      backend.native.copyBlock(backend.ptr(src), backend.ptr(out), rows, cols, cols, outCols, 0, colOffset, backend.width(out));
    }
    colOffset += cols;
  }
  disposeAll(backend, temps);
  return out;
}

function normAxis(axis: number, rank: number, kernel: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new BackendError(`${kernel}: axis ${axis} is out of range for rank ${rank}`);
  return a;
}

function padKernel(kernelName: string, mode: (attrs: tf.NamedAttrMap) => number): tf.KernelConfig {
  return moveKernel(kernelName, ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', kernelName);
    const paddings = pairsAttr(attrs, 'paddings', kernelName);
    if (paddings.length !== x.shape.length) throw new BackendError(`${kernelName}: ${paddings.length} paddings for a rank-${x.shape.length} tensor`);
    const m = mode(attrs);
    const outShape = x.shape.map((d, i) => paddings[i][0] + d + paddings[i][1]);
    const storage = backend.storage(x);
    const out = backend.makeOutput(outShape, x.dtype, storage);
    if (sizeOf(outShape) === 0) return out;
    const value = m === 0 ? numAttr(attrs, 'constantValue', kernelName, 0) : 0;
    if (x.shape.length === 0) {
      backend.native.copyBlock(backend.ptr(x), backend.ptr(out), 1, 1, 1, 1, 0, 0, backend.width(x));
      return out;
    }
    const before = paddings.map((p) => p[0]);
    backend.native.pad(backend.ptr(x), backend.ptr(out), x.shape, outShape, before, m, storedBits(value, x.dtype, storage), backend.width(x));
    return out;
  });
}

function splitAlong(backend: CudaBackend, x: tf.TensorInfo, axis: number, sizes: number[]): tf.TensorInfo[] {
  const begin = x.shape.map(() => 0);
  return sizes.map((s) => {
    const size = x.shape.slice();
    size[axis] = s;
    const t = sliceOp(backend, x, begin, size);
    begin[axis] += s;
    return t;
  });
}

export const shapeKernels: tf.KernelConfig[] = [
  moveKernel('Reshape', ({ inputs, backend, attrs }) => reshapeOp(backend, input(inputs, 'x', 'Reshape'), numsAttr(attrs, 'shape', 'Reshape'))),
  moveKernel('ExpandDims', ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'input', 'ExpandDims');
    const rank = x.shape.length;
    let dim = numAttr(attrs, 'dim', 'ExpandDims');
    if (dim < 0) dim += rank + 1;
    const shape = x.shape.slice();
    shape.splice(dim, 0, 1);
    return reshapeOp(backend, x, shape);
  }),
  moveKernel('Identity', ({ inputs, backend }) => {
    const x = input(inputs, 'x', 'Identity');
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  }),
  moveKernel('Transpose', ({ inputs, backend, attrs }) => transposeOp(backend, input(inputs, 'x', 'Transpose'), numsAttr(attrs, 'perm', 'Transpose'))),
  moveKernel('Slice', ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', 'Slice');
    const [begin, size] = tf.slice_util.parseSliceParams(x, numsAttr(attrs, 'begin', 'Slice'), numsAttr(attrs, 'size', 'Slice'));
    tf.slice_util.assertParamsValid(x, begin, size);
    return sliceOp(backend, x, begin, size);
  }),
  moveKernel('StridedSlice', ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', 'StridedSlice');
    const info = tf.slice_util.sliceInfo(
      x.shape,
      numsAttr(attrs, 'begin', 'StridedSlice'),
      numsAttr(attrs, 'end', 'StridedSlice'),
      numsAttr(attrs, 'strides', 'StridedSlice'),
      numAttr(attrs, 'beginMask', 'StridedSlice', 0),
      numAttr(attrs, 'endMask', 'StridedSlice', 0),
      numAttr(attrs, 'ellipsisMask', 'StridedSlice', 0),
      numAttr(attrs, 'newAxisMask', 'StridedSlice', 0),
      numAttr(attrs, 'shrinkAxisMask', 'StridedSlice', 0),
    );
    if (info.isIdentity) return reshapeOp(backend, x, info.finalShape);
    const xs = stridesOf(x.shape);
    const shape = tf.slice_util.computeOutShape(info.begin, info.end, info.strides);
    const offset = info.begin.reduce((acc, b, i) => acc + b * xs[i], 0);
    return viewCopy(backend, x, shape, info.strides.map((s, i) => s * xs[i]), offset, info.finalShape);
  }),
  moveKernel('Concat', ({ inputs, backend, attrs }) => {
    const xs = inputList(inputs);
    if (xs.length === 0) throw new BackendError('Concat: no inputs');
    const axis = normAxis(numAttr(attrs, 'axis', 'Concat'), xs[0].shape.length, 'Concat');
    tf.backend_util.assertParamsConsistent(xs.map((t) => t.shape), axis);
    return concatOp(backend, xs, axis);
  }),
  moveKernel('Pack', ({ inputs, backend, attrs }) => {
    const xs = inputList(inputs);
    if (xs.length === 0) throw new BackendError('Pack: no inputs');
    const axis = normAxis(numAttr(attrs, 'axis', 'Pack', 0), xs[0].shape.length + 1, 'Pack');
    const expanded = xs.map((t) => {
      const shape = t.shape.slice();
      shape.splice(axis, 0, 1);
      return reshapeOp(backend, t, shape);
    });
    const out = concatOp(backend, expanded, axis);
    disposeAll(backend, expanded);
    return out;
  }),
  moveKernel('Unpack', ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'value', 'Unpack');
    const axis = normAxis(numAttr(attrs, 'axis', 'Unpack', 0), x.shape.length, 'Unpack');
    const outShape = x.shape.filter((_, i) => i !== axis);
    return splitAlong(backend, x, axis, Array.from({ length: x.shape[axis] }, () => 1)).map((t) => {
      const r = reshapeOp(backend, t, outShape);
      backend.disposeIntermediate(t);
      return r;
    });
  }),
  moveKernel('SplitV', ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', 'SplitV');
    const axis = normAxis(numAttr(attrs, 'axis', 'SplitV', 0), x.shape.length, 'SplitV');
    const split = attrs.numOrSizeSplits;
    const spec = typeof split === 'number' ? split : numsAttr(attrs, 'numOrSizeSplits', 'SplitV');
    return splitAlong(backend, x, axis, tf.backend_util.prepareSplitSize(x, spec, axis));
  }),
  padKernel('PadV2', () => 0),
  padKernel('MirrorPad', (attrs) => (strAttr(attrs, 'mode', 'reflect') === 'symmetric' ? 2 : 1)),
  moveKernel('Tile', ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', 'Tile');
    const reps = numsAttr(attrs, 'reps', 'Tile');
    if (reps.length !== x.shape.length) throw new BackendError(`Tile: ${reps.length} reps for a rank-${x.shape.length} tensor`);
    const xs = stridesOf(x.shape);
    const shape = x.shape.flatMap((d, i) => [reps[i], d]);
    const strides = xs.flatMap((s) => [0, s]);
    return viewCopy(backend, x, shape, strides, 0, x.shape.map((d, i) => d * reps[i]));
  }),
  moveKernel('BroadcastTo', ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', 'BroadcastTo');
    const shape = numsAttr(attrs, 'shape', 'BroadcastTo');
    const xs = stridesOf(x.shape);
    const off = shape.length - x.shape.length;
    return viewCopy(backend, x, shape, shape.map((_, i) => (i < off || x.shape[i - off] === 1 ? 0 : xs[i - off])), 0);
  }),
  moveKernel('Reverse', ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', 'Reverse');
    const dims = new Set(numsAttr(attrs, 'dims', 'Reverse').map((d) => normAxis(d, x.shape.length, 'Reverse')));
    const xs = stridesOf(x.shape);
    const offset = x.shape.reduce((acc, d, i) => acc + (dims.has(i) ? (d - 1) * xs[i] : 0), 0);
    return viewCopy(backend, x, x.shape, xs.map((s, i) => (dims.has(i) ? -s : s)), offset);
  }),
  moveKernel('GatherV2', ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', 'GatherV2');
    const indices = input(inputs, 'indices', 'GatherV2');
    const axis = normAxis(numAttr(attrs, 'axis', 'GatherV2', 0), x.shape.length, 'GatherV2');
    let batchDims = numAttr(attrs, 'batchDims', 'GatherV2', 0);
    if (batchDims < 0) batchDims += indices.shape.length;
    const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x, indices, axis, batchDims);
    const out = backend.makeOutput(info.outputShape, x.dtype, backend.storage(x));
    const temps: tf.TensorInfo[] = [];
    const idx = asDtype(backend, indices, 'int32', temps);
    const numIdx = info.batchSize > 0 ? sizeOf(indices.shape) / info.batchSize : 0;
    backend.native.gather(
      backend.ptr(x),
      backend.ptr(idx),
      backend.ptr(out),
      info.batchSize,
      info.outerSize,
      numIdx,
      info.dimSize,
      info.sliceSize,
      backend.width(x),
    );
    disposeAll(backend, temps);
    return out;
  }),
  cudaKernel('Range', ({ backend, attrs }) => {
    const dtype = attrs.dtype === 'int32' ? 'int32' : 'float32';
    const values = shared.rangeImpl(numAttr(attrs, 'start', 'Range'), numAttr(attrs, 'stop', 'Range'), numAttr(attrs, 'step', 'Range', 1), dtype);
    return backend.makeTensorInfo([values.length], dtype, values);
  }),
  cudaKernel('LinSpace', ({ backend, attrs }) => {
    const values = shared.linSpaceImpl(numAttr(attrs, 'start', 'LinSpace'), numAttr(attrs, 'stop', 'LinSpace'), numAttr(attrs, 'num', 'LinSpace'));
    return backend.makeTensorInfo([values.length], 'float32', values);
  }),
  cudaKernel('OneHot', ({ inputs, backend, attrs }) => {
    const indices = input(inputs, 'indices', 'OneHot');
    const depth = numAttr(attrs, 'depth', 'OneHot');
    const onValue = numAttr(attrs, 'onValue', 'OneHot', 1);
    const offValue = numAttr(attrs, 'offValue', 'OneHot', 0);
    const dtype = attrs.dtype === 'float32' ? 'float32' : 'int32';
    const idx = backend.readSync(indices.dataId) as ArrayLike<number>;
    const values = dtype === 'float32' ? new Float32Array(idx.length * depth) : new Int32Array(idx.length * depth);
    values.fill(offValue);
    for (let i = 0; i < idx.length; i++) if (idx[i] >= 0 && idx[i] < depth) values[i * depth + idx[i]] = onValue;
    return backend.makeTensorInfo([...indices.shape, depth], dtype, values);
  }),
];
