import * as tf from '@tensorflow/tfjs-core';
import type { WanVaeEncodeOptions } from '../../layers/autoencoder-kl-wan.js';
import { ConfigError, ShapeError } from '../errors.js';
import type { ImpliedSize } from './conditioning.js';
import type { GenerateOptions } from './generate-options.js';
import { latentStats } from './latent-normalization.js';
import type { PipelineVae } from './pipeline-components.js';
import type { PipelineSpec } from './pipeline-spec.js';
import { checkFloat32 } from './tensor-checks.js';

const PIXELS = 'float32 RGB in [0, 1] (divide 8-bit pixels by 255)';

/** The nearest multiple of m (at least m). */
export function nearestMultiple(x: number, m: number): number {
  return Math.max(m, Math.round(x / m) * m);
}

/**
 * Checks `image` ([H, W, 3] or [B, H, W, 3] float32) for a model that encodes it with its VAE, and
 * returns the size it fixes: its own, which must be a multiple of VAE factor × patch and match a
 * given size.
 */
export function checkFirstImage(spec: PipelineSpec, image: tf.Tensor, given: ImpliedSize): ImpliedSize {
  if (spec.vae !== 'encode') throw new ConfigError('image: the VAE must encode the first frame, and this pipeline has none (the model folder has no vae/, or loadVae was false)');
  if ((image.rank !== 3 && image.rank !== 4) || image.shape[image.rank - 1] !== 3) throw new ShapeError('image', `[${image.shape}]`, '[H, W, 3] or [B, H, W, 3] RGB in [0, 1]');
  checkFloat32('image', image, PIXELS);
  const s = spec.scaleFactorSpatial;
  const mh = s * spec.patchSize[1];
  const mw = s * spec.patchSize[2];
  const [ih, iw] = image.shape.slice(image.rank - 3, image.rank - 1) as [number, number];
  if (given.height === undefined && given.width === undefined && (ih % mh !== 0 || iw % mw !== 0)) {
    throw new ShapeError('image', `[${image.shape}]`, `a size that is a multiple of ${mh}×${mw} (VAE factor × patch; resize or crop the image)`, `${nearestMultiple(ih, mh)}×${nearestMultiple(iw, mw)}`);
  }
  const height = given.height ?? ih;
  const width = given.width ?? iw;
  if (ih !== height || iw !== width) throw new ShapeError('image', `[${image.shape}]`, `${height}×${width} pixels, the video's size (resize the image first)`);
  return { height, width };
}

/** The first frame of an image task (the strategy was chosen because there is one). */
export function imageOf(o: GenerateOptions): tf.Tensor {
  if (!o.image) throw new ConfigError('image: this task needs the first frame');
  return o.image;
}

/** `image` and `lastImage` must be one image, or one per prompt. */
export function checkImageBatch(o: GenerateOptions, batch: number): void {
  for (const [name, im] of [['image', o.image], ['lastImage', o.lastImage]] as const) {
    if (im?.rank === 4 && im.shape[0] !== 1 && im.shape[0] !== batch) throw new ShapeError(name, `[${im.shape}]`, `one image, or one per prompt (batch ${batch})`);
  }
}

/** `lastImage` must have the size of `image`: [H, W, 3] or [B, H, W, 3] float32. */
export function checkLastImage(image: tf.Tensor, last: tf.Tensor): void {
  const size = image.shape.slice(image.rank - 3);
  if ((last.rank !== 3 && last.rank !== 4) || last.shape.slice(last.rank - 3).join() !== size.join()) {
    throw new ShapeError('lastImage', `[${last.shape}]`, `[${size}] or [B, ${size}], the size of image`);
  }
  checkFloat32('lastImage', last, PIXELS);
}

/** A value range check of image pixels (read back): every value in [0, 1]. */
export function checkPixelRange(name: string, lo: number, hi: number): void {
  if (!(lo >= 0 && hi <= 1)) throw new ConfigError(`${name}: values span [${lo}, ${hi}], expected RGB in [0, 1] (divide 8-bit pixels by 255)`);
}

/**
 * image (and lastImage): [H, W, 3] or [b, H, W, 3] in [0, 1] → video [b, 3, numFrames, H, W] in [−1, 1]:
 * the image, zeros, and the last image when there is one; a single image stands for every sample
 * of the other's batch (call inside tf.tidy).
 */
export function conditionVideo(image: tf.Tensor, numFrames: number, lastImage?: tf.Tensor): tf.Tensor {
  // [b, H, W, 3] → [b, 3, 1, H, W] in [−1, 1]
  const frame = (x: tf.Tensor) => tf.expandDims(tf.sub(tf.mul(tf.transpose(x.rank === 3 ? tf.expandDims(x, 0) : x, [0, 3, 1, 2]), 2), 1), 2);
  const first = frame(image);
  const last = lastImage ? frame(lastImage) : undefined;
  const b = Math.max(first.shape[0], last?.shape[0] ?? 1);
  const toBatch = (x: tf.Tensor) => (x.shape[0] === b ? x : tf.tile(x, [b, 1, 1, 1, 1]));
  const [, c, , H, W] = first.shape;
  const gap = numFrames - 1 - (last ? 1 : 0);
  return tf.concat([toBatch(first), ...(gap > 0 ? [tf.zeros([b, c, gap, H, W])] : []), ...(last ? [toBatch(last)] : [])], 2);
}

/**
 * video: [b, 3, T, H, W] in [−1, 1] → [batch, zDim, F', H/s, W/s]: the VAE's posterior mean (Diffusers'
 * sample_mode "argmax"), normalised as (z − latents_mean) · (1 / latents_std), repeated to the batch
 * (call inside tf.tidy).
 */
export function encodeCondition(vae: PipelineVae | undefined, video: tf.Tensor, batch: number, options?: WanVaeEncodeOptions): tf.Tensor {
  if (!vae?.encode) throw new ConfigError('image: the VAE must encode the image condition, and this pipeline has none that encodes');
  const { mean } = vae.encode(video, options);
  const stats = latentStats(vae.config);
  const z = tf.mul(tf.sub(mean, stats.mean), stats.stdInv);
  return z.shape[0] === batch ? z : tf.tile(z, [batch, 1, 1, 1, 1]);
}
