import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { WanTransformer3DModel } from '../../../layers/wan-transformer-3d-model.js';
import type { ParityCase, ParityHandler, ParityVariant } from '../types.js';

type HostValue = { shape: number[]; data: Float32Array };

function host(t: tf.Tensor): HostValue {
  return { shape: [...t.shape], data: t.dataSync() as Float32Array };
}

/**
 * wan-transformer cases: loads the DiT from each folder listed in case.json `layouts`
 * ("transformer" = Diffusers keys, "original" = original Wan keys), runs one forward and reports
 * debug.* intermediates in execution order, then output.sample.
 */
const handler: ParityHandler = {
  components: ['wan-transformer'],
  async run(c: ParityCase): Promise<ParityVariant[]> {
    const layouts = c.spec.layouts ?? ['transformer'];
    const variants: ParityVariant[] = [];
    const hidden = c.tensor('input.hidden_states');
    const timestep = c.tensor('input.timestep');
    const text = c.tensor('input.encoder_hidden_states');
    try {
      for (const layout of layouts) {
        const model = await WanTransformer3DModel.fromPretrained(path.join(c.dir, layout));
        try {
          const tensors: ParityVariant['tensors'] = [];
          const out = model.forward(hidden, timestep, text, { debug: (name, value) => tensors.push([`debug.${name}`, host(value)]) });
          tensors.push(['output.sample', host(out)]);
          out.dispose();
          variants.push({ label: layout, tensors });
        } finally {
          model.dispose();
        }
      }
    } finally {
      tf.dispose([hidden, timestep, text]);
    }
    return variants;
  },
};

export default handler;
