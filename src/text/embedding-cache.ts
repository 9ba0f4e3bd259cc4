import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';

/** A cached prompt embedding on the host, for persisting a cache: its real rows, row-major [length, dim]. */
export interface HostEmbedding {
  readonly length: number;
  readonly dim: number;
  readonly data: Float32Array;
}

export interface PromptEmbeddingCacheOptions {
  /** Most entries kept; default 64. */
  maxEntries?: number;
  /** Most bytes of embeddings kept; default 256 MiB. */
  maxBytes?: number;
}

/**
 * A least-recently-used cache of prompt embeddings on the device, keyed by (model id, prompt,
 * length), bounded in entries and bytes. Each entry is a prompt's real rows [length, dim] as a
 * tensor the cache owns: `set` keeps a copy, `get` gives one (tfjs copies share the data, so no
 * bytes move), and eviction, `delete` and `clear` dispose. Host copies are made only when asked
 * (`toHost`, to persist the cache; `setHost` uploads them back).
 */
export class PromptEmbeddingCache {
  readonly maxEntries: number;
  readonly maxBytes: number;
  private readonly entries = new Map<string, tf.Tensor2D>();
  private byteCount = 0;

  constructor(options: PromptEmbeddingCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 64;
    this.maxBytes = options.maxBytes ?? 256 * 1024 * 1024;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 0) throw new ConfigError(`maxEntries must be a non-negative integer, got ${this.maxEntries}`);
    if (!(this.maxBytes >= 0)) throw new ConfigError(`maxBytes must be a non-negative number, got ${this.maxBytes}`);
  }

  static key(modelId: string, prompt: string, maxLength: number): string {
    return JSON.stringify([modelId, maxLength, prompt]);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Bytes of embedding data held (float32). */
  get bytes(): number {
    return this.byteCount;
  }

  /** A copy of the entry's rows [length, dim] (the caller disposes it), now the most recently used; undefined if absent. */
  get(key: string): tf.Tensor2D | undefined {
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    this.entries.delete(key);
    this.entries.set(key, hit);
    return tf.clone(hit);
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Keeps a copy of `rows` [length, dim] (an entry larger than maxBytes is not kept), evicting the least recently used. */
  set(key: string, rows: tf.Tensor2D): void {
    this.delete(key);
    const bytes = rows.size * 4;
    if (bytes > this.maxBytes || this.maxEntries === 0) return;
    this.entries.set(key, tf.keep(tf.clone(rows)));
    this.byteCount += bytes;
    while (this.entries.size > this.maxEntries || this.byteCount > this.maxBytes) {
      this.delete(this.entries.keys().next().value as string);
    }
  }

  delete(key: string): void {
    const old = this.entries.get(key);
    if (!old) return;
    this.entries.delete(key);
    this.byteCount -= old.size * 4;
    old.dispose();
  }

  /** Disposes every entry. */
  clear(): void {
    for (const t of this.entries.values()) t.dispose();
    this.entries.clear();
    this.byteCount = 0;
  }

  /** Host copies of the entries, least recently used first: what to persist (the cache keeps its tensors). */
  async toHost(): Promise<Array<[string, HostEmbedding]>> {
    // copies, so that an entry evicted while this reads stays readable
    const copies = [...this.entries].map(([key, rows]) => [key, tf.clone(rows)] as const);
    try {
      const out: Array<[string, HostEmbedding]> = [];
      for (const [key, rows] of copies) {
        const [length, dim] = rows.shape;
        out.push([key, { length, dim, data: (await rows.data()) as Float32Array }]);
      }
      return out;
    } finally {
      for (const [, rows] of copies) rows.dispose();
    }
  }

  /** Uploads a persisted entry (as toHost gave it). */
  setHost(key: string, e: HostEmbedding): void {
    if (e.data.length !== e.length * e.dim) throw new ConfigError(`embedding cache entry: ${e.data.length} values for ${e.length} rows of ${e.dim}`);
    const rows = tf.tensor2d(e.data, [e.length, e.dim]);
    this.set(key, rows);
    rows.dispose();
  }
}
