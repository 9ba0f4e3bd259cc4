import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findOnPath } from '../src/video/ffmpeg.js';
import { decodeGif } from '../src/video/gif-decoder.js';
import { decodePng } from '../src/video/png-decoder.js';
import { encodePng } from '../src/video/png-encoder.js';
import { fixtureDir } from './helpers/fixtures.js';
import { assembleTinyModel } from './helpers/tiny-model.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
// tsx's loader by URL, so an example runs from any working directory.
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-examples-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/**
 * Runs examples/<name> with tsx in a child process. The examples import `wan-tfjs` as a user's
 * project does; here test/tsconfig.examples.json maps it to the source (test/packed.test.ts runs
 * them against the packed tarball, with their defaults).
 */
function example(name: string, args: string[], env: Record<string, string> = {}, cwd = ROOT): { status: number | null; stdout: string; stderr: string } {
  const p = spawnSync(process.execPath, ['--import', TSX, path.join(ROOT, 'examples', name), ...args], {
    cwd,
    encoding: 'utf-8',
    timeout: 120_000,
    env: { ...process.env, TSX_TSCONFIG_PATH: path.join(ROOT, 'test', 'tsconfig.examples.json'), ...env },
  });
  return { status: p.status, stdout: p.stdout, stderr: p.stderr };
}

// examples/finetune-lora.ts runs with its defaults in test/example-finetune-lora.test.ts (and from the
// packed tarball in test/packed.test.ts).
describe('examples', () => {
  it('import the package by name, never the repository\'s source', () => {
    for (const f of fs.readdirSync(path.join(ROOT, 'examples')).filter((n) => n.endsWith('.ts'))) {
      const src = fs.readFileSync(path.join(ROOT, 'examples', f), 'utf-8');
      const specs = [...src.matchAll(/^import\s[^;]*?from\s+'([^']+)'|^import\s+'([^']+)'/gm)].map((m) => m[1] ?? m[2]);
      expect(specs.length, f).toBeGreaterThan(0);
      expect(specs.filter((s) => s.startsWith('.')), f).toEqual([]);
      expect(specs.some((s) => /^wan-tfjs(\/|$)/.test(s)), f).toBe(true);
    }
  });

  it('generate.ts: prompt → GIF on a tiny model with a text encoder', () => {
    const model = assembleTinyModel(path.join(tmp, 'tiny'));
    const out = path.join(tmp, 'fox.gif');
    const r = example('generate.ts', [model, out, 'a red fox']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/step 2\/2/);
    // 5 frames of 48×32 at 8 fps: the tiny model's wan_tfjs.json.
    const g = decodeGif(fs.readFileSync(out));
    expect([g.frames.length, g.width, g.height]).toEqual([5, 48, 32]);
    // GIF delays are whole centiseconds: the total is 5·100/8 = 62.5 cs rounded.
    expect(Math.abs(g.frames.reduce((n, f) => n + f.delayCs, 0) - 62.5)).toBeLessThanOrEqual(0.5);
    expect(JSON.parse(g.comments[0])).toMatchObject({ prompt: 'a red fox', seed: '42' });
  });

  it('generate.ts with a first frame: image-to-video on a per-token-timestep model', () => {
    const model = assembleTinyModel(path.join(tmp, 'tiny-ti2v'), { expandTimesteps: true });
    const frame = path.join(tmp, 'first.png');
    fs.writeFileSync(frame, encodePng(Uint8Array.from({ length: 32 * 48 * 3 }, (_, i) => (i * 29) % 256), 48, 32));
    const out = path.join(tmp, 'fox-i2v.gif');
    const r = example('generate.ts', [model, out, 'a red fox', frame]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/5 frames, 48x32, 8 fps, from .*first\.png/);
    expect(decodeGif(fs.readFileSync(out)).frames).toHaveLength(5);
    const t2v = example('generate.ts', [assembleTinyModel(path.join(tmp, 'tiny')), out, 'a red fox', frame]);
    expect(t2v.status).toBe(1);
    expect(t2v.stderr).toMatch(/ConfigError: image: a first frame needs an image-to-video model/);
  });

  it('write-video.ts: GIF, PNG frames and MP4 read back', () => {
    const out = path.join(tmp, 'video');
    const r = example('write-video.ts', [out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('gif: 24 frames, 96x64, 12.00 fps');
    const g = decodeGif(fs.readFileSync(path.join(out, 'disc.gif')));
    expect([g.frames.length, g.width, g.height]).toEqual([24, 96, 64]);
    const pngs = fs.readdirSync(path.join(out, 'disc-frames'));
    expect(pngs).toHaveLength(24);
    expect(decodePng(fs.readFileSync(path.join(out, 'disc-frames', pngs[0])))).toMatchObject({ width: 96, height: 64 });
    expect(r.stdout).toContain('mp4: 24 frames, 96x64, 12.00 fps');
    expect(r.stdout).toContain(findOnPath('ffmpeg') ? '(ffmpeg)' : '(builtin)');
  });

  it('reuse-attention.ts: a pretrained attention layer alone equals it inside the DiT, and fine-tunes', () => {
    const r = example('reuse-attention.ts', [fixtureDir('pipeline-t2v')]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/loaded to_q\.weight, .*norm_k\.weight \(\d+ parameters\)/);
    expect(r.stdout).toContain('max |standalone − inside the DiT| = 0');
    const m = /fine-tuning loss: ([\d.]+) -> ([\d.]+)/.exec(r.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBeLessThan(Number(m![1]) / 2);
  });
});
