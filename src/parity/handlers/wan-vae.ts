import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { AutoencoderKLWan } from '../../../layers/autoencoder-kl-wan.js';
import type { ParityCase, ParityHandler, ParityVariant } from '../types.js';

type HostValue = { shape: number[]; data: Float32Array };

/** A tensor's values on the host (the tensor is disposed). */
function host(t: tf.Tensor): HostValue {
  const out = { shape: [...t.shape], data: t.dataSync() as Float32Array };
  t.dispose();
  return out;
}

/**
 * wan-vae cases: loads the VAE from vae/ (Diffusers layout), encodes input.video to the posterior
 * (output.latent_mean, output.latent_logvar), decodes that mean (output.decoded_mean) and
 * input.latent (output.decoded_latent). All in the reference layout [B, C, F, H, W].
 */
const handler: ParityHandler = {
  components: ['wan-vae'],
  async run(c: ParityCase): Promise<ParityVariant[]> {
    const vae = await AutoencoderKLWan.fromPretrained(path.join(c.dir, 'vae'));
    const video = c.tensor('input.video');
    const latent = c.tensor('input.latent');
    try {
      const { mean, logvar } = vae.encode(video);
      const decodedMean = vae.decode(mean);
      const tensors: ParityVariant['tensors'] = [
        ['output.latent_mean', host(mean)],
        ['output.latent_logvar', host(logvar)],
        ['output.decoded_mean', host(decodedMean)],
        ['output.decoded_latent', host(vae.decode(latent))],
      ];
      return [{ tensors }];
    } finally {
      video.dispose();
      latent.dispose();
      vae.dispose();
    }
  },
};

export default handler;
