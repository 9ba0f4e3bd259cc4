import '@tensorflow/tfjs-backend-cpu';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AutoencoderKLWan } from '../layers/autoencoder-kl-wan.js';
import { UMT5EncoderModel } from '../layers/umt5-encoder-model.js';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { SafetensorsFile } from '../weights/safetensors.js';

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
