import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { CheckpointError, ConfigError, ShapeError } from '../src/errors.js';
import { loadWeights } from '../weights/load.js';
import { openCheckpoint } from '../weights/sharded.js';
import type { TensorSource } from '../weights/safetensors.js';
import { isOriginalWanVaeLayout, wanVaeOriginalToDiffusers } from '../weights/wan-vae-keys.js';
import { WanModule } from './module.js';
import { CausalCache, WanCausalConv3d } from './wan-causal-conv3d.js';
import { WanDecoder3d } from './wan-decoder3d.js';
import { WanEncoder3d } from './wan-encoder3d.js';
import { configFieldReader, configObject, readJsonFile } from './config-json.js';

/** The VAE hyper-parameters: Diffusers' AutoencoderKLWan config fields in camelCase. */
export interface AutoencoderKLWanConfig {
  baseDim: number;
  /** Decoder base width; null = baseDim. */
  decoderBaseDim: number | null;
  zDim: number;
  dimMult: number[];
  numResBlocks: number;
  attnScales: number[];
  /** Per downsampling level, whether it halves time too (Diffusers' spelling). */
  temperalDownsample: boolean[];
  /** Inference ignores it (0 in every Wan VAE). */
  dropout: number;
  latentsMean: number[];
  latentsStd: number[];
  /** Wan2.2 layout: residual down/up blocks with AvgDown3D / DupUp3D shortcuts. */
  isResidual: boolean;
  /** Encoder input channels: video channels × patchSize² (3 for Wan2.1, 12 for Wan2.2). */
  inChannels: number;
  /** Decoder output channels, before unpatchify. */
  outChannels: number;
  /** Spatial patchify factor applied to the video before the encoder (2 for Wan2.2), or null. */
  patchSize: number | null;
  scaleFactorTemporal: number;
  scaleFactorSpatial: number;
}

export type AutoencoderKLWanPreset = 'wan2.1' | 'wan2.2';

const WAN21: AutoencoderKLWanConfig = {
  baseDim: 96,
  decoderBaseDim: null,
  zDim: 16,
  dimMult: [1, 2, 4, 4],
  numResBlocks: 2,
  attnScales: [],
  temperalDownsample: [false, true, true],
  dropout: 0,
  latentsMean: [
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497,
    0.2503, -0.2921,
  ],
  latentsStd: [
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251,
    1.916,
  ],
  isResidual: false,
  inChannels: 3,
  outChannels: 3,
  patchSize: null,
  scaleFactorTemporal: 4,
  scaleFactorSpatial: 8,
};

const WAN22: AutoencoderKLWanConfig = {
  ...WAN21,
  baseDim: 160,
  decoderBaseDim: 256,
  zDim: 48,
  latentsMean: [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891, 0.157, -0.0098,
    0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502, -0.2055, -0.0322, 0.1109, 0.1567,
    -0.0729, 0.0899, -0.2799, -0.123, -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.052, 0.3748, 0.0152, 0.1957,
    0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
  ],
  latentsStd: [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.499, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454,
    0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659, 0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999,
    0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.06, 0.3943, 0.5537, 0.5444,
    0.4089, 0.7468, 0.7744,
  ],
  isResidual: true,
  inChannels: 12,
  outChannels: 12,
  patchSize: 2,
  scaleFactorSpatial: 16,
};

/**
 * The published VAEs: 'wan2.1' (Wan2.1_VAE, used by Wan2.1 and Wan2.2-A14B; Diffusers' defaults) and
 * 'wan2.2' (Wan2.2_VAE of TI2V-5B; `vae22_diffusers_config` of Diffusers' conversion script).
 */
export const WAN_VAE_PRESETS: Readonly<Record<AutoencoderKLWanPreset, Readonly<AutoencoderKLWanConfig>>> = { 'wan2.1': WAN21, 'wan2.2': WAN22 };

const SNAKE: Record<keyof AutoencoderKLWanConfig, string> = {
  baseDim: 'base_dim',
  decoderBaseDim: 'decoder_base_dim',
  zDim: 'z_dim',
  dimMult: 'dim_mult',
  numResBlocks: 'num_res_blocks',
  attnScales: 'attn_scales',
  temperalDownsample: 'temperal_downsample',
  dropout: 'dropout',
  latentsMean: 'latents_mean',
  latentsStd: 'latents_std',
  isResidual: 'is_residual',
  inChannels: 'in_channels',
  outChannels: 'out_channels',
  patchSize: 'patch_size',
  scaleFactorTemporal: 'scale_factor_temporal',
  scaleFactorSpatial: 'scale_factor_spatial',
};

const CONFIG_KEYS = Object.keys(SNAKE) as Array<keyof AutoencoderKLWanConfig>;

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isIntOrNull = (v: unknown): v is number | null => v === null || isInt(v);
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
const isInts = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every(isInt);
const isNums = (v: unknown): v is number[] => Array.isArray(v) && v.every(isNum);
const isBools = (v: unknown): v is boolean[] => Array.isArray(v) && v.every(isBool);

const field = configFieldReader('VAE config');

/** Throws a ConfigError for a configuration this port cannot build. */
function validateConfig(c: AutoencoderKLWanConfig): AutoencoderKLWanConfig {
  for (const k of ['baseDim', 'zDim', 'numResBlocks', 'inChannels', 'outChannels'] as const) {
    if (!isInt(c[k])) throw new ConfigError(`VAE ${k} must be a positive integer, got ${JSON.stringify(c[k])}`);
  }
  if (!isIntOrNull(c.decoderBaseDim)) throw new ConfigError(`VAE decoderBaseDim must be a positive integer or null, got ${JSON.stringify(c.decoderBaseDim)}`);
  if (!isIntOrNull(c.patchSize)) throw new ConfigError(`VAE patchSize must be a positive integer or null, got ${JSON.stringify(c.patchSize)}`);
  if (!isInts(c.dimMult)) throw new ConfigError(`VAE dimMult must be a non-empty list of positive integers, got ${JSON.stringify(c.dimMult)}`);
  if (!isBools(c.temperalDownsample) || c.temperalDownsample.length !== c.dimMult.length - 1) {
    throw new ConfigError(`VAE temperalDownsample must hold ${c.dimMult.length - 1} booleans (one per downsampling level), got ${JSON.stringify(c.temperalDownsample)}`);
  }
  if (!isNums(c.attnScales)) throw new ConfigError(`VAE attnScales must be a list of numbers, got ${JSON.stringify(c.attnScales)}`);
  if (c.isResidual && c.attnScales.length > 0) throw new ConfigError('VAE attnScales must be empty when isResidual is true (the Wan2.2 layout has no level attention)');
  if (!isNums(c.latentsMean) || c.latentsMean.length !== c.zDim) {
    throw new ConfigError(`VAE latentsMean must hold zDim = ${c.zDim} numbers, got ${Array.isArray(c.latentsMean) ? c.latentsMean.length : JSON.stringify(c.latentsMean)}`);
  }
  if (!isNums(c.latentsStd) || c.latentsStd.length !== c.zDim || c.latentsStd.some((s) => s === 0)) {
    throw new ConfigError(`VAE latentsStd must hold zDim = ${c.zDim} non-zero numbers`);
  }
  const p = c.patchSize ?? 1;
  if (c.inChannels % (p * p) !== 0 || c.outChannels % (p * p) !== 0) {
    throw new ConfigError(`VAE inChannels (${c.inChannels}) and outChannels (${c.outChannels}) must be multiples of patchSize² = ${p * p}`);
  }
  return c;
}

function copyConfig(c: AutoencoderKLWanConfig): AutoencoderKLWanConfig {
  return {
    ...c,
    dimMult: [...c.dimMult],
    attnScales: [...c.attnScales],
    temperalDownsample: [...c.temperalDownsample],
    latentsMean: [...c.latentsMean],
    latentsStd: [...c.latentsStd],
  };
}

/** Builds, reads and checks AutoencoderKLWanConfig objects. */
export const AutoencoderKLWanConfig = {
  /** Diffusers' defaults (= the 'wan2.1' preset). */
  defaults: WAN21 as Readonly<AutoencoderKLWanConfig>,
  presets: WAN_VAE_PRESETS,

  /** Reads a Diffusers `vae/config.json` (snake_case fields; missing ones take Diffusers' defaults). */
  fromJSON(json: unknown): AutoencoderKLWanConfig {
    const j = configObject(json, 'a VAE config');
    if (j._class_name !== undefined && j._class_name !== 'AutoencoderKLWan') {
      throw new ConfigError(`config _class_name "${String(j._class_name)}" is not AutoencoderKLWan`);
    }
    const d = WAN21;
    const intField = (k: 'baseDim' | 'zDim' | 'numResBlocks' | 'inChannels' | 'outChannels') => field(j, SNAKE[k], d[k], isInt, 'a positive integer');
    const zDim = intField('zDim');
    // Diffusers' own defaults for latents_mean/std are 16-vectors; a config for another z_dim carries its own.
    return validateConfig({
      baseDim: intField('baseDim'),
      decoderBaseDim: field(j, SNAKE.decoderBaseDim, d.decoderBaseDim, isIntOrNull, 'a positive integer or null'),
      zDim,
      dimMult: [...field(j, SNAKE.dimMult, d.dimMult, isInts, 'a list of positive integers')],
      numResBlocks: intField('numResBlocks'),
      attnScales: [...field(j, SNAKE.attnScales, d.attnScales, isNums, 'a list of numbers')],
      temperalDownsample: [...field(j, SNAKE.temperalDownsample, d.temperalDownsample, isBools, 'a list of booleans')],
      dropout: field(j, SNAKE.dropout, d.dropout, isNum, 'a number'),
      latentsMean: [...field(j, SNAKE.latentsMean, d.latentsMean, isNums, 'a list of numbers')],
      latentsStd: [...field(j, SNAKE.latentsStd, d.latentsStd, isNums, 'a list of numbers')],
      isResidual: field(j, SNAKE.isResidual, d.isResidual, isBool, 'true or false'),
      inChannels: intField('inChannels'),
      outChannels: intField('outChannels'),
      patchSize: field(j, SNAKE.patchSize, d.patchSize, isIntOrNull, 'a positive integer or null'),
      scaleFactorTemporal: field(j, SNAKE.scaleFactorTemporal, d.scaleFactorTemporal, isInt, 'a positive integer'),
      scaleFactorSpatial: field(j, SNAKE.scaleFactorSpatial, d.scaleFactorSpatial, isInt, 'a positive integer'),
    });
  },

  /** A preset by name, or Diffusers' defaults overlaid with `partial`; validated. */
  resolve(config: AutoencoderKLWanPreset | Partial<AutoencoderKLWanConfig> = {}): AutoencoderKLWanConfig {
    if (typeof config === 'string') {
      const p = WAN_VAE_PRESETS[config];
      if (!p) throw new ConfigError(`unknown VAE preset '${config}'; choose one of ${Object.keys(WAN_VAE_PRESETS).join(', ')}`);
      return validateConfig(copyConfig(p));
    }
    const out = copyConfig(WAN21);
    for (const k of CONFIG_KEYS) {
      const v = config[k];
      if (v !== undefined) Object.assign(out, { [k]: v });
    }
    return validateConfig(copyConfig(out));
  },
};

/** Channels-last space-to-depth: [B, T, H, W, C] → [B, T, H/p, W/p, C·p²], channel c·p² + (w offset)·p + (h offset). */
export function vaePatchify(x: tf.Tensor, p: number): tf.Tensor {
  if (p === 1) return x.clone();
  return tf.tidy(() => {
    const [B, T, H, W, C] = x.shape as [number, number, number, number, number];
    const y = tf.transpose(tf.reshape(x, [B * T, H / p, p, W / p, p, C]), [0, 1, 3, 5, 4, 2]);
    return tf.reshape(y, [B, T, H / p, W / p, C * p * p]);
  });
}

/** Inverse of vaePatchify: [B, T, h, w, C·p²] → [B, T, h·p, w·p, C]. */
export function vaeUnpatchify(x: tf.Tensor, p: number): tf.Tensor {
  if (p === 1) return x.clone();
  return tf.tidy(() => {
    const [B, T, h, w, Cp] = x.shape as [number, number, number, number, number];
    const C = Cp / (p * p);
    const y = tf.transpose(tf.reshape(x, [B * T, h, w, C, p, p]), [0, 1, 5, 2, 4, 3]);
    return tf.reshape(y, [B, T, h * p, w * p, C]);
  });
}

/** The posterior of encode, in the reference layout [B, zDim, F, h, w]. */
export interface WanVaePosterior {
  mean: tf.Tensor;
  /** log σ², clamped to [−30, 20] as Diffusers' DiagonalGaussianDistribution does. */
  logvar: tf.Tensor;
}

export interface WanVaeEncodeOptions {
  /**
   * Spatial tiling: tile edge in input PIXELS (a number, or [height, width]); rounded down to whole
   * latents (multiples of the spatial factor). Each tile is encoded on its own through the whole clip,
   * so peak memory is one tile's activations; the posteriors are blended linearly over the overlaps.
   * Tiling changes the result near seams. Off when absent or when one tile covers the video.
   */
  tileSize?: number | [number, number];
  /** Overlap of neighbouring tiles in input PIXELS (rounded down to whole latents). Default a quarter of tileSize. */
  tileOverlap?: number | [number, number];
  /** Called after each encoded chunk (frame 0, then each 4 frames; counted over all tiles). */
  onProgress?: (done: number, total: number) => void;
}

export interface WanVaeDecodeOptions {
  /**
   * Spatial tiling: tile edge in output PIXELS (a number, or [height, width]); rounded down to whole
   * latents (multiples of the spatial factor). Each tile is decoded on its own through the whole
   * clip (its own causal cache), so peak memory is one tile's activations and caches plus the
   * output video. Tiling changes the result near seams (each tile sees zero padding at its edges
   * and attends only within itself). Off when absent or when one tile covers the latent.
   */
  tileSize?: number | [number, number];
  /** Overlap of neighbouring tiles in output PIXELS (rounded down to whole latents); blended linearly. Default a quarter of tileSize. */
  tileOverlap?: number | [number, number];
  /** Latent frames per decoder call after the first (which is always 1 frame, as the reference). Default 1. */
  chunkSize?: number;
  /** Called after each decoded latent frame (counted over all tiles). */
  onProgress?: (done: number, total: number) => void;
}

export interface WanVaeLoadOptions {
  /**
   * A preset or a full config; overrides config.json. Required when the checkpoint has no
   * config.json and its latent width is not one of the presets' (16: 'wan2.1', 48: 'wan2.2').
   */
  config?: AutoencoderKLWanPreset | Partial<AutoencoderKLWanConfig>;
  onProgress?: (loaded: number, total: number, key: string) => void;
}

function pair(v: number | [number, number]): [number, number] {
  return typeof v === 'number' ? [v, v] : v;
}

function nearestMultiples(v: number, m: number): string {
  const lo = Math.floor(v / m) * m;
  return lo === v ? String(v) : lo === 0 ? String(m) : `${lo} or ${lo + m}`;
}

/** A spatial tile grid in latents: tile starts along rows and columns, and the tile size. */
interface TileGrid {
  rows: number[];
  cols: number[];
  th: number;
  tw: number;
}

/** Starts of tiles of `size` covering [0, n) with at least `overlap` shared; the last tile ends at n. */
function tileStarts(n: number, size: number, overlap: number): number[] {
  if (size >= n) return [0];
  const starts: number[] = [];
  for (let s = 0; ; s += size - overlap) {
    if (s + size >= n) {
      starts.push(n - size);
      return starts;
    }
    starts.push(s);
  }
}

/**
 * Blend weights along one axis, for tiles at pixel `starts` of `length` each: linear ramps over each
 * overlap, normalised so the weights of the tiles covering a pixel sum to 1.
 */
function axisWeights(starts: number[], length: number, n: number): Float32Array[] {
  const raw = starts.map((s, k) => {
    const w = new Float32Array(length);
    const lead = k > 0 ? starts[k - 1] + length - s : 0;
    const trail = k < starts.length - 1 ? s + length - starts[k + 1] : 0;
    for (let y = 0; y < length; y++) {
      const a = lead > 0 ? Math.min(1, (y + 0.5) / lead) : 1;
      const b = trail > 0 ? Math.min(1, (length - y - 0.5) / trail) : 1;
      w[y] = a * b;
    }
    return w;
  });
  const total = new Float64Array(n);
  starts.forEach((s, k) => raw[k].forEach((v, y) => (total[s + y] += v)));
  return raw.map((w, k) => w.map((v, y) => v / total[starts[k] + y]));
}

/**
 * AutoencoderKLWan: the Wan2.1 / Wan2.2 video VAE (Diffusers' class; original `WanVAE_`). encode maps a
 * video [B, 3, 1+4k, H, W] in [−1, 1] to the posterior over latents [B, zDim, 1+k, H/s, W/s]; decode
 * maps latents back to video, clamped to [−1, 1]. Both run causally in chunks (encode: frame 0, then
 * 4 frames; decode: one latent frame at a time) with the convs' caches carried, so memory grows with a
 * chunk, not with the clip. Keys are Diffusers' names (encoder.*, decoder.*, quant_conv.*,
 * post_quant_conv.*); fromPretrained also reads the original Wan names.
 */
export class AutoencoderKLWan extends WanModule {
  static readonly className = 'AutoencoderKLWan';
  readonly config: AutoencoderKLWanConfig;
  readonly encoder: WanEncoder3d;
  readonly quantConv: WanCausalConv3d;
  readonly postQuantConv: WanCausalConv3d;
  readonly decoder: WanDecoder3d;

  constructor(config: AutoencoderKLWanPreset | (Partial<AutoencoderKLWanConfig> & { name?: string }) = {}) {
    super({ name: typeof config === 'string' ? undefined : config.name });
    const c = (this.config = AutoencoderKLWanConfig.resolve(config));
    this.encoder = this.addModule(
      'encoder',
      new WanEncoder3d({
        inChannels: c.inChannels,
        dim: c.baseDim,
        zDim: 2 * c.zDim,
        dimMult: c.dimMult,
        numResBlocks: c.numResBlocks,
        attnScales: c.attnScales,
        temperalDownsample: c.temperalDownsample,
        isResidual: c.isResidual,
      }),
    );
    this.quantConv = this.addModule('quant_conv', new WanCausalConv3d({ inChannels: 2 * c.zDim, outChannels: 2 * c.zDim, kernelSize: 1 }));
    this.postQuantConv = this.addModule('post_quant_conv', new WanCausalConv3d({ inChannels: c.zDim, outChannels: c.zDim, kernelSize: 1 }));
    this.decoder = this.addModule(
      'decoder',
      new WanDecoder3d({
        dim: c.decoderBaseDim ?? c.baseDim,
        zDim: c.zDim,
        dimMult: c.dimMult,
        numResBlocks: c.numResBlocks,
        temperalUpsample: [...c.temperalDownsample].reverse(),
        outChannels: c.outChannels,
        isResidual: c.isResidual,
      }),
    );
  }

  /** Pixels per latent along H and W: 2^(levels − 1) · patchSize (8 for Wan2.1, 16 for Wan2.2). */
  get spatialCompression(): number {
    return 2 ** (this.config.dimMult.length - 1) * (this.config.patchSize ?? 1);
  }

  /** Frames per latent frame after the first: 2^(temporal downsamplings) (4 for both VAEs). */
  get temporalCompression(): number {
    return 2 ** this.config.temperalDownsample.filter(Boolean).length;
  }

  /** Video channels (before patchify). */
  get videoChannels(): number {
    const p = this.config.patchSize ?? 1;
    return this.config.inChannels / (p * p);
  }

  /**
   * Loads a VAE from a Diffusers `vae/` folder (config.json + diffusion_pytorch_model.safetensors), or
   * from a .safetensors file with the original Wan key names (Wan2.1_VAE / Wan2.2_VAE converted from
   * .pth; a config.json beside it is not read, the config comes from options.config or the latent width).
   */
  static async fromPretrained(dir: string, options: WanVaeLoadOptions = {}): Promise<AutoencoderKLWan> {
    if (!fs.existsSync(dir)) throw new CheckpointError('no such file or folder', dir);
    const isFile = fs.statSync(dir).isFile();
    const configPath = path.join(isFile ? path.dirname(dir) : dir, 'config.json');
    const source = openCheckpoint(dir, isFile ? undefined : 'diffusion_pytorch_model');
    let model: AutoencoderKLWan | undefined;
    try {
      const original = isOriginalWanVaeLayout(source.keys());
      let config: AutoencoderKLWanConfig;
      if (typeof options.config === 'string') {
        config = AutoencoderKLWanConfig.resolve(options.config);
      } else if (fs.existsSync(configPath) && !original) {
        config = AutoencoderKLWanConfig.resolve({ ...AutoencoderKLWanConfig.fromJSON(readJsonFile(configPath)), ...options.config });
      } else if (options.config) {
        config = AutoencoderKLWanConfig.resolve(options.config);
      } else {
        config = AutoencoderKLWanConfig.resolve(presetForLatentWidth(source, original, configPath));
      }
      model = new AutoencoderKLWan(config);
      const rename = original
        ? wanVaeOriginalToDiffusers({ numResBlocks: config.numResBlocks, numLevels: config.dimMult.length, isResidual: config.isResidual })
        : undefined;
      loadWeights(model, source, { rename, onProgress: options.onProgress });
      return model;
    } catch (e) {
      model?.dispose();
      throw e;
    } finally {
      source.close();
    }
  }

  // video: [B, C, T, H, W] in [−1, 1], T = 1 + 4k, H and W multiples of spatialCompression
  // → {mean, logvar}: [B, zDim, 1 + k, H/s, W/s]
  encode(video: tf.Tensor, options: WanVaeEncodeOptions = {}): WanVaePosterior {
    this.checkVideo(video);
    const s = this.spatialCompression;
    const grid = this.tileGrid((video.shape[3] as number) / s, (video.shape[4] as number) / s, options, 'encode');
    return grid ? this.encodeTiled(video, grid, options.onProgress) : this.encodeWhole(video, options.onProgress);
  }

  // video: [B, C, T, H, W] → posterior [B, zDim, 1 + k, H/s, W/s], frame 0 then 4 frames at a time
  private encodeWhole(video: tf.Tensor, onProgress?: (done: number, total: number) => void): WanVaePosterior {
    const T = video.shape[2] as number;
    const step = this.temporalCompression;
    const total = 1 + (T - 1) / step;
    const cache = new CausalCache();
    const outs: tf.Tensor[] = [];
    const x = tf.tidy(() => vaePatchify(tf.transpose(video, [0, 2, 3, 4, 1]), this.config.patchSize ?? 1));
    try {
      for (let i = 0; i < total; i++) {
        const [start, len] = i === 0 ? [0, 1] : [1 + step * (i - 1), step];
        outs.push(tf.tidy(() => this.encoder.forward(tf.slice(x, [0, start, 0, 0, 0], [-1, len, -1, -1, -1]), cache)));
        onProgress?.(i + 1, total);
      }
      return tf.tidy(() => {
        const h = this.quantConv.forward(outs.length === 1 ? outs[0] : tf.concat(outs, 1));
        const [mean, logvar] = tf.split(h, 2, -1);
        return { mean: tf.transpose(mean, [0, 4, 1, 2, 3]), logvar: tf.transpose(tf.clipByValue(logvar, -30, 20), [0, 4, 1, 2, 3]) };
      });
    } finally {
      x.dispose();
      for (const o of outs) o.dispose();
      cache.dispose();
    }
  }

  // z: [B, zDim, F, h, w] → video [B, 3, 1 + 4(F − 1), h·s, w·s] clamped to [−1, 1]
  decode(z: tf.Tensor, options: WanVaeDecodeOptions = {}): tf.Tensor {
    this.checkLatents(z);
    const tiles = this.tileGrid(z.shape[3] as number, z.shape[4] as number, options, 'decode');
    if (tiles) return this.decodeTiled(z, tiles, options);
    const parts: tf.Tensor[] = [];
    try {
      for (const part of this.decodeChunks(z, options)) parts.push(part);
      return parts.length === 1 ? parts[0].clone() : tf.concat(parts, 2);
    } finally {
      for (const p of parts) p.dispose();
    }
  }

  /**
   * Streaming decode: yields the video chunk by chunk, [B, 3, t, H, W] clamped to [−1, 1] (t = 1 for
   * latent frame 0, then 4·chunkSize), so a writer can consume frames while later ones are decoded.
   * The caller disposes each chunk. Tiling options are ignored here.
   */
  *decodeChunks(z: tf.Tensor, options: Omit<WanVaeDecodeOptions, 'tileSize' | 'tileOverlap'> = {}): Generator<tf.Tensor, void, undefined> {
    this.checkLatents(z);
    const F = z.shape[2] as number;
    const zcl = tf.transpose(z, [0, 2, 3, 4, 1]);
    try {
      let done = 0;
      for (const chunk of this.run(zcl, options.chunkSize ?? 1)) {
        const out = tf.tidy(() => tf.transpose(tf.clipByValue(chunk.video, -1, 1), [0, 4, 1, 2, 3]));
        chunk.video.dispose();
        done += chunk.latentFrames;
        options.onProgress?.(done, F);
        yield out;
      }
    } finally {
      zcl.dispose();
    }
  }

  // mean: [B, zDim, F, h, w] → (mean − latentsMean) / latentsStd, per channel
  normalizeLatents(mean: tf.Tensor): tf.Tensor {
    this.checkLatents(mean, 'mean');
    return tf.tidy(() => tf.div(tf.sub(mean, this.channelVector(this.config.latentsMean)), this.channelVector(this.config.latentsStd)));
  }

  // z: [B, zDim, F, h, w] → z · latentsStd + latentsMean, per channel (what the DiT's output needs before decode)
  denormalizeLatents(z: tf.Tensor): tf.Tensor {
    this.checkLatents(z);
    return tf.tidy(() => tf.add(tf.mul(z, this.channelVector(this.config.latentsStd)), this.channelVector(this.config.latentsMean)));
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const video = Array.isArray(inputs) ? inputs[0] : inputs;
    const { mean, logvar } = this.encode(video);
    logvar.dispose();
    try {
      return this.decode(mean);
    } finally {
      mean.dispose();
    }
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...copyConfig(this.config) };
  }

  private channelVector(values: number[]): tf.Tensor {
    return tf.tensor(values, [1, values.length, 1, 1, 1]);
  }

  /**
   * The causal decode of a latent region: one chunk per yield, unclamped and unpatchified,
   * channels-last [B, t, H, W, C]. zcl: [B, F, h, w, zDim]. The cache lives as long as the generator.
   */
  private *run(zcl: tf.Tensor, chunkSize: number): Generator<{ video: tf.Tensor; latentFrames: number }, void, undefined> {
    if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new ConfigError(`decode option chunkSize must be a positive integer, got ${chunkSize}`);
    const F = zcl.shape[1] as number;
    const cache = new CausalCache();
    try {
      for (let f = 0; f < F; ) {
        const n = f === 0 ? 1 : Math.min(chunkSize, F - f);
        const video = tf.tidy(() => {
          const chunk = tf.slice(zcl, [0, f, 0, 0, 0], [-1, n, -1, -1, -1]);
          return vaeUnpatchify(this.decoder.forward(this.postQuantConv.forward(chunk), cache), this.config.patchSize ?? 1);
        });
        f += n;
        yield { video, latentFrames: n };
      }
    } finally {
      cache.dispose();
    }
  }

  /** The tile grid over h×w latents, or undefined when encode / decode is not tiled. */
  private tileGrid(h: number, w: number, options: WanVaeEncodeOptions | WanVaeDecodeOptions, what: 'encode' | 'decode'): TileGrid | undefined {
    if (options.tileSize === undefined) return undefined;
    const s = this.spatialCompression;
    const [sizeH, sizeW] = pair(options.tileSize);
    const [ovH, ovW] = pair(options.tileOverlap ?? [Math.floor(sizeH / 4), Math.floor(sizeW / 4)]);
    const th = Math.floor(sizeH / s);
    const tw = Math.floor(sizeW / s);
    if (th < 1 || tw < 1) throw new ConfigError(`${what} option tileSize (${sizeH}×${sizeW} pixels) must be at least one latent, ${s} pixels`);
    const oh = Math.floor(ovH / s);
    const ow = Math.floor(ovW / s);
    if (oh < 0 || ow < 0 || oh >= th || ow >= tw) {
      throw new ConfigError(`${what} option tileOverlap (${ovH}×${ovW} pixels) must be ≥ 0 and smaller than tileSize (${sizeH}×${sizeW}) once rounded down to multiples of ${s}`);
    }
    if (th >= h && tw >= w) return undefined;
    return { rows: tileStarts(h, Math.min(th, h), oh), cols: tileStarts(w, Math.min(tw, w), ow), th: Math.min(th, h), tw: Math.min(tw, w) };
  }

  // video: [B, C, T, H, W] → posterior [B, zDim, F, h, w]: each tile encoded through the whole clip,
  // mean and logvar blended on the host with the weights of axisWeights
  private encodeTiled(video: tf.Tensor, grid: TileGrid, onProgress?: (done: number, total: number) => void): WanVaePosterior {
    const [B, , T, H, W] = video.shape as [number, number, number, number, number];
    const s = this.spatialCompression;
    const Z = this.config.zDim;
    const F = 1 + (T - 1) / this.temporalCompression;
    const [h, w] = [H / s, W / s];
    const wy = axisWeights(grid.rows, grid.th, h);
    const wx = axisWeights(grid.cols, grid.tw, w);
    const mean = new Float32Array(B * Z * F * h * w);
    const logvar = new Float32Array(B * Z * F * h * w);
    const tiles = grid.rows.length * grid.cols.length;
    let tile = 0;
    for (const [i, r] of grid.rows.entries()) {
      for (const [j, c] of grid.cols.entries()) {
        const region = tf.slice(video, [0, 0, 0, r * s, c * s], [-1, -1, -1, grid.th * s, grid.tw * s]);
        let post: WanVaePosterior;
        try {
          post = this.encodeWhole(region, (done, total) => onProgress?.(tile * total + done, tiles * total));
        } finally {
          region.dispose();
        }
        const [m, lv] = [post.mean.dataSync(), post.logvar.dataSync()];
        tf.dispose([post.mean, post.logvar]);
        // post: [B, Z, F, th, tw] → rows r…r+th, columns c…c+tw of the whole posterior
        for (let bzf = 0; bzf < B * Z * F; bzf++) {
          for (let y = 0; y < grid.th; y++) {
            for (let x = 0; x < grid.tw; x++) {
              const weight = wy[i][y] * wx[j][x];
              const src = (bzf * grid.th + y) * grid.tw + x;
              const dst = (bzf * h + r + y) * w + c + x;
              mean[dst] += weight * m[src];
              logvar[dst] += weight * lv[src];
            }
          }
        }
        tile++;
      }
    }
    return { mean: tf.tensor(mean, [B, Z, F, h, w]), logvar: tf.tensor(logvar, [B, Z, F, h, w]) };
  }

  // z: [B, zDim, F, h, w] → [B, 3, T, H, W]: each tile decoded through the whole clip, blended on the host
  private decodeTiled(z: tf.Tensor, grid: TileGrid, options: WanVaeDecodeOptions): tf.Tensor {
    const [B, , F, h, w] = z.shape as [number, number, number, number, number];
    const s = this.spatialCompression;
    const C = this.config.outChannels / (this.config.patchSize ?? 1) ** 2;
    const T = 1 + this.temporalCompression * (F - 1);
    const [H, W] = [h * s, w * s];
    const wy = axisWeights(grid.rows.map((r) => r * s), grid.th * s, H);
    const wx = axisWeights(grid.cols.map((c) => c * s), grid.tw * s, W);
    const out = new Float32Array(B * C * T * H * W);
    const total = F * grid.rows.length * grid.cols.length;
    let done = 0;
    const zcl = tf.transpose(z, [0, 2, 3, 4, 1]);
    try {
      grid.rows.forEach((r, i) => {
        grid.cols.forEach((c, j) => {
          const region = tf.slice(zcl, [0, 0, r, c, 0], [-1, -1, grid.th, grid.tw, -1]);
          try {
            let t0 = 0;
            for (const chunk of this.run(region, options.chunkSize ?? 1)) {
              const [, t, ph, pw] = chunk.video.shape as [number, number, number, number, number];
              const data = chunk.video.dataSync();
              chunk.video.dispose();
              for (let b = 0; b < B; b++) {
                for (let dt = 0; dt < t; dt++) {
                  for (let y = 0; y < ph; y++) {
                    const Y = r * s + y;
                    for (let x = 0; x < pw; x++) {
                      const X = c * s + x;
                      const weight = wy[i][y] * wx[j][x];
                      const src = (((b * t + dt) * ph + y) * pw + x) * C;
                      for (let ch = 0; ch < C; ch++) out[(((b * C + ch) * T + t0 + dt) * H + Y) * W + X] += weight * data[src + ch];
                    }
                  }
                }
              }
              t0 += t;
              done += chunk.latentFrames;
              options.onProgress?.(done, total);
            }
          } finally {
            region.dispose();
          }
        });
      });
    } finally {
      zcl.dispose();
    }
    for (let k = 0; k < out.length; k++) out[k] = Math.min(1, Math.max(-1, out[k]));
    return tf.tensor(out, [B, C, T, H, W]);
  }

  private checkVideo(video: tf.Tensor): void {
    const C = this.videoChannels;
    const s = this.spatialCompression;
    const step = this.temporalCompression;
    const expected = `[B, ${C}, 1+${step}k, H, W] with H and W multiples of ${s}`;
    if (video.rank !== 5 || video.shape[1] !== C) throw new ShapeError('video', `[${video.shape}]`, expected);
    const [, , T, H, W] = video.shape as [number, number, number, number, number];
    if ((T - 1) % step !== 0) {
      const lo = 1 + Math.floor((T - 1) / step) * step;
      throw new ShapeError('video', `${T} frames ([${video.shape}])`, expected, `${lo} or ${lo + step} frames`);
    }
    if (H % s !== 0 || W % s !== 0 || H === 0 || W === 0) {
      throw new ShapeError('video', `${H}×${W} pixels ([${video.shape}])`, expected, `height ${nearestMultiples(H, s)}, width ${nearestMultiples(W, s)}`);
    }
  }

  private checkLatents(z: tf.Tensor, argument = 'z'): void {
    const { zDim } = this.config;
    if (z.rank !== 5 || z.shape[1] !== zDim || z.shape.some((d) => d === 0)) throw new ShapeError(argument, `[${z.shape}]`, `[B, ${zDim}, F, h, w] with F, h, w ≥ 1`);
  }
}

/** The preset whose latent width matches the checkpoint (post_quant_conv / conv2 weight [z, z, 1, 1, 1]). */
function presetForLatentWidth(source: TensorSource, original: boolean, configPath: string): AutoencoderKLWanPreset {
  const key = original ? 'conv2.weight' : 'post_quant_conv.weight';
  const z = source.has(key) ? source.info(key).shape[0] : undefined;
  if (z === 16) return 'wan2.1';
  if (z === 48) return 'wan2.2';
  throw new ConfigError(
    `${configPath} not found and the checkpoint's latent width (${z ?? `no ${key}`}) matches no preset: pass options.config ('wan2.1', 'wan2.2' or a full config)`,
  );
}

tf.serialization.registerClass(AutoencoderKLWan);
