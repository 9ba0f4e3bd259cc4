import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, type CliIO } from '../src/cli.js';
import { AbortError, ConfigError } from '../src/errors.js';
import { outputName, parsePromptList, slug } from '../src/jobs/prompt-list.js';
import { formatSummary, planPromptList, runPromptList, type ClipEvent } from '../src/jobs/run-prompt-list.js';
import { readModelIndex } from '../src/pipeline/model-index.js';
import { readPipelineSpec } from '../src/pipeline/pipeline-spec.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { verifyClip } from '../src/video/provenance.js';

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

  it('batches of equal settings: one textToVideo call per batch; a clip that cannot be written fails alone', async () => {
    const out = path.join(tmp, 'batch');
    fs.mkdirSync(path.join(out, '0002-a-blue-cube.gif'), { recursive: true });
    fs.writeFileSync(path.join(out, '0002-a-blue-cube.gif', 'in-the-way'), '');
    const plan = planPromptList(spec, parsePromptList(FOUR, 'jobs.jsonl', 'gif'), 'jobs.jsonl', out, FAST);
    const batches: number[][] = [];
    const summary = await runPromptList(pipe, plan, { onBatch: (b) => batches.push(b.map((j) => j.line)) });
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
});
