import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from './errors.js';

/**
 * The library's one seeded random number generator: xoshiro128** (Blackman & Vigna 2018), seeded
 * through splitmix32, with uniform and normal draws and noise tensors built on it. Pure integer
 * arithmetic on the host, so a seed gives the same numbers on every platform and backend.
 */

/** Largest seed accepted (seeds are integers in [0, 2^53)). */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;

/** splitmix32 step (Steele, Lea & Flood 2014, 32-bit variant): a well-mixed 32-bit value from a counter. */
function splitmix32(state: number): [value: number, next: number] {
  const next = (state + 0x9e3779b9) >>> 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return [(z ^ (z >>> 16)) >>> 0, next];
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new ConfigError(`seed: got ${seed}, expected an integer in [0, ${MAX_SEED}]`);
}

/** xoshiro128** with a 128-bit state, seeded through splitmix32 from both 32-bit halves of the seed. */
export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    checkSeed(seed);
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 2 ** 32) >>> 0;
    let st = lo;
    let v: number;
    [v, st] = splitmix32(st ^ Math.imul(hi, 0x27d4eb2d));
    this.s0 = v;
    [v, st] = splitmix32(st);
    this.s1 = v;
    [v, st] = splitmix32(st ^ hi);
    this.s2 = v;
    [v, st] = splitmix32(st);
    this.s3 = v;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** The next 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits (two 32-bit draws). */
  nextFloat(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }
}

/** A stream of uniform draws in [0, 1) from `seed` (a non-negative safe integer). */
export function uniform(seed: number): () => number {
  const rng = new Xoshiro128(seed);
  return () => rng.nextFloat();
}

/**
 * Standard normal samples from `seed`, generated on the host in float64 with the Box–Muller
 * transform (u1 = 1 − U, u2 = U: r = √(−2 ln u1), out[i] = r·cos 2πu2, out[i+1] = r·sin 2πu2) and
 * rounded to float32. A batch is drawn item after item, so item 0 of a batch equals the single
 * draw with the same seed.
 */
export function randnHost(shape: readonly number[], seed: number): Float32Array {
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new ConfigError(`noise shape: got [${shape.join(', ')}], expected non-negative integers`);
  const n = shape.reduce((a, d) => a * d, 1);
  const rng = new Xoshiro128(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    // u1 ∈ (0, 1] keeps the logarithm finite.
    const u1 = 1 - rng.nextFloat();
    const u2 = rng.nextFloat();
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** randnHost uploaded as a float32 tensor of `shape`. */
export function randn(shape: readonly number[], seed: number): tf.Tensor {
  return tf.tensor(randnHost(shape, seed), [...shape], 'float32');
}

/** A fresh random seed (for a run whose seed was not given; report it so the run can be repeated). */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}
