import { OutOfMemoryError } from '../errors.js';
import type { TaskName } from './generate-options.js';
import { COMPOSITE_ATTENTION_COPIES, type MemoryBudget } from './memory-budget.js';
import type { PipelineSpec } from './pipeline-spec.js';

/** The size of a call: batch B, frames F, height H, width W (valid for the spec). */
export interface CallSize {
  batch: number;
  numFrames: number;
  height: number;
  width: number;
}

/** A lower bound of a call's peak memory: the stage that needs the most, its bytes and its largest tensor. */
export interface MemoryNeed {
  bytes: number;
  stage: string;
  largestElements: number;
}

/** What the estimate covers: the VAE decode (textToVideo) or not (generate), and the task's image encode. */
export interface EstimateScope {
  decode: boolean;
  task: TaskName;
  /** The decode may run in spatial tiles (vaeMemoryBudget or vaeDecode.tileSize): its activations are a tile's, not bounded here. */
  decodeTiles?: boolean;
}

/** What of the backend the estimate depends on. */
export type EstimateBackend = Pick<MemoryBudget, 'bytesPerElement' | 'compositeAttention'>;

/**
 * A lower bound of what a call allocates at its peak, from tensors that must exist together
 * (elements × bytesPerElement; weights not included). L = (F'/pt)(h/ph)(w/pw) DiT tokens,
 * F' = (F − 1)/ft + 1, h = H/s, w = W/s, n = h·w positions of the VAE's attention, c₀ and p the
 * VAE's outer width and patchify factor; S(x) = 3x when attention is the composite (it holds three
 * score tensors of every query chunk, COMPOSITE_ATTENTION_COPIES), else 0.
 * - denoising: the latents and the scheduler's output 2·B·C·F'·h·w, the image-condition channels
 *   B·c·F'·h·w, and the larger of one DiT block's feed-forward, B·L·(2D + D_ff) (input, norm,
 *   hidden layer), and its self-attention, 5·B·L·D + S(B·heads·L²) (input, norm, q, k, v, scores);
 * - the image condition (image tasks): the condition video 3·F_c·H·W (F_c = 1 for a first frame,
 *   F for image channels), two encoder activations of one frame at full resolution 2·(H/p)(W/p)·c₀,
 *   and the scores of its middle attention S(n²);
 * - decoding: the largest of the video and its frames together 2·B·3·F·H·W, two decoder activations
 *   of one latent frame's ft frames at full resolution 2·B·ft·(H/p)(W/p)·c₀, and S(B·n²); with
 *   `decodeTiles` the video alone (a tile's activations are what vaeMemoryBudget bounds:
 *   predictVaeDecodePeak in vae-budget.ts gives the decode's full peak).
 */
export function estimateMemory(spec: PipelineSpec, size: CallSize, scope: EstimateScope, backend: EstimateBackend): MemoryNeed {
  const { batch: B, numFrames: F, height: H, width: W } = size;
  const s = spec.scaleFactorSpatial;
  const ft = spec.scaleFactorTemporal;
  const [pt, ph, pw] = spec.patchSize;
  const scores = (x: number) => (backend.compositeAttention ? COMPOSITE_ATTENTION_COPIES * x : 0);
  const latentFrames = (F - 1) / ft + 1;
  const positions = (H / s) * (W / s);
  const tokens = (latentFrames / pt) * (H / s / ph) * (W / s / pw);
  const stages: Array<{ stage: string; elements: number; largest: number }> = [];
  const latent = B * spec.latentChannels * latentFrames * positions;
  const D = spec.innerDim ?? 0;
  const block = Math.max(B * tokens * (2 * D + (spec.ffnDim ?? 0)), 5 * B * tokens * D + scores(B * (spec.heads ?? 0) * tokens * tokens));
  stages.push({
    stage: `denoising: the latents and one DiT block over ${tokens.toLocaleString('en-US')} tokens`,
    elements: 2 * latent + B * spec.conditionChannels * latentFrames * positions + block,
    largest: Math.max(latent, B * tokens * Math.max(D, spec.ffnDim ?? 0)),
  });
  const outer = spec.vaeOuterWidth ?? 0;
  const p = spec.vaePatch;
  if (scope.task !== 'text-to-video') {
    const video = 3 * (scope.task === 'first-frame' ? 1 : F) * H * W;
    stages.push({ stage: 'encoding the image condition with the VAE', elements: video + 2 * (H / p) * (W / p) * outer + scores(positions * positions), largest: video });
  }
  if (scope.decode) {
    const video = B * 3 * F * H * W;
    const activation = B * ft * (H / p) * (W / p) * outer;
    const elements = scope.decodeTiles ? 2 * video : Math.max(2 * video, 2 * activation, scores(B * positions * positions));
    stages.push({ stage: 'decoding: the VAE and the video', elements, largest: scope.decodeTiles ? video : Math.max(video, activation) });
  }
  const top = stages.reduce((a, b) => (b.elements > a.elements ? b : a));
  return { bytes: top.elements * backend.bytesPerElement, stage: top.stage, largestElements: Math.max(...stages.map((x) => x.largest)) };
}

function fits(need: MemoryNeed, budget: MemoryBudget): boolean {
  return need.bytes <= budget.freeBytes && need.largestElements <= budget.maxTensorElements;
}

/** Bytes in binary units, one decimal: 3.9 GiB, 91.6 TiB (beyond a float64: "an unbounded amount"). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return Number.isFinite(v) ? `${v.toFixed(1)} ${units[i]}` : 'an unbounded amount';
}

/** The largest k in [1, hi] with ok(k) (ok is monotone: true up to some k), or 0 when ok(1) is false. */
function largest(hi: number, ok: (k: number) => boolean): number {
  if (!ok(1)) return 0;
  let lo = 1;
  let top = Math.max(1, Math.floor(hi));
  while (lo < top) {
    const mid = Math.floor((lo + top + 1) / 2);
    if (ok(mid)) lo = mid;
    else top = mid - 1;
  }
  return lo;
}

/** Where the size of a call comes from, for the error's argument name. */
export interface SizeSources {
  /** 'width×height', 'latents' or 'image'. */
  size: string;
  /** 'numFrames' or 'latents'. */
  frames: string;
  /** 'prompt', 'promptEmbeds' or 'latents'. */
  batch: string;
}

/**
 * Throws an OutOfMemoryError when the call cannot fit `budget`, naming the argument to reduce and
 * how far: the size when one latent frame's worth of a single sample does not fit (the largest
 * size that could), else the frames when one sample does not fit (the most frames that could),
 * else the batch (the most samples that could).
 */
export function checkMemory(spec: PipelineSpec, size: CallSize, scope: EstimateScope, budget: MemoryBudget, sources: SizeSources): void {
  const est = (c: CallSize) => estimateMemory(spec, c, scope, budget);
  const need = est(size);
  if (fits(need, budget)) return;
  const { batch, numFrames, height, width } = size;
  const ft = spec.scaleFactorTemporal;
  const pt = spec.patchSize[0];
  const framesFor = (k: number) => (k * pt - 1) * ft + 1;
  const minFrames = framesFor(1);
  const mw = spec.scaleFactorSpatial * spec.patchSize[2];
  const mh = spec.scaleFactorSpatial * spec.patchSize[1];
  const have = `the ${budget.backend} backend has ${formatBytes(budget.freeBytes)} free`;
  const needs = `need at least ${formatBytes(need.bytes)} (${need.stage})`;
  const fail = (argument: string, what: string, fit: string) => {
    throw new OutOfMemoryError(argument, need.bytes, budget.freeBytes, `${what} ${needs}; ${have}; ${fit}`);
  };
  if (!fits(est({ batch: 1, numFrames: minFrames, height, width }), budget)) {
    // widths k·mw with the height in proportion (a multiple of mh)
    const heightAt = (k: number) => Math.max(mh, Math.floor((k * mw * height) / width / mh) * mh);
    const k = largest(width / mw, (j) => fits(est({ batch: 1, numFrames: minFrames, height: heightAt(j), width: j * mw }), budget));
    fail(sources.size, `${width}×${height}`, k > 0 ? `at most about ${k * mw}×${heightAt(k)} could fit` : 'nothing fits: free memory first (dispose tensors, release the text encoder)');
  }
  if (!fits(est({ batch: 1, numFrames, height, width }), budget)) {
    const k = largest(((numFrames - 1) / ft + 1) / pt, (j) => fits(est({ batch: 1, numFrames: framesFor(j), height, width }), budget));
    fail(sources.frames, `${numFrames} frames at ${width}×${height}`, `at most ${framesFor(k)} frames could fit`);
  }
  const n = largest(batch, (b) => fits(est({ batch: b, numFrames, height, width }), budget));
  fail(sources.batch, `${batch} samples of ${numFrames} frames at ${width}×${height}`, `at most ${n} could fit`);
}
