import * as tf from '@tensorflow/tfjs-core';
import { WanModule } from './module.js';
import { RMSNorm } from './rms-norm.js';
import { UMT5Attention } from './umt5-attention.js';
import { UMT5LayerFF } from './umt5-layer-ff.js';

export interface UMT5BlockConfig {
  dModel: number;
  dKv: number;
  dFf: number;
  numHeads: number;
  relativeAttentionNumBuckets: number;
  relativeAttentionMaxDistance: number;
  layerNormEpsilon: number;
  name?: string;
}

/** transformers' UMT5LayerSelfAttention: x + SelfAttention(layer_norm(x), mask). */
export class UMT5LayerSelfAttention extends WanModule {
  static readonly className = 'UMT5LayerSelfAttention';
  readonly selfAttention: UMT5Attention;
  readonly layerNorm: RMSNorm;

  constructor(readonly config: UMT5BlockConfig) {
    super({ name: config.name });
    this.selfAttention = this.addModule('SelfAttention', new UMT5Attention({ ...config, name: undefined }));
    this.layerNorm = this.addModule('layer_norm', new RMSNorm({ dim: config.dModel, eps: config.layerNormEpsilon }));
  }

  // x: [B, L, dModel], attentionMask: [B, L] → [B, L, dModel]
  forward(x: tf.Tensor, attentionMask?: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.add(x, this.selfAttention.forward(this.layerNorm.forward(x), attentionMask)));
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return Array.isArray(inputs) ? this.forward(inputs[0], inputs[1]) : this.forward(inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...blockConfigDict(this.config) };
  }
}

function blockConfigDict(c: UMT5BlockConfig): tf.serialization.ConfigDict {
  return {
    dModel: c.dModel,
    dKv: c.dKv,
    dFf: c.dFf,
    numHeads: c.numHeads,
    relativeAttentionNumBuckets: c.relativeAttentionNumBuckets,
    relativeAttentionMaxDistance: c.relativeAttentionMaxDistance,
    layerNormEpsilon: c.layerNormEpsilon,
  };
}

/** transformers' UMT5Block for the encoder: `layer.0` self-attention, then `layer.1` gated FFN. */
export class UMT5Block extends WanModule {
  static readonly className = 'UMT5Block';
  readonly selfAttentionLayer: UMT5LayerSelfAttention;
  readonly ffLayer: UMT5LayerFF;

  constructor(readonly config: UMT5BlockConfig) {
    super({ name: config.name });
    this.selfAttentionLayer = this.addModule('layer.0', new UMT5LayerSelfAttention({ ...config, name: undefined }));
    this.ffLayer = this.addModule('layer.1', new UMT5LayerFF({ ...config, name: undefined }));
  }

  // x: [B, L, dModel], attentionMask: [B, L] (1 = token, 0 = padding) → [B, L, dModel]
  forward(x: tf.Tensor, attentionMask?: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.ffLayer.forward(this.selfAttentionLayer.forward(x, attentionMask)));
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return Array.isArray(inputs) ? this.forward(inputs[0], inputs[1]) : this.forward(inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...blockConfigDict(this.config) };
  }
}

tf.serialization.registerClass(UMT5LayerSelfAttention);
tf.serialization.registerClass(UMT5Block);
