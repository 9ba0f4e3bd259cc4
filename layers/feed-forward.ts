import * as tf from '@tensorflow/tfjs-core';
import { Linear } from './linear.js';
import { WanModule } from './module.js';

export interface FeedForwardConfig {
  dim: number;
  /** Hidden width (Wan: `ffn_dim`). */
  innerDim: number;
  /** Output width; default `dim`. */
  dimOut?: number;
  name?: string;
}

/**
 * Diffusers' FeedForward with activation "gelu-approximate": net.0.proj (dim → inner), GELU with
 * the tanh approximation, net.2 (inner → dimOut). Keys `net.0.proj.*`, `net.2.*`.
 */
export class FeedForward extends WanModule {
  static readonly className = 'FeedForward';
  readonly proj: Linear;
  readonly out: Linear;

  constructor(readonly config: FeedForwardConfig) {
    super({ name: config.name });
    this.proj = this.addModule('net.0.proj', new Linear({ inFeatures: config.dim, outFeatures: config.innerDim }));
    this.out = this.addModule('net.2', new Linear({ inFeatures: config.innerDim, outFeatures: config.dimOut ?? config.dim }));
  }

  // x: [..., dim] → [..., dimOut]
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.out.forward(this.proj.forward(x, 'gelu_tanh')));
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dim: this.config.dim, innerDim: this.config.innerDim, dimOut: this.config.dimOut ?? this.config.dim };
  }
}

tf.serialization.registerClass(FeedForward);
