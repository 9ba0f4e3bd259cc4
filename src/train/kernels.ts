/**
 * What tfjs lacks for training the Wan layers, registered on demand:
 * - a Tile gradient for any rank (tfjs-core's stops at rank 4; the VAE's nearest-neighbour
 *   upsample tiles a rank-6 tensor): tiling repeats the whole tensor along each axis, so
 *   dy reshaped to [r₀, x₀, r₁, x₁, …] summed over the r axes is dx;
 * - a Conv2D gradient whose filter part is Σ over output positions of x-patchᵀ · dy, one matMul
 *   per kernel tap (dW[i, j] = x[:, i + s·ho, j + s·wo, :]ᵀ · dy[:, ho, wo, :]); tfjs-backend-wasm
 *   has no Conv2DBackpropFilter kernel;
 * - wasm Slice and SplitV for rank > 4: tfjs-backend-wasm runs those in plain JS element by element
 *   (the VAE's [B, C, T, H, W] time slices and the gradient of its causal-cache concat); adjacent
 *   axes the slice leaves whole are merged first, so the native rank ≤ 4 kernels run.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-layers registers tfjs-core's gradients on import; they load first, so the ones below replace them.
import '@tensorflow/tfjs-layers';
import { ConfigError } from '../errors.js';
import { matMul } from '../backend/ops.js';

let registered = false;

/** Registers the kernels and gradients above (idempotent). */
export function registerTrainingKernels(): void {
  if (registered) return;
  registered = true;
  tf.registerGradient({
    kernelName: tf.Tile,
    inputsToSave: ['x'],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const [x] = saved;
      const reps = attrs.reps as number[];
      const g = Array.isArray(dy) ? dy[0] : dy;
      return {
        x: () => {
          const interleaved = x.shape.flatMap((d, i) => [reps[i], d]);
          const axes = reps.map((_, i) => 2 * i);
          return tf.reshape(tf.sum(tf.reshape(g, interleaved), axes), x.shape);
        },
      };
    },
  });
  tf.registerGradient({ kernelName: tf.Conv2D, inputsToSave: ['x', 'filter'], gradFunc: conv2dGrad });
  tf.registerGradient({ kernelName: tf.BatchMatMul, inputsToSave: ['a', 'b'], gradFunc: batchMatMulGrad });
  registerWasmSlice();
  registerWasmSplitV();
}

// Conv2D gradient, NHWC, dilation 1. x: [N, H, W, Cin], filter: [kh, kw, Cin, Cout], dy: [N, Ho, Wo, Cout]
function conv2dGrad(dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap): Record<string, () => tf.Tensor> {
  const [x4, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
  const g = (Array.isArray(dy) ? dy[0] : dy) as tf.Tensor4D;
  const { strides, pad, dataFormat, dilations, dimRoundingMode } = attrs as unknown as {
    strides: number | [number, number];
    pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
    dataFormat: 'NHWC' | 'NCHW';
    dilations: number | [number, number];
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  if (dataFormat !== 'NHWC' || !tf.backend_util.tupleValuesAreOne(dilations)) {
    throw new ConfigError(`training conv2d supports NHWC without dilation; got dataFormat ${dataFormat}, dilations ${String(dilations)}`);
  }
  const info = tf.backend_util.computeConv2DInfo(x4.shape, filter.shape, strides, dilations, pad, dimRoundingMode, false, 'channelsLast');
  return {
    x: () => tf.tidy(() => {
      if (info.strideHeight > 1 || info.strideWidth > 1) {
        return tf.conv2dTranspose(g, filter, x4.shape, [info.strideHeight, info.strideWidth], pad === 'same' || pad === 'valid' ? pad : explicitPads(info));
      }
      // stride 1: dx = conv2d(dy padded by k − 1, filter flipped in space with in/out swapped), cropped to x
      const { filterHeight: kh, filterWidth: kw, padInfo } = info;
      const flipped = tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]);
      const full = tf.conv2d(tf.pad(g, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]]), flipped as tf.Tensor4D, 1, 'valid');
      return tf.slice(full, [0, padInfo.top, padInfo.left, 0], x4.shape);
    }),
    filter: () => tf.tidy(() => {
      const { top, left, bottom, right } = info.padInfo;
      const xp = top || left || bottom || right ? tf.pad(x4, [[0, 0], [top, bottom], [left, right], [0, 0]]) : x4;
      const { outHeight: Ho, outWidth: Wo, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
      // As one convolution with the batch as channels: x [Cin, H, W, N] ⊛ dy [Ho, Wo, N, Cout] dilated by the
      // stride, cropped to [Cin, kh, kw, Cout]
      const xc = tf.transpose(xp, [3, 1, 2, 0]) as tf.Tensor4D;
      const dyc = tf.transpose(g, [1, 2, 0, 3]) as tf.Tensor4D;
      const spanH = kh + sh * (Ho - 1);
      const spanW = kw + sw * (Wo - 1);
      const crop = tf.slice(xc, [0, 0, 0, 0], [-1, Math.min(spanH, xc.shape[1]), Math.min(spanW, xc.shape[2]), -1]);
      const dw = tf.conv2d(crop, dyc, 1, 'valid', 'NHWC', [sh, sw]);
      return tf.transpose(dw, [1, 2, 0, 3]);
    }),
  };
}

// C = op(A)·op(B): dA and dB as tfjs-core defines them, through ops.matMul (transposed copies on wasm).
function batchMatMulGrad(dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap): Record<string, () => tf.Tensor> {
  const [a, b] = saved;
  const g = Array.isArray(dy) ? dy[0] : dy;
  const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
  if (!transposeA && !transposeB) return { a: () => matMul(g, b, false, true), b: () => matMul(a, g, true, false) };
  if (!transposeA && transposeB) return { a: () => matMul(g, b, false, false), b: () => matMul(g, a, true, false) };
  if (transposeA && !transposeB) return { a: () => matMul(b, g, false, true), b: () => matMul(a, g, false, false) };
  return { a: () => matMul(b, g, true, true), b: () => matMul(g, a, true, true) };
}

function explicitPads(info: tf.backend_util.Conv2DInfo): tf.backend_util.ExplicitPadding {
  const { top, bottom, left, right } = info.padInfo;
  return [[0, 0], [top, bottom], [left, right], [0, 0]];
}

/**
 * Merges runs of axes a slice keeps whole into the axis before them:
 * shape [2, 3, 4, 5] sliced at begin [0, 1, 0, 0] size [2, 1, 4, 5] → [2, 3, 20], begin [0, 1, 0], size [2, 1, 20].
 */
export function collapseSlice(shape: readonly number[], begin: readonly number[], size: readonly number[]): { shape: number[]; begin: number[]; size: number[] } {
  const s = [shape[0]];
  const b = [begin[0]];
  const z = [size[0]];
  for (let a = 1; a < shape.length; a++) {
    const whole = begin[a] === 0 && size[a] === shape[a];
    const last = s.length - 1;
    // A whole axis folds into the previous one: rows [b, b + z) of it × all of a are one run [b·d, (b + z)·d).
    if (whole) {
      b[last] *= shape[a];
      z[last] *= shape[a];
      s[last] *= shape[a];
    } else {
      s.push(shape[a]);
      b.push(begin[a]);
      z.push(size[a]);
    }
  }
  return { shape: s, begin: b, size: z };
}

/** Replaces the wasm backend's kernel `name` by `wrap(its own kernel function)`, if wasm is loaded. */
function wrapWasmKernel(name: string, wrap: (original: tf.KernelFunc) => tf.KernelFunc): void {
  const original = tf.getKernel(name, 'wasm');
  if (!original) return;
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: wrap(original.kernelFunc) });
}

function registerWasmSlice(): void {
  wrapWasmKernel('Slice', (original) => ({ inputs, attrs, backend }) => {
    const x = inputs.x as tf.TensorInfo;
    if (x.shape.length <= 4) return original({ inputs, attrs, backend });
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs!.begin as number[], attrs!.size as number[]);
    const c = collapseSlice(x.shape, begin, size);
    if (c.shape.length > 4) return original({ inputs, attrs, backend });
    const out = original({ inputs: { x: { ...x, shape: c.shape } }, attrs: { begin: c.begin, size: c.size }, backend }) as tf.TensorInfo;
    return { ...out, shape: size };
  });
}

function registerWasmSplitV(): void {
  wrapWasmKernel('SplitV', (original) => ({ inputs, attrs, backend }) => {
    const x = inputs.x as tf.TensorInfo;
    if (x.shape.length <= 3) return original({ inputs, attrs, backend });
    // [..pre, d, ..post] → [Π pre, d, Π post], split on axis 1
    const axis = tf.util.parseAxisParam(attrs!.axis as number, x.shape)[0];
    const pre = x.shape.slice(0, axis).reduce((a, d) => a * d, 1);
    const post = x.shape.slice(axis + 1).reduce((a, d) => a * d, 1);
    const outs = original({ inputs: { x: { ...x, shape: [pre, x.shape[axis], post] } }, attrs: { ...attrs, axis: 1 }, backend }) as tf.TensorInfo[];
    return outs.map((o) => ({ ...o, shape: x.shape.map((d, a) => (a === axis ? o.shape[1] : d)) }));
  });
}
