import * as tf from '@tensorflow/tfjs-core';
import { Tokenizer } from '@huggingface/tokenizers';
import { ConfigError, ShapeError } from '../errors.js';
import { readTokenizerFiles } from '../../weights/tokenizer-files.js';

/** How rows are padded: to maxLength, to the longest row of the batch, or not at all. */
export type PaddingStrategy = 'max_length' | 'longest' | 'none';

export interface TokenizeOptions {
  /** Row length for padding 'max_length' and for truncation; default the tokenizer's maxLength (512). */
  maxLength?: number;
  /** Default 'max_length', as Wan calls the tokenizer. */
  padding?: PaddingStrategy;
  /** Cut rows longer than maxLength, keeping the special tokens (`</s>`); default true. */
  truncation?: boolean;
  /** Add the post-processor's special tokens (umT5: `</s>` after the text); default true. */
  addSpecialTokens?: boolean;
}

/** A tokenised batch: one row per prompt, padded on the right with the pad id. */
export interface TokenizedBatch {
  ids: Int32Array[];
  /** 1 for real tokens (special tokens included), 0 for padding. */
  attentionMask: Int32Array[];
  /** Real tokens per row (the sum of its mask). */
  lengths: number[];
}

/** One text's tokens, unpadded. */
export interface TokenizedText {
  ids: number[];
  /** The piece of each id; byte-fallback ids show as `<0xNN>`, an unknown piece as its text. */
  tokens: string[];
}

export interface WanTokenizerOptions {
  /** Default row length; Wan's text_len is 512. */
  maxLength?: number;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The special tokens a TemplateProcessing post-processor puts around a single sequence. */
interface SpecialTokens {
  prefix: TokenizedText;
  suffix: TokenizedText;
}

function templateSpecials(postProcessor: unknown): SpecialTokens {
  const empty = (): SpecialTokens => ({ prefix: { ids: [], tokens: [] }, suffix: { ids: [], tokens: [] } });
  if (postProcessor === null || postProcessor === undefined) return empty();
  if (!isObject(postProcessor)) throw new ConfigError('tokenizer.json "post_processor" must be an object or null');
  if (postProcessor.type === 'Sequence' && Array.isArray(postProcessor.processors)) {
    const template = postProcessor.processors.find((p) => isObject(p) && p.type === 'TemplateProcessing');
    return template ? templateSpecials(template) : empty();
  }
  if (postProcessor.type !== 'TemplateProcessing') {
    throw new ConfigError(`tokenizer.json post_processor type "${String(postProcessor.type)}" is not supported; expected TemplateProcessing (umT5's)`);
  }
  const single = postProcessor.single;
  const specials = isObject(postProcessor.special_tokens) ? postProcessor.special_tokens : {};
  if (!Array.isArray(single)) throw new ConfigError('tokenizer.json TemplateProcessing has no "single" template');
  const out = empty();
  let side = out.prefix;
  for (const item of single) {
    if (isObject(item) && isObject(item.Sequence)) {
      side = out.suffix;
      continue;
    }
    const id = isObject(item) && isObject(item.SpecialToken) ? item.SpecialToken.id : undefined;
    const entry = typeof id === 'string' ? specials[id] : undefined;
    if (!isObject(entry) || !Array.isArray(entry.ids) || !Array.isArray(entry.tokens)) {
      throw new ConfigError(`tokenizer.json TemplateProcessing names special token ${JSON.stringify(id)} that "special_tokens" does not define`);
    }
    side.ids.push(...(entry.ids as number[]));
    side.tokens.push(...(entry.tokens as string[]));
  }
  return out;
}

const utf8 = new TextEncoder();

/**
 * The umT5 tokenizer (T5TokenizerFast from a `tokenizer.json`): normalisation, pre-tokenisation
 * and the Unigram model come from `@huggingface/tokenizers`; this class adds what that package
 * lacks and HF's Rust tokenizer does: byte fallback (a piece not in the vocabulary becomes the
 * `<0xNN>` pieces of its UTF-8 bytes, all or nothing, else `<unk>`), and padding / truncation
 * that keep the post-processor's `</s>`.
 */
export class WanTokenizer {
  readonly maxLength: number;
  readonly padTokenId: number;
  readonly unkTokenId: number;
  private readonly tokenizer: Tokenizer;
  private readonly specials: SpecialTokens;
  /** Id of `<0xNN>` for each byte, −1 where the vocabulary lacks it; undefined without byte_fallback. */
  private readonly byteIds: Int32Array | undefined;

  /**
   * `tokenizerJson`: the parsed tokenizer.json; `tokenizerConfig`: the parsed tokenizer_config.json
   * if any (its pad_token is used).
   */
  constructor(tokenizerJson: unknown, tokenizerConfig: unknown = {}, options: WanTokenizerOptions = {}) {
    if (!isObject(tokenizerJson) || !isObject(tokenizerJson.model)) {
      throw new ConfigError('a tokenizer.json must be an object with a "model" (got something else)');
    }
    const config = isObject(tokenizerConfig) ? tokenizerConfig : {};
    const json: Json = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...tokenizerJson };
    try {
      this.tokenizer = new Tokenizer(json, config);
    } catch (e) {
      throw new ConfigError(`cannot build the tokenizer from tokenizer.json (${(e as Error).message})`);
    }
    this.specials = templateSpecials(json.post_processor);
    const unk = this.tokenizer.model?.unk_token_id;
    if (unk === undefined) throw new ConfigError('tokenizer.json model has no unknown-token id ("unk_id")');
    this.unkTokenId = unk;
    const padToken = typeof config.pad_token === 'string' ? config.pad_token : isObject(config.pad_token) && typeof config.pad_token.content === 'string' ? config.pad_token.content : '<pad>';
    this.padTokenId = this.tokenizer.token_to_id(padToken) ?? 0;
    if (tokenizerJson.model.byte_fallback === true) {
      this.byteIds = new Int32Array(256);
      for (let b = 0; b < 256; b++) this.byteIds[b] = this.tokenizer.token_to_id(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`) ?? -1;
    }
    this.maxLength = options.maxLength ?? 512;
    if (!Number.isInteger(this.maxLength) || this.maxLength < 1) throw new ConfigError(`maxLength must be a positive integer, got ${this.maxLength}`);
  }

  /**
   * Reads `tokenizer.json` (and `tokenizer_config.json` beside it) from `dir`, `dir/tokenizer/`
   * (Diffusers) or `dir/google/umt5-xxl/` (original Wan), or from a tokenizer.json path
   * (weights/families.ts: TOKENIZER_FILES).
   */
  static async fromPretrained(dir: string, options: WanTokenizerOptions = {}): Promise<WanTokenizer> {
    const files = readTokenizerFiles(dir);
    return new WanTokenizer(files.tokenizer, files.config, options);
  }

  /** The id of the token (vocabulary or added token), if any. */
  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  // a piece of the model's output → its id, its byte-fallback ids, or unk
  private pushPiece(piece: string, out: TokenizedText): void {
    const id = this.tokenizer.token_to_id(piece);
    if (id !== undefined) {
      out.ids.push(id);
      out.tokens.push(piece);
      return;
    }
    if (this.byteIds) {
      const bytes = utf8.encode(piece);
      const ids = Array.from(bytes, (b) => this.byteIds![b]);
      if (ids.every((i) => i >= 0)) {
        out.ids.push(...ids);
        bytes.forEach((b) => out.tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`));
        return;
      }
    }
    out.ids.push(this.unkTokenId);
    out.tokens.push(piece);
  }

  /** One text's ids and pieces, unpadded and untruncated (HF `tokenizer(text)` / `encoding.tokens`). */
  tokenize(text: string, addSpecialTokens = true): TokenizedText {
    const body: TokenizedText = { ids: [], tokens: [] };
    for (const piece of this.tokenizer.tokenize(text, { add_special_tokens: false })) this.pushPiece(piece, body);
    if (!addSpecialTokens) return body;
    const { prefix, suffix } = this.specials;
    return { ids: [...prefix.ids, ...body.ids, ...suffix.ids], tokens: [...prefix.tokens, ...body.tokens, ...suffix.tokens] };
  }

  /**
   * Tokenises a batch as HF's `tokenizer(prompts, padding, max_length, truncation)`: truncation
   * cuts the text's tokens so that, with `</s>`, a row has at most maxLength; padding appends
   * the pad id (mask 0) on the right.
   */
  encode(prompts: string | readonly string[], options: TokenizeOptions = {}): TokenizedBatch {
    const list = typeof prompts === 'string' ? [prompts] : prompts;
    if (!Array.isArray(list) || list.some((p) => typeof p !== 'string')) throw new ConfigError('prompts must be a string or an array of strings');
    const maxLength = options.maxLength ?? this.maxLength;
    const padding = options.padding ?? 'max_length';
    const truncation = options.truncation ?? true;
    const addSpecial = options.addSpecialTokens ?? true;
    if (!Number.isInteger(maxLength) || maxLength < 1) throw new ConfigError(`maxLength must be a positive integer, got ${maxLength}`);
    const { prefix, suffix } = addSpecial ? this.specials : { prefix: { ids: [] }, suffix: { ids: [] } };
    const budget = maxLength - prefix.ids.length - suffix.ids.length;
    if (truncation && budget < 0) {
      throw new ConfigError(`maxLength ${maxLength} is shorter than the ${prefix.ids.length + suffix.ids.length} special tokens every row carries`);
    }
    const rows = list.map((p) => {
      const body = this.tokenize(p, false).ids;
      const kept = truncation && body.length > budget ? body.slice(0, budget) : body;
      return [...prefix.ids, ...kept, ...suffix.ids];
    });
    const longest = rows.reduce((m, r) => Math.max(m, r.length), 0);
    const width = padding === 'max_length' ? maxLength : padding === 'longest' ? longest : 0;
    const ids: Int32Array[] = [];
    const attentionMask: Int32Array[] = [];
    for (const r of rows) {
      const n = Math.max(width, r.length);
      const row = new Int32Array(n).fill(this.padTokenId);
      row.set(r);
      const mask = new Int32Array(n);
      mask.fill(1, 0, r.length);
      ids.push(row);
      attentionMask.push(mask);
    }
    return { ids, attentionMask, lengths: rows.map((r) => r.length) };
  }

  /** encode() as int32 tensors [B, L] (caller disposes); the rows must come out of equal length. */
  encodeToTensors(prompts: string | readonly string[], options: TokenizeOptions = {}): { inputIds: tf.Tensor2D; attentionMask: tf.Tensor2D } {
    return WanTokenizer.toTensors(this.encode(prompts, options));
  }

  /** A batch's ids and mask as int32 tensors [B, L] (caller disposes); ShapeError if rows differ in length. */
  static toTensors(batch: TokenizedBatch): { inputIds: tf.Tensor2D; attentionMask: tf.Tensor2D } {
    const L = batch.ids[0]?.length ?? 0;
    const ragged = batch.ids.findIndex((r) => r.length !== L);
    if (ragged >= 0) {
      throw new ShapeError(`prompts[${ragged}]`, `${batch.ids[ragged].length} tokens`, `${L} like row 0 (use padding 'max_length' or 'longest', or truncation)`);
    }
    const flat = (rows: Int32Array[]): Int32Array => {
      const out = new Int32Array(rows.length * L);
      rows.forEach((r, i) => out.set(r, i * L));
      return out;
    };
    const B = batch.ids.length;
    return { inputIds: tf.tensor2d(flat(batch.ids), [B, L], 'int32'), attentionMask: tf.tensor2d(flat(batch.attentionMask), [B, L], 'int32') };
  }

  /** Text of the ids (special tokens kept unless skipped), through the tokenizer's decoder. */
  decode(ids: readonly number[], skipSpecialTokens = false): string {
    if (ids.length === 0) return '';
    return this.tokenizer.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }
}
