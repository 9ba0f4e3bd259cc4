import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../../errors.js';
import { KERNELS } from '../../kernels/registry.js';
import type { CudaBackend } from '../backend.js';
import { DeviceType } from '../native.js';
import { asDtype, asStorage, disposeAll } from './elementwise.js';
import { addBias, applyActivation } from './matmul.js';
import { transposeOp } from './shape.js';
import { boolAttr, cudaKernel, input, numAttr, numsAttr, sizeOf, strAttr } from './util.js';

/** Convolutions read bfloat16-stored inputs themselves. */
const BF16 = { bf16: true };

type PadSpec = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;

function padAttr(attrs: tf.NamedAttrMap, kernel: string): PadSpec {
  const p: unknown = attrs.pad;
  if (p === 'same' || p === 'valid' || typeof p === 'number') return p;
  if (Array.isArray(p) && p.length === 4 && p.every((q) => Array.isArray(q) && q.length === 2)) return p as tf.backend_util.ExplicitPadding;
  throw new BackendError(`${kernel}: unsupported pad ${JSON.stringify(p)}`);
}

function roundingAttr(attrs: tf.NamedAttrMap): 'floor' | 'round' | 'ceil' | undefined {
  const r = strAttr(attrs, 'dimRoundingMode');
  return r === 'floor' || r === 'round' || r === 'ceil' ? r : undefined;
}

function pair(v: number[]): [number, number] {
  return v.length === 1 ? [v[0], v[0]] : [v[0], v[1]];
}

function triple(v: number[]): [number, number, number] {
  return v.length === 1 ? [v[0], v[0], v[0]] : [v[0], v[1], v[2]];
}

/**
 * The filter [kd, kh, kw, C, O] (or [kh, kw, C, O]) as cuDNN takes it for channels-last data:
 * [O, kd, kh, kw, C] in bfloat16, made once per filter buffer and freed with it.
 */
function cudnnFilter(backend: CudaBackend, filter: tf.TensorInfo): tf.TensorInfo {
  return backend.derivedOf(filter, 'cudnn-ktrsc-bf16', () => {
    const temps: tf.TensorInfo[] = [];
    const wf = asDtype(backend, filter, 'float32', temps);
    const rank = filter.shape.length;
    const moved = transposeOp(backend, wf, [rank - 1, ...Array.from({ length: rank - 1 }, (_, i) => i)]);
    const out = backend.convert(moved, DeviceType.BF16);
    backend.disposeIntermediate(moved);
    disposeAll(backend, temps);
    return out;
  });
}

/** What is added to a convolution's result: bias [O] and a residual of the output's shape. */
interface Epilogue {
  bias?: tf.TensorInfo;
  residual?: tf.TensorInfo;
}

/**
 * Channels-last convolution + epilogue. x: [N, D, H, W, C], filter [kd, kh, kw, C, O], result [N, od, oh, ow, O]
 * = conv + bias + residual. In bf16 mode through cuDNN (bfloat16, fp32 accumulation, a bfloat16 result, the
 * epilogue summed in fp32 and rounded once, inside cuDNN's kernel where it can) when it takes the geometry and
 * the sum stays bf16; otherwise float32 im2col + cuBLAS SGEMM, then the epilogue.
 */
function convNative(backend: CudaBackend, x: tf.TensorInfo, filter: tf.TensorInfo, outShape: number[], geometry: number[], epilogue: Epilogue = {}): tf.TensorInfo {
  const { bias, residual } = epilogue;
  if (outShape.some((d) => d <= 0)) return backend.makeOutput(outShape.map((d) => Math.max(0, d)), 'float32');
  const temps: tf.TensorInfo[] = [];
  if (backend.bf16Mode() && x.dtype === 'float32' && filter.dtype === 'float32') {
    const xb = asStorage(backend, x, DeviceType.BF16, temps);
    const out = backend.makeOutput(outShape, 'float32', DeviceType.BF16);
    // The sum is bf16 when the residual is (convEpilogue's rule); a float32 residual takes the epilogue below.
    const inside = !residual || backend.storage(residual) === DeviceType.BF16;
    const b = inside && bias ? bias : undefined;
    const r = inside ? residual : undefined;
    const why = backend.native.convCudnn(
      backend.ptr(xb),
      backend.ptr(cudnnFilter(backend, filter)),
      backend.ptr(out),
      geometry,
      DeviceType.BF16,
      b ? backend.ptr(b) : 0,
      b ? backend.storage(b) : DeviceType.F32,
      r ? backend.ptr(r) : 0,
    );
    disposeAll(backend, temps);
    if (why === '') return inside ? out : convEpilogue(backend, out, bias, residual);
    backend.disposeIntermediate(out);
    backend.warnOnce(`conv-${why}`, `cuDNN did not take a convolution (${why}); such convolutions run in float32`);
  }
  const xf = asStorage(backend, asDtype(backend, x, 'float32', temps), DeviceType.F32, temps);
  const wf = asStorage(backend, asDtype(backend, filter, 'float32', temps), DeviceType.F32, temps);
  const out = backend.makeOutput(outShape, 'float32');
  backend.native.conv(backend.ptr(xf), backend.ptr(wf), backend.ptr(out), geometry);
  disposeAll(backend, temps);
  return convEpilogue(backend, out, bias, residual);
}

/**
 * y + bias + residual, in place when the sum keeps y's storage (bf16 when y and the residual are, as
 * an elementwise result; the bias, a weight, does not decide it).
 */
function convEpilogue(backend: CudaBackend, y: tf.TensorInfo, bias?: tf.TensorInfo, residual?: tf.TensorInfo): tf.TensorInfo {
  if (!bias && !residual) return y;
  const cols = y.shape[y.shape.length - 1];
  const rows = cols === 0 ? 0 : sizeOf(y.shape) / cols;
  const storage = backend.followStorage(residual ? [y, residual] : [y]);
  const out = storage === backend.storage(y) ? y : backend.makeOutput(y.shape, 'float32', storage);
  const ptrOf = (t: tf.TensorInfo | undefined) => (t ? backend.ptr(t) : 0);
  const typeOf = (t: tf.TensorInfo | undefined) => (t ? backend.storage(t) : storage);
  backend.native.biasResidual(backend.ptr(y), ptrOf(bias), ptrOf(residual), backend.ptr(out), rows, cols, backend.storage(y), typeOf(bias), typeOf(residual), storage);
  if (out !== y) backend.disposeIntermediate(y);
  return out;
}

/** Conv2D in NHWC (NCHW inputs are transposed around it). x: [N, H, W, C], filter [kh, kw, C, O]. */
export function conv2dOp(backend: CudaBackend, x: tf.TensorInfo, filter: tf.TensorInfo, attrs: tf.NamedAttrMap, kernel: string): tf.TensorInfo {
  if (x.shape.length !== 4 || filter.shape.length !== 4) throw new BackendError(`${kernel}: expected x [N,H,W,C] and filter [kh,kw,C,O], got [${x.shape}] and [${filter.shape}]`);
  const format = strAttr(attrs, 'dataFormat', 'NHWC') === 'NCHW' ? 'channelsFirst' : 'channelsLast';
  const info = tf.backend_util.computeConv2DInfo(
    [x.shape[0], x.shape[1], x.shape[2], x.shape[3]],
    [filter.shape[0], filter.shape[1], filter.shape[2], filter.shape[3]],
    pair(numsAttr(attrs, 'strides', kernel)),
    pair(attrs.dilations === undefined ? [1] : numsAttr(attrs, 'dilations', kernel)),
    padAttr(attrs, kernel),
    roundingAttr(attrs),
    false,
    format,
  );
  const src = format === 'channelsFirst' ? transposeOp(backend, x, [0, 2, 3, 1]) : x;
  const nhwc = [info.batchSize, info.outHeight, info.outWidth, info.outChannels];
  const geometry = [
    info.batchSize, 1, info.inHeight, info.inWidth, info.inChannels,
    1, info.filterHeight, info.filterWidth, info.outChannels,
    1, info.outHeight, info.outWidth,
    1, info.strideHeight, info.strideWidth,
    0, info.padInfo.top, info.padInfo.left,
    1, info.dilationHeight, info.dilationWidth,
  ];
  const y = convNative(backend, src, filter, nhwc, geometry);
  if (src !== x) backend.disposeIntermediate(src);
  if (format === 'channelsLast') return y;
  const yt = transposeOp(backend, y, [0, 3, 1, 2]);
  backend.disposeIntermediate(y);
  return yt;
}

function resizeKernel(name: 'ResizeNearestNeighbor' | 'ResizeBilinear'): tf.KernelConfig {
  return cudaKernel(name, ({ inputs, backend, attrs }) => {
    const images = input(inputs, 'images', name);
    if (images.shape.length !== 4) throw new BackendError(`${name}: images must be [N, H, W, C], got [${images.shape}]`);
    const [batch, inH, inW, ch] = images.shape;
    const [outH, outW] = pair(numsAttr(attrs, 'size', name));
    const alignCorners = boolAttr(attrs, 'alignCorners', false);
    const halfPixel = boolAttr(attrs, 'halfPixelCenters', false);
    const effIn = (n: number, o: number) => (alignCorners && o > 1 ? n - 1 : n);
    const effOut = (o: number) => (alignCorners && o > 1 ? o - 1 : o);
    const scaleH = effIn(inH, outH) / effOut(outH);
    const scaleW = effIn(inW, outW) / effOut(outW);
    if (name === 'ResizeNearestNeighbor') {
      const out = backend.makeOutput([batch, outH, outW, ch], images.dtype, backend.storage(images));
      const w = backend.width(images);
      backend.native.resizeNearest(backend.ptr(images), backend.ptr(out), batch, inH, inW, ch, outH, outW, scaleH, scaleW, alignCorners, halfPixel, w);
      return out;
    }
    const temps: tf.TensorInfo[] = [];
    const src = asStorage(backend, asDtype(backend, images, 'float32', temps), DeviceType.F32, temps);
    const out = backend.makeOutput([batch, outH, outW, ch], 'float32');
    backend.native.resizeBilinear(backend.ptr(src), backend.ptr(out), batch, inH, inW, ch, outH, outW, scaleH, scaleW, halfPixel);
    disposeAll(backend, temps);
    return out;
  }, BF16);
}

export const convKernels: tf.KernelConfig[] = [
  cudaKernel('Conv2D', ({ inputs, backend, attrs }) => conv2dOp(backend, input(inputs, 'x', 'Conv2D'), input(inputs, 'filter', 'Conv2D'), attrs, 'Conv2D'), BF16),
  cudaKernel('FusedConv2D', ({ inputs, backend, attrs }) => {
    const y = conv2dOp(backend, input(inputs, 'x', 'FusedConv2D'), input(inputs, 'filter', 'FusedConv2D'), attrs, 'FusedConv2D');
    if (inputs.bias && strAttr(attrs, 'dataFormat', 'NHWC') === 'NCHW') {
      throw new BackendError("FusedConv2D: a bias with dataFormat NCHW is not supported on backend 'cuda'");
    }
    return applyActivation(
      backend,
      addBias(backend, y, inputs.bias),
      strAttr(attrs, 'activation', 'linear') ?? 'linear',
      inputs.preluActivationWeights,
      numAttr(attrs, 'leakyreluAlpha', 'FusedConv2D', 0.2),
    );
  }, BF16),
  cudaKernel('Conv3D', ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', 'Conv3D');
    const filter = input(inputs, 'filter', 'Conv3D');
    if (x.shape.length !== 5 || filter.shape.length !== 5) {
      throw new BackendError(`Conv3D: expected x [N,D,H,W,C] and filter [kd,kh,kw,C,O], got [${x.shape}] and [${filter.shape}]`);
    }
    const pad = padAttr(attrs, 'Conv3D');
    if (typeof pad === 'object') throw new BackendError('Conv3D: explicit padding lists are not supported; pad the input first');
    const info = tf.backend_util.computeConv3DInfo(
      [x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4]],
      [filter.shape[0], filter.shape[1], filter.shape[2], filter.shape[3], filter.shape[4]],
      triple(numsAttr(attrs, 'strides', 'Conv3D')),
      triple(attrs.dilations === undefined ? [1] : numsAttr(attrs, 'dilations', 'Conv3D')),
      pad,
    );
    const geometry = [
      info.batchSize, info.inDepth, info.inHeight, info.inWidth, info.inChannels,
      info.filterDepth, info.filterHeight, info.filterWidth, info.outChannels,
      info.outDepth, info.outHeight, info.outWidth,
      info.strideDepth, info.strideHeight, info.strideWidth,
      info.padInfo.front, info.padInfo.top, info.padInfo.left,
      info.dilationDepth, info.dilationHeight, info.dilationWidth,
    ];
    return convNative(backend, x, filter, [info.batchSize, info.outDepth, info.outHeight, info.outWidth, info.outChannels], geometry);
  }, BF16),
  // x: [N, D, H, W, C], filter [kd, kh, kw, C, O], bias? [O], residual? [N, od, oh, ow, O]; symmetric zero pads [ph, pw]
  // on H and W, none in time → conv + bias + residual.
  cudaKernel(
    KERNELS.conv3d,
    ({ inputs, backend, attrs }) => {
      const x = input(inputs, 'x', KERNELS.conv3d);
      const filter = input(inputs, 'filter', KERNELS.conv3d);
      const [sd, sh, sw] = triple(numsAttr(attrs, 'strides', KERNELS.conv3d));
      const [ph, pw] = pair(numsAttr(attrs, 'pads', KERNELS.conv3d));
      if (x.shape.length !== 5 || filter.shape.length !== 5 || filter.shape[3] !== x.shape[4]) {
        throw new BackendError(`${KERNELS.conv3d}: expected x [N,D,H,W,C] and filter [kd,kh,kw,C,O], got [${x.shape}] and [${filter.shape}]`);
      }
      const [N, D, H, W, C] = x.shape;
      const [kd, kh, kw, , O] = filter.shape;
      const od = Math.floor((D - kd) / sd) + 1;
      const oh = Math.floor((H + 2 * ph - kh) / sh) + 1;
      const ow = Math.floor((W + 2 * pw - kw) / sw) + 1;
      const geometry = [N, D, H, W, C, kd, kh, kw, O, od, oh, ow, sd, sh, sw, 0, ph, pw, 1, 1, 1];
      const { bias, residual } = inputs;
      if (bias && sizeOf(bias.shape) !== O) throw new BackendError(`${KERNELS.conv3d}: bias [${bias.shape}] does not match ${O} output channels`);
      if (residual && residual.shape.join() !== [N, od, oh, ow, O].join()) {
        throw new BackendError(`${KERNELS.conv3d}: residual [${residual.shape}] does not match the output [${[N, od, oh, ow, O]}]`);
      }
      return convNative(backend, x, filter, [N, od, oh, ow, O], geometry, { bias, residual });
    },
    BF16,
  ),
  resizeKernel('ResizeNearestNeighbor'),
  resizeKernel('ResizeBilinear'),
];
