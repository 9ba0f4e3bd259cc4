import type { ComponentLayout } from '../component-layout.js';
import { stripCheckpointPrefix } from './checkpoint-prefix.js';
import { diffusersTransformerConfig } from './wan-transformer-original.js';

/**
 * Diffusers' WanTransformer3DModel (`transformer/`: config.json + diffusion_pytorch_model*.safetensors,
 * keys `blocks.0.attn1.to_q.weight`): the model's own names. A repack prefix is stripped, and the
 * image-to-video `norm_added_q` norms some conversions carry are skipped.
 */
export const WAN_TRANSFORMER_DIFFUSERS: ComponentLayout = {
  name: 'Diffusers keys',
  matches: () => true,
  readsConfigFile: true,
  config: (file) => (file === undefined ? undefined : { json: diffusersTransformerConfig(file) }),
  rename: () => (key) => {
    const k = stripCheckpointPrefix(key);
    return /\.norm_added_q\.(weight|bias)$/.test(k) ? undefined : k;
  },
};
