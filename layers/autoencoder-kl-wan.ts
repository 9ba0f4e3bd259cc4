import * as tf from '@tensorflow/tfjs-core';
import { AbortError, ConfigError, ShapeError } from '../src/errors.js';
import { WAN_VAE_FAMILY } from '../weights/families.js';
import { loadPretrained, type PretrainedOptions } from '../weights/load-pretrained.js';
import { savePretrained } from '../weights/save-pretrained.js';
import { AutoencoderKLWanConfig, type AutoencoderKLWanPreset } from './autoencoder-kl-wan-config.js';
import { WanModule } from './module.js';
import { CausalCache, WanCausalConv3d } from './wan-causal-conv3d.js';
import { WanDecoder3d, runStages, runStagesAsync } from './wan-decoder3d.js';
import { WanEncoder3d } from './wan-encoder3d.js';

export { AutoencoderKLWanConfig, WAN_VAE_PRESETS, type AutoencoderKLWanPreset } from './autoencoder-kl-wan-config.js';

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
  /**
   * Checked before each decoder chunk and before each stage of the decoder within a chunk (conv_in,
   * the mid block, each up block, the output conv): once aborted, the decode frees what it made and
   * throws AbortError. decodeAsync also yields to the event loop there, so an abort from a timer or
   * a signal handler lands within one stage.
   */
  signal?: AbortSignal;
}

/** One decoded chunk of run: channels-last video [B, t, H, W, C], unclamped, and the latent frames it came from. */
interface DecodedChunk {
  video: tf.Tensor;
  latentFrames: number;
}

/**
 * Options of AutoencoderKLWan.fromPretrained: `config`, a preset or fields overriding config.json,
 * is required when the checkpoint has no config.json and its latent width is not one of the
 * presets' (16: 'wan2.1', 48: 'wan2.2').
 */
export type WanVaeLoadOptions = PretrainedOptions<AutoencoderKLWanConfig, AutoencoderKLWanPreset>;

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
   * A VAE with random weights (Diffusers' `from_config`; the name `fromConfig` is tfjs' deserialiser): `new AutoencoderKLWan(config)` +
   * `initialize(seed)`, with PyTorch's default initialisation as in Diffusers (convs
   * U(±1/√fan_in), RMS-norm gammas ones). Seed 0 (the default) gives a different draw per call.
   */
  static withRandomWeights(config: AutoencoderKLWanPreset | (Partial<AutoencoderKLWanConfig> & { name?: string }) = {}, options: { seed?: number } = {}): AutoencoderKLWan {
    return new AutoencoderKLWan(config).initialize(options.seed);
  }

  /**
   * Loads a VAE from a Diffusers `vae/` folder (config.json + diffusion_pytorch_model.safetensors), a
   * model root holding one, an original release root holding `Wan2.x_VAE.safetensors`, or a
   * .safetensors file with either key names (Wan2.1_VAE / Wan2.2_VAE converted from .pth: no
   * config.json is read for those; the config comes from options.config or the latent width).
   */
  static async fromPretrained(dirOrFile: string, options: WanVaeLoadOptions = {}): Promise<AutoencoderKLWan> {
    return loadPretrained(dirOrFile, WAN_VAE_FAMILY, AutoencoderKLWanConfig, (c) => new AutoencoderKLWan(c), options);
  }

  /** Saves the model to folder `dir` in the Diffusers layout (config.json + diffusion_pytorch_model.safetensors, float32), atomically; fromPretrained reads it back. */
  savePretrained(dir: string): void {
    savePretrained(this, dir, WAN_VAE_FAMILY, AutoencoderKLWanConfig.toJSON(this.config));
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
    return runStages(this.decodeStages(z, options, false));
  }

  /** decode, yielding to the event loop before each stage of the decoder (so `signal` can abort within a chunk). */
  decodeAsync(z: tf.Tensor, options: WanVaeDecodeOptions = {}): Promise<tf.Tensor> {
    return runStagesAsync(this.decodeStages(z, options, true));
  }

  /**
   * Streaming decode: yields the video chunk by chunk, [B, 3, t, H, W] clamped to [−1, 1] (t = 1 for
   * latent frame 0, then 4·chunkSize), so a writer can consume frames while later ones are decoded.
   * The caller disposes each chunk. Tiling options are ignored here.
   */
  *decodeChunks(z: tf.Tensor, options: Omit<WanVaeDecodeOptions, 'tileSize' | 'tileOverlap'> = {}): Generator<tf.Tensor, void, undefined> {
    this.checkLatents(z);
    for (const out of this.chunkStages(z, options, false)) if (out) yield out;
  }

  // z: [B, zDim, F, h, w] → video [B, 3, T, H, W] clamped to [−1, 1]; with `pause`, a yield before each decoder stage
  private *decodeStages(z: tf.Tensor, options: WanVaeDecodeOptions, pause: boolean): Generator<void, tf.Tensor, void> {
    this.checkLatents(z);
    const tiles = this.tileGrid(z.shape[3] as number, z.shape[4] as number, options, 'decode');
    if (tiles) return yield* this.decodeTiled(z, tiles, options, pause);
    const parts: tf.Tensor[] = [];
    try {
      for (const part of this.chunkStages(z, options, pause)) {
        if (part) parts.push(part);
        else yield;
      }
      return parts.length === 1 ? parts[0].clone() : tf.concat(parts, 2);
    } finally {
      for (const p of parts) p.dispose();
    }
  }

  /** decodeChunks' chunks, [B, 3, t, H, W] clamped to [−1, 1]; with `pause`, a bare yield before each decoder stage. */
  private *chunkStages(z: tf.Tensor, options: Omit<WanVaeDecodeOptions, 'tileSize' | 'tileOverlap'>, pause: boolean): Generator<tf.Tensor | void, void, undefined> {
    const F = z.shape[2] as number;
    const zcl = tf.transpose(z, [0, 2, 3, 4, 1]);
    try {
      let done = 0;
      for (const chunk of this.run(zcl, options.chunkSize ?? 1, options.signal, pause)) {
        if (!chunk) {
          yield;
          continue;
        }
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
    return { ...super.getConfig(), ...AutoencoderKLWanConfig.getConfig(this.config) };
  }

  private channelVector(values: number[]): tf.Tensor {
    return tf.tensor(values, [1, values.length, 1, 1, 1]);
  }

  /**
   * The causal decode of a latent region: one chunk per non-empty yield, unclamped and
   * unpatchified, channels-last [B, t, H, W, C]. zcl: [B, F, h, w, zDim]. The cache lives as long
   * as the generator. Throws AbortError before a chunk once `signal` is aborted; with `pause`, also
   * yields bare before each stage of the decoder and checks `signal` after it (a synchronous run
   * has nothing that could abort between stages, so it runs the decoder's forward whole).
   */
  private *run(zcl: tf.Tensor, chunkSize: number, signal: AbortSignal | undefined, pause: boolean): Generator<DecodedChunk | void, void, undefined> {
    if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new ConfigError(`decode option chunkSize must be a positive integer, got ${chunkSize}`);
    const F = zcl.shape[1] as number;
    const cache = new CausalCache();
    try {
      for (let f = 0; f < F; ) {
        if (signal?.aborted) throw new AbortError('decoding was aborted');
        const n = f === 0 ? 1 : Math.min(chunkSize, F - f);
        const x = tf.tidy(() => this.postQuantConv.forward(tf.slice(zcl, [0, f, 0, 0, 0], [-1, n, -1, -1, -1])));
        let y: tf.Tensor;
        try {
          y = pause ? yield* this.decoder.stages(x, cache, signal) : this.decoder.forward(x, cache);
        } finally {
          x.dispose();
        }
        const video = vaeUnpatchify(y, this.config.patchSize ?? 1);
        y.dispose();
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

  // z: [B, zDim, F, h, w] → [B, 3, T, H, W]: each tile decoded through the whole clip, blended on the host;
  // with `pause`, a bare yield before each decoder stage
  private *decodeTiled(z: tf.Tensor, grid: TileGrid, options: WanVaeDecodeOptions, pause: boolean): Generator<void, tf.Tensor, void> {
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
      for (const [i, r] of grid.rows.entries()) {
        for (const [j, c] of grid.cols.entries()) {
          const region = tf.slice(zcl, [0, 0, r, c, 0], [-1, -1, grid.th, grid.tw, -1]);
          try {
            let t0 = 0;
            for (const chunk of this.run(region, options.chunkSize ?? 1, options.signal, pause)) {
              if (!chunk) {
                yield;
                continue;
              }
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
        }
      }
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

tf.serialization.registerClass(AutoencoderKLWan);
