import * as tf from '@tensorflow/tfjs-core';
import { geluTanh } from '../src/backend/ops.js';
import { Linear } from './linear.js';
import { WanModule } from './module.js';
import { RMSNorm } from './rms-norm.js';

export interface UMT5LayerFFConfig {
  dModel: number;
  dFf: number;
  layerNormEpsilon: number;
  name?: string;
}

/**
 * transformers' UMT5DenseGatedActDense (`gated-gelu`): wo(gelu_tanh(wi_0·x) · wi_1·x), no biases.
 * wi_0 is the GELU branch (the original Wan's `ffn.gate.0`), wi_1 the linear one (`ffn.fc1`).
 */
export class UMT5DenseGatedActDense extends WanModule {
  static readonly className = 'UMT5DenseGatedActDense';
  readonly wi0: Linear;
  readonly wi1: Linear;
  readonly wo: Linear;

  constructor(readonly config: UMT5LayerFFConfig) {
    super({ name: config.name });
    this.wi0 = this.addModule('wi_0', new Linear({ inFeatures: config.dModel, outFeatures: config.dFf, bias: false }));
    this.wi1 = this.addModule('wi_1', new Linear({ inFeatures: config.dModel, outFeatures: config.dFf, bias: false }));
    this.wo = this.addModule('wo', new Linear({ inFeatures: config.dFf, outFeatures: config.dModel, bias: false }));
  }

  // x: [B, L, dModel] → [B, L, dModel]
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.wo.forward(tf.mul(geluTanh(this.wi0.forward(x)), this.wi1.forward(x))));
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dModel: this.config.dModel, dFf: this.config.dFf, layerNormEpsilon: this.config.layerNormEpsilon };
  }
}

/** transformers' UMT5LayerFF: x + DenseReluDense(layer_norm(x)), layer_norm the T5 RMS norm. */
export class UMT5LayerFF extends WanModule {
  static readonly className = 'UMT5LayerFF';
  readonly denseReluDense: UMT5DenseGatedActDense;
  readonly layerNorm: RMSNorm;

  constructor(readonly config: UMT5LayerFFConfig) {
    super({ name: config.name });
    this.denseReluDense = this.addModule('DenseReluDense', new UMT5DenseGatedActDense({ ...config, name: undefined }));
    this.layerNorm = this.addModule('layer_norm', new RMSNorm({ dim: config.dModel, eps: config.layerNormEpsilon }));
  }

  // x: [B, L, dModel] → [B, L, dModel]
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.add(x, this.denseReluDense.forward(this.layerNorm.forward(x))));
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dModel: this.config.dModel, dFf: this.config.dFf, layerNormEpsilon: this.config.layerNormEpsilon };
  }
}

tf.serialization.registerClass(UMT5DenseGatedActDense);
tf.serialization.registerClass(UMT5LayerFF);
