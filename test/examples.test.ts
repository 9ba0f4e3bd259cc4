import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findOnPath } from '../src/video/ffmpeg.js';
import { decodeGif } from '../src/video/gif-decoder.js';
import { decodePng } from '../src/video/png-decoder.js';
import { fixtureDir } from './helpers/fixtures.js';
import { assembleTinyModel } from './helpers/tiny-model.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-examples-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Runs examples/<name> with tsx in a child process. */
function example(name: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const p = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'examples', name), ...args], { cwd: ROOT, encoding: 'utf-8', timeout: 60_000 });
  return { status: p.status, stdout: p.stdout, stderr: p.stderr };
}

describe('examples', () => {
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
    expect(example('generate.ts', []).status).toBe(1);
  });

  it('write-video.ts: GIF, PNG frames (and MP4 with ffmpeg) read back', () => {
    const out = path.join(tmp, 'video');
    const r = example('write-video.ts', [out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('gif: 24 frames, 96x64, 12.00 fps');
    const g = decodeGif(fs.readFileSync(path.join(out, 'disc.gif')));
    expect([g.frames.length, g.width, g.height]).toEqual([24, 96, 64]);
    const pngs = fs.readdirSync(path.join(out, 'disc-frames'));
    expect(pngs).toHaveLength(24);
    expect(decodePng(fs.readFileSync(path.join(out, 'disc-frames', pngs[0])))).toMatchObject({ width: 96, height: 64 });
    if (findOnPath('ffmpeg')) expect(r.stdout).toContain('mp4: 24 frames, 96x64, 12.00 fps');
    else expect(r.stdout).toContain('mp4: skipped');
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
