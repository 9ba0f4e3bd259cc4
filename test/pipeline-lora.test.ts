import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyLora, loraModules } from '../layers/lora-linear.js';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { CheckpointError, ConfigError } from '../src/errors.js';
import type { GenerateOptions } from '../src/pipeline/generate-options.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { saveLora } from '../src/train/lora-io.js';
import { randn } from '../src/random.js';
import { fixtureDir } from './helpers/fixtures.js';

const T2V = fixtureDir('pipeline-t2v');
const A14B = fixtureDir('pipeline-a14b');

let tmp: string;
let t2v: WanPipeline;
let a14b: WanPipeline;
let cond: tf.Tensor;
let uncond: tf.Tensor;

/** A LoRA for the transformer of `dir` with non-zero B (so it changes the output), written to `file`. */
async function makeLora(dir: string, file: string): Promise<string> {
  const m = await WanTransformer3DModel.fromPretrained(path.join(dir, 'transformer'));
  applyLora(m, { rank: 2, alpha: 4 });
  let i = 0;
  for (const l of loraModules(m).values()) l.loraB.weight.assign(tf.randomNormal([...l.loraB.weight.shape], 0, 0.3, 'float32', 100 + i++));
  saveLora(m, file);
  m.dispose();
  return file;
}

beforeAll(async () => {
  await tf.setBackend('wasm');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-pipe-lora-'));
  t2v = await WanPipeline.fromPretrained(T2V);
  a14b = await WanPipeline.fromPretrained(A14B);
  await makeLora(T2V, path.join(tmp, 't2v.safetensors'));
  await makeLora(A14B, path.join(tmp, 'a14b.safetensors'));
  const textDim = t2v.textDim;
  cond = randn([1, 4, textDim], 1);
  uncond = randn([1, 4, textDim], 2);
});

afterAll(() => {
  tf.dispose([cond, uncond]);
  t2v.dispose();
  a14b.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const opts: GenerateOptions = { height: 32, width: 48, numFrames: 5, numInferenceSteps: 2, guidanceScale: 4, seed: 3 };

async function latents(pipe: WanPipeline): Promise<Float32Array> {
  const y = await pipe.generate({ ...opts, promptEmbeds: cond, negativePromptEmbeds: uncond });
  const out = Float32Array.from(await y.data());
  y.dispose();
  return out;
}

describe('WanPipeline.loadLora / unloadLora', () => {
  it('changes the output while loaded; unloading restores the base output exactly; scale 0 is the base', async () => {
    const file = path.join(tmp, 't2v.safetensors');
    const base = await latents(t2v);
    const loaded = await t2v.loadLora(file);
    expect(loaded).toHaveLength(1);
    expect(loaded[0].modules.size).toBeGreaterThan(0);
    const withLora = await latents(t2v);
    expect(withLora).not.toEqual(base);
    t2v.unloadLora();
    expect(loraModules((await t2v.experts[0].get()) as WanTransformer3DModel).size).toBe(0);
    expect(await latents(t2v)).toEqual(base);

    await t2v.loadLora(file, { scale: 0 });
    expect(await latents(t2v)).toEqual(base);
    t2v.unloadLora();

    await t2v.loadLora(file, { scale: 0.5 });
    const half = await latents(t2v);
    expect(half).not.toEqual(base);
    expect(half).not.toEqual(withLora);
    t2v.unloadLora();
    expect(await latents(t2v)).toEqual(base);
  });

  it('loads into the chosen expert of a two-expert model', async () => {
    const file = path.join(tmp, 'a14b.safetensors');
    const high = (await a14b.experts[0].get()) as WanTransformer3DModel;
    const low = (await a14b.experts[1]!.get()) as WanTransformer3DModel;
    const base = await latents(a14b);
    await a14b.loadLora(file, { expert: 'low' });
    expect(loraModules(high).size).toBe(0);
    expect(loraModules(low).size).toBeGreaterThan(0);
    expect(await latents(a14b)).not.toEqual(base);
    a14b.unloadLora();
    await a14b.loadLora(file, { expert: 'both' });
    expect(loraModules(high).size).toBeGreaterThan(0);
    a14b.unloadLora();
    expect(loraModules(low).size).toBe(0);
    expect(await latents(a14b)).toEqual(base);
  });

  it('refuses bad arguments and a LoRA that does not fit, leaving the model as it was', async () => {
    const file = path.join(tmp, 't2v.safetensors');
    const base = await latents(t2v);
    await expect(t2v.loadLora(file, { expert: 'low' })).rejects.toThrow(ConfigError);
    await expect(t2v.loadLora(file, { scale: Number.NaN })).rejects.toThrow(/scale/);
    await t2v.loadLora(file);
    await expect(t2v.loadLora(file)).rejects.toThrow(/unloadLora/);
    t2v.unloadLora();
    // a LoRA for a transformer of another width
    const other = new WanTransformer3DModel({ numAttentionHeads: 2, attentionHeadDim: 8, inChannels: 4, outChannels: 4, textDim: 32, freqDim: 16, ffnDim: 24, numLayers: 2 }).initialize(1);
    applyLora(other, { rank: 2 });
    const wrong = path.join(tmp, 'wrong.safetensors');
    saveLora(other, wrong);
    other.dispose();
    await expect(t2v.loadLora(wrong)).rejects.toThrow(CheckpointError);
    expect(loraModules((await t2v.experts[0].get()) as WanTransformer3DModel).size).toBe(0);
    expect(await latents(t2v)).toEqual(base);
    await expect(t2v.loadLora(path.join(tmp, 'missing.safetensors'))).rejects.toThrow(/missing\.safetensors/);
  });
});
