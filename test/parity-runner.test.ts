import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compareArrays, runParity } from '../src/parity/runner.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-parity-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('parity runner', () => {
  it('prints SKIP for a component it does not know', async () => {
    const dir = path.join(tmp, 'mystery-case');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'case.json'), JSON.stringify({ case: 'mystery-case', component: 'flux-capacitor' }));
    const results = await runParity(tmp);
    expect(results.map((r) => r.line)).toEqual(['SKIP mystery-case (flux-capacitor not supported yet)']);
  });

  it('compares with |got − expected| ≤ atol + rtol·|expected| and checks shapes', () => {
    const tol = { atol: 1e-3, rtol: 0.1 };
    expect(compareArrays([1.05], [1], [1], [1], tol).ok).toBe(true);
    expect(compareArrays([1.2], [1], [1], [1], tol).ok).toBe(false);
    expect(compareArrays([NaN], [1], [1], [1], tol).ok).toBe(false);
    expect(compareArrays([1, 2], [2], [1, 2], [1, 2], tol).shapeOk).toBe(false);
  });
});
