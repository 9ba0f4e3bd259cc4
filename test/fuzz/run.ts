/**
 * The long run of the safetensors fuzz target: `npm run fuzz -- --cases 100000 [--seed 1]
 * [--inspect-every 50] [--case I]`. Prints cases, outcomes by mutation class, typed errors by
 * class, untyped errors and other findings (must be 0), hangs, the largest allocation / file size
 * and the time. A finding is saved to test/fixtures/fuzz-corpus as finding-s<seed>-c<case>.safetensors,
 * where the CI test replays it. Exit status 1 when anything was found.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { main, type CliIO } from '../../src/cli.js';
import { MUTATION_CLASSES, makeCase, runCase } from './safetensors-fuzz.js';

const CORPUS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'fuzz-corpus');
/** A case slower than this counts as a hang. */
const HANG_MS = 2000;

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '100000' },
    seed: { type: 'string', default: '1' },
    'inspect-every': { type: 'string', default: '50' },
    case: { type: 'string' },
  },
});
const seed = Number(values.seed);
const inspectEvery = Number(values['inspect-every']);
const only = values.case === undefined ? undefined : Number(values.case);
const cases = only === undefined ? Number(values.cases) : 1;
for (const [name, v] of [['--cases', cases], ['--seed', seed], ['--inspect-every', inspectEvery]] as const) {
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer`);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-fuzz-'));
const file = path.join(tmp, 'case.safetensors');
const byMutation = new Map<string, { loaded: number; refused: number; findings: number }>(MUTATION_CLASSES.map((m) => [m, { loaded: 0, refused: 0, findings: 0 }]));
/** Error classes of the refusals (runCase counts only CheckpointErrors on invalid files as refusals). */
const errorClasses = new Map<string, number>();
const inspectCodes = new Map<number, number>();
let untyped = 0;
let findings = 0;
let hangs = 0;
let maxMs = 0;
let maxRatio = 0;
let inspectMultiline = 0;
const io = (err: { s: string }): CliIO => ({ stdout: { write: () => true }, stderr: { write: (s: string) => ((err.s += s), true), isTTY: false, columns: 100 }, env: {} });

const t0 = performance.now();
for (let n = 0; n < cases; n++) {
  const index = only ?? n;
  const { mutation, bytes } = makeCase(seed, index);
  const o = runCase(file, bytes);
  const m = byMutation.get(mutation)!;
  if (o.result === 'refused' && o.errorClass !== undefined) errorClasses.set(o.errorClass, (errorClasses.get(o.errorClass) ?? 0) + 1);
  maxMs = Math.max(maxMs, o.ms);
  if (o.size > 0) maxRatio = Math.max(maxRatio, o.allocated / o.size);
  const hang = o.ms > HANG_MS;
  if (hang) hangs++;
  if (o.result === 'finding' || hang || o.allocated > o.size) {
    findings++;
    m.findings++;
    if (o.finding?.startsWith('untyped')) untyped++;
    const saved = path.join(CORPUS, `finding-s${seed}-c${index}.safetensors`);
    if (bytes.length <= 65536) fs.writeFileSync(saved, bytes);
    console.log(`finding: seed ${seed} case ${index} (${mutation}): ${o.finding ?? (hang ? `${o.ms.toFixed(0)} ms` : `allocated ${o.allocated} of ${o.size} bytes`)}${bytes.length <= 65536 ? ` → ${path.relative(process.cwd(), saved)}` : ''}`);
  } else m[o.result === 'loaded' ? 'loaded' : 'refused']++;
  if (inspectEvery > 0 && index % inspectEvery === 0) {
    const err = { s: '' };
    const code = await main(['inspect', file], io(err));
    inspectCodes.set(code, (inspectCodes.get(code) ?? 0) + 1);
    if (code === 1 && err.s.trim().includes('\n')) inspectMultiline++;
    if (code !== 0 && code !== 1) {
      findings++;
      console.log(`finding: inspect exited ${code} on seed ${seed} case ${index} (${mutation}): ${err.s.split('\n')[0]}`);
    }
  }
}
const seconds = (performance.now() - t0) / 1000;
fs.rmSync(tmp, { recursive: true, force: true });

console.log(`safetensors fuzz: seed ${seed}, ${cases} cases, node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'}`);
console.log(`  loaded (equal to the reference reader): ${[...byMutation.values()].reduce((a, c) => a + c.loaded, 0)}`);
console.log(`  refused with a typed error, by class: ${[...errorClasses].map(([c, k]) => `${c} ${k}`).join(', ') || 'none'}`);
console.log(`  untyped errors: ${untyped}; other findings (valid file refused, invalid file opened, read-back mismatch, hang, allocation): ${findings - untyped}`);
console.log(`  hangs (> ${HANG_MS} ms): ${hangs}; slowest case ${maxMs.toFixed(1)} ms`);
console.log(`  max allocation / file size: ${maxRatio.toFixed(3)}`);
console.log(`  inspect runs: ${[...inspectCodes].sort().map(([c, k]) => `exit ${c} ×${k}`).join(', ')}; multi-line errors ${inspectMultiline}`);
console.log(`  by mutation class (loaded / refused / findings): ${[...byMutation].map(([m, c]) => `${m} ${c.loaded}/${c.refused}/${c.findings}`).join(', ')}`);
console.log(`  time ${seconds.toFixed(1)} s (${(cases / seconds).toFixed(0)} cases/s)`);
process.exitCode = findings > 0 || inspectMultiline > 0 ? 1 : 0;
