import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { AbortError, ConfigError } from '../errors.js';
import type { StepInfo } from '../pipeline/generate-options.js';
import { memoryBudget, type MemoryBudget } from '../pipeline/memory-budget.js';
import { estimateMemory, type CallSize } from '../pipeline/memory-estimate.js';
import type { PipelineSpec } from '../pipeline/pipeline-spec.js';
import { resolveSettings, type ResolvedCall } from '../pipeline/resolve-settings.js';
import type { WanPipeline } from '../pipeline/wan-pipeline.js';
import { randomSeed } from '../random.js';
import type { ProvenanceInput } from '../video/provenance.js';
import { formatFromPath, saveVideo, type SaveVideoOptions, type VideoMetadata } from '../video/save-video.js';
import { newTempRemover } from '../video/temp-files.js';
import { atLine, checkLineFiles, isFinished, type PromptJob, type PromptLineSettings } from './prompt-list.js';

/** What a line that leaves a setting out gets (the CLI's flags); the model's defaults for the rest. */
export interface PromptListDefaults extends PromptLineSettings {
  guidanceScale2?: number;
  shift?: number;
  fps?: number;
}

/** A job to make: its seed chosen, its settings resolved against the model (batch 1), its subtitles and audio the line's or the run's. */
export interface PlannedJob extends PromptJob {
  seed: number;
  call: ResolvedCall;
}

/** The jobs of a run: those whose clip is missing, in groups of equal settings (lines in file order), and those already finished. */
export interface PromptListPlan {
  outDir: string;
  groups: PlannedJob[][];
  finished: PromptJob[];
}

/** The settings that must be equal for jobs to share a batch. */
function groupKey(job: PlannedJob): string {
  const c = job.call;
  return JSON.stringify([c.width, c.height, c.numFrames, c.numInferenceSteps, c.guidanceScale, c.guidanceScale2, c.shift, c.fps, c.options.negativePrompt ?? '']);
}

/**
 * Checks every line against the model (`spec`) before anything runs: its settings after `defaults`
 * and the model's defaults (frames, size, steps, guidance, memory at batch 1) and, for a clip still to
 * make, its subtitles and audio files (checkLineFiles); a refusal is a ConfigError naming `file` and the line. Lines whose
 * output exists in `outDir` are finished (not made again); the others get their seed (the line's,
 * else `defaults.seed`, else a random one), their subtitles and audio (the line's, else the
 * defaults'), and are grouped by size, frames, steps, guidance, shift, fps and negative prompt
 * (subtitles and audio are applied as each clip is written, so they do not split a batch).
 */
export function planPromptList(spec: PipelineSpec, jobs: readonly PromptJob[], file: string, outDir: string, defaults: PromptListDefaults = {}, budget?: MemoryBudget): PromptListPlan {
  const groups = new Map<string, PlannedJob[]>();
  const finished: PromptJob[] = [];
  for (const job of jobs) {
    const seed = job.seed ?? defaults.seed ?? randomSeed();
    let call: ResolvedCall;
    try {
      call = resolveSettings(
        spec,
        {
          prompt: job.prompt,
          negativePrompt: job.negativePrompt ?? defaults.negativePrompt,
          seed,
          width: job.width ?? defaults.width,
          height: job.height ?? defaults.height,
          numFrames: job.numFrames ?? defaults.numFrames,
          numInferenceSteps: job.numInferenceSteps ?? defaults.numInferenceSteps,
          guidanceScale: job.guidanceScale ?? defaults.guidanceScale,
          guidanceScale2: defaults.guidanceScale2,
          shift: defaults.shift,
          fps: defaults.fps,
        },
        { decode: true, budget },
      );
    } catch (e) {
      throw atLine(file, job, e);
    }
    if (isFinished(outDir, job)) {
      finished.push(job);
      continue;
    }
    // only a clip still to make needs its files
    checkLineFiles(file, job, defaults);
    const subtitles = job.subtitles ?? defaults.subtitles;
    const audio = job.audio ?? defaults.audio;
    const planned: PlannedJob = { ...job, seed, call, ...(subtitles !== undefined ? { subtitles } : {}), ...(audio !== undefined ? { audio } : {}) };
    const key = groupKey(planned);
    const group = groups.get(key);
    if (group) group.push(planned);
    else groups.set(key, [planned]);
  }
  return { outDir, groups: [...groups.values()], finished };
}

/** Largest batch chosen without --batch: beyond it a batch only delays the first clips. */
export const MAX_AUTO_BATCH = 4;

/**
 * The batch for a group of `jobs` calls of `size`. On backend 'cuda': the largest B ≤ min(jobs,
 * MAX_AUTO_BATCH) whose memory estimate (estimateMemory, with the VAE decode) fits `budget`, at least
 * 1. On the backends that compute on the CPU (cpu, wasm, tensorflow): 1, since their work is bound by
 * the cores' arithmetic and a batch saves only per-call costs (bench/prompt-list-cpu.ts on 2 idle
 * cores: 515 clips/hour at batch 1, 414 at batch 4).
 */
export function chooseBatch(spec: PipelineSpec, size: Omit<CallSize, 'batch'>, jobs: number, budget: MemoryBudget): number {
  if (budget.backend !== 'cuda') return 1;
  let b = Math.max(1, Math.min(jobs, MAX_AUTO_BATCH));
  for (; b > 1; b--) {
    const need = estimateMemory(spec, { ...size, batch: b }, { decode: true, task: 'text-to-video' }, budget);
    if (need.bytes <= budget.freeBytes && need.largestElements <= budget.maxTensorElements) break;
  }
  return b;
}

/** What happened to one clip. */
export type ClipEvent =
  | { status: 'made'; job: PlannedJob; path: string; ms: number; batch: number }
  | { status: 'failed'; job: PlannedJob; reason: string }
  | { status: 'finished'; job: PromptJob };

export interface PromptListRunOptions {
  /** Jobs per batch in place of chooseBatch's (a group smaller than it runs whole). */
  batch?: number;
  /** Stops the run at the next step or frame written: the promise rejects with AbortError; clips already written stay. */
  signal?: AbortSignal;
  /** While a clip is written, a function here removes its temporary files (for a forced exit). */
  cleanups?: Set<() => void>;
  /** mp4 through this ffmpeg; without it the built-in writer. */
  ffmpegPath?: string;
  /** Written into every clip with the job's prompt, negative prompt, seed, steps and guidance. */
  metadata?: VideoMetadata;
  /** The library and model of every clip's provenance record (embedded and in its sidecar), beside the job's settings. */
  provenance?: Pick<ProvenanceInput, 'libraryVersion' | 'model' | 'submitter'>;
  /**
   * saveVideo's post-processing of every clip: a watermark, the transformFrames hook, the safety
   * checker (default promptBlocklist()). Each job's subtitles and audio come from the plan.
   */
  postProcess?: Pick<SaveVideoOptions, 'watermark' | 'transformFrames' | 'safetyChecker'>;
  onClip?: (e: ClipEvent, done: number, total: number) => void;
  onStep?: (s: StepInfo) => void;
  onBatch?: (jobs: readonly PlannedJob[]) => void;
}

/** The outcome of a run. */
export interface PromptListSummary {
  made: number;
  /** Finished before the run (their output existed). */
  skipped: number;
  failed: Array<{ line: number; name: string; reason: string }>;
  /** Milliseconds from the start of runPromptList to its end (the model loaded before). */
  totalMs: number;
  /** made / totalMs in clips per hour. */
  clipsPerHour: number;
  /** The size of each batch run. */
  batches: number[];
}

function reasonOf(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0] : String(e);
}

/**
 * Makes the plan's missing clips with `pipe`: each group in batches of `options.batch`, else
 * chooseBatch's against what the backend has free, one textToVideo call per batch (one seed per
 * prompt, so a clip does not depend on its batch), each clip written atomically by saveVideo to
 * `outDir/name`. A batch that fails marks its jobs failed and a clip that cannot be written marks
 * its job failed; the others go on. An abort rejects with AbortError (finished clips stay, so a
 * later run makes only the rest).
 */
export async function runPromptList(pipe: WanPipeline, plan: PromptListPlan, options: PromptListRunOptions = {}): Promise<PromptListSummary> {
  if (options.batch !== undefined && !(Number.isSafeInteger(options.batch) && options.batch >= 1)) throw new ConfigError(`batch: got ${options.batch}, expected a positive integer`);
  const t0 = performance.now();
  const total = plan.finished.length + plan.groups.reduce((a, g) => a + g.length, 0);
  let done = 0;
  const summary: PromptListSummary = { made: 0, skipped: plan.finished.length, failed: [], totalMs: 0, clipsPerHour: 0, batches: [] };
  for (const job of plan.finished) options.onClip?.({ status: 'finished', job }, ++done, total);
  const fail = (job: PlannedJob, e: unknown) => {
    summary.failed.push({ line: job.line, name: job.name, reason: reasonOf(e) });
    options.onClip?.({ status: 'failed', job, reason: reasonOf(e) }, ++done, total);
  };
  for (const group of plan.groups) {
    const c = group[0].call;
    const size = options.batch ?? chooseBatch(pipe.spec, { numFrames: c.numFrames, height: c.height, width: c.width }, group.length, memoryBudget());
    for (let i = 0; i < group.length; i += size) {
      const jobs = group.slice(i, i + size);
      if (options.signal?.aborted) throw new AbortError();
      options.onBatch?.(jobs);
      const start = performance.now();
      let frames: tf.Tensor;
      try {
        const result = await pipe.textToVideo({
          ...c.options,
          prompt: jobs.map((j) => j.prompt),
          seed: undefined,
          seeds: jobs.map((j) => j.seed),
          signal: options.signal,
          onStep: options.onStep,
        });
        frames = result.frames;
      } catch (e) {
        if (e instanceof AbortError) throw e;
        for (const job of jobs) fail(job, e);
        continue;
      }
      summary.batches.push(jobs.length);
      const ms = (performance.now() - start) / jobs.length;
      try {
        for (const [k, job] of jobs.entries()) {
          const target = path.join(plan.outDir, job.name);
          const format = formatFromPath(job.name) ?? 'mp4';
          const cleanup = newTempRemover(plan.outDir);
          options.cleanups?.add(cleanup);
          const clip = tf.slice(frames, [k], [1]);
          // what made the clip, in its metadata and in its provenance record
          const settings = {
            prompt: job.prompt,
            negativePrompt: typeof c.options.negativePrompt === 'string' ? c.options.negativePrompt : undefined,
            seed: job.seed,
            steps: c.numInferenceSteps,
            guidance: c.guidanceScale,
            guidance2: c.guidanceScale2,
          };
          try {
            const saved = await saveVideo(clip, target, {
              fps: c.fps,
              format,
              signal: options.signal,
              ...(format === 'mp4' ? (options.ffmpegPath ? { ffmpegPath: options.ffmpegPath } : { encoder: 'builtin' as const }) : {}),
              ...options.postProcess,
              subtitles: job.subtitles,
              audio: job.audio,
              metadata: { ...settings, shift: c.options.shift, ...options.metadata },
              ...(options.provenance ? { provenance: { ...settings, ...options.provenance } } : {}),
            });
            summary.made++;
            options.onClip?.({ status: 'made', job, path: saved.path, ms, batch: jobs.length }, ++done, total);
          } catch (e) {
            if (e instanceof AbortError) throw e;
            fail(job, e);
          } finally {
            clip.dispose();
            options.cleanups?.delete(cleanup);
          }
        }
      } finally {
        frames.dispose();
      }
    }
  }
  summary.totalMs = performance.now() - t0;
  summary.clipsPerHour = summary.totalMs > 0 ? (summary.made * 3_600_000) / summary.totalMs : 0;
  return summary;
}

/** The summary as lines: made, skipped as done, failed with reasons, total time, clips per hour. */
export function formatSummary(s: PromptListSummary): string[] {
  const lines = [
    `made ${s.made}, skipped ${s.skipped} (already done), failed ${s.failed.length}; ${(s.totalMs / 1000).toFixed(1)}s, ${s.clipsPerHour.toFixed(1)} clips/hour` +
      (s.batches.length > 0 ? ` (batches of ${[...new Set(s.batches)].join(', ')})` : ''),
  ];
  for (const f of s.failed) lines.push(`  failed line ${f.line} (${f.name}): ${f.reason}`);
  return lines;
}
