import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { linear } from '../src/backend/ops.js';
import { ShapeError } from '../src/errors.js';
import { WanModule, type Param } from './module.js';

/** The latent token grid (F/pt, H/ph, W/pw). */
export type TokenGrid = readonly [number, number, number];

/** (pt, ph, pw): the patch the DiT cuts the latent into (Wan: (1, 2, 2)). */
export type PatchSize = readonly [number, number, number];

/**
 * The token grid (F/pt, H/ph, W/pw) of a latent [B, C, F, H, W]; a ShapeError names the first
 * axis that the patch does not divide, with the nearest valid size.
 */
export function patchGrid(latentShape: readonly number[], patchSize: PatchSize, argument = 'hiddenStates'): TokenGrid {
  if (latentShape.length !== 5) {
    throw new ShapeError(argument, `[${latentShape}]`, '[B, C, F, H, W] (rank 5)');
  }
  const axes = ['F', 'H', 'W'];
  const grid = [0, 0, 0];
  for (let i = 0; i < 3; i++) {
    const n = latentShape[2 + i];
    const p = patchSize[i];
    if (n < p || n % p !== 0) {
      const nearest = [...latentShape];
      nearest[2 + i] = Math.max(p, Math.round(n / p) * p);
      throw new ShapeError(argument, `[${latentShape}]`, `${axes[i]} a positive multiple of the patch size ${p}`, `[${nearest}]`);
    }
    grid[i] = n / p;
  }
  return [grid[0], grid[1], grid[2]];
}

/**
 * Cuts a latent into patch vectors: out[b, (f·H' + h)·W' + w, ((kt·ph + kh)·pw + kw)·C + c] =
 * x[b, c, f·pt + kt, h·ph + kh, w·pw + kw] (channel fastest, the order unpatchify reads).
 */
export function patchify(x: tf.Tensor, patchSize: PatchSize): tf.Tensor {
  // x: [B, C, F, H, W] → [B, L, pt·ph·pw·C]
  const [B, C] = x.shape;
  const [F, H, W] = patchGrid(x.shape, patchSize);
  const [pt, ph, pw] = patchSize;
  return tf.tidy(() => {
    const split = tf.reshape(x, [B, C, F, pt, H, ph, W, pw]);
    const t = tf.transpose(split, [0, 2, 4, 6, 3, 5, 7, 1]);
    return tf.reshape(t, [B, F * H * W, pt * ph * pw * C]);
  });
}

/** The inverse of patchify: y[b, token(f,h,w), ((kt·ph + kh)·pw + kw)·C + c] → out[b, c, f·pt + kt, h·ph + kh, w·pw + kw]. */
export function unpatchify(y: tf.Tensor, grid: TokenGrid, patchSize: PatchSize): tf.Tensor {
  // y: [B, L, pt·ph·pw·C] → [B, C, F·pt, H·ph, W·pw]
  const [B, L, K] = y.shape as [number, number, number];
  const [F, H, W] = grid;
  const [pt, ph, pw] = patchSize;
  const P = pt * ph * pw;
  if (y.rank !== 3 || L !== F * H * W || K % P !== 0) {
    throw new ShapeError('y', `[${y.shape}]`, `[B, ${F * H * W}, ${P}·C] for grid [${grid}] and patch [${patchSize}]`);
  }
  const C = K / P;
  return tf.tidy(() => {
    const split = tf.reshape(y, [B, F, H, W, pt, ph, pw, C]);
    const t = tf.transpose(split, [0, 7, 1, 4, 2, 5, 3, 6]);
    return tf.reshape(t, [B, C, F * pt, H * ph, W * pw]);
  });
}

export interface WanPatchEmbeddingConfig {
  inChannels: number;
  /** Output width D. */
  dim: number;
  patchSize: PatchSize;
  name?: string;
}

/**
 * The reference's `patch_embedding`: a Conv3d with kernel = stride = patch, computed as patchify
 * plus one matmul. Keys `weight` [D, C, pt, ph, pw] (checkpoint layout; stored as
 * [D, pt, ph, pw, C] so its rows match patchify's order) and `bias` [D].
 */
export class WanPatchEmbedding extends WanModule {
  static readonly className = 'WanPatchEmbedding';
  readonly weight: Param;
  readonly bias: Param;

  constructor(readonly config: WanPatchEmbeddingConfig) {
    super({ name: config.name });
    const { inChannels: C, dim: D, patchSize } = config;
    const [pt, ph, pw] = patchSize;
    const bound = 1 / Math.sqrt(C * pt * ph * pw);
    this.weight = this.addParam('weight', [D, C, pt, ph, pw], {
      init: { uniform: bound },
      toStorage: (t) => tf.transpose(t, [0, 2, 3, 4, 1]),
      fromStorage: (t) => tf.transpose(t, [0, 4, 1, 2, 3]),
    });
    this.bias = this.addParam('bias', [D], { init: { uniform: bound } });
  }

  // x: [B, C, F, H, W] → tokens [B, L, D], L = (F/pt)·(H/ph)·(W/pw) in (f, h, w) order
  forward(x: tf.Tensor): tf.Tensor {
    const { inChannels: C, dim: D, patchSize } = this.config;
    if (x.rank !== 5 || x.shape[1] !== C) {
      throw new ShapeError('hiddenStates', `[${x.shape}]`, `[B, ${C}, F, H, W]`);
    }
    return tf.tidy(() => {
      const w = tf.reshape(this.weight.value, [D, -1]);
      return linear(patchify(x, patchSize), w, this.bias.value);
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override computeOutputShape(inputShape: tfl.Shape): tfl.Shape {
    const [pt, ph, pw] = this.config.patchSize;
    const [B, , F, H, W] = inputShape;
    const L = F === null || H === null || W === null ? null : (F / pt) * (H / ph) * (W / pw);
    return [B, L, this.config.dim];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), inChannels: this.config.inChannels, dim: this.config.dim, patchSize: [...this.config.patchSize] };
  }
}

tf.serialization.registerClass(WanPatchEmbedding);
