import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../src/errors.js';
import { WanModule } from './module.js';

export interface AvgDown3DConfig {
  inChannels: number;
  outChannels: number;
  factorT: number;
  factorS?: number;
  name?: string;
}

/**
 * AvgDown3D (Wan2.2 encoder shortcut, no parameters): pad time in front with zeros to a multiple of
 * factorT, fold each factorT × factorS × factorS block into channels (order: c, then t-, h-, w-offset),
 * and average consecutive groups of in·factor/out of those channels down to outChannels.
 */
export class AvgDown3D extends WanModule {
  static readonly className = 'AvgDown3D';
  readonly factorS: number;
  readonly groupSize: number;

  constructor(readonly config: AvgDown3DConfig) {
    super({ name: config.name });
    this.factorS = config.factorS ?? 1;
    const factor = config.factorT * this.factorS * this.factorS;
    if ((config.inChannels * factor) % config.outChannels !== 0) {
      throw new ConfigError(`AvgDown3D: inChannels·factor (${config.inChannels}·${factor}) must be a multiple of outChannels (${config.outChannels})`);
    }
    this.groupSize = (config.inChannels * factor) / config.outChannels;
  }

  // x: [B, T, H, W, in] → [B, ⌈T/ft⌉, H/fs, W/fs, out]
  forward(x: tf.Tensor): tf.Tensor {
    const ft = this.config.factorT;
    const fs = this.factorS;
    const out = this.config.outChannels;
    return tf.tidy(() => {
      let y = x;
      const padT = (ft - ((x.shape[1] as number) % ft)) % ft;
      if (padT > 0) y = tf.pad(y, [[0, 0], [padT, 0], [0, 0], [0, 0], [0, 0]]);
      const [B, T, H, W, C] = y.shape as [number, number, number, number, number];
      const t = T / ft;
      const h = H / fs;
      const w = W / fs;
      // [B·t, ft, h, fs, w, fs, C] → [B·t, h, w, C, ft, fs, fs]
      const blocks = tf.transpose(tf.reshape(y, [B * t, ft, h, fs, w, fs, C]), [0, 2, 4, 6, 1, 3, 5]);
      return tf.mean(tf.reshape(blocks, [B, t, h, w, out, this.groupSize]), -1);
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), inChannels: this.config.inChannels, outChannels: this.config.outChannels, factorT: this.config.factorT, factorS: this.factorS };
  }
}

tf.serialization.registerClass(AvgDown3D);
