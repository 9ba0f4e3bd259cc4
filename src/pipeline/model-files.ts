import * as path from 'node:path';
import { pathKind } from '../../weights/file-system.js';
import { ConfigError } from '../errors.js';
import { locateTokenizer } from '../text/tokenizer-location.js';
import { wanReleaseSettings, type ModelIndex } from './model-index.js';
import { transformerConfig } from './pipeline-spec.js';

/**
 * Components given one by one, as ComfyUI ships them (`wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors`,
 * `wan_2.1_vae.safetensors`, `umt5_xxl_fp8_e4m3fn_scaled.safetensors`): each a .safetensors file
 * (original or Diffusers keys; config.json beside it, else the config read from its header) or a
 * component folder. Without a model folder they are the whole model; with one they replace its components.
 */
export interface ModelFiles {
  /** The DiT, or the high-noise expert of a two-expert model (CLI `--transformer`). */
  transformer?: string;
  /** The low-noise expert (CLI `--transformer-2`). */
  transformer2?: string;
  /** The Wan VAE (CLI `--vae`). */
  vae?: string;
  /** The umT5 encoder (CLI `--text-encoder`). */
  textEncoder?: string;
  /**
   * tokenizer.json, its folder, or a Diffusers model folder (CLI `--tokenizer`); default the model
   * folder's, else google/umt5-xxl or Wan-AI/Wan2.1-T2V-1.3B-Diffusers in the HF hub cache.
   */
  tokenizer?: string;
  /** Two experts: the expert split; default Wan2.2-A14B's, 0.875 (T2V) or 0.9 (I2V), or the model folder's. */
  boundaryRatio?: number;
}

/** The CLI flag of each ModelFiles field, for messages. */
const FLAGS: Record<keyof ModelFiles, string> = {
  transformer: '--transformer',
  transformer2: '--transformer-2',
  vae: '--vae',
  textEncoder: '--text-encoder',
  tokenizer: '--tokenizer',
  boundaryRatio: '--boundary-ratio',
};

/** Whether any component is given. */
export function hasModelFiles(files: ModelFiles): boolean {
  return Object.values(files).some((v) => v !== undefined);
}

/**
 * The model index of `files` over `base` (a model folder's index, or none): each given component
 * replaces the folder's; without a folder the settings are the original Wan release's for the kind
 * the DiT's header says (two experts: A14B; in_channels > out_channels: image-to-video; 48 latent
 * channels alone: TI2V-5B), the scheduler its UniPC flow config (FlowUniPCMultistepScheduler, shift
 * 12 for T2V-A14B, else 5). Only headers are read. A given text encoder needs a tokenizer
 * (locateTokenizer: `--tokenizer`, the folder's, the HF cache), else a ConfigError.
 */
export function withModelFiles(base: ModelIndex | undefined, files: ModelFiles, env: Readonly<Record<string, string | undefined>>): ModelIndex {
  for (const key of ['transformer', 'transformer2', 'vae', 'textEncoder'] as const) {
    const p = files[key];
    if (p !== undefined) checkComponentPath(p, FLAGS[key]);
  }
  const transformer = files.transformer ?? base?.transformer;
  if (transformer === undefined) throw new ConfigError(`${FLAGS.transformer} FILE is required without --model (a model folder)`);
  const transformer2 = files.transformer2 ?? base?.transformer2;
  const vae = files.vae ?? base?.vae;
  const textEncoder = files.textEncoder ?? base?.textEncoder;
  const tokenizer =
    textEncoder === undefined ? base?.tokenizer : files.tokenizer !== undefined || base?.tokenizer === undefined ? locateTokenizer(files.tokenizer, env) : base.tokenizer;
  // in/out channels from config.json or the header: [D, in, pt, ph, pw] of patch_embedding, head.head's rows
  const dit = transformerConfig(transformer);
  const latent = dit.outChannels ?? dit.inChannels;
  const i2v = dit.inChannels > latent;
  const release = wanReleaseSettings(transformer2 !== undefined, i2v, transformer2 === undefined && !i2v && latent === 48);
  const settings = base ?? { layout: 'files' as const, root: path.dirname(path.resolve(transformer)), className: i2v ? 'WanImageToVideoPipeline' : 'WanPipeline', ...release };
  const boundaryRatio = files.boundaryRatio ?? (transformer2 === undefined ? null : (settings.boundaryRatio ?? release.boundaryRatio));
  if (boundaryRatio !== null && !(boundaryRatio > 0 && boundaryRatio < 1)) throw new ConfigError(`${FLAGS.boundaryRatio}: got ${boundaryRatio}, expected a number in (0, 1)`);
  if (files.boundaryRatio !== undefined && transformer2 === undefined) throw new ConfigError(`${FLAGS.boundaryRatio} is for two experts: give ${FLAGS.transformer2} too`);
  return {
    ...settings,
    boundaryRatio,
    transformer,
    transformer2,
    vae,
    textEncoder,
    tokenizer,
  };
}

/** A component path must be a file or folder. */
function checkComponentPath(p: string, flag: string): void {
  if (pathKind(p) === undefined) throw new ConfigError(`${flag} ${p}: no such file or folder`);
}
