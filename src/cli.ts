#!/usr/bin/env node
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from './backend/select.js';
import { AbortError, ConfigError, ShapeError, WanError } from './errors.js';
import { formatInspect, inspectCheckpoint } from './pipeline/inspect.js';
import type { StepInfo } from './pipeline/generate-options.js';
import { defaultModelDir as libraryDefaultModelDir, packageRoot } from './pipeline/default-model.js';
import { hasModelFiles, withModelFiles, type ModelFiles } from './pipeline/model-files.js';
import { readModelIndex } from './pipeline/model-index.js';
import { checkOutputTarget } from './pipeline/output-target.js';
import { readPipelineSpec } from './pipeline/pipeline-spec.js';
import { resolveSettings } from './pipeline/resolve-settings.js';
import { WanPipeline } from './pipeline/wan-pipeline.js';
import { memorySizeBytes } from './memory-size.js';
import { MAX_SEED, randomSeed } from './random.js';
import { findFfmpeg, killEncoders } from './video/ffmpeg.js';
import { decodePng, pngToImage, type DecodedPng } from './video/png-decoder.js';
import { formatFromPath, saveVideo, VIDEO_FORMATS, type VideoFormat } from './video/save-video.js';
import { checkWatermark, watermarkPlacement, type OptionName, type Watermark, type WatermarkPosition } from './video/watermark.js';
import { newTempRemover } from './video/temp-files.js';
import { generatePromptList } from './jobs/prompt-list-command.js';
import { serveCommand, workerCommand } from './serve/commands.js';
import { promptVerdict, throwIfFlagged } from './video/safety.js';
import { modelIdentity } from './pipeline/model-identity.js';
import { verifyCommand } from './verify.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { hostToTensor } from '../weights/load.js';
import type { CliIO } from './cli-io.js';
export type { CliIO } from './cli-io.js';


const USAGE = `wan-tfjs — Wan2.x text-to-video in TypeScript (tfjs)

Usage:
  wan-tfjs generate "PROMPT" | --prompt "…" [--model DIR] [--out FILE] [options]
  wan-tfjs generate --prompts FILE.jsonl --out-dir DIR [--batch N] [options]
  wan-tfjs inspect <checkpoint file or folder> [--tensors] [--all] [--json]
  wan-tfjs verify <clip>                 check a clip against its provenance sidecar <clip>.json
  wan-tfjs build-cuda [--compile-only]   build backend 'cuda''s addon in place (wan-tfjs build-cuda --help)
  wan-tfjs serve [--port N] [--api-key K]  the job queue over HTTP (wan-tfjs serve --help)
  wan-tfjs worker [--batch N]             runs the queue's jobs, the model loaded once (wan-tfjs worker --help)
  wan-tfjs --version | --help

generate options:
  --model DIR              model folder: Diffusers (model_index.json) or original Wan layout
                           (default: $WAN_MODEL, else the bundled models/toy; none with --transformer)
  --transformer FILE       the DiT as one file (ComfyUI's, config read from its header) or folder;
                           without --model the whole model is these files, the scheduler Wan's UniPC
  --transformer-2 FILE     the low-noise expert (two-expert models, e.g. Wan2.2-A14B)
  --boundary-ratio R       where the experts split (default 0.875 T2V, 0.9 I2V: Wan2.2-A14B's)
  --vae FILE               the VAE as one file (wan_2.1_vae.safetensors, wan2.2_vae.safetensors)
  --text-encoder FILE      the umT5 encoder as one file (umt5_xxl_fp8_e4m3fn_scaled.safetensors)
  --tokenizer DIR          tokenizer.json, its folder, or a Diffusers folder (default: the model's, else
                           google/umt5-xxl or Wan-AI/Wan2.1-T2V-1.3B-Diffusers in the HF cache)
  --prompt TEXT            what to generate
  --negative-prompt TEXT   what to avoid (default "")
  --out FILE               output file or folder (default wan-output.<format>); its folder must
                           exist; - writes the video (mp4 or gif) to stdout
  --format mp4|gif|png     default from --out's extension, else mp4 (mp4 through ffmpeg when
                           found, else uncompressed by a built-in writer; png writes one
                           image per frame into the folder --out)
  --frames N               number of frames: 1 + 4k for Wan (default: the model's, e.g. 81)
  --size WxH               width × height, multiples of 16 (default: the model's)
  --steps N                denoising steps (default: the model's)
  --guidance G             classifier-free guidance scale (≤ 1 turns it off)
  --guidance2 G            guidance of the low-noise expert (two-expert models only)
  --shift S                flow shift of the scheduler (default: the model's)
  --seed N                 seed of the initial noise (default or -1: random, printed)
  --fps N                  frames per second of the video (default: the model's)
  --backend NAME           cpu | wasm | tensorflow | cuda (default: the fastest available)
  --precision bf16|fp32    backend cuda: store tensors in bf16 (default, or $WAN_CUDA_PRECISION)
                           or fp32 (the reference's numbers); other backends compute in fp32
  --experts both|swap|active
                           two-expert models: both on the GPU; both loaded, the idle one in pinned
                           host memory and swapped at the boundary (cuda); or only the one in use
                           (the other read from disk again). Default on cuda: planned from the free
                           GPU memory (one line says what and why); elsewhere both
  --offload-blocks N       cuda: the first N blocks of each expert live in pinned host memory and
                           are copied to the GPU one block ahead of use (default: planned; 0 none)
  --vae-budget SIZE        the VAE decode's peak memory (e.g. 8g, 512m): whole frames when they fit,
                           else the largest spatial tiles that do (an error when none do)
  --image FILE.png         first frame, for image-to-video (TI2V-5B, I2V-A14B); its size is the video's
  --last-image FILE.png    last frame too (I2V-A14B: first-and-last-frame video)
  --prompt-embeds FILE[:TENSOR]           prompt embeddings [B, L, D] from a safetensors file
  --negative-prompt-embeds FILE[:TENSOR]  (for models without a text encoder)
  --watermark FILE.png     a logo blended into every frame (PNG, its alpha kept; no ffmpeg needed)
  --watermark-position P   top-left | top-right | bottom-left | bottom-right (default bottom-right),
                           8 pixels from the edges
  --watermark-scale S      the logo's width as a fraction of the video's width (default 0.2)
  --watermark-opacity O    0–1, multiplies the logo's alpha (default 1)
  --subtitles FILE.srt     subtitles burned into the frames (mp4 through ffmpeg only)
  --audio FILE             an audio track (any file ffmpeg reads), cut to the clip's length
                           (mp4 through ffmpeg only)
  --quiet                  no progress output

prompt lists (in place of a prompt and --out):
  --prompts FILE           JSONL, one object a line: {"prompt": "…"} and any of negative_prompt,
                           seed, size ("WxH"), frames, steps, guidance, subtitles, audio (files,
                           relative to FILE's folder), name (the clip's file name; default
                           NNNN-<prompt words>.<--format>); the flags above are the defaults
                           (--watermark, --subtitles, --audio: every clip)
  --out-dir DIR            the clips' folder (created); a clip already there is not made again,
                           so a stopped run resumes where it stopped
  --batch N                prompts of equal settings per call (default: on cuda the largest of at
                           most 4 the memory estimate fits; 1 on the CPU backends); exit code 1
                           when a clip failed (the summary says why)

Exit codes: 0 done, 1 a reported error, 2 an internal error; interrupted (nothing written):
  130 SIGINT (Ctrl-C), 143 SIGTERM, 129 SIGHUP. The first signal stops the generation or the
  writing at the next check; a second one exits at once, removing the file being written.
`;

/** The library version from package.json. */
export function libraryVersion(): string {
  const root = packageRoot();
  if (!root) return 'unknown';
  return (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf-8')) as { version?: string }).version ?? 'unknown';
}

/** The model used without --model: defaultModelDir's ($WAN_MODEL, else models/toy in the package root), its error naming --model. */
export function defaultModelDir(env: CliIO['env'], root = packageRoot()): string {
  return libraryDefaultModelDir(env, root, '--model');
}

/** An integer flag's value (its range is the settings' to check). */
function intFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new ConfigError(`--${name}: got "${v}", expected an integer`);
  return n;
}

function numFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new ConfigError(`--${name}: got "${v}", expected a number`);
  return n;
}

/** --seed: -1 (or absent) a random seed, as the reference's --base_seed -1; else a seed in [0, MAX_SEED]. */
function seedFlag(v: string | undefined): number {
  const n = intFlag('seed', v);
  if (n === undefined || n === -1) return randomSeed();
  if (n < 0) throw new ConfigError(`--seed: got ${n}, expected an integer in [0, ${MAX_SEED}] or -1 (random)`);
  return n;
}

/**
 * The arguments with `--name -3` joined into `--name=-3` for the flags taking a value, so that
 * negative numbers reach the flag's own check instead of parseArgs' "argument is ambiguous".
 */
function joinNegativeValues(args: readonly string[], takesValue: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const next = args[i + 1];
    if (a.startsWith('--') && takesValue.has(a.slice(2)) && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

/** True when the arguments ask for help (before the first bare `--`). */
function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/** "832x480" → [832, 480] (width, height). */
export function parseSize(v: string): [number, number] {
  const m = /^\s*(\d+)\s*[x×X*]\s*(\d+)\s*$/.exec(v);
  if (!m) throw new ShapeError('--size', `"${v}"`, 'WIDTHxHEIGHT, e.g. 832x480');
  return [Number(m[1]), Number(m[2])];
}

/** A frame for --image / --last-image, or the logo of --watermark: a PNG file, decoded to RGB (and alpha). */
function readImage(file: string, flag: string): DecodedPng {
  if (!/\.png$/i.test(file)) throw new ConfigError(`--${flag}: got "${file}", expected a .png file (convert other formats to PNG first)`);
  if (!fs.existsSync(file)) throw new ConfigError(`--${flag}: no file ${file}`);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(fs.readFileSync(file));
  } catch (e) {
    throw new ConfigError(`--${flag}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  return decodePng(bytes, `--${flag} ${file}`);
}

/** generate's post-processing flags (one clip, or every clip of a prompt list). */
const POST_FLAGS = ['watermark', 'watermark-position', 'watermark-scale', 'watermark-opacity', 'subtitles', 'audio'] as const;

/** How errors name the watermark's options: by their flags (the margin is fixed, so its errors name --watermark). */
function watermarkFlagName(file: string): OptionName {
  return (o) => (o === 'image' || o === 'margin' ? `--watermark ${file}` : `--watermark-${o}`);
}

/** --watermark and its settings, checked (errors name the flag); undefined without --watermark. */
function watermarkFlags(values: Partial<Record<(typeof POST_FLAGS)[number], string>>): Watermark | undefined {
  if (values.watermark === undefined) {
    const stray = POST_FLAGS.find((f) => f.startsWith('watermark-') && values[f] !== undefined);
    if (stray) throw new ConfigError(`--${stray} goes with --watermark FILE.png`);
    return undefined;
  }
  const w: Watermark = {
    image: readImage(values.watermark, 'watermark'),
    position: values['watermark-position'] as WatermarkPosition | undefined,
    scale: numFlag('watermark-scale', values['watermark-scale']),
    opacity: numFlag('watermark-opacity', values['watermark-opacity']),
  };
  checkWatermark(w, watermarkFlagName(values.watermark));
  return w;
}

/** A tensor from "file.safetensors[:name]" (the only tensor when no name is given). */
function readEmbeds(spec: string, flag: string): tf.Tensor {
  const colon = spec.lastIndexOf(':');
  const [file, name] = colon > 1 && !fs.existsSync(spec) ? [spec.slice(0, colon), spec.slice(colon + 1)] : [spec, undefined];
  const f = SafetensorsFile.open(file);
  try {
    const keys = f.keys();
    const key = name ?? (keys.length === 1 ? keys[0] : undefined);
    if (key === undefined || !f.has(key)) {
      throw new ConfigError(`--${flag}: ${name ? `no tensor '${name}' in ${file}` : `${file} holds ${keys.length} tensors; name one as FILE:TENSOR`} (tensors: ${keys.slice(0, 10).join(', ')}${keys.length > 10 ? ', …' : ''})`);
    }
    return hostToTensor(f.read(key));
  } finally {
    f.close();
  }
}

function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** Step progress: a redrawn bar on a terminal, one plain line per step otherwise. */
export class ProgressReporter {
  private drawn = false;
  private readonly loadStart = new Map<string, number>();

  constructor(
    private readonly out: CliIO['stderr'],
    private readonly tty: boolean,
    private readonly quiet: boolean,
  ) {}

  note(text: string): void {
    if (this.quiet) return;
    this.finish();
    this.out.write(`${text}\n`);
  }

  step(s: Pick<StepInfo, 'step' | 'total' | 'timestep' | 'elapsedMs' | 'expert'>): void {
    if (this.quiet) return;
    const eta = (s.elapsedMs / s.step) * (s.total - s.step);
    const expert = s.expert === 'transformer_2' ? ' low-noise' : '';
    if (this.tty) {
      const width = Math.max(10, Math.min(30, (this.out.columns ?? 80) - 60));
      const filled = Math.round((s.step / s.total) * width);
      const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
      this.out.write(`\r\x1b[2K[${bar}] step ${s.step}/${s.total} t=${s.timestep}${expert}  elapsed ${clock(s.elapsedMs)}  ETA ${clock(eta)}`);
      this.drawn = true;
    } else {
      this.out.write(`step ${s.step}/${s.total} t=${s.timestep}${expert} elapsed ${(s.elapsedMs / 1000).toFixed(1)}s eta ${(eta / 1000).toFixed(1)}s\n`);
    }
  }

  /** Loading progress of a component: a bar on a terminal; one line when it is loaded. */
  load(e: { component: string; loaded: number; total: number }): void {
    if (this.quiet) return;
    if (e.loaded <= 1 || !this.loadStart.has(e.component)) this.loadStart.set(e.component, performance.now());
    if (this.tty && e.loaded < e.total) {
      const width = Math.max(10, Math.min(30, (this.out.columns ?? 80) - 60));
      const filled = Math.round((e.loaded / e.total) * width);
      this.out.write(`\r\x1b[2K[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] loading ${e.component} ${e.loaded}/${e.total} tensors`);
      this.drawn = true;
    }
    if (e.loaded === e.total) this.note(`loaded ${e.component} (${e.total} tensors) in ${((performance.now() - (this.loadStart.get(e.component) ?? 0)) / 1000).toFixed(1)}s`);
  }

  /** Ends a bar line. */
  finish(): void {
    if (this.drawn) this.out.write('\n');
    this.drawn = false;
  }
}

/** --out's value that writes the video to stdout. */
const STDOUT = '-';

/** The extensions --out takes, for messages: ".mp4, .gif or .png". */
const EXTENSIONS = `${VIDEO_FORMATS.slice(0, -1).map((f) => `.${f}`).join(', ')} or .${VIDEO_FORMATS[VIDEO_FORMATS.length - 1]}`;

/**
 * The output's format: --format, else the extension of --out (case-insensitive; an unknown one or
 * none is refused), else mp4. --out - (stdout) takes mp4 (the default) or gif.
 */
function outputFormat(out: string | undefined, format: string | undefined): { file: string; format: VideoFormat } {
  if (format !== undefined && !(VIDEO_FORMATS as readonly string[]).includes(format)) throw new ConfigError(`--format: got "${format}", expected one of ${VIDEO_FORMATS.join(', ')}`);
  const chosen = format as VideoFormat | undefined;
  if (out === STDOUT) {
    if (chosen === 'png') throw new ConfigError('--out - (stdout) takes mp4 or gif, not a folder of PNG frames');
    return { file: out, format: chosen ?? 'mp4' };
  }
  const file = out ?? (chosen === 'png' ? 'wan-output' : `wan-output.${chosen ?? 'mp4'}`);
  const implied = formatFromPath(file);
  if (chosen && implied && implied !== chosen) throw new ConfigError(`--format ${chosen} does not match --out ${file} (a .${implied} file); change one of them`);
  const ext = path.extname(file);
  if (!chosen && !implied) {
    if (ext === '') throw new ConfigError(`--out ${file}: no extension; use ${EXTENSIONS}, or give --format (png for a folder of frames)`);
    throw new ConfigError(`--out ${file}: ${ext} files are not written; use ${EXTENSIONS} (convert with ffmpeg for other formats), or give --format`);
  }
  return { file, format: chosen ?? implied ?? 'mp4' };
}

/** Refuses an output whose folder does not exist (it is not created: a typo would hide the video). */
function checkOutputFolder(file: string): void {
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(dir)) throw new ConfigError(`--out ${file}: the folder ${dir} does not exist; create it first`);
}

const GENERATE_OPTIONS = {
  model: { type: 'string' },
  transformer: { type: 'string' },
  'transformer-2': { type: 'string' },
  'boundary-ratio': { type: 'string' },
  vae: { type: 'string' },
  'text-encoder': { type: 'string' },
  tokenizer: { type: 'string' },
  prompt: { type: 'string' },
  'negative-prompt': { type: 'string' },
  'prompt-embeds': { type: 'string' },
  'negative-prompt-embeds': { type: 'string' },
  out: { type: 'string', short: 'o' },
  format: { type: 'string' },
  frames: { type: 'string' },
  size: { type: 'string' },
  steps: { type: 'string' },
  guidance: { type: 'string' },
  guidance2: { type: 'string' },
  shift: { type: 'string' },
  seed: { type: 'string' },
  fps: { type: 'string' },
  backend: { type: 'string' },
  precision: { type: 'string' },
  experts: { type: 'string' },
  'offload-blocks': { type: 'string' },
  'vae-budget': { type: 'string' },
  image: { type: 'string' },
  'last-image': { type: 'string' },
  watermark: { type: 'string' },
  'watermark-position': { type: 'string' },
  'watermark-scale': { type: 'string' },
  'watermark-opacity': { type: 'string' },
  subtitles: { type: 'string' },
  audio: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  prompts: { type: 'string' },
  'out-dir': { type: 'string' },
  batch: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

/** The flags of `options` that take a value. */
function valueFlags(options: NonNullable<ParseArgsConfig['options']>): Set<string> {
  return new Set(Object.entries(options).filter(([, o]) => o.type === 'string').map(([name]) => name));
}

/**
 * generate: every argument is checked before a byte of weights is read — the flags, the output
 * (format, a writable path), the model's configs (model_index.json read once) and the settings
 * (resolveSettings, once) — then the model loads with progress, the video is made and written.
 */
async function generate(args: readonly string[], io: CliIO): Promise<number> {
  if (wantsHelp(args)) {
    io.stdout.write(USAGE);
    return 0;
  }
  const { values, positionals } = parseArgs({
    args: joinNegativeValues(args, valueFlags(GENERATE_OPTIONS)),
    strict: true,
    allowPositionals: true,
    options: GENERATE_OPTIONS,
  });
  if (values.prompts !== undefined || values['out-dir'] !== undefined || values.batch !== undefined) {
    // the post-processing flags apply to every clip of the list: the logo read and checked here, the files per line there
    const post = { watermark: watermarkFlags(values), watermarkName: values.watermark !== undefined ? watermarkFlagName(values.watermark) : undefined };
    return await generatePromptList(values, positionals, io, new ProgressReporter(io.stderr, io.stderr.isTTY === true, values.quiet === true), libraryVersion(), post);
  }
  // The prompt may also be given as the one positional argument: wan-tfjs generate "a red circle moving right".
  if (positionals.length > 1) throw new ConfigError(`generate takes one prompt argument, got ${positionals.length}: quote the prompt`);
  if (positionals.length === 1) {
    if (values.prompt !== undefined) throw new ConfigError('give the prompt as an argument or with --prompt, not both');
    values.prompt = positionals[0];
  }
  if (values.prompt === undefined && values['prompt-embeds'] === undefined) throw new ConfigError('--prompt is required (or --prompt-embeds for a model without a text encoder)');
  if (values.prompt !== undefined && values['prompt-embeds'] !== undefined) throw new ConfigError('give --prompt or --prompt-embeds, not both');
  if (values.prompt !== undefined && values.prompt.trim() === '') throw new ConfigError('the prompt is empty: give the words of the video as the prompt argument or --prompt');
  if (values['negative-prompt'] !== undefined && values['negative-prompt-embeds'] !== undefined) throw new ConfigError('give --negative-prompt or --negative-prompt-embeds, not both');
  throwIfFlagged(promptVerdict(values.prompt));
  const output = outputFormat(values.out, values.format);
  const residency = values.experts;
  if (residency !== undefined && residency !== 'both' && residency !== 'swap' && residency !== 'active') throw new ConfigError(`--experts: got "${residency}", expected both, swap or active`);
  const offloadBlocks = intFlag('offload-blocks', values['offload-blocks']);
  if (offloadBlocks !== undefined && offloadBlocks < 0) throw new ConfigError(`--offload-blocks: got ${offloadBlocks}, expected 0 or more blocks`);
  const vaeBudgetText = values['vae-budget'];
  const vaeMemoryBudget = vaeBudgetText === undefined ? undefined : memorySizeBytes(vaeBudgetText);
  if (vaeBudgetText !== undefined && vaeMemoryBudget === undefined) throw new ConfigError(`--vae-budget: got "${vaeBudgetText}", expected a memory size such as 8g, 512m or a number of bytes`);
  const precision = values.precision;
  if (precision !== undefined && precision !== 'bf16' && precision !== 'fp32') throw new ConfigError(`--precision: got "${precision}", expected bf16 or fp32`);
  const [width, height] = values.size !== undefined ? parseSize(values.size) : [undefined, undefined];
  const shift = numFlag('shift', values.shift);
  const files: ModelFiles = {
    transformer: values.transformer,
    transformer2: values['transformer-2'],
    vae: values.vae,
    textEncoder: values['text-encoder'],
    tokenizer: values.tokenizer,
    boundaryRatio: numFlag('boundary-ratio', values['boundary-ratio']),
  };
  const givenFiles = hasModelFiles(files);
  const modelDir = values.model ?? (givenFiles ? undefined : defaultModelDir(io.env));
  const folder = modelDir === undefined ? undefined : readModelIndex(modelDir);
  const index = folder === undefined || givenFiles ? withModelFiles(folder, files, io.env) : folder;
  const modelName = path.basename(path.resolve(modelDir ?? index.transformer));
  const spec = readPipelineSpec(index);
  const image = values.image !== undefined ? readImage(values.image, 'image') : undefined;
  const lastImage = values['last-image'] !== undefined ? readImage(values['last-image'], 'last-image') : undefined;
  if (lastImage && !image) throw new ConfigError('--last-image needs --image (the first frame) too');
  const watermark = watermarkFlags(values);
  for (const flag of ['subtitles', 'audio'] as const) {
    const file = values[flag];
    if (file === undefined) continue;
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new ConfigError(`--${flag}: no file ${file}`);
    if (output.format !== 'mp4') throw new ConfigError(`--${flag} needs an mp4 written by ffmpeg, not ${output.format}`);
  }

  const progress = new ProgressReporter(io.stderr, io.stderr.isTTY === true, values.quiet === true);
  // Production mode: no debug checks, and no console banner from the backends.
  tf.enableProdMode();
  const backend = await selectBackend(values.backend, { precision });
  const owned: tf.Tensor[] = [];
  const own = <T extends tf.Tensor | undefined>(t: T): T => {
    if (t) owned.push(t);
    return t;
  };
  let pipe: WanPipeline | undefined;
  try {
    const encodeStart = performance.now();
    const call = resolveSettings(spec, {
      image: own(image ? pngToImage(image) : undefined),
      lastImage: own(lastImage ? pngToImage(lastImage) : undefined),
      imageEncode: {
        onProgress: (done: number, total: number) => {
          if (done === total) progress.note(`encoded the image condition (${total} VAE chunk${total === 1 ? '' : 's'}) in ${((performance.now() - encodeStart) / 1000).toFixed(1)}s`);
        },
      },
      prompt: values.prompt,
      promptEmbeds: own(values['prompt-embeds'] !== undefined ? readEmbeds(values['prompt-embeds'], 'prompt-embeds') : undefined),
      negativePrompt: values['negative-prompt'],
      negativePromptEmbeds: own(values['negative-prompt-embeds'] !== undefined ? readEmbeds(values['negative-prompt-embeds'], 'negative-prompt-embeds') : undefined),
      numFrames: intFlag('frames', values.frames),
      height,
      width,
      fps: numFlag('fps', values.fps),
      numInferenceSteps: intFlag('steps', values.steps),
      guidanceScale: numFlag('guidance', values.guidance),
      guidanceScale2: numFlag('guidance2', values.guidance2),
      shift,
      seed: seedFlag(values.seed),
      vaeMemoryBudget,
      signal: io.signal,
      onStep: (s: StepInfo) => progress.step(s),
    });
    // A logo too large for the frame is refused now, before the model loads.
    if (watermark && values.watermark !== undefined) watermarkPlacement(watermark, call.height, call.width, watermarkFlagName(values.watermark));
    const toStdout = output.file === STDOUT;
    const singlePng = output.format === 'png' && call.numFrames === 1 && formatFromPath(output.file) === 'png';
    if (!toStdout) {
      checkOutputFolder(output.file);
      checkOutputTarget(output.file, output.format === 'png' && !singlePng ? 'folder' : 'file');
    }

    const stored = (tf.backend() as tf.KernelBackend & { precision?: string }).precision ?? 'fp32';
    progress.note(`backend ${backend} (${stored}); loading ${modelDir ?? [index.transformer, index.transformer2, index.vae, index.textEncoder].filter((p) => p !== undefined).join(', ')}`);
    progress.note(
      `${call.numFrames} frames ${call.width}×${call.height}, ${call.numInferenceSteps} steps, guidance ${call.guidanceScale}` +
        `${call.guidanceScale2 !== undefined ? ` / ${call.guidanceScale2}` : ''}, seed ${call.seed}`,
    );
    const ffmpeg = output.format === 'mp4' ? await findFfmpeg() : undefined;
    const needsFfmpeg = values.subtitles !== undefined ? 'subtitles' : values.audio !== undefined ? 'audio' : undefined;
    if (needsFfmpeg && !ffmpeg) throw new ConfigError(`--${needsFfmpeg} needs ffmpeg, which was not found: install it (apt install ffmpeg, brew install ffmpeg, or npm install @ffmpeg-installer/ffmpeg) or set WAN_FFMPEG`);
    if (output.format === 'mp4' && !ffmpeg) progress.note('ffmpeg not found: the MP4 is written uncompressed by the built-in writer (install ffmpeg for a much smaller file)');
    const t0 = performance.now();
    pipe = await WanPipeline.fromPretrained(index, { residency, offloadBlocks, onProgress: (e) => progress.load(e) });
    if (pipe.memoryPlan) progress.note(pipe.memoryPlan.reason);
    const result = await pipe.textToVideo(call);
    progress.finish();
    // --out -: written in a private folder, then copied to stdout
    const privateDir = toStdout ? fs.mkdtempSync(path.join(os.tmpdir(), 'wan-tfjs-stdout-')) : undefined;
    const file = privateDir ? path.join(privateDir, `video.${output.format}`) : output.file;
    const cleanup = privateDir ? () => fs.rmSync(privateDir, { recursive: true, force: true }) : newTempRemover(path.dirname(path.resolve(file)));
    io.cleanups?.add(cleanup);
    progress.note(`writing ${toStdout ? `${output.format.toUpperCase()} to stdout` : path.resolve(file)}`);
    try {
      const saved = await saveVideo(result.frames, file, {
        fps: result.fps,
        format: output.format,
        signal: io.signal,
        ...(output.format === 'mp4' ? (ffmpeg ? { ffmpegPath: ffmpeg } : { encoder: 'builtin' as const }) : {}),
        watermark,
        subtitles: values.subtitles,
        audio: values.audio,
        metadata: {
          prompt: values.prompt ?? `(embeddings ${values['prompt-embeds']})`,
          negativePrompt: values['negative-prompt'],
          seed: result.seed,
          steps: result.numInferenceSteps,
          guidance: result.guidanceScale,
          guidance2: result.guidanceScale2,
          shift,
          image: values.image !== undefined ? path.basename(values.image) : undefined,
          lastImage: values['last-image'] !== undefined ? path.basename(values['last-image']) : undefined,
          model: modelName,
          software: `wan-tfjs ${libraryVersion()}`,
        },
        provenance: {
          prompt: values.prompt,
          negativePrompt: values['negative-prompt'],
          seed: result.seed,
          steps: result.numInferenceSteps,
          guidance: result.guidanceScale,
          guidance2: result.guidanceScale2,
          libraryVersion: libraryVersion(),
          model: await modelIdentity(index),
        },
      });
      if (privateDir) io.stdout.write(fs.readFileSync(saved.path));
      (toStdout ? io.stderr : io.stdout).write(
        `wrote ${toStdout ? `${saved.format.toUpperCase()} to stdout` : saved.path} (${saved.frameCount} frames, ${saved.width}×${saved.height}, ${saved.fps} fps, seed ${result.seed}${saved.encoder === 'builtin' && saved.format === 'mp4' ? ', uncompressed H.264' : ''}) in ${((performance.now() - t0) / 1000).toFixed(1)}s\n`,
      );
    } finally {
      io.cleanups?.delete(cleanup);
      if (privateDir) cleanup();
      result.frames.dispose();
    }
  } finally {
    progress.finish();
    tf.dispose(owned);
    pipe?.dispose();
  }
  return 0;
}

function inspect(args: readonly string[], io: CliIO): number {
  if (wantsHelp(args)) {
    io.stdout.write(USAGE);
    return 0;
  }
  const { values, positionals } = parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: true,
    options: { tensors: { type: 'boolean', short: 't' }, all: { type: 'boolean', short: 'a' }, json: { type: 'boolean' } },
  });
  if (positionals.length !== 1) throw new ConfigError(`inspect takes one checkpoint file or folder, got ${positionals.length}`);
  const report = inspectCheckpoint(positionals[0]);
  if (values.json) {
    io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return 0;
  }
  const listTensors = values.tensors === true || values.all === true || report.kind === 'checkpoint' || report.kind === 'component';
  io.stdout.write(`${formatInspect(report, { tensors: listTensors, maxTensors: values.all ? Infinity : 20 }).join('\n')}\n`);
  return 0;
}

const BUILD_CUDA_USAGE = `wan-tfjs build-cuda — compile backend 'cuda''s native addon where this package is installed

Usage:
  wan-tfjs build-cuda [--compile-only]      (from a project: npx wan-tfjs build-cuda)

Runs the package's src/cuda/build.mjs, which writes build/Release/wan_cuda.node inside the package
(where --backend cuda looks for it). Needs the CUDA toolkit 12 or 13 (nvcc, cuBLAS) and write access
to the package folder; cuDNN headers are optional (fused attention and convolutions).

  --compile-only           compile every source, link nothing (a check without cuBLAS libraries)

Environment:
  CUDA_HOME                the toolkit's folder (else $CUDA_PATH, nvcc on PATH, /usr/local/cuda)
  WAN_CUDA_ARCHS           compute capabilities to build for, comma-separated (default 80,90)
  WAN_CUDNN_INCLUDE        the folder holding cudnn.h (else /usr/include, Python's nvidia/cudnn)
  WAN_CUDNN=0              build without the cuDNN path
  WAN_CUDA_ADDON           where --backend cuda loads the addon from, if not the package's build/
`;

/**
 * `wan-tfjs build-cuda`: runs the build script of the package this CLI belongs to (`root`, found from
 * this module: node_modules/wan-tfjs when installed) with the CLI's environment; returns its exit code.
 */
export async function buildCuda(argv: readonly string[], io: CliIO, root: string | undefined = packageRoot()): Promise<number> {
  const { values } = parseArgs({ args: [...argv], options: { 'compile-only': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help) {
    io.stdout.write(BUILD_CUDA_USAGE);
    return 0;
  }
  if (root === undefined) throw new ConfigError('build-cuda: the wan-tfjs package folder was not found above this CLI');
  const script = path.join(root, 'src', 'cuda', 'build.mjs');
  if (!fs.existsSync(script) || !fs.existsSync(path.join(root, 'src', 'cuda', 'native'))) {
    throw new ConfigError(`build-cuda: ${script} or its sources (src/cuda/native) are missing in ${root}; reinstall wan-tfjs (the package ships them)`);
  }
  const child = spawn(process.execPath, [script, ...(values['compile-only'] ? ['--compile-only'] : [])], {
    cwd: root,
    env: { ...io.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.setEncoding('utf-8').on('data', (s: string) => io.stdout.write(s));
  child.stderr.setEncoding('utf-8').on('data', (s: string) => io.stderr.write(s));
  const onAbort = () => child.kill('SIGINT');
  io.signal?.addEventListener('abort', onAbort);
  try {
    const code = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c, sig) => resolve(c ?? (sig ? 130 : 1)));
    });
    if (code === 0 && !values['compile-only']) {
      io.stderr.write(`wan-tfjs: backend 'cuda' is ready (${path.join(root, 'build', 'Release', 'wan_cuda.node')}); use --backend cuda\n`);
    }
    return code === 0 ? 0 : code === 130 ? 130 : 1;
  } finally {
    io.signal?.removeEventListener('abort', onAbort);
  }
}

/** True for the errors whose message is meant for the user: the library's own and bad command lines. */
function isUserError(e: unknown): e is Error {
  if (e instanceof WanError) return true;
  const code: unknown = e instanceof Error && 'code' in e ? e.code : undefined;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}

/** Runs the CLI; returns the exit code (0 success, 1 a reported error, 130 interrupted). */
export async function main(argv: readonly string[], io: CliIO): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'generate':
        return await generate(rest, io);
      case 'inspect':
        return inspect(rest, io);
      case 'build-cuda':
        return await buildCuda(rest, io);
      case 'serve':
        return await serveCommand(rest, io);
      case 'worker':
        return await workerCommand(rest, io, libraryVersion());
      case 'verify':
        return verifyCommand(rest, io);
      case '--version':
      case '-v':
        io.stdout.write(`${libraryVersion()}\n`);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.stdout.write(USAGE);
        return 0;
      default:
        throw new ConfigError(`unknown command "${command}"; use generate, inspect, verify or build-cuda (wan-tfjs --help)`);
    }
  } catch (e) {
    if (e instanceof AbortError) {
      io.stderr.write(`\nwan-tfjs: interrupted; nothing was written\n`);
      return 130;
    }
    if (isUserError(e)) {
      io.stderr.write(`wan-tfjs: ${e.message.split('\n')[0]}\n`);
      return 1;
    }
    io.stderr.write(`wan-tfjs: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 2;
  }
}

function invokedDirectly(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return fs.realpathSync(entry) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

/** The exit code of a process ended by `signal`: 128 + its number (130 SIGINT, 143 SIGTERM, 129 SIGHUP). */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + os.constants.signals[signal];
}

/** The CLI's response to SIGINT, SIGTERM and SIGHUP, and the first one received. */
export interface SignalHandler {
  readonly handle: (signal: NodeJS.Signals) => void;
  readonly received: () => NodeJS.Signals | undefined;
}

/**
 * The first signal aborts `ctrl` (the generation, or the writing, stops at its next check); a second
 * one runs the `cleanups` (removing the file being written) and exits at once through `exit`.
 */
export function signalHandler(ctrl: AbortController, cleanups: ReadonlySet<() => void>, stderr: CliIO['stderr'], exit: (code: number) => void): SignalHandler {
  let first: NodeJS.Signals | undefined;
  return {
    handle: (signal) => {
      if (first === undefined) {
        first = signal;
        ctrl.abort();
        return;
      }
      killEncoders();
      for (const cleanup of cleanups) cleanup();
      stderr.write(`\nwan-tfjs: interrupted again; exiting now\n`);
      exit(signalExitCode(signal));
    },
    received: () => first,
  };
}

if (invokedDirectly()) {
  const ctrl = new AbortController();
  const cleanups = new Set<() => void>();
  const signals = signalHandler(ctrl, cleanups, process.stderr, (code) => process.exit(code));
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, signals.handle);
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, signal: ctrl.signal, cleanups }).then((code) => {
    const received = signals.received();
    process.exitCode = code === 130 && received !== undefined ? signalExitCode(received) : code;
  });
}
