import type * as tf from '@tensorflow/tfjs-core';
import type { WanVaeDecodeOptions, WanVaeEncodeOptions } from '../../layers/autoencoder-kl-wan.js';

/**
 * How a call is conditioned: on text only ('text-to-video'; per-token timesteps when the model
 * expands them), on a first frame's latent tokens ('first-frame', Wan2.2-TI2V-5B), or on image
 * channels with a mask and the latents of [image, 0, …, 0(, lastImage)] ('image-channels', Wan2.2-I2V-A14B).
 */
export type TaskName = 'text-to-video' | 'first-frame' | 'image-channels';

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
  /** [B, Ltxt, textDim] float32 (not disposed by the pipeline). */
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
  /** 1 … the scheduler's num_train_timesteps (1000). */
  numInferenceSteps?: number;
  /** Flow shift for this run, in place of the scheduler config's. */
  shift?: number;
  /** Seed of the initial noise (host-generated, identical on every backend). */
  seed?: number;
  /**
   * One seed per sample of a batch, in place of `seed`: sample i's noise is the noise of a single
   * call with seed `seeds[i]`, so sample i of the batch equals that call up to float rounding.
   */
  seeds?: readonly number[];
  /** Initial latents [B, C, F', H', W'] float32 instead of noise (not disposed by the pipeline). */
  latents?: tf.Tensor;
  /**
   * The first frame, [H, W, 3] or [B, H, W, 3] float32 in [0, 1] (as `frames`), for image-to-video
   * (required by models with image-condition channels). Its size sets height and width. As Diffusers'
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
  /**
   * textToVideo: the most bytes the VAE decode may hold at its peak (the VAE's weights, the latents,
   * its causal caches and activations, the video and its conversion to frames; not the experts or the
   * text encoder), as predictVaeDecodePeak predicts it (an upper bound within about 25%): whole frames
   * when they fit (the result is then unchanged), else the largest square spatial tiles that fit
   * (chooseVaeTile; tiling changes the result near seams). Checked before denoising: an
   * OutOfMemoryError naming vaeMemoryBudget when even 128-pixel tiles do not fit. Ignored by generate.
   */
  vaeMemoryBudget?: number;
  /**
   * textToVideo: the VAE decode's spatial tiles (AutoencoderKLWan.decode's tileSize and tileOverlap,
   * in pixels). With vaeMemoryBudget, a tileSize given here is checked against the budget instead of
   * chosen, and tileOverlap applies to the chosen tiles. Ignored by generate.
   */
  vaeDecode?: Pick<WanVaeDecodeOptions, 'tileSize' | 'tileOverlap'>;
  onStep?: (info: StepInfo) => void;
  /** Stops the call before the next transformer block (and, in textToVideo, the next VAE decode chunk); the promise rejects with AbortError and nothing leaks. */
  signal?: AbortSignal;
  /** Debugging: after every step, check that the latents are finite (one reduction and a read per step); NonFiniteError names the step. */
  checkFinite?: boolean;
}

/** The settings a run actually used, after defaults. */
export interface ResolvedSettings {
  task: TaskName;
  numFrames: number;
  height: number;
  width: number;
  fps: number;
  numInferenceSteps: number;
  guidanceScale: number;
  guidanceScale2: number | undefined;
  /** The seed of the noise (with `seeds`, the first sample's). */
  seed: number;
  batch: number;
}

export interface TextToVideoResult extends ResolvedSettings {
  /** [B, F, H, W, 3] float32 in [0, 1] (the caller disposes). */
  frames: tf.Tensor;
}
