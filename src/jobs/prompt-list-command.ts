import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../backend/select.js';
import { ConfigError } from '../errors.js';
import { defaultModelDir, packageRoot } from '../pipeline/default-model.js';
import type { StepInfo } from '../pipeline/generate-options.js';
import { hasModelFiles, withModelFiles } from '../pipeline/model-files.js';
import { modelIdentity } from '../pipeline/model-identity.js';
import { readModelIndex } from '../pipeline/model-index.js';
import { readPipelineSpec } from '../pipeline/pipeline-spec.js';
import { WanPipeline } from '../pipeline/wan-pipeline.js';
import { MAX_SEED } from '../random.js';
import type { CliIO } from '../cli-io.js';
import { findFfmpeg } from '../video/ffmpeg.js';
import { outputError, removeQuietly, tempNames } from '../video/output-file.js';
import { promptVerdict } from '../video/safety.js';
import { formatFromPath, VIDEO_FORMATS, type VideoFormat } from '../video/save-video.js';
import { watermarkPlacement, type OptionName, type Watermark } from '../video/watermark.js';
import { atLine, readPromptList } from './prompt-list.js';
import { formatSummary, planPromptList, runPromptList } from './run-prompt-list.js';

/** The generate flags a prompt-list run reads (parseArgs' values). */
export interface PromptListFlags {
  prompts?: string;
  'out-dir'?: string;
  batch?: string;
  prompt?: string;
  out?: string;
  format?: string;
  'prompt-embeds'?: string;
  'negative-prompt-embeds'?: string;
  image?: string;
  'last-image'?: string;
  model?: string;
  transformer?: string;
  'transformer-2'?: string;
  'boundary-ratio'?: string;
  vae?: string;
  'text-encoder'?: string;
  tokenizer?: string;
  'negative-prompt'?: string;
  frames?: string;
  size?: string;
  steps?: string;
  guidance?: string;
  guidance2?: string;
  shift?: string;
  seed?: string;
  fps?: string;
  backend?: string;
  precision?: string;
  experts?: string;
  'offload-blocks'?: string;
  subtitles?: string;
  audio?: string;
}

/** The post-processing of every clip that the CLI reads from its flags (--watermark and its settings, read and checked there). */
export interface PromptListPost {
  watermark?: Watermark;
  /** How errors name the watermark's options (by their flags). */
  watermarkName?: OptionName;
}

/** The CLI's progress output (ProgressReporter). */
export interface PromptListProgress {
  note(text: string): void;
  step(s: StepInfo): void;
  load(e: { component: string; loaded: number; total: number }): void;
  finish(): void;
}

function flagNumber(name: string, v: string | undefined, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  const ok = integer ? /^-?\d+$/.test(v.trim()) && Number.isSafeInteger(n) : v.trim() !== '' && Number.isFinite(n);
  if (!ok) throw new ConfigError(`--${name}: got "${v}", expected ${integer ? 'an integer' : 'a number'}`);
  return n;
}

/** Refuses the flags that do not go with --prompts / --out-dir, and a missing one of the pair. */
function checkFlags(values: PromptListFlags, positionals: readonly string[]): { file: string; outDir: string } {
  if (positionals.length > 0 || values.prompt !== undefined) throw new ConfigError('--prompts reads the prompts from its file: give no prompt argument or --prompt with it');
  const alone: Array<keyof PromptListFlags> = ['out', 'prompt-embeds', 'negative-prompt-embeds', 'image', 'last-image'];
  for (const flag of alone) {
    if (values[flag] !== undefined) throw new ConfigError(flag === 'out' ? '--out names one clip; with --prompts the clips go into --out-dir (each line may set its "name")' : `--${flag} does not go with --prompts (a prompt list takes text prompts)`);
  }
  if (values.prompts === undefined) throw new ConfigError(`--${values['out-dir'] !== undefined ? 'out-dir' : 'batch'} goes with --prompts FILE (a JSONL prompt list)`);
  if (values['out-dir'] === undefined) throw new ConfigError('--prompts needs --out-dir DIR: the folder the clips are written to');
  return { file: values.prompts, outDir: values['out-dir'] };
}

/** --subtitles / --audio: an existing file (whether the clips can take it is checked per line). */
function checkFileFlag(flag: 'subtitles' | 'audio', file: string | undefined): void {
  if (file === undefined) return;
  let isFile = false;
  try {
    isFile = fs.statSync(file).isFile();
  } catch {
    // missing or unreadable: reported below
  }
  if (!isFile) throw new ConfigError(`--${flag}: no file ${file}`);
}

/**
 * Creates `outDir` and writes and removes a temporary file in it, so that a folder that cannot be
 * created or written (permissions, a read-only or full disk) is a ConfigError naming --out-dir before
 * the model loads, not one failure per clip after it.
 */
function checkOutDirWritable(outDir: string): void {
  const probe = tempNames(path.resolve(outDir)).tmp;
  try {
    fs.mkdirSync(outDir, { recursive: true });
    fs.closeSync(fs.openSync(probe, 'wx'));
  } catch (e) {
    const reason = outputError(e, path.resolve(outDir));
    throw new ConfigError(`--out-dir ${outDir}: ${reason instanceof Error ? reason.message : String(reason)}`);
  } finally {
    removeQuietly(probe);
  }
}

/**
 * `wan-tfjs generate --prompts FILE --out-dir DIR`: every line checked before a byte of weights is
 * read (its settings against the model, its prompt against the blocklist, its subtitles and audio
 * files, the watermark's fit in its frames), the out-dir created and probed for writing, the model
 * loaded once, the missing clips made in batches of equal settings and post-processed (`post`'s
 * watermark, the flags' or the line's subtitles and audio), one progress line per clip and a summary.
 * Returns 0, or 1 when a clip failed (the others are still made).
 */
export async function generatePromptList(values: PromptListFlags, positionals: readonly string[], io: CliIO, progress: PromptListProgress, version: string, post: PromptListPost = {}): Promise<number> {
  const { file, outDir } = checkFlags(values, positionals);
  const format = values.format;
  if (format !== undefined && !(VIDEO_FORMATS as readonly string[]).includes(format)) throw new ConfigError(`--format: got "${format}", expected one of ${VIDEO_FORMATS.join(', ')}`);
  const batch = flagNumber('batch', values.batch, true);
  if (batch !== undefined && batch < 1) throw new ConfigError(`--batch: got ${batch}, expected a positive integer`);
  const residency = values.experts;
  if (residency !== undefined && residency !== 'both' && residency !== 'swap' && residency !== 'active') throw new ConfigError(`--experts: got "${residency}", expected both, swap or active`);
  const offloadBlocks = flagNumber('offload-blocks', values['offload-blocks'], true);
  if (offloadBlocks !== undefined && offloadBlocks < 0) throw new ConfigError(`--offload-blocks: got ${offloadBlocks}, expected 0 or more blocks`);
  const precision = values.precision;
  if (precision !== undefined && precision !== 'bf16' && precision !== 'fp32') throw new ConfigError(`--precision: got "${precision}", expected bf16 or fp32`);
  const seed = flagNumber('seed', values.seed, true);
  if (seed !== undefined && (seed < -1 || seed > MAX_SEED)) throw new ConfigError(`--seed: got ${seed}, expected an integer in [0, ${MAX_SEED}] or -1 (random)`);
  let size: [number, number] | undefined;
  if (values.size !== undefined) {
    const m = /^\s*(\d+)\s*[x×X*]\s*(\d+)\s*$/.exec(values.size);
    if (!m) throw new ConfigError(`--size: got "${values.size}", expected WIDTHxHEIGHT, e.g. 832x480`);
    size = [Number(m[1]), Number(m[2])];
  }
  checkFileFlag('subtitles', values.subtitles);
  checkFileFlag('audio', values.audio);
  const jobs = readPromptList(file, (format as VideoFormat | undefined) ?? 'mp4');
  // the default safety checker would refuse such a clip only after it was made
  for (const job of jobs) {
    const verdict = promptVerdict(job.prompt);
    if (verdict.flagged) throw new ConfigError(`${file}:${job.line}: prompt: ${verdict.reason}; nothing was run`);
  }
  const parent = path.dirname(path.resolve(outDir));
  if (!fs.existsSync(parent)) throw new ConfigError(`--out-dir ${outDir}: the folder ${parent} does not exist; create it first`);
  if (fs.existsSync(outDir) && !fs.statSync(outDir).isDirectory()) throw new ConfigError(`--out-dir ${outDir}: a file is in the way; name a folder`);

  const files = {
    transformer: values.transformer,
    transformer2: values['transformer-2'],
    vae: values.vae,
    textEncoder: values['text-encoder'],
    tokenizer: values.tokenizer,
    boundaryRatio: flagNumber('boundary-ratio', values['boundary-ratio'], false),
  };
  const givenFiles = hasModelFiles(files);
  const modelDir = values.model ?? (givenFiles ? undefined : defaultModelDir(io.env, packageRoot(), '--model'));
  const folder = modelDir === undefined ? undefined : readModelIndex(modelDir);
  const index = folder === undefined || givenFiles ? withModelFiles(folder, files, io.env) : folder;
  const spec = readPipelineSpec(index);
  tf.enableProdMode();
  const backend = await selectBackend(values.backend, { precision });
  const plan = planPromptList(spec, jobs, file, outDir, {
    negativePrompt: values['negative-prompt'],
    seed: seed === -1 ? undefined : seed,
    width: size?.[0],
    height: size?.[1],
    numFrames: flagNumber('frames', values.frames, true),
    numInferenceSteps: flagNumber('steps', values.steps, true),
    guidanceScale: flagNumber('guidance', values.guidance, false),
    guidanceScale2: flagNumber('guidance2', values.guidance2, false),
    shift: flagNumber('shift', values.shift, false),
    fps: flagNumber('fps', values.fps, false),
    subtitles: values.subtitles,
    audio: values.audio,
  });
  const planned = plan.groups.flat();
  const { watermark } = post;
  for (const job of planned) {
    try {
      // a logo too large for this line's frames is refused now, before the model loads
      if (watermark) watermarkPlacement(watermark, job.call.height, job.call.width, post.watermarkName);
    } catch (e) {
      throw atLine(file, job, e);
    }
  }
  const missing = planned.length;
  const ffmpeg = planned.some((j) => formatFromPath(j.name) === 'mp4') ? await findFfmpeg() : undefined;
  const needsFfmpeg = planned.find((j) => j.subtitles !== undefined || j.audio !== undefined);
  if (needsFfmpeg && !ffmpeg) {
    const field = needsFfmpeg.subtitles !== undefined ? 'subtitles' : 'audio';
    const fromLine = jobs.find((j) => j.line === needsFfmpeg.line)?.[field] !== undefined;
    const who = fromLine ? `${file}:${needsFfmpeg.line}: ${field}` : `--${field}`;
    throw new ConfigError(`${who} needs ffmpeg, which was not found: install it (apt install ffmpeg, brew install ffmpeg, or npm install @ffmpeg-installer/ffmpeg) or set WAN_FFMPEG`);
  }
  progress.note(`${file}: ${jobs.length} prompts, ${plan.finished.length} already in ${outDir}, ${missing} to make in ${plan.groups.length} group${plan.groups.length === 1 ? '' : 's'} of equal settings`);
  if (missing === 0) {
    // every clip exists, so the folder does: nothing to create or write
    progress.note('nothing to make');
    return 0;
  }
  checkOutDirWritable(outDir);
  progress.note(`backend ${backend}; loading ${modelDir ?? index.transformer}`);
  const pipe = await WanPipeline.fromPretrained(index, { residency, offloadBlocks, onProgress: (e) => progress.load(e) });
  try {
    if (pipe.memoryPlan) progress.note(pipe.memoryPlan.reason);
    const summary = await runPromptList(pipe, plan, {
      batch,
      signal: io.signal,
      cleanups: io.cleanups,
      ffmpegPath: ffmpeg,
      metadata: { model: path.basename(path.resolve(modelDir ?? index.transformer)), software: `wan-tfjs ${version}` },
      provenance: { libraryVersion: version, model: await modelIdentity(index) },
      postProcess: watermark ? { watermark } : undefined,
      onStep: (s) => progress.step(s),
      onBatch: (b) => {
        const c = b[0].call;
        progress.note(`batch of ${b.length} (lines ${b.map((j) => j.line).join(', ')}): ${c.numFrames} frames ${c.width}×${c.height}, ${c.numInferenceSteps} steps, guidance ${c.guidanceScale}`);
      },
      onClip: (e, done, total) => {
        const head = `[${done}/${total}] line ${e.job.line}`;
        if (e.status === 'made') progress.note(`${head}: wrote ${e.path} (seed ${e.job.seed}, ${(e.ms / 1000).toFixed(1)}s${e.batch > 1 ? ` in a batch of ${e.batch}` : ''})`);
        else if (e.status === 'failed') progress.note(`${head}: failed: ${e.reason}`);
        else progress.note(`${head}: ${e.job.name} already done`);
      },
    });
    progress.finish();
    io.stdout.write(`${formatSummary(summary).join('\n')}\n`);
    return summary.failed.length > 0 ? 1 : 0;
  } finally {
    progress.finish();
    pipe.dispose();
  }
}
