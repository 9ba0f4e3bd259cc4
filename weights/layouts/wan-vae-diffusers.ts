import type { ComponentLayout } from '../component-layout.js';
import { presetForLatentWidth } from './wan-vae-original.js';

/**
 * Diffusers' AutoencoderKLWan (`vae/`: config.json + diffusion_pytorch_model.safetensors): the
 * model's own key names; without a config.json, the published config of the latent width.
 */
export const WAN_VAE_DIFFUSERS: ComponentLayout = {
  name: 'Diffusers keys',
  matches: () => true,
  readsConfigFile: true,
  config: (file, source) => (file !== undefined ? { json: file } : presetForLatentWidth(source, 'post_quant_conv.weight')),
  rename: () => (key) => key,
};
