// Every parity fixture on backend 'cuda' (cases whose component has no handler yet are SKIP).
// WAN_CUDA_SUMMARY=<file> also writes the summary line there (for bench/RESULTS.md).
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/backend/select.js';
import { runParity } from '../../src/parity/runner.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { setupCuda } from './harness.js';

beforeAll(async () => {
  setupCuda();
  await selectBackend('cuda');
});

describe('parity fixtures on cuda', () => {
  it('every case with a handler passes within its tolerance', async () => {
    expect(tf.getBackend()).toBe('cuda');
    const results = await runParity(FIXTURES, (r) => console.log(r.line));
    const count = (s: string) => results.filter((r) => r.status === s).length;
    const summary = `${count('PASS')} passed, ${count('FAIL')} failed, ${count('SKIP')} skipped (backend cuda)`;
    console.log(summary);
    if (process.env.WAN_CUDA_SUMMARY) fs.writeFileSync(process.env.WAN_CUDA_SUMMARY, [...results.map((r) => r.line), summary, ''].join('\n'));
    expect(results.filter((r) => r.status === 'FAIL').map((r) => r.line)).toEqual([]);
  });
});
