import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import type { ConditioningStrategy } from './conditioning.js';
import { checkFirstImage, checkImageBatch, imageOf, conditionVideo, encodeCondition } from './image-condition.js';

/**
 * Image-to-video from first-frame tokens (Wan2.2-TI2V-5B, expand_timesteps; Diffusers'
 * WanImageToVideoPipeline): the image's latent z₀ = normalise(mean(VAE.encode(2·image − 1)))
 * [B, C, 1, H', W'] replaces latent frame 0 in every DiT input and in the result, and that frame's
 * tokens get timestep 0: timestep [B, L] = [0 × tokensPerFrame, t × (L − tokensPerFrame)]. The
 * scheduler steps the latents as they are.
 */
export const firstFrameConditioning: ConditioningStrategy = {
  task: 'first-frame',

  checkImages(spec, o, given) {
    if (spec.patchSize[0] !== 1) throw new ConfigError(`image: the first frame's tokens need a temporal patch of 1; this DiT's patch is [${spec.patchSize}]`);
    const size = checkFirstImage(spec, imageOf(o), given);
    if (o.lastImage) throw new ConfigError('lastImage: a last frame needs a model with image-condition channels (Wan2.2-I2V-A14B); per-token-timestep models (TI2V-5B) take a first frame only');
    return size;
  },

  checkCall(_spec, o, batch) {
    checkImageBatch(o, batch);
  },

  prepare(_spec, vae, o, g) {
    const batch = g.latentShape[0];
    const first = tf.tidy(() => encodeCondition(vae, conditionVideo(imageOf(o), 1), batch, o.imageEncode));
    // latents [B, C, F', H', W'] → the same with latent frame 0 replaced by the image's
    const withFirstFrame = (x: tf.Tensor) => tf.concat([first, tf.slice(x, [0, 0, 1, 0, 0], [-1, -1, -1, -1, -1])], 2);
    return {
      modelInput: withFirstFrame,
      timestep: (t) => tf.concat([tf.zeros([batch, g.tokensPerFrame]), tf.fill([batch, g.tokens - g.tokensPerFrame], t)], 1),
      finish: (x) => tf.tidy(() => withFirstFrame(x)),
      dispose: () => first.dispose(),
    };
  },
};
