import * as tf from '@tensorflow/tfjs-core';
import { WanModule } from './module.js';
import { WanAttentionBlock } from './wan-attention-block.js';
import { CausalCache, withCache } from './wan-causal-conv3d.js';
import { WanResidualBlock } from './wan-residual-block.js';

export interface WanMidBlockConfig {
  dim: number;
  /** Attention + residual pairs after the first residual block; 1 in every Wan VAE. */
  numLayers?: number;
  name?: string;
}

/** WanMidBlock: resnets.0, then (attentions.i, resnets.i+1) for each layer. Keys resnets.*, attentions.*. */
export class WanMidBlock extends WanModule {
  static readonly className = 'WanMidBlock';
  readonly resnets: WanResidualBlock[] = [];
  readonly attentions: WanAttentionBlock[] = [];

  constructor(readonly config: WanMidBlockConfig) {
    super({ name: config.name });
    const { dim } = config;
    const layers = config.numLayers ?? 1;
    this.resnets.push(this.addModule('resnets.0', new WanResidualBlock({ inDim: dim, outDim: dim })));
    for (let i = 0; i < layers; i++) {
      this.attentions.push(this.addModule(`attentions.${i}`, new WanAttentionBlock({ dim })));
      this.resnets.push(this.addModule(`resnets.${i + 1}`, new WanResidualBlock({ inDim: dim, outDim: dim })));
    }
  }

  // x: [B, T, H, W, dim] → [B, T, H, W, dim]
  forward(x: tf.Tensor, cache?: CausalCache): tf.Tensor {
    return withCache(cache, (c) =>
      tf.tidy(() => {
        let y = this.resnets[0].forward(x, c);
        this.attentions.forEach((attn, i) => {
          y = this.resnets[i + 1].forward(attn.forward(y), c);
        });
        return y;
      }),
    );
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dim: this.config.dim, numLayers: this.config.numLayers ?? 1 };
  }
}

tf.serialization.registerClass(WanMidBlock);
