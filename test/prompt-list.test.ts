import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { execFileSync, spawnSync } from 'node:child_process';
import { encode as encodePng } from 'fast-png';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main, type CliIO } from '../src/cli.js';
import { AbortError, ConfigError } from '../src/errors.js';
import { outputName, parsePromptList, slug } from '../src/jobs/prompt-list.js';
import { chooseBatch, formatSummary, MAX_AUTO_BATCH, planPromptList, runPromptList, type ClipEvent } from '../src/jobs/run-prompt-list.js';
import { readModelIndex } from '../src/pipeline/model-index.js';
import { readPipelineSpec } from '../src/pipeline/pipeline-spec.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { findOnPath } from '../src/video/ffmpeg.js';
import { decodeGif } from '../src/video/gif-decoder.js';
import { verifyClip } from '../src/video/provenance.js';

/**
 * node:fs wrapped so a test can make the output's writes fail like a full or read-only disk:
 * `openFails(path)` gives the errno code for an openSync of that path, `writeFails` one for every
 * writeSync while it is set. Without them every call is the real one.
 */
const fault = vi.hoisted(() => ({
  openFails: undefined as ((file: string) => string | undefined) | undefined,
  writeFails: undefined as string | undefined,
}));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const failure = (code: string, syscall: string, target: unknown) => Object.assign(new Error(`${code}: injected, ${syscall} '${String(target)}'`), { code, syscall, path: String(target) });
  const openSync = (...args: Parameters<typeof real.openSync>): number => {
    const code = fault.openFails?.(String(args[0]));
    if (code) throw failure(code, 'open', args[0]);
    return real.openSync(...args);
  };
  const writeSync = (...args: Parameters<typeof real.writeSync>): number => {
    if (fault.writeFails) throw failure(fault.writeFails, 'write', args[0]);
    return (real.writeSync as (...a: Parameters<typeof real.writeSync>) => number)(...args);
  };
  const mocked = { ...real, openSync, writeSync };
  return { ...mocked, default: mocked };
});

afterEach(() => {
  fault.openFails = undefined;
  fault.writeFails = undefined;
});

/** ffmpeg as the CLI finds it (the test setup puts the devDependency's first on PATH). */
const FFMPEG = findOnPath('ffmpeg');

const TOY = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'models', 'toy');
const FAST = { numInferenceSteps: 1, seed: 5 };

let tmp: string;
let pipe: WanPipeline;
const spec = readPipelineSpec(readModelIndex(TOY));

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-prompt-list-'));
  pipe = await WanPipeline.fromPretrained(TOY);
});

afterAll(() => {
  pipe.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const FOUR = ['{"prompt": "a red ball", "seed": 1}', '{"prompt": "a blue cube", "seed": 2}', '', '{"prompt": "green waves", "name": "waves.gif"}', '{"prompt": "a yellow star", "steps": 2}'].join('\n');

function parseError(text: string): string {
  try {
    parsePromptList(text, 'jobs.jsonl', 'gif');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('parsed');
}

describe('parsePromptList', () => {
  it('reads prompt, negative prompt, seed, size, frames, steps, guidance and name; blank lines keep the numbering', () => {
    const jobs = parsePromptList('{"prompt":"A Red Fox, in snow!","negative_prompt":"blur","seed":7,"size":"48x32","frames":9,"steps":3,"guidance":2.5,"name":"fox.mp4"}\n\n{"prompt":"x"}', 'jobs.jsonl', 'gif');
    expect(jobs).toEqual([
      { line: 1, prompt: 'A Red Fox, in snow!', negativePrompt: 'blur', seed: 7, width: 48, height: 32, numFrames: 9, numInferenceSteps: 3, guidanceScale: 2.5, name: 'fox.mp4' },
      { line: 3, prompt: 'x', name: '0003-x.gif' },
    ]);
  });

  it('default names: the line number in 4 digits and the prompt as ASCII words, at most 40 characters', () => {
    expect(outputName(12, 'Crème brûlée — on a plate', 'mp4')).toBe('0012-creme-brulee-on-a-plate.mp4');
    expect(slug('日本語')).toBe('clip');
    const long = slug('one two three four five six seven eight nine ten eleven');
    expect(long.length).toBeLessThanOrEqual(40);
    expect(long).toBe('one-two-three-four-five-six-seven-eight');
  });

  it('refuses a malformed line naming the file, the line and the field', () => {
    expect(parseError('{"prompt":"a"}\n{"prompt": "b"')).toMatch(/^jobs\.jsonl:2: not JSON/);
    expect(parseError('["a"]')).toMatch(/^jobs\.jsonl:1: got \["a"\], expected a JSON object/);
    expect(parseError('{"prompt":"a","sede":3}')).toMatch(/^jobs\.jsonl:1: unknown field "sede"/);
    expect(parseError('{"prompt":"  "}')).toMatch(/^jobs\.jsonl:1: prompt: got "  ", expected a non-empty string/);
    expect(parseError('{"prompt":"a","seed":-1}')).toMatch(/^jobs\.jsonl:1: seed: got -1/);
    expect(parseError('{"prompt":"a","seed":1.5}')).toMatch(/seed: got 1\.5/);
    expect(parseError('{"prompt":"a","size":"48"}')).toMatch(/^jobs\.jsonl:1: size: got "48", expected "WIDTHxHEIGHT"/);
    expect(parseError('{"prompt":"a","frames":0}')).toMatch(/frames: got 0, expected a positive integer/);
    expect(parseError('{"prompt":"a","steps":"2"}')).toMatch(/steps: got "2", expected a positive integer/);
    expect(parseError('{"prompt":"a","guidance":"high"}')).toMatch(/guidance: got "high", expected a number/);
    expect(parseError('{"prompt":"a","name":"../x.gif"}')).toMatch(/name: got "\.\.\/x\.gif", expected a file name without folders/);
    expect(parseError('{"prompt":"a","name":"x.avi"}')).toMatch(/name: got "x\.avi", expected a name ending in \.mp4, \.gif, \.png/);
    expect(parseError('\n\n')).toMatch(/^jobs\.jsonl: no prompts/);
  });

  it("subtitles and audio: file paths, a relative one resolved against the list's folder", () => {
    const jobs = parsePromptList('{"prompt":"a","subtitles":"subs/a.srt","audio":"/music/t.wav"}', path.join('/lists', 'jobs.jsonl'), 'mp4');
    expect(jobs[0]).toMatchObject({ subtitles: path.resolve('/lists/subs/a.srt'), audio: path.resolve('/music/t.wav') });
    expect(parseError('{"prompt":"a","audio":3}')).toMatch(/^jobs\.jsonl:1: audio: got 3, expected a file path/);
    expect(parseError('{"prompt":"a","subtitles":" "}')).toMatch(/^jobs\.jsonl:1: subtitles: got " ", expected a file path/);
  });

  it('refuses two lines with one output name, naming both lines', () => {
    expect(parseError('{"prompt":"a","name":"x.gif"}\n{"prompt":"b","name":"x.gif"}')).toMatch(/^jobs\.jsonl:2: name: "x\.gif" is line 1's output too/);
    expect(parseError('{"prompt":"a","name":"0002-b.gif"}\n{"prompt":"b"}')).toMatch(/^jobs\.jsonl:2: name: "0002-b\.gif" is line 1's/);
  });
});

describe('planPromptList', () => {
  it("refuses a line the model cannot take, naming the file and line, before anything runs", () => {
    const jobs = parsePromptList('{"prompt":"a"}\n{"prompt":"b","frames":6}', 'jobs.jsonl', 'gif');
    expect(() => planPromptList(spec, jobs, 'jobs.jsonl', path.join(tmp, 'never'), FAST)).toThrow(/^jobs\.jsonl:2: numFrames: got 6/);
    expect(fs.existsSync(path.join(tmp, 'never'))).toBe(false);
  });

  it('groups lines by settings, lines in file order; a line with the defaults joins the lines that leave them out', () => {
    const jobs = parsePromptList(FOUR + '\n{"prompt":"z","steps":1}', 'jobs.jsonl', 'gif');
    const plan = planPromptList(spec, jobs, 'jobs.jsonl', path.join(tmp, 'none'), FAST);
    expect(plan.groups.map((g) => g.map((j) => j.line))).toEqual([[1, 2, 4, 6], [5]]);
    expect(plan.groups[0].map((j) => j.seed)).toEqual([1, 2, 5, 5]);
  });
});

describe('runPromptList', () => {
  it('a run of 4 lines writes 4 clips; an aborted run resumes, making only the missing ones', async () => {
    const out = path.join(tmp, 'resume');
    const jobs = parsePromptList(FOUR, 'jobs.jsonl', 'gif');
    const ctrl = new AbortController();
    const first: ClipEvent[] = [];
    // batches of one: the abort after the second clip leaves two made, two missing
    const run = runPromptList(pipe, planPromptList(spec, jobs, 'jobs.jsonl', out, FAST), {
      batch: 1,
      signal: ctrl.signal,
      onClip: (e) => {
        first.push(e);
        if (first.length === 2) ctrl.abort();
      },
    });
    await expect(run).rejects.toThrow(AbortError);
    const made = fs.readdirSync(out).sort();
    expect(made).toEqual(['0001-a-red-ball.gif', '0002-a-blue-cube.gif']);
    const before = new Map(made.map((n) => [n, fs.statSync(path.join(out, n))]));

    const events: ClipEvent[] = [];
    const plan = planPromptList(spec, jobs, 'jobs.jsonl', out, FAST);
    expect(plan.finished.map((j) => j.line)).toEqual([1, 2]);
    const summary = await runPromptList(pipe, plan, { onClip: (e) => events.push(e) });
    expect(fs.readdirSync(out).sort()).toEqual(['0001-a-red-ball.gif', '0002-a-blue-cube.gif', '0005-a-yellow-star.gif', 'waves.gif']);
    for (const [n, st] of before) {
      const now = fs.statSync(path.join(out, n));
      expect([now.ino, now.mtimeMs]).toEqual([st.ino, st.mtimeMs]);
    }
    expect(events.map((e) => [e.status, e.job.line])).toEqual([['finished', 1], ['finished', 2], ['made', 4], ['made', 5]]);
    expect(summary).toMatchObject({ made: 2, skipped: 2, failed: [] });
    expect(summary.clipsPerHour).toBeCloseTo((2 * 3_600_000) / summary.totalMs, 6);
    expect(formatSummary(summary)[0]).toMatch(/^made 2, skipped 2 \(already done\), failed 0; \d+\.\ds, \d+\.\d clips\/hour/);
  });

  it('chooseBatch: 1 on the CPU backends; on cuda the largest batch up to MAX_AUTO_BATCH whose estimate fits the free memory', () => {
    const spec = readPipelineSpec(readModelIndex(TOY));
    const size = { numFrames: 5, height: 32, width: 32 };
    const roomy = { freeBytes: 2 ** 40, bytesPerElement: 2, maxTensorElements: 2 ** 32 - 1, compositeAttention: false };
    for (const backend of ['cpu', 'wasm', 'tensorflow']) expect(chooseBatch(spec, size, 8, { ...roomy, backend })).toBe(1);
    expect(chooseBatch(spec, size, 8, { ...roomy, backend: 'cuda' })).toBe(MAX_AUTO_BATCH);
    expect(chooseBatch(spec, size, 3, { ...roomy, backend: 'cuda' })).toBe(3);
    expect(chooseBatch(spec, size, 8, { ...roomy, backend: 'cuda', freeBytes: 1 })).toBe(1);
  });

  it('batches of equal settings: one textToVideo call per batch; a clip that cannot be written fails alone', async () => {
    const out = path.join(tmp, 'batch');
    fs.mkdirSync(path.join(out, '0002-a-blue-cube.gif'), { recursive: true });
    fs.writeFileSync(path.join(out, '0002-a-blue-cube.gif', 'in-the-way'), '');
    const plan = planPromptList(spec, parsePromptList(FOUR, 'jobs.jsonl', 'gif'), 'jobs.jsonl', out, FAST);
    const batches: number[][] = [];
    const summary = await runPromptList(pipe, plan, { batch: 4, onBatch: (b) => batches.push(b.map((j) => j.line)) });
    expect(batches).toEqual([[1, 2, 4], [5]]);
    expect(summary.batches).toEqual([3, 1]);
    expect(summary.made).toBe(3);
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]).toMatchObject({ line: 2, name: '0002-a-blue-cube.gif' });
    expect(formatSummary(summary)[1]).toMatch(/^ {2}failed line 2 \(0002-a-blue-cube\.gif\): /);
    expect(fs.readdirSync(out).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});

describe('generate --prompts', () => {
  function cli(): { io: CliIO; out: () => string; err: () => string } {
    let out = '';
    let err = '';
    return { io: { stdout: { write: (s: string | Uint8Array) => (out += String(s)) }, stderr: { write: (s: string) => (err += s) }, env: {} }, out: () => out, err: () => err };
  }

  it('refuses --prompts with a prompt or --out, and --out-dir or --batch without --prompts', async () => {
    const file = path.join(tmp, 'jobs.jsonl');
    fs.writeFileSync(file, FOUR);
    const cases: Array<[string[], RegExp]> = [
      [['a prompt', '--prompts', file, '--out-dir', tmp], /give no prompt argument or --prompt with it/],
      [['--prompts', file, '--out-dir', tmp, '--out', 'x.gif'], /--out names one clip; with --prompts the clips go into --out-dir/],
      [['--prompts', file], /--prompts needs --out-dir DIR/],
      [['--out-dir', tmp], /--out-dir goes with --prompts FILE/],
      [['a prompt', '--batch', '2'], /give no prompt argument/],
      [['--prompts', file, '--out-dir', tmp, '--batch', '0'], /--batch: got 0, expected a positive integer/],
      [['--prompts', path.join(tmp, 'missing.jsonl'), '--out-dir', tmp], /--prompts: cannot read .*missing\.jsonl \(ENOENT\)/],
    ];
    for (const [args, message] of cases) {
      const c = cli();
      expect(await main(['generate', ...args, '--backend', 'cpu'], c.io)).toBe(1);
      expect(c.err()).toMatch(message);
    }
  });

  it('writes the clips with their provenance sidecars, prints a line per clip and the summary; a second run makes nothing', async () => {
    const file = path.join(tmp, 'two.jsonl');
    fs.writeFileSync(file, '{"prompt":"a red ball","seed":1}\n{"prompt":"a blue cube","seed":2}\n');
    const out = path.join(tmp, 'cli-clips');
    const c = cli();
    expect(await main(['generate', '--prompts', file, '--out-dir', out, '--format', 'gif', '--steps', '1', '--backend', 'cpu'], c.io)).toBe(0);
    expect(fs.readdirSync(out).sort()).toEqual(['0001-a-red-ball.gif', '0001-a-red-ball.gif.json', '0002-a-blue-cube.gif', '0002-a-blue-cube.gif.json']);
    for (const [name, prompt, seed] of [['0001-a-red-ball.gif', 'a red ball', 1], ['0002-a-blue-cube.gif', 'a blue cube', 2]] as const) {
      const report = verifyClip(path.join(out, name));
      expect(report.differences, name).toEqual([]);
      expect(report.sidecar.provenance).toMatchObject({ prompt, seed, steps: 1 });
    }
    expect(c.err()).toMatch(/\[1\/2\] line 1: wrote .*0001-a-red-ball\.gif \(seed 1/);
    expect(c.out()).toMatch(/^made 2, skipped 0 \(already done\), failed 0;/);
    const again = cli();
    expect(await main(['generate', '--prompts', file, '--out-dir', out, '--format', 'gif', '--backend', 'cpu'], again.io)).toBe(0);
    expect(again.err()).toMatch(/2 already in .*, 0 to make/);
  });

  /** A 4×4 opaque white PNG. */
  function whiteLogo(file: string): string {
    fs.writeFileSync(file, encodePng({ width: 4, height: 4, data: new Uint8Array(64).fill(255), channels: 4, depth: 8 }));
    return file;
  }

  it('post-processing flags and line files are checked before the model loads: one line naming the flag or line, exit 1, nothing made', async () => {
    const d = path.join(tmp, 'post-refusals');
    fs.mkdirSync(d);
    const logo = whiteLogo(path.join(d, 'white.png'));
    const srt = path.join(d, 'subs.srt');
    fs.writeFileSync(srt, '1\n00:00:00,000 --> 00:00:05,000\nHELLO\n');
    const wav = path.join(d, 'track.wav');
    fs.writeFileSync(wav, 'RIFF');
    const list = (name: string, text: string) => {
      fs.writeFileSync(path.join(d, name), text);
      return path.join(d, name);
    };
    const good = list('good.jsonl', '{"prompt":"a red ball"}\n');
    const cases: Array<[string[], RegExp]> = [
      [['--prompts', good, '--watermark', path.join(d, 'none.png')], /^wan-tfjs: --watermark: no file .*none\.png$/],
      [['--prompts', good, '--watermark', logo, '--watermark-scale', '2'], /^wan-tfjs: --watermark-scale: got 2, expected a fraction/],
      [['--prompts', good, '--watermark-opacity', '0.5'], /^wan-tfjs: --watermark-opacity goes with --watermark FILE\.png/],
      [['--prompts', good, '--watermark', logo, '--watermark-scale', '1'], /^wan-tfjs: .*good\.jsonl:1: --watermark-scale: a 32×32 logo .* does not fit a 32×32 frame/],
      [['--prompts', good, '--subtitles', path.join(d, 'none.srt')], /^wan-tfjs: --subtitles: no file .*none\.srt$/],
      [['--prompts', good, '--audio', path.join(d, 'none.wav')], /^wan-tfjs: --audio: no file .*none\.wav$/],
      [['--prompts', list('line-subs.jsonl', '{"prompt":"a"}\n{"prompt":"b","subtitles":"gone.srt"}\n')], /^wan-tfjs: .*line-subs\.jsonl:2: subtitles: no file .*post-refusals\/gone\.srt$/],
      [['--prompts', list('gif-line.jsonl', '{"prompt":"a"}\n{"prompt":"b","name":"b.gif"}\n'), '--audio', wav], /^wan-tfjs: .*gif-line\.jsonl:2: audio \(the run's default\): needs an mp4 written by ffmpeg, and this line's clip b\.gif is a gif/],
      [['--prompts', list('gif-subs.jsonl', '{"prompt":"a","subtitles":"subs.srt"}\n'), '--format', 'gif'], /^wan-tfjs: .*gif-subs\.jsonl:1: subtitles: needs an mp4 .* 0001-a\.gif is a gif/],
      [['--prompts', list('blocked.jsonl', '{"prompt":"a red ball"}\n{"prompt":"a nude figure"}\n')], /^wan-tfjs: .*blocked\.jsonl:2: prompt: the prompt contains the blocked term "nude"; nothing was run$/],
    ];
    for (const [args, message] of cases) {
      const c = cli();
      const out = path.join(d, 'clips');
      expect(await main(['generate', ...args, '--out-dir', out, '--backend', 'cpu'], c.io), args.join(' ')).toBe(1);
      expect(c.err().trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(c.err().trim(), args.join(' ')).toMatch(message);
      expect(fs.existsSync(out), args.join(' ')).toBe(false);
    }
  });

  it('without ffmpeg, --subtitles / --audio / a line\'s audio are a ConfigError naming the flag or the line before the model loads', async () => {
    const d = path.join(tmp, 'no-ffmpeg');
    fs.mkdirSync(d);
    const srt = path.join(d, 'subs.srt');
    fs.writeFileSync(srt, '1\n00:00:00,000 --> 00:00:05,000\nHELLO\n');
    fs.writeFileSync(path.join(d, 'track.wav'), 'RIFF');
    const plain = path.join(d, 'plain.jsonl');
    fs.writeFileSync(plain, '{"prompt":"a red ball"}\n');
    const withAudio = path.join(d, 'audio.jsonl');
    fs.writeFileSync(withAudio, '{"prompt":"a red ball"}\n{"prompt":"a blue cube","audio":"track.wav"}\n');
    const saved = { PATH: process.env.PATH, WAN_FFMPEG: process.env.WAN_FFMPEG };
    // no ffmpeg on PATH, none named by WAN_FFMPEG (and @ffmpeg-installer/ffmpeg is not a dependency)
    process.env.PATH = '';
    delete process.env.WAN_FFMPEG;
    try {
      for (const [args, message] of [
        [['--prompts', plain, '--subtitles', srt], /^wan-tfjs: --subtitles needs ffmpeg, which was not found: install it/],
        [['--prompts', withAudio], /^wan-tfjs: .*audio\.jsonl:2: audio needs ffmpeg, which was not found/],
      ] as const) {
        const c = cli();
        const out = path.join(d, 'clips');
        expect(await main(['generate', ...args, '--out-dir', out, '--backend', 'cpu'], c.io)).toBe(1);
        expect(c.err().trim()).toMatch(message);
        expect(fs.existsSync(out)).toBe(false);
      }
    } finally {
      process.env.PATH = saved.PATH;
      if (saved.WAN_FFMPEG !== undefined) process.env.WAN_FFMPEG = saved.WAN_FFMPEG;
    }
  });

  it('--watermark is blended into every clip of the list (no ffmpeg needed); the provenance sidecars verify', async () => {
    const d = path.join(tmp, 'watermark');
    fs.mkdirSync(d);
    const logo = whiteLogo(path.join(d, 'white.png'));
    const file = path.join(d, 'jobs.jsonl');
    fs.writeFileSync(file, '{"prompt":"a red ball","seed":1}\n{"prompt":"a blue cube","seed":2}\n');
    const out = path.join(d, 'clips');
    const c = cli();
    const args = ['generate', '--prompts', file, '--out-dir', out, '--format', 'gif', '--steps', '1', '--backend', 'cpu', '--watermark', logo, '--watermark-position', 'top-left', '--watermark-scale', '0.25'];
    expect(await main(args, c.io), c.err()).toBe(0);
    for (const name of ['0001-a-red-ball.gif', '0002-a-blue-cube.gif']) {
      const gif = decodeGif(new Uint8Array(fs.readFileSync(path.join(out, name))));
      expect(gif.frames.length).toBe(5);
      // an 8×8 white square (a quarter of the 32-pixel width) 8 pixels from the top-left corner, in every frame
      for (const frame of gif.frames) {
        for (const [y, x] of [[8, 8], [11, 12], [15, 15]]) expect(Array.from(frame.rgb.subarray((y * 32 + x) * 3, (y * 32 + x) * 3 + 3)), name).toEqual([255, 255, 255]);
      }
      expect(verifyClip(path.join(out, name)).differences, name).toEqual([]);
    }
  });

  it.runIf(FFMPEG)('--audio for every clip and a line\'s own subtitles, through ffmpeg', async () => {
    const d = path.join(tmp, 'audio-subs');
    fs.mkdirSync(d);
    const wav = path.join(d, 'tone.wav');
    execFileSync(FFMPEG!, ['-v', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=3', wav]);
    fs.writeFileSync(path.join(d, 'subs.srt'), '1\n00:00:00,000 --> 00:00:05,000\nHI\n');
    const file = path.join(d, 'jobs.jsonl');
    fs.writeFileSync(file, '{"prompt":"a red ball","seed":1}\n{"prompt":"a blue cube","seed":2,"subtitles":"subs.srt"}\n');
    const out = path.join(d, 'clips');
    const c = cli();
    expect(await main(['generate', '--prompts', file, '--out-dir', out, '--steps', '1', '--backend', 'cpu', '--audio', wav], c.io), c.err()).toBe(0);
    expect(fs.readdirSync(out).sort()).toEqual(['0001-a-red-ball.mp4', '0001-a-red-ball.mp4.json', '0002-a-blue-cube.mp4', '0002-a-blue-cube.mp4.json']);
    for (const name of ['0001-a-red-ball.mp4', '0002-a-blue-cube.mp4']) {
      expect(spawnSync(FFMPEG!, ['-hide_banner', '-i', path.join(out, name)], { encoding: 'utf-8' }).stderr, name).toMatch(/Audio: aac/);
      expect(verifyClip(path.join(out, name)).differences, name).toEqual([]);
    }
  });

  it('a clip that cannot be written (a folder in the way, a full disk) fails alone: nothing half-written, the next clips made, exit 1 with the failures in the summary', async () => {
    const d = path.join(tmp, 'write-failures');
    const out = path.join(d, 'clips');
    fs.mkdirSync(path.join(out, 'taken.gif'), { recursive: true });
    fs.writeFileSync(path.join(out, 'taken.gif', 'keep'), 'mine');
    const file = path.join(d, 'jobs.jsonl');
    fs.writeFileSync(file, ['{"prompt":"a red ball","seed":1}', '{"prompt":"a blue cube","seed":2,"name":"taken.gif"}', '{"prompt":"green waves","seed":3}', '{"prompt":"a yellow star","seed":4}'].join('\n'));
    const c = cli();
    // the disk is "full" while line 3 is written: from the report of clip 2 to that of clip 3
    const io: CliIO = {
      ...c.io,
      stderr: {
        write: (t: string) => {
          if (t.startsWith('[2/4]')) fault.writeFails = 'ENOSPC';
          if (t.startsWith('[3/4]')) fault.writeFails = undefined;
          return c.io.stderr.write(t);
        },
      },
    };
    expect(await main(['generate', '--prompts', file, '--out-dir', out, '--format', 'gif', '--steps', '1', '--batch', '1', '--backend', 'cpu'], io)).toBe(1);
    expect(c.err()).toMatch(/\[2\/4\] line 2: failed: cannot write .*taken\.gif/);
    expect(c.err()).toMatch(/\[3\/4\] line 3: failed: cannot write .*0003-green-waves\.gif: no space left on the device/);
    expect(c.err()).toMatch(/\[4\/4\] line 4: wrote /);
    const summary = c.out().trim().split('\n');
    expect(summary[0]).toMatch(/^made 2, skipped 0 \(already done\), failed 2;/);
    expect(summary.slice(1)).toEqual([expect.stringMatching(/^ {2}failed line 2 \(taken\.gif\): cannot write /), expect.stringMatching(/^ {2}failed line 3 \(0003-green-waves\.gif\): cannot write .*\(ENOSPC in write\)$/)]);
    // no temporary file, no clip or sidecar of the failed lines; the folder in the way untouched
    expect(fs.readdirSync(out).sort()).toEqual(['0001-a-red-ball.gif', '0001-a-red-ball.gif.json', '0004-a-yellow-star.gif', '0004-a-yellow-star.gif.json', 'taken.gif']);
    expect(fs.readdirSync(path.join(out, 'taken.gif'))).toEqual(['keep']);
    for (const name of ['0001-a-red-ball.gif', '0004-a-yellow-star.gif']) expect(verifyClip(path.join(out, name)).differences, name).toEqual([]);
  });

  it('an out-dir that cannot be written is a ConfigError naming --out-dir before the model loads', async () => {
    const d = path.join(tmp, 'read-only');
    const out = path.join(d, 'clips');
    fs.mkdirSync(out, { recursive: true });
    const file = path.join(d, 'jobs.jsonl');
    fs.writeFileSync(file, '{"prompt":"a red ball"}\n');
    for (const code of ['EROFS', 'EACCES']) {
      // root may write anywhere, so the refusal is injected rather than made with chmod
      fault.openFails = (f) => (f.startsWith(out) ? code : undefined);
      const c = cli();
      expect(await main(['generate', '--prompts', file, '--out-dir', out, '--format', 'gif', '--backend', 'cpu'], c.io)).toBe(1);
      expect(c.err().trim().split('\n').at(-1)).toMatch(new RegExp(`^wan-tfjs: --out-dir .*clips: cannot write .*clips: .*\\(${code} in open\\)$`));
      expect(c.err()).not.toMatch(/loading/);
      expect(fs.readdirSync(out)).toEqual([]);
    }
  });
});
