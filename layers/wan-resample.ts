import * as tf from '@tensorflow/tfjs-core';
import { conv3d } from '../src/backend/ops.js';
import { ConfigError } from '../src/errors.js';
import { WanModule, conv2dLayout, replacing, type Param } from './module.js';
import { CausalCache, WanCausalConv3d, lastFrames, withCache } from './wan-causal-conv3d.js';

export type WanResampleMode = 'none' | 'upsample2d' | 'upsample3d' | 'downsample2d' | 'downsample3d';

const MODES: readonly WanResampleMode[] = ['none', 'upsample2d', 'upsample3d', 'downsample2d', 'downsample3d'];

export interface WanResampleConfig {
  dim: number;
  mode: WanResampleMode;
  /** Output channels of the upsampling conv; default dim/2 (Wan2.1), the Wan2.2 decoder passes dim. */
  upsampleOutDim?: number;
  name?: string;
}

/**
 * WanResample: the VAE's spatial (and temporal) resampling, applied frame by frame.
 * - upsample2d: nearest ×2 then Conv2d(dim → out, 3, pad 1).
 * - upsample3d: first time_conv = causal Conv3d(dim → 2·dim, (3,1,1)); the two channel halves become
 *   frames 2t and 2t+1; then as upsample2d. The pass's first chunk skips the time conv (its frames are
 *   not doubled), and the time conv's causal context starts at the second chunk.
 * - downsample2d: zero-pad right/bottom by 1, Conv2d(dim → dim, 3, stride 2).
 * - downsample3d: as downsample2d, then time_conv = Conv3d(dim → dim, (3,1,1), stride (2,1,1)) over
 *   [last frame of the previous chunk, this chunk]; the first chunk passes through unchanged.
 * Keys: resample.1.{weight,bias} (the Conv2d, [out, in, 3, 3]), time_conv.{weight,bias}.
 */
export class WanResample extends WanModule {
  static readonly className = 'WanResample';
  readonly weight: Param | undefined;
  readonly bias: Param | undefined;
  readonly timeConv: WanCausalConv3d | undefined;
  readonly outDim: number;

  constructor(readonly config: WanResampleConfig) {
    super({ name: config.name });
    const { dim, mode } = config;
    if (!MODES.includes(mode)) throw new ConfigError(`WanResample mode '${String(mode)}' is not one of ${MODES.join(', ')}`);
    const up = mode === 'upsample2d' || mode === 'upsample3d';
    this.outDim = mode === 'none' ? dim : up ? (config.upsampleOutDim ?? Math.floor(dim / 2)) : dim;
    if (mode !== 'none') {
      const bound = 1 / Math.sqrt(dim * 9);
      this.weight = this.addParam('resample.1.weight', [this.outDim, dim, 3, 3], { init: { uniform: bound }, ...conv2dLayout });
      this.bias = this.addParam('resample.1.bias', [this.outDim], { init: { uniform: bound } });
    }
    if (mode === 'upsample3d') {
      this.timeConv = this.addModule('time_conv', new WanCausalConv3d({ inChannels: dim, outChannels: 2 * dim, kernelSize: [3, 1, 1], padding: [1, 0, 0] }));
    } else if (mode === 'downsample3d') {
      this.timeConv = this.addModule('time_conv', new WanCausalConv3d({ inChannels: dim, outChannels: dim, kernelSize: [3, 1, 1], stride: [2, 1, 1] }));
    }
  }

  // x: [B, T, H, W, dim] → up: [B, T' , 2H, 2W, out] (T' = 2T, or T on the first chunk for 3d); down: [B, T'', H/2, W/2, dim]
  forward(x: tf.Tensor, cache?: CausalCache): tf.Tensor {
    const { mode } = this.config;
    if (mode === 'none') return x.clone();
    return withCache(cache, (c) =>
      tf.tidy(() => {
        let y = x;
        if (mode === 'upsample3d') {
          if (!c.has(this)) c.set(this, null);
          else {
            const [B, T, H, W, C] = y.shape as [number, number, number, number, number];
            const t2 = tf.reshape(this.timeConv!.forward(y, c), [B, T, H, W, 2, C]);
            y = tf.reshape(tf.transpose(t2, [0, 1, 4, 2, 3, 5]), [B, 2 * T, H, W, C]);
            t2.dispose();
          }
        }
        y = replacing(y, x, this.spatial(y));
        if (mode === 'downsample3d') {
          const prev = c.get(this);
          const last = lastFrames(y, 1);
          if (prev) y = this.timeConv!.forward(tf.concat([prev, y], 1), c);
          c.set(this, last);
        }
        return y;
      }),
    );
  }

  // x: [B, T, H, W, dim] → [B, T, H', W', out], frame by frame
  private spatial(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const [B, T, H, W, C] = x.shape as [number, number, number, number, number];
      const [kh, kw, , O] = this.weight!.value.shape;
      const w = tf.reshape(this.weight!.value, [1, kh, kw, C, O]);
      if (this.config.mode.startsWith('up')) {
        // nearest ×2 (PyTorch's nearest-exact at scale 2: source index ⌊dst/2⌋), then the 3×3 conv with 1 pixel of zeros
        const up = tf.image.resizeNearestNeighbor(tf.reshape(x, [B * T, H, W, C]) as tf.Tensor4D, [2 * H, 2 * W]);
        return conv3d(tf.reshape(up, [B, T, 2 * H, 2 * W, C]), w, [1, 1, 1], [1, 1], this.bias!.value);
      }
      // zeros on the right and bottom only, then the 3×3 conv of stride 2
      return conv3d(tf.pad(x, [[0, 0], [0, 0], [0, 1], [0, 1], [0, 0]]), w, [1, 2, 2], [0, 0], this.bias!.value);
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dim: this.config.dim, mode: this.config.mode, upsampleOutDim: this.outDim };
  }
}

tf.serialization.registerClass(WanResample);
