import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../backend/select.js';
import { ConfigError } from '../errors.js';
import { defaultModelDir, packageRoot } from '../pipeline/default-model.js';
import { modelIdentity } from '../pipeline/model-identity.js';
import { readModelIndex } from '../pipeline/model-index.js';
import { readPipelineSpec } from '../pipeline/pipeline-spec.js';
import { WanPipeline } from '../pipeline/wan-pipeline.js';
import { findFfmpeg } from '../video/ffmpeg.js';
import { EmbeddedQueue } from './embedded-queue.js';
import { EmbeddingStore } from './embedding-store.js';
import { checkJobSpec } from './job-spec.js';
import type { JobQueue, JobSpec } from './job-queue.js';
import { startServer } from './server.js';
import { runWorker } from './worker.js';
import { MAX_AUTO_BATCH } from '../jobs/run-prompt-list.js';

/** What the serve and worker commands use of the CLI's IO. */
export interface CommandIO {
  stdout: { write(data: string): unknown };
  stderr: { write(text: string): unknown };
  env: Readonly<Record<string, string | undefined>>;
  signal?: AbortSignal;
}

export const SERVE_USAGE = `wan-tfjs serve — the job queue over HTTP
wan-tfjs worker — runs the queue's jobs

Usage:
  wan-tfjs serve [--port N] [--host H] [--api-key K] [--queue DIR] [--model DIR]
  wan-tfjs worker [--queue DIR] [--model DIR] [--backend NAME] [--batch N] [--lease S]
                  [--id NAME] [--embedding-cache DIR] [--quiet]

The queue: Redis through BullMQ when $REDIS_URL is set (any number of machines), else the
embedded queue in --queue DIR (default $WAN_QUEUE_DIR, else ./wan-queue): a journal on disk
shared by the server and the workers of one machine, clips and their provenance sidecars
(<clip>.json, which wan-tfjs verify checks) in DIR/results.

serve options:
  --port N                 default 8000 (0: any free port); it prints "listening on URL"
  --host H                 default 127.0.0.1
  --api-key K              required of every request as "Authorization: Bearer K" (default $WAN_API_KEY)
  --model DIR              jobs' settings are checked against this model before they are queued
                           (default: $WAN_MODEL, else the bundled models/toy)
  API: POST /jobs {"prompt", "negativePrompt", "seed", "numFrames", "width", "height", "steps",
  "guidance", "fps", "format": "mp4"|"gif"}, GET /jobs, GET|DELETE /jobs/:id,
  GET /jobs/:id/result (the clip), GET /jobs/:id/sidecar (its provenance record),
  GET /jobs/:id/events (server-sent events), POST /jobs/:id/review {"decision": "publish"|"reject"},
  GET /jobs?review=pending|published|rejected; the review page: GET /review

worker options:
  --model DIR              loaded once for every job (default: $WAN_MODEL, else the bundled models/toy)
  --backend NAME           cpu | wasm | tensorflow | cuda (default: the fastest available)
  --batch N                most compatible jobs (same settings but prompt and seed) run together
                           (default 4 on cuda, 1 on the CPU backends)
  --lease S                seconds a claimed job stays this worker's without a heartbeat (default 30);
                           a worker that dies loses its jobs to another after this long
  --id NAME                the worker's name in jobs and metadata (default host-pid)
  --embedding-cache DIR    keep prompt embeddings in DIR across restarts
  --quiet                  no log lines
`;

function intFlag(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) throw new ConfigError(`--${name}: got "${v}", expected an integer ≥ ${min}`);
  return n;
}

/** The queue the environment names: BullMQ on $REDIS_URL, else the embedded queue in `dir`; and where workers write clips before handing them over. */
async function openQueue(io: CommandIO, queueDir: string | undefined): Promise<{ queue: JobQueue; scratchDir: string; where: string }> {
  const redis = io.env.REDIS_URL;
  if (redis) {
    if (queueDir !== undefined) throw new ConfigError('--queue is the embedded queue\'s folder; unset REDIS_URL to use it, or leave --queue out');
    const { BullQueue } = await import('./bullmq-queue.js');
    const queue = await BullQueue.connect(redis, io.env.WAN_QUEUE_NAME ?? 'wan-tfjs');
    return { queue, scratchDir: fs.mkdtempSync(path.join(os.tmpdir(), 'wan-tfjs-worker-')), where: `BullMQ on ${redis.replace(/\/\/[^@]*@/, '//')}` };
  }
  const dir = path.resolve(queueDir ?? io.env.WAN_QUEUE_DIR ?? 'wan-queue');
  const queue = new EmbeddedQueue(dir);
  return { queue, scratchDir: queue.scratchDir(), where: `the embedded queue in ${dir}` };
}

function untilAborted(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!signal) return;
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** `wan-tfjs serve`: runs until the CLI's signal aborts. */
export async function serveCommand(args: readonly string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    options: { port: { type: 'string' }, host: { type: 'string' }, 'api-key': { type: 'string' }, queue: { type: 'string' }, model: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    io.stdout.write(SERVE_USAGE);
    return 0;
  }
  const port = intFlag('port', values.port, 0) ?? 8000;
  if (port > 65535) throw new ConfigError(`--port: got ${port}, expected 0 … 65535`);
  const apiKey = values['api-key'] ?? io.env.WAN_API_KEY;
  if (apiKey !== undefined && apiKey.length < 8) throw new ConfigError('--api-key: expected at least 8 characters');
  const spec = readPipelineSpec(readModelIndex(values.model ?? defaultModelDir(io.env, packageRoot(), '--model')));
  const check = (job: JobSpec) => checkJobSpec(spec, job);
  const { queue, where } = await openQueue(io, values.queue);
  try {
    const server = await startServer({ queue, port, host: values.host, apiKey, check });
    io.stdout.write(`listening on ${server.url} (${where}${apiKey !== undefined ? ', API key required' : ''})\n`);
    await untilAborted(io.signal);
    await server.close();
  } finally {
    await queue.close();
  }
  return 0;
}

/** `wan-tfjs worker`: loads the model once and runs jobs until the CLI's signal aborts. */
export async function workerCommand(args: readonly string[], io: CommandIO, version: string): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    options: {
      queue: { type: 'string' },
      model: { type: 'string' },
      backend: { type: 'string' },
      batch: { type: 'string' },
      lease: { type: 'string' },
      id: { type: 'string' },
      'embedding-cache': { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.stdout.write(SERVE_USAGE);
    return 0;
  }
  const batchFlag = intFlag('batch', values.batch, 1);
  const lease = values.lease === undefined ? 30 : Number(values.lease);
  if (!(lease >= 0.5) || !Number.isFinite(lease)) throw new ConfigError(`--lease: got "${values.lease}", expected seconds ≥ 0.5`);
  const modelDir = values.model ?? defaultModelDir(io.env, packageRoot(), '--model');
  const index = readModelIndex(modelDir);
  const embeddings = values['embedding-cache'] !== undefined ? new EmbeddingStore(values['embedding-cache']) : undefined;
  const signal = io.signal ?? new AbortController().signal;
  const log = (line: string) => {
    if (!values.quiet) io.stderr.write(`${line}\n`);
  };
  const { queue, scratchDir, where } = await openQueue(io, values.queue);
  let pipe: WanPipeline | undefined;
  try {
    tf.enableProdMode();
    const backend = await selectBackend(values.backend);
    pipe = await WanPipeline.fromPretrained(index);
    const identity = await modelIdentity(index);
    const id = values.id ?? `${os.hostname()}-${process.pid}`;
    log(`worker ${id}: ${path.basename(path.resolve(modelDir))} loaded on backend ${backend}; jobs from ${where}`);
    await runWorker({
      queue,
      scratchDir,
      pipe,
      model: path.basename(path.resolve(modelDir)),
      software: `wan-tfjs ${version}`,
      provenance: { libraryVersion: version, model: identity },
      id,
      // as prompt lists choose (chooseBatch): batching pays on cuda; on the CPU backends it measured slower
      batch: batchFlag ?? (backend === 'cuda' ? MAX_AUTO_BATCH : 1),
      leaseMs: lease * 1000,
      pollMs: 200,
      signal,
      log,
      embeddings,
      ffmpegPath: await findFfmpeg(),
    });
  } finally {
    pipe?.dispose();
    await queue.close();
  }
  return 0;
}
