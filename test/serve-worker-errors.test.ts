// Issue 19's acceptance line for serving: "malformed job lines and requests get a clear error each and
// are never half-run; a full disk or unwritable output marks the job failed and keeps the worker
// running". The worker runs in-process against the embedded queue with write failures injected
// deterministically (a folder in the way, node:fs calls failing with ENOSPC / EACCES); `serve` runs
// in-process and gets malformed requests.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { modelIdentity } from '../src/pipeline/model-identity.js';
import { readModelIndex } from '../src/pipeline/model-index.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { serveCommand } from '../src/serve/commands.js';
import { EmbeddedQueue } from '../src/serve/embedded-queue.js';
import type { Claim, ClaimOptions, JobRecord } from '../src/serve/job-queue.js';
import { runWorker } from '../src/serve/worker.js';
import { verifyClip } from '../src/video/provenance.js';

/**
 * node:fs wrapped so a test can make the worker's writes fail: `openFailsUnder` / `writeFailsUnder`
 * give a folder and an errno code, and an openSync of a path in that folder (a writeSync on a file
 * opened there) throws it. Without them every call is the real one. The queue's own journal goes
 * through fs.promises, which stays real.
 */
const fault = vi.hoisted(() => ({
  openFailsUnder: undefined as { dir: string; code: string } | undefined,
  writeFailsUnder: undefined as { dir: string; code: string } | undefined,
  /** Open descriptors → their paths. */
  fds: new Map<number, string>(),
}));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const failure = (code: string, syscall: string, target: string) => Object.assign(new Error(`${code}: injected, ${syscall} '${target}'`), { code, syscall, path: target });
  const inside = (dir: string, file: string) => path.resolve(file).startsWith(`${dir}${path.sep}`);
  const openSync = (...args: Parameters<typeof real.openSync>): number => {
    const file = String(args[0]);
    const f = fault.openFailsUnder;
    if (f && inside(f.dir, file)) throw failure(f.code, 'open', file);
    const fd = real.openSync(...args);
    fault.fds.set(fd, file);
    return fd;
  };
  const writeSync = (...args: Parameters<typeof real.writeSync>): number => {
    const file = fault.fds.get(args[0]);
    const f = fault.writeFailsUnder;
    if (f && file !== undefined && inside(f.dir, file)) throw failure(f.code, 'write', file);
    return (real.writeSync as (...a: Parameters<typeof real.writeSync>) => number)(...args);
  };
  const mocked = { ...real, openSync, writeSync };
  return { ...mocked, default: mocked };
});

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const TOY = path.join(ROOT, 'models', 'toy');

let tmp: string;
beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-serve-errors-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The embedded queue running `onClaim` after each claim and `onFail` before each fail: where a test sets and clears its faults. */
class HookedQueue extends EmbeddedQueue {
  onClaim: (claims: readonly Claim[]) => void = () => undefined;
  onFail: (claim: Claim) => void = () => undefined;
  override async claim(worker: string, options: ClaimOptions): Promise<Claim[]> {
    const claims = await super.claim(worker, options);
    if (claims.length > 0) this.onClaim(claims);
    return claims;
  }
  override async fail(claim: Claim, error: string): Promise<void> {
    this.onFail(claim);
    return super.fail(claim, error);
  }
}

describe('worker: a clip that cannot be written fails its job only', () => {
  it('a folder in the way, a full disk, a results folder in the way, permission denied: each job failed with the reason, nothing half-written, the worker goes on', async () => {
    const queue = new HookedQueue(path.join(tmp, 'queue'), { pollMs: 20 });
    const embedded = queue;
    const scratch = embedded.scratchDir();
    const prompts = ['folder in the way', 'good one', 'disk full', 'results folder in the way', 'permission denied', 'good two'];
    const ids = new Map<string, string>();
    for (const [i, prompt] of prompts.entries()) {
      const job = await queue.submit({ prompt, seed: i, steps: 1, format: 'gif' });
      ids.set(prompt, job.id);
    }
    // each fault is set when its job is claimed (the worker runs pairs: 1–2, 3–4, 5–6) and cleared when it is failed
    const tokens = new Map<string, string>();
    queue.onClaim = (claims) => {
      for (const c of claims) {
        tokens.set(c.job.spec.prompt, c.token);
        if (c.job.spec.prompt === 'folder in the way') fs.mkdirSync(path.join(scratch, `${c.token}.gif`));
        if (c.job.spec.prompt === 'disk full') fault.writeFailsUnder = { dir: scratch, code: 'ENOSPC' };
        if (c.job.spec.prompt === 'results folder in the way') {
          fs.mkdirSync(path.join(embedded.resultsDir, `${c.job.id}.gif`));
          fs.writeFileSync(path.join(embedded.resultsDir, `${c.job.id}.gif`, 'keep'), 'mine');
        }
        if (c.job.spec.prompt === 'permission denied') fault.openFailsUnder = { dir: scratch, code: 'EACCES' };
      }
    };
    queue.onFail = () => {
      fault.writeFailsUnder = undefined;
      fault.openFailsUnder = undefined;
    };
    const pipe = await WanPipeline.fromPretrained(TOY);
    const ctrl = new AbortController();
    const logs: string[] = [];
    try {
      const worker = runWorker({
        queue,
        scratchDir: scratch,
        pipe,
        model: 'toy',
        software: 'wan-tfjs test',
        provenance: { libraryVersion: 'test', model: await modelIdentity(readModelIndex(TOY)) },
        id: 'w1',
        batch: 2,
        leaseMs: 30_000,
        pollMs: 20,
        signal: ctrl.signal,
        log: (line) => logs.push(line),
      });
      const end = Date.now() + 100_000;
      let jobs = await queue.list();
      while (jobs.some((j) => j.state === 'queued' || j.state === 'running')) {
        if (Date.now() > end) throw new Error(`timed out: ${JSON.stringify(jobs.map((j) => [j.spec.prompt, j.state]))}\n${logs.join('\n')}`);
        await new Promise((r) => setTimeout(r, 50));
        jobs = await queue.list();
      }
      ctrl.abort();
      await worker;
    } finally {
      ctrl.abort();
      pipe.dispose();
      fault.writeFailsUnder = undefined;
      fault.openFailsUnder = undefined;
    }
    const job = async (prompt: string) => (await queue.status(ids.get(prompt)!))!;
    const expected: Array<[string, RegExp]> = [
      ['folder in the way', /^writing the clip failed: cannot write .*\.scratch\/[0-9a-f-]+\.gif: a folder has that name; .*\(EISDIR in rename\)$/],
      ['disk full', /^writing the clip failed: cannot write .*\.scratch\/[0-9a-f-]+\.gif: no space left on the device; .*\(ENOSPC in write\)$/],
      ['results folder in the way', /^writing the clip failed: EISDIR: illegal operation on a directory, rename /],
      ['permission denied', /^writing the clip failed: cannot write .*\.scratch\/[0-9a-f-]+\.gif: permission denied; .*\(EACCES in open\)$/],
    ];
    for (const [prompt, error] of expected) {
      const j = await job(prompt);
      expect(j.state, prompt).toBe('failed');
      expect(j.error, prompt).toMatch(error);
    }
    // the clip after a failure in the same batch, and the batches after, are made
    for (const prompt of ['good one', 'good two']) {
      const j = await job(prompt);
      expect(j.state, `${prompt}: ${j.error}`).toBe('done');
      expect(verifyClip(path.join(embedded.resultsDir, j.result!.file)).differences, prompt).toEqual([]);
    }
    // nothing half-written: the scratch folder holds only the folder the test put in the way, the
    // results the two clips with their sidecars and the other folder in the way (no sidecar without its clip)
    expect(fs.readdirSync(scratch)).toEqual([`${tokens.get('folder in the way')}.gif`]);
    const good = ['good one', 'good two'].map((p) => ids.get(p)!);
    expect(fs.readdirSync(embedded.resultsDir).sort()).toEqual(
      ['.scratch', `${ids.get('results folder in the way')}.gif`, ...good.flatMap((id) => [`${id}.gif`, `${id}.gif.json`])].sort(),
    );
    expect(logs.filter((l) => / failed: /.test(l))).toHaveLength(4);
    await queue.close();
  });
});

describe('serve: malformed requests', () => {
  it('bad JSON, an unknown field, a wrong type, out-of-range frames or size, a body too large: each a 4xx naming the field; nothing is queued', async () => {
    const dir = path.join(tmp, 'serve-queue');
    const ctrl = new AbortController();
    let out = '';
    const served = serveCommand(['--port', '0', '--queue', dir, '--model', TOY], { stdout: { write: (t: string) => (out += t) }, stderr: { write: () => undefined }, env: {}, signal: ctrl.signal });
    try {
      const end = Date.now() + 30_000;
      while (!/listening on (\S+)/.test(out)) {
        if (Date.now() > end) throw new Error(`serve did not start: ${out}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const url = /listening on (\S+)/.exec(out)![1];
      const cases: Array<[string, number, RegExp]> = [
        ['{"prompt": "a red fox"', 400, /^the request body is not JSON/],
        ['', 400, /^the request body is not JSON/],
        ['["a red fox"]', 400, /^job: expected a JSON object/],
        ['{"prompt": "a red fox", "colour": "red"}', 400, /^job: unknown field "colour"; the fields are prompt, /],
        ['{"prompt": 7}', 400, /^prompt: expected a non-empty string/],
        ['{"prompt": "a red fox", "seed": "7"}', 400, /^seed: got "7", expected an integer/],
        ['{"prompt": "a red fox", "numFrames": "5"}', 400, /^numFrames: got "5", expected a positive integer/],
        ['{"prompt": "a red fox", "format": "avi"}', 400, /^format: got "avi", expected "mp4" or "gif"/],
        ['{"prompt": "a red fox", "fps": 0}', 400, /^fps: got 0, expected a positive number/],
        ['{"prompt": "a red fox", "numFrames": 0}', 400, /^numFrames: got 0, expected a positive integer/],
        ['{"prompt": "a red fox", "numFrames": 6}', 400, /^numFrames: got 6, expected frames that make .*\(nearest valid: 5\)/],
        ['{"prompt": "a red fox", "width": 30}', 400, /^width: got 30, expected a positive multiple of 4/],
        ['{"prompt": "a red fox", "steps": 100000}', 400, /^steps: got 100000, expected an integer in \[1, 1000\]/],
        // no worker could hold this clip's latents: refused here, not failed (or crashed) on a worker
        ['{"prompt": "a red fox", "width": 100000, "height": 100000}', 400, /^width×height: 5 frames at 100000×100000 need a tensor of more than 2\^32 − 1 elements/],
        // too large is HTTP's 413 (the body is never parsed)
        [JSON.stringify({ prompt: 'x'.repeat(70_000) }), 413, /^the request body is larger than 65536 bytes/],
      ];
      for (const [body, status, message] of cases) {
        const res = await fetch(`${url}/jobs`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
        expect(res.status, body.slice(0, 60)).toBe(status);
        expect(((await res.json()) as { error: string }).error, body.slice(0, 60)).toMatch(message);
      }
      expect(await (await fetch(`${url}/jobs`)).json()).toEqual([]);
      // the server still takes a good job
      const ok = await fetch(`${url}/jobs`, { method: 'POST', body: '{"prompt": "a red fox", "seed": 3, "steps": 1}', headers: { 'content-type': 'application/json' } });
      expect(ok.status).toBe(201);
      expect(((await (await fetch(`${url}/jobs`)).json()) as JobRecord[]).map((j) => j.spec.prompt)).toEqual(['a red fox']);
    } finally {
      ctrl.abort();
      await served;
    }
  });
});
