import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker as Thread } from 'node:worker_threads';
import { Queue, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { ConfigError } from '../errors.js';
import { pollWatch } from './embedded-queue.js';
import { batchKey, type Claim, type ClaimOptions, type FinishedClip, type JobQueue, type JobRecord, type JobSpec, type JobState, type ReviewDecision, type ReviewState } from './job-queue.js';

interface JobData {
  readonly spec: JobSpec;
  readonly submitter?: string;
  readonly submittedAt: string;
  readonly cancelRequested?: boolean;
  readonly worker?: string;
  /** A reviewer's last decision on the done job, and when. */
  readonly review?: ReviewState;
  readonly reviewedAt?: string;
}

type ResultValue = { readonly file: string; readonly bytes: number; readonly metadata: Readonly<Record<string, unknown>> };

/** $REDIS_URL (redis:// or rediss://, user, password, /db) as ioredis options. */
export function redisConnection(url: string): ConnectionOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`REDIS_URL: got "${url}", expected redis://[user:password@]host[:port][/db]`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new ConfigError(`REDIS_URL: got a ${u.protocol} URL, expected redis:// or rediss://`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new ConfigError(`REDIS_URL: database "${u.pathname.slice(1)}" is not a number`);
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    db,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
  };
}

/** BullMQ's extendLock: the lock is renewed only while it still holds this claim's token, and the job leaves the stalled-candidates set. */
const EXTEND_LOCK = `if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  redis.call("SREM", KEYS[2], ARGV[3])
  return 1
end
return 0`;

/** Stores the clip (base64) and its sidecar only while the lock still holds this claim's token: a claim that lost its job never overwrites the clip of the claim that completes it. */
const STORE_RESULT = `if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("SET", KEYS[2], ARGV[2])
  redis.call("SET", KEYS[3], ARGV[3])
  return 1
end
return 0`;

/**
 * The lock keeper, run in a worker thread: it renews the locks of this process's claims every
 * third of their lease from its own event loop and Redis connection. The worker's diffusion steps
 * are synchronous tfjs work that holds the main event loop for seconds at a time; renewed from
 * there, a lock lapses mid-job and BullMQ's stalled-job check requeues the job (and fails it after
 * `maxStalledCount` lapses). A claim whose lock no longer has its token is dropped.
 */
const KEEPER = `
const { parentPort, workerData } = require('node:worker_threads');
const ioredis = require(workerData.ioredis);
const Redis = ioredis.default || ioredis.Redis || ioredis;
const redis = new Redis(workerData.connection);
redis.on('error', () => {}); // ioredis reconnects; a lock lost meanwhile shows in the main thread's heartbeat
redis.defineCommand('wanExtendLock', { numberOfKeys: 2, lua: workerData.extendLock });
const held = new Map();
parentPort.postMessage({ op: 'ready' });
async function renew(token, h) {
  try {
    const ok = await redis.wanExtendLock(h.lockKey, workerData.stalledKey, token, h.leaseMs, h.id);
    if (ok !== 1 && held.get(token) === h) release(token);
  } catch {
    // retried at the next tick
  }
}
function release(token) {
  const h = held.get(token);
  if (h) clearInterval(h.timer);
  held.delete(token);
}
parentPort.on('message', (m) => {
  if (m.op === 'release') return release(m.token);
  if (held.has(m.token)) return;
  const h = { id: m.id, lockKey: m.lockKey, leaseMs: m.leaseMs };
  h.timer = setInterval(() => void renew(m.token, h), Math.max(50, Math.floor(m.leaseMs / 3)));
  held.set(m.token, h);
  void renew(m.token, h);
});
`;

type KeeperMessage = { readonly op: 'hold'; readonly id: string; readonly token: string; readonly lockKey: string; readonly leaseMs: number } | { readonly op: 'release'; readonly token: string };

/** ioredis as BullMQ resolves it (the keeper thread loads it by path). */
function ioredisPath(): string {
  const here = typeof import.meta.url === 'string' && import.meta.url ? fileURLToPath(import.meta.url) : __filename;
  return createRequire(createRequire(here).resolve('bullmq')).resolve('ioredis');
}

/**
 * The queue on Redis through BullMQ, for workers on any number of machines. A claim is BullMQ's
 * job lock (the claim's token, `lockDuration` = the lease), renewed by a lock-keeper thread (so
 * that synchronous tfjs work on the main thread cannot let it lapse) while the worker process
 * lives; BullMQ's stalled-job check puts a job whose lock lapsed (its worker died) back in the
 * queue, and a third lapse fails it. The clip (base64) and its provenance sidecar (unchanged) are
 * stored in Redis under `<prefix>:<queue>:<id>:clip` and `…:<id>:sidecar` by the claim still
 * holding the lock, which then moves the job to completed with its token, so only that claim
 * completes it. Cancelling marks the job's data; a worker drops a cancelled job it claims, and
 * fails a running one at its next heartbeat.
 */
export class BullQueue implements JobQueue {
  private worker: Worker | undefined;
  /** Jobs claimed (locked) but not compatible with the batch that claimed them: handed out by the next claim. */
  private pending: Claim[] = [];
  private readonly watchers = new Set<() => void>();
  /** The lock-keeper thread once it has started: by the first claim, and again by the next claim if it died. */
  private keeper: Promise<Thread> | undefined;
  /** Claims whose locks the keeper renews, by token: sent again to a restarted keeper. */
  private readonly held = new Map<string, { readonly id: string; readonly leaseMs: number }>();
  private storeDefined = false;

  private constructor(
    private readonly queue: Queue,
    private readonly connection: ConnectionOptions,
  ) {}

  static async connect(url: string, name: string): Promise<BullQueue> {
    const connection = redisConnection(url);
    const queue = new Queue(name, { connection });
    await queue.waitUntilReady();
    return new BullQueue(queue, connection);
  }

  private clipKey(id: string): string {
    return `${this.queue.toKey(id)}:clip`;
  }

  private sidecarKey(id: string): string {
    return `${this.queue.toKey(id)}:sidecar`;
  }

  private lockKey(id: string): string {
    return `${this.queue.toKey(id)}:lock`;
  }

  /** The keeper thread, started if none runs; a keeper started again takes over every claim still held. Rejects with a ConfigError when it cannot start (ioredis not loadable). */
  private ensureKeeper(): Promise<Thread> {
    if (this.keeper) return this.keeper;
    const thread = new Thread(KEEPER, {
      eval: true,
      execArgv: [],
      workerData: { ioredis: ioredisPath(), connection: this.connection, stalledKey: this.queue.keys.stalled, extendLock: EXTEND_LOCK },
    });
    thread.unref();
    const started = new Promise<Thread>((resolve, reject) => {
      thread.once('message', () => resolve(thread));
      thread.on('error', (e) => reject(new ConfigError(`BullMQ queue: the lock-keeper thread failed (${e.message})`)));
      thread.once('exit', (code) => {
        reject(new ConfigError(`BullMQ queue: the lock-keeper thread exited with code ${code} before it started`));
        // until the next claim starts another, the main thread's heartbeats alone renew the locks
        if (this.keeper === started) this.keeper = undefined;
      });
    });
    this.keeper = started;
    started.then(
      (t) => {
        for (const [token, { id, leaseMs }] of this.held) t.postMessage({ op: 'hold', id, token, lockKey: this.lockKey(id), leaseMs } satisfies KeeperMessage);
      },
      () => {
        if (this.keeper === started) this.keeper = undefined;
      },
    );
    return started;
  }

  private hold(keeper: Thread, id: string, token: string, leaseMs: number): void {
    this.held.set(token, { id, leaseMs });
    keeper.postMessage({ op: 'hold', id, token, lockKey: this.lockKey(id), leaseMs } satisfies KeeperMessage);
  }

  private release(token: string): void {
    if (!this.held.delete(token)) return;
    void this.keeper?.then((t) => t.postMessage({ op: 'release', token } satisfies KeeperMessage)).catch(() => undefined);
  }

  private async record(job: Job<JobData, ResultValue>): Promise<JobRecord> {
    const s = await job.getState();
    const d = job.data;
    const state: JobState =
      s === 'completed' ? 'done' : s === 'failed' ? (job.failedReason === 'cancelled' ? 'cancelled' : 'failed') : s === 'active' ? 'running' : d.cancelRequested ? 'cancelled' : 'queued';
    const p = job.progress;
    const progress = typeof p === 'object' && p !== null && 'step' in p && 'total' in p ? { step: Number(p.step), total: Number(p.total) } : undefined;
    return {
      id: job.id ?? '',
      spec: d.spec,
      state,
      submittedAt: d.submittedAt,
      ...(d.submitter !== undefined ? { submitter: d.submitter } : {}),
      attempts: job.attemptsStarted,
      ...(d.worker !== undefined ? { worker: d.worker } : {}),
      ...(progress ? { progress } : {}),
      ...(state === 'failed' ? { error: job.failedReason } : {}),
      ...(d.cancelRequested && state === 'running' ? { cancelRequested: true } : {}),
      ...(state === 'done' && job.returnvalue ? { result: job.returnvalue } : {}),
      ...(state === 'done' ? { review: d.review ?? 'pending', ...(d.reviewedAt !== undefined ? { reviewedAt: d.reviewedAt } : {}) } : {}),
      ...(job.finishedOn ? { finishedAt: new Date(job.finishedOn).toISOString() } : {}),
    };
  }

  async submit(spec: JobSpec, submitter?: string): Promise<JobRecord> {
    const data: JobData = { spec, submittedAt: new Date().toISOString(), ...(submitter !== undefined ? { submitter } : {}) };
    const job = await this.queue.add('clip', data, { jobId: randomUUID(), attempts: 1 });
    return this.record(job as Job<JobData, ResultValue>);
  }

  async claim(worker: string, options: ClaimOptions): Promise<Claim[]> {
    if (!this.worker) {
      this.worker = new Worker(this.queue.name, null, { connection: this.connection, autorun: false, lockDuration: options.leaseMs, stalledInterval: options.leaseMs, maxStalledCount: 2 });
      void this.worker.startStalledCheckTimer();
    }
    const keeper = await this.ensureKeeper();
    const claims: Claim[] = [];
    let key: string | undefined;
    const keep = this.pending;
    this.pending = [];
    for (const c of keep) {
      if (claims.length < options.max && (key === undefined || batchKey(c.job.spec) === key)) {
        key = batchKey(c.job.spec);
        claims.push(c);
      } else this.pending.push(c);
    }
    while (claims.length < options.max && this.pending.length === 0) {
      const token = randomUUID();
      const job = (await this.worker.getNextJob(token, { block: false })) as Job<JobData, ResultValue> | undefined;
      if (!job) break;
      this.hold(keeper, job.id ?? '', token, options.leaseMs);
      if (job.data.cancelRequested) {
        this.release(token);
        await job.moveToFailed(new Error('cancelled'), token, false);
        continue;
      }
      await job.updateData({ ...job.data, worker });
      const claim = { job: await this.record(job), token };
      if (key !== undefined && batchKey(claim.job.spec) !== key) {
        this.pending.push(claim);
        break;
      }
      key = batchKey(claim.job.spec);
      claims.push(claim);
    }
    return claims;
  }

  async heartbeat(claims: readonly Claim[], leaseMs: number): Promise<string[]> {
    const lost: string[] = [];
    for (const c of [...claims, ...this.pending]) {
      const job = (await this.queue.getJob(c.job.id)) as Job<JobData, ResultValue> | undefined;
      let held = false;
      if (job?.data.cancelRequested) {
        // the worker stops the job; it ends cancelled now rather than when its lock lapses
        await job.moveToFailed(new Error('cancelled'), c.token, false).catch(() => undefined);
      } else if (job) {
        try {
          held = (await job.extendLock(c.token, leaseMs)) === 1;
        } catch {
          held = false;
        }
      }
      if (!held) {
        this.release(c.token);
        this.pending = this.pending.filter((p) => p !== c);
        if (claims.includes(c)) lost.push(c.job.id);
      }
    }
    return lost;
  }

  async progress(claim: Claim, step: number, total: number): Promise<void> {
    const job = await this.queue.getJob(claim.job.id);
    await job?.updateProgress({ step, total });
  }

  async complete(claim: Claim, clip: FinishedClip): Promise<boolean> {
    const id = claim.job.id;
    try {
      const job = (await this.queue.getJob(id)) as Job<JobData, ResultValue> | undefined;
      if (!job) return false;
      if (job.data.cancelRequested) {
        await job.moveToFailed(new Error('cancelled'), claim.token, false).catch(() => undefined);
        return false;
      }
      const [bytes, sidecar] = await Promise.all([fs.promises.readFile(clip.tempFile), fs.promises.readFile(clip.sidecarFile, 'utf-8')]);
      const client = await this.queue.client;
      if (!this.storeDefined) {
        client.defineCommand('wanStoreResult', { numberOfKeys: 3, lua: STORE_RESULT });
        this.storeDefined = true;
      }
      const stored: unknown = await client.runCommand('wanStoreResult', [this.lockKey(id), this.clipKey(id), this.sidecarKey(id), claim.token, bytes.toString('base64'), sidecar]);
      if (stored !== 1) return false;
      try {
        await job.moveToCompleted({ file: `${id}.${claim.job.spec.format}`, bytes: bytes.byteLength, metadata: clip.metadata }, claim.token, false);
        return true;
      } catch {
        return false;
      }
    } finally {
      this.release(claim.token);
      await Promise.all([clip.tempFile, clip.sidecarFile].map((f) => fs.promises.rm(f, { force: true })));
    }
  }

  async fail(claim: Claim, error: string): Promise<void> {
    try {
      const job = (await this.queue.getJob(claim.job.id)) as Job<JobData, ResultValue> | undefined;
      if (!job) return;
      await job.moveToFailed(new Error(job.data.cancelRequested ? 'cancelled' : error), claim.token, false).catch(() => undefined);
    } finally {
      this.release(claim.token);
    }
  }

  async cancel(id: string): Promise<JobRecord | undefined> {
    const job = (await this.queue.getJob(id)) as Job<JobData, ResultValue> | undefined;
    if (!job) return undefined;
    const rec = await this.record(job);
    if (rec.state !== 'queued' && rec.state !== 'running') return rec;
    await job.updateData({ ...job.data, cancelRequested: true });
    return this.record(job);
  }

  async status(id: string): Promise<JobRecord | undefined> {
    const job = (await this.queue.getJob(id)) as Job<JobData, ResultValue> | undefined;
    return job ? this.record(job) : undefined;
  }

  async list(): Promise<JobRecord[]> {
    const jobs = (await this.queue.getJobs(['waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized'])) as Array<Job<JobData, ResultValue>>;
    const records = await Promise.all(jobs.map((j) => this.record(j)));
    return records.sort((a, b) => a.submittedAt.localeCompare(b.submittedAt));
  }

  async result(id: string): Promise<Uint8Array | undefined> {
    const client = await this.queue.client;
    const base64 = await client.get(this.clipKey(id));
    return base64 === null ? undefined : new Uint8Array(Buffer.from(base64, 'base64'));
  }

  /** A done job's provenance sidecar, byte for byte as the worker wrote it: saved as `<result file>.json` beside the clip, `wan-tfjs verify` checks the clip against it. */
  async sidecar(id: string): Promise<string | undefined> {
    const client = await this.queue.client;
    return (await client.get(this.sidecarKey(id))) ?? undefined;
  }

  /** Stores a reviewer's decision on a done job in its data (`review`, `reviewedAt`); a job not done is returned unchanged. */
  async review(id: string, decision: ReviewDecision): Promise<JobRecord | undefined> {
    const job = (await this.queue.getJob(id)) as Job<JobData, ResultValue> | undefined;
    if (!job) return undefined;
    const rec = await this.record(job);
    if (rec.state !== 'done') return rec;
    await job.updateData({ ...job.data, review: decision === 'publish' ? 'published' : 'rejected', reviewedAt: new Date().toISOString() });
    return this.record(job);
  }

  watch(id: string, listener: (job: JobRecord) => void): () => void {
    return pollWatch(this.watchers, () => this.status(id), listener, 200);
  }

  async close(): Promise<void> {
    for (const stop of [...this.watchers]) stop();
    // claimed jobs not yet run go back to the queue at once (else they wait for their locks to lapse)
    for (const c of this.pending) {
      const job = await this.queue.getJob(c.job.id);
      await job?.moveToWait(c.token).catch(() => undefined);
    }
    this.pending = [];
    this.held.clear();
    const keeper = this.keeper;
    this.keeper = undefined;
    await keeper?.then((t) => t.terminate()).catch(() => undefined);
    await this.worker?.close(true);
    await this.queue.close();
  }
}
