import { defineConfig, field, type ConfigOf } from '../src/config/config-schema.js';
import { nullable, oneOf, positiveInt, positiveNumber, triple, boolean } from '../src/config/value-types.js';
import { diffusersTransformerConfig } from '../weights/layouts/wan-transformer-original.js';

/** The DiT settings: Diffusers' WanTransformer3DModel config, defaults as Diffusers' (the 14B shape). */
const FIELDS = {
  /** (pt, ph, pw). */
  patchSize: field('patch_size', triple(positiveInt, 'positive integers'), [1, 2, 2]),
  numAttentionHeads: field('num_attention_heads', positiveInt, 40),
  attentionHeadDim: field('attention_head_dim', positiveInt, 128),
  inChannels: field('in_channels', positiveInt, 16),
  /** null or absent in the JSON: in_channels. */
  outChannels: field('out_channels', positiveInt, 16, { sameAs: 'inChannels' }),
  textDim: field('text_dim', positiveInt, 4096),
  freqDim: field('freq_dim', positiveInt, 256),
  ffnDim: field('ffn_dim', positiveInt, 13824),
  numLayers: field('num_layers', positiveInt, 40),
  crossAttnNorm: field('cross_attn_norm', boolean, true),
  /** 'rms_norm_across_heads' (every published model) or null for no q/k norm. */
  qkNorm: field('qk_norm', nullable(oneOf(['rms_norm_across_heads'])), 'rms_norm_across_heads'),
  eps: field('eps', positiveNumber, 1e-6),
  /** Image-to-video CLIP conditioning (Wan2.1 I2V); must be null here. */
  imageDim: field('image_dim', nullable(positiveInt), null),
  /** Image-to-video key/value projections; must be null here. */
  addedKvProjDim: field('added_kv_proj_dim', nullable(positiveInt), null),
  ropeMaxSeqLen: field('rope_max_seq_len', positiveInt, 1024),
  posEmbedSeqLen: field('pos_embed_seq_len', nullable(positiveInt), null),
};

/** The DiT hyper-parameters: Diffusers' WanTransformer3DModel config fields in camelCase. */
export type WanTransformerConfig = ConfigOf<typeof FIELDS>;

const SCHEMA = defineConfig(FIELDS, {
  what: 'a Wan transformer',
  dialects: [{ name: 'WanTransformer3DModel', aliases: ['WanModel'] }],
  check: (c, name) => {
    if (c.attentionHeadDim % 2 !== 0) return `${name('attentionHeadDim')} must be even for rotary embeddings, got ${c.attentionHeadDim}`;
    if (c.imageDim !== null || c.addedKvProjDim !== null) {
      return (
        `image-to-video conditioning (${name('imageDim')} ${c.imageDim}, ${name('addedKvProjDim')} ${c.addedKvProjDim}) is not supported; ` +
        'use a text-to-video checkpoint (image_dim and added_kv_proj_dim null)'
      );
    }
    return undefined;
  },
});

/**
 * Builds, reads and checks WanTransformerConfig objects. fromJSON reads Diffusers' config.json
 * (`_class_name` WanTransformer3DModel) and the original one (`_class_name` WanModel: `dim`,
 * `num_heads`, `in_dim`, …, translated by the original layout); missing fields take Diffusers' defaults.
 */
export const WanTransformerConfig = {
  ...SCHEMA,
  fromJSON: (json: unknown): WanTransformerConfig =>
    SCHEMA.fromJSON(typeof json === 'object' && json !== null && !Array.isArray(json) ? diffusersTransformerConfig(json as Record<string, unknown>) : json),
};

function preset(numAttentionHeads: number, ffnDim: number, numLayers: number, channels: number): WanTransformerConfig {
  return { ...SCHEMA.getConfig(SCHEMA.defaults), numAttentionHeads, ffnDim, numLayers, inChannels: channels, outChannels: channels };
}

/** The published DiT shapes (see the models' config.json). 'wan2.2-t2v-a14b' is each of its two experts. */
export const PRESETS = {
  'wan2.1-t2v-1.3b': preset(12, 8960, 30, 16),
  'wan2.1-t2v-14b': preset(40, 13824, 40, 16),
  'wan2.2-t2v-a14b': preset(40, 13824, 40, 16),
  'wan2.2-ti2v-5b': preset(24, 14336, 30, 48),
} as const satisfies Record<string, WanTransformerConfig>;

export type WanTransformerPreset = keyof typeof PRESETS;
