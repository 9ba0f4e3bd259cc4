import * as fs from 'node:fs';
import * as path from 'node:path';
import { AbortError, ConfigError, WanError } from '../errors.js';
import { MAX_SEED } from '../random.js';
import { VIDEO_FORMATS, formatFromPath, type VideoFormat } from '../video/save-video.js';

/** The settings a prompt-list line may set, each also a run-wide default (PromptListDefaults). */
export interface PromptLineSettings {
  negativePrompt?: string;
  seed?: number;
  width?: number;
  height?: number;
  numFrames?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  /** An .srt file burned into the clip (an MP4 through ffmpeg); a line's path is relative to the list's folder. */
  subtitles?: string;
  /** An audio file added to the clip (an MP4 through ffmpeg); a line's path is relative to the list's folder. */
  audio?: string;
}

/**
 * One line of a prompt list (JSONL): the prompt, and what the line sets of negative prompt, seed,
 * size, frames, steps, guidance, subtitles, audio and output name. Fields a line leaves out take the
 * run's defaults.
 */
export interface PromptJob extends PromptLineSettings {
  /** 1-based line number in the file. */
  line: number;
  prompt: string;
  /** The output's name inside the output folder: the line's `name`, else outputName(line, prompt, format). */
  name: string;
}

/** The fields a line may set (JSON keys). */
export const PROMPT_LIST_FIELDS = ['prompt', 'negative_prompt', 'seed', 'size', 'frames', 'steps', 'guidance', 'subtitles', 'audio', 'name'] as const;

/** Longest slug of a prompt in a default output name. */
const SLUG_CHARS = 40;

/** A prompt as a file name part: lower-case ASCII letters and digits, words joined by '-', at most 40 characters; 'clip' when nothing is left. */
export function slug(prompt: string): string {
  const words = prompt
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== '');
  let out = '';
  for (const w of words) {
    const next = out === '' ? w : `${out}-${w}`;
    if (next.length > SLUG_CHARS) break;
    out = next;
  }
  return out === '' ? (words[0]?.slice(0, SLUG_CHARS) ?? 'clip') : out;
}

/** The default output name of line `line`: its number (4 digits) and the slug of its prompt, e.g. `0007-a-red-fox.mp4`. */
export function outputName(line: number, prompt: string, format: VideoFormat): string {
  return `${String(line).padStart(4, '0')}-${slug(prompt)}.${format}`;
}

function lineError(file: string, line: number, message: string): ConfigError {
  return new ConfigError(`${file}:${line}: ${message}`);
}

function describe(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

/** An output name that stays inside the output folder: one path component with a video extension. */
function checkName(name: string, where: (m: string) => ConfigError): void {
  if (name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
    throw where(`name: got ${describe(name)}, expected a file name without folders (the clip is written into --out-dir)`);
  }
  if (Buffer.byteLength(name) > 255) throw where(`name: ${Buffer.byteLength(name)} bytes, expected at most 255 (the file system's limit)`);
  if (formatFromPath(name) === undefined) throw where(`name: got ${describe(name)}, expected a name ending in ${VIDEO_FORMATS.map((f) => `.${f}`).join(', ')}`);
}

function positiveInt(v: unknown, field: string, where: (m: string) => ConfigError): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw where(`${field}: got ${describe(v)}, expected a positive integer`);
  return v;
}

/**
 * The jobs of a prompt list's text: one JSON object per line (blank lines skipped), each with a
 * non-empty `prompt` and any of negative_prompt, seed (integer in [0, 2^53)), size ("WxH"), frames,
 * steps (positive integers), guidance (a number), subtitles and audio (file paths, relative ones
 * resolved against the folder of `file`, so a list and its files move together; whether they exist is
 * checkLineFiles'), and name (a file name with a video extension; default outputName(line, prompt,
 * `format`)). A malformed line, an unknown field, a value of the wrong type or two lines with one
 * output name is a ConfigError naming the file, the line and the field.
 */
export function parsePromptList(text: string, file: string, format: VideoFormat = 'mp4'): PromptJob[] {
  const jobs: PromptJob[] = [];
  const byName = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const line = i + 1;
    if (raw.trim() === '') continue;
    const where = (m: string) => lineError(file, line, m);
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      throw where(`not JSON (${(e as Error).message}); each line is one object, e.g. {"prompt": "a red fox in the snow", "seed": 42}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw where(`got ${describe(value).slice(0, 60)}, expected a JSON object with a "prompt"`);
    const o = value as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!(PROMPT_LIST_FIELDS as readonly string[]).includes(k)) throw where(`unknown field "${k}"; a line takes ${PROMPT_LIST_FIELDS.join(', ')}`);
    }
    if (typeof o.prompt !== 'string' || o.prompt.trim() === '') throw where(`prompt: got ${describe(o.prompt)}, expected a non-empty string`);
    const job: PromptJob = { line, prompt: o.prompt, name: '' };
    if (o.negative_prompt !== undefined) {
      if (typeof o.negative_prompt !== 'string') throw where(`negative_prompt: got ${describe(o.negative_prompt)}, expected a string`);
      job.negativePrompt = o.negative_prompt;
    }
    if (o.seed !== undefined) {
      if (typeof o.seed !== 'number' || !Number.isSafeInteger(o.seed) || o.seed < 0) throw where(`seed: got ${describe(o.seed)}, expected an integer in [0, ${MAX_SEED}]`);
      job.seed = o.seed;
    }
    if (o.size !== undefined) {
      const m = typeof o.size === 'string' ? /^\s*(\d+)\s*[x×X*]\s*(\d+)\s*$/.exec(o.size) : null;
      if (!m) throw where(`size: got ${describe(o.size)}, expected "WIDTHxHEIGHT", e.g. "832x480"`);
      job.width = Number(m[1]);
      job.height = Number(m[2]);
    }
    if (o.frames !== undefined) job.numFrames = positiveInt(o.frames, 'frames', where);
    if (o.steps !== undefined) job.numInferenceSteps = positiveInt(o.steps, 'steps', where);
    if (o.guidance !== undefined) {
      if (typeof o.guidance !== 'number' || !Number.isFinite(o.guidance)) throw where(`guidance: got ${describe(o.guidance)}, expected a number`);
      job.guidanceScale = o.guidance;
    }
    for (const field of ['subtitles', 'audio'] as const) {
      const v = o[field];
      if (v === undefined) continue;
      if (typeof v !== 'string' || v.trim() === '') throw where(`${field}: got ${describe(v)}, expected a file path (relative to the list's folder)`);
      job[field] = path.resolve(path.dirname(file), v);
    }
    if (o.name !== undefined) {
      if (typeof o.name !== 'string') throw where(`name: got ${describe(o.name)}, expected a string`);
      checkName(o.name, where);
      job.name = o.name;
    } else {
      job.name = outputName(line, job.prompt, format);
    }
    const earlier = byName.get(job.name);
    if (earlier !== undefined) throw where(`name: "${job.name}" is line ${earlier}'s output too; give each line its own name`);
    byName.set(job.name, line);
    jobs.push(job);
  }
  if (jobs.length === 0) throw new ConfigError(`${file}: no prompts (expected one JSON object per line, e.g. {"prompt": "a red fox in the snow"})`);
  return jobs;
}

/** parsePromptList of a file; a file that cannot be read is a ConfigError naming it. */
export function readPromptList(file: string, format: VideoFormat = 'mp4'): PromptJob[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf-8');
  } catch (e) {
    throw new ConfigError(`--prompts: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  return parsePromptList(text, file, format);
}

/**
 * Whether a job's clip is finished: its output exists in `outDir` (a file; or a folder, for .png). saveVideo writes under a
 * temporary name and renames the complete file (or PNG folder) into place, so an output that
 * exists is whole; a run that was stopped or killed leaves no file under the final name.
 */
export function isFinished(outDir: string, job: Pick<PromptJob, 'name'>): boolean {
  try {
    const st = fs.statSync(path.join(outDir, job.name));
    // a PNG output may be a folder of frames; an mp4 or gif only a file
    return st.isFile() || (st.isDirectory() && formatFromPath(job.name) === 'png');
  } catch {
    return false;
  }
}

/**
 * Checks a line's post-processing files (its own, else `defaults`'): each must be an existing file,
 * and the clip an MP4 (ffmpeg burns the subtitles and muxes the audio). A refusal is a ConfigError
 * naming `file`, the line and the field.
 */
export function checkLineFiles(file: string, job: PromptJob, defaults: Pick<PromptLineSettings, 'subtitles' | 'audio'> = {}): void {
  for (const field of ['subtitles', 'audio'] as const) {
    const given = job[field] ?? defaults[field];
    if (given === undefined) continue;
    const origin = job[field] !== undefined ? '' : ' (the run\'s default)';
    let isFile = false;
    try {
      isFile = fs.statSync(given).isFile();
    } catch {
      // missing or unreadable: reported below
    }
    if (!isFile) throw lineError(file, job.line, `${field}${origin}: no file ${given}`);
    const format = formatFromPath(job.name) ?? 'mp4';
    if (format !== 'mp4') throw lineError(file, job.line, `${field}${origin}: needs an mp4 written by ffmpeg, and this line's clip ${job.name} is ${format === 'png' ? 'PNG frames' : `a ${format}`}; give the line an .mp4 name`);
  }
}

/** A line's settings rejected by the model (frames, size, memory …), as a ConfigError naming the file and line. */
export function atLine(file: string, job: Pick<PromptJob, 'line'>, e: unknown): unknown {
  return e instanceof WanError && !(e instanceof AbortError) ? lineError(file, job.line, e.message) : e;
}
