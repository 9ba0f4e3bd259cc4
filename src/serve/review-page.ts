import { createHash } from 'node:crypto';

/*
 * GET /review: one self-contained HTML page (no build step, no framework) that lists the done jobs
 * with their clips playing inline, their settings, and Approve / Reject buttons that call
 * POST /jobs/:id/review. It holds no job data itself, so the server sends it without the API key;
 * everything it shows comes from the API with the key.
 *
 * The API key: read once from the URL's fragment (`/review#key=…`; browsers never send a fragment to
 * the server, so the key reaches no access log or proxy), else typed into the page's field; kept in
 * sessionStorage (this tab only) and sent as `Authorization: Bearer <key>`, as any API client does.
 * Clips are fetched the same way and shown from blob: URLs, so the key never appears in a URL.
 * Job text is put into the page with textContent only, and the Content-Security-Policy allows just
 * this page's own script and style (by hash), the API (same origin) and blob: media.
 */

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1rem; color: #222; }
header { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; margin-bottom: 1rem; }
h1 { font-size: 1.3rem; margin: 0 1rem 0 0; }
#status { color: #555; margin: 0; }
.job { display: grid; grid-template-columns: 280px 1fr; gap: 1rem; border-top: 1px solid #ddd; padding: .75rem 0; }
.clip img, .clip video { width: 256px; height: auto; image-rendering: pixelated; background: #eee; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem .75rem; margin: 0 0 .5rem; }
dt { color: #666; }
dd { margin: 0; overflow-wrap: anywhere; }
.review { font-weight: 600; }
.job[data-review="published"] .review { color: #176f2c; }
.job[data-review="rejected"] .review { color: #a3211a; }
.error { color: #a3211a; }
button { margin-right: .5rem; }
`;

const SCRIPT = `
'use strict';
const $ = (id) => document.getElementById(id);
const fragment = new URLSearchParams(location.hash.slice(1));
let key = fragment.get('key') ?? sessionStorage.getItem('wan-api-key') ?? '';
if (fragment.has('key')) {
  sessionStorage.setItem('wan-api-key', key);
  history.replaceState(null, '', location.pathname + location.search);
}
let urls = [];

function say(text, isError) {
  $('status').textContent = text;
  $('status').className = isError ? 'error' : '';
}

/** A request to the API with the key; a 401 shows the key field. */
async function api(path, init) {
  const headers = { 'content-type': 'application/json' };
  if (key) headers.authorization = 'Bearer ' + key;
  const res = await fetch(path, { ...init, headers });
  if (res.status === 401) {
    $('key-form').hidden = false;
    throw new Error(key ? 'the API key was refused' : 'this server needs its API key');
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(body.error || res.status + ' ' + res.statusText);
  }
  return res;
}

function el(tag, props, children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children || []) e.append(c);
  return e;
}

/** The clip, fetched with the key and shown from a blob: URL: a GIF as <img>, an MP4 as <video controls>. */
async function loadClip(job, box) {
  try {
    const blob = await (await api(job.resultUrl)).blob();
    const url = URL.createObjectURL(blob);
    urls.push(url);
    const media = job.spec.format === 'gif'
      ? el('img', { src: url, alt: job.spec.prompt })
      : el('video', { src: url, controls: true, loop: true, muted: true, autoplay: true, playsInline: true });
    box.replaceChildren(media);
  } catch (e) {
    box.replaceChildren(el('p', { className: 'error', textContent: 'clip: ' + e.message }));
  }
}

function setReview(row, review) {
  row.dataset.review = review;
  row.querySelector('.review').textContent = review;
}

async function decide(job, row, decision) {
  const buttons = row.querySelectorAll('button');
  buttons.forEach((b) => (b.disabled = true));
  const note = row.querySelector('.note');
  note.textContent = '';
  try {
    const res = await api('/jobs/' + encodeURIComponent(job.id) + '/review', { method: 'POST', body: JSON.stringify({ decision }) });
    setReview(row, (await res.json()).review);
  } catch (e) {
    note.textContent = e.message;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

function row(job) {
  const m = (job.result && job.result.metadata) || {};
  const s = job.spec;
  const pick = (name) => (m[name] !== undefined ? m[name] : s[name]);
  const fields = [
    ['prompt', s.prompt],
    ['negative prompt', s.negativePrompt],
    ['seed', s.seed],
    ['steps', pick('steps')],
    ['size', pick('width') !== undefined ? pick('width') + '×' + pick('height') : undefined],
    ['frames', pick('numFrames')],
    ['guidance', pick('guidance')],
    ['fps', pick('fps')],
    ['model', m.model && m.model.id],
    ['format', s.format],
    ['job', job.id],
    ['finished', job.finishedAt],
  ].filter(([, v]) => v !== undefined && v !== '');
  const list = el('dl', {}, fields.flatMap(([k, v]) => [el('dt', { textContent: k }), el('dd', { textContent: String(v) })]));
  const box = el('div', { className: 'clip' }, [el('p', { textContent: 'loading clip…' })]);
  const approve = el('button', { type: 'button', className: 'approve', textContent: 'Approve' });
  const reject = el('button', { type: 'button', className: 'reject', textContent: 'Reject' });
  const r = el('article', { className: 'job' }, [
    box,
    el('div', {}, [list, el('p', {}, ['review: ', el('span', { className: 'review' })]), el('p', {}, [approve, reject, el('span', { className: 'note error' })])]),
  ]);
  r.dataset.id = job.id;
  setReview(r, job.review || 'pending');
  approve.addEventListener('click', () => decide(job, r, 'publish'));
  reject.addEventListener('click', () => decide(job, r, 'reject'));
  return { r, box };
}

async function load() {
  for (const u of urls) URL.revokeObjectURL(u);
  urls = [];
  const filter = $('filter').value;
  say('loading…');
  try {
    const all = await (await api('/jobs' + (filter ? '?review=' + filter : ''))).json();
    const done = all.filter((j) => j.state === 'done').sort((a, b) => (b.finishedAt || '').localeCompare(a.finishedAt || ''));
    // clips are fetched as their rows come near the window (a long list does not fetch every clip at once)
    const seen = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        seen.unobserve(e.target);
        const job = done.find((j) => j.id === e.target.dataset.id);
        loadClip(job, e.target.querySelector('.clip'));
      }
    }, { rootMargin: '600px 0px' });
    const rows = done.map(row);
    $('jobs').replaceChildren(...rows.map((x) => x.r));
    rows.forEach((x) => seen.observe(x.r));
    say(done.length + ' clip' + (done.length === 1 ? '' : 's') + (filter ? ' ' + filter : '') + (all.length > done.length ? ', ' + (all.length - done.length) + ' job(s) not done' : ''));
  } catch (e) {
    $('jobs').replaceChildren();
    say(e.message, true);
  }
}

$('key-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  key = $('key').value;
  sessionStorage.setItem('wan-api-key', key);
  $('key').value = '';
  $('key-form').hidden = true;
  load();
});
$('filter').addEventListener('change', load);
$('refresh').addEventListener('click', load);
load();
`;

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** The page's HTML. */
export const REVIEW_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wan-tfjs review</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>wan-tfjs review</h1>
<form id="key-form" hidden><label>API key <input id="key" type="password" autocomplete="off" required></label> <button type="submit">Use key</button></form>
<label>Show <select id="filter"><option value="">all done</option><option value="pending">pending</option><option value="published">published</option><option value="rejected">rejected</option></select></label>
<button type="button" id="refresh">Refresh</button>
<p id="status" role="status"></p>
</header>
<main id="jobs"></main>
<script>${SCRIPT}</script>
</body>
</html>
`;

/** Response headers of the page: its Content-Security-Policy allows only its own inline script and style, the API and blob: clips. */
export const REVIEW_PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    'img-src blob:',
    'media-src blob:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};
