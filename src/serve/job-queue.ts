import { ConfigError } from '../errors.js';
import { MAX_SEED } from '../random.js';

/** What a client asks for: one clip. Unset settings take the model's defaults; the seed is fixed at submission. */
export interface JobSpec {
  readonly prompt: string;
  readonly negativePrompt?: string;
  readonly seed: number;
  readonly numFrames?: number;
  readonly width?: number;
  readonly height?: number;
  readonly steps?: number;
  readonly guidance?: number;
  readonly fps?: number;
  /** The clip's container: mp4 (default) or gif. */
  readonly format: 'mp4' | 'gif';
}

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

/** A done job's clip as a reviewer judged it: 'pending' until someone publishes or rejects it. */
export type ReviewState = 'pending' | 'published' | 'rejected';

/** What a reviewer can decide: 'publish' makes the job 'published', 'reject' 'rejected' (a later decision replaces it). */
export type ReviewDecision = 'publish' | 'reject';

export const REVIEW_STATES: readonly ReviewState[] = ['pending', 'published', 'rejected'];

/** A finished job's clip and its provenance sidecar (`<file>.json`), as the queue stores them. */
export interface JobResult {
  /** File name of the clip (`<id>.mp4` / `<id>.gif`); its sidecar is `<file>.json`. */
  readonly file: string;
  readonly bytes: number;
  /** What made the clip: the job (jobId, worker, attempt, submittedAt), the sidecar's format and content hash, and its provenance record's fields. */
  readonly metadata: Readonly<Record<string, unknown>>;
}

export interface JobRecord {
  readonly id: string;
  readonly spec: JobSpec;
  readonly state: JobState;
  readonly submittedAt: string;
  /** Who submitted it, when the server knows (the API key's holder). */
  readonly submitter?: string;
  /** Claims so far (a claim whose worker died counts). */
  readonly attempts: number;
  /** The worker holding or last holding it. */
  readonly worker?: string;
  readonly progress?: { readonly step: number; readonly total: number };
  readonly error?: string;
  /** A running job asked to stop: its worker aborts at its next heartbeat. */
  readonly cancelRequested?: boolean;
  readonly result?: JobResult;
  readonly finishedAt?: string;
  /** A done job's review ('pending' until decided); absent on jobs that are not done. */
  readonly review?: ReviewState;
  /** When the last review decision was made. */
  readonly reviewedAt?: string;
}

/** A job claimed by a worker: `token` identifies this claim (a later claim of the same job after the lease expired has another). */
export interface Claim {
  readonly job: JobRecord;
  readonly token: string;
}

export interface ClaimOptions {
  /** Most jobs to claim at once; the rest must be `compatible` with the first. */
  readonly max: number;
  /** How long the claim holds without a heartbeat. */
  readonly leaseMs: number;
}

/** The clip written by a worker, in a temporary file, with the provenance sidecar saveVideo wrote beside it, and the job's result metadata. */
export interface FinishedClip {
  readonly tempFile: string;
  /** The sidecar `<tempFile>.json`: delivered unchanged as the result's `<file>.json`. */
  readonly sidecarFile: string;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/**
 * A queue of clip jobs shared by a server and any number of workers. A claim is a lease that the
 * worker renews with heartbeats; when it lapses (the worker died), the job is claimed again.
 * `complete` publishes the clip only while the claim is still the job's current one, so every job
 * has exactly one clip.
 */
export interface JobQueue {
  submit(spec: JobSpec, submitter?: string): Promise<JobRecord>;
  /** Queued jobs (and running ones whose lease lapsed), oldest first, up to `max`, all compatible with the first. */
  claim(worker: string, options: ClaimOptions): Promise<Claim[]>;
  /** Renews the leases of `claims`; returns the ids among them that are no longer this worker's to run (cancelled, or claimed again). */
  heartbeat(claims: readonly Claim[], leaseMs: number): Promise<string[]>;
  progress(claim: Claim, step: number, total: number): Promise<void>;
  /** Moves the clip and its sidecar into the results and marks the job done; false (and the temp files removed) when the claim was lost. */
  complete(claim: Claim, clip: FinishedClip): Promise<boolean>;
  fail(claim: Claim, error: string): Promise<void>;
  /** A queued job is cancelled at once; a running one is asked to stop. Undefined for an unknown id. */
  cancel(id: string): Promise<JobRecord | undefined>;
  status(id: string): Promise<JobRecord | undefined>;
  list(): Promise<JobRecord[]>;
  /**
   * Records a reviewer's decision on a done job (its clip published or rejected; a later decision
   * replaces an earlier one). A job that is not done is returned unchanged (only a finished clip
   * can be reviewed: the caller sees why in its state); undefined for an unknown id.
   */
  review(id: string, decision: ReviewDecision): Promise<JobRecord | undefined>;
  /** The clip's bytes of a done job. */
  result(id: string): Promise<Uint8Array | undefined>;
  /** The provenance sidecar (`<clip>.json`, as saveVideo wrote it) of a done job. */
  sidecar(id: string): Promise<string | undefined>;
  /** Calls `listener` with the job's record each time it changes, until the returned function is called or the job ends. */
  watch(id: string, listener: (job: JobRecord) => void): () => void;
  close(): Promise<void>;
}

/** Jobs that one batched pipeline call can run together: everything but prompt and seed is the same. */
export function batchKey(spec: JobSpec): string {
  const { numFrames, width, height, steps, guidance, fps, format, negativePrompt } = spec;
  return JSON.stringify([numFrames, width, height, steps, guidance, fps, format, negativePrompt ?? '']);
}

export function isFinished(state: JobState): boolean {
  return state === 'done' || state === 'failed' || state === 'cancelled';
}

/** The review state a decision leads to. */
export function reviewStateOf(decision: ReviewDecision): ReviewState {
  return decision === 'publish' ? 'published' : 'rejected';
}

/** A review request's body (`{"decision": "publish" | "reject"}`) → the decision; a ConfigError names the field otherwise. */
export function parseReviewDecision(body: unknown): ReviewDecision {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ConfigError('review: expected a JSON object such as {"decision": "publish"}');
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => k !== 'decision');
  if (unknown.length > 0) throw new ConfigError(`review: unknown field ${unknown.map((k) => JSON.stringify(k)).join(', ')}; the field is decision`);
  if (b.decision !== 'publish' && b.decision !== 'reject') throw new ConfigError(`decision: got ${JSON.stringify(b.decision)}, expected "publish" or "reject"`);
  return b.decision;
}

const FIELDS = ['prompt', 'negativePrompt', 'seed', 'numFrames', 'width', 'height', 'steps', 'guidance', 'fps', 'format'] as const;

function positiveInt(body: Record<string, unknown>, name: string): number | undefined {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new ConfigError(`${name}: got ${JSON.stringify(v)}, expected a positive integer`);
  return v;
}

/**
 * A request body → a job spec, every field checked (an unknown field, a wrong type or range is a
 * ConfigError naming it). `randomSeed` gives the seed when the body has none.
 */
export function parseJobSpec(body: unknown, randomSeed: () => number): JobSpec {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ConfigError('job: expected a JSON object such as {"prompt": "a red circle moving right"}');
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !(FIELDS as readonly string[]).includes(k));
  if (unknown.length > 0) throw new ConfigError(`job: unknown field ${unknown.map((k) => JSON.stringify(k)).join(', ')}; the fields are ${FIELDS.join(', ')}`);
  if (typeof b.prompt !== 'string' || b.prompt.trim() === '') throw new ConfigError('prompt: expected a non-empty string');
  if (b.negativePrompt !== undefined && typeof b.negativePrompt !== 'string') throw new ConfigError('negativePrompt: expected a string');
  let seed: number;
  if (b.seed === undefined) seed = randomSeed();
  else if (typeof b.seed === 'number' && Number.isSafeInteger(b.seed) && b.seed >= 0 && b.seed <= MAX_SEED) seed = b.seed;
  else throw new ConfigError(`seed: got ${JSON.stringify(b.seed)}, expected an integer in [0, ${MAX_SEED}]`);
  for (const name of ['guidance', 'fps'] as const) {
    const v = b[name];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || (name === 'fps' && v <= 0))) throw new ConfigError(`${name}: got ${JSON.stringify(v)}, expected a ${name === 'fps' ? 'positive ' : ''}number`);
  }
  if (b.format !== undefined && b.format !== 'mp4' && b.format !== 'gif') throw new ConfigError(`format: got ${JSON.stringify(b.format)}, expected "mp4" or "gif"`);
  return {
    prompt: b.prompt,
    negativePrompt: b.negativePrompt as string | undefined,
    seed,
    numFrames: positiveInt(b, 'numFrames'),
    width: positiveInt(b, 'width'),
    height: positiveInt(b, 'height'),
    steps: positiveInt(b, 'steps'),
    guidance: b.guidance as number | undefined,
    fps: b.fps as number | undefined,
    format: (b.format as 'mp4' | 'gif' | undefined) ?? 'mp4',
  };
}
