import * as tf from '@tensorflow/tfjs-core';
import { WanModule } from './module.js';
import { CausalCache, WanCausalConv3d, withCache } from './wan-causal-conv3d.js';
import { WanRMS_norm } from './wan-rms-norm.js';

export interface WanResidualBlockConfig {
  inDim: number;
  outDim: number;
  name?: string;
}

/**
 * WanResidualBlock: conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))) + shortcut(x), with causal 3×3×3
 * convs and a 1×1×1 conv shortcut when the channel count changes (identity otherwise).
 * Keys: norm1.gamma, conv1.*, norm2.gamma, conv2.*, conv_shortcut.*. Dropout (0 in every Wan VAE)
 * is the identity at inference and is not modelled.
 */
export class WanResidualBlock extends WanModule {
  static readonly className = 'WanResidualBlock';
  readonly norm1: WanRMS_norm;
  readonly conv1: WanCausalConv3d;
  readonly norm2: WanRMS_norm;
  readonly conv2: WanCausalConv3d;
  readonly convShortcut: WanCausalConv3d | undefined;

  constructor(readonly config: WanResidualBlockConfig) {
    super({ name: config.name });
    const { inDim, outDim } = config;
    this.norm1 = this.addModule('norm1', new WanRMS_norm({ dim: inDim, images: false }));
    this.conv1 = this.addModule('conv1', new WanCausalConv3d({ inChannels: inDim, outChannels: outDim, kernelSize: 3, padding: 1 }));
    this.norm2 = this.addModule('norm2', new WanRMS_norm({ dim: outDim, images: false }));
    this.conv2 = this.addModule('conv2', new WanCausalConv3d({ inChannels: outDim, outChannels: outDim, kernelSize: 3, padding: 1 }));
    this.convShortcut =
      inDim !== outDim ? this.addModule('conv_shortcut', new WanCausalConv3d({ inChannels: inDim, outChannels: outDim, kernelSize: 1 })) : undefined;
  }

  // x: [B, T, H, W, inDim] → [B, T, H, W, outDim]
  forward(x: tf.Tensor, cache?: CausalCache): tf.Tensor {
    return withCache(cache, (c) =>
      tf.tidy(() => {
        // Each intermediate is freed once used (at the decoder's full size one is 300 MB in bf16).
        const h = this.convShortcut ? this.convShortcut.forward(x) : x;
        const a = this.norm1.forward(x, 'silu');
        const y = this.conv1.forward(a, c);
        a.dispose();
        const b = this.norm2.forward(y, 'silu');
        y.dispose();
        const out = this.conv2.forward(b, c, h);
        b.dispose();
        if (h !== x) h.dispose();
        return out;
      }),
    );
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), inDim: this.config.inDim, outDim: this.config.outDim };
  }
}

tf.serialization.registerClass(WanResidualBlock);
