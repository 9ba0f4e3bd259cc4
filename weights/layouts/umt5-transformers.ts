import type { ComponentLayout } from '../component-layout.js';
import { UMT5_EMBED_TOKENS_ALIAS, umt5ConfigFromShapes } from './umt5-original.js';

/**
 * transformers' UMT5EncoderModel (`text_encoder/`: config.json + model*.safetensors): the model's
 * own names. `encoder.embed_tokens.weight` stands in for `shared.weight` when that is absent (and is
 * skipped when both are stored); a full encoder-decoder file's `decoder.*` and `lm_head.*` are
 * skipped. Without a config.json, the size is read from the shapes.
 */
export const UMT5_TRANSFORMERS: ComponentLayout = {
  name: 'transformers keys',
  matches: () => true,
  readsConfigFile: true,
  config: (file, source) => (file !== undefined ? { json: file } : umt5ConfigFromShapes(source)),
  rename: (source) => {
    const hasShared = source.has('shared.weight');
    return (key) => {
      if (key === UMT5_EMBED_TOKENS_ALIAS) return hasShared ? undefined : 'shared.weight';
      return /^(decoder|lm_head)\./.test(key) ? undefined : key;
    };
  },
};
