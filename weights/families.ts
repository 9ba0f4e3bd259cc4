/**
 * The model families and other components the library reads, as data: where their files are and,
 * for checkpoints, the layouts they come in (tried in order, the last one the fallback). A new
 * layout is one file in layouts/ and one entry here.
 */
import type { ComponentFamily, ComponentFiles } from './component-layout.js';
import { stripCheckpointPrefix } from './layouts/checkpoint-prefix.js';
import { UMT5_EMBED_TOKENS_ALIAS, UMT5_ORIGINAL } from './layouts/umt5-original.js';
import { UMT5_TRANSFORMERS } from './layouts/umt5-transformers.js';
import { WAN_TRANSFORMER_DIFFUSERS } from './layouts/wan-transformer-diffusers.js';
import { WAN_TRANSFORMER_ORIGINAL } from './layouts/wan-transformer-original.js';
import { WAN_VAE_DIFFUSERS } from './layouts/wan-vae-diffusers.js';
import { WAN_VAE_ORIGINAL } from './layouts/wan-vae-original.js';

/** The Wan DiT: Diffusers `transformer/`, an original expert folder or single-model root, or one file. */
export const WAN_TRANSFORMER_FAMILY: ComponentFamily = {
  name: 'Wan transformer',
  subfolders: ['transformer'],
  configFile: 'config.json',
  stem: 'diffusion_pytorch_model',
  recognizes: (keys) => keys.some((k) => stripCheckpointPrefix(k) === 'patch_embedding.weight'),
  layouts: [WAN_TRANSFORMER_ORIGINAL, WAN_TRANSFORMER_DIFFUSERS],
  presetHint: "a preset such as WAN_TRANSFORMER_PRESETS['wan2.1-t2v-1.3b']",
};

/** The Wan VAE (2.1 and 2.2): Diffusers `vae/`, or `Wan2.x_VAE.safetensors` in an original release root. */
export const WAN_VAE_FAMILY: ComponentFamily = {
  name: 'Wan VAE',
  subfolders: ['vae'],
  configFile: 'config.json',
  stem: 'diffusion_pytorch_model',
  releaseFiles: /^Wan2\.[12]_VAE\.(safetensors|pth)$/i,
  recognizes: (keys) => keys.some((k) => k.startsWith('decoder.') || k.startsWith('encoder.conv')),
  layouts: [WAN_VAE_ORIGINAL, WAN_VAE_DIFFUSERS],
  presetHint: "'wan2.1', 'wan2.2'",
};

/** The umT5 text encoder: transformers `text_encoder/`, or `models_t5_*.safetensors` in an original release root. */
export const UMT5_FAMILY: ComponentFamily = {
  name: 'umT5 encoder',
  subfolders: ['text_encoder'],
  configFile: 'config.json',
  stem: 'model',
  releaseFiles: /^models_t5_.*\.(safetensors|pth)$/i,
  recognizes: (keys) => keys.some((k) => k === 'shared.weight' || k === 'token_embedding.weight' || k === UMT5_EMBED_TOKENS_ALIAS),
  layouts: [UMT5_ORIGINAL, UMT5_TRANSFORMERS],
  presetHint: "'umt5-xxl'",
};

/** Every checkpoint family, for inspect. */
export const COMPONENT_FAMILIES: readonly ComponentFamily[] = [WAN_TRANSFORMER_FAMILY, WAN_VAE_FAMILY, UMT5_FAMILY];

/** tokenizer.json (and tokenizer_config.json beside it): Diffusers `tokenizer/`, original `google/umt5-xxl/`. */
export const TOKENIZER_FILES: ComponentFiles = {
  name: 'tokenizer',
  subfolders: ['tokenizer', 'google/umt5-xxl'],
  configFile: 'tokenizer.json',
  hint: 'a spiece.model alone is not supported',
};

/** scheduler_config.json: Diffusers `scheduler/`. */
export const SCHEDULER_FILES: ComponentFiles = {
  name: 'scheduler',
  subfolders: ['scheduler'],
  configFile: 'scheduler_config.json',
};
