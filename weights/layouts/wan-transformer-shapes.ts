/**
 * The DiT config read from the tensor shapes of a checkpoint in the original Wan key names, for
 * single files that carry no config.json (ComfyUI's `wan2.1_t2v_1.3B_fp16.safetensors`,
 * `wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors`, …; keys with or without `model.diffusion_model.`).
 * As ComfyUI's model detection: the heads are 128 wide in every published Wan DiT.
 */
import type { ConfigJson } from '../../src/config/config-schema.js';
import { shapeText } from '../../src/describe.js';
import { ConfigError } from '../../src/errors.js';
import type { CheckpointConfig } from '../component-layout.js';
import type { TensorSource } from '../safetensors.js';
import { stripCheckpointPrefix } from './checkpoint-prefix.js';

/** The head width of every published Wan DiT (1.3B: 1536 / 12, 5B: 3072 / 24, 14B: 5120 / 40). */
export const WAN_HEAD_DIM = 128;

/** The shapes of a DiT checkpoint's tensors by their original names (a repack prefix stripped). */
function shapesByName(source: TensorSource): (name: string) => readonly number[] | undefined {
  const raw = new Map(source.keys().map((k) => [stripCheckpointPrefix(k), k] as const));
  return (name) => {
    const key = raw.get(name);
    return key === undefined ? undefined : source.info(key).shape;
  };
}

/** The DiT width D: `patch_embedding.weight` is [D, in_dim, pt, ph, pw]; undefined without it. */
export function wanTransformerWidth(source: TensorSource): number | undefined {
  return shapesByName(source)('patch_embedding.weight')?.[0];
}

/**
 * The config in Diffusers' keys from the shapes of the original names; undefined without
 * `patch_embedding.weight`. Shapes are PyTorch's [out, in]:
 * - `patch_embedding.weight` [D, in_dim, pt, ph, pw]: width, in_channels (16 T2V, 36 I2V, 48 TI2V-5B), patch size;
 * - `head.head.weight` [out_dim·pt·ph·pw, D]: out_channels;
 * - `blocks.0.ffn.0.weight` [ffn_dim, D]; `text_embedding.0.weight` [D, text_dim]; `time_embedding.0.weight` [D, freq_dim];
 * - `blocks.<i>.*`: num_layers; heads D / 128 (omitted when D is no multiple of 128);
 * - `img_emb.proj.1.weight` [D, image_dim] (Wan2.1 I2V's CLIP projection): image_dim, and added_kv_proj_dim D;
 *   `img_emb.emb_pos` [1, n, image_dim] (FLF2V): pos_embed_seq_len n;
 * - `blocks.0.norm3.weight` present: cross_attn_norm; `blocks.0.self_attn.norm_q.weight` present: qk_norm.
 */
export function wanTransformerConfigFromShapes(source: TensorSource): CheckpointConfig | undefined {
  const shape = shapesByName(source);
  const patch = shape('patch_embedding.weight');
  if (patch === undefined) return undefined;
  const need = (name: string, rank: number): readonly number[] => {
    const s = shape(name);
    if (s === undefined || s.length !== rank) {
      throw new ConfigError(`${source.label}: no config.json beside it, and '${name}' (rank ${rank}) to read the DiT config from is ${s === undefined ? 'missing' : shapeText(s)}`);
    }
    return s;
  };
  const [dim, inChannels, pt, ph, pw] = need('patch_embedding.weight', 5);
  const [headOut] = need('head.head.weight', 2);
  const [ffnDim] = need('blocks.0.ffn.0.weight', 2);
  const [, textDim] = need('text_embedding.0.weight', 2);
  const [, freqDim] = need('time_embedding.0.weight', 2);
  const blocks = new Set(source.keys().map((k) => /^blocks\.(\d+)\./.exec(stripCheckpointPrefix(k))?.[1]).filter((b) => b !== undefined));
  const imageDim = shape('img_emb.proj.1.weight')?.[1];
  const posEmbed = shape('img_emb.emb_pos')?.[1];
  const heads = dim % WAN_HEAD_DIM === 0 ? { num_attention_heads: dim / WAN_HEAD_DIM, attention_head_dim: WAN_HEAD_DIM } : {};
  const json: ConfigJson = {
    _class_name: 'WanTransformer3DModel',
    patch_size: [pt, ph, pw],
    ...heads,
    in_channels: inChannels,
    out_channels: headOut / (pt * ph * pw),
    text_dim: textDim,
    freq_dim: freqDim,
    ffn_dim: ffnDim,
    num_layers: blocks.size,
    cross_attn_norm: shape('blocks.0.norm3.weight') !== undefined,
    qk_norm: shape('blocks.0.self_attn.norm_q.weight') !== undefined ? 'rms_norm_across_heads' : null,
    image_dim: imageDim ?? null,
    added_kv_proj_dim: imageDim === undefined ? null : dim,
    pos_embed_seq_len: posEmbed ?? null,
  };
  return { json };
}

/**
 * Checks a resolved config's heads against the width the checkpoint's shapes give: the heads of a
 * width that is no multiple of 128 cannot be read from the shapes, so the caller names them.
 */
export function checkWanTransformerHeads(source: TensorSource, config: ConfigJson): void {
  const dim = wanTransformerWidth(source);
  const heads = Number(config.num_attention_heads);
  const headDim = Number(config.attention_head_dim);
  if (dim === undefined || heads * headDim === dim) return;
  throw new ConfigError(
    `${source.label}: the DiT is ${dim} wide (patch_embedding.weight), not num_attention_heads ${heads} × attention_head_dim ${headDim}; ` +
      `its heads cannot be read from the shapes${dim % WAN_HEAD_DIM === 0 ? '' : ` (${dim} is no multiple of the published ${WAN_HEAD_DIM}-wide heads)`}: ` +
      'pass options.config { numAttentionHeads, attentionHeadDim }',
  );
}
