import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, type CliIO } from '../src/cli.js';
import { DEFAULT_BLOCKLIST } from '../src/video/blocklist.js';
import { blockedTerms, promptBlocklist, SafetyError, type SafetyChecker, type SafetyInput } from '../src/video/safety.js';
import { saveVideo, type RawVideo } from '../src/video/save-video.js';
import type { ProvenanceInput } from '../src/video/provenance.js';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-safety-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A folder holding one earlier file, so that "nothing written" is a listing that stays ['earlier.gif']. */
function folderWithFile(name: string): string {
  const d = path.join(tmp, name);
  fs.mkdirSync(d);
  fs.writeFileSync(path.join(d, 'earlier.gif'), 'x');
  return d;
}

/** F frames of 4×6, frame f filled with the grey level levels[f]. */
function greys(levels: number[]): RawVideo {
  const size = 4 * 6 * 3;
  const data = new Uint8Array(levels.length * size);
  levels.forEach((v, f) => data.fill(v, f * size, (f + 1) * size));
  return { data, shape: [levels.length, 4, 6, 3] };
}

const PROVENANCE: ProvenanceInput = { prompt: 'a grey square', seed: 1, steps: 2, guidance: 1, libraryVersion: '0', model: { id: 'test', checkpoints: [] } };

/** A classifier written here: flags the first frame whose mean level is over `limit`, with that mean. */
function brightness(limit: number, seen: number[] = []): SafetyChecker {
  return async ({ frames }: SafetyInput) => {
    for (let i = 0; i < frames.count; i++) {
      const px = await frames.frame(i);
      seen.push(i);
      const mean = px.reduce((a, b) => a + b, 0) / px.length;
      if (mean > limit) return { flagged: true, reason: `mean level ${mean} is over ${limit}`, frame: i };
    }
    return { flagged: false };
  };
}

describe('blockedTerms', () => {
  it('matches whole words, case- and diacritic-insensitively, several words in a row, Chinese anywhere', () => {
    expect(blockedTerms('A NÜDE figure', ['nude'])).toEqual(['nude']);
    expect(blockedTerms('Nudelman walks a dog', ['nude'])).toEqual([]);
    expect(blockedTerms('noodles, nude-coloured shoes', ['nude'])).toEqual(['nude']);
    expect(blockedTerms('explicit  Sex scene', ['explicit sex'])).toEqual(['explicit sex']);
    expect(blockedTerms('explicit talk about sex', ['explicit sex'])).toEqual([]);
    expect(blockedTerms('一个色情的视频', ['色情'])).toEqual(['色情']);
    expect(blockedTerms('Ｎｕｄｅ', ['nude'])).toEqual(['nude']);
  });

  it('the default list, replaced (terms) or extended (extra)', async () => {
    const frames = { count: 0, height: 1, width: 1, frame: async () => new Uint8Array(3) };
    expect(DEFAULT_BLOCKLIST).toContain('nude');
    expect(await promptBlocklist()({ frames, prompt: 'a nude statue' })).toEqual({ flagged: true, reason: 'the prompt contains the blocked term "nude"' });
    expect(await promptBlocklist()({ frames, prompt: 'a red circle moving right' })).toEqual({ flagged: false });
    expect(await promptBlocklist({ terms: ['circle'] })({ frames, prompt: 'a nude circle' })).toEqual({ flagged: true, reason: 'the prompt contains the blocked term "circle"' });
    expect(await promptBlocklist({ extra: ['Circle'] })({ frames, prompt: 'a nude circle' })).toEqual({ flagged: true, reason: 'the prompt contains the blocked terms "nude", "Circle"' });
  });
});

describe('the safetyChecker hook of saveVideo', () => {
  it('a blocked prompt writes nothing: the folder is unchanged, no sidecar, the reason in the SafetyError', async () => {
    const d = folderWithFile('blocked');
    const err = await saveVideo(greys([10, 20]), path.join(d, 'clip.gif'), { fps: 8, provenance: { ...PROVENANCE, prompt: 'a NAKED man' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetyError);
    expect((err as SafetyError).reason).toBe('the prompt contains the blocked term "naked"');
    expect((err as SafetyError).message).toBe('flagged by the safety checker: the prompt contains the blocked term "naked"; nothing was written');
    expect(fs.readdirSync(d)).toEqual(['earlier.gif']);
    // The prompt of the metadata is checked when there is no provenance.
    await expect(saveVideo(greys([10]), path.join(d, 'one.png'), { fps: 8, metadata: { prompt: 'porn' } })).rejects.toThrow(SafetyError);
    expect(fs.readdirSync(d)).toEqual(['earlier.gif']);
  });

  it.each([0, 2, 4])('a classifier that flags frame %i stops the write, naming the frame and its reason', async (k) => {
    const d = folderWithFile(`frame-${k}`);
    const levels = [10, 20, 30, 40, 50].map((v, f) => (f === k ? 250 : v));
    const seen: number[] = [];
    for (const [name, format] of [['clip.gif', undefined], ['frames', 'png'], ['clip.mp4', undefined]] as const) {
      const err = await saveVideo(greys(levels), path.join(d, name), { fps: 8, format, encoder: 'builtin', provenance: PROVENANCE, safetyChecker: brightness(200, seen) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SafetyError);
      expect(err).toMatchObject({ frame: k, reason: 'mean level 250 is over 200' });
      expect((err as Error).message).toBe(`flagged by the safety checker at frame ${k}: mean level 250 is over 200; nothing was written`);
      expect(fs.readdirSync(d)).toEqual(['earlier.gif']);
    }
    // The checker saw the frames up to k, as written: 0 … k each time.
    expect(seen).toEqual([0, 1, 2].flatMap(() => Array.from({ length: k + 1 }, (_, i) => i)));
  });

  it('a passing classifier writes the clip; false turns the default blocklist off', async () => {
    const d = folderWithFile('passes');
    await saveVideo(greys([10, 250]), path.join(d, 'a.gif'), { fps: 8, safetyChecker: brightness(251) });
    await saveVideo(greys([10]), path.join(d, 'b.gif'), { fps: 8, metadata: { prompt: 'a nude statue' }, safetyChecker: false });
    expect(fs.readdirSync(d).sort()).toEqual(['a.gif', 'b.gif', 'earlier.gif']);
  });

  it('the checker gets the prompt of the provenance record', async () => {
    const prompts: Array<string | undefined> = [];
    const d = folderWithFile('prompt');
    await saveVideo(greys([10]), path.join(d, 'a.gif'), { fps: 8, provenance: PROVENANCE, metadata: { prompt: 'other' }, safetyChecker: ({ prompt }) => (prompts.push(prompt), { flagged: false }) });
    expect(prompts).toEqual(['a grey square']);
  });

  it('wan-tfjs generate with a blocked prompt: exit 1 with the reason, before the model loads, nothing written', async () => {
    const d = folderWithFile('cli');
    let stderr = '';
    const io: CliIO = { stdout: { write: () => true }, stderr: { write: (s: string) => (stderr += s) }, env: {} };
    const t0 = performance.now();
    const code = await main(['generate', 'a Nüde statue', '--backend', 'cpu', '--out', path.join(d, 'x.gif')], io);
    expect(code).toBe(1);
    expect(stderr).toBe('wan-tfjs: flagged by the safety checker: the prompt contains the blocked term "nude"; nothing was written\n');
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(fs.readdirSync(d)).toEqual(['earlier.gif']);
  });
});
