/**
 * What tfjs lacks for training the Wan layers, registered on demand:
 * - a Tile gradient for any rank (tfjs-core's stops at rank 4): tiling x: [x₀, x₁, …] by reps
 *   [r₀, r₁, …] repeats the whole tensor along each axis, so dy reshaped to [r₀, x₀, r₁, x₁, …]
 *   summed over the r axes is dx;
 * - a Conv2D gradient computed with convolutions: the filter part
 *   dW[i, j, c, o] = Σ x[n, i + s·ho, j + s·wo, c] · dy[n, ho, wo, o] as one conv of x (batch as
 *   channels) with dy (dilated by the stride), the input part at stride 1 as a conv of dy with the
 *   flipped filter (tfjs-backend-wasm has no Conv2DBackpropFilter and a slow Conv2DBackpropInput);
 * - Sum and Mean gradients that broadcast dy on the backend (tfjs-core's multiply dy by a host
 *   array of ones of the input's size, uploaded on every step: 3.4 s of a 2.4 s-per-step GPU
 *   step at batch 256 was spent filling those arrays);
 * - the wasm kernel fixes of backend/wasm-kernels.ts (rank > 4 Slice and SplitV, which the VAE's
 *   time slices and the gradient of its causal-cache concat hit; BatchMatMul as 2-D products of
 *   row-major operands, which the matMul gradients' transposed products hit).
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-layers registers tfjs-core's gradients on import; they load first, so the ones below replace them.
import '@tensorflow/tfjs-layers';
import { ConfigError } from '../errors.js';
import { registerWasmKernels } from '../backend/wasm-kernels.js';

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
  tf.registerGradient({ kernelName: tf.Sum, inputsToSave: ['x'], gradFunc: reductionGrad(false) });
  tf.registerGradient({ kernelName: tf.Mean, inputsToSave: ['x'], gradFunc: reductionGrad(true) });
  registerWasmKernels();
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
      // stride (x cropped to the rows and columns the output reads), giving [Cin, kh, kw, Cout]
      const xc = tf.transpose(xp, [3, 1, 2, 0]) as tf.Tensor4D;
      const dyc = tf.transpose(g, [1, 2, 0, 3]) as tf.Tensor4D;
      const spanH = kh + sh * (Ho - 1);
      const spanW = kw + sw * (Wo - 1);
      const crop = tf.slice(xc, [0, 0, 0, 0], [-1, spanH, spanW, -1]);
      const dw = tf.conv2d(crop, dyc, 1, 'valid', 'NHWC', [sh, sw]);
      return tf.transpose(dw, [1, 2, 0, 3]);
    }),
  };
}

// y = sum or mean of x over `axis`: dx = dy broadcast back over the reduced axes (÷ their size for the
// mean), the broadcast a multiply by onesLike(x), which every backend fills on its own memory.
function reductionGrad(mean: boolean): (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => Record<string, () => tf.Tensor> {
  return (dy, saved, attrs) => {
    const [x] = saved;
    const g = Array.isArray(dy) ? dy[0] : dy;
    const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
    const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const size = axes.reduce((n, a) => n * x.shape[a], 1);
    return {
      x: () => tf.tidy(() => {
        const r = tf.reshape(g, kept);
        return tf.mul(mean ? tf.div(r, size) : r, tf.onesLike(x));
      }),
    };
  };
}

function explicitPads(info: tf.backend_util.Conv2DInfo): tf.backend_util.ExplicitPadding {
  const { top, bottom, left, right } = info.padInfo;
  return [[0, 0], [top, bottom], [left, right], [0, 0]];
}
