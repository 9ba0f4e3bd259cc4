import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main, type CliIO } from '../src/cli.js';
import { formatInspect, type InspectReport } from '../src/pipeline/inspect.js';
import { fixtureDir } from './helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-inspect-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function inspect(...args: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: CliIO = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s), isTTY: false, columns: 100 },
    env: {},
  };
  const code = await main(['inspect', ...args], io);
  return { code, stdout, stderr };
}

/** A safetensors file from header text and a data area of `data` zero bytes. */
function stFile(name: string, header: string, data: number): string {
  const h = Buffer.from(header, 'utf-8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  const f = path.join(tmp, name);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, Buffer.concat([len, h, new Uint8Array(data)]));
  return f;
}

/** A copy of the pipeline-t2v model folder with `edit` applied. */
function modelCopy(name: string, edit: (dir: string) => void): string {
  const dir = path.join(tmp, name);
  fs.cpSync(fixtureDir('pipeline-t2v'), dir, { recursive: true });
  edit(dir);
  return dir;
}

const DEEP = '['.repeat(100_000) + ']'.repeat(100_000);
const LONG = 'v'.repeat(100_000);

/** Every run of `inspect`, plain, --all and --json: exit 0 or one line on stderr with exit 1, never 2. */
async function expectHandled(target: string, expected: 0 | 1): Promise<Run[]> {
  const runs = [await inspect(target), await inspect(target, '--all'), await inspect(target, '--json')];
  for (const r of runs) {
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(expected);
    if (expected === 1) {
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.length).toBeLessThan(1000);
    }
  }
  return runs;
}

describe('inspect on hostile input', () => {
  it('a header nested 100,000 deep, in the shape or in an ignored field: exit 1, one line', async () => {
    for (const [name, header] of [
      ['deep-shape.safetensors', `{"a":{"dtype":"F32","shape":${DEEP},"data_offsets":[0,4]}}`],
      ['deep-extra.safetensors', `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":${DEEP}}}`],
    ]) {
      const [r] = await expectHandled(stFile(name, header, 4), 1);
      expect(r.stderr).toMatch(/header nests deeper than 128 levels/);
    }
  });

  it('200,000 tensors: listed without spreading them into Math.max', () => {
    const n = 200_000;
    const tensors = Array.from({ length: n }, (_, i) => ({ name: `t${i}`, dtype: 'F32', shape: [0] }));
    const checkpoint = { source: 'many.safetensors', tensorCount: n, parameters: 0, bytes: 0, dtypes: { F32: n }, tensors };
    const report: InspectReport = { path: 'many.safetensors', kind: 'checkpoint', components: [{ name: 'many.safetensors', path: 'many.safetensors', checkpoint }], parameters: 0 };
    const some = formatInspect(report, { tensors: true, maxTensors: 20 });
    expect(some.join('\n')).toContain(`${n} tensors (F32 ×${n})`);
    expect(some.join('\n')).toContain(`… ${n - 20} more`);
    const all = formatInspect(report, { tensors: true, maxTensors: Infinity });
    expect(all.filter((l) => /^\s+t\d+\s+F32\s+\[0\]$/.test(l))).toHaveLength(n);
  });

  it('a valid tensor of rank 100,000, a long metadata value and a control character in a name print as short lines', async () => {
    const shape = `[${Array(100_000).fill(1).join(',')}]`;
    const header = `{"__metadata__":{"note":"${LONG}","esc":"a\\u001b[2Jb"},"big":{"dtype":"F32","shape":${shape},"data_offsets":[0,4]},"x\\ny":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`;
    const [plain, , json] = await expectHandled(stFile('wide.safetensors', header, 8), 0);
    for (const line of plain.stdout.split('\n')) expect(line.length).toBeLessThan(400);
    expect(plain.stdout).toMatch(/big\s+F32\s+\[1, 1, 1, 1, 1, 1, 1, 1, … 100,000 dimensions\]/);
    expect(plain.stdout).toMatch(/note=v+… \(100,000 characters\)/);
    expect(plain.stdout).toContain('esc=a\\u001b[2Jb');
    expect(plain.stdout).toMatch(/x\\ny\s+F32\s+\[1\]/);
    expect(plain.stdout).not.toContain('\u001b');
    // --json is data: it keeps every value whole
    const report = JSON.parse(json.stdout) as { components: Array<{ checkpoint: { tensors: Array<{ name: string; shape: number[] }>; metadata: Record<string, string> } }> };
    expect(report.components[0].checkpoint.tensors.find((t) => t.name === 'big')?.shape).toHaveLength(100_000);
    expect(report.components[0].checkpoint.metadata.note).toBe(LONG);
  });

  it('configs nested 100,000 deep (model_index.json, a component config.json): exit 1, one line', async () => {
    const index = modelCopy('deep-index', (d) => {
      const j = JSON.parse(fs.readFileSync(path.join(d, 'model_index.json'), 'utf-8')) as Record<string, unknown>;
      fs.rmSync(path.join(d, 'vae'), { recursive: true });
      fs.writeFileSync(path.join(d, 'model_index.json'), JSON.stringify(j).replace(/"vae":\s*\[[^\]]*\]/, `"vae":["diffusers",${DEEP}]`));
    });
    expect((await expectHandled(index, 1))[0].stderr).toMatch(/model_index\.json: JSON nests deeper than 128 levels/);
    const config = modelCopy('deep-config', (d) => fs.writeFileSync(path.join(d, 'vae', 'config.json'), `{"_class_name":"AutoencoderKLWan","x":${DEEP}}`));
    expect((await expectHandled(config, 1))[0].stderr).toMatch(/config\.json: JSON nests deeper than 128 levels/);
  });

  it('model_index.json values of the wrong type are named by type, not printed', async () => {
    const cls = modelCopy('class-array', (d) => {
      const j = JSON.parse(fs.readFileSync(path.join(d, 'model_index.json'), 'utf-8')) as Record<string, unknown>;
      j._class_name = Array(100_000).fill('WanPipeline');
      fs.writeFileSync(path.join(d, 'model_index.json'), JSON.stringify(j));
    });
    expect((await expectHandled(cls, 1))[0].stderr).toMatch(/_class_name is an array of 100,000 entries, not a string/);
    const vae = modelCopy('vae-entry', (d) => {
      const j = JSON.parse(fs.readFileSync(path.join(d, 'model_index.json'), 'utf-8')) as Record<string, unknown>;
      j.vae = ['diffusers', Array(100_000).fill([[1]])];
      fs.rmSync(path.join(d, 'vae'), { recursive: true });
      fs.writeFileSync(path.join(d, 'model_index.json'), JSON.stringify(j));
    });
    expect((await expectHandled(vae, 1))[0].stderr).toMatch(/lists "vae" \(an array of 100,000 entries\) but the folder is missing/);
  });

  it('a config with long values prints short lines; a config that is not an object is an error', async () => {
    const long = modelCopy('long-config', (d) => {
      const f = path.join(d, 'vae', 'config.json');
      const j = JSON.parse(fs.readFileSync(f, 'utf-8')) as Record<string, unknown>;
      fs.writeFileSync(f, JSON.stringify({ ...j, note: LONG, table: Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, i])) }));
    });
    const [plain] = await expectHandled(long, 0);
    for (const line of plain.stdout.split('\n')) expect(line.length).toBeLessThan(2000);
    expect(plain.stdout).toMatch(/note=a string of 100,000 characters/);
    expect(plain.stdout).toMatch(/table=an object/);
    for (const [name, text] of [['null-config', 'null'], ['array-config', '[1,2]'], ['number-config', '5']]) {
      const dir = modelCopy(name, (d) => fs.writeFileSync(path.join(d, 'vae', 'config.json'), text));
      expect((await expectHandled(dir, 1))[0].stderr).toMatch(/vae\/config\.json: is (null|an array of 2 entries|the number 5), not a JSON object/);
    }
  });

  it('a shard index naming a deep value, "..", or a folder as a shard: exit 1, one line', async () => {
    const dir = path.join(tmp, 'shards');
    fs.mkdirSync(path.join(dir, 'folder.safetensors'), { recursive: true });
    const index = path.join(dir, 'model.safetensors.index.json');
    for (const [wm, re] of [
      [`{"a":${'['.repeat(10_000)}${']'.repeat(10_000)}}`, /tensor 'a': weight_map entry an array of 1 entry is not a shard file name/],
      ['{"a":".."}', /weight_map entry "\.\." is not a shard file name/],
      ['{"a":"folder.safetensors"}', /folder\.safetensors: not a regular file/],
    ] as const) {
      fs.writeFileSync(index, `{"weight_map":${wm}}`);
      expect((await expectHandled(index, 1))[0].stderr).toMatch(re);
    }
  });

  it('a folder named like a checkpoint: exit 1, one line', async () => {
    const dir = path.join(tmp, 'folder-ckpt');
    fs.mkdirSync(path.join(dir, 'model.safetensors'), { recursive: true });
    expect((await expectHandled(dir, 1))[0].stderr).toMatch(/model\.safetensors: not a regular file/);
  });
});
