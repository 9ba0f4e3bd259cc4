import * as tf from '@tensorflow/tfjs-core';
import { fp32, silu } from '../src/backend/ops.js';
import { ConfigError, ShapeError } from '../src/errors.js';
import { Linear } from './linear.js';
import { WanModule } from './module.js';

/**
 * Sinusoidal timestep features, cos first (Diffusers `Timesteps(dim, flip_sin_to_cos=True,
 * downscale_freq_shift=0)`): with half = ⌊dim/2⌋ and fᵢ = exp(−ln(10000)·i/half),
 * out = [cos(t·f₀…), sin(t·f₀…)] (+ a zero column when dim is odd). Evaluated in float32 like the reference.
 */
export function timestepSinusoid(timesteps: tf.Tensor, dim: number): tf.Tensor {
  // timesteps: [N] → [N, dim]
  const half = Math.floor(dim / 2);
  const freqs = new Float32Array(half);
  const c = Math.fround(-Math.log(10000));
  for (let i = 0; i < half; i++) freqs[i] = Math.exp(Math.fround(c * i) / half);
  return tf.tidy(() => {
    const t = timesteps.dtype === 'float32' ? timesteps : tf.cast(timesteps, 'float32');
    const angles = tf.mul(tf.reshape(t, [-1, 1]), tf.tensor2d(freqs, [1, half]));
    const emb = tf.concat([tf.cos(angles), tf.sin(angles)], 1);
    return dim % 2 === 1 ? tf.pad(emb, [[0, 0], [0, 1]]) : emb;
  });
}

export interface WanTimeTextImageEmbeddingConfig {
  /** Model width D. */
  dim: number;
  /** Sinusoid width (`freq_dim`, 256). */
  timeFreqDim: number;
  /** Modulation width (6·D). */
  timeProjDim: number;
  /** Text encoder width (`text_dim`, 4096). */
  textEmbedDim: number;
  name?: string;
}

/** What the condition embedder returns. */
export interface ConditionEmbeddings {
  /** e = time_embedder(sinusoid(t)): [B, D], or [B, L, D] for per-token timesteps. */
  temb: tf.Tensor;
  /** time_proj(SiLU(e)): [B, 6D], or [B, L, 6D]. */
  timestepProj: tf.Tensor;
  /** text_embedder(text): [B, Ltxt, D]. */
  encoderHiddenStates: tf.Tensor;
}

/**
 * Diffusers' WanTimeTextImageEmbedding (text-to-video part): the timestep MLP
 * `time_embedder.linear_1` → SiLU → `time_embedder.linear_2`, the modulation projection
 * `time_proj` applied to SiLU(temb), and the text MLP `text_embedder.linear_1` → GELU(tanh) →
 * `text_embedder.linear_2`. The timestep path (weights and arithmetic) stays in float32 under
 * any precision policy, as the original Wan computes it.
 */
export class WanTimeTextImageEmbedding extends WanModule {
  static readonly className = 'WanTimeTextImageEmbedding';
  readonly timeLinear1: Linear;
  readonly timeLinear2: Linear;
  readonly timeProj: Linear;
  readonly textLinear1: Linear;
  readonly textLinear2: Linear;

  constructor(readonly config: WanTimeTextImageEmbeddingConfig) {
    super({ name: config.name });
    const { dim, timeFreqDim, timeProjDim, textEmbedDim } = config;
    if (timeFreqDim < 2) throw new ConfigError(`timeFreqDim (freq_dim) must be at least 2, got ${timeFreqDim}`);
    this.timeLinear1 = this.addModule('time_embedder.linear_1', new Linear({ inFeatures: timeFreqDim, outFeatures: dim }));
    this.timeLinear2 = this.addModule('time_embedder.linear_2', new Linear({ inFeatures: dim, outFeatures: dim }));
    this.timeProj = this.addModule('time_proj', new Linear({ inFeatures: dim, outFeatures: timeProjDim }));
    for (const m of [this.timeLinear1, this.timeLinear2, this.timeProj]) m.keepInFp32();
    this.textLinear1 = this.addModule('text_embedder.linear_1', new Linear({ inFeatures: textEmbedDim, outFeatures: dim }));
    this.textLinear2 = this.addModule('text_embedder.linear_2', new Linear({ inFeatures: dim, outFeatures: dim }));
  }

  // timestep: [B] or [B, L] (per token), encoderHiddenStates: [B, Ltxt, textDim]
  // → temb [B, D] | [B, L, D], timestepProj [B, 6D] | [B, L, 6D], text [B, Ltxt, D]
  forward(timestep: tf.Tensor, encoderHiddenStates: tf.Tensor): ConditionEmbeddings {
    const { dim, timeFreqDim, timeProjDim, textEmbedDim } = this.config;
    if (timestep.rank !== 1 && timestep.rank !== 2) {
      throw new ShapeError('timestep', `[${timestep.shape}]`, '[B] or [B, L]');
    }
    if (encoderHiddenStates.rank !== 3 || encoderHiddenStates.shape[2] !== textEmbedDim) {
      throw new ShapeError('encoderHiddenStates', `[${encoderHiddenStates.shape}]`, `[B, Ltxt, ${textEmbedDim}]`);
    }
    const lead = timestep.shape;
    const out = tf.tidy(() => {
      const [temb, proj] = fp32(() => {
        const sinusoid = timestepSinusoid(tf.reshape(timestep, [-1]), timeFreqDim);
        const e = this.timeLinear2.forward(silu(this.timeLinear1.forward(sinusoid)));
        return [e, this.timeProj.forward(silu(e))];
      });
      const text = this.textLinear2.forward(this.textLinear1.forward(encoderHiddenStates, 'gelu_tanh'));
      return [tf.reshape(temb, [...lead, dim]), tf.reshape(proj, [...lead, timeProjDim]), text];
    });
    return { temb: out[0], timestepProj: out[1], encoderHiddenStates: out[2] };
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor[] {
    const xs = Array.isArray(inputs) ? inputs : [inputs];
    const r = this.forward(xs[0], xs[1]);
    return [r.temb, r.timestepProj, r.encoderHiddenStates];
  }

  override getConfig(): tf.serialization.ConfigDict {
    const c = this.config;
    return { ...super.getConfig(), dim: c.dim, timeFreqDim: c.timeFreqDim, timeProjDim: c.timeProjDim, textEmbedDim: c.textEmbedDim };
  }
}

tf.serialization.registerClass(WanTimeTextImageEmbedding);
