import { defineConfig, field, type ConfigOf } from '../src/config/config-schema.js';
import { integer, oneOf, positiveInt, positiveNumber } from '../src/config/value-types.js';

/** The umT5 encoder settings: transformers' UMT5Config fields the encoder uses, defaults as transformers' (umt5-small). */
const FIELDS = {
  vocabSize: field('vocab_size', positiveInt, 250112),
  dModel: field('d_model', positiveInt, 512),
  /** Width of one attention head. */
  dKv: field('d_kv', positiveInt, 64),
  dFf: field('d_ff', positiveInt, 1024),
  numLayers: field('num_layers', positiveInt, 8),
  numHeads: field('num_heads', positiveInt, 6),
  /** Half for keys before the query, half after; the exact range is a quarter, so at least 4. */
  relativeAttentionNumBuckets: field('relative_attention_num_buckets', integer(4), 32),
  relativeAttentionMaxDistance: field('relative_attention_max_distance', positiveInt, 128),
  layerNormEpsilon: field('layer_norm_epsilon', positiveNumber, 1e-6),
  /** Only the gated tanh-GELU of umT5 is supported: 'gated-gelu' (or its spelled-out aliases). */
  feedForwardProj: field('feed_forward_proj', oneOf(['gated-gelu', 'gated-gelu_new', 'gated-gelu_pytorch_tanh']), 'gated-gelu'),
};

/** transformers' UMT5Config fields the encoder uses, in camelCase. */
export type UMT5Config = ConfigOf<typeof FIELDS>;

export type UMT5Preset = 'umt5-xxl';

/** Defaults, presets and reading of transformers' config.json (`model_type` umt5, or t5). */
export const UMT5Config = defineConfig<typeof FIELDS, UMT5Preset>(FIELDS, {
  identityKey: 'model_type',
  what: 'a umT5 encoder',
  dialects: [{ name: 'umt5', aliases: ['t5'] }],
  presets: (defaults) => ({
    /** google/umt5-xxl's config.json: the Wan text encoder. */
    'umt5-xxl': { ...defaults, vocabSize: 256384, dModel: 4096, dFf: 10240, numLayers: 24, numHeads: 64 },
  }),
});

/** The published encoder shapes (google/umt5-xxl config.json, the Wan text encoder). */
export const UMT5_PRESETS = UMT5Config.presets;
