import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { UMT5_PRESETS, UMT5Config } from '../layers/umt5-config.js';
import { PRESETS, WanTransformerConfig } from '../layers/wan-transformer-config.js';
import { ConfigError } from '../src/errors.js';
import type { ConfigJson } from '../src/config/config-schema.js';
import { openComponent } from '../weights/component.js';
import { UMT5_FAMILY, WAN_TRANSFORMER_FAMILY, WAN_VAE_FAMILY } from '../weights/families.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { fp8Scaled, headerOnlyFileInOwnFolder, type HeaderEntry } from './helpers/header-only-safetensors.js';
import { originalWanDitEntries, type WanDitShape } from './helpers/wan-dit-keys.js';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-comfyui-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());


/** The config openComponent reads from a file's shapes, as JSON; fails the test if tensor data is read. */
function inferredJson(file: string): ConfigJson {
  const read = vi.spyOn(SafetensorsFile.prototype, 'read');
  const readRaw = vi.spyOn(SafetensorsFile.prototype, 'readRaw');
  const c = openComponent(file, WAN_TRANSFORMER_FAMILY);
  try {
    expect(c.layout.name).toBe('original Wan keys');
    expect(c.configRead).toBeUndefined();
    expect(c.config !== undefined && 'json' in c.config).toBe(true);
    expect(read).not.toHaveBeenCalled();
    expect(readRaw).not.toHaveBeenCalled();
    return (c.config as { json: ConfigJson }).json;
  } finally {
    c.close();
  }
}

const T2V_14B: WanDitShape = { dim: 5120, ffnDim: 13824, numLayers: 40, inDim: 16, outDim: 16 };


describe('shape-inferred DiT configs from ComfyUI-style single files (header only, no data read)', () => {
  const published: Array<[string, string, WanDitShape, WanTransformerConfig, string]> = [
    ['Wan2.1-T2V-1.3B', 'wan2.1_t2v_1.3B_fp16.safetensors', { dim: 1536, ffnDim: 8960, numLayers: 30, inDim: 16, outDim: 16 }, PRESETS['wan2.1-t2v-1.3b'], ''],
    ['Wan2.1-T2V-14B', 'wan2.1_t2v_14B_bf16.safetensors', T2V_14B, PRESETS['wan2.1-t2v-14b'], 'model.diffusion_model.'],
    ['Wan2.2-TI2V-5B', 'wan2.2_ti2v_5B_fp16.safetensors', { dim: 3072, ffnDim: 14336, numLayers: 30, inDim: 48, outDim: 48 }, PRESETS['wan2.2-ti2v-5b'], ''],
    ['Wan2.2-T2V-A14B high noise', 'wan2.2_t2v_high_noise_14B_fp16.safetensors', T2V_14B, PRESETS['wan2.2-t2v-a14b'], 'model.diffusion_model.'],
    ['Wan2.2-T2V-A14B low noise', 'wan2.2_t2v_low_noise_14B_fp16.safetensors', T2V_14B, PRESETS['wan2.2-t2v-a14b'], ''],
    ['Wan2.2-I2V-A14B', 'wan2.2_i2v_high_noise_14B_fp16.safetensors', { ...T2V_14B, inDim: 36 }, { ...PRESETS['wan2.2-t2v-a14b'], inChannels: 36, outChannels: 16 }, 'model.diffusion_model.'],
  ];
  for (const [model, name, shape, config, prefix] of published) {
    it(`${model} (${name}${prefix ? `, keys prefixed ${prefix}` : ''})`, () => {
      const json = inferredJson(headerOnlyFileInOwnFolder(tmp, name, originalWanDitEntries(shape, prefix)));
      expect(WanTransformerConfig.fromJSON(json)).toEqual(config);
    });
  }

  it('Wan2.1-I2V-14B: in_dim 36 and the CLIP projection (img_emb) give Diffusers\' published I2V config', () => {
    const json = inferredJson(headerOnlyFileInOwnFolder(tmp, 'wan2.1_i2v_480p_14B_fp16.safetensors', originalWanDitEntries({ ...T2V_14B, inDim: 36, imageEmbedding: true })));
    // Wan-AI/Wan2.1-I2V-14B-480P-Diffusers transformer/config.json, less _diffusers_version, eps and rope_max_seq_len (defaults)
    expect(json).toEqual({
      _class_name: 'WanTransformer3DModel',
      patch_size: [1, 2, 2],
      num_attention_heads: 40,
      attention_head_dim: 128,
      in_channels: 36,
      out_channels: 16,
      text_dim: 4096,
      freq_dim: 256,
      ffn_dim: 13824,
      num_layers: 40,
      cross_attn_norm: true,
      qk_norm: 'rms_norm_across_heads',
      image_dim: 1280,
      added_kv_proj_dim: 5120,
      pos_embed_seq_len: null,
    });
    // the model here is text-to-video only: the config names what it does not support
    expect(() => WanTransformerConfig.fromJSON(json)).toThrow(/image_dim/);
  });

  it('an fp8_scaled file (F8_E4M3 weights, scale_weight, scaled_fp8) gives the same config', () => {
    const json = inferredJson(headerOnlyFileInOwnFolder(tmp, 'wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors', fp8Scaled(originalWanDitEntries(T2V_14B, 'model.diffusion_model.'))));
    expect(WanTransformerConfig.fromJSON(json)).toEqual(PRESETS['wan2.2-t2v-a14b']);
  });

  it('a width that is no multiple of 128 leaves the heads to the caller, and a load without them is a ConfigError naming the file', async () => {
    const file = headerOnlyFileInOwnFolder(tmp, 'tiny.safetensors', originalWanDitEntries({ dim: 32, ffnDim: 48, numLayers: 2, inDim: 16, outDim: 16 }));
    const json = inferredJson(file);
    expect(json.num_attention_heads).toBeUndefined();
    const { WanTransformer3DModel } = await import('../layers/wan-transformer-3d-model.js');
    await expect(WanTransformer3DModel.fromPretrained(file)).rejects.toThrow(ConfigError);
    await expect(WanTransformer3DModel.fromPretrained(file)).rejects.toThrow(/tiny\.safetensors.*32 wide.*numAttentionHeads, attentionHeadDim/);
  });
});

describe('ComfyUI VAE and umT5 single files are recognised by openComponent (header only)', () => {
  it('wan_2.1_vae.safetensors / wan2.2_vae.safetensors: original Wan VAE keys, the published config of the latent width', () => {
    for (const [name, z, preset] of [['wan_2.1_vae.safetensors', 16, 'wan2.1'], ['wan2.2_vae.safetensors', 48, 'wan2.2']] as const) {
      // the keys that name the layout and the size: conv1 [2z, 2z, 1, 1, 1] (posterior moments), conv2 [z, z, 1, 1, 1]
      const file = headerOnlyFileInOwnFolder(tmp, name, [
        ['conv1.weight', [2 * z, 2 * z, 1, 1, 1]],
        ['conv2.weight', [z, z, 1, 1, 1]],
        ['decoder.conv1.weight', [384, z, 3, 3, 3]],
        ['encoder.conv1.weight', [96, 3, 3, 3, 3]],
      ]);
      const c = openComponent(file, WAN_VAE_FAMILY);
      try {
        expect(c.layout.name).toBe('original Wan keys');
        expect(c.config).toEqual({ preset });
      } finally {
        c.close();
      }
    }
  });

  it('umt5_xxl_fp8_e4m3fn_scaled.safetensors: transformers keys (encoder.block.*, shared.weight; as ComfyUI detects T5), umt5-xxl from the shapes', () => {
    const [d, ff, heads] = [4096, 10240, 64];
    const entries: HeaderEntry[] = [['shared.weight', [256384, d]], ['encoder.final_layer_norm.weight', [d]]];
    for (let i = 0; i < 24; i++) {
      const b = `encoder.block.${i}.layer`;
      for (const p of ['q', 'k', 'v', 'o']) entries.push([`${b}.0.SelfAttention.${p}.weight`, [d, d]]);
      entries.push([`${b}.0.SelfAttention.relative_attention_bias.weight`, [32, heads]], [`${b}.0.layer_norm.weight`, [d]]);
      entries.push([`${b}.1.DenseReluDense.wi_0.weight`, [ff, d]], [`${b}.1.DenseReluDense.wi_1.weight`, [ff, d]], [`${b}.1.DenseReluDense.wo.weight`, [d, ff]], [`${b}.1.layer_norm.weight`, [d]]);
    }
    const c = openComponent(headerOnlyFileInOwnFolder(tmp, 'umt5_xxl_fp8_e4m3fn_scaled.safetensors', fp8Scaled(entries)), UMT5_FAMILY);
    try {
      expect(c.layout.name).toBe('transformers keys');
      expect(c.config !== undefined && 'json' in c.config).toBe(true);
      expect(UMT5Config.fromJSON((c.config as { json: ConfigJson }).json)).toEqual(UMT5_PRESETS['umt5-xxl']);
    } finally {
      c.close();
    }
  });
});
