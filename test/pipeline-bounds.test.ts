import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, NonFiniteError, OutOfMemoryError } from '../src/errors.js';
import type { GenerateOptions } from '../src/pipeline/generate-options.js';
import type { PipelineTransformer } from '../src/pipeline/pipeline-components.js';
import { memoryBudget } from '../src/pipeline/memory-budget.js';
import { estimateMemory } from '../src/pipeline/memory-estimate.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { hostToTensor } from '../weights/load.js';
import { fixtureDir } from './helpers/fixtures.js';

// Issue 20, items 3 and 4: what a call would allocate is checked before it allocates, and bad
// tensors are refused before they reach the model.
const T2V = fixtureDir('pipeline-t2v');
const TOY = path.resolve('models/toy');

/** A denoiser that passes through to `inner`, or fails on the `at`-th forward (1-based) as told. */
class Faulty implements PipelineTransformer {
  calls = 0;
  constructor(
    readonly inner: PipelineTransformer,
    readonly at: number,
    readonly fault: 'nan' | 'throw',
  ) {}
  get config() {
    return this.inner.config;
  }
  forward(x: tf.Tensor, timestep: tf.Tensor, ctx: tf.Tensor): tf.Tensor {
    this.calls++;
    if (this.calls >= this.at && this.fault === 'throw') throw new Error('device lost');
    const v = this.inner.forward(x, timestep, ctx);
    if (this.calls < this.at) return v;
    return tf.tidy(() => tf.mul(v, Number.NaN));
  }
  dispose(): void {}
}

let t2v: WanPipeline;
let cond: tf.Tensor;
let uncond: tf.Tensor;

beforeAll(async () => {
  await tf.setBackend('wasm');
  t2v = await WanPipeline.fromPretrained(T2V);
  const io = SafetensorsFile.open(path.join(T2V, 'io.safetensors'));
  cond = hostToTensor(io.read('input.prompt_embeds'));
  uncond = hostToTensor(io.read('input.negative_prompt_embeds'));
  io.close();
});

afterAll(() => {
  tf.dispose([cond, uncond]);
  t2v.dispose();
});

function opts(overrides: Partial<GenerateOptions> = {}): GenerateOptions {
  return { promptEmbeds: cond, negativePromptEmbeds: uncond, height: 32, width: 48, numFrames: 5, numInferenceSteps: 2, guidanceScale: 4, seed: 1, ...overrides };
}

/** The error a call rejects with, its time, and whether it left tensors behind. */
async function failure(call: () => Promise<unknown>): Promise<{ error: unknown; ms: number; leaked: number }> {
  const before = tf.memory().numTensors;
  const start = performance.now();
  const error = await call().then(() => undefined, (e: unknown) => e);
  return { error, ms: performance.now() - start, leaked: tf.memory().numTensors - before };
}

describe('bounds on steps and sizes', () => {
  it('numInferenceSteps 1e9 is refused at once, naming the argument and the limit', async () => {
    const { error, ms, leaked } = await failure(() => t2v.generate(opts({ numInferenceSteps: 1e9 })));
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toMatch(/numInferenceSteps: got 1000000000, expected an integer in \[1, 1000\]/);
    expect(ms).toBeLessThan(1000);
    expect(leaked).toBe(0);
  });

  it('5,000,001 frames are refused before any allocation, naming numFrames, the memory and what fits', async () => {
    const { error, ms, leaked } = await failure(() => t2v.textToVideo(opts({ numFrames: 5_000_001 })));
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect(error).toMatchObject({ argument: 'numFrames' });
    const e = error as OutOfMemoryError;
    expect(e.neededBytes).toBeGreaterThan(e.availableBytes);
    expect(e.message).toMatch(/^numFrames: 5000001 frames at 48×32 need at least [\d.]+ [KMGTPE]iB \(.*\); the wasm backend has [\d.]+ GiB free; at most \d+ frames could fit$/);
    expect(ms).toBeLessThan(1000);
    expect(leaked).toBe(0);
  });

  it('100000×100000 is refused naming the size (no RangeError)', async () => {
    const { error, ms, leaked } = await failure(() => t2v.generate(opts({ height: 100_000, width: 100_000 })));
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect(error).toMatchObject({ argument: 'width×height' });
    expect(String(error)).toMatch(/width×height: 100000×100000 need at least .*; at most about \d+×\d+ could fit$/);
    expect(ms).toBeLessThan(1000);
    expect(leaked).toBe(0);
  });

  it('the toy model at 4096×4096 on wasm is refused before allocating; dispose() stays safe', async () => {
    const toy = await WanPipeline.fromPretrained(TOY);
    const { error, ms, leaked } = await failure(() => toy.textToVideo({ prompt: 'a red circle moving right', height: 4096, width: 4096, seed: 1 }));
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect(String(error)).toMatch(/width×height: 4096×4096 need at least [\d.]+ [GTP]iB \(.*\); the wasm backend has [\d.]+ GiB free; at most about \d+×\d+ could fit$/);
    expect(ms).toBeLessThan(1000);
    expect(leaked).toBe(0);
    expect(() => toy.dispose()).not.toThrow();
    expect(() => toy.dispose()).not.toThrow();
  });

  it('a batch too large names the prompts', async () => {
    const many = tf.zeros([100_000, 8, 32]);
    const { error } = await failure(() => t2v.generate(opts({ promptEmbeds: many, negativePromptEmbeds: undefined, guidanceScale: 1, height: 512, width: 512 })));
    many.dispose();
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect(error).toMatchObject({ argument: 'promptEmbeds' });
  });

  it('a failure inside the loop frees everything, and the pipeline still works and disposes', async () => {
    const faulty = new Faulty(t2v.experts[0].current!, 3, 'throw');
    const p = new WanPipeline({ transformer: faulty, vae: t2v.vae, scheduler: t2v.scheduler });
    const { error, leaked } = await failure(() => p.textToVideo(opts({ numInferenceSteps: 3 })));
    expect(String(error)).toMatch(/device lost/);
    expect(leaked).toBe(0);
    const ok = await t2v.generate(opts());
    ok.dispose();
  });
});

describe('the memory estimate', () => {
  /** Peak bytes the engine held above what it held before `f` (tf.profile's snapshot after every kernel). */
  async function peak(f: () => Promise<void>): Promise<number> {
    const base = tf.memory().numBytes;
    const info = await tf.profile(async () => {
      await f();
      return [] as tf.Tensor[];
    });
    return info.peakBytes - base;
  }

  it('is a lower bound of the measured peak, within 3× on the attention-bound toy model (wasm)', async () => {
    const toy = await WanPipeline.fromPretrained(TOY);
    const embeds = tf.zeros([1, 16, toy.textDim]);
    try {
      for (const [pipe, numFrames, height, width] of [[toy, 5, 64, 64], [toy, 5, 96, 128], [t2v, 9, 64, 96]] as const) {
        const o = { promptEmbeds: embeds.shape[2] === pipe.textDim ? embeds : cond, negativePromptEmbeds: undefined, guidanceScale: 1, numFrames, height, width, numInferenceSteps: 1, seed: 1 };
        let latents: tf.Tensor | undefined;
        const generated = await peak(async () => {
          latents = await pipe.generate(o);
        });
        const decoded = await peak(async () => pipe.decodeLatents(latents!).dispose());
        latents!.dispose();
        const size = { batch: 1, numFrames, height, width };
        const budget = memoryBudget();
        const denoising = estimateMemory(pipe.spec, size, { decode: false, task: 'text-to-video' }, budget).bytes;
        const decoding = estimateMemory({ ...pipe.spec, heads: 0, innerDim: 0, ffnDim: 0, latentChannels: 0 }, size, { decode: true, task: 'text-to-video' }, budget).bytes;
        expect(denoising, `denoising ${height}×${width}`).toBeLessThanOrEqual(generated);
        expect(decoding, `decoding ${height}×${width}`).toBeLessThanOrEqual(decoded);
        if (pipe === toy) expect(Math.max(generated / denoising, decoded / decoding)).toBeLessThan(3);
      }
    } finally {
      embeds.dispose();
      toy.dispose();
    }
  });
});

describe('bad tensors', () => {
  it('int32 or bool latents and promptEmbeds are refused, naming the argument', async () => {
    const cases: Array<[keyof GenerateOptions, tf.Tensor]> = [
      ['latents', tf.zeros([1, 4, 2, 4, 6], 'int32')],
      ['latents', tf.zeros([1, 4, 2, 4, 6], 'bool')],
      ['promptEmbeds', tf.zeros([1, 8, 32], 'int32')],
      ['negativePromptEmbeds', tf.zeros([1, 8, 32], 'bool')],
    ];
    for (const [name, t] of cases) {
      const { error, leaked } = await failure(() => t2v.generate(opts({ [name]: t })));
      expect(error, name).toBeInstanceOf(ConfigError);
      expect(String(error)).toMatch(new RegExp(`${name}: got an? ${t.dtype} tensor, expected float32`));
      expect(leaked).toBe(0);
    }
    tf.dispose(cases.map(([, t]) => t));
  });

  it('NaN or infinite inputs are refused before the first step, naming the argument', async () => {
    const nan = tf.fill([1, 4, 2, 4, 6], Number.NaN);
    const inf = tf.tidy(() => tf.concat([tf.zeros([1, 7, 32]), tf.fill([1, 1, 32], Number.POSITIVE_INFINITY)], 1));
    const faulty = new Faulty(t2v.experts[0].current!, Infinity, 'nan');
    const p = new WanPipeline({ transformer: faulty, vae: t2v.vae, scheduler: t2v.scheduler });
    for (const [name, o] of [['latents', { latents: nan }], ['promptEmbeds', { promptEmbeds: inf }], ['negativePromptEmbeds', { negativePromptEmbeds: inf }]] as const) {
      const { error, leaked } = await failure(() => p.generate(opts(o)));
      expect(error, name).toBeInstanceOf(NonFiniteError);
      expect(error).toMatchObject({ argument: name, step: undefined });
      expect(String(error)).toMatch(new RegExp(`${name}: holds NaN or infinite values`));
      expect(leaked).toBe(0);
    }
    expect(faulty.calls).toBe(0);
    tf.dispose([nan, inf]);
  });

  it('checkFinite (a debug option) checks the latents after each step and names the first bad one', async () => {
    const faulty = new Faulty(t2v.experts[0].current!, 3, 'nan');
    const p = new WanPipeline({ transformer: faulty, vae: t2v.vae, scheduler: t2v.scheduler });
    const { error, leaked } = await failure(() => p.generate(opts({ numInferenceSteps: 4, checkFinite: true })));
    expect(error).toBeInstanceOf(NonFiniteError);
    expect(error).toMatchObject({ argument: 'latents', step: 2 });
    expect(String(error)).toMatch(/latents: hold NaN or infinite values after step 2 of 4 \(t=\d+, transformer\)/);
    expect(leaked).toBe(0);
    faulty.calls = 0;
    const unchecked = await p.generate(opts({ numInferenceSteps: 4 }));
    expect(Number.isNaN(unchecked.dataSync()[0])).toBe(true);
    unchecked.dispose();
  });
});
