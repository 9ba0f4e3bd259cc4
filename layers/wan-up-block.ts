import * as tf from '@tensorflow/tfjs-core';
import { WanModule, replacing } from './module.js';
import { CausalCache, withCache } from './wan-causal-conv3d.js';
import { WanResample } from './wan-resample.js';
import { WanResidualBlock } from './wan-residual-block.js';

export interface WanUpBlockConfig {
  inDim: number;
  outDim: number;
  numResBlocks: number;
  /** 'upsample2d' | 'upsample3d', or none for the last level. */
  upsampleMode?: 'upsample2d' | 'upsample3d';
  name?: string;
}

/**
 * WanUpBlock (Wan2.1 decoder level): numResBlocks + 1 residual blocks (the first inDim → outDim), then
 * an optional WanResample whose conv halves the channels. Keys resnets.*, upsamplers.0.*.
 */
export class WanUpBlock extends WanModule {
  static readonly className = 'WanUpBlock';
  readonly resnets: WanResidualBlock[] = [];
  readonly upsampler: WanResample | undefined;

  constructor(readonly config: WanUpBlockConfig) {
    super({ name: config.name });
    let dim = config.inDim;
    for (let i = 0; i <= config.numResBlocks; i++) {
      this.resnets.push(this.addModule(`resnets.${i}`, new WanResidualBlock({ inDim: dim, outDim: config.outDim })));
      dim = config.outDim;
    }
    if (config.upsampleMode) {
      this.upsampler = this.addModule('upsamplers.0', new WanResample({ dim: config.outDim, mode: config.upsampleMode }));
    }
  }

  /** Channels this block outputs. */
  get outChannels(): number {
    return this.upsampler ? this.upsampler.outDim : this.config.outDim;
  }

  // x: [B, T, H, W, inDim] → [B, T', 2H, 2W, outDim/2] with an upsampler, else [B, T, H, W, outDim]
  forward(x: tf.Tensor, cache?: CausalCache): tf.Tensor {
    return withCache(cache, (c) =>
      tf.tidy(() => {
        // Each block's output is freed once the next has used it.
        let y = x;
        for (const r of this.resnets) y = replacing(y, x, r.forward(y, c));
        return this.upsampler ? replacing(y, x, this.upsampler.forward(y, c)) : y;
      }),
    );
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    const { inDim, outDim, numResBlocks, upsampleMode } = this.config;
    return { ...super.getConfig(), inDim, outDim, numResBlocks, upsampleMode: upsampleMode ?? null };
  }
}

tf.serialization.registerClass(WanUpBlock);
