import * as tf from '@tensorflow/tfjs-core';
import { fp32, gatedResidual } from '../src/backend/ops.js';
import { ShapeError } from '../src/errors.js';
import { FeedForward } from './feed-forward.js';
import { FP32LayerNorm } from './fp32-layer-norm.js';
import { WanModule, type Param } from './module.js';
import { WanAttention } from './wan-attention.js';
import type { RotaryEmbedding } from './wan-rotary-pos-embed.js';

export interface WanTransformerBlockConfig {
  /** Model width D. */
  dim: number;
  ffnDim: number;
  numHeads: number;
  /** RMSNorm of q/k across heads; default true. */
  qkNorm?: boolean;
  /** Affine LayerNorm before cross-attention (`norm2`); default true. */
  crossAttnNorm?: boolean;
  eps?: number;
  name?: string;
}

/**
 * Diffusers' WanTransformerBlock. With (shift₁, scale₁, gate₁, shift₂, scale₂, gate₂) =
 * scale_shift_table + temb:
 *   x += gate₁ · attn1(norm1(x)·(1 + scale₁) + shift₁, rope)
 *   x += attn2(norm2(x), text)
 *   x += gate₂ · ffn(norm3(x)·(1 + scale₂) + shift₂)
 * norm1/norm3 have no parameters; norm2 is affine (original Wan calls it norm3).
 */
export class WanTransformerBlock extends WanModule {
  static readonly className = 'WanTransformerBlock';
  readonly norm1: FP32LayerNorm;
  readonly attn1: WanAttention;
  readonly attn2: WanAttention;
  readonly norm2: FP32LayerNorm | undefined;
  readonly ffn: FeedForward;
  readonly norm3: FP32LayerNorm;
  readonly scaleShiftTable: Param;

  constructor(readonly config: WanTransformerBlockConfig) {
    super({ name: config.name });
    const { dim, ffnDim, numHeads } = config;
    const eps = config.eps ?? 1e-6;
    const attn = { dim, heads: numHeads, dimHead: dim / numHeads, eps, qkNorm: config.qkNorm !== false };
    this.norm1 = this.addModule('norm1', new FP32LayerNorm({ dim, eps, elementwiseAffine: false }));
    this.attn1 = this.addModule('attn1', new WanAttention(attn));
    this.attn2 = this.addModule('attn2', new WanAttention(attn));
    this.norm2 = config.crossAttnNorm === false ? undefined : this.addModule('norm2', new FP32LayerNorm({ dim, eps, elementwiseAffine: true }));
    this.ffn = this.addModule('ffn', new FeedForward({ dim, innerDim: ffnDim }));
    this.norm3 = this.addModule('norm3', new FP32LayerNorm({ dim, eps, elementwiseAffine: false }));
    this.scaleShiftTable = this.addParam('scale_shift_table', [1, 6, dim], { init: { normal: 1 / Math.sqrt(dim) }, keepFp32: true });
  }

  // hiddenStates: [B, L, D], encoderHiddenStates: [B, Ltxt, D], temb: [B, 6, D] or per token
  // [B, L, 6, D], rotary: cos/sin [1, L, 1, d] → [B, L, D]
  forward(hiddenStates: tf.Tensor, encoderHiddenStates: tf.Tensor, temb: tf.Tensor, rotary: RotaryEmbedding): tf.Tensor {
    const { dim } = this.config;
    const [B, L] = hiddenStates.shape;
    const perToken = temb.rank === 4;
    const tb = temb.shape[0];
    if ((tb !== B && tb !== 1) || temb.shape[temb.rank - 1] !== dim || temb.shape[temb.rank - 2] !== 6 || (perToken && temb.shape[1] !== L) || temb.rank < 3) {
      throw new ShapeError('temb', `[${temb.shape}]`, `[${B}, 6, ${dim}] or [${B}, ${L}, 6, ${dim}]`);
    }
    return tf.tidy(() => {
      // Each modulation vector: [B, 1, D] (broadcast over tokens) or [B, L, D]. The modulation and the
      // residual stream are fp32 islands, as in the original Wan (the attention and FFN are not).
      const table = perToken ? tf.reshape(this.scaleShiftTable.value, [1, 1, 6, dim]) : this.scaleShiftTable.value;
      const mod = fp32(() => tf.split(tf.add(table, temb), 6, perToken ? 2 : 1).map((m) => (perToken ? tf.reshape(m, [tb, L, dim]) : m)));
      const [shiftMsa, scaleMsa, gateMsa, cShiftMsa, cScaleMsa, cGateMsa] = mod;

      // Intermediates are freed as soon as they are used (at 75,600 tokens each is 0.8–2 GB).
      const residual = (x: tf.Tensor, y: tf.Tensor, gate?: tf.Tensor) => {
        const out = gatedResidual(x, y, gate);
        y.dispose();
        return out;
      };
      const h1 = this.norm1.forwardModulated(hiddenStates, scaleMsa, shiftMsa);
      const a1 = this.attn1.forward(h1, undefined, rotary);
      h1.dispose();
      const x1 = residual(hiddenStates, a1, gateMsa);

      const h2 = this.norm2 ? this.norm2.forward(x1) : x1;
      const a2 = this.attn2.forward(h2, encoderHiddenStates);
      if (h2 !== x1) h2.dispose();
      const x2 = residual(x1, a2);
      x1.dispose();

      const h3 = this.norm3.forwardModulated(x2, cScaleMsa, cShiftMsa);
      const f = this.ffn.forward(h3);
      h3.dispose();
      return residual(x2, f, cGateMsa);
    });
  }

  /** inputs: [hiddenStates, encoderHiddenStates, temb, ropeCos, ropeSin]. */
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const xs = Array.isArray(inputs) ? inputs : [inputs];
    if (xs.length !== 5) throw new ShapeError('inputs', `${xs.length} tensors`, '[hiddenStates, encoderHiddenStates, temb, ropeCos, ropeSin]');
    return this.forward(xs[0], xs[1], xs[2], { cos: xs[3], sin: xs[4] });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const c = this.config;
    return {
      ...super.getConfig(),
      dim: c.dim,
      ffnDim: c.ffnDim,
      numHeads: c.numHeads,
      qkNorm: c.qkNorm !== false,
      crossAttnNorm: c.crossAttnNorm !== false,
      eps: c.eps ?? 1e-6,
    };
  }
}

tf.serialization.registerClass(WanTransformerBlock);
