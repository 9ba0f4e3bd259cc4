import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AutoencoderKLWan, AutoencoderKLWanConfig } from '../layers/autoencoder-kl-wan.js';
import { UMT5EncoderModel } from '../layers/umt5-encoder-model.js';
import { CheckpointError, ConfigError } from '../src/errors.js';
import { locateComponent, openCheckpoint, openComponent } from '../weights/component.js';
import { UMT5_FAMILY, WAN_TRANSFORMER_FAMILY, WAN_VAE_FAMILY } from '../weights/families.js';
import { loadPretrained } from '../weights/load-pretrained.js';
import { readJsonFile } from '../weights/read-json.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../weights/safetensors.js';
import { fixtureDir } from './helpers/fixtures.js';
import { REPACKED_WAN_VAE } from './helpers/repacked-vae-layout.js';

const T2V = fixtureDir('pipeline-t2v');
let tmp: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-component-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Every tensor of a safetensors file, renamed by `rename`, written to `file` with `metadata`. */
function rewrite(from: string, file: string, rename: (key: string) => string, metadata: Record<string, string> = {}): void {
  const src = SafetensorsFile.open(from);
  const out: Record<string, TensorToWrite> = {};
  for (const k of src.keys()) {
    const t = src.read(k);
    out[rename(k)] = { shape: t.shape, data: t.data };
  }
  src.close();
  writeSafetensors(file, out, metadata);
}

/** Each weight of a model, as checkpoint-layout values. */
function weightsOf(model: AutoencoderKLWan): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [k, slot] of model.namedWeights()) {
    const t = slot.read()!;
    out.set(k, t.dataSync() as Float32Array);
    t.dispose();
  }
  return out;
}

describe('openComponent: one way to find a component', () => {
  it('finds a component from a model root, its folder, or its checkpoint file, with the config beside it', () => {
    for (const where of [T2V, path.join(T2V, 'vae'), path.join(T2V, 'vae', 'diffusion_pytorch_model.safetensors')]) {
      const c = openComponent(where, WAN_VAE_FAMILY);
      expect(c.layout.name).toBe('Diffusers keys');
      expect(c.configRead).toBe(path.join(T2V, 'vae', 'config.json'));
      expect(c.checkpoint).toBe(path.join(T2V, 'vae', 'diffusion_pytorch_model.safetensors'));
      expect('json' in c.config! && c.config.json._class_name).toBe('AutoencoderKLWan');
      c.close();
    }
    const dit = openComponent(T2V, WAN_TRANSFORMER_FAMILY);
    expect(dit.folder).toBe(path.join(T2V, 'transformer'));
    dit.close();
  });

  it('finds the original release files in a root among the other components, and reads no config.json for them', () => {
    const root = path.join(tmp, 'release');
    fs.mkdirSync(root);
    fs.writeFileSync(path.join(root, 'config.json'), JSON.stringify({ _class_name: 'WanModel', dim: 32, num_heads: 2 }));
    fs.copyFileSync(path.join(T2V, 'transformer', 'diffusion_pytorch_model.safetensors'), path.join(root, 'diffusion_pytorch_model.safetensors'));
    fs.copyFileSync(path.join(fixtureDir('umt5-encoder'), 'text_encoder', 'model.safetensors'), path.join(root, 'models_t5_umt5-xxl-enc-bf16.safetensors'));
    const t5 = openComponent(root, UMT5_FAMILY);
    expect(path.basename(t5.checkpoint)).toBe('models_t5_umt5-xxl-enc-bf16.safetensors');
    t5.close();
    const dit = openComponent(root, WAN_TRANSFORMER_FAMILY);
    expect(path.basename(dit.checkpoint)).toBe('diffusion_pytorch_model.safetensors');
    expect(dit.configRead).toBe(path.join(root, 'config.json'));
    dit.close();
  });

  it('refuses PyTorch pickles in one place, naming them and how to convert them', async () => {
    const dir = path.join(tmp, 'pickles');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'Wan2.1_VAE.pth'), 'x');
    fs.writeFileSync(path.join(dir, 'models_t5_umt5-xxl-enc-bf16.pth'), 'x');
    const convert = /is a PyTorch pickle; convert it to safetensors first \(python: safetensors\.torch\.save_file/;
    expect(() => openComponent(dir, WAN_VAE_FAMILY)).toThrow(/Wan2\.1_VAE\.pth is a PyTorch pickle; convert it/);
    expect(() => openComponent(dir, UMT5_FAMILY)).toThrow(/models_t5_umt5-xxl-enc-bf16\.pth is a PyTorch pickle/);
    expect(() => openComponent(path.join(dir, 'Wan2.1_VAE.pth'), WAN_VAE_FAMILY)).toThrow(convert);
    expect(() => openCheckpoint(dir)).toThrow(/only PyTorch pickle files found \(Wan2\.1_VAE\.pth, models_t5_umt5-xxl-enc-bf16\.pth\); convert them/);
    await expect(AutoencoderKLWan.fromPretrained(dir)).rejects.toBeInstanceOf(CheckpointError);
    await expect(UMT5EncoderModel.fromPretrained(path.join(dir, 'models_t5_umt5-xxl-enc-bf16.pth'))).rejects.toThrow(convert);
  });

  it('names what is missing: no such path, no checkpoint, several checkpoints', () => {
    expect(() => openComponent(path.join(tmp, 'nothing'), WAN_VAE_FAMILY)).toThrow(/nothing: no such file or folder/);
    const empty = path.join(tmp, 'empty');
    fs.mkdirSync(empty);
    expect(() => openComponent(empty, WAN_VAE_FAMILY)).toThrow(/no Wan VAE checkpoint \(diffusion_pytorch_model\.safetensors\[\.index\.json\]\) found/);
    const two = path.join(tmp, 'two');
    fs.mkdirSync(two);
    for (const f of ['a.safetensors', 'b.safetensors']) fs.copyFileSync(path.join(T2V, 'vae', 'diffusion_pytorch_model.safetensors'), path.join(two, f));
    expect(() => locateComponent(two)).toThrow(/several \.safetensors files \(a\.safetensors, b\.safetensors\)/);
  });

  it('reads Python JSON (NaN, Infinity) in every config file and names the field that cannot take it', async () => {
    const dir = path.join(tmp, 'python-json', 'vae');
    fs.cpSync(path.join(T2V, 'vae'), dir, { recursive: true });
    const text = fs.readFileSync(path.join(dir, 'config.json'), 'utf-8');
    fs.writeFileSync(path.join(dir, 'config.json'), text.replace(/"dropout": [^,]+,/, '"dropout": NaN,'));
    expect(Number.isNaN((readJsonFile(path.join(dir, 'config.json')) as { dropout: number }).dropout)).toBe(true);
    await expect(AutoencoderKLWan.fromPretrained(dir)).rejects.toThrow(/AutoencoderKLWan config: "dropout" must be a number in \[0, 1\], got the number NaN/);
  });
});

describe('a new layout is one file', () => {
  it('a repacked single-file VAE (synthetic layout in test/helpers/repacked-vae-layout.ts) loads equal to the Diffusers folder', () => {
    const vae = path.join(T2V, 'vae');
    const file = path.join(tmp, 'repacked', 'wan_vae_repacked.safetensors');
    rewrite(path.join(vae, 'diffusion_pytorch_model.safetensors'), file, (k) => `vae.${k}`, { config: fs.readFileSync(path.join(vae, 'config.json'), 'utf-8') });
    const family = { ...WAN_VAE_FAMILY, layouts: [REPACKED_WAN_VAE, ...WAN_VAE_FAMILY.layouts] as const };
    const before = tf.memory().numTensors;
    const repacked = loadPretrained(file, family, AutoencoderKLWanConfig, (c) => new AutoencoderKLWan(c));
    const reference = loadPretrained(vae, family, AutoencoderKLWanConfig, (c) => new AutoencoderKLWan(c));
    expect(repacked.config).toEqual(reference.config);
    expect(weightsOf(repacked)).toEqual(weightsOf(reference));
    repacked.dispose();
    reference.dispose();
    // Without the metadata there is no config: options.config is asked for, and nothing leaks.
    const bare = path.join(tmp, 'repacked', 'bare.safetensors');
    rewrite(path.join(vae, 'diffusion_pytorch_model.safetensors'), bare, (k) => `vae.${k}`);
    expect(() => loadPretrained(bare, family, AutoencoderKLWanConfig, (c) => new AutoencoderKLWan(c))).toThrow(ConfigError);
    expect(() => loadPretrained(bare, family, AutoencoderKLWanConfig, (c) => new AutoencoderKLWan(c))).toThrow(/repacked single-file keys .*pass options\.config/);
    expect(tf.memory().numTensors).toBe(before);
    const lines = fs.readFileSync(path.join(import.meta.dirname, 'helpers', 'repacked-vae-layout.ts'), 'utf-8').trimEnd().split('\n').length;
    expect(lines).toBeLessThanOrEqual(25);
  });
});
