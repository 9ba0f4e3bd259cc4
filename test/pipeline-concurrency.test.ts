import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError } from '../src/errors.js';
import type { GenerateOptions } from '../src/pipeline/generate-options.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { hostToTensor } from '../weights/load.js';
import { fixtureDir } from './helpers/fixtures.js';
import { maxAbsDiff } from './helpers/compare.js';

// Issue 20, item 2: calls on one pipeline are independent; running them at once gives exactly
// what running them one after another gives.
const T2V = fixtureDir('pipeline-t2v');
const A14B = fixtureDir('pipeline-a14b');

let cond: tf.Tensor;
let uncond: tf.Tensor;

beforeAll(async () => {
  await tf.setBackend('wasm');
  const io = SafetensorsFile.open(path.join(T2V, 'io.safetensors'));
  cond = hostToTensor(io.read('input.prompt_embeds'));
  uncond = hostToTensor(io.read('input.negative_prompt_embeds'));
  io.close();
});

afterAll(() => tf.dispose([cond, uncond]));

function opts(seed: number, overrides: Partial<GenerateOptions> = {}): GenerateOptions {
  return { promptEmbeds: cond, negativePromptEmbeds: uncond, height: 32, width: 48, numFrames: 5, numInferenceSteps: 4, guidanceScale: 4, seed, ...overrides };
}

describe('concurrent calls on one WanPipeline', () => {
  it('3 textToVideo calls at once equal the 3 sequential results exactly, with no tensor leaked', async () => {
    const pipe = await WanPipeline.fromPretrained(T2V);
    try {
      const seeds = [1, 2, 3];
      const sequential: tf.Tensor[] = [];
      for (const s of seeds) sequential.push((await pipe.textToVideo(opts(s))).frames);
      const before = tf.memory().numTensors;
      const concurrent = await Promise.all(seeds.map((s) => pipe.textToVideo(opts(s))));
      concurrent.forEach((r, i) => {
        expect(r.seed).toBe(seeds[i]);
        expect(maxAbsDiff(r.frames, sequential[i])).toBe(0);
      });
      tf.dispose(concurrent.map((r) => r.frames));
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose(sequential);
    } finally {
      pipe.dispose();
    }
  });

  it('two experts with residency "active": concurrent generate calls equal the sequential ones', async () => {
    const pipe = await WanPipeline.fromPretrained(A14B, { residency: 'active' });
    try {
      const o = (seed: number) => opts(seed, { guidanceScale2: 3 });
      const a = await pipe.generate(o(5));
      const b = await pipe.generate(o(6));
      const before = tf.memory().numTensors;
      const [c, d] = await Promise.all([pipe.generate(o(5)), pipe.generate(o(6))]);
      expect(maxAbsDiff(c, a)).toBe(0);
      expect(maxAbsDiff(d, b)).toBe(0);
      tf.dispose([c, d]);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([a, b]);
    } finally {
      pipe.dispose();
    }
  });

  it('pipelines sharing one scheduler do not corrupt each other', async () => {
    const pipe = await WanPipeline.fromPretrained(T2V);
    const twin = new WanPipeline({ transformer: pipe.experts[0].current!, vae: pipe.vae, scheduler: pipe.scheduler });
    try {
      const a = await pipe.generate(opts(7));
      const b = await pipe.generate(opts(8));
      const [c, d] = await Promise.all([pipe.generate(opts(7)), twin.generate(opts(8))]);
      expect(maxAbsDiff(c, a)).toBe(0);
      expect(maxAbsDiff(d, b)).toBe(0);
      tf.dispose([a, b, c, d]);
    } finally {
      pipe.dispose();
    }
  });

  it('a call aborted while it waits for its turn rejects at once and leaves the others intact', async () => {
    const pipe = await WanPipeline.fromPretrained(T2V);
    try {
      const alone = await pipe.generate(opts(9));
      const before = tf.memory().numTensors;
      const ctrl = new AbortController();
      const first = pipe.generate(opts(9));
      const waiting = pipe.generate(opts(10, { signal: ctrl.signal }));
      ctrl.abort();
      await expect(waiting).rejects.toThrow(AbortError);
      const out = await first;
      expect(maxAbsDiff(out, alone)).toBe(0);
      tf.dispose([out]);
      expect(tf.memory().numTensors).toBe(before);
      alone.dispose();
    } finally {
      pipe.dispose();
    }
  });
});
