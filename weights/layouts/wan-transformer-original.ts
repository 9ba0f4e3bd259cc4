/**
 * Key names of the Wan DiT in its two on-disk layouts: the original Wan repositories
 * (`wan/modules/model.py`: `blocks.0.self_attn.q.weight`, `head.head.weight`, …) and Diffusers
 * (`WanTransformer3DModel`: `blocks.0.attn1.to_q.weight`, `proj_out.weight`, …). The mapping is a
 * pure rename (no transposes); see Diffusers' `scripts/convert_wan_to_diffusers.py`.
 */

/** Which naming a transformer checkpoint uses. */
export type TransformerKeyLayout = 'diffusers' | 'original';

/** [original, Diffusers] module or parameter paths outside the blocks. */
export const TRANSFORMER_TOP_LEVEL_RENAMES: ReadonlyArray<readonly [string, string]> = [
  ['patch_embedding', 'patch_embedding'],
  ['text_embedding.0', 'condition_embedder.text_embedder.linear_1'],
  ['text_embedding.2', 'condition_embedder.text_embedder.linear_2'],
  ['time_embedding.0', 'condition_embedder.time_embedder.linear_1'],
  ['time_embedding.2', 'condition_embedder.time_embedder.linear_2'],
  ['time_projection.1', 'condition_embedder.time_proj'],
  ['head.modulation', 'scale_shift_table'],
  ['head.head', 'proj_out'],
];

/**
 * [original, Diffusers] paths inside `blocks.<i>.`. The original calls the norms norm1, norm3, norm2
 * in execution order: its norm3 (the affine cross-attention norm) is Diffusers' norm2, and its
 * parameter-free norm2 (before the FFN) is Diffusers' norm3.
 */
export const TRANSFORMER_BLOCK_RENAMES: ReadonlyArray<readonly [string, string]> = [
  ['self_attn.q', 'attn1.to_q'],
  ['self_attn.k', 'attn1.to_k'],
  ['self_attn.v', 'attn1.to_v'],
  ['self_attn.o', 'attn1.to_out.0'],
  ['self_attn.norm_q', 'attn1.norm_q'],
  ['self_attn.norm_k', 'attn1.norm_k'],
  ['cross_attn.q', 'attn2.to_q'],
  ['cross_attn.k', 'attn2.to_k'],
  ['cross_attn.v', 'attn2.to_v'],
  ['cross_attn.o', 'attn2.to_out.0'],
  ['cross_attn.norm_q', 'attn2.norm_q'],
  ['cross_attn.norm_k', 'attn2.norm_k'],
  ['norm1', 'norm1'],
  ['norm2', 'norm3'],
  ['norm3', 'norm2'],
  ['ffn.0', 'ffn.net.0.proj'],
  ['ffn.2', 'ffn.net.2'],
  ['modulation', 'scale_shift_table'],
];

/** Prefixes some single-file repacks (ComfyUI) put before every key. */
export const CHECKPOINT_KEY_PREFIXES: readonly string[] = ['model.diffusion_model.', 'diffusion_model.'];

const LEAVES = new Set(['weight', 'bias']);

function renameWith(path: string, table: ReadonlyArray<readonly [string, string]>, from: 0 | 1): string | undefined {
  const to = from === 0 ? 1 : 0;
  for (const entry of table) {
    const src = entry[from];
    if (path === src) return entry[to];
    if (path.startsWith(`${src}.`) && LEAVES.has(path.slice(src.length + 1))) return `${entry[to]}${path.slice(src.length)}`;
  }
  return undefined;
}

function renameKey(key: string, from: 0 | 1): string | undefined {
  const block = /^blocks\.(\d+)\.(.+)$/.exec(key);
  if (block) {
    const inner = renameWith(block[2], TRANSFORMER_BLOCK_RENAMES, from);
    return inner === undefined ? undefined : `blocks.${block[1]}.${inner}`;
  }
  return renameWith(key, TRANSFORMER_TOP_LEVEL_RENAMES, from);
}

/** The Diffusers name of an original Wan DiT key (prefix already stripped); undefined if it has none. */
export function originalToDiffusersKey(key: string): string | undefined {
  return renameKey(key, 0);
}

/** The original Wan name of a Diffusers DiT key; undefined if it has none. */
export function diffusersToOriginalKey(key: string): string | undefined {
  return renameKey(key, 1);
}

/** `key` without a leading repack prefix such as `model.diffusion_model.`. */
export function stripCheckpointPrefix(key: string): string {
  for (const p of CHECKPOINT_KEY_PREFIXES) if (key.startsWith(p)) return key.slice(p.length);
  return key;
}

/**
 * Guesses the layout of a DiT checkpoint from its keys (prefixes allowed): counts keys that only
 * the original names (`head.*`, `time_embedding.*`, `*.self_attn.*`, `*.modulation`, …) against
 * keys only Diffusers names (`condition_embedder.*`, `proj_out.*`, `*.attn1.*`, …).
 */
export function detectTransformerLayout(keys: Iterable<string>): TransformerKeyLayout {
  let original = 0;
  let diffusers = 0;
  for (const raw of keys) {
    const key = stripCheckpointPrefix(raw);
    if (/^(head|time_embedding|text_embedding|time_projection)\.|\.(self_attn|cross_attn)\.|\.modulation$|\.ffn\.[02]\./.test(key)) original++;
    else if (/^(condition_embedder|proj_out)\.|^scale_shift_table$|\.(attn1|attn2)\.|\.scale_shift_table$|\.ffn\.net\./.test(key)) diffusers++;
  }
  return original > diffusers ? 'original' : 'diffusers';
}
