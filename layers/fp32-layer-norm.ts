import * as tf from '@tensorflow/tfjs-core';
import { layerNorm, layerNormModulate } from '../src/backend/ops.js';
import { ConfigError } from '../src/errors.js';
import { WanModule, type Param } from './module.js';

export interface FP32LayerNormConfig {
  dim: number;
  eps?: number;
  /** Learned `weight` (ones) and `bias` (zeros) [dim]; default true. */
  elementwiseAffine?: boolean;
  name?: string;
}

/**
 * Diffusers' FP32LayerNorm: LayerNorm over the last axis with the statistics in fp32,
 * (x − mean) · rsqrt(var + eps) · weight + bias (biased variance). Without affine it has no keys.
 */
export class FP32LayerNorm extends WanModule {
  static readonly className = 'FP32LayerNorm';
  readonly weight: Param | undefined;
  readonly bias: Param | undefined;

  constructor(readonly config: FP32LayerNormConfig) {
    super({ name: config.name });
    const affine = config.elementwiseAffine !== false;
    this.weight = affine ? this.addParam('weight', [config.dim], { init: 'ones', keepFp32: true }) : undefined;
    this.bias = affine ? this.addParam('bias', [config.dim], { init: 'zeros', keepFp32: true }) : undefined;
  }

  // x: [..., dim] → [..., dim]
  forward(x: tf.Tensor): tf.Tensor {
    return layerNorm(x, this.config.eps ?? 1e-5, this.weight?.value, this.bias?.value);
  }

  /**
   * layerNorm(x) · (1 + scale) + shift (a Wan block's modulated norm; no affine weights).
   * x: [B, L, dim], scale and shift: [1 or B, 1 or L, dim].
   */
  forwardModulated(x: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor): tf.Tensor {
    if (this.weight) throw new ConfigError(`${this.name}: a modulated norm has no affine weights (elementwiseAffine: false)`);
    return layerNormModulate(x, this.config.eps ?? 1e-5, scale, shift);
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dim: this.config.dim, eps: this.config.eps ?? 1e-5, elementwiseAffine: this.config.elementwiseAffine !== false };
  }
}

tf.serialization.registerClass(FP32LayerNorm);
