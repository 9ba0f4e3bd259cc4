import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main, type CliIO } from '../src/cli.js';
import { ConfigError } from '../src/errors.js';
import { withModelFiles } from '../src/pipeline/model-files.js';
import { readModelIndex } from '../src/pipeline/model-index.js';
import { readPipelineSpec } from '../src/pipeline/pipeline-spec.js';
import { locateTokenizer } from '../src/text/tokenizer-location.js';
import { decodePng } from '../src/video/png-decoder.js';
import { diffusersToOriginalKey } from '../weights/layouts/wan-transformer-original.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../weights/safetensors.js';
import { fixtureDir } from './helpers/fixtures.js';
import { fp8Scaled, headerOnlyFileInOwnFolder, type HeaderEntry } from './helpers/header-only-safetensors.js';
import { assembleTinyModel } from './helpers/tiny-model.js';
import { originalWanDitEntries, type WanDitShape } from './helpers/wan-dit-keys.js';

/**
 * ComfyUI single files as the model (issue 17, item 3): `--transformer/--transformer-2/--vae/
 * --text-encoder/--tokenizer` and fromPretrained's same options. Settings resolve from headers alone
 * (sparse header-only files of the published sizes, no tensor data read); inspect names each file's
 * model and precision; the tiny fixtures repacked as single files generate what their folder does.
 */

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-model-files-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());



const A14B_T2V: WanDitShape = { dim: 5120, ffnDim: 13824, numLayers: 40, inDim: 16, outDim: 16 };
const A14B_I2V: WanDitShape = { ...A14B_T2V, inDim: 36 };

/** wan_2.1_vae: the keys naming the layout and the latent width z = 16. */
const VAE_21: HeaderEntry[] = [
  ['conv1.weight', [32, 32, 1, 1, 1]],
  ['conv2.weight', [16, 16, 1, 1, 1]],
  ['decoder.conv1.weight', [384, 16, 3, 3, 3]],
  ['encoder.conv1.weight', [96, 3, 3, 3, 3]],
];

/** umt5_xxl in transformers keys: vocabulary 256384, d_model 4096, 24 blocks. */
function umt5XxlEntries(): HeaderEntry[] {
  const [d, ff] = [4096, 10240];
  const entries: HeaderEntry[] = [['shared.weight', [256384, d]], ['encoder.final_layer_norm.weight', [d]]];
  for (let i = 0; i < 24; i++) {
    const b = `encoder.block.${i}.layer`;
    for (const p of ['q', 'k', 'v', 'o']) entries.push([`${b}.0.SelfAttention.${p}.weight`, [d, d]]);
    entries.push([`${b}.0.SelfAttention.relative_attention_bias.weight`, [32, 64]], [`${b}.0.layer_norm.weight`, [d]]);
    entries.push([`${b}.1.DenseReluDense.wi_0.weight`, [ff, d]], [`${b}.1.DenseReluDense.wi_1.weight`, [ff, d]], [`${b}.1.DenseReluDense.wo.weight`, [d, ff]], [`${b}.1.layer_norm.weight`, [d]]);
  }
  return entries;
}

/** An HF hub cache under `home` holding google/umt5-xxl's tokenizer.json (the fixture's). */
function hfHome(): string {
  const home = fs.mkdtempSync(path.join(tmp, 'hf-'));
  const snap = path.join(home, 'hub', 'models--google--umt5-xxl', 'snapshots', 'abc123');
  fs.mkdirSync(snap, { recursive: true });
  fs.copyFileSync(path.join(fixtureDir('tokenizer-unigram'), 'tokenizer.json'), path.join(snap, 'tokenizer.json'));
  return home;
}

async function run(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIO = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s), isTTY: false }, env };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

/** Fails the test when tensor data is read. */
function noDataRead(): () => void {
  const spies = [vi.spyOn(SafetensorsFile.prototype, 'read'), vi.spyOn(SafetensorsFile.prototype, 'readRaw')];
  return () => spies.forEach((s) => expect(s).not.toHaveBeenCalled());
}

describe('single files resolve from their headers (sparse header-only files, no data read)', () => {
  const high = () => headerOnlyFileInOwnFolder(tmp, 'wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors', fp8Scaled(originalWanDitEntries(A14B_T2V, 'model.diffusion_model.')));
  const low = () => headerOnlyFileInOwnFolder(tmp, 'wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors', fp8Scaled(originalWanDitEntries(A14B_T2V, 'model.diffusion_model.')));

  it('two T2V experts + VAE + umT5: A14B settings (boundary 0.875, 40 steps, 1280×720), the VAE config by latent width, the tokenizer from the HF cache', () => {
    const checkNoRead = noDataRead();
    const index = withModelFiles(
      undefined,
      { transformer: high(), transformer2: low(), vae: headerOnlyFileInOwnFolder(tmp, 'wan_2.1_vae.safetensors', VAE_21), textEncoder: headerOnlyFileInOwnFolder(tmp, 'umt5_xxl_fp8_e4m3fn_scaled.safetensors', fp8Scaled(umt5XxlEntries())) },
      { HF_HOME: hfHome() },
    );
    expect(index.layout).toBe('files');
    expect(index.boundaryRatio).toBe(0.875);
    expect(index.scheduler).toMatchObject({ _class_name: 'FlowUniPCMultistepScheduler', shift: 12 });
    expect(index.tokenizer).toMatch(/models--google--umt5-xxl\/snapshots\/abc123\/tokenizer\.json$/);
    const spec = readPipelineSpec(index);
    expect(spec).toMatchObject({ latentChannels: 16, conditionChannels: 0, innerDim: 5120, heads: 40, boundaryRatio: 0.875, vae: 'encode', scaleFactorSpatial: 8, hasTextEncoder: true });
    expect(spec.defaults).toMatchObject({ numInferenceSteps: 40, guidanceScale: 4, guidanceScale2: 3, width: 1280, height: 720 });
    checkNoRead();
  });

  it('I2V experts (in 36): boundary 0.9 unless given; --boundary-ratio outside (0, 1) is a ConfigError', () => {
    const i2v = () => headerOnlyFileInOwnFolder(tmp, 'wan2.2_i2v_high_noise_14B_fp16.safetensors', originalWanDitEntries(A14B_I2V, 'model.diffusion_model.'));
    expect(withModelFiles(undefined, { transformer: i2v(), transformer2: i2v() }, {}).boundaryRatio).toBe(0.9);
    expect(withModelFiles(undefined, { transformer: i2v(), transformer2: i2v(), boundaryRatio: 0.8 }, {}).boundaryRatio).toBe(0.8);
    expect(() => withModelFiles(undefined, { transformer: i2v(), transformer2: i2v(), boundaryRatio: 1.5 }, {})).toThrow(/--boundary-ratio: got 1.5/);
  });

  it('a text encoder without a tokenizer anywhere: a ConfigError naming --tokenizer and the HF cache looked in', () => {
    const home = fs.mkdtempSync(path.join(tmp, 'hf-empty-'));
    const te = headerOnlyFileInOwnFolder(tmp, 'umt5_xxl_fp8_e4m3fn_scaled.safetensors', fp8Scaled(umt5XxlEntries()));
    expect(() => withModelFiles(undefined, { transformer: high(), textEncoder: te }, { HF_HOME: home })).toThrow(ConfigError);
    expect(() => locateTokenizer(undefined, { HF_HOME: home })).toThrow(new RegExp(`--tokenizer DIR.*${path.join(home, 'hub').replace(/[/.]/g, '\\$&')}.*models--google--umt5-xxl.*models--Wan-AI--Wan2\\.1-T2V-1\\.3B-Diffusers`));
    expect(() => locateTokenizer(path.join(home, 'nothing'), {})).toThrow(/--tokenizer .*nothing/);
  });

  it('CLI generate: settings are checked against the headers before any weight is read (--size not a multiple of 16)', async () => {
    const checkNoRead = noDataRead();
    const r = await run(['generate', 'a cat', '--transformer', high(), '--transformer-2', low(), '--vae', headerOnlyFileInOwnFolder(tmp, 'wan_2.1_vae.safetensors', VAE_21), '--text-encoder', headerOnlyFileInOwnFolder(tmp, 'umt5_xxl_fp8_e4m3fn_scaled.safetensors', fp8Scaled(umt5XxlEntries())), '--size', '100x100', '--backend', 'cpu', '--out', path.join(tmp, 'x.gif')], { HF_HOME: hfHome() });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^wan-tfjs: .*(16|multiple)/);
    checkNoRead();
    const noTransformer = await run(['generate', 'a cat', '--vae', headerOnlyFileInOwnFolder(tmp, 'wan_2.1_vae.safetensors', VAE_21), '--backend', 'cpu']);
    expect(noTransformer.stderr).toMatch(/--transformer FILE is required without --model/);
    const missing = await run(['generate', 'a cat', '--transformer', path.join(tmp, 'nope.safetensors')]);
    expect(missing.stderr).toMatch(/--transformer .*nope\.safetensors: no such file or folder/);
  });

  it('CLI inspect FILE names the model, the precision and the fp8 scales', async () => {
    const r = await run(['inspect', high()]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('model: Wan DiT, config inferred: Wan2.2-T2V-A14B-like, 40 layers, dim 5120, in 16');
    expect(r.stdout).toMatch(/precision: F32 \d+, F8_E4M3 \d+; 400 fp8 weights scaled \(scale_weight\)/);
    const vae = await run(['inspect', headerOnlyFileInOwnFolder(tmp, 'wan_2.1_vae.safetensors', VAE_21)]);
    expect(vae.stdout).toContain('model: Wan VAE, published config wan2.1');
    expect(vae.stdout).toContain('precision: BF16 4; no fp8');
    const te = await run(['inspect', headerOnlyFileInOwnFolder(tmp, 'umt5_xxl_fp8_e4m3fn_scaled.safetensors', fp8Scaled(umt5XxlEntries()))]);
    expect(te.stdout).toContain('model: umT5 encoder, config inferred: 24 layers, d_model 4096, vocabulary 256384');
    const ti2v = await run(['inspect', headerOnlyFileInOwnFolder(tmp, 'wan2.2_ti2v_5B_fp16.safetensors', originalWanDitEntries({ dim: 3072, ffnDim: 14336, numLayers: 30, inDim: 48, outDim: 48 }))]);
    expect(ti2v.stdout).toContain('model: Wan DiT, config inferred: Wan2.2-TI2V-5B-like, 30 layers, dim 3072, in 48');
  });
});

describe('the tiny fixtures repacked as single files generate what their Diffusers folder does (cpu)', () => {
  /** Every tensor of `from` renamed into `dir/name` (f32), with `config` copied beside it when given. */
  function repack(from: string, name: string, rename: (k: string) => string, config?: string): string {
    const dir = fs.mkdtempSync(path.join(tmp, 'r-'));
    if (config !== undefined) fs.copyFileSync(config, path.join(dir, 'config.json'));
    const src = SafetensorsFile.open(from);
    const out: Record<string, TensorToWrite> = {};
    try {
      for (const k of src.keys()) {
        const t = src.read(k);
        out[rename(k)] = { shape: t.shape, data: t.data, dtype: 'F32' };
      }
    } finally {
      src.close();
    }
    writeSafetensors(path.join(dir, name), out);
    return path.join(dir, name);
  }

  /** The PNG frames a run wrote into `dir`, decoded. */
  function frames(dir: string): Uint8Array[] {
    return fs.readdirSync(dir).sort().map((f) => decodePng(new Uint8Array(fs.readFileSync(path.join(dir, f))), f).rgb);
  }

  it('--transformer (ComfyUI keys, model.diffusion_model.) --vae --text-encoder: the frames of --model; without --model, Wan\'s UniPC scheduler, within one level', async () => {
    const model = assembleTinyModel(path.join(tmp, 'tiny'));
    // the tiny DiT is 32 wide (heads not readable from the shapes) and the tiny VAE z 4 (no published one): their config.json goes beside the file; the umT5's size comes from its shapes
    const dit = repack(path.join(model, 'transformer', 'diffusion_pytorch_model.safetensors'), 'wan2.1_t2v_tiny.safetensors', (k) => `model.diffusion_model.${diffusersToOriginalKey(k)!}`, path.join(model, 'transformer', 'config.json'));
    const vae = repack(path.join(model, 'vae', 'diffusion_pytorch_model.safetensors'), 'wan_tiny_vae.safetensors', (k) => k, path.join(model, 'vae', 'config.json'));
    const te = repack(path.join(model, 'text_encoder', 'model.safetensors'), 'umt5_tiny.safetensors', (k) => k);
    const common = ['a red ball', '--backend', 'cpu', '--size', '48x32', '--frames', '5', '--steps', '2', '--seed', '7', '--shift', '5', '--guidance', '5', '--format', 'png', '--quiet'];
    const fromFolder = await run(['generate', ...common, '--model', model, '--out', path.join(tmp, 'folder-out')]);
    expect(fromFolder.stderr).toBe('');
    expect(fromFolder.code).toBe(0);
    const a = frames(path.join(tmp, 'folder-out'));
    expect(a).toHaveLength(5);
    expect(a[0].length).toBe(48 * 32 * 3);
    // the folder's scheduler with every weight from the single files: the same bytes
    const overridden = await run(['generate', ...common, '--model', model, '--transformer', dit, '--vae', vae, '--text-encoder', te, '--out', path.join(tmp, 'override-out')]);
    expect(overridden.stderr).toBe('');
    expect(frames(path.join(tmp, 'override-out'))).toEqual(a);
    // no folder: the scheduler is Wan's FlowUniPCMultistepScheduler (shift 5 as given), the fixture's
    // Diffusers UniPCMultistepScheduler with flow sigmas in other float arithmetic: frames within one level of 255
    const fromFiles = await run(['generate', ...common, '--transformer', dit, '--vae', vae, '--text-encoder', te, '--tokenizer', model, '--out', path.join(tmp, 'files-out')]);
    expect(fromFiles.stderr).toBe('');
    expect(fromFiles.code).toBe(0);
    const b = frames(path.join(tmp, 'files-out'));
    expect(b.map((f) => f.length)).toEqual(a.map((f) => f.length));
    let maxDiff = 0;
    b.forEach((f, i) => f.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v - a[i][j])))));
    expect(maxDiff).toBeLessThanOrEqual(1);
  });

  it('readModelIndex + fromPretrained-style overrides: a --model folder keeps its scheduler and defaults, with the given components in', () => {
    const model = assembleTinyModel(path.join(tmp, 'tiny'));
    const folder = readModelIndex(model);
    const te = repack(path.join(model, 'text_encoder', 'model.safetensors'), 'umt5_tiny.safetensors', (k) => k);
    const index = withModelFiles(folder, { textEncoder: te }, {});
    expect(index).toEqual({ ...folder, textEncoder: te });
  });
});
