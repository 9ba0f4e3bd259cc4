import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { ConfigError, ShapeError } from '../src/errors.js';
import { randn } from '../src/random.js';
import type { GenerateOptions } from '../src/pipeline/generate-options.js';
import type { PipelineTransformer } from '../src/pipeline/pipeline-components.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { hostToTensor } from '../weights/load.js';
import { fixtureDir } from './helpers/fixtures.js';
import { maxAbsDiff } from './helpers/compare.js';

// Image-to-video as Diffusers' WanImageToVideoPipeline with expand_timesteps (Wan2.2-TI2V-5B): the
// pipeline-t2v fixture's DiT and VAE, run as a per-token-timestep model.
const T2V = fixtureDir('pipeline-t2v');

/** A denoiser that records what the pipeline gives it. */
class Spy implements PipelineTransformer {
  readonly calls: Array<{ timestep: Float32Array; timestepShape: number[]; frame0: tf.Tensor; input?: tf.Tensor }> = [];
  keepInputs = false;
  constructor(readonly inner: PipelineTransformer) {}
  get config() {
    return this.inner.config;
  }
  forward(x: tf.Tensor, timestep: tf.Tensor, ctx: tf.Tensor): tf.Tensor {
    this.calls.push({
      timestep: timestep.dataSync() as Float32Array,
      timestepShape: [...timestep.shape],
      frame0: tf.keep(tf.slice(x, [0, 0, 0, 0, 0], [-1, -1, 1, -1, -1])),
      input: this.keepInputs ? tf.keep(x.clone()) : undefined,
    });
    return this.inner.forward(x, timestep, ctx);
  }
  reset(): void {
    for (const c of this.calls) tf.dispose([c.frame0, ...(c.input ? [c.input] : [])]);
    this.calls.length = 0;
  }
  dispose(): void {
    this.reset();
  }
}

let t2v: WanPipeline;
let spy: Spy;
let i2v: WanPipeline;
let cond: tf.Tensor;
let uncond: tf.Tensor;
let image: tf.Tensor3D;

beforeAll(async () => {
  await tf.setBackend('wasm');
  t2v = await WanPipeline.fromPretrained(T2V);
  spy = new Spy(t2v.experts[0].current!);
  i2v = new WanPipeline({ transformer: spy, vae: t2v.vae, scheduler: t2v.scheduler, expandTimesteps: true });
  const io = SafetensorsFile.open(`${T2V}/io.safetensors`);
  cond = hostToTensor(io.read('input.prompt_embeds'));
  uncond = hostToTensor(io.read('input.negative_prompt_embeds'));
  io.close();
  image = tf.tidy(() => tf.clipByValue(tf.add(0.5, tf.mul(0.3, randn([32, 48, 3], 5))), 0, 1)) as tf.Tensor3D;
});

afterAll(() => {
  spy.reset();
  tf.dispose([cond, uncond, image]);
  t2v.dispose();
});

function opts(overrides: Partial<GenerateOptions> = {}): GenerateOptions {
  return { promptEmbeds: cond, negativePromptEmbeds: uncond, image, numFrames: 9, numInferenceSteps: 3, guidanceScale: 4, seed: 3, ...overrides };
}

/** The reference's condition: (mean(VAE.encode(2·image − 1)) − latents_mean) · (1 / latents_std), [1, z, 1, h, w]. */
function expectedCondition(img: tf.Tensor3D): tf.Tensor {
  const vae = t2v.vae!;
  return tf.tidy(() => {
    const video = tf.reshape(tf.transpose(tf.sub(tf.mul(img, 2), 1), [2, 0, 1]), [1, 3, 1, img.shape[0], img.shape[1]]);
    const { mean, logvar } = vae.encode!(video);
    logvar.dispose();
    const z = vae.config.zDim;
    return tf.mul(tf.sub(mean, tf.tensor(vae.config.latentsMean as number[], [1, z, 1, 1, 1])), tf.div(1, tf.tensor(vae.config.latentsStd as number[], [1, z, 1, 1, 1])));
  });
}

describe('image-to-video (expand_timesteps)', () => {
  it('frame 0 is the image latent in every DiT input and in the result; its tokens get timestep 0, the others t', async () => {
    spy.reset();
    const before = tf.memory().numTensors;
    const seen: number[] = [];
    const out = await i2v.generate(opts({ onStep: (s) => seen.push(s.timestep) }));
    const want = expectedCondition(image);
    // 9 frames → 3 latent frames of 4×6, patch 2×2 → 6 tokens per frame, 18 in all
    expect(out.shape).toEqual([1, 4, 3, 4, 6]);
    expect(tf.tidy(() => maxAbsDiff(tf.slice(out, [0, 0, 0, 0, 0], [-1, -1, 1, -1, -1]), want))).toBe(0);
    expect(spy.calls).toHaveLength(6);
    spy.calls.forEach((c, i) => {
      const t = seen[Math.floor(i / 2)];
      expect(c.timestepShape).toEqual([1, 18]);
      expect([...c.timestep]).toEqual([...Array<number>(6).fill(0), ...Array<number>(12).fill(t)]);
      expect(maxAbsDiff(c.frame0, want)).toBe(0);
    });
    tf.dispose([out, want]);
    spy.reset();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('the initial noise of frame 0 never reaches the result', async () => {
    const noise = randn([1, 4, 3, 4, 6], 11);
    const other = tf.tidy(() => tf.concat([randn([1, 4, 1, 4, 6], 12), tf.slice(noise, [0, 0, 1, 0, 0], [-1, -1, -1, -1, -1])], 2));
    const a = await i2v.generate(opts({ latents: noise }));
    const b = await i2v.generate(opts({ latents: other }));
    expect(maxAbsDiff(a, b)).toBe(0);
    const plain = await i2v.generate(opts({ latents: noise, image: undefined }));
    expect(maxAbsDiff(a, plain)).toBeGreaterThan(1e-3);
    tf.dispose([noise, other, a, b, plain]);
    spy.reset();
  });

  it('one image conditions every prompt of a batch; one image per prompt conditions its own', async () => {
    const pair = tf.concat([cond, cond], 0);
    const negPair = tf.concat([uncond, uncond], 0);
    const second = tf.tidy(() => tf.sub(1, image)) as tf.Tensor3D;
    const images = tf.stack([image, second]);
    const shared = await i2v.generate(opts({ promptEmbeds: pair, negativePromptEmbeds: negPair, numFrames: 5 }));
    const own = await i2v.generate(opts({ promptEmbeds: pair, negativePromptEmbeds: negPair, numFrames: 5, image: images }));
    const [w0, w1] = [expectedCondition(image), expectedCondition(second)];
    const diff0 = (z: tf.Tensor, b: number, w: tf.Tensor) => tf.tidy(() => maxAbsDiff(tf.slice(z, [b, 0, 0, 0, 0], [1, -1, 1, -1, -1]), w));
    expect(diff0(shared, 0, w0)).toBe(0);
    expect(diff0(shared, 1, w0)).toBe(0);
    expect(diff0(own, 0, w0)).toBe(0);
    expect(diff0(own, 1, w1)).toBeLessThan(1e-6);
    tf.dispose([pair, negPair, second, images, shared, own, w0, w1]);
    spy.reset();
  });

  it('a one-frame video is the image latent, every token at timestep 0', async () => {
    const out = await i2v.generate(opts({ numFrames: 1, numInferenceSteps: 2 }));
    const want = expectedCondition(image);
    expect(maxAbsDiff(out, want)).toBe(0);
    expect(spy.calls.every((c) => c.timestep.every((t) => t === 0))).toBe(true);
    tf.dispose([out, want]);
    spy.reset();
  });

  it('textToVideo takes the size from the image and decodes its first frame', async () => {
    const r = await i2v.textToVideo(opts({ numFrames: 5, numInferenceSteps: 2 }));
    expect([r.height, r.width, r.numFrames]).toEqual([32, 48, 5]);
    expect(r.frames.shape).toEqual([1, 5, 32, 48, 3]);
    r.frames.dispose();
    spy.reset();
  });

  it('bad images raise typed errors naming the argument', async () => {
    const err = (p: WanPipeline, o: Partial<GenerateOptions>) => p.generate(opts(o)).then(() => undefined, (e: unknown) => e);
    expect(String(await err(t2v, {}))).toMatch(/ConfigError: image: a first frame needs an image-to-video model.*text-to-video only/);
    const gray = tf.zeros([32, 48, 1]);
    const small = tf.zeros([16, 48, 3]);
    const three = tf.zeros([3, 32, 48, 3]);
    expect(await err(i2v, { image: gray })).toMatchObject({ argument: 'image' });
    expect(await err(i2v, { image: gray })).toBeInstanceOf(ShapeError);
    expect(String(await err(i2v, { image: small, height: 32, width: 48 }))).toMatch(/ShapeError: image: got \[16,48,3\], expected 32×48 pixels/);
    expect(String(await err(i2v, { image: three }))).toMatch(/ShapeError: image: .*one per prompt \(batch 1\)/);
    const noVae = new WanPipeline({ transformer: spy, scheduler: t2v.scheduler, expandTimesteps: true });
    expect(await err(noVae, {})).toBeInstanceOf(ConfigError);
    const bytes = tf.tidy(() => tf.cast(tf.mul(image, 255), 'int32'));
    const unscaled = tf.tidy(() => tf.mul(image, 255));
    const odd = tf.zeros([40, 48, 3]);
    expect(String(await err(i2v, { image: bytes }))).toMatch(/ConfigError: image: got an int32 tensor, expected float32 RGB in \[0, 1\]/);
    expect(String(await err(i2v, { image: unscaled }))).toMatch(/ConfigError: image: values span \[\d+(\.\d+)?, \d+(\.\d+)?\], expected RGB in \[0, 1\] \(divide 8-bit pixels by 255\)/);
    // the size comes from the image: one that is not a multiple of 16×16 (VAE 8 × patch 2) names the image
    expect(await err(i2v, { image: odd })).toMatchObject({ argument: 'image', nearest: '48×48' });
    tf.dispose([gray, small, three, bytes, unscaled, odd]);
    expect(spy.calls).toHaveLength(0);
  });
});

// Image-condition channels, as Diffusers' WanImageToVideoPipeline without expand_timesteps
// (Wan2.2-I2V-A14B): the fixture's VAE (z 4, temporal factor 4) and a random DiT taking
// 4 noise + 4 mask + 4 image-latent channels.
describe('image-to-video (image-condition channels)', () => {
  let dit: WanTransformer3DModel;
  let chSpy: Spy;
  let chPipe: WanPipeline;
  beforeAll(() => {
    const base = t2v.experts[0].current as WanTransformer3DModel;
    dit = new WanTransformer3DModel({ ...base.config, inChannels: 12 }).initialize(21);
    chSpy = new Spy(dit);
    chSpy.keepInputs = true;
    chPipe = new WanPipeline({ transformer: chSpy, vae: t2v.vae, scheduler: t2v.scheduler });
  });
  afterAll(() => {
    chSpy.reset();
    dit.dispose();
  });

  /**
   * The reference's condition: mask ++ normalised mean(VAE.encode([image, 0, …, 0(, last)])). The mask
   * is 1 on latent frame 0 (4 channels); with a last frame, also on channel 3 of the last latent frame
   * (the last pixel frame is the 4th of the 4 that fold into it).
   */
  function expectedChannels(img: tf.Tensor3D, numFrames: number, last?: tf.Tensor3D): tf.Tensor {
    const vae = t2v.vae!;
    return tf.tidy(() => {
      const frame = (x: tf.Tensor3D) => tf.reshape(tf.transpose(tf.sub(tf.mul(x, 2), 1), [2, 0, 1]), [1, 3, 1, x.shape[0], x.shape[1]]);
      const zeros = tf.zeros([1, 3, numFrames - (last ? 2 : 1), img.shape[0], img.shape[1]]);
      const video = tf.concat([frame(img), zeros, ...(last ? [frame(last)] : [])], 2);
      const { mean } = vae.encode!(video);
      const z = vae.config.zDim;
      const cond = tf.mul(tf.sub(mean, tf.tensor(vae.config.latentsMean as number[], [1, z, 1, 1, 1])), tf.div(1, tf.tensor(vae.config.latentsStd as number[], [1, z, 1, 1, 1])));
      const [, , F, h, w] = cond.shape;
      const lastFrame = last ? tf.concat([tf.zeros([1, 3, 1, h, w]), tf.ones([1, 1, 1, h, w])], 1) : tf.zeros([1, 4, 1, h, w]);
      const mask = tf.concat([tf.ones([1, 4, 1, h, w]), tf.zeros([1, 4, F - 2, h, w]), lastFrame], 2);
      return tf.concat([mask, cond], 1);
    });
  }

  it('every DiT input is [latents, mask, image latents] along the channels, with one timestep per sample', async () => {
    chSpy.reset();
    const before = tf.memory().numTensors;
    const noise = randn([1, 4, 3, 4, 6], 31);
    const seen: tf.Tensor[] = [];
    const out = await chPipe.generate(opts({ latents: noise, onStep: ({ latents }) => seen.push(latents.clone()) }));
    const want = expectedChannels(image, 9);
    expect(out.shape).toEqual([1, 4, 3, 4, 6]);
    expect(chSpy.calls).toHaveLength(6);
    chSpy.calls.forEach((c, i) => {
      expect(c.timestepShape).toEqual([1]);
      const step = Math.floor(i / 2);
      const latents = step === 0 ? noise : seen[step - 1];
      expect(tf.tidy(() => maxAbsDiff(tf.slice(c.input!, [0, 0, 0, 0, 0], [-1, 4, -1, -1, -1]), latents))).toBe(0);
      expect(tf.tidy(() => maxAbsDiff(tf.slice(c.input!, [0, 4, 0, 0, 0], [-1, 8, -1, -1, -1]), want))).toBe(0);
    });
    tf.dispose([noise, out, want, ...seen]);
    chSpy.reset();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('needs an image, and a batch shares one image or takes one per prompt', async () => {
    const err = await chPipe.generate(opts({ image: undefined })).then(() => undefined, (e: unknown) => e);
    expect(String(err)).toMatch(/ConfigError: image: this is an image-to-video model .*4 noise \+ 8 image-condition channels/);
    const pair = tf.concat([cond, cond], 0);
    const negPair = tf.concat([uncond, uncond], 0);
    const second = tf.tidy(() => tf.sub(1, image)) as tf.Tensor3D;
    const images = tf.stack([image, second]);
    const out = await chPipe.generate(opts({ promptEmbeds: pair, negativePromptEmbeds: negPair, numFrames: 5, image: images }));
    const last = chSpy.calls.at(-1)!.input!;
    const [w0, w1] = [expectedChannels(image, 5), expectedChannels(second, 5)];
    expect(tf.tidy(() => maxAbsDiff(tf.slice(last, [0, 4, 0, 0, 0], [1, 8, -1, -1, -1]), w0))).toBeLessThan(1e-6);
    expect(tf.tidy(() => maxAbsDiff(tf.slice(last, [1, 4, 0, 0, 0], [1, 8, -1, -1, -1]), w1))).toBeLessThan(1e-6);
    tf.dispose([pair, negPair, second, images, out, w0, w1]);
    chSpy.reset();
  });

  it('a last frame (first-and-last-frame video): the condition video ends with it and the mask marks it', async () => {
    chSpy.reset();
    const last = tf.tidy(() => tf.reverse(image, 1)) as tf.Tensor3D;
    const out = await chPipe.generate(opts({ lastImage: last }));
    const want = expectedChannels(image, 9, last);
    for (const c of chSpy.calls) expect(tf.tidy(() => maxAbsDiff(tf.slice(c.input!, [0, 4, 0, 0, 0], [-1, 8, -1, -1, -1]), want))).toBe(0);
    const err = (o: Partial<GenerateOptions>, p = chPipe) => p.generate(opts(o)).then(() => undefined, (e: unknown) => e);
    const small = tf.zeros([16, 48, 3]);
    expect(String(await err({ lastImage: small }))).toMatch(/ShapeError: lastImage: got \[16,48,3\], expected \[32,48,3\]/);
    expect(String(await err({ lastImage: last, image: undefined }, i2v))).toMatch(/ConfigError: lastImage: give the first frame/);
    expect(String(await err({ lastImage: last, numFrames: 1 }))).toMatch(/ShapeError: numFrames: got 1, expected at least 2 frames/);
    expect(String(await err({ lastImage: last }, i2v))).toMatch(/ConfigError: lastImage: .*first frame only/);
    tf.dispose([last, out, want, small]);
    chSpy.reset();
    spy.reset();
  });

  it('imageEncode passes tiles and progress to the VAE encode of the condition video', async () => {
    const seen: Array<[number, number]> = [];
    const whole = await chPipe.generate(opts({ numFrames: 5, numInferenceSteps: 1 }));
    const oneTile = await chPipe.generate(opts({ numFrames: 5, numInferenceSteps: 1, imageEncode: { tileSize: 48, onProgress: (d, t) => seen.push([d, t]) } }));
    // 5 frames encode in 2 chunks (frame 0, then 4); one tile covering the image changes nothing
    expect(seen).toEqual([[1, 2], [2, 2]]);
    expect(maxAbsDiff(whole, oneTile)).toBe(0);
    seen.length = 0;
    const tiled = await chPipe.generate(opts({ numFrames: 5, numInferenceSteps: 1, imageEncode: { tileSize: 16, tileOverlap: 8, onProgress: (d, t) => seen.push([d, t]) } }));
    // 32×48 pixels in 16-pixel tiles overlapping by 8: 3 rows × 5 columns, 2 chunks each
    expect(seen.at(-1)).toEqual([30, 30]);
    expect(tiled.shape).toEqual(whole.shape);
    tf.dispose([whole, oneTile, tiled]);
    chSpy.reset();
  });

  it('a DiT whose extra channels do not match mask + latents is refused when the pipeline is built', () => {
    const base = t2v.experts[0].current as WanTransformer3DModel;
    const odd = new WanTransformer3DModel({ ...base.config, inChannels: 10 }).initialize(1);
    expect(() => new WanPipeline({ transformer: odd, vae: t2v.vae, scheduler: t2v.scheduler })).toThrow(/takes 10 input channels, 4 of noise and 6 of condition; an image condition has 4 mask \+ 4 latent channels \(8\)/);
    expect(() => new WanPipeline({ transformer: odd, vae: t2v.vae, scheduler: t2v.scheduler, expandTimesteps: true })).toThrow(/cannot also take per-token timesteps/);
    odd.dispose();
  });
});
