/**
 * Key names of the umT5 encoder in its two on-disk layouts: transformers' UMT5EncoderModel
 * (`text_encoder/` of a Diffusers repo: `encoder.block.0.layer.0.SelfAttention.q.weight`, …) and
 * the original Wan checkpoint `models_t5_umt5-xxl-enc-bf16.pth` (`wan/modules/t5.py` T5Encoder:
 * `blocks.0.attn.q.weight`, …; convert the .pth to safetensors first). A pure rename.
 */

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
 * The loader's rename for a umT5 encoder checkpoint with these keys: original names are mapped to
 * transformers', `encoder.embed_tokens.weight` stands in for `shared.weight` when that is absent
 * (and is skipped when both are stored), and a full encoder-decoder file's `decoder.*` and
 * `lm_head.*` are skipped. Unknown keys are passed through, so the loader reports them.
 */
export function umt5CheckpointRename(keys: readonly string[]): (key: string) => string | undefined {
  const layout = detectUMT5Layout(keys);
  const hasShared = keys.includes('shared.weight') || keys.includes('token_embedding.weight');
  return (key) => {
    if (layout === 'original') return umt5OriginalToTransformersKey(key) ?? key;
    if (key === UMT5_EMBED_TOKENS_ALIAS) return hasShared ? undefined : 'shared.weight';
    if (/^(decoder|lm_head)\./.test(key)) return undefined;
    return key;
  };
}
