// Issue 19, item 2: a worker's prompt-embedding cache serves every job of the worker, and with
// `--embedding-cache DIR` (an EmbeddingStore) it outlives the worker. In-process, on the toy model:
// once the text encoder is released, a prompt runs only if its embedding is cached (a new prompt
// fails, naming the released encoder), so a job that runs proves the encoder was not needed.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { EmbeddedQueue } from '../src/serve/embedded-queue.js';
import { EmbeddingStore } from '../src/serve/embedding-store.js';
import type { JobRecord, JobSpec } from '../src/serve/job-queue.js';
import { runWorker } from '../src/serve/worker.js';
import { WanTextEncoder } from '../src/text/text-encoder.js';

const TOY = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'models', 'toy');
const PROMPT = 'a red circle moving right';

let tmp: string;
beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-embedding-cache-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function job(prompt: string, seed: number): JobSpec {
  return { prompt, seed, numFrames: 5, width: 32, height: 32, steps: 1, guidance: 1, format: 'gif' };
}

/** A worker on `queue` running `pipe` until the returned stop() is called (which waits for it to end). */
function startWorker(queue: EmbeddedQueue, pipe: WanPipeline, embeddings: EmbeddingStore, log: string[]): () => Promise<void> {
  const ctrl = new AbortController();
  const running = runWorker({
    queue,
    scratchDir: queue.scratchDir(),
    pipe,
    model: 'toy',
    software: 'wan-tfjs test',
    provenance: { libraryVersion: 'test', model: { id: TOY, checkpoints: [] } },
    id: 'w',
    batch: 1,
    leaseMs: 10_000,
    pollMs: 20,
    signal: ctrl.signal,
    log: (line) => log.push(line),
    embeddings,
  });
  return async () => {
    ctrl.abort();
    await running;
  };
}

async function finished(queue: EmbeddedQueue, id: string): Promise<JobRecord> {
  for (const end = Date.now() + 60_000; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    const j = await queue.status(id);
    if (j && (j.state === 'done' || j.state === 'failed' || j.state === 'cancelled')) return j;
  }
  throw new Error(`job ${id} did not finish in 60 s`);
}

function releaseTextEncoder(pipe: WanPipeline): void {
  const encoder = pipe.textEncoder;
  if (!(encoder instanceof WanTextEncoder)) throw new Error('the toy model has no WanTextEncoder');
  encoder.release();
  expect(encoder.released).toBe(true);
}

describe('worker prompt-embedding cache', () => {
  it('a repeated prompt runs without the text encoder, and the cache persists across a worker restart', async () => {
    const queue = new EmbeddedQueue(path.join(tmp, 'queue'));
    const cacheDir = path.join(tmp, 'embeddings');
    const log: string[] = [];

    // first worker: the prompt is encoded once, then the encoder is released
    const first = await WanPipeline.fromPretrained(TOY);
    let stop = startWorker(queue, first, new EmbeddingStore(cacheDir), log);
    try {
      expect((await finished(queue, (await queue.submit(job(PROMPT, 1))).id)).state).toBe('done');
      releaseTextEncoder(first);
      expect((await finished(queue, (await queue.submit(job(PROMPT, 2))).id)).state).toBe('done');
      const fresh = await finished(queue, (await queue.submit(job('a blue square', 3))).id);
      expect(fresh.state).toBe('failed');
      expect(fresh.error).toMatch(/text encoder was released/);
    } finally {
      await stop();
      first.dispose();
    }
    expect(fs.readdirSync(cacheDir).filter((f) => f.endsWith('.emb')).length).toBeGreaterThan(0);

    // second worker, a fresh model whose encoder is released before it starts: the prompt comes from the store
    const second = await WanPipeline.fromPretrained(TOY);
    releaseTextEncoder(second);
    stop = startWorker(queue, second, new EmbeddingStore(cacheDir), log);
    try {
      const again = await finished(queue, (await queue.submit(job(PROMPT, 4))).id);
      expect(again.error).toBeUndefined();
      expect(again.state).toBe('done');
      const fresh = await finished(queue, (await queue.submit(job('a green triangle', 5))).id);
      expect(fresh.state).toBe('failed');
    } finally {
      await stop();
      second.dispose();
    }
    expect(log.some((l) => /worker w: [1-9]\d* prompt embeddings read from/.test(l))).toBe(true);
    expect(fs.readdirSync(queue.scratchDir())).toEqual([]);
    await queue.close();
  }, 120_000);
});
