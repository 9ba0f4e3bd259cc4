import type { WanVaeKeyLayout } from '../../weights/layouts/wan-vae-original.js';

/**
 * Diffusers key → original Wan key, written from the original module lists (Wan2.1: flat
 * `decoder.upsamples`, each level = numResBlocks + 1 residual blocks then a Resample; Wan2.2:
 * `downsamples.i.downsamples.j` / `upsamples.i.upsamples.j`), independently of weights/layouts/wan-vae-original.ts.
 */
export function diffusersToOriginal(key: string, { numResBlocks: n, isResidual }: WanVaeKeyLayout): string {
  let k = key
    .replace(/\.norm1\.gamma$/, '.residual.0.gamma')
    .replace(/\.conv1\.(weight|bias)$/, '.residual.2.$1')
    .replace(/\.norm2\.gamma$/, '.residual.3.gamma')
    .replace(/\.conv2\.(weight|bias)$/, '.residual.6.$1')
    .replace(/\.conv_shortcut\./, '.shortcut.')
    .replace(/^quant_conv\./, 'conv1.')
    .replace(/^post_quant_conv\./, 'conv2.')
    .replace(/^(encoder|decoder)\.conv_in\./, '$1.conv1.')
    .replace(/^(encoder|decoder)\.norm_out\./, '$1.head.0.')
    .replace(/^(encoder|decoder)\.conv_out\./, '$1.head.2.')
    .replace(/^(encoder|decoder)\.mid_block\.resnets\.0\./, '$1.middle.0.')
    .replace(/^(encoder|decoder)\.mid_block\.attentions\.0\./, '$1.middle.1.')
    .replace(/^(encoder|decoder)\.mid_block\.resnets\.1\./, '$1.middle.2.');
  if (isResidual) {
    k = k
      .replace(/^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\./, 'encoder.downsamples.$1.downsamples.$2.')
      .replace(/^encoder\.down_blocks\.(\d+)\.downsampler\./, `encoder.downsamples.$1.downsamples.${n}.`)
      .replace(/^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\./, 'decoder.upsamples.$1.upsamples.$2.')
      .replace(/^decoder\.up_blocks\.(\d+)\.upsampler\./, `decoder.upsamples.$1.upsamples.${n + 1}.`);
  } else {
    k = k.replace(/^encoder\.down_blocks\./, 'encoder.downsamples.');
    k = k.replace(/^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\./, (_, i: string, j: string) => `decoder.upsamples.${Number(i) * (n + 2) + Number(j)}.`);
    k = k.replace(/^decoder\.up_blocks\.(\d+)\.upsamplers\.0\./, (_, i: string) => `decoder.upsamples.${Number(i) * (n + 2) + n + 1}.`);
  }
  return k;
}
