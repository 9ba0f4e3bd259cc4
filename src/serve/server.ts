import { timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WanError } from '../errors.js';
import { randomSeed } from '../random.js';
import { isFinished, parseJobSpec, parseReviewDecision, REVIEW_STATES, type JobQueue, type JobRecord, type JobSpec, type ReviewDecision, type ReviewState } from './job-queue.js';
import { REVIEW_PAGE, REVIEW_PAGE_HEADERS } from './review-page.js';

export interface ServerOptions {
  readonly queue: JobQueue;
  readonly port: number;
  readonly host?: string;
  /** When set, every request needs `Authorization: Bearer <key>` (or `X-API-Key: <key>`). */
  readonly apiKey?: string;
  /** Checks a job's settings against the model before it is queued (a WanError is the client's 400). */
  readonly check?: (spec: JobSpec) => void;
  /** Largest request body; default 64 KiB. */
  readonly maxBodyBytes?: number;
}

/** An HTTP error with its status, sent as `{ "error": message }`. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: http.IncomingMessage, max: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > max) throw new HttpError(413, `the request body is larger than ${max} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf-8')) as unknown;
  } catch (e) {
    throw new HttpError(400, `the request body is not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

function authorized(req: http.IncomingMessage, key: string): boolean {
  const auth = req.headers.authorization;
  const given = auth?.startsWith('Bearer ') ? auth.slice(7) : req.headers['x-api-key'];
  if (typeof given !== 'string') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(key);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A job as the API shows it: its record and, when done, where its clip is and its review ('pending' until decided). */
function view(job: JobRecord): Record<string, unknown> {
  return { ...job, ...(job.state === 'done' ? { resultUrl: `/jobs/${job.id}/result`, review: job.review ?? 'pending' } : {}) };
}

/** GET /jobs's `?review=` filter: undefined when absent, else one of the review states (a 400 naming it otherwise). */
function reviewFilter(url: URL): ReviewState | undefined {
  const v = url.searchParams.get('review');
  if (v === null) return undefined;
  const state = REVIEW_STATES.find((s) => s === v);
  if (!state) throw new HttpError(400, `review: got ${JSON.stringify(v)}, expected ${REVIEW_STATES.map((s) => `"${s}"`).join(', ')}`);
  return state;
}

const CONTENT_TYPES: Record<string, string> = { mp4: 'video/mp4', gif: 'image/gif' };

/**
 * `wan-tfjs serve`: the queue over HTTP. POST /jobs (a JSON job, 201 with the job), GET /jobs
 * (`?review=pending|published|rejected`: only done jobs under that review), GET /jobs/:id,
 * DELETE /jobs/:id (cancel), GET /jobs/:id/result (the clip), GET /jobs/:id/sidecar (its
 * provenance record, `<clip>.json`), GET /jobs/:id/events
 * (text/event-stream: an event `job` with the record at each change, until it ends),
 * POST /jobs/:id/review (`{"decision": "publish" | "reject"}`: a done job's clip published or
 * rejected; 409 before it is done). GET /review is the review page (review-page.ts), sent without
 * the API key since it holds no data: it calls the API with the key. Errors are `{ "error": "…" }`
 * with 400, 401, 404, 405, 409 or 413.
 */
export async function startServer(o: ServerOptions): Promise<{ server: http.Server; url: string; close: () => Promise<void> }> {
  const max = o.maxBodyBytes ?? 64 * 1024;
  const streams = new Set<() => void>();
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.split('/').filter((p) => p !== '');
    const method = req.method ?? 'GET';
    if (parts.length === 1 && parts[0] === 'review') {
      if (method !== 'GET') throw new HttpError(405, `${method} /review: use GET`);
      res.writeHead(200, { ...REVIEW_PAGE_HEADERS, 'content-length': Buffer.byteLength(REVIEW_PAGE) });
      res.end(REVIEW_PAGE);
      return;
    }
    if (o.apiKey !== undefined && !authorized(req, o.apiKey)) {
      res.setHeader('www-authenticate', 'Bearer');
      throw new HttpError(401, 'an API key is required: send Authorization: Bearer <key>');
    }
    if (parts[0] !== 'jobs' || parts.length > 3) throw new HttpError(404, `no route ${url.pathname}; the API is /jobs, /jobs/:id, /jobs/:id/result, /jobs/:id/sidecar, /jobs/:id/events, /jobs/:id/review, and the page /review`);
    if (parts.length === 1) {
      if (method === 'POST') {
        let spec: JobSpec;
        try {
          spec = parseJobSpec(await readBody(req, max), randomSeed);
          o.check?.(spec);
        } catch (e) {
          if (e instanceof WanError) throw new HttpError(400, e.message);
          throw e;
        }
        return sendJson(res, 201, view(await o.queue.submit(spec, o.apiKey !== undefined ? 'api-key' : undefined)));
      }
      if (method === 'GET') {
        const review = reviewFilter(url);
        const jobs = (await o.queue.list()).map(view);
        return sendJson(res, 200, review === undefined ? jobs : jobs.filter((j) => j.review === review));
      }
      throw new HttpError(405, `${method} /jobs: use GET or POST`);
    }
    const id = parts[1];
    const job = await o.queue.status(id);
    if (!job) throw new HttpError(404, `no job ${id}`);
    const sub = parts[2];
    if (sub === undefined) {
      if (method === 'GET') return sendJson(res, 200, view(job));
      if (method === 'DELETE') {
        if (isFinished(job.state)) throw new HttpError(409, `job ${id} is ${job.state}; only queued or running jobs can be cancelled`);
        return sendJson(res, 200, view((await o.queue.cancel(id)) ?? job));
      }
      throw new HttpError(405, `${method} /jobs/${id}: use GET or DELETE`);
    }
    if (sub === 'review') {
      if (method !== 'POST') throw new HttpError(405, `${method} /jobs/${id}/review: use POST`);
      let decision: ReviewDecision;
      try {
        decision = parseReviewDecision(await readBody(req, max));
      } catch (e) {
        if (e instanceof WanError) throw new HttpError(400, e.message);
        throw e;
      }
      const reviewed = await o.queue.review(id, decision);
      if (!reviewed) throw new HttpError(404, `no job ${id}`);
      if (reviewed.state !== 'done') throw new HttpError(409, `job ${id} is ${reviewed.state}; only a done job's clip can be reviewed`);
      return sendJson(res, 200, view(reviewed));
    }
    if (method !== 'GET') throw new HttpError(405, `${method} /jobs/${id}/${sub}: use GET`);
    if (sub === 'result') {
      const bytes = job.state === 'done' ? await o.queue.result(id) : undefined;
      if (!bytes || !job.result) throw new HttpError(409, `job ${id} is ${job.state}; its clip exists once it is done`);
      res.writeHead(200, { 'content-type': CONTENT_TYPES[job.spec.format], 'content-length': bytes.byteLength, 'content-disposition': `attachment; filename="${job.result.file}"` });
      res.end(bytes);
      return;
    }
    if (sub === 'sidecar') {
      const text = job.state === 'done' ? await o.queue.sidecar(id) : undefined;
      if (text === undefined || !job.result) throw new HttpError(409, `job ${id} is ${job.state}; its provenance sidecar exists once it is done`);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'content-disposition': `attachment; filename="${job.result.file}.json"` });
      res.end(text);
      return;
    }
    if (sub === 'events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      const end = () => {
        stop();
        streams.delete(end);
        res.end();
      };
      const stop = o.queue.watch(id, (j) => {
        res.write(`event: job\ndata: ${JSON.stringify(view(j))}\n\n`);
        if (isFinished(j.state)) end();
      });
      streams.add(end);
      req.on('close', end);
      return;
    }
    throw new HttpError(404, `no route ${url.pathname}`);
  };
  const server = http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (res.headersSent) return void res.end();
      if (e instanceof HttpError) sendJson(res, e.status, { error: e.message });
      else sendJson(res, 500, { error: `internal error: ${e instanceof Error ? e.message : String(e)}` });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host ?? '127.0.0.1', () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  return {
    server,
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
    close: async () => {
      for (const end of [...streams]) end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
