import '@tensorflow/tfjs-backend-cpu';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AutoencoderKLWan } from '../layers/autoencoder-kl-wan.js';
import { applyLora } from '../layers/lora-linear.js';
import { UMT5EncoderModel } from '../layers/umt5-encoder-model.js';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { CheckpointError, ConfigError } from '../src/errors.js';
import type { GenerateOptions } from '../src/pipeline/generate-options.js';
import { readModelIndex } from '../src/pipeline/model-index.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { randn } from '../src/random.js';
import { saveLora } from '../src/train/lora-io.js';

const fixtures = path.join(__dirname, 'fixtures');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-save-pretrained-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

interface Saveable {
  namedWeights(): Map<string, { read(): { dataSync(): ArrayLike<number>; shape: number[]; dispose(): void } | undefined }>;
  savePretrained(dir: string): void;
  dispose(): void;
}

const cases: Array<{ name: string; folder: string; weights: string; load: (dir: string) => Promise<Saveable> }> = [
  { name: 'WanTransformer3DModel', folder: 'wan-transformer-t2v/transformer', weights: 'diffusion_pytorch_model.safetensors', load: (d) => WanTransformer3DModel.fromPretrained(d) },
  { name: 'AutoencoderKLWan', folder: 'wan-vae-2.1/vae', weights: 'diffusion_pytorch_model.safetensors', load: (d) => AutoencoderKLWan.fromPretrained(d) },
  { name: 'UMT5EncoderModel', folder: 'umt5-encoder/text_encoder', weights: 'model.safetensors', load: (d) => UMT5EncoderModel.fromPretrained(d) },
];

function weightsOf(m: Saveable): Map<string, { shape: number[]; data: number[] }> {
  const out = new Map<string, { shape: number[]; data: number[] }>();
  for (const [k, slot] of m.namedWeights()) {
    const t = slot.read()!;
    out.set(k, { shape: [...t.shape], data: Array.from(t.dataSync()) });
    t.dispose();
  }
  return out;
}

const listed = (dir: string) => fs.readdirSync(dir).sort();

describe('savePretrained (Diffusers / transformers layout)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  for (const c of cases) {
    it(`${c.name}: fromPretrained → savePretrained → fromPretrained gives equal weights and config`, async () => {
      const a = await c.load(path.join(fixtures, c.folder));
      const out = path.join(root, c.name, 'saved');
      a.savePretrained(out);
      expect(listed(out)).toEqual(['config.json', c.weights].sort());
      expect(listed(path.dirname(out))).toEqual(['saved']);
      // The checkpoint keys and shapes are those of the fixture (the Diffusers / transformers names, PyTorch layout).
      const original = SafetensorsFile.open(path.join(fixtures, c.folder, c.weights));
      const saved = SafetensorsFile.open(path.join(out, c.weights));
      try {
        expect(saved.keys().sort()).toEqual(original.keys().sort());
        for (const k of saved.keys()) expect(saved.info(k).shape, k).toEqual(original.info(k).shape);
      } finally {
        original.close();
        saved.close();
      }
      const b = await c.load(out);
      const wa = weightsOf(a);
      const wb = weightsOf(b);
      expect([...wb.keys()].sort()).toEqual([...wa.keys()].sort());
      for (const [k, v] of wa) expect(wb.get(k), k).toEqual(v);
      // config.json round-trips: saving the reloaded model writes the same JSON.
      const out2 = path.join(root, c.name, 'again');
      b.savePretrained(out2);
      expect(JSON.parse(fs.readFileSync(path.join(out2, 'config.json'), 'utf8'))).toEqual(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')));
      expect(JSON.stringify((a as unknown as { config: unknown }).config)).toEqual(JSON.stringify((b as unknown as { config: unknown }).config));
      a.dispose();
      b.dispose();
    });
  }

  it('replaces an existing component folder only once the new one is complete, refuses one holding other files; a failure leaves nothing', async () => {
    const m = await UMT5EncoderModel.fromPretrained(path.join(fixtures, 'umt5-encoder/text_encoder'));
    const parent = path.join(root, 'replace');
    const dir = path.join(parent, 'enc');
    fs.mkdirSync(dir, { recursive: true });
    // A folder holding anything else is refused and left as it was (it is replaced whole).
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    expect(() => m.savePretrained(dir)).toThrow(/holds other files \(notes\.txt\)/);
    expect(listed(dir)).toEqual(['notes.txt']);
    fs.rmSync(path.join(dir, 'notes.txt'));
    m.savePretrained(dir);
    expect(listed(dir)).toEqual(['config.json', 'model.safetensors']);
    // A saved component is replaced by a new save.
    m.savePretrained(dir);
    expect(listed(dir)).toEqual(['config.json', 'model.safetensors']);
    expect(listed(parent)).toEqual(['enc']);

    // An unwritable parent: the save fails and leaves no folder (and no temporary one).
    if (process.getuid?.() !== 0) {
      const locked = path.join(root, 'locked');
      fs.mkdirSync(locked);
      fs.chmodSync(locked, 0o500);
      try {
        expect(() => m.savePretrained(path.join(locked, 'enc'))).toThrow(/cannot save/);
        expect(listed(locked)).toEqual([]);
      } finally {
        fs.chmodSync(locked, 0o700);
      }
    }
    // A failure mid-save (the weights file cannot be created): no temporary folder stays, the existing folder is unchanged.
    const before = fs.readFileSync(path.join(dir, 'model.safetensors'));
    // (the library's fs is Node's builtin module object, patched here for one call)
    const nodeFs = process.getBuiltinModule('node:fs') as typeof fs;
    const openSync = nodeFs.openSync;
    nodeFs.openSync = ((file: fs.PathLike, ...rest: unknown[]) => {
      if (String(file).includes('model.safetensors')) throw Object.assign(new Error('EIO: simulated'), { code: 'EIO' });
      return (openSync as (...a: unknown[]) => number)(file, ...rest);
    }) as typeof fs.openSync;
    try {
      expect(() => m.savePretrained(dir)).toThrow(/cannot save \(EIO\)/);
      expect(() => m.savePretrained(path.join(parent, 'fresh'))).toThrow(/cannot save \(EIO\)/);
    } finally {
      nodeFs.openSync = openSync;
    }
    expect(listed(parent)).toEqual(['enc']);
    expect(fs.readFileSync(path.join(dir, 'model.safetensors'))).toEqual(before);
    // A path that is a file is refused.
    fs.writeFileSync(path.join(parent, 'file'), 'x');
    expect(() => m.savePretrained(path.join(parent, 'file'))).toThrow(/not a folder/);
    m.dispose();
  });
});

const TOY = path.join(__dirname, '..', 'models', 'toy');
const A14B = path.join(fixtures, 'pipeline-a14b');

/** Every file under `dir`, relative, sorted. */
const tree = (dir: string) => fs.readdirSync(dir, { recursive: true, encoding: 'utf-8' }).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();
const readJson = (file: string): unknown => JSON.parse(fs.readFileSync(file, 'utf8'));

async function frames(pipe: WanPipeline, options: GenerateOptions): Promise<{ data: Float32Array; shape: number[]; settings: Record<string, unknown> }> {
  const { frames: f, ...settings } = await pipe.textToVideo(options);
  const out = { data: Float32Array.from(await f.data()), shape: [...f.shape], settings };
  f.dispose();
  return out;
}

describe('WanPipeline.savePretrained (Diffusers pipeline folder)', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
  });
  it.runIf(fs.existsSync(path.join(TOY, 'model_index.json')))('the toy model (text encoder, tokenizer, one expert): fromPretrained(saved) generates the same frames with the same defaults', async () => {
    const a = await WanPipeline.fromPretrained(TOY);
    const options: GenerateOptions = { prompt: 'a green square moving up slowly on a gray background', seed: 5 };
    const before = await frames(a, options);
    const out = path.join(root, 'pipelines', 'toy');
    const tensors = tf.memory().numTensors;
    await a.savePretrained(out);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(tree(out)).toEqual([
      'model_index.json', 'scheduler/scheduler_config.json', 'text_encoder/config.json', 'text_encoder/model.safetensors',
      'tokenizer/tokenizer.json', 'tokenizer/tokenizer_config.json', 'transformer/config.json', 'transformer/diffusion_pytorch_model.safetensors',
      'vae/config.json', 'vae/diffusion_pytorch_model.safetensors', 'wan_tfjs.json',
    ]);
    expect(fs.readdirSync(path.dirname(out))).toEqual(['toy']);
    // The components' [library, class] as Diffusers writes them; the sampling defaults those of models/toy/wan_tfjs.json.
    expect(readJson(path.join(out, 'model_index.json'))).toMatchObject({
      _class_name: 'WanPipeline', expand_timesteps: false, scheduler: ['diffusers', 'UniPCMultistepScheduler'],
      text_encoder: ['transformers', 'UMT5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'],
      transformer: ['diffusers', 'WanTransformer3DModel'], transformer_2: [null, null], vae: ['diffusers', 'AutoencoderKLWan'],
    });
    expect(readJson(path.join(out, 'wan_tfjs.json'))).toMatchObject(readJson(path.join(TOY, 'wan_tfjs.json')) as Record<string, unknown>);
    expect(fs.readFileSync(path.join(out, 'tokenizer', 'tokenizer.json'))).toEqual(fs.readFileSync(path.join(TOY, 'tokenizer', 'tokenizer.json')));
    expect(readModelIndex(out).defaults).toEqual(readModelIndex(TOY).defaults);

    const b = await WanPipeline.fromPretrained(out);
    const after = await frames(b, options);
    expect(after.shape).toEqual(before.shape);
    expect(after.settings).toEqual(before.settings);
    expect(after.data).toEqual(before.data);
    a.dispose();
    b.dispose();
  });

  it('two experts (the a14b fixture, no text encoder), one resident at a time: the saved folder gives the same latents', async () => {
    const a = await WanPipeline.fromPretrained(A14B, { residency: 'active' });
    const cond = randn([1, 4, a.textDim], 1);
    const uncond = randn([1, 4, a.textDim], 2);
    const options: GenerateOptions = { promptEmbeds: cond, negativePromptEmbeds: uncond, height: 32, width: 48, numFrames: 5, numInferenceSteps: 4, seed: 3 };
    const latents = async (p: WanPipeline) => {
      const y = await p.generate(options);
      const data = Float32Array.from(await y.data());
      y.dispose();
      return data;
    };
    const before = await latents(a);
    // after the run the low-noise expert is the resident one: saving loads the high-noise one again
    expect(a.experts.map((e) => e.resident)).toEqual([false, true]);
    const out = path.join(root, 'pipelines', 'a14b');
    await a.savePretrained(out);
    expect(tree(out)).toEqual([
      'model_index.json', 'scheduler/scheduler_config.json', 'transformer/config.json', 'transformer/diffusion_pytorch_model.safetensors',
      'transformer_2/config.json', 'transformer_2/diffusion_pytorch_model.safetensors', 'vae/config.json', 'vae/diffusion_pytorch_model.safetensors', 'wan_tfjs.json',
    ]);
    expect(readJson(path.join(out, 'model_index.json'))).toMatchObject({ boundary_ratio: 0.875, text_encoder: [null, null], tokenizer: [null, null], transformer_2: ['diffusers', 'WanTransformer3DModel'] });
    // The experts' weights are the fixture's, key for key.
    for (const name of ['transformer', 'transformer_2']) {
      const saved = SafetensorsFile.open(path.join(out, name, 'diffusion_pytorch_model.safetensors'));
      const original = SafetensorsFile.open(path.join(A14B, name, 'diffusion_pytorch_model.safetensors'));
      try {
        expect(saved.keys().sort()).toEqual(original.keys().sort());
      } finally {
        saved.close();
        original.close();
      }
    }
    const b = await WanPipeline.fromPretrained(out);
    expect(b.boundaryRatio).toBe(0.875);
    expect(b.defaults).toEqual(a.defaults);
    expect(await latents(b)).toEqual(before);
    expect(await latents(a)).toEqual(before);
    tf.dispose([cond, uncond]);
    a.dispose();
    b.dispose();
  });

  it('refuses a loaded LoRA, an expert with adapters and a folder holding other files; a failure mid-save leaves nothing and an existing folder as it was', async () => {
    const pipe = await WanPipeline.fromPretrained(A14B);
    const parent = path.join(root, 'pipelines', 'refusals');
    const dir = path.join(parent, 'saved');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    await expect(pipe.savePretrained(dir)).rejects.toThrow(CheckpointError);
    await expect(pipe.savePretrained(dir)).rejects.toThrow(/holds other files \(notes\.txt\)/);
    expect(fs.readdirSync(dir)).toEqual(['notes.txt']);
    fs.rmSync(path.join(dir, 'notes.txt'));

    const dit = await WanTransformer3DModel.fromPretrained(path.join(A14B, 'transformer'));
    applyLora(dit, { rank: 2, alpha: 2 });
    const lora = path.join(root, 'pipelines', 'lora.safetensors');
    saveLora(dit, lora);
    dit.dispose();
    await pipe.loadLora(lora);
    await expect(pipe.savePretrained(dir)).rejects.toThrow(ConfigError);
    await expect(pipe.savePretrained(dir)).rejects.toThrow(/the LoRA '.*lora\.safetensors' is loaded; call unloadLora\(\) first/);
    pipe.unloadLora();
    applyLora((await pipe.experts[1]!.get()) as WanTransformer3DModel, { rank: 2, alpha: 2 });
    await expect(pipe.savePretrained(dir)).rejects.toThrow(/transformer_2 has LoRA adapters/);
    expect(fs.readdirSync(parent)).toEqual(['saved']);
    expect(fs.readdirSync(dir)).toEqual([]);
    pipe.dispose();

    // A saved pipeline is replaced by a new save; a write that fails (EIO on the scheduler config) leaves it as it was.
    const clean = await WanPipeline.fromPretrained(A14B);
    await clean.savePretrained(dir);
    const saved = tree(dir);
    const index = fs.readFileSync(path.join(dir, 'model_index.json'));
    await clean.savePretrained(dir);
    expect(tree(dir)).toEqual(saved);
    const nodeFs = process.getBuiltinModule('node:fs') as typeof fs;
    const writeFileSync = nodeFs.writeFileSync;
    nodeFs.writeFileSync = ((file: fs.PathOrFileDescriptor, ...rest: unknown[]) => {
      if (String(file).endsWith('scheduler_config.json')) throw Object.assign(new Error('EIO: simulated'), { code: 'EIO' });
      return (writeFileSync as (...a: unknown[]) => void)(file, ...rest);
    }) as typeof fs.writeFileSync;
    try {
      await expect(clean.savePretrained(dir)).rejects.toThrow(/cannot save \(EIO\); nothing was written/);
      await expect(clean.savePretrained(path.join(parent, 'fresh'))).rejects.toThrow(/cannot save \(EIO\)/);
    } finally {
      nodeFs.writeFileSync = writeFileSync;
    }
    expect(fs.readdirSync(parent)).toEqual(['saved']);
    expect(tree(dir)).toEqual(saved);
    expect(fs.readFileSync(path.join(dir, 'model_index.json'))).toEqual(index);
    clean.dispose();
  });
});
