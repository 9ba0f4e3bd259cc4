import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { AutoencoderKLWan } from '../layers/autoencoder-kl-wan.js';
import type { CausalCache } from '../layers/wan-causal-conv3d.js';
import { AbortError } from '../src/errors.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { hostToTensor } from '../weights/load.js';
import { fixtureDir } from './helpers/fixtures.js';

// A random-weight Wan2.1-layout VAE (base width 8, four up blocks) whose decoder takes a measurable
// time (about a second on the cpu backend) for one chunk: one latent frame of 8×8, a 64×64 frame.
// The abort is checked before each stage of the decoder (conv_in, mid block, each up block, conv_out).
let vae: AutoencoderKLWan;
let z: tf.Tensor;

// The tiny t2v pipeline fixture (a 2.1-layout VAE with four up blocks), for the path textToVideo takes.
const T2V = fixtureDir('pipeline-t2v');
let pipe: WanPipeline;
let cond: tf.Tensor;
let uncond: tf.Tensor;

beforeAll(async () => {
  await tf.setBackend('cpu');
  vae = AutoencoderKLWan.withRandomWeights({ baseDim: 8 }, { seed: 3 });
  // z: [1, zDim, 1, 8, 8]: one latent frame, so the whole decode is one chunk
  z = tf.randomNormal([1, vae.config.zDim, 1, 8, 8], 0, 1, 'float32', 4);
  pipe = await WanPipeline.fromPretrained(T2V);
  const io = SafetensorsFile.open(path.join(T2V, 'io.safetensors'));
  try {
    cond = hostToTensor(io.read('input.prompt_embeds'));
    uncond = hostToTensor(io.read('input.negative_prompt_embeds'));
  } finally {
    io.close();
  }
});

afterAll(() => {
  tf.dispose([z, cond, uncond]);
  vae.dispose();
  pipe.dispose();
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** Spies on each up block of `model`'s decoder; `onBlock(i)` runs after up block i returned. Returns the calls per up block. */
function spyUpBlocks(model: AutoencoderKLWan, onBlock: (i: number) => void): number[] {
  const calls = model.decoder.upBlocks.map(() => 0);
  model.decoder.upBlocks.forEach((block, i) => {
    const forward = block.forward.bind(block);
    vi.spyOn(block, 'forward').mockImplementation((x: tf.Tensor, cache?: CausalCache) => {
      calls[i]++;
      const y = forward(x, cache);
      onBlock(i);
      return y;
    });
  });
  return calls;
}

/** An abort from a timer once up block 0 has run, as a SIGINT handler would send it mid-chunk. */
function abortAfterUpBlock0(model: AutoencoderKLWan): { signal: AbortSignal; calls: number[] } {
  const ctrl = new AbortController();
  const calls = spyUpBlocks(model, (i) => {
    if (i === 0 && calls[0] === 1) setTimeout(() => ctrl.abort(), 0);
  });
  return { signal: ctrl.signal, calls };
}

describe('abort inside one VAE decode chunk', () => {
  it('decodeAsync gives exactly what decode gives, whole and tiled', async () => {
    const before = tf.memory().numTensors;
    const a = vae.decode(z);
    const b = await vae.decodeAsync(z);
    const s = vae.spatialCompression;
    const tiledA = vae.decode(z, { tileSize: 4 * s, tileOverlap: 0 });
    const tiledB = await vae.decodeAsync(z, { tileSize: 4 * s, tileOverlap: 0 });
    expect(b.shape).toEqual([1, 3, 1, 64, 64]);
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    expect(Array.from(tiledB.dataSync())).toEqual(Array.from(tiledA.dataSync()));
    tf.dispose([a, b, tiledA, tiledB]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('decodeAsync: an abort from a timer during up block 0 of a single-chunk decode rejects with AbortError before up block 1, well before the decode would end, leaking nothing', async () => {
    let t = performance.now();
    (await vae.decodeAsync(z)).dispose();
    const whole = performance.now() - t;
    const { signal, calls } = abortAfterUpBlock0(vae);
    const before = tf.memory().numTensors;
    t = performance.now();
    await expect(vae.decodeAsync(z, { signal })).rejects.toBeInstanceOf(AbortError);
    const elapsed = performance.now() - t;
    // The up blocks grow 2× in resolution each; up block 0 is under a fifth of the decode.
    expect(elapsed).toBeLessThan(whole / 2);
    expect(calls).toEqual([1, 0, 0, 0]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('decodeAsync, tiled: the same abort stops within the first tile', async () => {
    const { signal, calls } = abortAfterUpBlock0(vae);
    const s = vae.spatialCompression;
    const before = tf.memory().numTensors;
    await expect(vae.decodeAsync(z, { tileSize: 4 * s, tileOverlap: 0, signal })).rejects.toBeInstanceOf(AbortError);
    expect(calls).toEqual([1, 0, 0, 0]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('textToVideo: an abort from a timer while the VAE decodes its first chunk stops there, rejects with AbortError and leaks nothing', async () => {
    if (!(pipe.vae instanceof AutoencoderKLWan)) throw new Error('the fixture pipeline should load an AutoencoderKLWan');
    const { signal, calls } = abortAfterUpBlock0(pipe.vae);
    const before = tf.memory().numTensors;
    const run = pipe.textToVideo({ promptEmbeds: cond, negativePromptEmbeds: uncond, height: 32, width: 48, numFrames: 5, numInferenceSteps: 2, guidanceScale: 4, seed: 1, signal });
    await expect(run).rejects.toBeInstanceOf(AbortError);
    expect(calls).toEqual([1, 0, 0, 0]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
