import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { UMT5EncoderModel } from '../../layers/umt5-encoder-model.js';
import { ConfigError } from '../errors.js';
import { PromptEmbeddingCache } from './embedding-cache.js';
import { promptClean } from './prompt-clean.js';
import { WanTokenizer } from './tokenizer.js';

export interface WanTextEncoderOptions {
  /** Names the weights in the cache key; default the folder fromPretrained read, else one id per instance. */
  modelId?: string;
  /** Text length L of the embeddings; Wan's text_len is 512. */
  maxLength?: number;
  /** Where embeddings are cached (on the device); default a cache of this encoder's own, freed by dispose(); null for none. */
  cache?: PromptEmbeddingCache | null;
  /** Clean prompts with promptClean first, as the reference does; default true. */
  clean?: boolean;
  /** Prompts run through the encoder at once; default 4. */
  batchSize?: number;
}

export interface WanTextEncoderLoadOptions extends WanTextEncoderOptions {
  /** Where tokenizer.json is, if not under the model folder (`tokenizer/`, `google/umt5-xxl/`). */
  tokenizerDir?: string;
  onProgress?: (loaded: number, total: number, key: string) => void;
}

let instances = 0;

/**
 * Prompt embeddings as Diffusers' `WanPipeline._get_t5_prompt_embeds` makes them: clean each
 * prompt, tokenise to maxLength (padding and truncation, `</s>` kept), run the umT5 encoder with
 * the mask, keep each prompt's own rows (its mask length) and zero the rest. The Wan repo's
 * T5EncoderModel gives the same (it trims, and the DiT pads with zeros).
 *
 * Embeddings stay on the device: the encoder's output rows go into the result and into the cache
 * (per model id, cleaned prompt and length) without a host copy, so a negative prompt or a repeated
 * prompt is encoded once; release() frees the encoder's weights while cached prompts stay
 * available, dispose() frees both.
 */
export class WanTextEncoder {
  readonly modelId: string;
  readonly maxLength: number;
  readonly dim: number;
  readonly cache: PromptEmbeddingCache | null;
  private readonly ownsCache: boolean;
  private encoder: UMT5EncoderModel | undefined;
  private readonly clean: boolean;
  private readonly batchSize: number;

  constructor(readonly tokenizer: WanTokenizer, encoder: UMT5EncoderModel, options: WanTextEncoderOptions = {}) {
    this.encoder = encoder;
    this.dim = encoder.config.dModel;
    this.modelId = options.modelId ?? `umt5-encoder-${++instances}`;
    this.maxLength = options.maxLength ?? 512;
    this.ownsCache = options.cache === undefined;
    this.cache = options.cache === undefined ? new PromptEmbeddingCache() : options.cache;
    this.clean = options.clean ?? true;
    this.batchSize = options.batchSize ?? 4;
    if (!Number.isInteger(this.maxLength) || this.maxLength < 1) throw new ConfigError(`maxLength must be a positive integer, got ${this.maxLength}`);
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new ConfigError(`batchSize must be a positive integer, got ${this.batchSize}`);
  }

  /**
   * Loads the tokenizer and the encoder from a model folder: Diffusers (`tokenizer/`,
   * `text_encoder/`) or original Wan (`google/umt5-xxl/`, `models_t5_umt5-xxl-enc-bf16.safetensors`).
   */
  static async fromPretrained(dir: string, options: WanTextEncoderLoadOptions = {}): Promise<WanTextEncoder> {
    const tokenizer = await WanTokenizer.fromPretrained(options.tokenizerDir ?? dir, { maxLength: options.maxLength });
    const encoder = await UMT5EncoderModel.fromPretrained(dir, { onProgress: options.onProgress });
    return new WanTextEncoder(tokenizer, encoder, { modelId: path.resolve(dir), ...options });
  }

  /** Whether release() has freed the encoder. */
  get released(): boolean {
    return this.encoder === undefined;
  }

  /**
   * prompts: B strings → [B, maxLength, dim] float32 (caller disposes): each prompt's real rows
   * (its tokens and `</s>`), zeros after them.
   */
  async encode(prompts: string | readonly string[], options: { maxLength?: number } = {}): Promise<tf.Tensor3D> {
    const list = typeof prompts === 'string' ? [prompts] : prompts;
    if (!Array.isArray(list) || list.some((p) => typeof p !== 'string')) throw new ConfigError('prompts must be a string or an array of strings');
    const maxLength = options.maxLength ?? this.maxLength;
    if (!Number.isInteger(maxLength) || maxLength < 1) throw new ConfigError(`maxLength must be a positive integer, got ${maxLength}`);
    const texts = this.clean ? list.map(promptClean) : [...list];
    const keys = texts.map((t) => PromptEmbeddingCache.key(this.modelId, t, maxLength));
    // each distinct prompt's rows [length, dim], from the cache or the encoder (disposed at the end)
    const found = new Map<string, tf.Tensor2D>();
    try {
      const missing: string[] = [];
      texts.forEach((t, i) => {
        if (found.has(keys[i]) || missing.includes(t)) return;
        const hit = this.cache?.get(keys[i]);
        if (hit) found.set(keys[i], hit);
        else missing.push(t);
      });
      for (let s = 0; s < missing.length; s += this.batchSize) {
        const chunk = missing.slice(s, s + this.batchSize);
        const embeddings = await this.run(chunk, maxLength);
        chunk.forEach((t, i) => {
          const key = PromptEmbeddingCache.key(this.modelId, t, maxLength);
          found.set(key, embeddings[i]);
          this.cache?.set(key, embeddings[i]);
        });
      }
      // [B, maxLength, dim]: each prompt's rows, then zeros
      return tf.tidy(() =>
        tf.stack(
          keys.map((k) => {
            const rows = found.get(k)!;
            const pad = maxLength - rows.shape[0];
            return pad > 0 ? tf.concat([rows, tf.zeros([pad, this.dim])], 0) : rows;
          }),
        ),
      ) as tf.Tensor3D;
    } finally {
      for (const rows of found.values()) rows.dispose();
    }
  }

  // texts: prompts not in the cache → each one's real rows [length, dim] on the device (the caller disposes)
  private async run(texts: string[], maxLength: number): Promise<tf.Tensor2D[]> {
    const encoder = this.encoder;
    if (!encoder) {
      const shown = texts.slice(0, 3).map((t) => JSON.stringify(t.length > 60 ? `${t.slice(0, 60)}…` : t));
      throw new ConfigError(
        `the text encoder was released (release()), and ${texts.length} prompt(s) are not in the embedding cache: ` +
          `${shown.join(', ')}${texts.length > 3 ? ', …' : ''}. Encode every prompt before releasing, or load it again with WanTextEncoder.fromPretrained`,
      );
    }
    const batch = this.tokenizer.encode(texts, { maxLength, padding: 'max_length', truncation: true });
    const { inputIds, attentionMask } = WanTokenizer.toTensors(batch);
    let hidden: tf.Tensor | undefined;
    try {
      hidden = encoder.forward(inputIds, attentionMask);
      const h = hidden;
      return batch.lengths.map((n, i) => tf.tidy(() => tf.reshape(tf.slice(h, [i, 0, 0], [1, n, this.dim]), [n, this.dim]) as tf.Tensor2D));
    } finally {
      tf.dispose([inputIds, attentionMask]);
      hidden?.dispose();
    }
  }

  /** Frees the encoder's weights; afterwards only cached prompts can be encoded. */
  release(): void {
    this.encoder?.dispose();
    this.encoder = undefined;
  }

  /** Frees the weights and, when it is the encoder's own, the cache. */
  dispose(): void {
    this.release();
    if (this.ownsCache) this.cache?.clear();
  }
}
