import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError } from '../errors.js';
import { sidecarPath } from '../video/provenance.js';
import { batchKey, isFinished, reviewStateOf, type Claim, type ClaimOptions, type FinishedClip, type JobQueue, type JobRecord, type JobSpec, type ReviewDecision } from './job-queue.js';

/** A job as the journal holds it: the record and the lease of its current claim. */
interface Entry extends JobRecord {
  readonly lease?: { readonly token: string; readonly expiresAt: number };
}

export interface EmbeddedQueueOptions {
  /** A lock file older than this is taken over (its holder died inside the few milliseconds it holds it); default 10 s. */
  staleLockMs?: number;
  /** Claims of one job before it is failed (each lapsed lease counts); default 3. */
  maxAttempts?: number;
  /** Journal lines before it is folded into the snapshot; default 500. */
  compactAfter?: number;
  /** How often `watch` reads the job; default 200 ms. */
  pollMs?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function errnoCode(e: unknown): string | undefined {
  return e instanceof Error && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

/** True when `pid` names no live process on this machine. */
function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return errnoCode(e) === 'ESRCH';
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const h = await fs.promises.open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** Writes `data` to `file` through a temporary file in its folder: fsync'd, renamed into place, the folder fsync'd. */
async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const h = await fs.promises.open(tmp, 'wx');
    try {
      await h.writeFile(data);
      await h.sync();
    } finally {
      await h.close();
    }
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(path.dirname(file));
}

/** Moves `from` to `to` (copying across file systems), the data fsync'd before it appears under `to`. */
async function moveDurably(from: string, to: string): Promise<void> {
  const h = await fs.promises.open(from, 'r+');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
  try {
    await fs.promises.rename(from, to);
  } catch (e) {
    if (errnoCode(e) !== 'EXDEV') throw e;
    await writeAtomic(to, await fs.promises.readFile(from));
    await fs.promises.rm(from, { force: true });
    return;
  }
  await fsyncDir(path.dirname(to));
}

/**
 * The queue without a server: a folder shared by the processes of one machine. `journal.jsonl`
 * holds one line per change (the job's whole new record, appended and fsync'd), `snapshot.json`
 * the records when the journal was last folded into it (written atomically; replaying lines over
 * it again is harmless, as each line replaces a record). Every operation holds `lock` (created
 * with O_EXCL; a lock whose holder died is taken over once it is `staleLockMs` old, or at once
 * when its process is gone) while it reads the state and appends. Clips land in `results/` as
 * `<id>.<format>` with their provenance sidecar `<id>.<format>.json` beside them, renamed into place under the lock by the claim
 * that still holds the job.
 */
export class EmbeddedQueue implements JobQueue {
  readonly resultsDir: string;
  private readonly journal: string;
  private readonly snapshot: string;
  private readonly lock: string;
  private readonly staleLockMs: number;
  private readonly maxAttempts: number;
  private readonly compactAfter: number;
  private readonly pollMs: number;
  private readonly watchers = new Set<() => void>();

  constructor(
    readonly dir: string,
    options: EmbeddedQueueOptions = {},
  ) {
    this.journal = path.join(dir, 'journal.jsonl');
    this.snapshot = path.join(dir, 'snapshot.json');
    this.lock = path.join(dir, 'lock');
    this.resultsDir = path.join(dir, 'results');
    this.staleLockMs = options.staleLockMs ?? 10_000;
    this.maxAttempts = options.maxAttempts ?? 3;
    this.compactAfter = options.compactAfter ?? 500;
    this.pollMs = options.pollMs ?? 200;
    try {
      fs.mkdirSync(path.join(this.resultsDir, '.scratch'), { recursive: true });
    } catch (e) {
      throw new ConfigError(`--queue ${dir}: cannot create the queue folder (${errnoCode(e) ?? String(e)})`);
    }
  }

  /** Where a worker writes a clip before `complete` moves it into the results (same file system). */
  scratchDir(): string {
    return path.join(this.resultsDir, '.scratch');
  }

  private async acquire(): Promise<void> {
    const me = JSON.stringify({ pid: process.pid, host: os.hostname() });
    for (let wait = 2; ; wait = Math.min(wait * 2, 50)) {
      try {
        await fs.promises.writeFile(this.lock, me, { flag: 'wx' });
        return;
      } catch (e) {
        if (errnoCode(e) !== 'EEXIST') throw e;
      }
      if (await this.lockIsStale()) {
        // rename first: of several processes taking over the same stale lock, one succeeds
        const grave = `${this.lock}.${randomBytes(6).toString('hex')}.stale`;
        try {
          await fs.promises.rename(this.lock, grave);
          await fs.promises.rm(grave, { force: true });
        } catch (e) {
          if (errnoCode(e) !== 'ENOENT') throw e;
        }
        continue;
      }
      await sleep(wait);
    }
  }

  private async lockIsStale(): Promise<boolean> {
    try {
      const [st, text] = await Promise.all([fs.promises.stat(this.lock), fs.promises.readFile(this.lock, 'utf-8')]);
      if (Date.now() - st.mtimeMs > this.staleLockMs) return true;
      const holder = JSON.parse(text) as { pid?: unknown; host?: unknown };
      return holder.host === os.hostname() && typeof holder.pid === 'number' && processGone(holder.pid);
    } catch (e) {
      // a lock being written (empty, not yet JSON) is young; a vanished one is retried
      if (e instanceof SyntaxError || errnoCode(e) === 'ENOENT') return false;
      throw e;
    }
  }

  /** Runs `fn` on the current state under the lock; the records it returns are appended to the journal. */
  private async locked<T>(fn: (jobs: Map<string, Entry>) => { changed?: Entry[]; value: T } | Promise<{ changed?: Entry[]; value: T }>): Promise<T> {
    await this.acquire();
    try {
      const { jobs, lines, goodBytes } = await this.read();
      const { changed = [], value } = await fn(jobs);
      if (changed.length > 0) {
        const h = await fs.promises.open(this.journal, 'a+');
        try {
          // a line cut short by a crash is dropped before anything is appended after it
          if ((await h.stat()).size !== goodBytes) await h.truncate(goodBytes);
          await h.appendFile(changed.map((e) => `${JSON.stringify(e)}\n`).join(''));
          await h.sync();
        } finally {
          await h.close();
        }
        for (const e of changed) jobs.set(e.id, e);
        if (lines + changed.length > this.compactAfter) await this.compact(jobs);
      }
      return value;
    } finally {
      await fs.promises.rm(this.lock, { force: true });
    }
  }

  private async read(): Promise<{ jobs: Map<string, Entry>; lines: number; goodBytes: number }> {
    const jobs = new Map<string, Entry>();
    try {
      for (const e of JSON.parse(await fs.promises.readFile(this.snapshot, 'utf-8')) as Entry[]) jobs.set(e.id, e);
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw new ConfigError(`${this.snapshot}: unreadable queue snapshot (${e instanceof Error ? e.message : String(e)})`);
    }
    let text = '';
    try {
      text = await fs.promises.readFile(this.journal, 'utf-8');
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw e;
    }
    let goodBytes = 0;
    let lines = 0;
    for (const line of text.split('\n')) {
      const end = goodBytes + Buffer.byteLength(line) + 1;
      if (end > Buffer.byteLength(text)) break; // the last line has no newline: cut short
      try {
        const e = JSON.parse(line) as Entry;
        jobs.set(e.id, e);
      } catch {
        break;
      }
      goodBytes = end;
      lines++;
    }
    return { jobs, lines, goodBytes };
  }

  private async compact(jobs: Map<string, Entry>): Promise<void> {
    await writeAtomic(this.snapshot, JSON.stringify([...jobs.values()]));
    const h = await fs.promises.open(this.journal, 'r+');
    try {
      await h.truncate(0);
      await h.sync();
    } finally {
      await h.close();
    }
  }

  private static record(e: Entry): JobRecord {
    const { lease: _lease, ...job } = e;
    // a done job is 'pending' review until decided (journals written before reviews existed included)
    return job.state === 'done' && job.review === undefined ? { ...job, review: 'pending' } : job;
  }

  async submit(spec: JobSpec, submitter?: string): Promise<JobRecord> {
    const job: Entry = { id: randomUUID(), spec, state: 'queued', submittedAt: new Date().toISOString(), attempts: 0, ...(submitter !== undefined ? { submitter } : {}) };
    return this.locked(() => ({ changed: [job], value: EmbeddedQueue.record(job) }));
  }

  async claim(worker: string, options: ClaimOptions): Promise<Claim[]> {
    return this.locked((jobs) => {
      const now = Date.now();
      const changed: Entry[] = [];
      const claims: Claim[] = [];
      let key: string | undefined;
      for (const e of [...jobs.values()].sort((a, b) => a.submittedAt.localeCompare(b.submittedAt))) {
        const lapsed = e.state === 'running' && (e.lease?.expiresAt ?? 0) < now;
        if (e.state !== 'queued' && !lapsed) continue;
        if (lapsed && (e.cancelRequested || e.attempts >= this.maxAttempts)) {
          const error = e.cancelRequested ? undefined : `its worker stopped ${e.attempts} times without finishing it (lease expired)`;
          changed.push({ ...EmbeddedQueue.record(e), state: e.cancelRequested ? 'cancelled' : 'failed', ...(error ? { error } : {}), finishedAt: new Date(now).toISOString() });
          continue;
        }
        if (claims.length >= options.max || (key !== undefined && batchKey(e.spec) !== key)) continue;
        key = batchKey(e.spec);
        const token = randomUUID();
        const next: Entry = { ...EmbeddedQueue.record(e), state: 'running', worker, attempts: e.attempts + 1, lease: { token, expiresAt: now + options.leaseMs } };
        changed.push(next);
        claims.push({ job: EmbeddedQueue.record(next), token });
      }
      return { changed, value: claims };
    });
  }

  async heartbeat(claims: readonly Claim[], leaseMs: number): Promise<string[]> {
    if (claims.length === 0) return [];
    return this.locked((jobs) => {
      const changed: Entry[] = [];
      const lost: string[] = [];
      for (const c of claims) {
        const e = jobs.get(c.job.id);
        if (!e || e.state !== 'running' || e.lease?.token !== c.token || e.cancelRequested) lost.push(c.job.id);
        else changed.push({ ...e, lease: { token: c.token, expiresAt: Date.now() + leaseMs } });
      }
      return { changed, value: lost };
    });
  }

  async progress(claim: Claim, step: number, total: number): Promise<void> {
    await this.locked((jobs) => {
      const e = jobs.get(claim.job.id);
      if (!e || e.lease?.token !== claim.token || e.state !== 'running') return { value: undefined };
      return { changed: [{ ...e, progress: { step, total } }], value: undefined };
    });
  }

  async complete(claim: Claim, clip: FinishedClip): Promise<boolean> {
    const id = claim.job.id;
    const file = `${id}.${claim.job.spec.format}`;
    try {
      return await this.locked(async (jobs) => {
        const e = jobs.get(id);
        if (!e || e.state !== 'running' || e.lease?.token !== claim.token) return { value: false };
        const finishedAt = new Date().toISOString();
        if (e.cancelRequested) return { changed: [{ ...EmbeddedQueue.record(e), state: 'cancelled', finishedAt }], value: false };
        const target = path.join(this.resultsDir, file);
        // the sidecar first: a clip in the results always has its sidecar beside it
        const sidecar = sidecarPath(target);
        await moveDurably(clip.sidecarFile, sidecar);
        try {
          await moveDurably(clip.tempFile, target);
        } catch (err) {
          // the job stays undone: no sidecar is left without its clip
          await fs.promises.rm(sidecar, { force: true });
          throw err;
        }
        const bytes = (await fs.promises.stat(target)).size;
        return { changed: [{ ...EmbeddedQueue.record(e), state: 'done', finishedAt, result: { file, bytes, metadata: clip.metadata } }], value: true };
      });
    } finally {
      await Promise.all([clip.tempFile, clip.sidecarFile].map((f) => fs.promises.rm(f, { force: true })));
    }
  }

  async fail(claim: Claim, error: string): Promise<void> {
    await this.locked((jobs) => {
      const e = jobs.get(claim.job.id);
      if (!e || e.state !== 'running' || e.lease?.token !== claim.token) return { value: undefined };
      const finishedAt = new Date().toISOString();
      return { changed: [{ ...EmbeddedQueue.record(e), ...(e.cancelRequested ? { state: 'cancelled' as const } : { state: 'failed' as const, error }), finishedAt }], value: undefined };
    });
  }

  async cancel(id: string): Promise<JobRecord | undefined> {
    return this.locked((jobs) => {
      const e = jobs.get(id);
      if (!e || isFinished(e.state)) return { value: e && EmbeddedQueue.record(e) };
      const next: Entry = e.state === 'queued' ? { ...e, state: 'cancelled', finishedAt: new Date().toISOString() } : { ...e, cancelRequested: true };
      return { changed: [next], value: EmbeddedQueue.record(next) };
    });
  }

  async status(id: string): Promise<JobRecord | undefined> {
    return this.locked((jobs) => {
      const e = jobs.get(id);
      return { value: e && EmbeddedQueue.record(e) };
    });
  }

  async list(): Promise<JobRecord[]> {
    return this.locked((jobs) => ({ value: [...jobs.values()].map((e) => EmbeddedQueue.record(e)) }));
  }

  async review(id: string, decision: ReviewDecision): Promise<JobRecord | undefined> {
    return this.locked((jobs) => {
      const e = jobs.get(id);
      if (!e || e.state !== 'done') return { value: e && EmbeddedQueue.record(e) };
      // journalled like every change: the decision survives a restart
      const next: Entry = { ...e, review: reviewStateOf(decision), reviewedAt: new Date().toISOString() };
      return { changed: [next], value: EmbeddedQueue.record(next) };
    });
  }

  async result(id: string): Promise<Uint8Array | undefined> {
    const job = await this.status(id);
    if (job?.state !== 'done' || !job.result) return undefined;
    return new Uint8Array(await fs.promises.readFile(path.join(this.resultsDir, job.result.file)));
  }

  async sidecar(id: string): Promise<string | undefined> {
    const job = await this.status(id);
    if (job?.state !== 'done' || !job.result) return undefined;
    return fs.promises.readFile(sidecarPath(path.join(this.resultsDir, job.result.file)), 'utf-8');
  }

  watch(id: string, listener: (job: JobRecord) => void): () => void {
    return pollWatch(this.watchers, () => this.status(id), listener, this.pollMs);
  }

  async close(): Promise<void> {
    for (const stop of [...this.watchers]) stop();
  }
}

/**
 * Watches a job by reading it every `pollMs`: `listener` gets each changed record, the last one
 * when the job has finished. The returned function stops it (and is removed from `watchers`).
 */
export function pollWatch(watchers: Set<() => void>, read: () => Promise<JobRecord | undefined>, listener: (job: JobRecord) => void, pollMs: number): () => void {
  let last = '';
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    watchers.delete(stop);
  };
  const tick = async () => {
    try {
      const job = await read();
      if (stopped || !job) return stop();
      const text = JSON.stringify(job);
      if (text !== last) {
        last = text;
        listener(job);
      }
      if (isFinished(job.state)) return stop();
    } catch {
      // a failed read is retried at the next tick
    }
    if (!stopped) timer = setTimeout(() => void tick(), pollMs);
  };
  watchers.add(stop);
  void tick();
  return stop;
}
