import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../src/errors.js';
import { WanModule } from './module.js';

export interface DupUp3DConfig {
  inChannels: number;
  outChannels: number;
  factorT: number;
  factorS?: number;
  name?: string;
}

/**
 * DupUp3D (Wan2.2 decoder shortcut, no parameters): repeat each channel out·factor/in times
 * (repeat_interleave), then unfold channels (order: c, then t-, h-, w-offset) into factorT frames and
 * factorS × factorS pixels. On the pass's first chunk the first factorT − 1 output frames are dropped.
 */
export class DupUp3D extends WanModule {
  static readonly className = 'DupUp3D';
  readonly factorS: number;
  readonly repeats: number;

  constructor(readonly config: DupUp3DConfig) {
    super({ name: config.name });
    this.factorS = config.factorS ?? 1;
    const factor = config.factorT * this.factorS * this.factorS;
    if ((config.outChannels * factor) % config.inChannels !== 0) {
      throw new ConfigError(`DupUp3D: outChannels·factor (${config.outChannels}·${factor}) must be a multiple of inChannels (${config.inChannels})`);
    }
    this.repeats = (config.outChannels * factor) / config.inChannels;
  }

  // x: [B, T, H, W, in] → [B, T·ft (− (ft−1) on the first chunk), H·fs, W·fs, out]
  forward(x: tf.Tensor, firstChunk = false): tf.Tensor {
    const ft = this.config.factorT;
    const fs = this.factorS;
    const out = this.config.outChannels;
    return tf.tidy(() => {
      const [B, T, H, W, C] = x.shape as [number, number, number, number, number];
      const rep = tf.tile(tf.reshape(x, [B * T * H * W, C, 1]), [1, 1, this.repeats]);
      // [B·T, H, W, out, ft, fs, fs] → [B·T, ft, H, fs, W, fs, out]
      const blocks = tf.transpose(tf.reshape(rep, [B * T, H, W, out, ft, fs, fs]), [0, 4, 1, 5, 2, 6, 3]);
      const y = tf.reshape(blocks, [B, T * ft, H * fs, W * fs, out]);
      return firstChunk && ft > 1 ? tf.slice(y, [0, ft - 1, 0, 0, 0], [-1, -1, -1, -1, -1]) : y;
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), inChannels: this.config.inChannels, outChannels: this.config.outChannels, factorT: this.config.factorT, factorS: this.factorS };
  }
}

tf.serialization.registerClass(DupUp3D);
