import * as tf from '@tensorflow/tfjs-core';
import { WanModule, type Param } from './module.js';

export interface T5EmbeddingConfig {
  numEmbeddings: number;
  embeddingDim: number;
  name?: string;
}

/**
 * torch.nn.Embedding as umT5 uses it (the token table `shared`, and each layer's
 * `relative_attention_bias`): a lookup of rows of `weight` [numEmbeddings, embeddingDim], no scaling.
 * Initialised N(0, 1) as PyTorch does.
 */
export class T5Embedding extends WanModule {
  static readonly className = 'T5Embedding';
  readonly weight: Param;

  constructor(readonly config: T5EmbeddingConfig) {
    super({ name: config.name });
    this.weight = this.addParam('weight', [config.numEmbeddings, config.embeddingDim], { init: { normal: 1 } });
  }

  // ids: [...] int32 in [0, numEmbeddings) → [..., embeddingDim]
  forward(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.gather(this.weight.value, ids.dtype === 'int32' ? ids : tf.cast(ids, 'int32')));
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), numEmbeddings: this.config.numEmbeddings, embeddingDim: this.config.embeddingDim };
  }
}

tf.serialization.registerClass(T5Embedding);
