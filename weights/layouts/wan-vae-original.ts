/**
 * The original Wan VAE layout (`Wan2.1_VAE.pth` / `Wan2.2_VAE.pth`, once converted to safetensors;
 * no config file) → Diffusers' `AutoencoderKLWan`, following Diffusers'
 * `scripts/convert_wan_to_diffusers.py` (convert_vae, convert_vae_22). The Wan2.1 decoder regrouping
 * is computed from the config instead of the script's hard-coded indices, so it also holds for
 * configs other than the published one. The config is the published one of the latent width.
 */
import type { ConfigJson } from '../../src/config/config-schema.js';
import type { CheckpointConfig, ComponentLayout } from '../component-layout.js';
import type { TensorSource } from '../safetensors.js';

/** What the renaming needs to know about the model. */
export interface WanVaeKeyLayout {
  /** Residual blocks per encoder level (the decoder has one more). */
  numResBlocks: number;
  /** Number of levels (dim_mult.length); every level but the last resamples. */
  numLevels: number;
  /** Wan2.2 layout (Down_/Up_ResidualBlock groups) rather than Wan2.1's flat lists. */
  isResidual: boolean;
}

const TOP_LEVEL: Record<string, string> = {
  conv1: 'quant_conv',
  conv2: 'post_quant_conv',
};

const RESIDUAL_PARTS: Array<[RegExp, string]> = [
  [/\.residual\.0\.gamma$/, '.norm1.gamma'],
  [/\.residual\.2\./, '.conv1.'],
  [/\.residual\.3\.gamma$/, '.norm2.gamma'],
  [/\.residual\.6\./, '.conv2.'],
  [/\.shortcut\./, '.conv_shortcut.'],
];

/** True when `keys` look like the original Wan VAE layout (encoder.conv1, decoder.middle, …). */
export function isOriginalWanVaeLayout(keys: Iterable<string>): boolean {
  for (const k of keys) {
    if (/^(encoder|decoder)\.(conv1|middle|head|downsamples|upsamples)\./.test(k) || /^conv[12]\.(weight|bias)$/.test(k)) return true;
  }
  return false;
}

/**
 * A rename function for loadWeights: original Wan key → Diffusers key. Keys it does not recognise
 * are returned unchanged (the loader then reports them as unexpected).
 */
export function wanVaeOriginalToDiffusers(layout: WanVaeKeyLayout): (key: string) => string {
  const { numResBlocks, numLevels, isResidual } = layout;
  // Wan2.1 decoder: flat index of decoder.upsamples → [level, position in level]
  const decoderFlat: Array<[number, number]> = [];
  for (let level = 0; level < numLevels; level++) {
    const size = numResBlocks + 1 + (level < numLevels - 1 ? 1 : 0);
    for (let p = 0; p < size; p++) decoderFlat.push([level, p]);
  }
  const upPart = (p: number) => (p <= numResBlocks ? `resnets.${p}` : isResidual ? 'upsampler' : 'upsamplers.0');
  const downPart = (p: number) => (p < numResBlocks ? `resnets.${p}` : 'downsampler');

  return (key: string): string => {
    const top = /^(conv1|conv2)\.(weight|bias)$/.exec(key);
    if (top) return `${TOP_LEVEL[top[1]]}.${top[2]}`;
    let k = key
      .replace(/^(encoder|decoder)\.conv1\./, '$1.conv_in.')
      .replace(/^(encoder|decoder)\.head\.0\./, '$1.norm_out.')
      .replace(/^(encoder|decoder)\.head\.2\./, '$1.conv_out.')
      .replace(/^(encoder|decoder)\.middle\.0\./, '$1.mid_block.resnets.0.')
      .replace(/^(encoder|decoder)\.middle\.1\./, '$1.mid_block.attentions.0.')
      .replace(/^(encoder|decoder)\.middle\.2\./, '$1.mid_block.resnets.1.');
    let m: RegExpExecArray | null;
    if (isResidual && (m = /^encoder\.downsamples\.(\d+)\.downsamples\.(\d+)\.(.*)$/.exec(k))) {
      k = `encoder.down_blocks.${m[1]}.${downPart(Number(m[2]))}.${m[3]}`;
    } else if (!isResidual && (m = /^encoder\.downsamples\.(\d+)\.(.*)$/.exec(k))) {
      k = `encoder.down_blocks.${m[1]}.${m[2]}`;
    } else if (isResidual && (m = /^decoder\.upsamples\.(\d+)\.upsamples\.(\d+)\.(.*)$/.exec(k))) {
      k = `decoder.up_blocks.${m[1]}.${upPart(Number(m[2]))}.${m[3]}`;
    } else if (!isResidual && (m = /^decoder\.upsamples\.(\d+)\.(.*)$/.exec(k))) {
      const at = decoderFlat[Number(m[1])];
      if (at) k = `decoder.up_blocks.${at[0]}.${upPart(at[1])}.${m[2]}`;
    }
    for (const [from, to] of RESIDUAL_PARTS) k = k.replace(from, to);
    return k;
  };
}

/** The published VAE of a latent width: Wan2.1_VAE (z 16; also Wan2.2-A14B's) or Wan2.2_VAE (z 48, TI2V-5B). */
const PRESET_BY_LATENT_WIDTH: Readonly<Record<number, string>> = { 16: 'wan2.1', 48: 'wan2.2' };

/** The published config whose latent width is that of `key` ([z, z, 1, 1, 1]), if any. */
export function presetForLatentWidth(source: TensorSource, key: string): CheckpointConfig | undefined {
  const z = source.has(key) ? source.info(key).shape[0] : undefined;
  const preset = z === undefined ? undefined : PRESET_BY_LATENT_WIDTH[z];
  return preset === undefined ? undefined : { preset };
}

/** What the renaming needs, from the model's config JSON. */
function keyLayoutOf(config: ConfigJson): WanVaeKeyLayout {
  return {
    numResBlocks: Number(config.num_res_blocks),
    numLevels: Array.isArray(config.dim_mult) ? config.dim_mult.length : 0,
    isResidual: config.is_residual === true,
  };
}

/** Original Wan VAE keys (`encoder.conv1`, `decoder.middle`, `conv2`, …). */
export const WAN_VAE_ORIGINAL: ComponentLayout = {
  name: 'original Wan keys',
  matches: (source) => isOriginalWanVaeLayout(source.keys()),
  readsConfigFile: false,
  config: (_file, source) => presetForLatentWidth(source, 'conv2.weight'),
  rename: (_source, config) => wanVaeOriginalToDiffusers(keyLayoutOf(config)),
};
