import { ConfigError } from '../errors.js';

/** One cached prompt embedding: its real rows only (the mask's length), row-major [length, dim]. */
export interface CachedEmbedding {
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
 * A least-recently-used cache of prompt embeddings on the host, keyed by (model id, prompt,
 * length), bounded in entries and bytes. Entries are host arrays, so the cache holds no tensor
 * and outlives the encoder's weights.
 */
export class PromptEmbeddingCache {
  readonly maxEntries: number;
  readonly maxBytes: number;
  private readonly entries = new Map<string, CachedEmbedding>();
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

  /** Bytes of embedding data held. */
  get bytes(): number {
    return this.byteCount;
  }

  /** The entry, now the most recently used; undefined if absent. */
  get(key: string): CachedEmbedding | undefined {
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
    }
    return hit;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Stores an entry (an entry larger than maxBytes is not kept), evicting the least recently used. */
  set(key: string, value: CachedEmbedding): void {
    this.delete(key);
    if (value.data.byteLength > this.maxBytes || this.maxEntries === 0) return;
    this.entries.set(key, value);
    this.byteCount += value.data.byteLength;
    while (this.entries.size > this.maxEntries || this.byteCount > this.maxBytes) {
      this.delete(this.entries.keys().next().value as string);
    }
  }

  delete(key: string): void {
    const old = this.entries.get(key);
    if (!old) return;
    this.entries.delete(key);
    this.byteCount -= old.data.byteLength;
  }

  clear(): void {
    this.entries.clear();
    this.byteCount = 0;
  }
}

/** The process-wide cache WanTextEncoder uses unless given another. */
export const defaultPromptEmbeddingCache = new PromptEmbeddingCache();
