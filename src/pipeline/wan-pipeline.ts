import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { AutoencoderKLWan, type WanVaeDecodeOptions, type WanVaeEncodeOptions } from '../../layers/autoencoder-kl-wan.js';
import { WanTransformer3DModel } from '../../layers/wan-transformer-3d-model.js';
import { loadScheduler } from '../../schedulers/index.js';
import type { FlowScheduler } from '../../schedulers/scheduler.js';
import { openCheckpoint } from '../../weights/component.js';
import { AbortError, CheckpointError, ConfigError, ShapeError } from '../errors.js';
import { readModelIndex, type ModelIndex, type SamplingDefaults } from './model-index.js';
import { MAX_SEED, randn, randomSeed } from '../random.js';
import { WanTextEncoder } from '../text/text-encoder.js';
import { readJsonFile } from '../../weights/read-json.js';

/** What the pipeline needs of a denoiser (WanTransformer3DModel). */
export interface PipelineTransformer {
  /** outChannels (default inChannels) is the noise; inChannels − outChannels are image-condition channels (Wan2.2-I2V-A14B). */
  readonly config: { readonly inChannels: number; readonly outChannels?: number; readonly patchSize: readonly number[]; readonly textDim: number };
  // hiddenStates: [B, C, F, H, W], timestep: [B] or [B, L], encoderHiddenStates: [B, Ltxt, textDim] → [B, C, F, H, W]
  forward(hiddenStates: tf.Tensor, timestep: tf.Tensor, encoderHiddenStates: tf.Tensor): tf.Tensor;
  dispose(): unknown;
}

/** What the pipeline needs of a VAE (AutoencoderKLWan). */
export interface PipelineVae {
  readonly config: {
    readonly zDim: number;
    readonly scaleFactorSpatial: number;
    readonly scaleFactorTemporal: number;
    readonly latentsMean: readonly number[];
    readonly latentsStd: readonly number[];
  };
  // z: [B, zDim, F, H, W] (denormalised) → video [B, 3, 1 + 4(F − 1), sH, sW] in [-1, 1]
  decode(z: tf.Tensor, options?: WanVaeDecodeOptions): tf.Tensor;
  // video: [B, 3, F, H, W] in [-1, 1] → posterior mean and log-variance [B, zDim, F', H/s, W/s]; needed for `image`
  encode?(video: tf.Tensor, options?: WanVaeEncodeOptions): { mean: tf.Tensor; logvar: tf.Tensor };
  dispose(): unknown;
}

/** What the pipeline needs of a text encoder (WanTextEncoder: tokenizer + umT5). */
export interface PipelineTextEncoder {
  // prompts: B strings → [B, Ltxt, textDim], rows past each prompt zero
  encode(prompts: readonly string[]): Promise<tf.Tensor>;
  /** Frees the encoder's weights (embeddings already made, and cached ones, stay usable). */
  release(): void;
}

/** One expert: a loaded model, and (optionally) how to load it again after it was released. */
export class ExpertSlot {
  private model: PipelineTransformer | undefined;

  constructor(
    readonly name: string,
    model: PipelineTransformer | undefined,
    private readonly loader?: () => Promise<PipelineTransformer>,
  ) {
    this.model = model;
    if (!model && !loader) throw new ConfigError(`expert '${name}': give a model or a loader`);
  }

  get resident(): boolean {
    return this.model !== undefined;
  }

  /** The loaded model, if any (no loading). */
  get current(): PipelineTransformer | undefined {
    return this.model;
  }

  get canReload(): boolean {
    return this.loader !== undefined;
  }

  async get(): Promise<PipelineTransformer> {
    this.model ??= await this.loader!();
    return this.model;
  }

  /** Frees the weights; the next `get` reloads them. */
  release(): void {
    if (!this.loader) throw new ConfigError(`expert '${this.name}' was given without a loader and cannot be released and reloaded`);
    this.model?.dispose();
    this.model = undefined;
  }

  dispose(): void {
    this.model?.dispose();
    this.model = undefined;
  }
}

/** Whether both A14B experts stay in memory, or only the one in use (the other is freed and reloaded at the boundary). */
export type ExpertResidency = 'both' | 'active';

export interface WanPipelineComponents {
  /** The only expert, or the high-noise expert of a two-expert model. */
  transformer: PipelineTransformer | ExpertSlot;
  /** The low-noise expert (with boundaryRatio). */
  transformer2?: PipelineTransformer | ExpertSlot;
  vae?: PipelineVae;
  /** The VAE's factors when no VAE is loaded (default 8 spatial, 4 temporal; the VAE's config wins when there is one). */
  vaeScaleFactors?: { spatial: number; temporal: number };
  textEncoder?: PipelineTextEncoder;
  scheduler: FlowScheduler;
  /** `transformer` runs while t ≥ boundaryRatio·numTrainTimesteps, `transformer2` after. */
  boundaryRatio?: number | null;
  /** Per-token timesteps [B, L] (Wan2.2-TI2V-5B). */
  expandTimesteps?: boolean;
  numTrainTimesteps?: number;
  defaults?: Partial<SamplingDefaults>;
  residency?: ExpertResidency;
}

/** Progress of the denoising loop. */
export interface StepInfo {
  /** Steps completed (1 … total). */
  step: number;
  total: number;
  /** The timestep the step ran at (σ·1000). */
  timestep: number;
  /** 'transformer' (high-noise / only expert) or 'transformer_2'. */
  expert: 'transformer' | 'transformer_2';
  guidanceScale: number;
  /** Milliseconds since the loop started. */
  elapsedMs: number;
  /**
   * The latents after this step [B, C, F, H, W]; valid only during the callback (clone to keep). With
   * a TI2V first frame, frame 0 here is still the scheduler's (noisy); the result replaces it.
   */
  latents: tf.Tensor;
}

export interface GenerateOptions {
  /** One prompt or a batch; or pass `promptEmbeds`. */
  prompt?: string | readonly string[];
  /** [B, Ltxt, textDim] (not disposed by the pipeline). */
  promptEmbeds?: tf.Tensor;
  /** Default '' (as Diffusers). Ignored without guidance. */
  negativePrompt?: string | readonly string[];
  negativePromptEmbeds?: tf.Tensor;
  /** 1 + 4k frames (the VAE's temporal factor). */
  numFrames?: number;
  /** Used by textToVideo for the result; the denoising does not depend on it. */
  fps?: number;
  height?: number;
  width?: number;
  /** Guidance of `transformer`. As in Diffusers, CFG is on when it is > 1, and then every step (either expert) uses v_neg + g·(v − v_neg). */
  guidanceScale?: number;
  /** Guidance of `transformer_2` (two-expert models only); default guidanceScale. */
  guidanceScale2?: number;
  numInferenceSteps?: number;
  /** Flow shift for this run, in place of the scheduler config's. */
  shift?: number;
  /** Seed of the initial noise (host-generated, identical on every backend). */
  seed?: number;
  /** Initial latents [B, C, F', H', W'] instead of noise (not disposed by the pipeline). */
  latents?: tf.Tensor;
  /**
   * The first frame, [H, W, 3] or [B, H, W, 3] in [0, 1] (as `frames`), for image-to-video (required
   * by models with image-condition channels). Its size sets height and width. As Diffusers'
   * WanImageToVideoPipeline: with expand_timesteps (Wan2.2-TI2V-5B) the VAE's posterior mean of the
   * image, normalised, replaces latent frame 0 in every DiT input and in the result, and that frame's
   * tokens get timestep 0; with image-condition channels (Wan2.2-I2V-A14B) the DiT gets a first-frame
   * mask and the latents of [image, 0, …, 0] after the noise channels. Not disposed by the pipeline.
   */
  image?: tf.Tensor;
  /**
   * The last frame, as `image` (same size; one, or one per prompt), for first-and-last-frame video
   * with image-condition channels (Wan2.2-I2V-A14B; Diffusers' `last_image`): the condition video is
   * [image, 0, …, 0, lastImage] and the mask marks both ends. Not disposed by the pipeline.
   */
  lastImage?: tf.Tensor;
  /**
   * Options of the VAE encode of the image condition: spatial tiles (`tileSize`, `tileOverlap`) and
   * `onProgress` (I2V-A14B encodes a whole video [image, 0, …, 0], the longest step before denoising).
   */
  imageEncode?: WanVaeEncodeOptions;
  onStep?: (info: StepInfo) => void;
  /** Stops the loop before the next step; the promise rejects with AbortError and nothing leaks. */
  signal?: AbortSignal;
}

/** The settings a run actually used, after defaults. */
export interface ResolvedSettings {
  numFrames: number;
  height: number;
  width: number;
  fps: number;
  numInferenceSteps: number;
  guidanceScale: number;
  guidanceScale2: number | undefined;
  seed: number;
  batch: number;
}

export interface TextToVideoResult extends ResolvedSettings {
  /** [B, F, H, W, 3] float32 in [0, 1] (the caller disposes). */
  frames: tf.Tensor;
}

/** Options of WanPipeline.fromPretrained. */
export interface WanPipelineLoadOptions {
  /** Two-expert models: keep both experts loaded ('both', default) or only the one in use ('active'). */
  residency?: ExpertResidency;
  /** Load the text encoder when the folder has one (default true); without it, pass embeddings. */
  loadTextEncoder?: boolean;
  /** Load the VAE (default true); without it, generate() still returns latents. */
  loadVae?: boolean;
  /** Called while each component's tensors load. */
  onProgress?: (event: { component: string; loaded: number; total: number }) => void;
}

/** A CheckpointError for an original-release .pth file that must be converted first. */
function checkNotPickle(file: string | undefined, what: string): void {
  if (file && /\.(pth|pt|bin)$/.test(file)) {
    throw new CheckpointError(
      `the ${what} is a PyTorch pickle; convert it to safetensors first (python: safetensors.torch.save_file(torch.load(f, map_location="cpu"), "${file.replace(/\.(pth|pt|bin)$/, '.safetensors').split(/[\\/]/).pop()}"))`,
      file,
    );
  }
}

/** Opens a checkpoint's headers (validating every file) and closes it again. */
function probeCheckpoint(p: string): void {
  openCheckpoint(p).close();
}

/** scale_factor_spatial / _temporal from a Diffusers vae/config.json; an original VAE file by its name (Wan2.2: 16). */
function vaeScaleFactors(vae: string): { spatial: number; temporal: number } {
  const config = path.join(vae, 'config.json');
  if (fs.existsSync(config)) {
    const j = readJsonFile(config) as { scale_factor_spatial?: unknown; scale_factor_temporal?: unknown };
    return {
      spatial: typeof j.scale_factor_spatial === 'number' ? j.scale_factor_spatial : 8,
      temporal: typeof j.scale_factor_temporal === 'number' ? j.scale_factor_temporal : 4,
    };
  }
  return { spatial: /2\.2/.test(path.basename(vae)) ? 16 : 8, temporal: 4 };
}

const FALLBACK_DEFAULTS: SamplingDefaults = { numInferenceSteps: 50, guidanceScale: 5.0, guidanceScale2: undefined, numFrames: 81, fps: 16, height: 480, width: 832, shift: undefined, maxSequenceLength: 512 };

function asSlot(name: string, t: PipelineTransformer | ExpertSlot): ExpertSlot {
  return t instanceof ExpertSlot ? t : new ExpertSlot(name, t);
}

function nextTick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError('generation was aborted');
}

/** The nearest multiple of m (at least m). */
function nearestMultiple(x: number, m: number): number {
  return Math.max(m, Math.round(x / m) * m);
}

/** An image option must hold float32 pixels in [0, 1] (8-bit pixels divided by 255). */
function checkPixels(name: string, image: tf.Tensor): void {
  if (image.dtype !== 'float32') throw new ConfigError(`${name}: got a ${image.dtype} tensor, expected float32 RGB in [0, 1] (divide 8-bit pixels by 255)`);
  const [lo, hi] = tf.tidy(() => [tf.min(image), tf.max(image)].map((t) => t.dataSync()[0]));
  if (!(lo >= 0 && hi <= 1)) throw new ConfigError(`${name}: values span [${lo}, ${hi}], expected RGB in [0, 1] (divide 8-bit pixels by 255)`);
}

/**
 * Wan text-to-video (Diffusers' WanPipeline): text embeddings → flow-matching denoising with
 * classifier-free guidance (v = v_neg + g·(v − v_neg)), one or two experts split at
 * boundary_ratio → VAE decode → frames in [0, 1]. Staged: `encodeText`, `generate` (→ latents),
 * `decodeLatents` (→ frames), or `textToVideo` for all three.
 */
export class WanPipeline {
  readonly experts: readonly [ExpertSlot] | readonly [ExpertSlot, ExpertSlot];
  readonly vae: PipelineVae | undefined;
  readonly textEncoder: PipelineTextEncoder | undefined;
  readonly scheduler: FlowScheduler;
  readonly boundaryRatio: number | null;
  readonly expandTimesteps: boolean;
  readonly numTrainTimesteps: number;
  readonly defaults: SamplingDefaults;
  readonly residency: ExpertResidency;
  private readonly scaleFactors: { spatial: number; temporal: number };
  /** Latent channels, patch size and text width of the denoiser (read from the first expert). */
  readonly latentChannels: number;
  /**
   * Image-condition channels the denoiser takes after the noise: 0, or (Wan2.2-I2V-A14B) the VAE's
   * temporal factor (a first-frame mask) + z_dim (the latents of the first frame followed by zeros).
   */
  readonly conditionChannels: number;
  readonly patchSize: readonly number[];
  readonly textDim: number;

  constructor(c: WanPipelineComponents) {
    const first = asSlot('transformer', c.transformer);
    this.boundaryRatio = c.boundaryRatio ?? null;
    if (this.boundaryRatio !== null) {
      if (!c.transformer2) throw new ConfigError('boundaryRatio is set (two experts) but transformer2 is missing');
      if (!(this.boundaryRatio > 0 && this.boundaryRatio < 1)) throw new ConfigError(`boundaryRatio: got ${this.boundaryRatio}, expected a number in (0, 1)`);
      this.experts = [first, asSlot('transformer_2', c.transformer2)];
    } else {
      if (c.transformer2) throw new ConfigError('transformer2 given without boundaryRatio: set boundaryRatio (e.g. 0.875 for Wan2.2-T2V-A14B)');
      this.experts = [first];
    }
    this.residency = c.residency ?? 'both';
    if (this.residency === 'active' && this.experts.length === 2 && !this.experts.every((e) => e.canReload)) {
      throw new ConfigError("residency 'active' needs experts that can be reloaded (ExpertSlot with a loader; fromPretrained makes them)");
    }
    const model = first.current ?? this.experts[1]?.current;
    if (!model) throw new ConfigError('at least one expert must be loaded when the pipeline is built');
    this.latentChannels = model.config.outChannels ?? model.config.inChannels;
    this.conditionChannels = model.config.inChannels - this.latentChannels;
    this.patchSize = [...model.config.patchSize];
    this.textDim = model.config.textDim;
    this.vae = c.vae;
    this.scaleFactors = c.vae ? { spatial: c.vae.config.scaleFactorSpatial, temporal: c.vae.config.scaleFactorTemporal } : (c.vaeScaleFactors ?? { spatial: 8, temporal: 4 });
    this.textEncoder = c.textEncoder;
    this.scheduler = c.scheduler;
    this.expandTimesteps = c.expandTimesteps ?? false;
    this.numTrainTimesteps = c.numTrainTimesteps ?? 1000;
    this.defaults = { ...FALLBACK_DEFAULTS, ...c.defaults };
    if (this.vae && this.vae.config.zDim !== this.latentChannels) {
      throw new ConfigError(`the VAE's z_dim (${this.vae.config.zDim}) differs from the transformer's out_channels (${this.latentChannels})`);
    }
    if (this.conditionChannels < 0) throw new ConfigError(`the transformer's in_channels (${model.config.inChannels}) is below its out_channels (${this.latentChannels})`);
    if (this.conditionChannels > 0) {
      if (this.expandTimesteps) throw new ConfigError('a transformer with image-condition channels (in_channels > out_channels) cannot also take per-token timesteps (expand_timesteps)');
      const expected = this.scaleFactors.temporal + this.latentChannels;
      if (this.conditionChannels !== expected) {
        throw new ConfigError(
          `the transformer takes ${model.config.inChannels} input channels, ${this.latentChannels} of noise and ${this.conditionChannels} of condition; an image condition has ${this.scaleFactors.temporal} mask + ${this.latentChannels} latent channels (${expected})`,
        );
      }
    }
  }

  /**
   * Loads a model folder in the Diffusers layout (model_index.json; transformer/, transformer_2/
   * with boundary_ratio, vae/, text_encoder/, tokenizer/, scheduler/) or the original Wan layout
   * (high_noise_model/ + low_noise_model/, or one WanModel; Wan2.x_VAE.safetensors). Every
   * checkpoint is checked before anything is loaded; a missing or truncated file raises a
   * CheckpointError naming it.
   */
  static async fromPretrained(dir: string, options: WanPipelineLoadOptions = {}): Promise<WanPipeline> {
    const index: ModelIndex = readModelIndex(dir);
    const wantVae = options.loadVae ?? true;
    const wantText = (options.loadTextEncoder ?? true) && index.textEncoder !== undefined;
    if (wantVae) checkNotPickle(index.vae, 'VAE');
    if (wantText) {
      checkNotPickle(index.textEncoder, 'text encoder');
      if (!index.tokenizer) throw new CheckpointError('the model has a text encoder but no tokenizer (tokenizer/tokenizer.json or google/umt5-xxl/tokenizer.json)', index.root);
    }
    for (const p of [index.transformer, index.transformer2, wantVae ? index.vae : undefined, wantText ? index.textEncoder : undefined]) if (p) probeCheckpoint(p);
    const progress = (component: string) => (loaded: number, total: number) => options.onProgress?.({ component, loaded, total });
    const residency = options.residency ?? 'both';
    const loader = (name: string, p: string) => () => WanTransformer3DModel.fromPretrained(p, { onProgress: progress(name) });
    const slots: ExpertSlot[] = [];
    let vae: AutoencoderKLWan | undefined;
    let textEncoder: WanTextEncoder | undefined;
    try {
      const scheduler = await loadScheduler(index.scheduler);
      slots.push(new ExpertSlot('transformer', await loader('transformer', index.transformer)(), loader('transformer', index.transformer)));
      if (index.transformer2) {
        const load2 = loader('transformer_2', index.transformer2);
        slots.push(new ExpertSlot('transformer_2', residency === 'both' ? await load2() : undefined, load2));
      }
      if (wantVae && index.vae) vae = await AutoencoderKLWan.fromPretrained(index.vae, { onProgress: progress('vae') });
      if (wantText) textEncoder = await WanTextEncoder.fromPretrained(index.root, { tokenizerDir: index.tokenizer, maxLength: index.defaults.maxSequenceLength, onProgress: progress('text_encoder') });
      return new WanPipeline({
        transformer: slots[0],
        transformer2: slots[1],
        vae,
        vaeScaleFactors: index.vae ? vaeScaleFactors(index.vae) : undefined,
        textEncoder,
        scheduler,
        boundaryRatio: index.boundaryRatio,
        expandTimesteps: index.expandTimesteps,
        numTrainTimesteps: index.numTrainTimesteps,
        defaults: index.defaults,
        residency,
      });
    } catch (e) {
      for (const slot of slots) slot.dispose();
      vae?.dispose();
      textEncoder?.release();
      throw e;
    }
  }

  /** Spatial factor of the VAE (8 for Wan2.1, 16 for Wan2.2). */
  get vaeScaleFactorSpatial(): number {
    return this.scaleFactors.spatial;
  }

  /** Temporal factor of the VAE (4). */
  get vaeScaleFactorTemporal(): number {
    return this.scaleFactors.temporal;
  }

  /** Prompt(s) → embeddings [B, Ltxt, textDim] with the text encoder (the caller disposes). */
  async encodeText(prompt: string | readonly string[]): Promise<tf.Tensor> {
    if (!this.textEncoder) {
      throw new ConfigError('this pipeline has no text encoder (the model folder has no text_encoder/): pass promptEmbeds and negativePromptEmbeds instead of prompts');
    }
    const prompts = typeof prompt === 'string' ? [prompt] : [...prompt];
    if (prompts.length === 0) throw new ConfigError('prompt: got an empty list, expected at least one prompt');
    const e = await this.textEncoder.encode(prompts);
    if (e.rank !== 3 || e.shape[0] !== prompts.length || e.shape[2] !== this.textDim) {
      const shape = `[${e.shape}]`;
      e.dispose();
      throw new ShapeError('text encoder output', shape, `[${prompts.length}, Ltxt, ${this.textDim}] (the transformer's text_dim)`);
    }
    return e;
  }

  /** Fills in defaults and validates everything before any tensor is made. */
  resolve(o: GenerateOptions): ResolvedSettings {
    const d = this.defaults;
    const twoExperts = this.experts.length === 2;
    if ((o.prompt === undefined) === (o.promptEmbeds === undefined)) {
      throw new ConfigError(o.prompt === undefined ? 'give prompt or promptEmbeds' : 'give prompt or promptEmbeds, not both');
    }
    if (o.negativePrompt !== undefined && o.negativePromptEmbeds !== undefined) throw new ConfigError('give negativePrompt or negativePromptEmbeds, not both');
    const steps = o.numInferenceSteps ?? d.numInferenceSteps;
    if (!Number.isInteger(steps) || steps < 1) throw new ConfigError(`numInferenceSteps: got ${steps}, expected an integer ≥ 1`);
    const g = o.guidanceScale ?? d.guidanceScale;
    if (!Number.isFinite(g)) throw new ConfigError(`guidanceScale: got ${g}, expected a finite number`);
    if (o.guidanceScale2 !== undefined && !twoExperts) {
      throw new ConfigError('guidanceScale2 applies to the low-noise expert of a two-expert model (boundary_ratio set, e.g. Wan2.2-T2V-A14B); this model has one transformer: use guidanceScale');
    }
    const g2 = twoExperts ? (o.guidanceScale2 ?? (o.guidanceScale !== undefined ? o.guidanceScale : (d.guidanceScale2 ?? g))) : undefined;
    if (g2 !== undefined && !Number.isFinite(g2)) throw new ConfigError(`guidanceScale2: got ${g2}, expected a finite number`);
    const fps = o.fps ?? d.fps;
    if (!(Number.isFinite(fps) && fps > 0)) throw new ConfigError(`fps: got ${fps}, expected a positive number`);
    const seed = o.seed ?? randomSeed();
    if (!Number.isSafeInteger(seed) || seed < 0) throw new ConfigError(`seed: got ${seed}, expected an integer in [0, ${MAX_SEED}]`);

    const ft = this.vaeScaleFactorTemporal;
    const s = this.vaeScaleFactorSpatial;
    const mh = s * (this.patchSize[1] ?? 2);
    const mw = s * (this.patchSize[2] ?? 2);
    let numFrames = o.numFrames;
    let height = o.height;
    let width = o.width;
    if (o.latents) {
      const [, C, F, H, W] = o.latents.shape;
      if (o.latents.rank !== 5 || C !== this.latentChannels) {
        throw new ShapeError('latents', `[${o.latents.shape}]`, `[B, ${this.latentChannels}, F', H', W']`);
      }
      const implied = { numFrames: (F - 1) * ft + 1, height: H * s, width: W * s };
      for (const [k, v] of Object.entries(implied) as Array<[keyof typeof implied, number]>) {
        const given = o[k];
        if (given !== undefined && given !== v) throw new ShapeError('latents', `[${o.latents.shape}]`, `a shape matching ${k} = ${given} (these latents imply ${k} = ${v})`);
      }
      ({ numFrames, height, width } = implied);
    }
    if (this.conditionChannels > 0 && !o.image) {
      throw new ConfigError(`image: this is an image-to-video model (its transformer takes ${this.latentChannels} noise + ${this.conditionChannels} image-condition channels); pass the first frame`);
    }
    if (o.image) {
      if (!this.expandTimesteps && this.conditionChannels === 0) {
        throw new ConfigError(
          'image: a first frame needs an image-to-video model: per-token timesteps (Wan2.2-TI2V-5B; expand_timesteps in model_index.json) or image-condition channels (Wan2.2-I2V-A14B); this one is text-to-video only',
        );
      }
      if (this.expandTimesteps && (this.patchSize[0] ?? 1) !== 1) throw new ConfigError(`image: the first frame's tokens need a temporal patch of 1; this DiT's patch is [${this.patchSize}]`);
      if (!this.vae?.encode) throw new ConfigError('image: the VAE must encode the first frame, and this pipeline has none (the model folder has no vae/, or loadVae was false)');
      const im = o.image;
      if ((im.rank !== 3 && im.rank !== 4) || im.shape[im.rank - 1] !== 3) throw new ShapeError('image', `[${im.shape}]`, '[H, W, 3] or [B, H, W, 3] RGB in [0, 1]');
      checkPixels('image', im);
      const [ih, iw] = im.shape.slice(im.rank - 3, im.rank - 1) as [number, number];
      if (height === undefined && width === undefined && (ih % mh !== 0 || iw % mw !== 0)) {
        throw new ShapeError('image', `[${im.shape}]`, `a size that is a multiple of ${mh}×${mw} (VAE factor × patch; resize or crop the image)`, `${nearestMultiple(ih, mh)}×${nearestMultiple(iw, mw)}`);
      }
      height ??= ih;
      width ??= iw;
      if (ih !== height || iw !== width) throw new ShapeError('image', `[${im.shape}]`, `${height}×${width} pixels, the video's size (resize the image first)`);
    }
    if (o.lastImage) {
      if (!o.image) throw new ConfigError('lastImage: give the first frame (image) too');
      if (this.conditionChannels === 0) throw new ConfigError('lastImage: a last frame needs a model with image-condition channels (Wan2.2-I2V-A14B); per-token-timestep models (TI2V-5B) take a first frame only');
      const li = o.lastImage;
      const size = o.image.shape.slice(o.image.rank - 3);
      if ((li.rank !== 3 && li.rank !== 4) || li.shape.slice(li.rank - 3).join() !== size.join()) {
        throw new ShapeError('lastImage', `[${li.shape}]`, `[${size}] or [B, ${size}], the size of image`);
      }
      checkPixels('lastImage', li);
    }
    numFrames ??= d.numFrames;
    height ??= d.height;
    width ??= d.width;
    // The VAE makes (numFrames − 1)/ft + 1 latent frames, which the DiT patches pt at a time.
    const pt = this.patchSize[0] ?? 1;
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
      if (e.rank !== 3 || e.shape[2] !== this.textDim || (e.shape[1] ?? 0) < 1) throw new ShapeError('promptEmbeds', `[${e.shape}]`, `[B, Ltxt, ${this.textDim}]`);
      batch = e.shape[0];
    } else {
      batch = typeof o.prompt === 'string' ? 1 : o.prompt!.length;
      if (batch === 0) throw new ConfigError('prompt: got an empty list, expected at least one prompt');
    }
    if (o.negativePromptEmbeds) {
      const e = o.negativePromptEmbeds;
      if (e.rank !== 3 || e.shape[0] !== batch || e.shape[2] !== this.textDim) throw new ShapeError('negativePromptEmbeds', `[${e.shape}]`, `[${batch}, Ltxt, ${this.textDim}]`);
    }
    if (o.negativePrompt !== undefined && typeof o.negativePrompt !== 'string' && o.negativePrompt.length !== batch) {
      throw new ConfigError(`negativePrompt: got ${o.negativePrompt.length} prompts for a batch of ${batch}; give one string or one per prompt`);
    }
    if (o.latents && o.latents.shape[0] !== batch) throw new ShapeError('latents', `[${o.latents.shape}]`, `batch ${batch} (the number of prompts)`);
    for (const [name, im] of [['image', o.image], ['lastImage', o.lastImage]] as const) {
      if (im?.rank === 4 && im.shape[0] !== 1 && im.shape[0] !== batch) throw new ShapeError(name, `[${im.shape}]`, `one image, or one per prompt (batch ${batch})`);
    }
    if (o.lastImage && numFrames < 2) throw new ShapeError('numFrames', String(numFrames), 'at least 2 frames with a last frame', String(1 + ft));
    if (g > 1 && o.negativePromptEmbeds === undefined && o.prompt === undefined && o.negativePrompt === undefined && !this.textEncoder) {
      throw new ConfigError('guidance > 1 needs negative embeddings: pass negativePromptEmbeds (this pipeline has no text encoder to encode a negative prompt)');
    }
    return { numFrames, height, width, fps, numInferenceSteps: steps, guidanceScale: g, guidanceScale2: g2, seed, batch };
  }

  /** The expert for timestep t: index 0 while t ≥ boundary, else 1. */
  private expertIndex(t: number): 0 | 1 {
    if (this.boundaryRatio === null) return 0;
    return t >= this.boundaryRatio * this.numTrainTimesteps ? 0 : 1;
  }

  /** The expert `i`, loading it (and, with residency 'active', releasing the other first). */
  private async expert(i: 0 | 1): Promise<PipelineTransformer> {
    const slot = this.experts[i]!;
    if (this.residency === 'active' && this.experts.length === 2 && !slot.resident) this.experts[1 - i]!.release();
    return slot.get();
  }

  // The VAE's latents_mean and 1 / latents_std as [1, zDim, 1, 1, 1], as Diffusers computes them (call inside tf.tidy)
  private latentStats(): { mean: tf.Tensor; stdInv: tf.Tensor } {
    const c = this.vae!.config;
    return { mean: tf.tensor(c.latentsMean as number[], [1, c.zDim, 1, 1, 1]), stdInv: tf.div(1, tf.tensor(c.latentsStd as number[], [1, c.zDim, 1, 1, 1])) };
  }

  // image (and lastImage): [H, W, 3] or [b, H, W, 3] in [0, 1] → video [b, 3, numFrames, H, W] in [−1, 1]:
  // the image, zeros, and the last image when there is one
  private static conditionVideo(image: tf.Tensor, numFrames: number, lastImage?: tf.Tensor): tf.Tensor {
    // [b, H, W, 3] → [b, 3, 1, H, W] in [−1, 1]
    const frame = (x: tf.Tensor) => tf.expandDims(tf.sub(tf.mul(tf.transpose(x.rank === 3 ? tf.expandDims(x, 0) : x, [0, 3, 1, 2]), 2), 1), 2);
    const first = frame(image);
    const last = lastImage ? frame(lastImage) : undefined;
    // a single first or last image stands for every sample of the other's batch
    const b = Math.max(first.shape[0], last?.shape[0] ?? 1);
    const toBatch = (x: tf.Tensor) => (x.shape[0] === b ? x : tf.tile(x, [b, 1, 1, 1, 1]));
    const [, c, , H, W] = first.shape;
    const gap = numFrames - 1 - (last ? 1 : 0);
    return tf.concat([toBatch(first), ...(gap > 0 ? [tf.zeros([b, c, gap, H, W])] : []), ...(last ? [toBatch(last)] : [])], 2);
  }

  // video: [b, 3, T, H, W] in [−1, 1] → [batch, zDim, F', H/s, W/s]: the VAE's posterior mean (Diffusers'
  // sample_mode "argmax"), normalised as (z − latents_mean) · (1 / latents_std), repeated to the batch
  private encodeCondition(video: tf.Tensor, batch: number, options?: WanVaeEncodeOptions): tf.Tensor {
    const { mean } = this.vae!.encode!(video, options);
    const stats = this.latentStats();
    const z = tf.mul(tf.sub(mean, stats.mean), stats.stdInv);
    return z.shape[0] === batch ? z : tf.tile(z, [batch, 1, 1, 1, 1]);
  }

  // image → latent frame 0 [batch, zDim, 1, H/s, W/s] (TI2V-5B, expand_timesteps)
  private encodeFirstFrame(image: tf.Tensor, batch: number, options?: WanVaeEncodeOptions): tf.Tensor {
    return tf.tidy(() => this.encodeCondition(WanPipeline.conditionVideo(image, 1), batch, options));
  }

  // image (, lastImage) → condition channels [batch, ft + zDim, F', H/s, W/s] (I2V-A14B): the mask, then
  // the latents of the video [image, 0, …, 0(, lastImage)]; Diffusers' prepare_latents. The mask is the
  // reference's per-frame mask (1 on the given frames) with frame 0 repeated ft times, folded into ft
  // channels: mask[k, f] = m[f·ft + k] over [m₀ × ft, m₁, …, m_{N−1}].
  private encodeImageChannels(image: tf.Tensor, batch: number, numFrames: number, lastImage?: tf.Tensor, options?: WanVaeEncodeOptions): tf.Tensor {
    return tf.tidy(() => {
      const z = this.encodeCondition(WanPipeline.conditionVideo(image, numFrames, lastImage), batch, options);
      const [b, , F, h, w] = z.shape;
      const ft = this.vaeScaleFactorTemporal;
      const given = (i: number) => (i === 0 || (lastImage !== undefined && i === numFrames - 1) ? 1 : 0);
      const extended = [...Array<number>(ft).fill(1), ...Array.from({ length: numFrames - 1 }, (_, i) => given(i + 1))];
      const folded = Array.from({ length: ft * F }, (_, j) => extended[(j % F) * ft + Math.floor(j / F)]);
      const mask = tf.mul(tf.tensor(folded, [1, ft, F, 1, 1]), tf.ones([b, 1, 1, h, w]));
      return tf.concat([mask, z], 1);
    });
  }

  /**
   * The denoising loop: returns the final latents [B, C, F', H', W'] (the caller disposes).
   * Follows Diffusers' WanPipeline.__call__: timesteps from the scheduler, the model gets t as
   * given (σ·1000, truncated to an integer by UniPC), CFG per step with the active expert's scale.
   * With `image`, WanImageToVideoPipeline: for expand_timesteps (TI2V-5B) the DiT sees the image's
   * latent as frame 0 with timestep 0 on its tokens, the scheduler steps the latents as they are, and
   * the result gets the image's latent as frame 0; for image-condition channels (I2V-A14B) the DiT
   * sees [latents, mask, image latents] along the channels at every step.
   */
  async generate(o: GenerateOptions): Promise<tf.Tensor> {
    return this.denoise(o, this.resolve(o));
  }

  // The loop of generate, with the settings already resolved from `o` (textToVideo resolves them once).
  private async denoise(o: GenerateOptions, r: ResolvedSettings): Promise<tf.Tensor> {
    checkAbort(o.signal);
    const owned: tf.Tensor[] = [];
    let latents: tf.Tensor | undefined;
    try {
      let cond = o.promptEmbeds;
      if (!cond) {
        cond = await this.encodeText(o.prompt!);
        owned.push(cond);
      }
      // Diffusers: do_classifier_free_guidance = guidance_scale > 1, for the whole run.
      const cfg = r.guidanceScale > 1;
      let uncond = cfg ? o.negativePromptEmbeds : undefined;
      if (cfg && !uncond) {
        const neg = o.negativePrompt ?? '';
        uncond = await this.encodeText(typeof neg === 'string' ? Array<string>(r.batch).fill(neg) : neg);
        owned.push(uncond);
      }
      checkAbort(o.signal);

      this.scheduler.setTimesteps(r.numInferenceSteps, o.shift !== undefined || this.defaults.shift !== undefined ? { shift: o.shift ?? this.defaults.shift } : {});
      this.scheduler.setBeginIndex(0);
      const timesteps = [...this.scheduler.timesteps];
      const s = this.vaeScaleFactorSpatial;
      const shape = [r.batch, this.latentChannels, (r.numFrames - 1) / this.vaeScaleFactorTemporal + 1, r.height / s, r.width / s];
      latents = o.latents ? o.latents.clone() : randn(shape, r.seed);
      const tokensPerFrame = (shape[3] / (this.patchSize[1] ?? 2)) * (shape[4] / (this.patchSize[2] ?? 2));
      const tokens = (shape[2] / (this.patchSize[0] ?? 1)) * tokensPerFrame;
      const condition = o.image && this.expandTimesteps ? this.encodeFirstFrame(o.image, r.batch, o.imageEncode) : undefined;
      if (condition) owned.push(condition);
      const channels = o.image && this.conditionChannels > 0 ? this.encodeImageChannels(o.image, r.batch, r.numFrames, o.lastImage, o.imageEncode) : undefined;
      if (channels) owned.push(channels);
      // latents: [B, C, F', H', W'] → the same with latent frame 0 replaced by the image's
      const withFirstFrame = (z: tf.Tensor) => (condition ? tf.concat([condition, tf.slice(z, [0, 0, 1, 0, 0], [-1, -1, -1, -1, -1])], 2) : z);

      const start = performance.now();
      for (let i = 0; i < timesteps.length; i++) {
        await nextTick();
        checkAbort(o.signal);
        const t = timesteps[i];
        const e = this.expertIndex(t);
        const model = await this.expert(e);
        const g = e === 0 ? r.guidanceScale : r.guidanceScale2!;
        const x: tf.Tensor = latents;
        const v = tf.tidy(() => {
          // Per-token timesteps: t everywhere, 0 on the first frame's tokens when it is the given image.
          const timestep = !this.expandTimesteps
            ? tf.fill([r.batch], t)
            : condition ? tf.concat([tf.zeros([r.batch, tokensPerFrame]), tf.fill([r.batch, tokens - tokensPerFrame], t)], 1) : tf.fill([r.batch, tokens], t);
          const input = channels ? tf.concat([x, channels], 1) : withFirstFrame(x);
          const vCond = model.forward(input, timestep, cond!);
          if (!uncond) return vCond;
          const vUncond = model.forward(input, timestep, uncond);
          return tf.add(vUncond, tf.mul(g, tf.sub(vCond, vUncond)));
        });
        const next = this.scheduler.step(v, t, x);
        v.dispose();
        x.dispose();
        latents = next;
        o.onStep?.({ step: i + 1, total: timesteps.length, timestep: t, expert: e === 0 ? 'transformer' : 'transformer_2', guidanceScale: g, elapsedMs: performance.now() - start, latents: next });
      }
      const out = condition ? tf.tidy(() => withFirstFrame(latents!)) : latents;
      if (out !== latents) latents.dispose();
      latents = undefined;
      return out;
    } finally {
      latents?.dispose();
      tf.dispose(owned);
      this.scheduler.reset();
    }
  }

  /**
   * Latents [B, zDim, F', H', W'] → frames [B, F, H, W, 3] in [0, 1] (the caller disposes):
   * z = latents / (1/std) + mean (Diffusers' de-normalisation), VAE decode, clamp(x/2 + 0.5, 0, 1).
   */
  decodeLatents(latents: tf.Tensor, options: WanVaeDecodeOptions = {}): tf.Tensor {
    if (!this.vae) throw new ConfigError('this pipeline has no VAE (the model folder has no vae/): decode the latents elsewhere');
    const c = this.vae.config;
    if (latents.rank !== 5 || latents.shape[1] !== c.zDim) throw new ShapeError('latents', `[${latents.shape}]`, `[B, ${c.zDim}, F, H, W]`);
    return tf.tidy(() => {
      const { mean, stdInv } = this.latentStats();
      const z = tf.add(tf.div(latents, stdInv), mean);
      const video = this.vae!.decode(z, options);
      const frames = tf.clipByValue(tf.add(tf.div(video, 2), 0.5), 0, 1);
      return tf.transpose(frames, [0, 2, 3, 4, 1]);
    });
  }

  /** Text (or embeddings) → frames [B, F, H, W, 3] in [0, 1], with the settings used. */
  async textToVideo(o: GenerateOptions): Promise<TextToVideoResult> {
    const settings = this.resolve(o);
    if (!this.vae) throw new ConfigError('this pipeline has no VAE (the model folder has no vae/): use generate() for latents');
    const latents = await this.denoise(o, settings);
    try {
      checkAbort(o.signal);
      return { ...settings, frames: this.decodeLatents(latents) };
    } finally {
      latents.dispose();
    }
  }

  /** Frees the text encoder's weights (embeddings already made stay valid). */
  releaseTextEncoder(): void {
    this.textEncoder?.release();
  }

  /** Frees every component. */
  dispose(): void {
    for (const e of this.experts) e.dispose();
    this.vae?.dispose();
    this.textEncoder?.release();
    this.scheduler.dispose();
  }
}
