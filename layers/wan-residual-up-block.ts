import * as tf from '@tensorflow/tfjs-core';
import { WanModule, replacing } from './module.js';
import { CausalCache, withCache } from './wan-causal-conv3d.js';
import { DupUp3D } from './wan-dup-up.js';
import { WanResample } from './wan-resample.js';
import { WanResidualBlock } from './wan-residual-block.js';

export interface WanResidualUpBlockConfig {
  inDim: number;
  outDim: number;
  numResBlocks: number;
  /** Upsample in time too (upsample3d); only with upFlag. */
  temperalUpsample?: boolean;
  /** Whether the level upsamples at all (false for the last level). */
  upFlag?: boolean;
  name?: string;
}

/**
 * WanResidualUpBlock (Wan2.2 decoder level): numResBlocks + 1 residual blocks, an optional channel-
 * keeping WanResample, and when upsampling a parameter-free DupUp3D shortcut of the block input added
 * to the result. Keys resnets.*, upsampler.*.
 */
export class WanResidualUpBlock extends WanModule {
  static readonly className = 'WanResidualUpBlock';
  readonly resnets: WanResidualBlock[] = [];
  readonly upsampler: WanResample | undefined;
  readonly avgShortcut: DupUp3D | undefined;

  constructor(readonly config: WanResidualUpBlockConfig) {
    super({ name: config.name });
    const { inDim, outDim, numResBlocks } = config;
    const temporal = config.upFlag === true && config.temperalUpsample === true;
    if (config.upFlag) {
      this.avgShortcut = this.addModule('avg_shortcut', new DupUp3D({ inChannels: inDim, outChannels: outDim, factorT: temporal ? 2 : 1, factorS: 2 }));
    }
    let dim = inDim;
    for (let i = 0; i <= numResBlocks; i++) {
      this.resnets.push(this.addModule(`resnets.${i}`, new WanResidualBlock({ inDim: dim, outDim })));
      dim = outDim;
    }
    if (config.upFlag) {
      this.upsampler = this.addModule('upsampler', new WanResample({ dim: outDim, mode: temporal ? 'upsample3d' : 'upsample2d', upsampleOutDim: outDim }));
    }
  }

  // x: [B, T, H, W, inDim] → [B, T', 2H, 2W, outDim] when upsampling (T' = 2T, or T on the first chunk), else [B, T, H, W, outDim]
  forward(x: tf.Tensor, cache?: CausalCache): tf.Tensor {
    return withCache(cache, (c) =>
      tf.tidy(() => {
        const first = c.isFirstChunk;
        let y = x;
        for (const r of this.resnets) y = replacing(y, x, r.forward(y, c));
        if (this.upsampler) y = replacing(y, x, this.upsampler.forward(y, c));
        return this.avgShortcut ? tf.add(y, this.avgShortcut.forward(x, first)) : y;
      }),
    );
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    const { inDim, outDim, numResBlocks } = this.config;
    return { ...super.getConfig(), inDim, outDim, numResBlocks, temperalUpsample: this.config.temperalUpsample === true, upFlag: this.config.upFlag === true };
  }
}

tf.serialization.registerClass(WanResidualUpBlock);
