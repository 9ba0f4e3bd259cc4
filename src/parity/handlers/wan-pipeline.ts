import * as tf from '@tensorflow/tfjs-core';
import { WanPipeline } from '../../pipeline/wan-pipeline.js';
import type { ParityCase, ParityHandler, ParityVariant } from '../types.js';
import { ConfigError } from '../../errors.js';

/** A number field of case.json's `call` (undefined when absent or null). */
function callNumber(c: ParityCase, key: string): number | undefined {
  const v = c.spec.call?.[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number') throw new ConfigError(`${c.name}: case.json call.${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * wan-pipeline cases: loads the case folder as a pipeline (model_index.json, transformer[_2]/,
 * vae/, scheduler/), runs the denoising loop from the given latents (which fix frames and size, as
 * in Diffusers) and embeddings with the case's `call` settings, and reports per step debug.timestep.i and output.latents.i, then
 * output.frames [B, F, H, W, 3].
 */
const handler: ParityHandler = {
  components: ['wan-pipeline'],
  async run(c: ParityCase): Promise<ParityVariant[]> {
    const pipe = await WanPipeline.fromPretrained(c.dir);
    const latents = c.tensor('input.latents');
    const cond = c.tensor('input.prompt_embeds');
    // Absent when the case runs without guidance.
    const uncond = c.io?.has('input.negative_prompt_embeds') ? c.tensor('input.negative_prompt_embeds') : undefined;
    const tensors: ParityVariant['tensors'] = [];
    try {
      const final = await pipe.generate({
        promptEmbeds: cond,
        negativePromptEmbeds: uncond,
        latents,
        numInferenceSteps: callNumber(c, 'num_inference_steps'),
        guidanceScale: callNumber(c, 'guidance_scale'),
        guidanceScale2: callNumber(c, 'guidance_scale_2'),
        onStep: ({ step, timestep, latents: x }) => {
          tensors.push([`debug.timestep.${step - 1}`, { shape: [1], data: [timestep] }]);
          tensors.push([`output.latents.${step - 1}`, { shape: [...x.shape], data: x.dataSync() }]);
        },
      });
      const frames = pipe.decodeLatents(final);
      final.dispose();
      tensors.push(['output.frames', { shape: [...frames.shape], data: frames.dataSync() }]);
      frames.dispose();
    } finally {
      tf.dispose([latents, cond, ...(uncond ? [uncond] : [])]);
      pipe.dispose();
    }
    return [{ tensors }];
  },
};

export default handler;
