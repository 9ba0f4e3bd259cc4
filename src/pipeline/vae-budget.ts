import { AutoencoderKLWan, AutoencoderKLWanConfig, type WanVaeDecodeOptions } from '../../layers/autoencoder-kl-wan.js';
import { ConfigError, OutOfMemoryError } from '../errors.js';
import { COMPOSITE_ATTENTION_COPIES } from './memory-budget.js';
import { formatBytes } from './memory-estimate.js';

/** The latents a VAE decode takes, [B, zDim, F, h, w]: batch, latent frames, latent height and width. */
export interface VaeLatentSize {
  batch: number;
  frames: number;
  height: number;
  width: number;
}

/** What the prediction depends on besides the shapes. */
export interface VaePeakOptions {
  /**
   * Bytes of a stored weight or activation: 2 on backend 'cuda' under precision 'bf16' (which also keeps
   * a bf16 copy of every convolution filter in cuDNN's layout), 4 otherwise. Norm gammas are 4 either way.
   */
  bytesPerElement: number;
  /** decode's tileSize in output pixels (a number or [height, width]); absent: whole frames. */
  tileSize?: number | readonly [number, number];
  /** decode's chunkSize (latent frames per decoder call after the first); default 1. */
  chunkSize?: number;
  /** Attention runs as the op layer's composite (COMPOSITE_ATTENTION_COPIES score tensors), not a fused kernel. */
  compositeAttention?: boolean;
  /** Count the pipeline's conversion of the video to frames after the decode (two video-sized tensors) and its latents. */
  toFrames?: boolean;
  /** The encoder has run on this VAE too (an image task), so its cuDNN filter copies are held as well (bf16 only). */
  encoderFilters?: boolean;
}

/** The predicted peak of a decode, in bytes, and its terms. */
export interface VaePeak {
  /** An upper bound of the bytes held by tensors at the decode's peak: weights + latents + max(during, after). */
  bytes: number;
  weights: number;
  /** The latents z, their channels-last copy, a tile's slice and one chunk after post_quant_conv (and, with toFrames, the pipeline's latents). */
  latents: number;
  /** All causal caches of one tile (or the whole frame) in the steady state. */
  caches: number;
  /** The largest working set of one decoder stage (or the chunk's output). */
  work: number;
  /** Where the peak is: the decoder's stage (conv_in, mid_block, up_blocks.i, conv_out, the chunk's video) or the video after decoding. */
  stage: string;
  /** The video held while decoding (whole frames: the chunks so far), and after it (the result, and toFrames' copy). */
  videoDuring: number;
  videoAfter: number;
  /** The tile in latents [th, tw] that is decoded at a time (the whole latent when not tiled). */
  tile: [number, number];
  tiled: boolean;
}

function pair(v: number | readonly [number, number]): [number, number] {
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}

/** Pixels per latent along H and W: 2^(levels − 1) · patchSize (as AutoencoderKLWan.spatialCompression). */
export function vaeSpatialFactor(c: AutoencoderKLWanConfig): number {
  return 2 ** (c.dimMult.length - 1) * (c.patchSize ?? 1);
}

const weightCache = new Map<string, { stored2: number; stored4: number; decoderFilters: number; encoderFilters: number }>();

/**
 * Bytes of the VAE's weights on the device: every parameter at `bytesPerElement` (norm gammas, kept
 * in fp32, at 4), and at width 2 the bf16 cuDNN-layout copy of each convolution filter that has run
 * (the decoder's and post_quant_conv's; with `encoderFilters` the encoder's and quant_conv's too).
 * From the module's parameter shapes; nothing is allocated.
 */
export function vaeWeightBytes(config: AutoencoderKLWanConfig, bytesPerElement: number, encoderFilters = false): number {
  const key = JSON.stringify(AutoencoderKLWanConfig.toJSON(config));
  let w = weightCache.get(key);
  if (!w) {
    w = { stored2: 0, stored4: 0, decoderFilters: 0, encoderFilters: 0 };
    for (const [name, p] of new AutoencoderKLWan(config).namedParams()) {
      const n = p.shape.reduce((a, d) => a * d, 1);
      w.stored4 += 4 * n;
      w.stored2 += (p.keepFp32 ? 4 : 2) * n;
      // convolution filters: WanCausalConv3d [out, in, kt, kh, kw], WanResample's Conv2d resample.1.weight [out, in, 3, 3]
      const filter = p.shape.length === 5 || name.endsWith('resample.1.weight');
      if (!filter) continue;
      if (name.startsWith('decoder.') || name.startsWith('post_quant_conv.')) w.decoderFilters += 2 * n;
      else w.encoderFilters += 2 * n;
    }
    weightCache.set(key, w);
  }
  if (bytesPerElement !== 2) return (w.stored4 * bytesPerElement) / 4;
  return w.stored2 + w.decoderFilters + (encoderFilters ? w.encoderFilters : 0);
}

/** One decoder level i: its up block's input, output and resample-output channels, and its upsampling. */
interface Level {
  cb: number;
  co: number;
  resampleOut: number;
  mode: 'upsample2d' | 'upsample3d' | undefined;
  /** Wan2.2: a DupUp3D shortcut of the block input is added after the upsampler. */
  dupUp: boolean;
}

/** The decoder's geometry, as WanDecoder3d builds it: dims = [d·m_L, d·m_L, …, d·m_0] and one Level per up block. */
function decoderLevels(c: AutoencoderKLWanConfig): { dims: number[]; levels: Level[] } {
  const d = c.decoderBaseDim ?? c.baseDim;
  const mult = c.dimMult;
  const L = mult.length - 1;
  const dims = [d * mult[L], ...[...mult].reverse().map((u) => d * u)];
  const temporal = [...c.temperalDownsample].reverse();
  const levels: Level[] = [];
  for (let i = 0; i <= L; i++) {
    const up = i !== L;
    const co = dims[i + 1];
    if (c.isResidual) {
      levels.push({ cb: dims[i], co, resampleOut: co, mode: up ? (temporal[i] ? 'upsample3d' : 'upsample2d') : undefined, dupUp: up });
    } else {
      levels.push({ cb: i > 0 ? Math.floor(dims[i] / 2) : dims[i], co, resampleOut: Math.floor(co / 2), mode: up ? (temporal[i] ? 'upsample3d' : 'upsample2d') : undefined, dupUp: false });
    }
  }
  return { dims, levels };
}

/**
 * A residual block's peak (elements), T frames at P positions: the tensors its caller holds (`held`:
 * the stage or block input, and the block's own input when it is another tensor), the shortcut
 * T·P·co when the channels change, and the larger of its two convs: the norm's output, the cached
 * past concatenated in front ((T + 2) frames), the zero pad of a past of one frame (2 frames: the
 * pass's second chunk), and the conv's output.
 */
function resnetPeak(held: number, ci: number, co: number, T: number, P: number): number {
  const shortcut = ci !== co ? T * P * co : 0;
  const conv = (cin: number) => T * P * cin + (T + 2) * P * cin + 2 * P * cin + T * P * co;
  return held + shortcut + Math.max(conv(ci), conv(co));
}

/**
 * Predicts the peak device bytes held by tensors while `AutoencoderKLWan.decode` (and, with
 * `toFrames`, the pipeline's conversion to frames) runs on latents `size` — an upper bound meant to be
 * within ~25% of the real peak (calibrated against backend 'cuda''s exact accounting over the null
 * addon; bench/RESULTS.md, 2026-12-07). Shapes, per sample ×B, channels-last:
 *
 *   peak = W + Z + max(K + A + V_during, V_after)
 *
 * - W weights: vaeWeightBytes (parameters at the storage width b, bf16 cuDNN filter copies under bf16).
 * - Z latents: z and its channels-last copy 2·zDim·F·h·w·4 (float32 uploads), a tile's slice
 *   zDim·F·th·tw·4, one chunk after post_quant_conv n·zDim·th·tw·b (n = chunkSize); with toFrames the
 *   pipeline's latents once more.
 * - K causal caches, at the steady state (2 past frames of every temporal conv's input, one tile):
 *   2·P₀·zDim (conv_in) + 4·2·P₀·c₀ (mid block) + Σᵢ [2·Pᵢ·cbᵢ + (2R + 1)·2·Pᵢ·coᵢ + (3d ? 2·Pᵢ·coᵢ : 0)]
 *   + 2·P_L·co_L (conv_out), times b. Level i runs at Pᵢ = th·tw·4ⁱ positions and Tᵢ frames
 *   (T₀ = n, doubled after each upsample3d), R = numResBlocks, cbᵢ / coᵢ its block's input / output
 *   channels (decoderLevels).
 * - A the largest stage (times b): a residual block (resnetPeak) holds its stage's input Tᵢ·Pᵢ·cbᵢ, its own
 *   input and the larger conv, (3T + 4)·P·c_in + T·P·co; an upsampler holds the block input and its input
 *   and the larger of the time conv (3T + 4)·P·c + 2T·P·c, the frame doubling 4T·P·c and the spatial
 *   part 2T·P·c + T'·4P·(c + c') (T' = 2T for upsample3d, T for 2d); Wan2.2's DupUp3D shortcut
 *   3·T'·4P·co; the mid block's attention 12·T₀·P₀·c₀ (+ 3·T₀·P₀² scores when composite); conv_out
 *   (3T + 4)·P·c + T·P·oc; the chunk's video 4·T·P_L·oc.
 * - V video, E = 3·(1 + ft·(F − 1))·H·W elements: whole frames hold the chunks so far while decoding
 *   (≤ E·b) and the chunks plus their concatenation after (2E·b; toFrames' two copies are the same);
 *   tiles blend on the host and upload the result as float32 (E·4 after; 2E·4 with toFrames).
 */
export function predictVaeDecodePeak(config: AutoencoderKLWanConfig, size: VaeLatentSize, options: VaePeakOptions): VaePeak {
  const b = options.bytesPerElement;
  const { batch: B, frames: F, height: h, width: w } = size;
  const n = Math.min(options.chunkSize ?? 1, Math.max(1, F - 1));
  const s = vaeSpatialFactor(config);
  const p = config.patchSize ?? 1;
  const ft = 2 ** config.temperalDownsample.filter(Boolean).length;
  const oc = config.outChannels;
  const z = config.zDim;
  const R = config.numResBlocks;
  let [th, tw] = [h, w];
  if (options.tileSize !== undefined) {
    const [sh, sw] = pair(options.tileSize);
    [th, tw] = [Math.min(Math.floor(sh / s), h), Math.min(Math.floor(sw / s), w)];
  }
  const tiled = th < h || tw < w;
  const { dims, levels } = decoderLevels(config);
  const c0 = dims[0];
  const P0 = th * tw;
  // caches: elements, per sample
  let caches = 2 * P0 * z + 4 * 2 * P0 * c0;
  // the largest stage: elements, per sample
  const stages: Array<[string, number]> = [];
  stages.push(['conv_in', (3 * n + 4) * P0 * z + n * P0 * c0]);
  const x0 = n * P0 * c0;
  const attention = 12 * n * P0 * c0 + (options.compositeAttention ? COMPOSITE_ATTENTION_COPIES * n * P0 * P0 : 0);
  stages.push(['mid_block', Math.max(resnetPeak(x0, c0, c0, n, P0), x0 + attention, resnetPeak(3 * x0, c0, c0, n, P0))]);
  let T = n;
  for (const [i, lv] of levels.entries()) {
    const P = P0 * 4 ** i;
    const xb = T * P * lv.cb;
    caches += 2 * P * lv.cb + (2 * R + 1) * 2 * P * lv.co + (lv.mode === 'upsample3d' ? 2 * P * lv.co : 0);
    let peak = Math.max(resnetPeak(xb, lv.cb, lv.co, T, P), resnetPeak(xb + T * P * lv.co, lv.co, lv.co, T, P));
    const T2 = lv.mode === 'upsample3d' ? 2 * T : T;
    if (lv.mode) {
      const c = lv.co;
      const time = lv.mode === 'upsample3d' ? Math.max((3 * T + 4) * P * c + 2 * T * P * c, 4 * T * P * c) : 0;
      const spatial = (T2 - T) * P * c + T2 * 4 * P * (c + lv.resampleOut);
      peak = Math.max(peak, xb + T * P * c + Math.max(time, spatial));
    }
    if (lv.dupUp) peak = Math.max(peak, xb + 3 * T2 * 4 * P * lv.co);
    stages.push([`up_blocks.${i}`, peak]);
    T = T2;
  }
  const PL = P0 * 4 ** (levels.length - 1);
  const cL = dims[dims.length - 1];
  caches += 2 * PL * cL;
  stages.push(['conv_out', (3 * T + 4) * PL * cL + T * PL * oc]);
  stages.push(['the chunk\'s video', (p > 1 ? 4 : 3) * T * PL * oc]);
  const [largest, work] = stages.reduce((a, x) => (x[1] > a[1] ? x : a));

  const E = 3 * (1 + ft * (F - 1)) * h * s * w * s;
  const latentElements = z * F * h * w;
  const latents = B * (4 * (2 + (options.toFrames ? 1 : 0)) * latentElements + (tiled ? 4 * z * F * P0 : 0) + b * n * z * P0);
  const videoDuring = tiled ? 0 : B * E * b;
  const videoAfter = tiled ? B * E * 4 * (options.toFrames ? 2 : 1) : 2 * B * E * b;
  const weights = vaeWeightBytes(config, b, options.encoderFilters ?? false);
  const during = B * b * (caches + work) + videoDuring;
  const stage = videoAfter > during ? (tiled ? 'the blended video and its frames' : 'the video and its frames') : `the decoder's ${largest}`;
  return {
    bytes: weights + latents + Math.max(during, videoAfter),
    weights,
    latents,
    caches: B * b * caches,
    work: B * b * work,
    stage,
    videoDuring,
    videoAfter,
    tile: [th, tw],
    tiled,
  };
}

/** What chooseVaeTile decided: decode options (tileSize absent: whole frames) and the predicted peak. */
export interface VaeTilePlan {
  decode: Pick<WanVaeDecodeOptions, 'tileSize' | 'tileOverlap'>;
  peak: VaePeak;
}

/** The smallest tile chooseVaeTile tries, in output pixels (a smaller one costs more seams than it saves). */
export const MIN_VAE_TILE_PIXELS = 128;

/**
 * The decode options that keep the predicted peak (predictVaeDecodePeak) of decoding latents `size`
 * within `budget` bytes: whole frames when they fit (no tiling: the result is unchanged), else the
 * largest square tile of k latents (k·s pixels, s the spatial factor; overlap `tileOverlap` or decode's
 * default of a quarter) whose peak fits, down to MIN_VAE_TILE_PIXELS (at least one latent). With
 * `fixed.tileSize` that tile is only checked. Throws an OutOfMemoryError naming vaeMemoryBudget, with
 * the predicted need of whole frames and of the smallest tile, when nothing fits.
 */
export function chooseVaeTile(
  config: AutoencoderKLWanConfig,
  size: VaeLatentSize,
  budget: number,
  options: Omit<VaePeakOptions, 'tileSize'>,
  fixed: Pick<WanVaeDecodeOptions, 'tileSize' | 'tileOverlap'> = {},
): VaeTilePlan {
  if (!(Number.isFinite(budget) && budget > 0)) throw new ConfigError(`vaeMemoryBudget: got ${budget}, expected a positive number of bytes`);
  const s = vaeSpatialFactor(config);
  const overlap = fixed.tileOverlap === undefined ? {} : { tileOverlap: fixed.tileOverlap };
  const whole = predictVaeDecodePeak(config, size, options);
  const what = `decoding ${size.batch}×${1 + 2 ** config.temperalDownsample.filter(Boolean).length * (size.frames - 1)} frames of ${size.width * s}×${size.height * s}`;
  if (fixed.tileSize !== undefined) {
    const peak = predictVaeDecodePeak(config, size, { ...options, tileSize: fixed.tileSize });
    if (peak.bytes > budget) {
      const [a, c] = pair(fixed.tileSize);
      throw new OutOfMemoryError('vaeMemoryBudget', peak.bytes, budget, `${what} in tiles of ${a}×${c} pixels needs about ${formatBytes(peak.bytes)} (at ${peak.stage}); the budget is ${formatBytes(budget)}`);
    }
    return { decode: { tileSize: fixed.tileSize, ...overlap }, peak };
  }
  if (whole.bytes <= budget) return { decode: {}, peak: whole };
  const minK = Math.max(1, Math.ceil(MIN_VAE_TILE_PIXELS / s));
  const maxK = Math.max(size.height, size.width) - 1;
  for (let k = maxK; k >= minK; k--) {
    const peak = predictVaeDecodePeak(config, size, { ...options, tileSize: k * s });
    if (!peak.tiled) continue;
    if (peak.bytes <= budget) return { decode: { tileSize: k * s, ...overlap }, peak };
  }
  const smallest = predictVaeDecodePeak(config, size, { ...options, tileSize: minK * s });
  throw new OutOfMemoryError(
    'vaeMemoryBudget',
    smallest.bytes,
    budget,
    `${what} needs about ${formatBytes(whole.bytes)} in whole frames and ${formatBytes(smallest.bytes)} in the smallest tiles (${minK * s}×${minK * s} pixels; at ${smallest.stage}); the budget is ${formatBytes(budget)}`,
  );
}
