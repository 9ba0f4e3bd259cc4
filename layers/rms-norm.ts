import * as tf from '@tensorflow/tfjs-core';
import { rmsNorm } from '../src/backend/ops.js';
import { WanModule, type Param } from './module.js';

export interface RMSNormConfig {
  dim: number;
  eps?: number;
  /** Learned gain `weight` [dim]; default true. */
  elementwiseAffine?: boolean;
  name?: string;
}

/**
 * RMSNorm over the last axis: x · rsqrt(mean(x²) + eps) · weight, statistics in fp32.
 * Used for q/k normalisation across heads in Wan and as umT5's layer norm (T5LayerNorm).
 */
export class RMSNorm extends WanModule {
  static readonly className = 'RMSNorm';
  readonly weight: Param | undefined;

  constructor(readonly config: RMSNormConfig) {
    super({ name: config.name });
    this.weight = config.elementwiseAffine === false ? undefined : this.addParam('weight', [config.dim], { init: 'ones', keepFp32: true });
  }

  // x: [..., dim] → [..., dim]
  forward(x: tf.Tensor): tf.Tensor {
    return rmsNorm(x, this.weight?.value, this.config.eps ?? 1e-6);
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dim: this.config.dim, eps: this.config.eps ?? 1e-6, elementwiseAffine: this.config.elementwiseAffine !== false };
  }
}

tf.serialization.registerClass(RMSNorm);
