import * as tf from '@tensorflow/tfjs-core';
import { rmsNorm, type NormActivation } from '../src/backend/ops.js';
import { WanModule, type Param } from './module.js';

export interface WanRMSNormConfig {
  dim: number;
  /**
   * true: features of 2D images, checkpoint gamma [C, 1, 1] (the attention block);
   * false: 3D video features, gamma [C, 1, 1, 1]. Default true, as the reference.
   */
  images?: boolean;
  name?: string;
}

/**
 * WanRMS_norm: F.normalize over channels · √C · gamma, i.e. x / max(‖x‖₂, 1e-12) · √C · gamma.
 * Since x/‖x‖·√C = x·rsqrt(mean(x²)), this is the rmsNorm op with weight gamma and eps = 1e-24/C
 * (the clamp of the norm at 1e-12, moved inside the square root), so a backend's fused RMS kernel
 * serves it.
 * Channels-last: x [..., C]. gamma is stored as [C] and keeps its checkpoint shape for loading.
 */
export class WanRMS_norm extends WanModule {
  static readonly className = 'WanRMS_norm';
  readonly gamma: Param;

  constructor(readonly config: WanRMSNormConfig) {
    super({ name: config.name });
    const { dim } = config;
    const shape = config.images === false ? [dim, 1, 1, 1] : [dim, 1, 1];
    this.gamma = this.addParam('gamma', shape, {
      init: 'ones',
      keepFp32: true,
      toStorage: (t) => tf.reshape(t, [dim]),
      fromStorage: (t) => tf.reshape(t, shape),
    });
  }

  // x: [..., C] → [..., C]; activation 'silu' applies SiLU to the result (the norm → SiLU → conv of every Wan VAE block)
  forward(x: tf.Tensor, activation: NormActivation = 'none'): tf.Tensor {
    const { dim } = this.config;
    return rmsNorm(x, this.gamma.value, 1e-24 / dim, activation);
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dim: this.config.dim, images: this.config.images !== false };
  }
}

tf.serialization.registerClass(WanRMS_norm);
