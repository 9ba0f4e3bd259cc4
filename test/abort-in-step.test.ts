import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { AutoencoderKLWan } from '../layers/autoencoder-kl-wan.js';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { AbortError } from '../src/errors.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { hostToTensor } from '../weights/load.js';
import { fixtureDir } from './helpers/fixtures.js';

// The tiny t2v pipeline fixture: a 2-block DiT and a 2.1-layout VAE; an abort is checked before each
// block and before each VAE decoder chunk, so these tests stop after the first one and count.
const T2V = fixtureDir('pipeline-t2v');

let pipe: WanPipeline;
let dit: WanTransformer3DModel;
let vae: AutoencoderKLWan;
let cond: tf.Tensor;
let uncond: tf.Tensor;

beforeAll(async () => {
  await tf.setBackend('cpu');
  pipe = await WanPipeline.fromPretrained(T2V);
  const model = await pipe.experts[0].get();
  if (!(model instanceof WanTransformer3DModel)) throw new Error('the fixture pipeline should load a WanTransformer3DModel');
  dit = model;
  if (!(pipe.vae instanceof AutoencoderKLWan)) throw new Error('the fixture pipeline should load an AutoencoderKLWan');
  vae = pipe.vae;
  const io = SafetensorsFile.open(path.join(T2V, 'io.safetensors'));
  try {
    cond = hostToTensor(io.read('input.prompt_embeds'));
    uncond = hostToTensor(io.read('input.negative_prompt_embeds'));
  } finally {
    io.close();
  }
});

afterAll(() => {
  tf.dispose([cond, uncond]);
  pipe.dispose();
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** Spies on every block's forward; `onBlock(i)` runs after block i returned. Returns the calls per block. */
function spyBlocks(onBlock: (i: number) => void): number[] {
  const calls = dit.blocks.map(() => 0);
  dit.blocks.forEach((block, i) => {
    const forward = block.forward.bind(block);
    vi.spyOn(block, 'forward').mockImplementation((...args: Parameters<typeof block.forward>) => {
      calls[i]++;
      const y = forward(...args);
      onBlock(i);
      return y;
    });
  });
  return calls;
}

describe('abort inside a transformer forward', () => {
  it('has more than one block (so stopping after the first is observable)', () => {
    expect(dit.blocks.length).toBeGreaterThan(1);
  });

  it('forward: a signal aborted during block 0 stops before block 1, throws AbortError and leaks nothing', () => {
    const ctrl = new AbortController();
    const calls = spyBlocks((i) => {
      if (i === 0) ctrl.abort();
    });
    // hidden [1, C, 1, 2·ph, 2·pw]: 4 tokens; timestep [1]
    const [, ph, pw] = dit.config.patchSize;
    const hidden = tf.randomNormal([1, dit.config.inChannels, 1, 2 * ph, 2 * pw]);
    const timestep = tf.tensor1d([500]);
    const before = tf.memory().numTensors;
    expect(() => dit.forward(hidden, timestep, cond, { signal: ctrl.signal })).toThrow(AbortError);
    expect(tf.memory().numTensors).toBe(before);
    expect(calls).toEqual([1, ...calls.slice(1).map(() => 0)]);
    tf.dispose([hidden, timestep]);
  });

  it('a generation aborted by a timer while block 0 runs (as a SIGINT handler would) stops within one block', async () => {
    const ctrl = new AbortController();
    // The timer fires in the event loop turn after block 0, before block 1 would start.
    const calls = spyBlocks((i) => {
      if (i === 0) setTimeout(() => ctrl.abort(), 0);
    });
    const before = tf.memory().numTensors;
    const run = pipe.generate({ promptEmbeds: cond, negativePromptEmbeds: uncond, height: 32, width: 48, numFrames: 5, numInferenceSteps: 2, guidanceScale: 4, seed: 1, signal: ctrl.signal });
    await expect(run).rejects.toBeInstanceOf(AbortError);
    expect(tf.memory().numTensors).toBe(before);
    expect(calls).toEqual([1, ...calls.slice(1).map(() => 0)]);
  });

  it('without an abort the forward runs every block once per call and equals the unsignalled forward', async () => {
    const calls = spyBlocks(() => {});
    const [, ph, pw] = dit.config.patchSize;
    const hidden = tf.randomNormal([1, dit.config.inChannels, 1, 2 * ph, 2 * pw], 0, 1, 'float32', 3);
    const timestep = tf.tensor1d([500]);
    const before = tf.memory().numTensors;
    const a = dit.forward(hidden, timestep, cond);
    const b = await dit.forwardAsync(hidden, timestep, cond, { signal: new AbortController().signal });
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(calls).toEqual(calls.map(() => 2));
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    tf.dispose([hidden, timestep, a, b]);
  });
});

describe('abort between VAE decode chunks', () => {
  it('decodeLatents: a signal aborted after the first chunk stops the decode there, throws AbortError and leaks nothing', () => {
    const ctrl = new AbortController();
    let decoderCalls = 0;
    const forward = vae.decoder.forward.bind(vae.decoder);
    vi.spyOn(vae.decoder, 'forward').mockImplementation((...args: Parameters<typeof forward>) => {
      decoderCalls++;
      return forward(...args);
    });
    // latents [1, zDim, 3, 4, 6]: three chunks of one latent frame
    const latents = tf.randomNormal([1, vae.config.zDim, 3, 4, 6], 0, 1, 'float32', 5);
    const before = tf.memory().numTensors;
    expect(() => pipe.decodeLatents(latents, { signal: ctrl.signal, onProgress: () => ctrl.abort() })).toThrow(AbortError);
    expect(tf.memory().numTensors).toBe(before);
    expect(decoderCalls).toBe(1);
    latents.dispose();
  });

  it('AutoencoderKLWan.decode, tiled: the same signal stops after the first chunk of the first tile', () => {
    const ctrl = new AbortController();
    const latents = tf.randomNormal([1, vae.config.zDim, 3, 4, 6], 0, 1, 'float32', 6);
    const progress: number[] = [];
    const before = tf.memory().numTensors;
    const s = vae.spatialCompression;
    expect(() =>
      vae.decode(latents, {
        tileSize: 4 * s,
        tileOverlap: 2 * s,
        signal: ctrl.signal,
        onProgress: (done) => {
          progress.push(done);
          ctrl.abort();
        },
      }),
    ).toThrow(AbortError);
    expect(tf.memory().numTensors).toBe(before);
    expect(progress).toEqual([1]);
    latents.dispose();
  });
});
