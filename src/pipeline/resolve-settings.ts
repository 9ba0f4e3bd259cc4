import { ConfigError, ShapeError } from '../errors.js';
import * as tf from '@tensorflow/tfjs-core';
import { MAX_SEED, randn, randnHost, randomSeed } from '../random.js';
import type { CallGeometry, ConditioningStrategy, ImpliedSize } from './conditioning.js';
import { firstFrameConditioning } from './first-frame-conditioning.js';
import type { GenerateOptions, ResolvedSettings, TaskName } from './generate-options.js';
import { imageChannelConditioning } from './image-channel-conditioning.js';
import { nearestMultiple } from './image-condition.js';
import { memoryBudget, type MemoryBudget } from './memory-budget.js';
import { checkMemory, type SizeSources } from './memory-estimate.js';
import type { PipelineSpec } from './pipeline-spec.js';
import { checkFloat32 } from './tensor-checks.js';
import { textConditioning } from './text-conditioning.js';

/**
 * A call with its settings resolved against a model: the options, the settings after defaults, the
 * task's strategy and the sizes the loop needs. Made by resolveSettings only; `generate` and
 * `textToVideo` take one in place of options, so that a caller that resolved before loading (the
 * CLI) does not resolve again.
 */
export class ResolvedCall implements ResolvedSettings, CallGeometry {
  readonly task: TaskName;
  readonly numFrames: number;
  readonly height: number;
  readonly width: number;
  readonly fps: number;
  readonly numInferenceSteps: number;
  readonly guidanceScale: number;
  readonly guidanceScale2: number | undefined;
  readonly seed: number;
  readonly batch: number;
  /** Flow shift of the schedule: the call's, else the model's default; undefined keeps the scheduler config's. */
  readonly shift: number | undefined;
  readonly latentShape: readonly [number, number, number, number, number];
  readonly tokensPerFrame: number;
  readonly tokens: number;

  /** @internal resolveSettings builds it. */
  constructor(
    readonly spec: PipelineSpec,
    readonly options: GenerateOptions,
    readonly strategy: ConditioningStrategy,
    s: ResolvedSettings & { shift: number | undefined },
  ) {
    this.task = s.task;
    this.numFrames = s.numFrames;
    this.height = s.height;
    this.width = s.width;
    this.fps = s.fps;
    this.numInferenceSteps = s.numInferenceSteps;
    this.guidanceScale = s.guidanceScale;
    this.guidanceScale2 = s.guidanceScale2;
    this.seed = s.seed;
    this.batch = s.batch;
    this.shift = s.shift;
    const sp = spec.scaleFactorSpatial;
    const [pt, ph, pw] = spec.patchSize;
    const latentFrames = (s.numFrames - 1) / spec.scaleFactorTemporal + 1;
    this.latentShape = [s.batch, spec.latentChannels, latentFrames, s.height / sp, s.width / sp];
    this.tokensPerFrame = (s.height / sp / ph) * (s.width / sp / pw);
    this.tokens = (latentFrames / pt) * this.tokensPerFrame;
  }

  /**
   * Throws an OutOfMemoryError when this call cannot fit `budget` (default: what the current backend
   * has free now), counting the VAE decode when `decode` (textToVideo).
   */
  checkMemory(decode: boolean, budget: MemoryBudget = memoryBudget()): void {
    const o = this.options;
    const sources: SizeSources = {
      size: o.latents ? 'latents' : o.height === undefined && o.width === undefined && o.image ? 'image' : 'width×height',
      frames: o.latents ? 'latents' : 'numFrames',
      batch: o.latents ? 'latents' : o.promptEmbeds ? 'promptEmbeds' : 'prompt',
    };
    const decodeTiles = o.vaeMemoryBudget !== undefined || o.vaeDecode?.tileSize !== undefined;
    checkMemory(this.spec, this, { decode, task: this.task, decodeTiles }, budget, sources);
  }

  /** The initial noise [B, C, F', H', W']: from `seed`, or sample i from `options.seeds[i]` (the noise of a single call with that seed). */
  noise(): tf.Tensor {
    const seeds = this.options.seeds;
    if (!seeds) return randn(this.latentShape, this.seed);
    const sample = [1, ...this.latentShape.slice(1)];
    const n = sample.reduce((a, d) => a * d, 1);
    const data = new Float32Array(n * seeds.length);
    seeds.forEach((seed, i) => data.set(randnHost(sample, seed), i * n));
    return tf.tensor(data, [...this.latentShape], 'float32');
  }

  /** The settings alone (what textToVideo reports). */
  get settings(): ResolvedSettings {
    const { task, numFrames, height, width, fps, numInferenceSteps, guidanceScale, guidanceScale2, seed, batch } = this;
    return { task, numFrames, height, width, fps, numInferenceSteps, guidanceScale, guidanceScale2, seed, batch };
  }
}

/** The task of a call: image channels when the DiT takes them, first-frame tokens with an image on a per-token-timestep model, else text. */
export function strategyFor(spec: PipelineSpec, o: GenerateOptions): ConditioningStrategy {
  if (spec.conditionChannels > 0) return imageChannelConditioning;
  if (o.image && spec.expandTimesteps) return firstFrameConditioning;
  return textConditioning;
}

/** Options of resolveSettings. */
export interface ResolveOptions {
  /** Whether the call decodes the latents (textToVideo; default) or returns them (generate): the memory check counts the decode. */
  decode?: boolean;
  /** What the call may allocate; default the current backend's memoryBudget(). */
  budget?: MemoryBudget;
}

/**
 * Checks vaeMemoryBudget (a positive number of bytes) and vaeDecode: tileSize a number or [height,
 * width] of at least one latent (`s` pixels), tileOverlap numbers ≥ 0 below tileSize once rounded
 * down to multiples of `s`, and only with a tileSize or a budget (else nothing would use it).
 */
function checkVaeDecode(o: GenerateOptions, s: number): void {
  const budget = o.vaeMemoryBudget;
  if (budget !== undefined && !(typeof budget === 'number' && Number.isFinite(budget) && budget > 0)) {
    throw new ConfigError(`vaeMemoryBudget: got ${String(budget)}, expected a positive number of bytes`);
  }
  const { tileSize, tileOverlap } = o.vaeDecode ?? {};
  const pairOf = (name: string, v: number | readonly number[], min: number): [number, number] => {
    const xs = typeof v === 'number' ? [v, v] : [...v];
    if (xs.length !== 2 || xs.some((x) => typeof x !== 'number' || !Number.isFinite(x) || x < min)) {
      throw new ConfigError(`${name}: got ${JSON.stringify(v)}, expected a number or [height, width] of numbers ≥ ${min} (pixels)`);
    }
    return [xs[0], xs[1]];
  };
  const size = tileSize === undefined ? undefined : pairOf('vaeDecode.tileSize', tileSize, s);
  if (tileOverlap === undefined) return;
  const overlap = pairOf('vaeDecode.tileOverlap', tileOverlap, 0);
  if (size === undefined && budget === undefined) throw new ConfigError('vaeDecode.tileOverlap: give it with vaeDecode.tileSize or vaeMemoryBudget (without tiles it is not used)');
  if (size && overlap.some((v, i) => Math.floor(v / s) >= Math.floor(size[i] / s))) {
    throw new ConfigError(`vaeDecode.tileOverlap: got ${JSON.stringify(tileOverlap)}, expected less than vaeDecode.tileSize (${JSON.stringify(tileSize)}) once both are rounded down to multiples of ${s} pixels`);
  }
}

function finite(name: string, v: number): number {
  if (!Number.isFinite(v)) throw new ConfigError(`${name}: got ${v}, expected a finite number`);
  return v;
}

/**
 * Fills in the model's defaults and checks a call's options against a model (`spec`: from a loaded
 * pipeline, or from a model folder's configs with readPipelineSpec before any weight is read). Every
 * check that needs no tensor's values happens here, in the order an argument is read: prompt and
 * embeddings, steps, guidance (guidanceScale2 only on two-expert models), fps, seed, shift, latents,
 * the task's images (sizes, dtypes), frames and size (the nearest valid value named), batch, the
 * VAE decode's options when decoding (vaeMemoryBudget, vaeDecode), and the memory the call would need (OutOfMemoryError naming the argument to reduce). Values (NaN,
 * pixel ranges) are checked when the call runs.
 */
export function resolveSettings(spec: PipelineSpec, o: GenerateOptions, options: ResolveOptions = {}): ResolvedCall {
  const d = spec.defaults;
  const decode = options.decode ?? true;
  const twoExperts = spec.boundaryRatio !== null;
  if ((o.prompt === undefined) === (o.promptEmbeds === undefined)) {
    throw new ConfigError(o.prompt === undefined ? 'give prompt or promptEmbeds' : 'give prompt or promptEmbeds, not both');
  }
  if (o.negativePrompt !== undefined && o.negativePromptEmbeds !== undefined) throw new ConfigError('give negativePrompt or negativePromptEmbeds, not both');
  if (o.prompt !== undefined && !spec.hasTextEncoder) {
    throw new ConfigError('this pipeline has no text encoder (the model folder has no text_encoder/): pass promptEmbeds and negativePromptEmbeds instead of prompts');
  }
  const steps = o.numInferenceSteps ?? d.numInferenceSteps;
  if (!Number.isInteger(steps) || steps < 1 || steps > spec.numTrainTimesteps) {
    throw new ConfigError(`numInferenceSteps: got ${steps}, expected an integer in [1, ${spec.numTrainTimesteps}] (the scheduler's num_train_timesteps)`);
  }
  const g = finite('guidanceScale', o.guidanceScale ?? d.guidanceScale);
  if (o.guidanceScale2 !== undefined && !twoExperts) {
    throw new ConfigError('guidanceScale2 applies to the low-noise expert of a two-expert model (boundary_ratio set, e.g. Wan2.2-T2V-A14B); this model has one transformer: use guidanceScale');
  }
  const g2 = twoExperts ? finite('guidanceScale2', o.guidanceScale2 ?? (o.guidanceScale !== undefined ? o.guidanceScale : (d.guidanceScale2 ?? g))) : undefined;
  const fps = o.fps ?? d.fps;
  if (!(Number.isFinite(fps) && fps > 0)) throw new ConfigError(`fps: got ${fps}, expected a positive number`);
  if (o.seed !== undefined && o.seeds !== undefined) throw new ConfigError('give seed or seeds (one per prompt), not both');
  for (const [i, v] of (o.seeds ?? []).entries()) {
    if (!Number.isSafeInteger(v) || v < 0) throw new ConfigError(`seeds[${i}]: got ${v}, expected an integer in [0, ${MAX_SEED}]`);
  }
  const seed = o.seeds?.[0] ?? o.seed ?? randomSeed();
  if (!Number.isSafeInteger(seed) || seed < 0) throw new ConfigError(`seed: got ${seed}, expected an integer in [0, ${MAX_SEED}]`);
  const shift = o.shift ?? d.shift;
  if (shift !== undefined && !(Number.isFinite(shift) && shift > 0)) throw new ConfigError(`shift: got ${shift}, expected a finite number > 0`);

  const ft = spec.scaleFactorTemporal;
  const s = spec.scaleFactorSpatial;
  const [pt, ph, pw] = spec.patchSize;
  const mh = s * ph;
  const mw = s * pw;
  let given: ImpliedSize & { numFrames?: number } = { numFrames: o.numFrames, height: o.height, width: o.width };
  if (o.latents) {
    const [, C, F, H, W] = o.latents.shape;
    if (o.latents.rank !== 5 || C !== spec.latentChannels) throw new ShapeError('latents', `[${o.latents.shape}]`, `[B, ${spec.latentChannels}, F', H', W']`);
    checkFloat32('latents', o.latents);
    const implied = { numFrames: (F - 1) * ft + 1, height: H * s, width: W * s };
    for (const [k, v] of Object.entries(implied) as Array<[keyof typeof implied, number]>) {
      const value = o[k];
      if (value !== undefined && value !== v) throw new ShapeError('latents', `[${o.latents.shape}]`, `a shape matching ${k} = ${value} (these latents imply ${k} = ${v})`);
    }
    given = implied;
  }
  const strategy = strategyFor(spec, o);
  const fromImage = strategy.checkImages(spec, o, given);
  const numFrames = given.numFrames ?? d.numFrames;
  const height = fromImage.height ?? d.height;
  const width = fromImage.width ?? d.width;
  // The VAE makes (numFrames − 1)/ft + 1 latent frames, which the DiT patches pt at a time.
  const framesFor = (latentFrames: number) => (latentFrames - 1) * ft + 1;
  if (!Number.isInteger(numFrames) || numFrames < 1 || (numFrames - 1) % ft !== 0 || ((numFrames - 1) / ft + 1) % pt !== 0) {
    const nearest = Number.isFinite(numFrames) ? framesFor(Math.max(pt, Math.round(((numFrames - 1) / ft + 1) / pt) * pt)) : framesFor(pt);
    const rule = pt === 1 ? `1 + ${ft}k frames` : `frames that make a multiple of ${pt} latent frames (VAE factor ${ft}, patch ${pt})`;
    throw new ShapeError('numFrames', String(numFrames), `${rule} (${framesFor(pt)}, ${framesFor(2 * pt)}, ${framesFor(3 * pt)}, …)`, String(nearest));
  }
  for (const [name, v, m] of [['height', height, mh], ['width', width, mw]] as const) {
    if (!Number.isInteger(v) || v < m || v % m !== 0) {
      throw new ShapeError(name, String(v), `a positive multiple of ${m} (VAE factor ${s} × patch ${m / s})`, Number.isFinite(v) ? String(nearestMultiple(v, m)) : undefined);
    }
  }

  let batch: number;
  if (o.promptEmbeds) {
    const e = o.promptEmbeds;
    if (e.rank !== 3 || e.shape[2] !== spec.textDim || (e.shape[1] ?? 0) < 1) throw new ShapeError('promptEmbeds', `[${e.shape}]`, `[B, Ltxt, ${spec.textDim}]`);
    checkFloat32('promptEmbeds', e);
    batch = e.shape[0];
  } else {
    batch = typeof o.prompt === 'string' ? 1 : (o.prompt ?? []).length;
    if (batch === 0) throw new ConfigError('prompt: got an empty list, expected at least one prompt');
  }
  if (o.negativePromptEmbeds) {
    const e = o.negativePromptEmbeds;
    if (e.rank !== 3 || e.shape[0] !== batch || e.shape[2] !== spec.textDim) throw new ShapeError('negativePromptEmbeds', `[${e.shape}]`, `[${batch}, Ltxt, ${spec.textDim}]`);
    checkFloat32('negativePromptEmbeds', e);
  }
  if (o.negativePrompt !== undefined && typeof o.negativePrompt !== 'string' && o.negativePrompt.length !== batch) {
    throw new ConfigError(`negativePrompt: got ${o.negativePrompt.length} prompts for a batch of ${batch}; give one string or one per prompt`);
  }
  if (o.latents && o.latents.shape[0] !== batch) throw new ShapeError('latents', `[${o.latents.shape}]`, `batch ${batch} (the number of prompts)`);
  if (o.seeds !== undefined && o.latents) throw new ConfigError('seeds: the noise is given as latents; give one or the other');
  if (o.seeds !== undefined && o.seeds.length !== batch) throw new ConfigError(`seeds: got ${o.seeds.length} seeds for a batch of ${batch}; give one per prompt`);
  strategy.checkCall(spec, o, batch, numFrames);
  if (g > 1 && o.negativePromptEmbeds === undefined && !spec.hasTextEncoder) {
    throw new ConfigError(
      o.negativePrompt !== undefined
        ? 'negativePrompt: this pipeline has no text encoder to encode it: pass negativePromptEmbeds'
        : 'guidance > 1 needs negative embeddings: pass negativePromptEmbeds (this pipeline has no text encoder to encode a negative prompt)',
    );
  }
  if (decode && spec.vae === 'none') throw new ConfigError('this pipeline has no VAE (the model folder has no vae/): use generate() for latents');
  if (decode) checkVaeDecode(o, s);

  const call = new ResolvedCall(spec, o, strategy, { task: strategy.task, numFrames, height, width, fps, numInferenceSteps: steps, guidanceScale: g, guidanceScale2: g2, seed, batch, shift });
  call.checkMemory(decode, options.budget);
  return call;
}
