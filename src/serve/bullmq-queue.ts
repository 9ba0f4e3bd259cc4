import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { Queue, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { ConfigError } from '../errors.js';
import { pollWatch } from './embedded-queue.js';
import { batchKey, type Claim, type ClaimOptions, type FinishedClip, type JobQueue, type JobRecord, type JobSpec, type JobState } from './job-queue.js';

interface JobData {
  readonly spec: JobSpec;
  readonly submitter?: string;
  readonly submittedAt: string;
  readonly cancelRequested?: boolean;
  readonly worker?: string;
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

/**
 * The queue on Redis through BullMQ, for workers on any number of machines. A claim is BullMQ's
 * job lock (the worker's token, `lockDuration` = the lease), renewed by heartbeats; BullMQ's
 * stalled-job check puts a job whose lock lapsed back in the queue (a third lapse fails it). The
 * clip's bytes are stored in Redis (base64) under `<prefix>:<queue>:clip:<id>` before the job is moved to
 * completed with the lock's token, so only the claim still holding the job completes it.
 * Cancelling marks the job's data; a worker drops a cancelled job it claims, and a running one
 * stops at its next heartbeat.
 */
export class BullQueue implements JobQueue {
  private worker: Worker | undefined;
  /** Jobs claimed (locked) but not compatible with the batch that claimed them: handed out by the next claim. */
  private pending: Claim[] = [];
  private readonly watchers = new Set<() => void>();

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
    return `${this.queue.opts.prefix ?? 'bull'}:${this.queue.name}:clip:${id}`;
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
      if (job.data.cancelRequested) {
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
      if (job && !job.data.cancelRequested) {
        try {
          held = (await job.extendLock(c.token, leaseMs)) === 1;
        } catch {
          held = false;
        }
      }
      if (!held && claims.includes(c)) lost.push(c.job.id);
    }
    return lost;
  }

  async progress(claim: Claim, step: number, total: number): Promise<void> {
    const job = await this.queue.getJob(claim.job.id);
    await job?.updateProgress({ step, total });
  }

  async complete(claim: Claim, clip: FinishedClip): Promise<boolean> {
    try {
      const job = (await this.queue.getJob(claim.job.id)) as Job<JobData, ResultValue> | undefined;
      if (!job) return false;
      if (job.data.cancelRequested) {
        await job.moveToFailed(new Error('cancelled'), claim.token, false).catch(() => undefined);
        return false;
      }
      const bytes = await fs.promises.readFile(clip.tempFile);
      const client = await this.queue.client;
      await client.set(this.clipKey(job.id ?? claim.job.id), bytes.toString('base64'));
      try {
        await job.moveToCompleted({ file: `${claim.job.id}.${claim.job.spec.format}`, bytes: bytes.byteLength, metadata: clip.metadata }, claim.token, false);
        return true;
      } catch {
        return false;
      }
    } finally {
      // the sidecar's content is the result's metadata, stored with the job
      await Promise.all([clip.tempFile, clip.sidecarFile].map((f) => fs.promises.rm(f, { force: true })));
    }
  }

  async fail(claim: Claim, error: string): Promise<void> {
    const job = (await this.queue.getJob(claim.job.id)) as Job<JobData, ResultValue> | undefined;
    if (!job) return;
    await job.moveToFailed(new Error(job.data.cancelRequested ? 'cancelled' : error), claim.token, false).catch(() => undefined);
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

  watch(id: string, listener: (job: JobRecord) => void): () => void {
    return pollWatch(this.watchers, () => this.status(id), listener, 200);
  }

  async close(): Promise<void> {
    for (const stop of [...this.watchers]) stop();
    await this.worker?.close(true);
    await this.queue.close();
  }
}
