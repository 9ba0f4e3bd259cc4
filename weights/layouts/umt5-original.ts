/**
 * The original Wan umT5 checkpoint `models_t5_umt5-xxl-enc-bf16.pth` (`wan/modules/t5.py`
 * T5Encoder: `blocks.0.attn.q.weight`, …; convert the .pth to safetensors first; it has no config
 * file) and its mapping onto transformers' UMT5EncoderModel (`encoder.block.0.layer.0.SelfAttention.q.weight`,
 * …): a pure rename, and the config read from the tensor shapes.
 */
import { CheckpointError } from '../../src/errors.js';
import type { CheckpointConfig, ComponentLayout } from '../component-layout.js';
import type { TensorSource } from '../safetensors.js';

/** Which naming a umT5 checkpoint uses. */
export type UMT5KeyLayout = 'transformers' | 'original';

/** [original, transformers] paths outside the blocks. */
export const UMT5_TOP_LEVEL_RENAMES: ReadonlyArray<readonly [string, string]> = [
  ['token_embedding.weight', 'shared.weight'],
  ['norm.weight', 'encoder.final_layer_norm.weight'],
];

/** [original, transformers] paths inside a block (`blocks.<i>.` ↔ `encoder.block.<i>.`). */
export const UMT5_BLOCK_RENAMES: ReadonlyArray<readonly [string, string]> = [
  ['norm1.weight', 'layer.0.layer_norm.weight'],
  ['attn.q.weight', 'layer.0.SelfAttention.q.weight'],
  ['attn.k.weight', 'layer.0.SelfAttention.k.weight'],
  ['attn.v.weight', 'layer.0.SelfAttention.v.weight'],
  ['attn.o.weight', 'layer.0.SelfAttention.o.weight'],
  ['pos_embedding.embedding.weight', 'layer.0.SelfAttention.relative_attention_bias.weight'],
  ['norm2.weight', 'layer.1.layer_norm.weight'],
  ['ffn.gate.0.weight', 'layer.1.DenseReluDense.wi_0.weight'],
  ['ffn.fc1.weight', 'layer.1.DenseReluDense.wi_1.weight'],
  ['ffn.fc2.weight', 'layer.1.DenseReluDense.wo.weight'],
];

/** The token table's other transformers name (tied to `shared.weight`; some files store both). */
export const UMT5_EMBED_TOKENS_ALIAS = 'encoder.embed_tokens.weight';

/** The transformers name of an original Wan T5 encoder key; undefined if it has none. */
export function umt5OriginalToTransformersKey(key: string): string | undefined {
  const block = /^blocks\.(\d+)\.(.+)$/.exec(key);
  if (block) {
    const hit = UMT5_BLOCK_RENAMES.find(([orig]) => orig === block[2]);
    return hit ? `encoder.block.${block[1]}.${hit[1]}` : undefined;
  }
  return UMT5_TOP_LEVEL_RENAMES.find(([orig]) => orig === key)?.[1];
}

/** The original Wan name of a transformers umT5 encoder key; undefined if it has none. */
export function umt5TransformersToOriginalKey(key: string): string | undefined {
  const block = /^encoder\.block\.(\d+)\.(.+)$/.exec(key);
  if (block) {
    const hit = UMT5_BLOCK_RENAMES.find(([, hf]) => hf === block[2]);
    return hit ? `blocks.${block[1]}.${hit[0]}` : undefined;
  }
  if (key === UMT5_EMBED_TOKENS_ALIAS) return 'token_embedding.weight';
  return UMT5_TOP_LEVEL_RENAMES.find(([, hf]) => hf === key)?.[0];
}

/** Guesses the layout from the keys: `blocks.*` / `token_embedding.*` are the original's. */
export function detectUMT5Layout(keys: Iterable<string>): UMT5KeyLayout {
  let original = 0;
  let transformers = 0;
  for (const key of keys) {
    if (/^(blocks\.\d+\.|token_embedding\.)/.test(key) || key === 'norm.weight') original++;
    else if (/^(encoder\.|shared\.)/.test(key)) transformers++;
  }
  return original > transformers ? 'original' : 'transformers';
}

/**
 * The encoder's size from its tensor shapes (either naming): vocabulary and width from the token
 * table, heads and buckets from the relative position bias, head width, FFN width, block count; the
 * rest (max distance 128, eps 1e-6, gated GELU) are umT5's defaults.
 */
export function umt5ConfigFromShapes(source: TensorSource): CheckpointConfig {
  const shape = (...names: string[]): readonly number[] => {
    for (const n of names) if (source.has(n)) return source.info(n).shape;
    throw new CheckpointError(`no config.json beside it and no '${names.join("' or '")}' to read the model size from`, source.label);
  };
  const [vocab, dModel] = shape('token_embedding.weight', 'shared.weight', UMT5_EMBED_TOKENS_ALIAS);
  const [buckets, heads] = shape('blocks.0.pos_embedding.embedding.weight', 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight');
  const [inner] = shape('blocks.0.attn.q.weight', 'encoder.block.0.layer.0.SelfAttention.q.weight');
  const [dFf] = shape('blocks.0.ffn.fc1.weight', 'encoder.block.0.layer.1.DenseReluDense.wi_1.weight');
  const blocks = new Set(source.keys().map((k) => /^(?:blocks|encoder\.block)\.(\d+)\./.exec(k)?.[1]).filter((b) => b !== undefined));
  return {
    json: {
      model_type: 'umt5',
      vocab_size: vocab,
      d_model: dModel,
      num_heads: heads,
      d_kv: inner / heads,
      d_ff: dFf,
      num_layers: blocks.size,
      relative_attention_num_buckets: buckets,
    },
  };
}

/** Original Wan T5 encoder keys (`blocks.*`, `token_embedding.*`); the config from the shapes. */
export const UMT5_ORIGINAL: ComponentLayout = {
  name: 'original Wan keys',
  matches: (source) => detectUMT5Layout(source.keys()) === 'original',
  readsConfigFile: false,
  config: (_file, source) => umt5ConfigFromShapes(source),
  rename: () => (key) => umt5OriginalToTransformersKey(key) ?? key,
};
