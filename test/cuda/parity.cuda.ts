// Every parity fixture on backend 'cuda' (cases whose component has no handler yet are SKIP), after
// checking that 'cuda' has every kernel the models need: each case is first profiled on cpu.
// WAN_CUDA_SUMMARY=<file> also writes the result lines and the summary there.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/backend/select.js';
import { checkKernels, kernelsUsedBy } from '../../src/cuda/index.js';
import { findCases, loadHandlers, runParity } from '../../src/parity/runner.js';
import type { CaseSpec } from '../../src/parity/types.js';
import { hostToTensor } from '../../weights/load.js';
import { SafetensorsFile } from '../../weights/safetensors.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { setupCuda } from './harness.js';

beforeAll(async () => {
  await setupCuda('fp32');
  await selectBackend('cuda', { precision: 'fp32' });
});

/** case.json with Python's bare -Infinity / NaN read as null, as the runner reads it. */
function readSpec(dir: string): CaseSpec {
  return JSON.parse(fs.readFileSync(path.join(dir, 'case.json'), 'utf-8').replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g, (m) => (m.startsWith('"') ? m : 'null'))) as CaseSpec;
}

describe('parity fixtures on cuda', () => {
  it('cuda has every kernel the fixtures’ models run (profiled on cpu)', async () => {
    const handlers = await loadHandlers();
    for (const dir of findCases(FIXTURES)) {
      const spec = readSpec(dir);
      const handler = handlers.get(spec.component);
      if (!handler) continue;
      const ioPath = path.join(dir, 'io.safetensors');
      const io = fs.existsSync(ioPath) ? SafetensorsFile.open(ioPath) : undefined;
      const names = await kernelsUsedBy(async () => {
        const variants = await handler.run({ name: spec.case, dir, spec, io, tensor: (n) => hostToTensor(io!.read(n)) });
        return variants.flatMap((v) => v.tensors.map(([, t]) => t).filter((t): t is tf.Tensor => t instanceof tf.Tensor));
      });
      io?.close();
      expect(tf.getBackend()).toBe('cuda');
      expect(() => checkKernels(names), spec.case).not.toThrow();
    }
  });

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
