import * as tf from '@tensorflow/tfjs-core';
import { WanModule } from './module.js';
import { WanAttentionBlock } from './wan-attention-block.js';
import { CausalCache, WanCausalConv3d, forwardChunk } from './wan-causal-conv3d.js';
import { WanMidBlock } from './wan-mid-block.js';
import { WanResample } from './wan-resample.js';
import { WanResidualBlock } from './wan-residual-block.js';
import { WanResidualDownBlock } from './wan-residual-down-block.js';
import { WanRMS_norm } from './wan-rms-norm.js';

export interface WanEncoder3dConfig {
  inChannels: number;
  /** Base width; level i has dim · dimMult[i] channels. */
  dim: number;
  /** Output channels of conv_out (the VAE passes 2·z_dim: mean and log-variance). */
  zDim: number;
  dimMult: readonly number[];
  numResBlocks: number;
  /** Scales (1, 1/2, …) at which the Wan2.1 layout inserts attention after each residual block. */
  attnScales?: readonly number[];
  /** Per downsampling level, whether it also halves time. */
  temperalDownsample: readonly boolean[];
  /** Wan2.2: levels are WanResidualDownBlocks with AvgDown3D shortcuts. */
  isResidual?: boolean;
  name?: string;
}

type DownLayer = WanResidualBlock | WanAttentionBlock | WanResample | WanResidualDownBlock;

/**
 * WanEncoder3d: conv_in → down_blocks → mid_block → norm_out, SiLU, conv_out. With isResidual false
 * (Wan2.1) down_blocks is one flat list of residual blocks, attention blocks and resamples; with
 * isResidual true (Wan2.2) it holds one WanResidualDownBlock per level.
 */
export class WanEncoder3d extends WanModule {
  static readonly className = 'WanEncoder3d';
  readonly convIn: WanCausalConv3d;
  readonly downBlocks: DownLayer[] = [];
  readonly midBlock: WanMidBlock;
  readonly normOut: WanRMS_norm;
  readonly convOut: WanCausalConv3d;

  constructor(readonly config: WanEncoder3dConfig) {
    super({ name: config.name });
    const { dim, dimMult, numResBlocks, temperalDownsample } = config;
    const attnScales = config.attnScales ?? [];
    const dims = [dim, ...dimMult.map((u) => dim * u)];
    const last = dimMult.length - 1;
    this.convIn = this.addModule('conv_in', new WanCausalConv3d({ inChannels: config.inChannels, outChannels: dims[0], kernelSize: 3, padding: 1 }));
    const add = (layer: DownLayer) => this.downBlocks.push(this.addModule(`down_blocks.${this.downBlocks.length}`, layer));
    let scale = 1;
    for (let i = 0; i <= last; i++) {
      let inDim = dims[i];
      const outDim = dims[i + 1];
      if (config.isResidual) {
        add(new WanResidualDownBlock({ inDim, outDim, numResBlocks, temperalDownsample: i !== last && temperalDownsample[i], downFlag: i !== last }));
        continue;
      }
      for (let r = 0; r < numResBlocks; r++) {
        add(new WanResidualBlock({ inDim, outDim }));
        if (attnScales.includes(scale)) add(new WanAttentionBlock({ dim: outDim }));
        inDim = outDim;
      }
      if (i !== last) {
        add(new WanResample({ dim: outDim, mode: temperalDownsample[i] ? 'downsample3d' : 'downsample2d' }));
        scale /= 2;
      }
    }
    const top = dims[dims.length - 1];
    this.midBlock = this.addModule('mid_block', new WanMidBlock({ dim: top, numLayers: 1 }));
    this.normOut = this.addModule('norm_out', new WanRMS_norm({ dim: top, images: false }));
    this.convOut = this.addModule('conv_out', new WanCausalConv3d({ inChannels: top, outChannels: config.zDim, kernelSize: 3, padding: 1 }));
  }

  // x: [B, T, H, W, inChannels] (one chunk) → [B, T', H/2^L, W/2^L, zDim]; advances the cache by one chunk
  forward(x: tf.Tensor, cache?: CausalCache): tf.Tensor {
    return forwardChunk(cache, (c) => {
      let h = this.convIn.forward(x, c);
      for (const b of this.downBlocks) h = b instanceof WanAttentionBlock ? b.forward(h) : b.forward(h, c);
      h = this.midBlock.forward(h, c);
      return this.convOut.forward(this.normOut.forward(h, 'silu'), c);
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    const c = this.config;
    return {
      ...super.getConfig(),
      inChannels: c.inChannels,
      dim: c.dim,
      zDim: c.zDim,
      dimMult: [...c.dimMult],
      numResBlocks: c.numResBlocks,
      attnScales: [...(c.attnScales ?? [])],
      temperalDownsample: [...c.temperalDownsample],
      isResidual: c.isResidual === true,
    };
  }
}

tf.serialization.registerClass(WanEncoder3d);
