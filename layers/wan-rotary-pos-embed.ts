import * as tf from '@tensorflow/tfjs-core';
import { rope } from '../src/backend/ops.js';
import { ConfigError, ShapeError } from '../src/errors.js';
import { WanModule } from './module.js';
import { patchGrid, type PatchSize, type TokenGrid } from './wan-patch.js';

export interface WanRotaryPosEmbedConfig {
  /** Channels per attention head d (even). */
  attentionHeadDim: number;
  /** (pt, ph, pw); the grid is the latent size divided by it. */
  patchSize: PatchSize;
  /** Positions per axis the reference tabulates (`rope_max_seq_len`, 1024). */
  maxSeqLen: number;
  theta?: number;
  name?: string;
}

/**
 * How a head dimension d is shared between the frame, height and width axes (Diffusers
 * WanRotaryPosEmbed): h = w = 2⌊d/6⌋ columns, t = d − h − w (128 → 44, 42, 42).
 */
export function ropeAxisDims(headDim: number): [t: number, h: number, w: number] {
  if (!Number.isInteger(headDim) || headDim < 2 || headDim % 2 !== 0) {
    throw new ConfigError(`attentionHeadDim must be an even integer ≥ 2 for rotary embeddings, got ${headDim}`);
  }
  const hw = 2 * Math.floor(headDim / 6);
  return [headDim - 2 * hw, hw, hw];
}

/** Host-side cos/sin tables, row-major [L, d] with L = F·H·W tokens in (f, h, w) order. */
export interface RopeTables {
  cos: Float32Array;
  sin: Float32Array;
  tokens: number;
  headDim: number;
}

/**
 * cos/sin of the 3D rotary angles for every token of `grid`. Columns are the t, h, w sections of
 * `ropeAxisDims`; column j of a section of width n reads that axis' position p (f, h or w) and holds
 * angle = p · θ^(−2⌊j/2⌋ / n) (each frequency twice, for its pair). Computed in float64, stored as
 * float32, as the reference does.
 */
export function ropeTables(headDim: number, grid: TokenGrid, theta = 10000): RopeTables {
  const sections = ropeAxisDims(headDim);
  const freq = new Float64Array(headDim);
  const axis = new Uint8Array(headDim);
  let col = 0;
  sections.forEach((width, a) => {
    for (let j = 0; j < width; j++) freq[col + j] = 1 / Math.pow(theta, (2 * Math.floor(j / 2)) / width);
    axis.fill(a, col, col + width);
    col += width;
  });
  const [F, H, W] = grid;
  const L = F * H * W;
  const cos = new Float32Array(L * headDim);
  const sin = new Float32Array(L * headDim);
  const pos = [0, 0, 0];
  let row = 0;
  for (let f = 0; f < F; f++) {
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) {
        pos[0] = f;
        pos[1] = h;
        pos[2] = w;
        const base = row * headDim;
        for (let c = 0; c < headDim; c++) {
          const a = pos[axis[c]] * freq[c];
          cos[base + c] = Math.cos(a);
          sin[base + c] = Math.sin(a);
        }
        row++;
      }
    }
  }
  return { cos, sin, tokens: L, headDim };
}

/** The rotary tables as tensors: full (`cos`, `sin`: [1, L, 1, d], as the reference returns them). */
export interface RotaryEmbedding {
  cos: tf.Tensor;
  sin: tf.Tensor;
}

/**
 * Rotates adjacent pairs of each head vector by the table's angles (ops.rope: pair j takes cos at
 * column 2j and sin at column 2j + 1, as the reference reads them).
 */
export function applyRotaryEmb(x: tf.Tensor, rotary: RotaryEmbedding): tf.Tensor {
  // x: [B, L, H, d], rotary.cos/sin: [1, L, 1, d] → [B, L, H, d]
  return rope(x, rotary.cos, rotary.sin);
}

/**
 * Diffusers' WanRotaryPosEmbed: 3D rotary position tables for the latent token grid. Holds no
 * parameters; the host tables of the most recent grids are cached (plain arrays, no tensors).
 */
export class WanRotaryPosEmbed extends WanModule {
  static readonly className = 'WanRotaryPosEmbed';
  private static readonly CACHE_SIZE = 4;
  private readonly cache = new Map<string, RopeTables>();

  constructor(readonly config: WanRotaryPosEmbedConfig) {
    super({ name: config.name });
    ropeAxisDims(config.attentionHeadDim);
  }

  /** The token grid of a latent [B, C, F, H, W] (validated against the patch size and maxSeqLen). */
  grid(latentShape: readonly number[]): TokenGrid {
    const g = patchGrid(latentShape, this.config.patchSize);
    g.forEach((n, i) => {
      if (n > this.config.maxSeqLen) {
        throw new ShapeError(
          'hiddenStates',
          `[${latentShape}] (${n} ${['frame', 'height', 'width'][i]} positions)`,
          `at most ${this.config.maxSeqLen} positions per axis after patching (rope_max_seq_len)`,
        );
      }
    });
    return g;
  }

  /** The host tables for a grid (cached). */
  tables(grid: TokenGrid): RopeTables {
    const key = grid.join('x');
    let t = this.cache.get(key);
    if (!t) {
      t = ropeTables(this.config.attentionHeadDim, grid, this.config.theta ?? 10000);
      if (this.cache.size >= WanRotaryPosEmbed.CACHE_SIZE) this.cache.delete(this.cache.keys().next().value as string);
      this.cache.set(key, t);
    }
    return t;
  }

  // latentShape: [B, C, F, H, W] → cos, sin: [1, L, 1, d]
  forward(latentShape: readonly number[]): RotaryEmbedding {
    const t = this.tables(this.grid(latentShape));
    const shape = [1, t.tokens, 1, t.headDim];
    return { cos: tf.tensor(t.cos, shape, 'float32'), sin: tf.tensor(t.sin, shape, 'float32') };
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor[] {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const r = this.forward(x.shape);
    return [r.cos, r.sin];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      attentionHeadDim: this.config.attentionHeadDim,
      patchSize: [...this.config.patchSize],
      maxSeqLen: this.config.maxSeqLen,
      theta: this.config.theta ?? 10000,
    };
  }

  override dispose(): { refCountAfterDispose: number; numDisposedVariables: number } {
    this.cache.clear();
    return super.dispose();
  }
}

tf.serialization.registerClass(WanRotaryPosEmbed);
