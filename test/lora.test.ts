import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, describe, expect, it } from 'vitest';
import { LoraLinear, applyLora, loraModules, mergeLora, unmergeLora } from '../layers/lora-linear.js';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { CheckpointError } from '../src/errors.js';
import { loadLora, saveLora } from '../src/train/lora-io.js';
import { detectLoraFormat, loraKey, parseLoraKey } from '../weights/lora-keys.js';
import { SafetensorsFile, writeSafetensors } from '../weights/safetensors.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-lora-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const CONFIG = { numAttentionHeads: 2, attentionHeadDim: 8, inChannels: 4, outChannels: 4, textDim: 8, freqDim: 16, ffnDim: 24, numLayers: 2 };
const model = (seed = 1) => new WanTransformer3DModel(CONFIG).initialize(seed);
const x = tf.randomNormal([1, 4, 2, 4, 4], 0, 1, 'float32', 1);
const t = tf.tensor1d([500]);
const ctx = tf.randomNormal([1, 3, 8], 0, 1, 'float32', 2);
const run = (m: WanTransformer3DModel) => {
  const y = m.forward(x, t, ctx);
  const out = Float32Array.from(y.dataSync());
  y.dispose();
  return out;
};
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
/** Gives every adapter a non-zero B so that it changes the output. */
const perturb = (m: WanTransformer3DModel, seed: number) => {
  let i = 0;
  for (const l of loraModules(m).values()) l.loraB.weight.assign(tf.randomNormal(l.loraB.weight.shape as number[], 0, 0.2, 'float32', seed + i++));
};

describe('LoRA adapters', () => {
  it('wraps the attention and feed-forward linears and trains only the adapters', () => {
    const m = model();
    const base = run(m);
    const mods = applyLora(m, { rank: 4, alpha: 8 });
    // 2 blocks × (attn1 q,k,v,out + attn2 q,k,v,out + ffn 2)
    expect(mods.size).toBe(20);
    expect([...mods.keys()]).toContain('blocks.1.attn2.to_out.0');
    expect([...mods.keys()]).toContain('blocks.0.ffn.net.0.proj');
    expect(m.blocks[0].attn1.toQ).toBeInstanceOf(LoraLinear);
    expect(m.trainableWeights.length).toBe(40);
    expect(m.namedParams().has('blocks.0.attn1.to_q.lora_A.weight')).toBe(true);
    expect(maxDiff(run(m), base)).toBe(0);
    m.dispose();
  });

  it('merged equals unmerged within 1e-5, and unmerge restores the base weight', () => {
    const m = model();
    applyLora(m, { rank: 4, alpha: 8 });
    perturb(m, 10);
    const w0 = m.blocks[0].attn1.toQ.weight.value.dataSync().slice();
    const unmerged = run(m);
    const before = tf.memory().numTensors;
    mergeLora(m);
    expect(tf.memory().numTensors).toBe(before);
    const merged = run(m);
    expect(maxDiff(merged, unmerged)).toBeLessThanOrEqual(1e-5);
    expect(maxDiff(m.blocks[0].attn1.toQ.weight.value.dataSync(), w0)).toBeGreaterThan(1e-3);
    unmergeLora(m);
    expect(maxDiff(m.blocks[0].attn1.toQ.weight.value.dataSync(), w0)).toBeLessThanOrEqual(1e-6);
    expect(maxDiff(run(m), unmerged)).toBeLessThanOrEqual(1e-6);
    m.dispose();
  });

  it('computes W·x + (alpha/rank)·B·A·x', () => {
    const l = new LoraLinear({ inFeatures: 2, outFeatures: 2, bias: false }, { rank: 1, alpha: 3 });
    l.weight.assign(tf.tensor2d([[1, 0], [0, 1]]));
    l.loraA.weight.assign(tf.tensor2d([[1, 2]]));
    l.loraB.weight.assign(tf.tensor2d([[1], [-1]]));
    const y = l.forward(tf.tensor2d([[1, 1]]));
    // x·Wᵀ = [1, 1]; A·x = 3; B·3 = [3, −3]; × 3 → [9, −9]
    expect(Array.from(y.dataSync())).toEqual([10, -8]);
    l.dispose();
  });

  for (const format of ['diffusers', 'wan'] as const) {
    it(`round-trips through safetensors in the ${format} key form`, () => {
      const a = model();
      applyLora(a, { rank: 4, alpha: 2 });
      perturb(a, 20);
      const want = run(a);
      const file = path.join(tmp, `lora-${format}.safetensors`);
      expect(saveLora(a, file, { format })).toBe(20);
      const f = SafetensorsFile.open(file);
      const keys = f.keys();
      f.close();
      if (format === 'diffusers') {
        expect(keys).toContain('transformer.blocks.0.attn1.to_q.lora_A.weight');
        expect(keys).toContain('transformer.blocks.1.ffn.net.2.lora_B.weight');
      } else {
        expect(keys).toContain('diffusion_model.blocks.0.self_attn.q.lora_down.weight');
        expect(keys).toContain('diffusion_model.blocks.0.cross_attn.o.lora_up.weight');
        expect(keys).toContain('diffusion_model.blocks.1.ffn.0.alpha');
      }
      const b = model();
      const loaded = loadLora(b, file);
      expect(loaded.format).toBe(format);
      expect(loaded.modules.get('blocks.0.attn1.to_q')).toEqual({ rank: 4, alpha: 2 });
      expect(maxDiff(run(b), want)).toBeLessThanOrEqual(1e-6);
      a.dispose();
      b.dispose();
    });
  }

  it('loads a Wan-form LoRA written elsewhere, scaling by its alpha', () => {
    const m = model();
    const w = m.blocks[1].attn1.toV.weight.value.dataSync().slice();
    const down = Float32Array.from({ length: 2 * 16 }, (_, i) => ((i * 7) % 5) / 10 - 0.2);
    const up = Float32Array.from({ length: 16 * 2 }, (_, i) => ((i * 3) % 7) / 10 - 0.3);
    const file = path.join(tmp, 'external.safetensors');
    writeSafetensors(file, {
      'diffusion_model.blocks.1.self_attn.v.lora_down.weight': { shape: [2, 16], data: down },
      'diffusion_model.blocks.1.self_attn.v.lora_up.weight': { shape: [16, 2], data: up },
      'diffusion_model.blocks.1.self_attn.v.alpha': { shape: [], data: Float32Array.of(1) },
    });
    loadLora(m, file);
    mergeLora(m);
    const merged = m.blocks[1].attn1.toV.weight.value.dataSync();
    // ΔW[o, i] = (alpha / rank) Σ_r up[o, r]·down[r, i] with alpha 1, rank 2
    for (let o = 0; o < 16; o++) for (let i = 0; i < 16; i++) {
      const d = 0.5 * (up[o * 2] * down[i] + up[o * 2 + 1] * down[16 + i]);
      expect(Math.abs(merged[o * 16 + i] - (w[o * 16 + i] + d))).toBeLessThanOrEqual(1e-6);
    }
    m.dispose();
  });

  it('reports every module of a LoRA that does not fit, in one CheckpointError', () => {
    const m = model();
    const file = path.join(tmp, 'bad.safetensors');
    writeSafetensors(file, {
      'transformer.blocks.7.attn1.to_q.lora_A.weight': { shape: [2, 16], data: new Float32Array(32) },
      'transformer.blocks.7.attn1.to_q.lora_B.weight': { shape: [16, 2], data: new Float32Array(32) },
      'transformer.blocks.0.attn1.to_k.lora_A.weight': { shape: [2, 5], data: new Float32Array(10) },
      'transformer.blocks.0.attn1.to_k.lora_B.weight': { shape: [16, 2], data: new Float32Array(32) },
    });
    expect(() => loadLora(m, file)).toThrow(CheckpointError);
    expect(() => loadLora(m, file)).toThrow(/blocks\.7\.attn1\.to_q' does not exist/);
    expect(() => loadLora(m, file)).toThrow(/blocks\.0\.attn1\.to_k': A \[2,5\]/);
    expect(loraModules(m).size).toBe(0);
    m.dispose();
  });

  it('maps keys between the two forms', () => {
    expect(parseLoraKey('diffusion_model.blocks.3.cross_attn.k.lora_up.weight')).toEqual({ module: 'blocks.3.attn2.to_k', part: 'B', format: 'wan' });
    expect(parseLoraKey('transformer.blocks.3.ffn.net.0.proj.lora_A.weight')).toEqual({ module: 'blocks.3.ffn.net.0.proj', part: 'A', format: 'diffusers' });
    expect(parseLoraKey('diffusion_model.head.head.lora_down.weight')?.module).toBe('proj_out');
    expect(parseLoraKey('blocks.0.self_attn.o.lora_A.weight')).toEqual({ module: 'blocks.0.attn1.to_out.0', part: 'A', format: 'wan' });
    expect(loraKey('blocks.2.ffn.net.2', 'B', 'wan')).toBe('diffusion_model.blocks.2.ffn.2.lora_up.weight');
    expect(loraKey('condition_embedder.time_proj', 'A', 'wan')).toBe('diffusion_model.time_projection.1.lora_down.weight');
    expect(detectLoraFormat(['diffusion_model.blocks.0.self_attn.q.lora_down.weight', 'diffusion_model.blocks.0.self_attn.q.alpha'])).toBe('wan');
    expect(parseLoraKey('blocks.0.attn1.to_q.weight')).toBeUndefined();
  });

  it('leaks no tensors in the adapted forward', () => {
    const m = model();
    applyLora(m, { rank: 2 });
    run(m);
    const before = tf.memory().numTensors;
    run(m);
    expect(tf.memory().numTensors).toBe(before);
    m.dispose();
  });
});
