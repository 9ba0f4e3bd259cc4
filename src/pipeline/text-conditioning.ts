import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import type { ConditioningStrategy } from './conditioning.js';

/**
 * Text-to-video (Diffusers' WanPipeline): the DiT sees the latents as they are, at timestep t for
 * every sample ([B]), or for every token ([B, L]) on a model with per-token timesteps (TI2V-5B
 * without an image); the result is the last latents.
 */
export const textConditioning: ConditioningStrategy = {
  task: 'text-to-video',

  checkImages(_spec, o, given) {
    if (o.image) {
      throw new ConfigError(
        'image: a first frame needs an image-to-video model: per-token timesteps (Wan2.2-TI2V-5B; expand_timesteps in model_index.json) or image-condition channels (Wan2.2-I2V-A14B); this one is text-to-video only',
      );
    }
    if (o.lastImage) throw new ConfigError('lastImage: give the first frame (image) too');
    return given;
  },

  checkCall() {},

  prepare(spec, _vae, _o, g) {
    const batch = g.latentShape[0];
    return {
      modelInput: (x) => x,
      timestep: (t) => (spec.expandTimesteps ? tf.fill([batch, g.tokens], t) : tf.fill([batch], t)),
      finish: (x) => x,
      dispose() {},
    };
  },
};
