import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main, type CliIO } from '../src/cli.js';
import { FIXTURES } from './helpers/fixtures.js';
import { MUTATION_CLASSES, judge, makeCase, runCase, type Outcome } from './fuzz/safetensors-fuzz.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-fuzz-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const CORPUS = path.join(FIXTURES, 'fuzz-corpus');
/** Fixed seeds and cases per seed: 3 × 1000 cases, about 2 s. `npm run fuzz` runs the same target longer. */
const SEEDS = [1, 2, 3];
const CASES = 1000;
/** A case slower than this counts as a hang. */
const HANG_MS = 2000;

/** `wan-tfjs inspect file`: exit 0, or exit 1 with one short line; never 2. */
async function inspectExit(file: string): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const io: CliIO = { stdout: { write: () => true }, stderr: { write: (s: string) => (stderr += s), isTTY: false, columns: 100 }, env: {} };
  return { code: await main(['inspect', file], io), stderr };
}

function expectSound(o: Outcome, what: string): void {
  expect(o.finding, what).toBeUndefined();
  expect(o.result, what).not.toBe('finding');
  expect(o.allocated, `${what}: bytes allocated for file content`).toBeLessThanOrEqual(o.size);
  expect(o.ms, `${what}: time`).toBeLessThan(HANG_MS);
}

describe('safetensors reader fuzz target (fixed seeds)', () => {
  it('makes the same file for the same seed and case', () => {
    for (const i of [0, 1, 13, 500]) expect(Buffer.compare(makeCase(7, i).bytes, makeCase(7, i).bytes)).toBe(0);
    expect(Buffer.compare(makeCase(7, 1).bytes, makeCase(8, 1).bytes)).not.toBe(0);
  });

  it(`${SEEDS.length} × ${CASES} mutated files: each a load equal to the reference reader's or a CheckpointError on an invalid file`, async () => {
    const f = path.join(tmp, 'case.safetensors');
    const byClass = new Map<string, { loaded: number; refused: number }>();
    for (const seed of SEEDS) {
      for (let i = 0; i < CASES; i++) {
        const { mutation, bytes } = makeCase(seed, i);
        const o = runCase(f, bytes);
        expectSound(o, `seed ${seed} case ${i} (${mutation})`);
        const c = byClass.get(mutation) ?? { loaded: 0, refused: 0 };
        c[o.result === 'loaded' ? 'loaded' : 'refused']++;
        byClass.set(mutation, c);
        if (i % 25 === 0) {
          const r = await inspectExit(f);
          expect(r.code, `inspect, seed ${seed} case ${i}`).toBe(o.result === 'loaded' ? 0 : 1);
          if (r.code === 1) expect(r.stderr.trim().split('\n')).toHaveLength(1);
        }
      }
    }
    expect([...byClass.keys()].sort()).toEqual([...MUTATION_CLASSES].sort());
    // unmutated files all load; every mutation class is refused at least once
    expect(byClass.get('none')?.refused).toBe(0);
    for (const [mutation, c] of byClass) if (mutation !== 'none') expect(c.refused, mutation).toBeGreaterThan(0);
  });

  it('replays the corpus of crashers: each file loads (name *-loads) or is refused with a one-line CheckpointError; inspect never exits 2', async () => {
    const files = fs.readdirSync(CORPUS).filter((n) => n.endsWith('.safetensors')).sort();
    expect(files.length).toBeGreaterThan(40);
    for (const name of files) {
      const bytes = fs.readFileSync(path.join(CORPUS, name));
      expect(bytes.length, `${name} stays small`).toBeLessThan(8192);
      const o = runCase(path.join(tmp, name), bytes);
      expectSound(o, name);
      expect(o.result, name).toBe(name.endsWith('-loads.safetensors') ? 'loaded' : 'refused');
      expect(judge(bytes).valid, name).toBe(o.result === 'loaded');
      const r = await inspectExit(path.join(tmp, name));
      expect(r.code, `inspect ${name}`).toBe(o.result === 'loaded' ? 0 : 1);
      if (r.code === 1) {
        expect(r.stderr.trim().split('\n'), name).toHaveLength(1);
        expect(r.stderr.length, name).toBeLessThan(600);
      }
    }
  });
});
