import type * as tf from '@tensorflow/tfjs-core';
import type { GenerateOptions, TaskName } from './generate-options.js';
import type { PipelineVae } from './pipeline-components.js';
import type { PipelineSpec } from './pipeline-spec.js';

/** The sizes of one call that its condition depends on. */
export interface CallGeometry {
  readonly batch: number;
  readonly numFrames: number;
  /** [B, C, F', H/s, W/s]. */
  readonly latentShape: readonly [number, number, number, number, number];
  /** DiT tokens of one latent frame, (H/s/ph)(W/s/pw), and of the whole video, (F'/pt)·tokensPerFrame. */
  readonly tokensPerFrame: number;
  readonly tokens: number;
}

/** The video size an image fixes (height and width of the image), if any. */
export interface ImpliedSize {
  height?: number;
  width?: number;
}

/** What one call's task adds to the denoising loop; made by a strategy's `prepare`, disposed by the caller. */
export interface Conditioning {
  /** The DiT input for the latents x [B, C, F', H', W'] (call inside tf.tidy). */
  modelInput(x: tf.Tensor): tf.Tensor;
  /** The DiT timestep for t: [B], or [B, L] per token (call inside tf.tidy). */
  timestep(t: number): tf.Tensor;
  /** The result from the loop's last latents: x itself, or a new tensor (x stays the caller's). */
  finish(x: tf.Tensor): tf.Tensor;
  dispose(): void;
}

/** One task's input checks, model input and finish. */
export interface ConditioningStrategy {
  readonly task: TaskName;
  /**
   * Checks the image options against the model by shape and dtype (their values are checked when
   * the call runs) and returns the size the image fixes. `given` is the size from the options or latents.
   */
  checkImages(spec: PipelineSpec, o: GenerateOptions, given: ImpliedSize): ImpliedSize;
  /** Checks that depend on the batch and the final frame count. */
  checkCall(spec: PipelineSpec, o: GenerateOptions, batch: number, numFrames: number): void;
  /** The call's condition: image latents encoded by the VAE, timesteps per token (the caller disposes it). */
  prepare(spec: PipelineSpec, vae: PipelineVae | undefined, o: GenerateOptions, g: CallGeometry): Conditioning;
}
