import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, CheckpointError, ConfigError, ShapeError } from '../src/errors.js';
import { readModelIndex } from '../src/pipeline/model-index.js';
import { randn, randnHost } from '../src/random.js';
import type { GenerateOptions, StepInfo } from '../src/pipeline/generate-options.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import type { WanTextEncoder } from '../src/text/text-encoder.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { hostToTensor } from '../weights/load.js';
import { fixtureDir, parityCase } from './helpers/fixtures.js';
import { assembleTinyModel } from './helpers/tiny-model.js';
import { maxAbsDiff } from './helpers/compare.js';

const T2V = fixtureDir('pipeline-t2v');
const A14B = fixtureDir('pipeline-a14b');

let tmp: string;
let t2v: WanPipeline;
let io: SafetensorsFile;
let cond: tf.Tensor;
let uncond: tf.Tensor;
let latents0: tf.Tensor;

beforeAll(async () => {
  await tf.setBackend('wasm');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-pipeline-'));
  t2v = await WanPipeline.fromPretrained(T2V);
  io = SafetensorsFile.open(path.join(T2V, 'io.safetensors'));
  cond = hostToTensor(io.read('input.prompt_embeds'));
  uncond = hostToTensor(io.read('input.negative_prompt_embeds'));
  latents0 = hostToTensor(io.read('input.latents'));
});

afterAll(() => {
  tf.dispose([cond, uncond, latents0]);
  t2v.dispose();
  io.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The fixture's call at 32×48, 5 frames, with `overrides`. */
function opts(overrides: Partial<GenerateOptions> = {}): GenerateOptions {
  return { promptEmbeds: cond, negativePromptEmbeds: uncond, height: 32, width: 48, numFrames: 5, numInferenceSteps: 2, guidanceScale: 4, ...overrides };
}

/** Copies a fixture folder into the temp dir (fixtures are read-only). */
function copyFixture(src: string, name: string): string {
  const dst = path.join(tmp, name);
  fs.cpSync(src, dst, { recursive: true });
  for (const f of fs.readdirSync(dst, { recursive: true, withFileTypes: true })) fs.chmodSync(path.join(f.parentPath, f.name), f.isDirectory() ? 0o755 : 0o644);
  return dst;
}

describe('parity with Diffusers WanPipeline', () => {
  it('pipeline-t2v: latents after every step and the decoded frames', async () => {
    const r = await parityCase('pipeline-t2v');
    expect(r.line).toMatch(/^PASS/);
  });

  it('pipeline-a14b: two experts split at boundary_ratio 0.875 with guidance 4.0 / 3.0', async () => {
    const r = await parityCase('pipeline-a14b');
    expect(r.line).toMatch(/^PASS/);
  });
});

describe('seeded noise', () => {
  it('same seed → same numbers; item 0 of a batch equals the single draw; other seeds differ', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 1, max: 300 }), (seed, n) => {
        const a = randnHost([n], seed);
        expect(randnHost([n], seed)).toEqual(a);
        expect(randnHost([2, n], seed).subarray(0, n)).toEqual(a);
        const b = randnHost([n], seed === 0 ? 1 : seed - 1);
        expect(a.some((v, i) => v !== b[i])).toBe(true);
      }),
      { numRuns: 50 },
    );
  });

  it('is standard normal: mean 0, variance 1, tails, no correlation between neighbours', () => {
    const n = 200_000;
    const x = randnHost([n], 1234);
    let s = 0;
    let s2 = 0;
    let s4 = 0;
    let lag = 0;
    let beyond3 = 0;
    for (let i = 0; i < n; i++) {
      s += x[i];
      s2 += x[i] * x[i];
      s4 += x[i] ** 4;
      if (i > 0) lag += x[i] * x[i - 1];
      if (Math.abs(x[i]) > 3) beyond3++;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.01);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.015);
    expect(Math.abs(s4 / n - 3)).toBeLessThan(0.1);
    expect(Math.abs(lag / n)).toBeLessThan(0.01);
    // P(|z| > 3) = 0.0027
    expect(beyond3 / n).toBeGreaterThan(0.002);
    expect(beyond3 / n).toBeLessThan(0.0034);
  });

  it('rejects seeds that are not non-negative safe integers', () => {
    for (const seed of [-1, 1.5, Number.NaN, 2 ** 53]) expect(() => randnHost([2], seed)).toThrow(ConfigError);
  });

  it('generate(seed) starts from randn(shape, seed)', async () => {
    const a = await t2v.generate(opts({ seed: 77, numInferenceSteps: 1 }));
    const noise = randn([1, 4, 2, 4, 6], 77);
    const b = await t2v.generate(opts({ latents: noise, numInferenceSteps: 1 }));
    expect(maxAbsDiff(a, b)).toBe(0);
    tf.dispose([a, b, noise]);
  });
});

describe('WanPipeline', () => {
  it('leaks no tensor over generate + decode, and steps report progress in order', async () => {
    const before = tf.memory().numTensors;
    const steps: Array<Omit<StepInfo, 'latents'>> = [];
    const lat = await t2v.generate(opts({ seed: 3, numInferenceSteps: 3, onStep: ({ latents: _l, ...rest }) => steps.push(rest) }));
    const frames = t2v.decodeLatents(lat);
    expect(frames.shape).toEqual([1, 5, 32, 48, 3]);
    const [lo, hi] = tf.tidy(() => [tf.min(frames).dataSync()[0], tf.max(frames).dataSync()[0]]);
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThanOrEqual(1);
    tf.dispose([lat, frames]);
    expect(tf.memory().numTensors).toBe(before);
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3]);
    expect(steps.every((s) => s.total === 3 && s.expert === 'transformer')).toBe(true);
    expect(steps[0].timestep).toBe(999);
    for (let i = 1; i < 3; i++) {
      expect(steps[i].timestep).toBeLessThan(steps[i - 1].timestep);
      expect(steps[i].elapsedMs).toBeGreaterThanOrEqual(steps[i - 1].elapsedMs);
    }
  });

  it('guidance ≤ 1 runs the conditional pass only: equal to CFG with identical embeddings', async () => {
    const plain = await t2v.generate(opts({ latents: latents0, guidanceScale: 1, negativePromptEmbeds: undefined }));
    const same = await t2v.generate(opts({ latents: latents0, guidanceScale: 4, negativePromptEmbeds: cond }));
    const cfg = await t2v.generate(opts({ latents: latents0 }));
    expect(maxAbsDiff(plain, same)).toBeLessThan(1e-5);
    expect(maxAbsDiff(plain, cfg)).toBeGreaterThan(1e-3);
    tf.dispose([plain, same, cfg]);
  });

  it('an abort stops within one step, leaks nothing and rejects with AbortError', async () => {
    const before = tf.memory().numTensors;
    const ctrl = new AbortController();
    const seen: number[] = [];
    const run = t2v.generate(opts({ seed: 1, numInferenceSteps: 4, signal: ctrl.signal, onStep: ({ step }) => {
      seen.push(step);
      if (step === 1) setImmediate(() => ctrl.abort());
    } }));
    await expect(run).rejects.toThrow(AbortError);
    expect(seen).toEqual([1]);
    expect(tf.memory().numTensors).toBe(before);
    await expect(t2v.generate(opts({ signal: AbortSignal.abort() }))).rejects.toThrow(AbortError);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('bad arguments raise typed errors naming the argument (and the nearest valid value)', async () => {
    const before = tf.memory().numTensors;
    const err = (o: Partial<GenerateOptions>) => t2v.generate(opts(o)).then(() => undefined, (e: unknown) => e);
    const frames = await err({ numFrames: 7 });
    expect(frames).toBeInstanceOf(ShapeError);
    expect(frames).toMatchObject({ argument: 'numFrames', nearest: '9' });
    expect(await err({ numFrames: 0 })).toBeInstanceOf(ShapeError);
    expect(await err({ height: 40 })).toMatchObject({ argument: 'height', nearest: '48' });
    expect(await err({ width: 50 })).toMatchObject({ argument: 'width', nearest: '48' });
    for (const steps of [0, -2, 1.5]) expect(String(await err({ numInferenceSteps: steps }))).toMatch(/ConfigError: numInferenceSteps/);
    expect(String(await err({ guidanceScale2: 3 }))).toMatch(/ConfigError: guidanceScale2.*one transformer/);
    expect(String(await err({ promptEmbeds: undefined, prompt: 'a cat' }))).toMatch(/ConfigError:.*no text encoder.*promptEmbeds/);
    const narrow = tf.zeros([1, 8, 31]);
    const long = tf.zeros([1, 4, 3, 4, 6]);
    expect(await err({ promptEmbeds: narrow })).toMatchObject({ argument: 'promptEmbeds' });
    expect(await err({ latents: long })).toMatchObject({ argument: 'latents' });
    tf.dispose([narrow, long]);
    expect(await err({ seed: -4 })).toBeInstanceOf(ConfigError);
    expect(await err({ promptEmbeds: undefined })).toBeInstanceOf(ConfigError);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("A14B with residency 'active' keeps one expert loaded and matches 'both'", async () => {
    const both = await WanPipeline.fromPretrained(A14B);
    const active = await WanPipeline.fromPretrained(A14B, { residency: 'active' });
    try {
      expect(both.experts.map((e) => e.resident)).toEqual([true, true]);
      expect(active.experts.map((e) => e.resident)).toEqual([true, false]);
      const o = opts({ latents: latents0, numInferenceSteps: 4, guidanceScale: 4, guidanceScale2: 3 });
      const experts: string[] = [];
      const a = await both.generate({ ...o, onStep: (s) => experts.push(`${s.timestep}:${s.expert}:${s.guidanceScale}`) });
      const b = await active.generate(o);
      expect(experts).toEqual(['999:transformer:4', '900:transformer:4', '750:transformer_2:3', '500:transformer_2:3']);
      expect(active.experts.map((e) => e.resident)).toEqual([false, true]);
      expect(maxAbsDiff(a, b)).toBe(0);
      const c = await active.generate(o);
      expect(maxAbsDiff(a, c)).toBe(0);
      tf.dispose([a, b, c]);
    } finally {
      both.dispose();
      active.dispose();
    }
  });

  it('guidanceScale2 defaults to guidanceScale (as Diffusers) and changes the low-noise steps only', async () => {
    const p = await WanPipeline.fromPretrained(A14B);
    try {
      const scales = (o: Partial<GenerateOptions>) => p.resolve(opts(o));
      expect(scales({ guidanceScale: 6 }).guidanceScale2).toBe(6);
      expect(scales({ guidanceScale: 6, guidanceScale2: 2 }).guidanceScale2).toBe(2);
    } finally {
      p.dispose();
    }
  });
});

describe('from text (a tiny umT5 text encoder and tokenizer)', () => {
  let p: WanPipeline;
  beforeAll(async () => {
    p = await WanPipeline.fromPretrained(assembleTinyModel(path.join(tmp, 'tiny')));
  });
  afterAll(() => p.dispose());

  it('encodeText gives [B, 512, textDim] with zeros after each prompt', async () => {
    const e = await p.encodeText(['a red fox', 'a very long prompt about a small blue bird flying over a quiet lake at dawn']);
    expect(e.shape).toEqual([2, 512, 32]);
    const rows = tf.tidy(() => tf.sum(tf.abs(e), 2).arraySync() as number[][]);
    e.dispose();
    const used = rows.map((r) => r.findIndex((v) => v === 0));
    expect(used[0]).toBeGreaterThan(1);
    expect(used[1]).toBeGreaterThan(used[0]);
    rows.forEach((r, i) => expect(r.slice(used[i]).every((v) => v === 0)).toBe(true));
  });

  it('embeddings stay on the device: encoding a prompt, new or cached, reads no float tensor back', async () => {
    const proto = tf.Tensor.prototype;
    const original = { data: proto.data, dataSync: proto.dataSync };
    const reads: string[] = [];
    proto.data = function (this: tf.Tensor, ...args: []) {
      if (this.dtype === 'float32') reads.push(`data [${this.shape}]`);
      return original.data.apply(this, args);
    } as typeof proto.data;
    proto.dataSync = function (this: tf.Tensor, ...args: []) {
      if (this.dtype === 'float32') reads.push(`dataSync [${this.shape}]`);
      return original.dataSync.apply(this, args);
    } as typeof proto.dataSync;
    let made: tf.Tensor[] = [];
    try {
      made = [await p.encodeText('a small green frog on a leaf'), await p.encodeText(['a small green frog on a leaf', 'a heron'])];
    } finally {
      Object.assign(proto, original);
    }
    expect(reads).toEqual([]);
    expect(tf.tidy(() => maxAbsDiff(made[0], tf.slice(made[1], [0, 0, 0], [1, -1, -1])))).toBe(0);
    tf.dispose(made);
  });

  it('a prompt gives the same video as its embeddings, the negative prompt defaulting to ""', async () => {
    // the text encoder's cache keeps one tensor per prompt it encodes
    const cache = (p.textEncoder as WanTextEncoder).cache!;
    const before = tf.memory().numTensors - cache.size;
    const fromText = await p.generate({ prompt: 'a red fox', seed: 9 });
    const cond = await p.encodeText('a red fox');
    const empty = await p.encodeText('');
    const fromEmbeds = await p.generate({ promptEmbeds: cond, negativePromptEmbeds: empty, seed: 9 });
    const other = await p.generate({ prompt: 'a red fox', negativePrompt: 'blurry', seed: 9 });
    expect(maxAbsDiff(fromText, fromEmbeds)).toBe(0);
    expect(maxAbsDiff(fromText, other)).toBeGreaterThan(1e-4);
    const video = await p.textToVideo({ prompt: 'a red fox', seed: 9 });
    expect(video).toMatchObject({ numFrames: 5, height: 32, width: 48, fps: 8, numInferenceSteps: 2, seed: 9 });
    expect(video.frames.shape).toEqual([1, 5, 32, 48, 3]);
    tf.dispose([fromText, cond, empty, fromEmbeds, other, video.frames]);
    expect(tf.memory().numTensors - cache.size).toBe(before);
  });
});

describe('model folders', () => {
  it('a missing or truncated checkpoint raises CheckpointError naming the file', async () => {
    const missing = copyFixture(T2V, 'missing-vae');
    fs.rmSync(path.join(missing, 'vae', 'diffusion_pytorch_model.safetensors'));
    await expect(WanPipeline.fromPretrained(missing)).rejects.toThrow(CheckpointError);
    await expect(WanPipeline.fromPretrained(missing)).rejects.toThrow(/vae/);

    const truncated = copyFixture(T2V, 'truncated');
    const file = path.join(truncated, 'transformer', 'diffusion_pytorch_model.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 100);
    const e = await WanPipeline.fromPretrained(truncated).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CheckpointError);
    expect(String(e)).toContain(file);

    const noExpert2 = copyFixture(A14B, 'no-expert-2');
    fs.rmSync(path.join(noExpert2, 'transformer_2'), { recursive: true });
    await expect(WanPipeline.fromPretrained(noExpert2)).rejects.toThrow(/transformer_2.*missing/);
    await expect(WanPipeline.fromPretrained(path.join(tmp, 'nowhere'))).rejects.toThrow(CheckpointError);
  });

  it('without a VAE: latents only, factors from vae/config.json, decode refused', async () => {
    const p = await WanPipeline.fromPretrained(T2V, { loadVae: false });
    try {
      expect([p.vae, p.vaeScaleFactorSpatial, p.vaeScaleFactorTemporal]).toEqual([undefined, 8, 4]);
      const lat = await p.generate(opts({ seed: 2, numInferenceSteps: 1 }));
      expect(lat.shape).toEqual([1, 4, 2, 4, 6]);
      expect(() => p.decodeLatents(lat)).toThrow(ConfigError);
      lat.dispose();
    } finally {
      p.dispose();
    }
  });

  it('reads the Diffusers layout: components, boundary, scheduler, defaults', () => {
    const a = readModelIndex(A14B);
    expect(a).toMatchObject({ layout: 'diffusers', boundaryRatio: 0.875, expandTimesteps: false, numTrainTimesteps: 1000 });
    expect(a.transformer2).toBe(path.join(A14B, 'transformer_2'));
    expect([a.textEncoder, a.tokenizer]).toEqual([undefined, undefined]);
    expect(a.defaults).toMatchObject({ numInferenceSteps: 40, guidanceScale: 4, guidanceScale2: 3 });
    expect(readModelIndex(T2V)).toMatchObject({ boundaryRatio: null, transformer2: undefined, defaults: { guidanceScale: 5, numInferenceSteps: 50 } });
  });

  it('reads the original Wan layout (A14B experts, VAE file, T5 pickle) and wan_tfjs.json overrides', async () => {
    const root = path.join(tmp, 'wan-a14b');
    for (const d of ['high_noise_model', 'low_noise_model', 'google/umt5-xxl']) fs.mkdirSync(path.join(root, d), { recursive: true });
    fs.writeFileSync(path.join(root, 'Wan2.1_VAE.pth'), 'pickle');
    fs.writeFileSync(path.join(root, 'models_t5_umt5-xxl-enc-bf16.pth'), 'pickle');
    fs.writeFileSync(path.join(root, 'wan_tfjs.json'), JSON.stringify({ height: 64, width: 96, num_frames: 9 }));
    const m = readModelIndex(root);
    expect(m).toMatchObject({ layout: 'wan', boundaryRatio: 0.875, transformer: path.join(root, 'high_noise_model'), transformer2: path.join(root, 'low_noise_model') });
    expect(m.scheduler).toMatchObject({ _class_name: 'FlowUniPCMultistepScheduler', shift: 12 });
    expect(m.defaults).toMatchObject({ height: 64, width: 96, numFrames: 9, numInferenceSteps: 40, shift: 12 });
    expect(m.vae).toBe(path.join(root, 'Wan2.1_VAE.pth'));
    expect(m.tokenizer).toBe(path.join(root, 'google', 'umt5-xxl'));
    await expect(WanPipeline.fromPretrained(root)).rejects.toThrow(/Wan2\.1_VAE\.pth.*convert it to safetensors/);

    fs.rmSync(path.join(root, 'low_noise_model'), { recursive: true });
    expect(() => readModelIndex(root)).toThrow(/low_noise_model/);
  });

  it('reads image-to-video folders: Diffusers WanImageToVideoPipeline and original i2v experts; refuses a CLIP image encoder', () => {
    const diff = copyFixture(A14B, 'i2v-a14b');
    const index = JSON.parse(fs.readFileSync(path.join(diff, 'model_index.json'), 'utf-8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(diff, 'model_index.json'), JSON.stringify({ ...index, _class_name: 'WanImageToVideoPipeline', boundary_ratio: 0.9, image_encoder: [null, null] }));
    expect(readModelIndex(diff)).toMatchObject({ className: 'WanImageToVideoPipeline', boundaryRatio: 0.9, defaults: { numInferenceSteps: 40, guidanceScale: 3.5, guidanceScale2: 3.5 } });
    fs.writeFileSync(path.join(diff, 'model_index.json'), JSON.stringify({ ...index, _class_name: 'WanImageToVideoPipeline', image_encoder: ['transformers', 'CLIPVisionModel'] }));
    expect(() => readModelIndex(diff)).toThrow(/CLIP image encoder .*Wan2\.1-I2V/);
    fs.writeFileSync(path.join(diff, 'model_index.json'), JSON.stringify({ ...index, _class_name: 'WanVACEPipeline' }));
    expect(() => readModelIndex(diff)).toThrow(/_class_name is "WanVACEPipeline"/);

    const root = path.join(tmp, 'wan-i2v-a14b');
    for (const d of ['high_noise_model', 'low_noise_model']) fs.mkdirSync(path.join(root, d), { recursive: true });
    fs.writeFileSync(path.join(root, 'high_noise_model', 'config.json'), JSON.stringify({ _class_name: 'WanModel', model_type: 'i2v', in_dim: 36, out_dim: 16 }));
    const m = readModelIndex(root);
    expect(m).toMatchObject({ layout: 'wan', boundaryRatio: 0.9, defaults: { shift: 5, guidanceScale: 3.5, guidanceScale2: 3.5 } });
    expect(m.scheduler).toMatchObject({ shift: 5 });
    fs.writeFileSync(path.join(root, 'high_noise_model', 'config.json'), JSON.stringify({ _class_name: 'WanModel', in_dim: 36, out_dim: 16 }));
    expect(readModelIndex(root)).toMatchObject({ boundaryRatio: 0.9, defaults: { shift: 5 } });
    fs.writeFileSync(path.join(root, 'high_noise_model', 'config.json'), JSON.stringify({ model_type: 'flf2v' }));
    expect(() => readModelIndex(root)).toThrow(/model_type "flf2v" is not supported here \(t2v, i2v\)/);
    const single = path.join(tmp, 'wan-i2v-single');
    fs.mkdirSync(single, { recursive: true });
    fs.writeFileSync(path.join(single, 'config.json'), JSON.stringify({ _class_name: 'WanModel', model_type: 'i2v', dim: 8, num_heads: 2, in_dim: 36, out_dim: 16 }));
    expect(() => readModelIndex(single)).toThrow(/single i2v model \(Wan2\.1-I2V\) conditions on a CLIP image encoder/);
  });

  it('loads a single original-layout DiT (WanModel config beside its safetensors)', async () => {
    const root = copyFixture(path.join(fixtureDir('wan-transformer-t2v'), 'original'), 'wan-single');
    const m = readModelIndex(root);
    expect(m).toMatchObject({ layout: 'wan', boundaryRatio: null, transformer: path.join(root, 'diffusion_pytorch_model.safetensors'), defaults: { shift: 5 } });
    const p = await WanPipeline.fromPretrained(root);
    try {
      expect([p.latentChannels, p.textDim, p.vae]).toEqual([16, 32, undefined]);
    } finally {
      p.dispose();
    }
  });
});
