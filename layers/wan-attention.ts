import * as tf from '@tensorflow/tfjs-core';
import { attention } from '../src/backend/ops.js';
import { ShapeError } from '../src/errors.js';
import { Linear } from './linear.js';
import { WanModule } from './module.js';
import { RMSNorm } from './rms-norm.js';
import { applyRotaryEmb, type RotaryEmbedding } from './wan-rotary-pos-embed.js';

export interface WanAttentionConfig {
  /** Model width D (input and output). */
  dim: number;
  heads: number;
  dimHead: number;
  eps?: number;
  /** RMSNorm of q and k across all heads (`norm_q`, `norm_k`); default true. */
  qkNorm?: boolean;
  name?: string;
}

/**
 * Diffusers' WanAttention with WanAttnProcessor: q = norm_q(to_q(x)), k = norm_k(to_k(ctx)),
 * v = to_v(ctx) (ctx = x for self-attention), split into heads, RoPE on q and k when given,
 * softmax(q·kᵀ/√d)·v without a mask, merge heads, to_out.0.
 */
export class WanAttention extends WanModule {
  static readonly className = 'WanAttention';
  readonly toQ: Linear;
  readonly toK: Linear;
  readonly toV: Linear;
  readonly toOut: Linear;
  readonly normQ: RMSNorm | undefined;
  readonly normK: RMSNorm | undefined;

  constructor(readonly config: WanAttentionConfig) {
    super({ name: config.name });
    const inner = config.heads * config.dimHead;
    this.toQ = this.addModule('to_q', new Linear({ inFeatures: config.dim, outFeatures: inner }));
    this.toK = this.addModule('to_k', new Linear({ inFeatures: config.dim, outFeatures: inner }));
    this.toV = this.addModule('to_v', new Linear({ inFeatures: config.dim, outFeatures: inner }));
    this.toOut = this.addModule('to_out.0', new Linear({ inFeatures: inner, outFeatures: config.dim }));
    const eps = config.eps ?? 1e-5;
    this.normQ = config.qkNorm === false ? undefined : this.addModule('norm_q', new RMSNorm({ dim: inner, eps }));
    this.normK = config.qkNorm === false ? undefined : this.addModule('norm_k', new RMSNorm({ dim: inner, eps }));
  }

  // hiddenStates: [B, L, D], encoderHiddenStates: [B, Lk, D] (cross-attention) or undefined (self),
  // rotary: cos/sin [1, L, 1, d] (self-attention only) → [B, L, D]
  forward(hiddenStates: tf.Tensor, encoderHiddenStates?: tf.Tensor, rotary?: RotaryEmbedding): tf.Tensor {
    const { heads, dimHead, dim } = this.config;
    const [B, L] = hiddenStates.shape as [number, number, number];
    const ctx = encoderHiddenStates ?? hiddenStates;
    if (ctx.rank !== 3 || ctx.shape[0] !== B || ctx.shape[2] !== dim) {
      // Name the argument the caller passed: self-attention has no encoderHiddenStates.
      throw encoderHiddenStates
        ? new ShapeError('encoderHiddenStates', `[${ctx.shape}]`, `[${B}, Lk, ${dim}]`)
        : new ShapeError('hiddenStates', `[${ctx.shape}]`, `[B, L, ${dim}]`);
    }
    const Lk = ctx.shape[1] as number;
    // Each intermediate is freed as soon as the next one exists: at 75,600 tokens × 5120 one of
    // them is 0.8 GB in bf16, so holding them to the end of the tidy would double the peak.
    return tf.tidy(() => {
      const step = (t: tf.Tensor, next: (t: tf.Tensor) => tf.Tensor) => {
        const r = next(t);
        if (r !== t) t.dispose();
        return r;
      };
      let q = this.toQ.forward(hiddenStates);
      if (this.normQ) q = step(q, (t) => this.normQ!.forward(t));
      q = tf.reshape(q, [B, L, heads, dimHead]);
      if (rotary) q = step(q, (t) => applyRotaryEmb(t, rotary));
      let k = this.toK.forward(ctx);
      if (this.normK) k = step(k, (t) => this.normK!.forward(t));
      k = tf.reshape(k, [B, Lk, heads, dimHead]);
      if (rotary) k = step(k, (t) => applyRotaryEmb(t, rotary));
      const v = tf.reshape(this.toV.forward(ctx), [B, Lk, heads, dimHead]);
      const o = attention(q, k, v);
      tf.dispose([q, k, v]);
      return this.toOut.forward(tf.reshape(o, [B, L, heads * dimHead]));
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const xs = Array.isArray(inputs) ? inputs : [inputs];
    return this.forward(xs[0], xs[1]);
  }

  override getConfig(): tf.serialization.ConfigDict {
    const c = this.config;
    return { ...super.getConfig(), dim: c.dim, heads: c.heads, dimHead: c.dimHead, eps: c.eps ?? 1e-5, qkNorm: c.qkNorm !== false };
  }
}

tf.serialization.registerClass(WanAttention);
