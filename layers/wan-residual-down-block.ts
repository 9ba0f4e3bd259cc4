import * as tf from '@tensorflow/tfjs-core';
import { WanModule } from './module.js';
import { AvgDown3D } from './wan-avg-down.js';
import { CausalCache, withCache } from './wan-causal-conv3d.js';
import { WanResample } from './wan-resample.js';
import { WanResidualBlock } from './wan-residual-block.js';

export interface WanResidualDownBlockConfig {
  inDim: number;
  outDim: number;
  numResBlocks: number;
  /** Downsample in time too (downsample3d); only with downFlag. */
  temperalDownsample?: boolean;
  /** Whether the level downsamples at all (false for the last level). */
  downFlag?: boolean;
  name?: string;
}

/**
 * WanResidualDownBlock (Wan2.2 encoder level): numResBlocks residual blocks, an optional WanResample
 * (downsample2d/3d), plus a parameter-free AvgDown3D shortcut of the block input (identity-like on
 * the last level). Keys resnets.*, downsampler.*.
 */
export class WanResidualDownBlock extends WanModule {
  static readonly className = 'WanResidualDownBlock';
  readonly resnets: WanResidualBlock[] = [];
  readonly downsampler: WanResample | undefined;
  readonly avgShortcut: AvgDown3D;

  constructor(readonly config: WanResidualDownBlockConfig) {
    super({ name: config.name });
    const { inDim, outDim, numResBlocks } = config;
    const down = config.downFlag === true;
    const temporal = down && config.temperalDownsample === true;
    this.avgShortcut = this.addModule('avg_shortcut', new AvgDown3D({ inChannels: inDim, outChannels: outDim, factorT: temporal ? 2 : 1, factorS: down ? 2 : 1 }));
    let dim = inDim;
    for (let i = 0; i < numResBlocks; i++) {
      this.resnets.push(this.addModule(`resnets.${i}`, new WanResidualBlock({ inDim: dim, outDim })));
      dim = outDim;
    }
    if (down) this.downsampler = this.addModule('downsampler', new WanResample({ dim: outDim, mode: temporal ? 'downsample3d' : 'downsample2d' }));
  }

  // x: [B, T, H, W, inDim] → [B, T', H/2, W/2, outDim] when downsampling, else [B, T, H, W, outDim]
  forward(x: tf.Tensor, cache?: CausalCache): tf.Tensor {
    return withCache(cache, (c) =>
      tf.tidy(() => {
        let y = x;
        for (const r of this.resnets) y = r.forward(y, c);
        if (this.downsampler) y = this.downsampler.forward(y, c);
        return tf.add(y, this.avgShortcut.forward(x));
      }),
    );
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    const { inDim, outDim, numResBlocks } = this.config;
    return { ...super.getConfig(), inDim, outDim, numResBlocks, temperalDownsample: this.config.temperalDownsample === true, downFlag: this.config.downFlag === true };
  }
}

tf.serialization.registerClass(WanResidualDownBlock);
