// Acceptance of issue 19's review page: `wan-tfjs serve` (with an API key) and one worker on the
// embedded queue make three toy clips (two GIF, one MP4); Chromium (the distribution's package,
// driven by playwright-core) opens /review, the clips must play inline, Approve and Reject are
// clicked, and the states are read back through the HTTP API, also after the server restarts.
// Without Chromium the test is skipped with a message, except under CI=true, where it fails.
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobRecord } from '../src/serve/job-queue.js';
import { listening, startCli, stopAll, until } from './helpers/serve-processes.js';

const KEY = 'review-key-0123456789';
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
const CI = process.env.CI === 'true';

let tmp: string;
const children: ChildProcess[] = [];
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-review-'));
});
afterAll(() => {
  stopAll(children);
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function api(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...init.headers } });
}

async function job(url: string, id: string): Promise<JobRecord> {
  const res = await api(`${url}/jobs/${id}`);
  expect(res.status).toBe(200);
  return (await res.json()) as JobRecord;
}

async function serve(queue: string, log: string): Promise<{ url: string; process: ChildProcess }> {
  const p = startCli(children, ['serve', '--port', '0', '--api-key', KEY, '--queue', queue], { REDIS_URL: '' }, path.join(tmp, log));
  return { url: await listening(p), process: p };
}

/** Chromium with a fresh profile; errors the page reports (a script error, a CSP refusal, a failed load) are collected in `errors`. */
async function browser(errors: string[]): Promise<{ context: BrowserContext; page: Page }> {
  const context = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(tmp, 'profile-')), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  return { context, page };
}

/** Each clip element on the page: its tag, whether it has loaded and its decoded width. */
const CLIPS = `() => [...document.querySelectorAll('.job')].map((row) => {
  const m = row.querySelector('.clip img, .clip video');
  return { id: row.dataset.id, tag: m ? m.tagName.toLowerCase() : null,
    loaded: !!m && (m.tagName === 'IMG' ? m.complete && m.naturalWidth > 0 : m.readyState >= 2 && m.videoWidth > 0),
    width: m ? (m.naturalWidth ?? m.videoWidth) : 0 };
})`;
interface ClipInfo {
  id: string;
  tag: string | null;
  loaded: boolean;
  width: number;
}

describe('review page', () => {
  if (!HAVE_CHROMIUM && !CI) console.log(`review page test skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`);

  it.skipIf(!HAVE_CHROMIUM && !CI)('Chromium shows the clips inline; Approve and Reject move jobs to published and rejected, read back through the API and after a restart', async () => {
    if (!HAVE_CHROMIUM) throw new Error(`CI=true but Chromium is not at ${CHROMIUM}: install the distribution's chromium package (.ci/run does) or set CHROMIUM_PATH`);
    const t0 = performance.now();
    const queue = path.join(tmp, 'queue');
    const server = await serve(queue, 'serve.log');
    const url = server.url;

    // the page needs no key (it holds no data); the API still does
    const page0 = await fetch(`${url}/review`);
    expect(page0.status).toBe(200);
    expect(page0.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page0.headers.get('content-security-policy')).toMatch(/script-src 'sha256-/);
    expect((await fetch(`${url}/jobs`)).status).toBe(401);
    expect((await fetch(`${url}/jobs/x/review`, { method: 'POST', body: '{"decision":"publish"}' })).status).toBe(401);

    const submit = async (body: Record<string, unknown>) => {
      const res = await api(`${url}/jobs`, { method: 'POST', body: JSON.stringify({ numFrames: 5, width: 32, height: 32, steps: 2, guidance: 1, ...body }) });
      expect(res.status).toBe(201);
      return (await res.json()) as JobRecord;
    };
    const approved = await submit({ prompt: 'a red circle moving right', seed: 1, format: 'gif' });
    const rejected = await submit({ prompt: 'a blue circle moving left', seed: 2, format: 'gif' });
    const untouched = await submit({ prompt: 'a green square', seed: 3, format: 'mp4' });

    // only a done job can be reviewed; a bad body names its field; an unknown job is a 404
    const early = await api(`${url}/jobs/${approved.id}/review`, { method: 'POST', body: JSON.stringify({ decision: 'publish' }) });
    expect(early.status).toBe(409);
    expect(((await early.json()) as { error: string }).error).toMatch(/is queued; only a done job's clip can be reviewed/);
    const bad = await api(`${url}/jobs/${approved.id}/review`, { method: 'POST', body: JSON.stringify({ decision: 'maybe' }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/^decision: got "maybe"/);
    const extra = await api(`${url}/jobs/${approved.id}/review`, { method: 'POST', body: JSON.stringify({ decision: 'publish', note: 'x' }) });
    expect(((await extra.json()) as { error: string }).error).toMatch(/unknown field "note"/);
    expect((await api(`${url}/jobs/nope/review`, { method: 'POST', body: JSON.stringify({ decision: 'reject' }) })).status).toBe(404);
    expect((await api(`${url}/jobs/${approved.id}/review`)).status).toBe(405);
    expect((await api(`${url}/jobs?review=maybe`)).status).toBe(400);

    startCli(children, ['worker', '--queue', queue, '--backend', 'cpu', '--batch', '2', '--id', 'w1'], { REDIS_URL: '' }, path.join(tmp, 'worker.log'));
    const ids = [approved.id, rejected.id, untouched.id];
    await until('the three jobs done', async () => {
      const jobs = await Promise.all(ids.map((id) => job(url, id)));
      const failed = jobs.find((j) => j.state === 'failed');
      if (failed) throw new Error(`job ${failed.id} failed: ${failed.error}`);
      return jobs.every((j) => j.state === 'done') ? jobs : undefined;
    }, 45_000);
    for (const id of ids) expect((await job(url, id)).review).toBe('pending');
    const made = performance.now();

    const errors: string[] = [];
    const { context, page } = await browser(errors);
    try {
      // without a key the page asks for it; typed in, the jobs appear
      await page.goto(`${url}/review`);
      await page.locator('#key-form').waitFor({ state: 'visible' });
      expect(await page.locator('#status').textContent()).toMatch(/needs its API key/);
      await page.fill('#key', KEY);
      await page.click('#key-form button[type=submit]');
      await page.locator('.job').nth(2).waitFor();
      expect(await page.locator('.job').count()).toBe(3);
      errors.length = 0; // the 401 before the key was typed is reported as a failed load

      // opened as /review#key=…: the key is taken from the fragment, which is then cleared from the address
      await page.goto('about:blank');
      await page.goto(`${url}/review#key=${KEY}`);
      await page.locator('.job').nth(2).waitFor();
      expect(await page.evaluate<string>('location.hash')).toBe('');

      // each clip is in its row and has decoded: the GIFs as <img>, the MP4 as <video controls> (rows
      // fetch their clips as they come into view: each is scrolled to, as a reviewer would)
      for (const id of ids) await page.locator(`.job[data-id="${id}"]`).scrollIntoViewIfNeeded();
      let last: ClipInfo[] = [];
      const clips = await until('the clips loaded', async () => {
        last = await page.evaluate<ClipInfo[]>(`(${CLIPS})()`);
        return last.length === 3 && last.every((x) => x.loaded) ? last : undefined;
      }, 15_000).catch((e: unknown) => {
        throw new Error(`${e instanceof Error ? e.message : String(e)}: ${JSON.stringify(last)}; page errors ${JSON.stringify(errors)}`);
      });
      expect(Object.fromEntries(clips.map((c) => [c.id, [c.tag, c.width]]))).toEqual({ [approved.id]: ['img', 32], [rejected.id]: ['img', 32], [untouched.id]: ['video', 32] });
      expect(await page.locator(`.job[data-id="${untouched.id}"] video`).getAttribute('controls')).not.toBeNull();
      const meta = await page.locator(`.job[data-id="${approved.id}"] dl`).textContent();
      for (const text of ['a red circle moving right', 'seed1', 'steps2', 'size32×32', 'frames5', 'models/toy', 'formatgif']) expect(meta?.replace(/\s+/g, '')).toContain(text.replace(/\s+/g, ''));

      await page.click(`.job[data-id="${approved.id}"] button.approve`);
      await page.click(`.job[data-id="${rejected.id}"] button.reject`);
      await page.locator(`.job[data-id="${approved.id}"][data-review="published"]`).waitFor();
      await page.locator(`.job[data-id="${rejected.id}"][data-review="rejected"]`).waitFor();
      expect(await page.locator(`.job[data-id="${approved.id}"] .review`).textContent()).toBe('published');
      expect(await page.locator(`.job[data-id="${untouched.id}"] .review`).textContent()).toBe('pending');
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }

    // the states through the API: the job records and the list's filter
    const states = async (base: string) => Object.fromEntries(await Promise.all(ids.map(async (id) => [id, (await job(base, id)).review] as const)));
    const want = { [approved.id]: 'published', [rejected.id]: 'rejected', [untouched.id]: 'pending' };
    expect(await states(url)).toEqual(want);
    expect(((await (await api(`${url}/jobs?review=pending`)).json()) as JobRecord[]).map((j) => j.id)).toEqual([untouched.id]);
    expect((await job(url, approved.id)).reviewedAt).toMatch(/^\d{4}-/);

    // the decisions are in the queue's journal: a restarted server still has them
    server.process.kill('SIGTERM');
    await new Promise((r) => server.process.once('exit', r));
    const again = await serve(queue, 'serve2.log');
    expect(await states(again.url)).toEqual(want);
    again.process.kill('SIGTERM');
    for (const log of ['serve.log', 'serve2.log', 'worker.log']) expect(fs.readFileSync(path.join(tmp, log), 'utf-8')).not.toContain(KEY);
    console.log(`review page: clips made in ${((made - t0) / 1000).toFixed(1)} s, whole test ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }, 90_000);
});
