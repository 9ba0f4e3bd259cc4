import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import type { ConditioningStrategy } from './conditioning.js';
import { checkFirstImage, checkImageBatch, imageOf, checkLastImage, conditionVideo, encodeCondition } from './image-condition.js';

/**
 * Image-to-video through image-condition channels (Wan2.2-I2V-A14B; Diffusers'
 * WanImageToVideoPipeline.prepare_latents): every DiT input is [latents, mask, z] along the
 * channels, z = normalise(mean(VAE.encode(video))) of the video [image, 0, …, 0(, lastImage)] and
 * the mask the reference's per-frame mask (1 on the given frames) with frame 0 repeated ft times,
 * folded into ft channels: mask[k, f] = m[f·ft + k] over [m₀ × ft, m₁, …, m_{N−1}]. Timestep [B].
 */
export const imageChannelConditioning: ConditioningStrategy = {
  task: 'image-channels',

  checkImages(spec, o, given) {
    if (!o.image) {
      throw new ConfigError(`image: this is an image-to-video model (its transformer takes ${spec.latentChannels} noise + ${spec.conditionChannels} image-condition channels); pass the first frame`);
    }
    const size = checkFirstImage(spec, o.image, given);
    if (o.lastImage) checkLastImage(o.image, o.lastImage);
    return size;
  },

  checkCall(spec, o, batch, numFrames) {
    checkImageBatch(o, batch);
    if (o.lastImage && numFrames < 2) throw new ShapeError('numFrames', String(numFrames), 'at least 2 frames with a last frame', String(1 + spec.scaleFactorTemporal));
  },

  prepare(spec, vae, o, g) {
    const batch = g.latentShape[0];
    const ft = spec.scaleFactorTemporal;
    const n = g.numFrames;
    const channels = tf.tidy(() => {
      const z = encodeCondition(vae, conditionVideo(imageOf(o), n, o.lastImage), batch, o.imageEncode);
      const [b, , F, h, w] = z.shape;
      const given = (i: number) => (i === 0 || (o.lastImage !== undefined && i === n - 1) ? 1 : 0);
      const extended = [...Array<number>(ft).fill(1), ...Array.from({ length: n - 1 }, (_, i) => given(i + 1))];
      const folded = Array.from({ length: ft * F }, (_, j) => extended[(j % F) * ft + Math.floor(j / F)]);
      const mask = tf.mul(tf.tensor(folded, [1, ft, F, 1, 1]), tf.ones([b, 1, 1, h, w]));
      return tf.concat([mask, z], 1);
    });
    return {
      modelInput: (x) => tf.concat([x, channels], 1),
      timestep: (t) => tf.fill([batch], t),
      finish: (x) => x,
      dispose: () => channels.dispose(),
    };
  },
};
