import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PRESETS, WanTransformer3DModel, WanTransformerConfig } from '../layers/wan-transformer-3d-model.js';
import { CheckpointError, ConfigError, ShapeError } from '../src/errors.js';
import { compareArrays } from '../src/parity/runner.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../weights/safetensors.js';
import {
  detectTransformerLayout,
  diffusersToOriginalKey,
  originalToDiffusersKey,
} from '../weights/layouts/wan-transformer-original.js';
import { stripCheckpointPrefix } from '../weights/layouts/checkpoint-prefix.js';
import { fixtureDir, parityCase } from './helpers/fixtures.js';

const T2V = fixtureDir('wan-transformer-t2v');
const TI2V = fixtureDir('wan-transformer-ti2v');
const TOL = { atol: 1e-4, rtol: 1e-4 };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-dit-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function io(dir: string, name: string): tf.Tensor {
  const f = SafetensorsFile.open(path.join(dir, 'io.safetensors'));
  try {
    const t = f.read(name);
    return tf.tensor(t.data, t.shape, t.dtype);
  } finally {
    f.close();
  }
}

function expectClose(got: tf.Tensor, expected: tf.Tensor, tol = TOL): void {
  const r = compareArrays(got.dataSync(), got.shape, expected.dataSync(), expected.shape, tol);
  expect(r.shapeOk, `shape [${got.shape}] vs [${expected.shape}]`).toBe(true);
  expect(r.ok, `max |err| ${r.maxAbsErr} at flat index ${r.worstIndex}`).toBe(true);
}

/** Copies a checkpoint folder, passing each tensor through `edit` (which returns the tensors to write in its place). */
function doctor(src: string, dst: string, edit: (name: string, t: TensorToWrite) => Array<[string, TensorToWrite]>): string {
  fs.mkdirSync(dst, { recursive: true });
  fs.copyFileSync(path.join(src, 'config.json'), path.join(dst, 'config.json'));
  const f = SafetensorsFile.open(path.join(src, 'diffusion_pytorch_model.safetensors'));
  const out: Record<string, TensorToWrite> = {};
  for (const k of f.keys()) {
    const t = f.read(k);
    for (const [n, v] of edit(k, { shape: t.shape, data: t.data as Float32Array })) out[n] = v;
  }
  f.close();
  writeSafetensors(path.join(dst, 'diffusion_pytorch_model.safetensors'), out);
  return dst;
}

describe('WanTransformer3DModel parity (fixtures, both key layouts)', () => {
  it('wan-transformer-t2v passes with debug intermediates in both layouts', async () => {
    const r = await parityCase('wan-transformer-t2v');
    expect(r.line).toMatch(/^PASS wan-transformer-t2v .*20 tensors, layouts: transformer, original/);
  });

  it('wan-transformer-ti2v (per-token timesteps [B, L]) passes in both layouts', async () => {
    const r = await parityCase('wan-transformer-ti2v');
    expect(r.line).toMatch(/^PASS wan-transformer-ti2v .*20 tensors, layouts: transformer, original/);
  });
});

describe('WanTransformer3DModel on the t2v fixture', () => {
  let model: WanTransformer3DModel;
  let hidden: tf.Tensor;
  let timestep: tf.Tensor;
  let text: tf.Tensor;
  let expected: tf.Tensor;

  beforeAll(async () => {
    model = await WanTransformer3DModel.fromPretrained(path.join(T2V, 'transformer'));
    hidden = io(T2V, 'input.hidden_states');
    timestep = io(T2V, 'input.timestep');
    text = io(T2V, 'input.encoder_hidden_states');
    expected = io(T2V, 'output.sample');
  });
  afterAll(() => {
    model.dispose();
    tf.dispose([hidden, timestep, text, expected]);
  });

  it('a batch of 2 with timestep [B] gives each sample its own single-sample result', () => {
    const hidden2 = tf.concat([hidden, tf.add(tf.mul(hidden, 0.5), 0.3)], 0);
    const t2 = tf.concat([timestep, tf.tensor1d([123])], 0);
    const text2 = tf.concat([text, tf.reverse(text, 1)], 0);
    const batch = model.forward(hidden2, t2, text2);
    const [a, b] = tf.split(batch, 2, 0);
    expectClose(a, expected);
    const single = model.forward(tf.slice(hidden2, [1], [1]), tf.slice(t2, [1], [1]), tf.slice(text2, [1], [1]));
    expectClose(b, single, { atol: 1e-5, rtol: 1e-5 });
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBeGreaterThan(1e-2);
  });

  it('a timestep of batch 1 is shared by every sample', () => {
    const hidden2 = tf.concat([hidden, hidden], 0);
    const text2 = tf.concat([text, text], 0);
    const out = model.forward(hidden2, timestep, text2);
    const [a, b] = tf.split(out, 2, 0);
    expectClose(a, expected);
    expectClose(b, expected);
  });

  it('uses the text at the length given: duplicated rows leave the output unchanged, zero rows are attended', () => {
    const doubled = model.forward(hidden, timestep, tf.concat([text, text], 1));
    expectClose(doubled, expected);
    const padded = model.forward(hidden, timestep, tf.pad(text, [[0, 0], [0, 6], [0, 0]]));
    expect(padded.shape).toEqual(expected.shape);
    expect(tf.max(tf.abs(tf.sub(padded, expected))).dataSync()[0]).toBeGreaterThan(1e-3);
    const short = model.forward(hidden, timestep, tf.slice(text, [0, 0, 0], [1, 3, -1]));
    expect(short.shape).toEqual(expected.shape);
  });

  it('leaves no tensors behind, with or without the debug callback', () => {
    model.forward(hidden, timestep, text).dispose();
    const before = tf.memory().numTensors;
    model.forward(hidden, timestep, text).dispose();
    const names: string[] = [];
    model.forward(hidden, timestep, text, { debug: (n) => names.push(n) }).dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(names).toEqual(['rope_cos', 'rope_sin', 'patch_embedding', 'temb', 'timestep_proj', 'text_embedding', 'block.0', 'block.1', 'proj_out']);
  });

  it('rejects inputs of the wrong shape with ShapeErrors naming the argument', () => {
    expect(() => model.forward(tf.zeros([1, 15, 3, 8, 12]), timestep, text)).toThrow(/hiddenStates.*\[B, 16, F, H, W\]/);
    expect(() => model.forward(tf.zeros([1, 16, 3, 7, 12]), timestep, text)).toThrow(/nearest valid: \[1,16,3,8,12\]/);
    expect(() => model.forward(hidden, tf.zeros([1, 71]), text)).toThrow(ShapeError);
    expect(() => model.forward(hidden, tf.zeros([3]), text)).toThrow(/timestep/);
    expect(() => model.forward(hidden, timestep, tf.zeros([1, 10, 31]))).toThrow(/encoderHiddenStates/);
    const short = new WanTransformer3DModel({ ...model.config, ropeMaxSeqLen: 4 });
    expect(() => short.forward(tf.zeros([1, 16, 1, 2, 10]), timestep, text)).toThrow(/5 width positions.*rope_max_seq_len/);
  });

  it('serialises its config through getConfig / fromConfig', () => {
    const copy = WanTransformer3DModel.fromConfig(WanTransformer3DModel, model.getConfig());
    expect(copy).toBeInstanceOf(WanTransformer3DModel);
    if (!(copy instanceof WanTransformer3DModel)) return;
    expect(copy.config).toEqual(model.config);
    expect([...copy.namedWeights().keys()]).toEqual([...model.namedWeights().keys()]);
  });
});

describe('WanTransformer3DModel with per-token timesteps (ti2v fixture)', () => {
  it('a batch of 2 with timestep [B, L] equals the single-sample results', async () => {
    const model = await WanTransformer3DModel.fromPretrained(path.join(TI2V, 'original'));
    const hidden = io(TI2V, 'input.hidden_states');
    const timestep = io(TI2V, 'input.timestep');
    const text = io(TI2V, 'input.encoder_hidden_states');
    const expected = io(TI2V, 'output.sample');
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const L = timestep.shape[1] as number;
      const perturbedT = tf.mul(tf.reshape(tf.linspace(0.2, 1, L), [1, L]), 700);
      const hidden2 = tf.concat([hidden, tf.neg(hidden)], 0);
      const t2 = tf.concat([timestep, perturbedT], 0);
      const text2 = tf.concat([text, tf.mul(text, 2)], 0);
      const [a, b] = tf.split(model.forward(hidden2, t2, text2), 2, 0);
      expectClose(a, expected);
      expectClose(b, model.forward(tf.neg(hidden), perturbedT, tf.mul(text, 2)), { atol: 1e-5, rtol: 1e-5 });
    });
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
    tf.dispose([hidden, timestep, text, expected]);
  });
});

describe('checkpoint loading', () => {
  it('reports missing, unexpected and mis-shaped tensors in one CheckpointError and frees the model', async () => {
    const dir = doctor(path.join(T2V, 'transformer'), path.join(tmp, 'doctored'), (name, t) => {
      if (name === 'blocks.1.attn2.norm_k.weight') return [];
      if (name === 'proj_out.bias') return [[name, { shape: [63], data: t.data.slice(0, 63) }]];
      if (name === 'patch_embedding.bias') return [[name, t], ['blocks.0.attn1.to_qkv.weight', t]];
      return [[name, t]];
    });
    const before = tf.memory().numTensors;
    const err = await WanTransformer3DModel.fromPretrained(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    const msg = (err as Error).message;
    expect(msg).toContain('diffusion_pytorch_model.safetensors');
    expect(msg).toMatch(/missing 1: blocks\.1\.attn2\.norm_k\.weight/);
    expect(msg).toMatch(/unexpected 1: blocks\.0\.attn1\.to_qkv\.weight/);
    expect(msg).toMatch(/mis-shaped 1: proj_out\.bias: file \[63\] vs model \[64\]/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('loads an original-layout checkpoint whose keys carry the model.diffusion_model. prefix', async () => {
    const dir = doctor(path.join(T2V, 'original'), path.join(tmp, 'prefixed'), (name, t) => [[`model.diffusion_model.${name}`, t]]);
    const model = await WanTransformer3DModel.fromPretrained(path.join(dir, 'diffusion_pytorch_model.safetensors'));
    const out = model.forward(io(T2V, 'input.hidden_states'), io(T2V, 'input.timestep'), io(T2V, 'input.encoder_hidden_states'));
    expectClose(out, io(T2V, 'output.sample'));
    model.dispose();
  });

  it('asks for a config when the folder has none, and loads with a given one', async () => {
    const dir = path.join(tmp, 'no-config');
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(T2V, 'transformer', 'diffusion_pytorch_model.safetensors'), path.join(dir, 'diffusion_pytorch_model.safetensors'));
    await expect(WanTransformer3DModel.fromPretrained(dir)).rejects.toThrow(/config\.json not found.*options\.config/);
    const config = WanTransformerConfig.fromJSON(JSON.parse(fs.readFileSync(path.join(T2V, 'transformer', 'config.json'), 'utf-8')));
    const model = await WanTransformer3DModel.fromPretrained(dir, { config });
    expect(model.countParams()).toBeGreaterThan(0);
    model.dispose();
  });
});

describe('configs and key maps', () => {
  it('reads the Diffusers and the original config.json of a case into the same config', () => {
    for (const dir of [T2V, TI2V]) {
      const d = WanTransformerConfig.fromJSON(JSON.parse(fs.readFileSync(path.join(dir, 'transformer', 'config.json'), 'utf-8')));
      const o = WanTransformerConfig.fromJSON(JSON.parse(fs.readFileSync(path.join(dir, 'original', 'config.json'), 'utf-8')));
      expect(o).toEqual(d);
    }
    const spec = JSON.parse(fs.readFileSync(path.join(TI2V, 'case.json'), 'utf-8')) as { config: { in_channels: number } };
    expect(WanTransformerConfig.fromJSON(spec.config).inChannels).toBe(spec.config.in_channels);
  });

  it('rejects configs it cannot build', () => {
    expect(() => WanTransformerConfig.fromJSON({ _class_name: 'WanModel', dim: 30, num_heads: 4 })).toThrow(ConfigError);
    expect(() => WanTransformerConfig.fromJSON({ image_dim: 1280, added_kv_proj_dim: 5120 })).toThrow(/image-to-video/);
    expect(() => WanTransformerConfig.fromJSON({ _class_name: 'AutoencoderKLWan' })).toThrow(/not a Wan transformer/);
    expect(() => WanTransformerConfig.fromJSON({ num_layers: -1 })).toThrow(/num_layers/);
  });

  it('presets have the published parameter counts', () => {
    expect(new WanTransformer3DModel(PRESETS['wan2.1-t2v-1.3b']).countParams()).toBe(1_418_996_800);
    expect(new WanTransformer3DModel(PRESETS['wan2.1-t2v-14b']).countParams()).toBe(14_288_491_584);
    expect(new WanTransformer3DModel(PRESETS['wan2.2-t2v-a14b']).countParams()).toBe(14_288_491_584);
    expect(new WanTransformer3DModel(PRESETS['wan2.2-ti2v-5b']).countParams()).toBe(4_999_787_712);
  });

  it('maps every original key of a checkpoint onto the Diffusers keys and back', () => {
    const orig = SafetensorsFile.open(path.join(T2V, 'original', 'diffusion_pytorch_model.safetensors'));
    const diff = SafetensorsFile.open(path.join(T2V, 'transformer', 'diffusion_pytorch_model.safetensors'));
    const mapped = orig.keys().map((k) => originalToDiffusersKey(k));
    expect(mapped.slice().sort()).toEqual(diff.keys().slice().sort());
    for (const k of orig.keys()) {
      expect(diffusersToOriginalKey(originalToDiffusersKey(k)!)).toBe(k);
      const o = orig.read(k);
      const d = diff.read(originalToDiffusersKey(k)!);
      expect(d.shape).toEqual(o.shape);
      expect(d.data).toEqual(o.data);
    }
    expect(detectTransformerLayout(orig.keys())).toBe('original');
    expect(detectTransformerLayout(diff.keys())).toBe('diffusers');
    expect(detectTransformerLayout(orig.keys().map((k) => `model.diffusion_model.${k}`))).toBe('original');
    orig.close();
    diff.close();
    expect(originalToDiffusersKey('blocks.7.norm3.weight')).toBe('blocks.7.norm2.weight');
    expect(originalToDiffusersKey('blocks.7.self_attn.o.bias')).toBe('blocks.7.attn1.to_out.0.bias');
    expect(originalToDiffusersKey('head.modulation')).toBe('scale_shift_table');
    expect(originalToDiffusersKey('blocks.0.self_attn.q.weight.extra')).toBeUndefined();
    expect(stripCheckpointPrefix('model.diffusion_model.head.head.bias')).toBe('head.head.bias');
  });
});
