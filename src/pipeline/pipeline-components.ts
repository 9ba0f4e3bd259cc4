import type * as tf from '@tensorflow/tfjs-core';
import type { WanVaeDecodeOptions, WanVaeEncodeOptions } from '../../layers/autoencoder-kl-wan.js';

/** What the pipeline needs of a denoiser (WanTransformer3DModel). */
export interface PipelineTransformer {
  readonly config: {
    /** outChannels (default inChannels) is the noise; inChannels − outChannels are image-condition channels (Wan2.2-I2V-A14B). */
    readonly inChannels: number;
    readonly outChannels?: number;
    readonly patchSize: readonly number[];
    readonly textDim: number;
    /** Width D = heads × head dim and the feed-forward width, when known: the memory check uses them. */
    readonly numAttentionHeads?: number;
    readonly attentionHeadDim?: number;
    readonly ffnDim?: number;
  };
  // hiddenStates: [B, C, F, H, W], timestep: [B] or [B, L], encoderHiddenStates: [B, Ltxt, textDim] → [B, C, F, H, W];
  // `signal`, when the model checks it, stops the forward between blocks with AbortError
  forward(hiddenStates: tf.Tensor, timestep: tf.Tensor, encoderHiddenStates: tf.Tensor, options?: { signal?: AbortSignal }): tf.Tensor;
  /** forward, yielding to the event loop between blocks so an abort lands mid-step; the loop prefers it when present. */
  forwardAsync?(hiddenStates: tf.Tensor, timestep: tf.Tensor, encoderHiddenStates: tf.Tensor, options?: { signal?: AbortSignal }): Promise<tf.Tensor>;
  /** Moves the weights to pinned host memory, or starts bringing them back (residency 'swap'; WanTransformer3DModel on backend 'cuda'). */
  moveWeights?(where: 'host' | 'device'): void;
  /** Device bytes of the weights (for an OutOfMemoryError's advice; WanTransformer3DModel). */
  weightBytes?(): number;
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
    /** Widths and the spatial patchify factor, when known: the memory check uses them. */
    readonly baseDim?: number;
    readonly decoderBaseDim?: number | null;
    readonly dimMult?: readonly number[];
    readonly patchSize?: number | null;
  };
  // z: [B, zDim, F, H, W] (denormalised) → video [B, 3, 1 + 4(F − 1), sH, sW] in [-1, 1]
  decode(z: tf.Tensor, options?: WanVaeDecodeOptions): tf.Tensor;
  /** decode, yielding to the event loop while it runs so `options.signal` can stop it part-way (AutoencoderKLWan: between decoder stages); decode is used where absent. */
  decodeAsync?(z: tf.Tensor, options?: WanVaeDecodeOptions): Promise<tf.Tensor>;
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
  /** Frees the weights and the cached embeddings. */
  dispose(): void;
}
