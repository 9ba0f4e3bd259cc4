// The VAE decode's memory budget (issue 17): predictVaeDecodePeak as an upper bound of the peak that
// backend 'cuda' (its TypeScript half over the host stand-in of the addon) measures, chooseVaeTile's
// decisions on the published Wan2.1 VAE, and textToVideo's vaeMemoryBudget on the tiny pipeline fixture.
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AutoencoderKLWan, AutoencoderKLWanConfig, type WanVaeDecodeOptions } from '../layers/autoencoder-kl-wan.js';
import { ConfigError, OutOfMemoryError } from '../src/errors.js';
import { memoryBudget } from '../src/pipeline/memory-budget.js';
import { chooseVaeTile, MIN_VAE_TILE_PIXELS, predictVaeDecodePeak, type VaeLatentSize } from '../src/pipeline/vae-budget.js';
import type { GenerateOptions } from '../src/pipeline/generate-options.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { hostToTensor } from '../weights/load.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { fixtureDir } from './helpers/fixtures.js';
import { registerMockCuda } from './helpers/mock-cuda.js';

const GiB = 2 ** 30;
const WAN21 = AutoencoderKLWanConfig.resolve('wan2.1');
/** 81 frames: 21 latent frames. */
const SIZES: Record<string, VaeLatentSize> = {
  '480×832×81': { batch: 1, frames: 21, height: 60, width: 104 },
  '720×1280×81': { batch: 1, frames: 21, height: 90, width: 160 },
};

describe('chooseVaeTile on the published Wan2.1 VAE', () => {
  const options = { bytesPerElement: 2, toFrames: true };

  it('predicts the H100 / null-addon figure of the whole 480×832×81 bf16 decode from above, within 25%', () => {
    // bench/RESULTS.md 2026-12-07: the null addon measured 4176131878 bytes (3.89 GiB); an H100 3.92 GiB
    const peak = predictVaeDecodePeak(WAN21, SIZES['480×832×81'], { bytesPerElement: 2 });
    expect(peak.bytes).toBeGreaterThanOrEqual(4176131878);
    expect(peak.bytes).toBeGreaterThanOrEqual(3.92 * GiB);
    expect(peak.bytes).toBeLessThan(1.25 * 4176131878);
    expect(peak.stage).toBe("the decoder's up_blocks.3");
  });

  it('decides whole frames, the largest tile that fits, or an OutOfMemoryError for stated budgets', () => {
    const size480 = SIZES['480×832×81'];
    const size720 = SIZES['720×1280×81'];
    expect(chooseVaeTile(WAN21, size480, 8 * GiB, options).decode).toEqual({});
    expect(chooseVaeTile(WAN21, size480, 2 * GiB, options).decode).toEqual({ tileSize: 424 });
    expect(chooseVaeTile(WAN21, size720, 16 * GiB, options).decode).toEqual({});
    expect(chooseVaeTile(WAN21, size720, 4 * GiB, options).decode).toEqual({ tileSize: 640 });
    expect(chooseVaeTile(WAN21, size720, 4 * GiB, options, { tileOverlap: 64 }).decode).toEqual({ tileSize: 640, tileOverlap: 64 });
    // fp32 storage: twice the bytes, smaller tiles
    expect(chooseVaeTile(WAN21, size720, 4 * GiB, { ...options, bytesPerElement: 4 }).decode).toEqual({ tileSize: 440 });
    let e: unknown;
    try {
      chooseVaeTile(WAN21, size720, 1.5 * GiB, options);
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(OutOfMemoryError);
    const oom = e as OutOfMemoryError;
    expect(oom.argument).toBe('vaeMemoryBudget');
    expect(oom.availableBytes).toBe(1.5 * GiB);
    expect(oom.neededBytes).toBe(predictVaeDecodePeak(WAN21, size720, { ...options, tileSize: MIN_VAE_TILE_PIXELS }).bytes);
    expect(oom.message).toMatch(/8\.9 GiB in whole frames and 2\.1 GiB in the smallest tiles \(128×128 pixels/);
    // a given tile is checked, not chosen
    expect(() => chooseVaeTile(WAN21, size720, 3 * GiB, options, { tileSize: 1024 })).toThrow(/vaeMemoryBudget: .*in tiles of 1024×1024 pixels needs about/);
    expect(() => chooseVaeTile(WAN21, size720, -1, options)).toThrow(ConfigError);
  });

  it('property: the chosen tile fits the budget and the next larger one (or whole frames) does not', () => {
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(SIZES)), fc.constantFrom(2, 4), fc.double({ min: 0.5, max: 24, noNaN: true }), (name, width, gib) => {
        const size = SIZES[name];
        const opts = { bytesPerElement: width, toFrames: true };
        const budget = gib * GiB;
        const whole = predictVaeDecodePeak(WAN21, size, opts);
        const smallest = predictVaeDecodePeak(WAN21, size, { ...opts, tileSize: MIN_VAE_TILE_PIXELS });
        if (smallest.bytes > budget) {
          expect(() => chooseVaeTile(WAN21, size, budget, opts)).toThrow(OutOfMemoryError);
          return;
        }
        const plan = chooseVaeTile(WAN21, size, budget, opts);
        expect(plan.peak.bytes).toBeLessThanOrEqual(budget);
        if (whole.bytes <= budget) {
          expect(plan.decode).toEqual({});
          return;
        }
        const tile = plan.decode.tileSize as number;
        expect(tile % 8).toBe(0);
        expect(tile).toBeGreaterThanOrEqual(MIN_VAE_TILE_PIXELS);
        const larger = predictVaeDecodePeak(WAN21, size, { ...opts, tileSize: tile + 8 });
        // one latent more: still tiled and over the budget, or no longer tiled (whole frames, over it)
        expect(larger.bytes).toBeGreaterThan(budget);
      }),
      { numRuns: 200 },
    );
  });

  it('the peak grows with the tile (what the search relies on)', () => {
    const size = SIZES['720×1280×81'];
    let last = 0;
    for (let k = 16; k < 160; k += 8) {
      const p = predictVaeDecodePeak(WAN21, size, { bytesPerElement: 2, tileSize: k * 8 });
      expect(p.bytes).toBeGreaterThanOrEqual(last);
      last = p.bytes;
    }
  });
});

describe('predictVaeDecodePeak is an upper bound of the peak backend cuda measures (host stand-in)', () => {
  afterAll(async () => {
    await tf.setBackend('wasm');
  });

  for (const precision of ['bf16', 'fp32'] as const) {
    it(`tiny Wan2.1 VAE, ${precision}: whole frames and tiles of 16 and 24 pixels, within 25%`, async () => {
      const { native, backend } = await registerMockCuda();
      // as on a GPU: cuDNN takes the bf16 convolutions and attention (without it they run in float32).
      // The stand-in's arithmetic is skipped (as bench/null-addon.ts does): what is allocated, and
      // when, is decided by the backend's TypeScript half, which runs as it is.
      native.cudnn = { available: true, version: 91900, library: 'mock', error: '' };
      native.convCudnn = () => '';
      native.conv = () => undefined;
      native.attentionBf16 = () => 1;
      native.attention = () => undefined;
      backend.precision = precision;
      const start = backend.memory().numBytesInGPU;
      const vae = await AutoencoderKLWan.fromPretrained(path.join(fixtureDir('wan-vae-2.1'), 'vae'));
      // z: [1, 4, 2, 4, 6] → a video [1, 3, 5, 32, 48]
      const size: VaeLatentSize = { batch: 1, frames: 2, height: 4, width: 6 };
      const z = tf.randomNormal([1, vae.config.zDim, size.frames, size.height, size.width], 0, 1, 'float32', 7);
      try {
        for (const tileSize of [undefined, 16, 24]) {
          backend.resetPeak();
          const video = vae.decode(z, tileSize === undefined ? {} : { tileSize });
          const measured = backend.memory().peakBytesInGPU - start;
          video.dispose();
          const predicted = predictVaeDecodePeak(vae.config, size, { bytesPerElement: precision === 'bf16' ? 2 : 4, tileSize }).bytes;
          expect(predicted, `tile ${tileSize}`).toBeGreaterThanOrEqual(measured);
          expect(predicted, `tile ${tileSize}`).toBeLessThanOrEqual(1.25 * measured);
        }
      } finally {
        z.dispose();
        vae.dispose();
      }
    }, 30_000);
  }
});

describe('textToVideo with vaeMemoryBudget (the tiny pipeline fixture, wasm)', () => {
  let pipe: WanPipeline;
  let io: SafetensorsFile;
  let cond: tf.Tensor;
  let uncond: tf.Tensor;
  beforeAll(async () => {
    await tf.setBackend('wasm');
    pipe = await WanPipeline.fromPretrained(fixtureDir('pipeline-t2v'));
    io = SafetensorsFile.open(path.join(fixtureDir('pipeline-t2v'), 'io.safetensors'));
    cond = hostToTensor(io.read('input.prompt_embeds'));
    uncond = hostToTensor(io.read('input.negative_prompt_embeds'));
  }, 60_000);
  afterAll(() => {
    tf.dispose([cond, uncond]);
    io?.close();
    pipe?.dispose();
  });

  // 144×176 pixels: 18×22 latents (8 pixels a latent), so 128-pixel tiles split it
  const call = (o: Partial<GenerateOptions> = {}): GenerateOptions => ({ promptEmbeds: cond, negativePromptEmbeds: uncond, height: 144, width: 176, numFrames: 5, numInferenceSteps: 2, guidanceScale: 4, seed: 3, ...o });

  it('tiles when whole frames exceed the budget, and gives the same frames bit for bit when they fit', async () => {
    const vae = pipe.vae as AutoencoderKLWan;
    const b = memoryBudget();
    const opts = { bytesPerElement: b.bytesPerElement, compositeAttention: b.compositeAttention, toFrames: true };
    const size: VaeLatentSize = { batch: 1, frames: 2, height: 18, width: 22 };
    const whole = predictVaeDecodePeak(vae.config, size, opts).bytes;
    const smallest = predictVaeDecodePeak(vae.config, size, { ...opts, tileSize: MIN_VAE_TILE_PIXELS }).bytes;
    expect(smallest).toBeLessThan(whole);
    const budget = Math.floor((whole + smallest) / 2);
    const spy = vi.spyOn(vae, 'decodeAsync');
    const seen = () => (spy.mock.calls.at(-1)?.[1] ?? {}) as WanVaeDecodeOptions;
    const progress: number[] = [];
    const plain = await pipe.textToVideo(call());
    expect(seen().tileSize).toBeUndefined();
    const roomy = await pipe.textToVideo(call({ vaeMemoryBudget: 2 ** 50 }));
    expect(seen().tileSize).toBeUndefined();
    const tight = await pipe.textToVideo(call({ vaeMemoryBudget: budget }));
    const tile = seen().tileSize as number;
    try {
      expect(tile).toBeGreaterThanOrEqual(MIN_VAE_TILE_PIXELS);
      expect(tile).toBeLessThan(176);
      expect(predictVaeDecodePeak(vae.config, size, { ...opts, tileSize: tile }).bytes).toBeLessThanOrEqual(budget);
      // what the pipeline asked for, decoded again with progress: more than one tile
      const z = tf.randomNormal([1, 4, 2, 18, 22], 0, 1, 'float32', 1);
      tf.dispose(vae.decode(z, { tileSize: tile, onProgress: (_, total) => progress.push(total) }));
      z.dispose();
      expect(progress.at(-1)).toBeGreaterThan(2);
      expect(Buffer.from(roomy.frames.dataSync().buffer).equals(Buffer.from(plain.frames.dataSync().buffer))).toBe(true);
      expect(tight.frames.shape).toEqual(plain.frames.shape);
      expect(tight.frames.dataSync().every((v) => Number.isFinite(v) && v >= 0 && v <= 1)).toBe(true);
    } finally {
      tf.dispose([plain.frames, roomy.frames, tight.frames]);
      spy.mockRestore();
    }
  }, 60_000);

  it('refuses before denoising: a budget below the smallest tile (OutOfMemoryError) and bad values (ConfigError)', async () => {
    const onStep = vi.fn();
    const e = await pipe.textToVideo(call({ vaeMemoryBudget: 1000, onStep })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OutOfMemoryError);
    expect(e).toMatchObject({ argument: 'vaeMemoryBudget', availableBytes: 1000 });
    expect(String(e)).toMatch(/in whole frames and .* in the smallest tiles \(128×128 pixels/);
    expect(onStep).not.toHaveBeenCalled();
    await expect(pipe.textToVideo(call({ vaeMemoryBudget: -5 }))).rejects.toThrow(/vaeMemoryBudget: got -5, expected a positive number of bytes/);
    await expect(pipe.textToVideo(call({ vaeDecode: { tileSize: 1 } }))).rejects.toThrow(/vaeDecode.tileSize: got 1/);
    await expect(pipe.textToVideo(call({ vaeDecode: { tileOverlap: 8 } }))).rejects.toThrow(/vaeDecode.tileOverlap: give it with vaeDecode.tileSize or vaeMemoryBudget/);
  }, 60_000);
});
