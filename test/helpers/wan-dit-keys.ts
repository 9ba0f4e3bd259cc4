import type { HeaderEntry } from './header-only-safetensors.js';

/** A DiT's size, in the original WanModel's terms. */
export interface WanDitShape {
  readonly dim: number;
  readonly ffnDim: number;
  readonly numLayers: number;
  readonly inDim: number;
  readonly outDim: number;
  /** Wan2.1 I2V: the CLIP image projection `img_emb` and the blocks' `k_img`/`v_img`. */
  readonly imageEmbedding?: boolean;
}

/**
 * Every tensor of an original-key DiT checkpoint (wan/modules/model.py WanModel; 27 per block, 15
 * top-level, WAN-SPEC §3.1) with its PyTorch shape, each key after `prefix`; text_dim 4096,
 * freq_dim 256, patch (1, 2, 2), CLIP width 1280.
 */
export function originalWanDitEntries(s: WanDitShape, prefix = ''): HeaderEntry[] {
  const { dim: d, ffnDim: f } = s;
  const linear = (name: string, out: number, inp: number): HeaderEntry[] => [[`${name}.weight`, [out, inp]], [`${name}.bias`, [out]]];
  const top: HeaderEntry[] = [
    ['patch_embedding.weight', [d, s.inDim, 1, 2, 2]],
    ['patch_embedding.bias', [d]],
    ...linear('text_embedding.0', d, 4096),
    ...linear('text_embedding.2', d, d),
    ...linear('time_embedding.0', d, 256),
    ...linear('time_embedding.2', d, d),
    ...linear('time_projection.1', 6 * d, d),
    ['head.modulation', [1, 2, d]],
    ...linear('head.head', 4 * s.outDim, d),
  ];
  if (s.imageEmbedding) {
    top.push(['img_emb.proj.0.weight', [1280]], ['img_emb.proj.0.bias', [1280]], ...linear('img_emb.proj.1', d, 1280), ...linear('img_emb.proj.3', d, d), ['img_emb.proj.4.weight', [d]], ['img_emb.proj.4.bias', [d]]);
  }
  const blocks: HeaderEntry[] = [];
  for (let i = 0; i < s.numLayers; i++) {
    const b = `blocks.${i}`;
    for (const attn of ['self_attn', 'cross_attn']) {
      for (const p of ['q', 'k', 'v', 'o']) blocks.push(...linear(`${b}.${attn}.${p}`, d, d));
      blocks.push([`${b}.${attn}.norm_q.weight`, [d]], [`${b}.${attn}.norm_k.weight`, [d]]);
    }
    if (s.imageEmbedding) blocks.push(...linear(`${b}.cross_attn.k_img`, d, d), ...linear(`${b}.cross_attn.v_img`, d, d), [`${b}.cross_attn.norm_k_img.weight`, [d]]);
    blocks.push([`${b}.norm3.weight`, [d]], [`${b}.norm3.bias`, [d]], ...linear(`${b}.ffn.0`, f, d), ...linear(`${b}.ffn.2`, d, f), [`${b}.modulation`, [1, 6, d]]);
  }
  return [...top, ...blocks].map(([k, shape, dtype]) => [`${prefix}${k}`, shape, dtype]);
}
