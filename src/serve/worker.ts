import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { AbortError, WanError } from '../errors.js';
import type { WanPipeline } from '../pipeline/wan-pipeline.js';
import { randnHost } from '../random.js';
import { WanTextEncoder } from '../text/text-encoder.js';
import { readSidecar, sidecarPath, type ProvenanceInput } from '../video/provenance.js';
import { saveVideo } from '../video/save-video.js';
import type { EmbeddingStore } from './embedding-store.js';
import type { Claim, JobQueue } from './job-queue.js';

export interface WorkerOptions {
  readonly queue: JobQueue;
  /** Where clips are written before the queue takes them (the embedded queue's scratch folder: same file system as its results). */
  readonly scratchDir: string;
  /** Loaded once; every job runs on it. */
  readonly pipe: WanPipeline;
  /** The model's name in each clip's embedded metadata. */
  readonly model: string;
  readonly software: string;
  /** The library version and the model's identity (computed once) in each clip's provenance record. */
  readonly provenance: Pick<ProvenanceInput, 'libraryVersion' | 'model'>;
  readonly id: string;
  /** Most compatible jobs run as one batch. */
  readonly batch: number;
  readonly leaseMs: number;
  /** Wait between claims while the queue is empty. */
  readonly pollMs: number;
  /** Stops the worker: a batch in progress is aborted (its jobs' leases lapse and they run elsewhere). */
  readonly signal: AbortSignal;
  readonly log: (line: string) => void;
  /** Persists the text encoder's prompt-embedding cache (loaded at start, written after each batch). */
  readonly embeddings?: EmbeddingStore;
  readonly ffmpegPath?: string;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });

function message(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0] : String(e);
}

/**
 * Claims jobs until `signal` aborts: up to `batch` compatible jobs (same settings but prompt and
 * seed) run as one pipeline call, each sample's noise that of a single call with its job's seed;
 * each clip is written with its provenance record (embedded, and the sidecar `<clip>.json`) and
 * both are handed to the queue. Leases are renewed every third of `leaseMs`; when none of the
 * batch's claims is still this worker's (cancelled, or claimed again after a stall), the batch is
 * aborted. A failure fails the jobs it concerns and the worker goes on.
 */
export async function runWorker(o: WorkerOptions): Promise<void> {
  const cache = o.pipe.textEncoder instanceof WanTextEncoder ? o.pipe.textEncoder.cache : null;
  if (o.embeddings && cache) o.log(`worker ${o.id}: ${o.embeddings.load(cache)} prompt embeddings read from ${o.embeddings.dir}`);
  o.log(`worker ${o.id}: waiting for jobs`);
  while (!o.signal.aborted) {
    let claims: Claim[];
    try {
      claims = await o.queue.claim(o.id, { max: o.batch, leaseMs: o.leaseMs });
    } catch (e) {
      o.log(`worker ${o.id}: claiming failed (${message(e)}); retrying`);
      await sleep(o.pollMs, o.signal);
      continue;
    }
    if (claims.length === 0) {
      await sleep(o.pollMs, o.signal);
      continue;
    }
    try {
      await runBatch(o, claims);
    } catch (e) {
      // runBatch fails its jobs itself; anything that still escapes must not stop the worker
      o.log(`worker ${o.id}: unexpected error after job(s) ${claims.map((c) => c.job.id.slice(0, 8)).join(', ')} (${message(e)}); taking the next job`);
    }
    if (o.embeddings && cache) {
      try {
        await o.embeddings.save(cache);
      } catch (e) {
        o.log(`worker ${o.id}: the prompt-embedding cache was not saved (${message(e)})`);
      }
    }
  }
}

async function runBatch(o: WorkerOptions, claims: Claim[]): Promise<void> {
  const spec = claims[0].job.spec;
  const ids = claims.map((c) => c.job.id.slice(0, 8)).join(', ');
  o.log(`worker ${o.id}: running ${claims.length} job(s) ${ids}`);
  const ctrl = new AbortController();
  const stop = () => ctrl.abort();
  o.signal.addEventListener('abort', stop);
  let live = claims;
  let reporting = Promise.resolve();
  const beat = setInterval(() => {
    reporting = reporting
      .then(() => o.queue.heartbeat(live, o.leaseMs))
      .then((lost) => {
        live = live.filter((c) => !lost.includes(c.job.id));
        if (live.length === 0) ctrl.abort();
      })
      .catch((e: unknown) => o.log(`worker ${o.id}: heartbeat failed (${message(e)})`));
  }, Math.max(50, o.leaseMs / 3));
  let latents: tf.Tensor | undefined;
  let frames: tf.Tensor | undefined;
  try {
    const options = {
      prompt: claims.length === 1 ? spec.prompt : claims.map((c) => c.job.spec.prompt),
      negativePrompt: spec.negativePrompt,
      numFrames: spec.numFrames,
      width: spec.width,
      height: spec.height,
      numInferenceSteps: spec.steps,
      guidanceScale: spec.guidance,
      fps: spec.fps,
      signal: ctrl.signal,
    };
    const sample = o.pipe.resolve({ ...options, prompt: spec.prompt, seed: spec.seed }, { decode: true }).latentShape;
    const n = sample.reduce((a, d) => a * d, 1);
    const noise = new Float32Array(n * claims.length);
    claims.forEach((c, i) => noise.set(randnHost(sample, c.job.spec.seed), i * n));
    latents = tf.tensor(noise, [claims.length, ...sample.slice(1)], 'float32');
    const result = await o.pipe.textToVideo({
      ...options,
      latents,
      onStep: ({ step, total }) => {
        reporting = reporting.then(() => Promise.all(live.map((c) => o.queue.progress(c, step, total)))).then(
          () => undefined,
          (e: unknown) => o.log(`worker ${o.id}: progress not recorded (${message(e)})`),
        );
      },
    });
    frames = result.frames;
    await reporting;
    for (const [i, claim] of claims.entries()) {
      if (!live.includes(claim)) continue;
      await publish(o, claim, frames, i, result);
    }
  } catch (e) {
    await reporting;
    if (e instanceof AbortError) o.log(`worker ${o.id}: job(s) ${ids} stopped`);
    else o.log(`worker ${o.id}: job(s) ${ids} failed: ${message(e)}`);
    const error = e instanceof WanError ? message(e) : `internal error: ${message(e)}`;
    for (const claim of live) {
      try {
        await o.queue.fail(claim, e instanceof AbortError ? 'stopped' : error);
      } catch (err) {
        o.log(`worker ${o.id}: job ${claim.job.id} could not be marked failed (${message(err)})`);
      }
    }
  } finally {
    clearInterval(beat);
    o.signal.removeEventListener('abort', stop);
    latents?.dispose();
    frames?.dispose();
  }
}

interface Made {
  readonly numFrames: number;
  readonly width: number;
  readonly height: number;
  readonly fps: number;
  readonly numInferenceSteps: number;
  readonly guidanceScale: number;
  readonly guidanceScale2?: number;
}

/**
 * Writes sample `i` of `frames` with its provenance record (embedded and as the sidecar saveVideo
 * writes beside it) and hands both to the queue. A failure (a full disk, permissions, a folder in the
 * way: saveVideo's OutputFileError, or the queue's move into its results) fails this job only, with
 * the error's message: this never throws, so the batch's other clips are still written and the
 * worker goes on. saveVideo leaves no partial file; what the job left in the scratch folder is removed.
 */
async function publish(o: WorkerOptions, claim: Claim, frames: tf.Tensor, i: number, made: Made): Promise<void> {
  const { job, token } = claim;
  const one = tf.tidy(() => tf.slice(frames, [i, 0, 0, 0, 0], [1, ...frames.shape.slice(1)]));
  const tempFile = path.join(o.scratchDir, `${token}.${job.spec.format}`);
  try {
    await saveVideo(one, tempFile, {
      fps: made.fps,
      format: job.spec.format,
      ...(job.spec.format === 'mp4' ? (o.ffmpegPath ? { ffmpegPath: o.ffmpegPath } : { encoder: 'builtin' as const }) : {}),
      metadata: { model: o.model, software: o.software, job: job.id },
      provenance: {
        prompt: job.spec.prompt,
        negativePrompt: job.spec.negativePrompt,
        seed: job.spec.seed,
        steps: made.numInferenceSteps,
        guidance: made.guidanceScale,
        guidance2: made.guidanceScale2,
        ...o.provenance,
        submitter: job.submitter,
      },
    });
    const sidecarFile = sidecarPath(tempFile);
    const { format, sha256, provenance } = readSidecar(tempFile);
    const metadata = { jobId: job.id, worker: o.id, attempt: job.attempts, submittedAt: job.submittedAt, software: o.software, format, sha256, ...provenance };
    const kept = await o.queue.complete(claim, { tempFile, sidecarFile, metadata });
    o.log(`worker ${o.id}: job ${job.id} ${kept ? 'done' : 'was no longer this worker\'s; its clip was dropped'}`);
  } catch (e) {
    o.log(`worker ${o.id}: job ${job.id} failed: ${message(e)}`);
    try {
      await o.queue.fail(claim, `writing the clip failed: ${message(e)}`);
    } catch (err) {
      // its lease lapses and the job is claimed again (or failed after its last attempt)
      o.log(`worker ${o.id}: job ${job.id} could not be marked failed (${message(err)})`);
    }
    // nothing of this job stays in the scratch folder (complete removes both files too); a removal
    // that fails (a folder in the way) is logged, never thrown over the job's own error
    await Promise.all(
      [tempFile, sidecarPath(tempFile)].map((f) => fs.promises.rm(f, { force: true }).catch((err: unknown) => o.log(`worker ${o.id}: ${f} was not removed (${message(err)})`))),
    );
  } finally {
    one.dispose();
  }
}
