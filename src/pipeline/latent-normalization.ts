import * as tf from '@tensorflow/tfjs-core';
import type { PipelineVae } from './pipeline-components.js';

/** The VAE's latents_mean and 1 / latents_std as [1, zDim, 1, 1, 1], as Diffusers computes them (call inside tf.tidy). */
export function latentStats(c: PipelineVae['config']): { mean: tf.Tensor; stdInv: tf.Tensor } {
  return { mean: tf.tensor([...c.latentsMean], [1, c.zDim, 1, 1, 1]), stdInv: tf.div(1, tf.tensor([...c.latentsStd], [1, c.zDim, 1, 1, 1])) };
}
