import * as path from 'node:path';
import { AutoencoderKLWanConfig, type AutoencoderKLWanPreset } from '../../layers/autoencoder-kl-wan-config.js';
import { WanTransformerConfig } from '../../layers/wan-transformer-config.js';
import { locateComponent, openComponent, readConfigObject } from '../../weights/component.js';
import { pathKind } from '../../weights/file-system.js';
import { WAN_TRANSFORMER_FAMILY, WAN_VAE_FAMILY } from '../../weights/families.js';
import { CheckpointError, ConfigError } from '../errors.js';
import type { ModelIndex, SamplingDefaults } from './model-index.js';
import type { PipelineTransformer, PipelineVae } from './pipeline-components.js';

/**
 * What settings and their checks need to know of a model, without its weights: the latent space,
 * the DiT's patch and widths, the VAE's factors and widths, the experts, and the defaults. The
 * pipeline builds it from its loaded components; `readPipelineSpec` from the configs of a model
 * folder, so that a call can be resolved before any weight is read.
 */
export interface PipelineSpec {
  /** Noise channels C of the latents (the DiT's out_channels). */
  readonly latentChannels: number;
  /** Image-condition channels after the noise (in_channels − out_channels): 0, or the VAE's temporal factor + z_dim (I2V-A14B). */
  readonly conditionChannels: number;
  /** (pt, ph, pw). */
  readonly patchSize: readonly [number, number, number];
  readonly textDim: number;
  /** The DiT's heads, width D and feed-forward width, when known (memory check). */
  readonly heads: number | undefined;
  readonly innerDim: number | undefined;
  readonly ffnDim: number | undefined;
  readonly scaleFactorSpatial: number;
  readonly scaleFactorTemporal: number;
  /** What the VAE of the pipeline can do: nothing (none loaded), decode, or also encode (image conditions). */
  readonly vae: 'none' | 'decode' | 'encode';
  /** Channels of the VAE's outermost stage (decoder_base_dim or base_dim × dim_mult[0]) and its spatial patchify factor (memory check). */
  readonly vaeOuterWidth: number | undefined;
  readonly vaePatch: number;
  /** `transformer` runs while t ≥ boundaryRatio·numTrainTimesteps, `transformer_2` after; null: one expert. */
  readonly boundaryRatio: number | null;
  readonly numTrainTimesteps: number;
  /** Per-token timesteps [B, L] (Wan2.2-TI2V-5B). */
  readonly expandTimesteps: boolean;
  readonly hasTextEncoder: boolean;
  readonly defaults: SamplingDefaults;
}

/** Diffusers' WanPipeline.__call__ defaults, for a pipeline built from components without any. */
export const FALLBACK_DEFAULTS: SamplingDefaults = { numInferenceSteps: 50, guidanceScale: 5.0, guidanceScale2: undefined, numFrames: 81, fps: 16, height: 480, width: 832, shift: undefined, maxSequenceLength: 512 };

/** The parts a spec is made of: the DiT's and the VAE's configs, whatever else the pipeline holds. */
export interface SpecParts {
  transformer: PipelineTransformer['config'];
  /** The loaded VAE's config, and whether it encodes; undefined when none is loaded. */
  vae?: { config: PipelineVae['config']; encodes: boolean };
  /** The VAE's factors when none is loaded (default 8 spatial, 4 temporal). */
  vaeScaleFactors?: { spatial: number; temporal: number };
  boundaryRatio: number | null;
  numTrainTimesteps: number;
  expandTimesteps: boolean;
  hasTextEncoder: boolean;
  defaults: SamplingDefaults;
}

/** The spec of these parts, checked for consistency (VAE z_dim, image-condition channels). */
export function specOf(p: SpecParts): PipelineSpec {
  const t = p.transformer;
  const latentChannels = t.outChannels ?? t.inChannels;
  const conditionChannels = t.inChannels - latentChannels;
  const factors = p.vae ? { spatial: p.vae.config.scaleFactorSpatial, temporal: p.vae.config.scaleFactorTemporal } : (p.vaeScaleFactors ?? { spatial: 8, temporal: 4 });
  if (p.vae && p.vae.config.zDim !== latentChannels) {
    throw new ConfigError(`the VAE's z_dim (${p.vae.config.zDim}) differs from the transformer's out_channels (${latentChannels})`);
  }
  if (conditionChannels < 0) throw new ConfigError(`the transformer's in_channels (${t.inChannels}) is below its out_channels (${latentChannels})`);
  if (conditionChannels > 0) {
    if (p.expandTimesteps) throw new ConfigError('a transformer with image-condition channels (in_channels > out_channels) cannot also take per-token timesteps (expand_timesteps)');
    const expected = factors.temporal + latentChannels;
    if (conditionChannels !== expected) {
      throw new ConfigError(
        `the transformer takes ${t.inChannels} input channels, ${latentChannels} of noise and ${conditionChannels} of condition; an image condition has ${factors.temporal} mask + ${latentChannels} latent channels (${expected})`,
      );
    }
  }
  const [pt = 1, ph = 2, pw = 2] = t.patchSize;
  const heads = t.numAttentionHeads;
  const vc = p.vae?.config;
  const outer = vc?.decoderBaseDim ?? (vc?.baseDim !== undefined ? vc.baseDim * (vc.dimMult?.[0] ?? 1) : undefined);
  return {
    latentChannels,
    conditionChannels,
    patchSize: [pt, ph, pw],
    textDim: t.textDim,
    heads,
    innerDim: heads !== undefined && t.attentionHeadDim !== undefined ? heads * t.attentionHeadDim : undefined,
    ffnDim: t.ffnDim,
    scaleFactorSpatial: factors.spatial,
    scaleFactorTemporal: factors.temporal,
    vae: !p.vae ? 'none' : p.vae.encodes ? 'encode' : 'decode',
    vaeOuterWidth: outer,
    vaePatch: vc?.patchSize ?? 1,
    boundaryRatio: p.boundaryRatio,
    numTrainTimesteps: p.numTrainTimesteps,
    expandTimesteps: p.expandTimesteps,
    hasTextEncoder: p.hasTextEncoder,
    defaults: p.defaults,
  };
}

/**
 * The DiT config of a folder or file: its config.json, else (a single file without one, ComfyUI's)
 * the config read from the header's tensor shapes (openComponent; no tensor data is read).
 */
export function transformerConfig(location: string): WanTransformerConfig {
  const found = locateComponent(location, WAN_TRANSFORMER_FAMILY);
  if (found.configFile) return WanTransformerConfig.fromJSON(readConfigObject(found.configFile));
  const opened = openComponent(location, WAN_TRANSFORMER_FAMILY);
  try {
    const c = opened.config;
    if (c === undefined || !('json' in c)) throw new CheckpointError('the transformer has no config.json, and its tensor shapes give none (no patch_embedding.weight)', opened.checkpoint);
    return WanTransformerConfig.fromJSON(c.json);
  } finally {
    opened.close();
  }
}

/**
 * The VAE config of a Diffusers vae/ folder; of a single file without config (ComfyUI's
 * wan_2.1_vae / wan2.2_vae, an original Wan2.x_VAE) the published one its header's latent width
 * names, else (a header without that tensor) the one its file name names: Wan2.2 is z48, 16×.
 */
function vaeConfig(location: string): AutoencoderKLWanConfig {
  const found = locateComponent(location, WAN_VAE_FAMILY);
  if (found.configFile) return AutoencoderKLWanConfig.fromJSON(readConfigObject(found.configFile));
  const fromHeader = found.checkpoint && pathKind(found.checkpoint) === 'file' ? headerConfig(location) : undefined;
  if (fromHeader) return fromHeader;
  return AutoencoderKLWanConfig.resolve(/2\.2/.test(path.basename(found.checkpoint ?? location)) ? 'wan2.2' : 'wan2.1');
}

/** The VAE config a checkpoint's header gives (a published one by latent width), if any. */
function headerConfig(location: string): AutoencoderKLWanConfig | undefined {
  const opened = openComponent(location, WAN_VAE_FAMILY);
  try {
    const c = opened.config;
    return c === undefined ? undefined : 'json' in c ? AutoencoderKLWanConfig.fromJSON(c.json) : AutoencoderKLWanConfig.resolve(c.preset as AutoencoderKLWanPreset);
  } finally {
    opened.close();
  }
}

/** Options of readPipelineSpec: which components will be loaded (as WanPipelineLoadOptions). */
export interface ReadSpecOptions {
  loadVae?: boolean;
  loadTextEncoder?: boolean;
}

/**
 * The spec of a model folder from its small JSON files only (model_index.json through `index`, the
 * transformer's and the VAE's config.json, found by locateComponent) or, for single files without
 * one, their safetensors headers; no tensor data is read.
 */
export function readPipelineSpec(index: ModelIndex, options: ReadSpecOptions = {}): PipelineSpec {
  const vae = index.vae ? vaeConfig(index.vae) : undefined;
  return specOf({
    transformer: transformerConfig(index.transformer),
    vae: vae && (options.loadVae ?? true) ? { config: vae, encodes: true } : undefined,
    vaeScaleFactors: vae ? { spatial: vae.scaleFactorSpatial, temporal: vae.scaleFactorTemporal } : undefined,
    boundaryRatio: index.boundaryRatio,
    numTrainTimesteps: index.numTrainTimesteps,
    expandTimesteps: index.expandTimesteps,
    hasTextEncoder: (options.loadTextEncoder ?? true) && index.textEncoder !== undefined,
    defaults: index.defaults,
  });
}

/** Whether two specs describe the same model for settings and checks. */
export function sameSpec(a: PipelineSpec, b: PipelineSpec): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
