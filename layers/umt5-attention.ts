import * as tf from '@tensorflow/tfjs-core';
import { attention } from '../src/backend/ops.js';
import { Linear } from './linear.js';
import { WanModule } from './module.js';
import { T5Embedding } from './t5-embedding.js';

export interface UMT5AttentionConfig {
  dModel: number;
  /** Width of one head. */
  dKv: number;
  numHeads: number;
  /** Buckets of the relative position table (32 in umT5). */
  relativeAttentionNumBuckets: number;
  /** Distance at which the logarithmic buckets end (128 in umT5). */
  relativeAttentionMaxDistance: number;
  name?: string;
}

/**
 * transformers' `_relative_position_bucket` for the encoder (bidirectional) for one relative
 * position (key − query): half the buckets for keys after the query; exact buckets below
 * maxExact = numBuckets/4, logarithmic up to maxDistance, the last bucket beyond.
 * The logarithm is taken in float32 as the reference does (torch float tensors).
 */
export function relativePositionBucket(relativePosition: number, numBuckets: number, maxDistance: number): number {
  const half = Math.floor(numBuckets / 2);
  const base = relativePosition > 0 ? half : 0;
  const n = Math.abs(relativePosition);
  const maxExact = Math.floor(half / 2);
  if (n < maxExact) return base + n;
  const f = Math.fround;
  const ratio = f(f(Math.log(f(n / maxExact))) / f(Math.log(maxDistance / maxExact)));
  const large = maxExact + Math.trunc(f(ratio * (half - maxExact)));
  return base + Math.min(large, half - 1);
}

const bucketCache = new Map<string, Int32Array>();
const BUCKET_CACHE_ENTRIES = 8;

/** Buckets of every (query i, key j) pair, row-major [Lq·Lk], for key − query = j − i. */
export function relativePositionBuckets(queryLength: number, keyLength: number, numBuckets: number, maxDistance: number): Int32Array {
  const key = `${queryLength}:${keyLength}:${numBuckets}:${maxDistance}`;
  const hit = bucketCache.get(key);
  if (hit) return hit;
  const byOffset = new Int32Array(queryLength + keyLength - 1);
  for (let d = -(queryLength - 1); d < keyLength; d++) byOffset[d + queryLength - 1] = relativePositionBucket(d, numBuckets, maxDistance);
  const out = new Int32Array(queryLength * keyLength);
  for (let i = 0; i < queryLength; i++) {
    for (let j = 0; j < keyLength; j++) out[i * keyLength + j] = byOffset[j - i + queryLength - 1];
  }
  if (bucketCache.size >= BUCKET_CACHE_ENTRIES) bucketCache.delete(bucketCache.keys().next().value as string);
  bucketCache.set(key, out);
  return out;
}

/**
 * transformers' UMT5Attention (encoder self-attention): q, k, v, o without bias; scores q·kᵀ with
 * NO 1/√d scaling, plus this layer's own relative position bias (umT5 keeps a table in every
 * layer, unlike T5 v1.1) and the key padding mask; softmax; o(merged heads).
 */
export class UMT5Attention extends WanModule {
  static readonly className = 'UMT5Attention';
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly relativeAttentionBias: T5Embedding;

  constructor(readonly config: UMT5AttentionConfig) {
    super({ name: config.name });
    const inner = config.numHeads * config.dKv;
    this.q = this.addModule('q', new Linear({ inFeatures: config.dModel, outFeatures: inner, bias: false }));
    this.k = this.addModule('k', new Linear({ inFeatures: config.dModel, outFeatures: inner, bias: false }));
    this.v = this.addModule('v', new Linear({ inFeatures: config.dModel, outFeatures: inner, bias: false }));
    this.o = this.addModule('o', new Linear({ inFeatures: inner, outFeatures: config.dModel, bias: false }));
    this.relativeAttentionBias = this.addModule(
      'relative_attention_bias',
      new T5Embedding({ numEmbeddings: config.relativeAttentionNumBuckets, embeddingDim: config.numHeads }),
    );
  }

  // → position bias [1, H, Lq, Lk]: bias[0, h, i, j] = table[bucket(j − i), h]
  computeBias(queryLength: number, keyLength: number): tf.Tensor {
    const { numHeads, relativeAttentionNumBuckets, relativeAttentionMaxDistance } = this.config;
    const buckets = relativePositionBuckets(queryLength, keyLength, relativeAttentionNumBuckets, relativeAttentionMaxDistance);
    return tf.tidy(() => {
      const rows = this.relativeAttentionBias.forward(tf.tensor1d(buckets, 'int32'));
      return tf.reshape(tf.transpose(tf.reshape(rows, [queryLength, keyLength, numHeads]), [2, 0, 1]), [1, numHeads, queryLength, keyLength]);
    });
  }

  // hiddenStates: [B, L, dModel], attentionMask: [B, L] (1 = token, 0 = padding) → [B, L, dModel]
  forward(hiddenStates: tf.Tensor, attentionMask?: tf.Tensor): tf.Tensor {
    const { numHeads, dKv } = this.config;
    const [B, L] = hiddenStates.shape as [number, number, number];
    return tf.tidy(() => {
      const q = tf.reshape(this.q.forward(hiddenStates), [B, L, numHeads, dKv]);
      const k = tf.reshape(this.k.forward(hiddenStates), [B, L, numHeads, dKv]);
      const v = tf.reshape(this.v.forward(hiddenStates), [B, L, numHeads, dKv]);
      const out = attention(q, k, v, { scale: 1, bias: this.computeBias(L, L), keyMask: attentionMask });
      return this.o.forward(tf.reshape(out, [B, L, numHeads * dKv]));
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return Array.isArray(inputs) ? this.forward(inputs[0], inputs[1]) : this.forward(inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    const c = this.config;
    return {
      ...super.getConfig(),
      dModel: c.dModel,
      dKv: c.dKv,
      numHeads: c.numHeads,
      relativeAttentionNumBuckets: c.relativeAttentionNumBuckets,
      relativeAttentionMaxDistance: c.relativeAttentionMaxDistance,
    };
  }
}

tf.serialization.registerClass(UMT5Attention);
