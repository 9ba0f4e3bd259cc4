import * as tf from '@tensorflow/tfjs-core';
import { conv3d } from '../src/backend/ops.js';
import { WanModule, conv3dLayout, type Param } from './module.js';

type Triple = [number, number, number];

function triple(v: number | readonly number[], what: string): Triple {
  if (typeof v === 'number') return [v, v, v];
  if (v.length !== 3) throw new RangeError(`${what} must be a number or 3 numbers, got [${v}]`);
  return [v[0], v[1], v[2]];
}

/** The last `n` frames of x: [B, T, H, W, C] → [B, n, H, W, C] (a new tensor). */
export function lastFrames(x: tf.Tensor, n: number): tf.Tensor {
  const t = x.shape[1] as number;
  return tf.slice(x, [0, t - n, 0, 0, 0], [-1, n, -1, -1, -1]);
}

/**
 * The state one causal pass carries from chunk to chunk (the reference's `feat_cache`): for every
 * temporal conv the last input frames it has seen, and for every resample whether it has seen its
 * first chunk. Keyed by the layer object, so a layer's slot is found without a running index.
 * Use one cache per encode/decode (or per tile) and dispose it when the pass ends.
 */
export class CausalCache {
  private readonly slots = new Map<object, tf.Tensor | null>();
  private first = true;

  /** True until the network's top level has finished its first chunk. */
  get isFirstChunk(): boolean {
    return this.first;
  }

  /** Marks the end of a chunk (called by WanEncoder3d / WanDecoder3d after each forward). */
  advance(): void {
    this.first = false;
  }

  /** Whether `owner` has a slot (a tensor, or just a "seen" mark). */
  has(owner: object): boolean {
    return this.slots.has(owner);
  }

  /** The frames stored for `owner`, if any. */
  get(owner: object): tf.Tensor | undefined {
    return this.slots.get(owner) ?? undefined;
  }

  /** Stores `frames` for `owner` (kept across tf.tidy; the previous value is disposed), or a bare mark. */
  set(owner: object, frames: tf.Tensor | null): void {
    const old = this.slots.get(owner);
    this.slots.set(owner, frames === null ? null : tf.keep(frames));
    if (old && old !== frames) old.dispose();
  }

  /** Number of tensors held. */
  get numTensors(): number {
    let n = 0;
    for (const v of this.slots.values()) if (v) n++;
    return n;
  }

  dispose(): void {
    for (const v of this.slots.values()) v?.dispose();
    this.slots.clear();
  }
}

/** Runs `fn` with `cache`, or with a fresh cache that is disposed afterwards (a single-chunk pass). */
export function withCache<T>(cache: CausalCache | undefined, fn: (c: CausalCache) => T): T {
  if (cache) return fn(cache);
  const own = new CausalCache();
  try {
    return fn(own);
  } finally {
    own.dispose();
  }
}

/**
 * Runs one chunk of an encoder or decoder: `fn` inside tf.tidy with the cache (a fresh one when
 * none is given), then advances the cache by one chunk.
 */
export function forwardChunk(cache: CausalCache | undefined, fn: (c: CausalCache) => tf.Tensor): tf.Tensor {
  return withCache(cache, (c) => {
    const y = tf.tidy(() => fn(c));
    c.advance();
    return y;
  });
}

export interface WanCausalConv3dConfig {
  inChannels: number;
  outChannels: number;
  /** (kt, kh, kw) or one number for all three. */
  kernelSize: number | readonly number[];
  stride?: number | readonly number[];
  /** Declared (pt, ph, pw): H and W are padded by ph / pw on both sides, time by 2·pt in front only. */
  padding?: number | readonly number[];
  name?: string;
}

/**
 * WanCausalConv3d: a Conv3d that is causal in time. The declared temporal padding is moved to the
 * past side (2·pt frames in front, none behind); with a CausalCache the frames in front are the
 * last 2·pt frames of the previous chunks instead of zeros, so a clip processed chunk by chunk
 * gives exactly the result of one causal conv over the whole clip.
 * Activations are channels-last [B, T, H, W, C]; the kernel is kept as tfjs [kt, kh, kw, in, out]
 * (checkpoint key `weight` [out, in, kt, kh, kw], `bias` [out]).
 */
export class WanCausalConv3d extends WanModule {
  static readonly className = 'WanCausalConv3d';
  readonly weight: Param;
  readonly bias: Param;
  readonly kernel: Triple;
  readonly stride: Triple;
  readonly padding: Triple;

  constructor(readonly config: WanCausalConv3dConfig) {
    super({ name: config.name });
    this.kernel = triple(config.kernelSize, 'kernelSize');
    this.stride = triple(config.stride ?? 1, 'stride');
    this.padding = triple(config.padding ?? 0, 'padding');
    const { inChannels, outChannels } = config;
    const bound = 1 / Math.sqrt(inChannels * this.kernel[0] * this.kernel[1] * this.kernel[2]);
    this.weight = this.addParam('weight', [outChannels, inChannels, ...this.kernel], { init: { uniform: bound }, ...conv3dLayout });
    this.bias = this.addParam('bias', [outChannels], { init: { uniform: bound } });
  }

  /** Frames of context in front of each chunk (2·pt). */
  get pastFrames(): number {
    return 2 * this.padding[0];
  }

  // x: [B, T, H, W, Cin] → [B, T', H', W', Cout]; T' = (T + 2pt − kt)/st + 1, H' = (H + 2ph − kh)/sh + 1.
  // residual (the output's shape) is added to the result, as a block's skip connection.
  forward(x: tf.Tensor, cache?: CausalCache, residual?: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const T = x.shape[1] as number;
      const need = this.pastFrames;
      let input = x;
      if (need > 0) {
        const past = cache?.get(this);
        const have = past ? (past.shape[1] as number) : 0;
        // Zeros for the frames before the clip, as a pad (which keeps the input's storage precision) of
        // the shorter part, so only one full-size copy is made.
        const front = (t: tf.Tensor) => (have < need ? tf.pad(t, [[0, 0], [need - have, 0], [0, 0], [0, 0], [0, 0]]) : t);
        input = past ? tf.concat([front(past), x], 1) : front(x);
        if (cache) {
          const keep = Math.min(need, have + T);
          cache.set(this, T >= keep ? lastFrames(x, keep) : tf.concat([lastFrames(past!, keep - T), x], 1));
        }
      }
      const [, ph, pw] = this.padding;
      return conv3d(input, this.weight.value, this.stride, [ph, pw], this.bias.value, residual);
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      inChannels: this.config.inChannels,
      outChannels: this.config.outChannels,
      kernelSize: [...this.kernel],
      stride: [...this.stride],
      padding: [...this.padding],
    };
  }
}

tf.serialization.registerClass(WanCausalConv3d);
