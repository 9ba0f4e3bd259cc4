import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../src/errors.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { randnHost } from '../src/random.js';
import type { WanTextEncoder } from '../src/text/text-encoder.js';
import { maxAbsDiff } from './helpers/compare.js';
import { assembleTinyModel } from './helpers/tiny-model.js';

let tmp: string;
let pipe: WanPipeline;

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-seeds-'));
  pipe = await WanPipeline.fromPretrained(assembleTinyModel(path.join(tmp, 'tiny')));
});

afterAll(() => {
  pipe.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const PROMPTS = ['a red circle moving right', 'a blue square', 'waves on a beach'];
const SEEDS = [7, 1234, 99];
const CALL = { numFrames: 5, height: 32, width: 48, numInferenceSteps: 2, guidanceScale: 3, negativePrompt: 'blurry' };

describe('seeds: one seed per prompt of a batch', () => {
  it('sample i of a batch equals the single call of prompt i with seed i', async () => {
    // the text encoder's cache keeps one tensor per prompt it encodes
    const cache = (pipe.textEncoder as WanTextEncoder).cache!;
    const before = tf.memory().numTensors - cache.size;
    const batch = await pipe.textToVideo({ ...CALL, prompt: PROMPTS, seeds: SEEDS });
    expect(batch.frames.shape[0]).toBe(3);
    expect(batch.seed).toBe(SEEDS[0]);
    for (let i = 0; i < PROMPTS.length; i++) {
      const single = await pipe.textToVideo({ ...CALL, prompt: PROMPTS[i], seed: SEEDS[i] });
      const sample = tf.slice(batch.frames, [i], [1]);
      expect(maxAbsDiff(sample, single.frames)).toBeLessThan(1e-5);
      tf.dispose([sample, single.frames]);
    }
    batch.frames.dispose();
    expect(tf.memory().numTensors - cache.size).toBe(before);
  });

  it("the noise of sample i is randnHost's of one sample with seed i", () => {
    const call = pipe.resolve({ ...CALL, prompt: PROMPTS.slice(0, 2), seeds: [5, 6] });
    const noise = call.noise();
    const [, ...sample] = call.latentShape;
    const n = sample.reduce((a, d) => a * d, 1);
    const data = noise.dataSync();
    expect(Array.from(data.subarray(n, 2 * n))).toEqual(Array.from(randnHost([1, ...sample], 6)));
    expect(Array.from(data.subarray(0, n))).toEqual(Array.from(randnHost([1, ...sample], 5)));
    noise.dispose();
  });

  it('refuses seeds with seed, a count other than the batch, a bad seed, or latents', () => {
    expect(() => pipe.resolve({ ...CALL, prompt: PROMPTS, seeds: SEEDS, seed: 1 })).toThrow(ConfigError);
    expect(() => pipe.resolve({ ...CALL, prompt: PROMPTS, seeds: [1, 2] })).toThrow(/seeds: got 2 seeds for a batch of 3/);
    expect(() => pipe.resolve({ ...CALL, prompt: PROMPTS, seeds: [1, -2, 3] })).toThrow(/seeds\[1\]: got -2/);
    const latents = tf.zeros([1, 4, 2, 4, 6]);
    expect(() => pipe.resolve({ ...CALL, prompt: PROMPTS[0], seeds: [1], latents })).toThrow(ConfigError);
    latents.dispose();
  });
});
