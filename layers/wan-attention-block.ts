import * as tf from '@tensorflow/tfjs-core';
import { attention, linear } from '../src/backend/ops.js';
import { WanModule, type Param } from './module.js';
import { WanRMS_norm } from './wan-rms-norm.js';

export interface WanAttentionBlockConfig {
  dim: number;
  name?: string;
}

/**
 * WanAttentionBlock: single-head self-attention over the H·W positions of each frame separately,
 * x + proj(attn(q, k, v)) with q | k | v = channels [0,C) | [C,2C) | [2C,3C) of to_qkv(norm(x)),
 * scale 1/√C. to_qkv and proj are 1×1 Conv2d (checkpoint [out, in, 1, 1]), stored as [out, in]
 * and applied as linear maps over channels.
 */
export class WanAttentionBlock extends WanModule {
  static readonly className = 'WanAttentionBlock';
  readonly norm: WanRMS_norm;
  readonly qkvWeight: Param;
  readonly qkvBias: Param;
  readonly projWeight: Param;
  readonly projBias: Param;

  constructor(readonly config: WanAttentionBlockConfig) {
    super({ name: config.name });
    const { dim } = config;
    this.norm = this.addModule('norm', new WanRMS_norm({ dim, images: true }));
    const bound = 1 / Math.sqrt(dim);
    const pointwise = (out: number) => ({
      init: { uniform: bound },
      toStorage: (t: tf.Tensor) => tf.reshape(t, [out, dim]),
      fromStorage: (t: tf.Tensor) => tf.reshape(t, [out, dim, 1, 1]),
    });
    this.qkvWeight = this.addParam('to_qkv.weight', [3 * dim, dim, 1, 1], pointwise(3 * dim));
    this.qkvBias = this.addParam('to_qkv.bias', [3 * dim], { init: { uniform: bound } });
    this.projWeight = this.addParam('proj.weight', [dim, dim, 1, 1], pointwise(dim));
    this.projBias = this.addParam('proj.bias', [dim], { init: { uniform: bound } });
  }

  // x: [B, T, H, W, C] → [B, T, H, W, C]
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const [B, T, H, W, C] = x.shape as [number, number, number, number, number];
      const n = tf.reshape(this.norm.forward(x), [B * T, H * W, C]);
      const qkv = linear(n, this.qkvWeight.value, this.qkvBias.value);
      const [q, k, v] = tf.split(qkv, 3, -1).map((t) => tf.reshape(t, [B * T, H * W, 1, C]));
      const o = tf.reshape(attention(q, k, v), [B * T, H * W, C]);
      const y = linear(o, this.projWeight.value, this.projBias.value);
      return tf.add(tf.reshape(y, [B, T, H, W, C]), x);
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dim: this.config.dim };
  }
}

tf.serialization.registerClass(WanAttentionBlock);
