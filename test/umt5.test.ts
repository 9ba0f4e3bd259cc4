import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { relativePositionBucket, relativePositionBuckets } from '../layers/umt5-attention.js';
import { UMT5Config, UMT5EncoderModel } from '../layers/umt5-encoder-model.js';
import { CheckpointError, ConfigError, ShapeError } from '../src/errors.js';
import { SafetensorsFile, writeSafetensors } from '../weights/safetensors.js';
import { detectUMT5Layout, umt5OriginalToTransformersKey, umt5TransformersToOriginalKey } from '../weights/layouts/umt5-original.js';
import { fixtureDir, parityCase } from './helpers/fixtures.js';

const CASE = fixtureDir('umt5-encoder');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-umt5-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const io = SafetensorsFile.open(path.join(CASE, 'io.safetensors'));
const weights = SafetensorsFile.open(path.join(CASE, 'text_encoder', 'model.safetensors'));
afterAll(() => {
  io.close();
  weights.close();
});

function inputs(): { ids: tf.Tensor; mask: tf.Tensor } {
  const ids = io.read('input.input_ids');
  const mask = io.read('input.attention_mask');
  return { ids: tf.tensor(ids.data, ids.shape, 'int32'), mask: tf.tensor(mask.data, mask.shape, 'int32') };
}

/** The fixture's weights re-saved under other names (one file, optional config.json beside it). */
function resave(dir: string, rename: (key: string) => string[], config?: unknown, fileName = 'model.safetensors'): string {
  fs.mkdirSync(dir, { recursive: true });
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const k of weights.keys()) {
    const t = weights.read(k);
    for (const name of rename(k)) out[name] = { shape: t.shape, data: t.data as Float32Array };
  }
  const file = path.join(dir, fileName);
  writeSafetensors(file, out, {});
  if (config !== undefined) fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  return file;
}

function expectMatchesFixture(model: UMT5EncoderModel): void {
  const { ids, mask } = inputs();
  const got = model.forward(ids, mask);
  const want = io.read('output.last_hidden_state');
  expect(got.shape).toEqual(want.shape);
  const g = got.dataSync();
  let worst = 0;
  for (let i = 0; i < g.length; i++) worst = Math.max(worst, Math.abs(g[i] - want.data[i]));
  expect(worst).toBeLessThan(1e-4);
  tf.dispose([ids, mask, got]);
}

describe('umT5 encoder', () => {
  it('matches transformers on the fixture (every hidden state)', async () => {
    const r = await parityCase('umt5-encoder');
    expect(r.line).toMatch(/^PASS umt5-encoder .*\(4 tensors\)/);
  });

  it('buckets relative positions as transformers does (32 buckets, max distance 128)', () => {
    // key − query → bucket: exact below 8, logarithmic to 128, keys after the query in 16…31
    const table: Array<[number, number]> = [
      [0, 0], [-1, 1], [1, 17], [-7, 7], [7, 23], [-8, 8], [-11, 8], [-12, 9], [-16, 10], [16, 26],
      [-23, 11], [-32, 12], [-45, 12], [-46, 13], [-64, 14], [-90, 14], [-91, 15], [-128, 15], [-5000, 15], [5000, 31],
    ];
    for (const [rel, bucket] of table) expect([rel, relativePositionBucket(rel, 32, 128)]).toEqual([rel, bucket]);
    const grid = relativePositionBuckets(3, 4, 32, 128);
    expect(Array.from(grid)).toEqual([0, 17, 18, 19, 1, 0, 17, 18, 2, 1, 0, 17]);
  });

  it('loads the original Wan key names from a Wan root (size read from the shapes)', async () => {
    for (const k of weights.keys()) expect(umt5OriginalToTransformersKey(umt5TransformersToOriginalKey(k)!)).toBe(k);
    // A Wan2.1 root: the DiT's config.json beside the converted T5 file, which must not be read as the T5's.
    const root = path.join(tmp, 'wan-root');
    const dit = { _class_name: 'WanModel', dim: 1536, num_heads: 12 };
    const file = resave(root, (k) => [umt5TransformersToOriginalKey(k)!], dit, 'models_t5_umt5-xxl-enc-bf16.safetensors');
    const reopened = SafetensorsFile.open(file);
    expect(detectUMT5Layout(reopened.keys())).toBe('original');
    expect(reopened.has('blocks.1.ffn.gate.0.weight') && reopened.has('token_embedding.weight')).toBe(true);
    reopened.close();
    for (const where of [root, file]) {
      const model = await UMT5EncoderModel.fromPretrained(where);
      expect(model.config).toMatchObject({ vocabSize: 512, dModel: 32, dKv: 8, dFf: 64, numLayers: 2, numHeads: 4 });
      expectMatchesFixture(model);
      model.dispose();
    }
    const pickled = path.join(tmp, 'wan-pth');
    fs.mkdirSync(pickled);
    fs.writeFileSync(path.join(pickled, 'models_t5_umt5-xxl-enc-bf16.pth'), 'not a pickle');
    await expect(UMT5EncoderModel.fromPretrained(pickled)).rejects.toThrow(/convert it to safetensors first/);
  });

  it('accepts encoder.embed_tokens.weight for shared.weight, alone or beside it', async () => {
    const cfg = JSON.parse(fs.readFileSync(path.join(CASE, 'text_encoder', 'config.json'), 'utf-8'));
    resave(path.join(tmp, 'alias', 'text_encoder'), (k) => [k === 'shared.weight' ? 'encoder.embed_tokens.weight' : k], cfg);
    const alias = await UMT5EncoderModel.fromPretrained(path.join(tmp, 'alias'));
    expectMatchesFixture(alias);
    alias.dispose();
    resave(path.join(tmp, 'both'), (k) => (k === 'shared.weight' ? [k, 'encoder.embed_tokens.weight'] : [k]), cfg);
    const both = await UMT5EncoderModel.fromPretrained(path.join(tmp, 'both'));
    expectMatchesFixture(both);
    both.dispose();
  });

  it('names a missing tensor and leaves no tensor behind', async () => {
    const cfg = JSON.parse(fs.readFileSync(path.join(CASE, 'text_encoder', 'config.json'), 'utf-8'));
    const before = tf.memory().numTensors;
    resave(path.join(tmp, 'missing'), (k) => (k.endsWith('block.1.layer.1.DenseReluDense.wo.weight') ? [] : [k]), cfg);
    const err = await UMT5EncoderModel.fromPretrained(path.join(tmp, 'missing')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toContain('encoder.block.1.layer.1.DenseReluDense.wo.weight');
    expect(tf.memory().numTensors).toBe(before);
    await expect(UMT5EncoderModel.fromPretrained(path.join(tmp, 'nowhere'))).rejects.toBeInstanceOf(CheckpointError);
  });

  it('frees every intermediate and, on dispose, every weight', async () => {
    const before = tf.memory().numTensors;
    const model = await UMT5EncoderModel.fromPretrained(path.join(CASE, 'text_encoder'));
    const loaded = tf.memory().numTensors;
    expect(loaded - before).toBe(model.namedWeights().size);
    const { ids, mask } = inputs();
    const out = model.forwardWithHiddenStates(ids, mask);
    expect(out.hiddenStates).toHaveLength(3);
    expect(out.hiddenStates[2]).toBe(out.lastHiddenState);
    tf.dispose(out.hiddenStates);
    model.forward(ids, mask).dispose();
    tf.dispose([ids, mask]);
    expect(tf.memory().numTensors).toBe(loaded);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad inputs with the argument named', async () => {
    const model = await UMT5EncoderModel.fromPretrained(path.join(CASE, 'text_encoder'));
    const bad = tf.tensor2d([[1, 512]], [1, 2], 'int32');
    expect(() => model.forward(bad)).toThrow(/inputIds: got token id 512 at \[0, 1\], expected ids in \[0, 512\)/);
    const ids = tf.tensor2d([[1, 2, 3]], [1, 3], 'int32');
    const mask = tf.ones([1, 2]);
    expect(() => model.forward(ids, mask)).toThrow(ShapeError);
    expect(() => model.forward(tf.tensor1d([1], 'int32'))).toThrow(/inputIds: got \[1\], expected \[B, L\]/);
    tf.dispose([bad, ids, mask]);
    model.dispose();
  });

  it('reads config.json and has the published umT5-XXL preset', () => {
    const cfg = UMT5Config.fromJSON(JSON.parse(fs.readFileSync(path.join(CASE, 'text_encoder', 'config.json'), 'utf-8')));
    expect(cfg).toEqual({
      vocabSize: 512, dModel: 32, dKv: 8, dFf: 64, numLayers: 2, numHeads: 4, relativeAttentionNumBuckets: 32,
      relativeAttentionMaxDistance: 128, layerNormEpsilon: 1e-6, feedForwardProj: 'gated-gelu',
    });
    const xxl = new UMT5EncoderModel('umt5-xxl');
    // 5.68 B: the token table 256384·4096 plus 24 × (4·4096² + 32·64 + 2·4096 + 3·4096·10240) plus the final norm
    expect(xxl.countParams()).toBe(256384 * 4096 + 24 * (4 * 4096 * 4096 + 32 * 64 + 2 * 4096 + 3 * 4096 * 10240) + 4096);
    expect(xxl.namedWeights().has('encoder.block.23.layer.0.SelfAttention.relative_attention_bias.weight')).toBe(true);
    expect(() => UMT5Config.fromJSON({ feed_forward_proj: 'relu' })).toThrow(ConfigError);
    expect(() => UMT5Config.fromJSON({ d_model: -4 })).toThrow(/"d_model" must be a positive integer/);
    expect(() => UMT5Config.resolve('umt5-huge' as 'umt5-xxl')).toThrow(/valid: umt5-xxl/);
  });
});
