import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AutoencoderKLWan, AutoencoderKLWanConfig, WAN_VAE_PRESETS } from '../layers/autoencoder-kl-wan.js';
import { CheckpointError, ConfigError, ShapeError } from '../src/errors.js';
import { compareArrays } from '../src/parity/runner.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../weights/safetensors.js';
import { isOriginalWanVaeLayout, wanVaeOriginalToDiffusers, type WanVaeKeyLayout } from '../weights/layouts/wan-vae-original.js';
import { fixtureDir, parityCase } from './helpers/fixtures.js';
import { diffusersToOriginal } from './helpers/wan-vae-original-keys.js';

const TOL = { atol: 2e-4, rtol: 1e-3 };

function layoutOf(c: AutoencoderKLWanConfig): WanVaeKeyLayout {
  return { numResBlocks: c.numResBlocks, numLevels: c.dimMult.length, isResidual: c.isResidual };
}

function readConfig(name: string): AutoencoderKLWanConfig {
  return AutoencoderKLWanConfig.fromJSON(JSON.parse(fs.readFileSync(path.join(fixtureDir(name), 'vae', 'config.json'), 'utf-8')));
}

/** The fixture's vae/ weights rewritten under the original key names into `file`. */
function writeOriginalLayout(name: string, file: string): string[] {
  const src = SafetensorsFile.open(path.join(fixtureDir(name), 'vae', 'diffusion_pytorch_model.safetensors'));
  const layout = layoutOf(readConfig(name));
  const out: Record<string, TensorToWrite> = {};
  try {
    for (const k of src.keys()) {
      const t = src.read(k);
      out[diffusersToOriginal(k, layout)] = { shape: t.shape, data: t.data };
    }
  } finally {
    src.close();
  }
  writeSafetensors(file, out);
  return Object.keys(out);
}

function expectClose(got: tf.Tensor, expected: { shape: number[]; data: ArrayLike<number> }): void {
  const r = compareArrays(got.dataSync(), got.shape, expected.data, expected.shape, TOL);
  expect(r.shapeOk).toBe(true);
  expect(r.maxAbsErr).toBeLessThanOrEqual(TOL.atol);
  expect(r.ok).toBe(true);
}

function ioTensor(name: string, tensor: string): { shape: number[]; data: Float32Array } {
  const io = SafetensorsFile.open(path.join(fixtureDir(name), 'io.safetensors'));
  try {
    const t = io.read(tensor);
    return { shape: t.shape, data: t.data as Float32Array };
  } finally {
    io.close();
  }
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-vae-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('AutoencoderKLWan parity with the reference fixtures', () => {
  it.each(['wan-vae-2.1', 'wan-vae-2.2'])('%s: encode (mean, logvar) and both decodes match Diffusers', async (name) => {
    const before = tf.memory().numTensors;
    const r = await parityCase(name);
    expect(r.line).toMatch(/^PASS/);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('loading the original Wan key layout', () => {
  it.each(['wan-vae-2.1', 'wan-vae-2.2'])('%s: renamed weights load into the same model and decode the fixture latent', async (name) => {
    const file = path.join(tmp, `${name}.safetensors`);
    const keys = writeOriginalLayout(name, file);
    expect(isOriginalWanVaeLayout(keys)).toBe(true);
    const config = readConfig(name);
    const before = tf.memory().numTensors;
    const fromOriginal = await AutoencoderKLWan.fromPretrained(file, { config });
    const fromDiffusers = await AutoencoderKLWan.fromPretrained(path.join(fixtureDir(name), 'vae'));
    try {
      const a = fromOriginal.namedParams();
      for (const [k, p] of fromDiffusers.namedParams()) {
        const x = p.read()!;
        const y = a.get(k)!.read()!;
        expect(Array.from(y.dataSync()), k).toEqual(Array.from(x.dataSync()));
        x.dispose();
        y.dispose();
      }
      const z = tf.tensor(ioTensor(name, 'input.latent').data, ioTensor(name, 'input.latent').shape);
      const video = fromOriginal.decode(z);
      expectClose(video, ioTensor(name, 'output.decoded_latent'));
      tf.dispose([z, video]);
    } finally {
      fromOriginal.dispose();
      fromDiffusers.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('maps the published Wan2.1 / Wan2.2 names as Diffusers\' conversion script does', () => {
    const r21 = wanVaeOriginalToDiffusers({ numResBlocks: 2, numLevels: 4, isResidual: false });
    expect(r21('conv1.weight')).toBe('quant_conv.weight');
    expect(r21('conv2.bias')).toBe('post_quant_conv.bias');
    expect(r21('encoder.conv1.weight')).toBe('encoder.conv_in.weight');
    expect(r21('encoder.downsamples.3.shortcut.weight')).toBe('encoder.down_blocks.3.conv_shortcut.weight');
    expect(r21('encoder.downsamples.5.time_conv.bias')).toBe('encoder.down_blocks.5.time_conv.bias');
    expect(r21('encoder.downsamples.8.resample.1.weight')).toBe('encoder.down_blocks.8.resample.1.weight');
    expect(r21('encoder.middle.1.to_qkv.weight')).toBe('encoder.mid_block.attentions.0.to_qkv.weight');
    expect(r21('decoder.middle.2.residual.3.gamma')).toBe('decoder.mid_block.resnets.1.norm2.gamma');
    expect(r21('decoder.upsamples.2.residual.6.weight')).toBe('decoder.up_blocks.0.resnets.2.conv2.weight');
    expect(r21('decoder.upsamples.3.time_conv.weight')).toBe('decoder.up_blocks.0.upsamplers.0.time_conv.weight');
    expect(r21('decoder.upsamples.4.shortcut.weight')).toBe('decoder.up_blocks.1.resnets.0.conv_shortcut.weight');
    expect(r21('decoder.upsamples.11.resample.1.bias')).toBe('decoder.up_blocks.2.upsamplers.0.resample.1.bias');
    expect(r21('decoder.upsamples.14.residual.0.gamma')).toBe('decoder.up_blocks.3.resnets.2.norm1.gamma');
    expect(r21('decoder.head.2.weight')).toBe('decoder.conv_out.weight');
    const r22 = wanVaeOriginalToDiffusers({ numResBlocks: 2, numLevels: 4, isResidual: true });
    expect(r22('encoder.downsamples.1.downsamples.0.shortcut.bias')).toBe('encoder.down_blocks.1.resnets.0.conv_shortcut.bias');
    expect(r22('encoder.downsamples.1.downsamples.2.time_conv.weight')).toBe('encoder.down_blocks.1.downsampler.time_conv.weight');
    expect(r22('encoder.downsamples.0.downsamples.2.resample.1.weight')).toBe('encoder.down_blocks.0.downsampler.resample.1.weight');
    expect(r22('decoder.upsamples.0.upsamples.3.time_conv.bias')).toBe('decoder.up_blocks.0.upsampler.time_conv.bias');
    expect(r22('decoder.upsamples.3.upsamples.2.residual.2.weight')).toBe('decoder.up_blocks.3.resnets.2.conv1.weight');
  });

  it.each(['wan2.1', 'wan2.2'] as const)('every key of the %s preset survives original → Diffusers', (preset) => {
    const vae = new AutoencoderKLWan(preset);
    const layout = layoutOf(vae.config);
    const rename = wanVaeOriginalToDiffusers(layout);
    const keys = [...vae.namedWeights().keys()];
    const originals = keys.map((k) => diffusersToOriginal(k, layout));
    expect(new Set(originals).size).toBe(keys.length);
    expect(originals.map(rename)).toEqual(keys);
    expect(isOriginalWanVaeLayout(keys)).toBe(false);
  });

  it('a checkpoint without config.json whose latent width fits no preset asks for options.config', async () => {
    const file = path.join(tmp, 'no-config.safetensors');
    writeOriginalLayout('wan-vae-2.1', file);
    const before = tf.memory().numTensors;
    await expect(AutoencoderKLWan.fromPretrained(file)).rejects.toThrow(/options\.config/);
    await expect(AutoencoderKLWan.fromPretrained(file)).rejects.toBeInstanceOf(ConfigError);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a checkpoint that does not fit the config is one CheckpointError, and nothing leaks', async () => {
    const before = tf.memory().numTensors;
    const err = await AutoencoderKLWan.fromPretrained(path.join(fixtureDir('wan-vae-2.2'), 'vae'), { config: readConfig('wan-vae-2.1') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect(String(err)).toMatch(/mis-shaped/);
    await expect(AutoencoderKLWan.fromPretrained(path.join(tmp, 'missing-folder'))).rejects.toBeInstanceOf(CheckpointError);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('input validation', () => {
  const v21 = new AutoencoderKLWan({ ...readConfig('wan-vae-2.1') }).initialize(1);
  const v22 = new AutoencoderKLWan({ ...readConfig('wan-vae-2.2') }).initialize(2);
  afterAll(() => {
    v21.dispose();
    v22.dispose();
  });

  function shapeError(f: () => unknown): ShapeError {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(ShapeError);
      return e as ShapeError;
    }
    throw new Error('no ShapeError thrown');
  }

  it('a frame count that is not 1 + 4k names the argument and the nearest valid counts', () => {
    const before = tf.memory().numTensors;
    const video = tf.zeros([1, 3, 10, 32, 32]);
    const e = shapeError(() => v21.encode(video));
    expect(e.argument).toBe('video');
    expect(e.message).toMatch(/10 frames/);
    expect(e.nearest).toBe('9 or 13 frames');
    video.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('sizes that are not multiples of the spatial factor (8 for 2.1, 16 for 2.2) name the nearest valid sizes', () => {
    const a = tf.zeros([1, 3, 5, 30, 32]);
    const e = shapeError(() => v21.encode(a));
    expect(e.nearest).toBe('height 24 or 32, width 32');
    const b = tf.zeros([1, 3, 1, 64, 40]);
    const f = shapeError(() => v22.encode(b));
    expect(f.expected).toMatch(/multiples of 16/);
    expect(f.nearest).toBe('height 64, width 32 or 48');
    tf.dispose([a, b]);
  });

  it('wrong channels or rank are ShapeErrors for video and z', () => {
    const v = tf.zeros([1, 4, 1, 8, 8]);
    expect(shapeError(() => v21.encode(v)).argument).toBe('video');
    const z = tf.zeros([1, 5, 1, 2, 2]);
    expect(shapeError(() => v21.decode(z)).argument).toBe('z');
    expect(shapeError(() => v21.normalizeLatents(z)).argument).toBe('mean');
    tf.dispose([v, z]);
  });

  it('bad tiling options are ConfigErrors', () => {
    const z = tf.zeros([1, 4, 1, 2, 2]);
    expect(() => v21.decode(z, { tileSize: 4 })).toThrow(ConfigError);
    expect(() => v21.decode(z, { tileSize: 16, tileOverlap: 16 })).toThrow(/tileOverlap/);
    z.dispose();
  });
});

describe('latent normalisation and configs', () => {
  it('normalizeLatents maps latents_mean to 0 and is undone by denormalizeLatents', () => {
    const vae = new AutoencoderKLWan('wan2.2');
    const { latentsMean, latentsStd } = vae.config;
    const mean = tf.tensor(latentsMean, [1, 48, 1, 1, 1]);
    const shifted = tf.add(mean, tf.tensor(latentsStd, [1, 48, 1, 1, 1]));
    const x = tf.randomNormal([2, 48, 2, 2, 3], 0, 1, 'float32', 4);
    const before = tf.memory().numTensors;
    const zero = vae.normalizeLatents(mean);
    const one = vae.normalizeLatents(shifted);
    const normed = vae.normalizeLatents(x);
    const back = vae.denormalizeLatents(normed);
    expect(tf.memory().numTensors).toBe(before + 4);
    expect(Array.from(zero.dataSync()).every((v) => v === 0)).toBe(true);
    expect(Array.from(one.dataSync()).every((v) => Math.abs(v - 1) < 1e-6)).toBe(true);
    const xs = x.dataSync();
    expect(Array.from(back.dataSync()).every((v, i) => Math.abs(v - xs[i]) < 1e-5)).toBe(true);
    tf.dispose([mean, shifted, x, zero, one, normed, back]);
  });

  it('reads the fixture configs, with the presets carrying the published shapes', () => {
    const c22 = readConfig('wan-vae-2.2');
    expect(c22).toMatchObject({ baseDim: 8, decoderBaseDim: 12, zDim: 6, isResidual: true, patchSize: 2, inChannels: 12 });
    const c21 = readConfig('wan-vae-2.1');
    expect(c21).toMatchObject({ zDim: 4, decoderBaseDim: null, patchSize: null, isResidual: false });
    expect(new AutoencoderKLWan(c22).spatialCompression).toBe(16);
    expect(new AutoencoderKLWan(c21).spatialCompression).toBe(8);
    const p21 = WAN_VAE_PRESETS['wan2.1'];
    const p22 = WAN_VAE_PRESETS['wan2.2'];
    expect([p21.latentsMean.length, p21.latentsStd.length, p22.latentsMean.length, p22.latentsStd.length]).toEqual([16, 16, 48, 48]);
    expect([p22.latentsMean[0], p22.latentsStd[0], p21.latentsMean[0], p21.latentsStd[15]]).toEqual([-0.2289, 0.4765, -0.7571, 1.916]);
    // Parameter counts of the published VAEs (WAN-SPEC.md §8.1).
    expect(new AutoencoderKLWan('wan2.1').countParams()).toBe(126_892_531);
    expect(new AutoencoderKLWan('wan2.2').countParams()).toBe(704_688_668);
  });

  it('rejects configs it cannot build', () => {
    expect(() => AutoencoderKLWanConfig.fromJSON({ z_dim: 4 })).toThrow(/"latents_mean" must hold "z_dim" = 4 numbers/);
    expect(() => AutoencoderKLWanConfig.fromJSON({ base_dim: -1 })).toThrow(/base_dim/);
    expect(() => AutoencoderKLWanConfig.fromJSON({ _class_name: 'AutoencoderKL' })).toThrow(ConfigError);
    expect(() => AutoencoderKLWanConfig.resolve({ temperalDownsample: [true] })).toThrow(/temperalDownsample/);
    expect(() => AutoencoderKLWanConfig.resolve({ patchSize: 2 })).toThrow(/patchSize/);
  });
});
