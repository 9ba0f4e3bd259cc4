import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/backend/select.js';
import { findCases, loadHandlers } from '../src/parity/runner.js';
import { parsePythonJson } from '../schedulers/scheduler.js';
import type { CaseSpec } from '../src/parity/types.js';
import { hostToTensor } from '../weights/load.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { flag } from './gpu-weights.js';
import { runMain } from './harness.js';

// npx tsx bench/bf16-fixtures.ts <fixtures dir> [--json FILE]
// Every parity fixture's component (DiT, VAE 2.1 and 2.2, umT5, pipelines, schedulers) on backend
// 'cuda' at precision bf16: per output tensor, ‖got − ref‖ / ‖ref‖ and max |got − ref| against
// the fixture's float32 reference. Not a pass/fail check (the fixtures' tolerances are float32's):
// it shows that each component runs end to end in bf16 and how far bf16 lands.

runMain(async () => {
  const dir = process.argv[2];
  if (!dir || dir.startsWith('--')) throw new Error('usage: npx tsx bench/bf16-fixtures.ts <fixtures dir> [--json FILE]');
  await selectBackend('cuda', { precision: 'bf16' });
  const handlers = await loadHandlers();
  const rows: Array<{ case: string; tensor: string; rel_l2: number; max_abs: number; ref_max_abs: number }> = [];
  for (const caseDir of findCases(dir)) {
    const spec = parsePythonJson(fs.readFileSync(path.join(caseDir, 'case.json'), 'utf-8')) as CaseSpec;
    const handler = handlers.get(spec.component);
    const ioPath = path.join(caseDir, 'io.safetensors');
    if (!handler || !fs.existsSync(ioPath)) continue;
    const io = SafetensorsFile.open(ioPath);
    try {
      const variants = await handler.run({ name: spec.case, dir: caseDir, spec, io, tensor: (n) => hostToTensor(io.read(n)) });
      const v = variants[0];
      for (const [name, value] of v.tensors) {
        if (!io.has(name) || !(spec.outputs ?? []).includes(name)) continue;
        const got = value instanceof tf.Tensor ? value.dataSync() : value.data;
        const ref = io.read(name).data;
        let num = 0;
        let den = 0;
        let maxAbs = 0;
        let refMax = 0;
        for (let i = 0; i < ref.length; i++) {
          num += (got[i] - ref[i]) ** 2;
          den += ref[i] ** 2;
          maxAbs = Math.max(maxAbs, Math.abs(got[i] - ref[i]));
          refMax = Math.max(refMax, Math.abs(ref[i]));
        }
        const row = { case: spec.case, tensor: name, rel_l2: Math.sqrt(num / Math.max(den, 1e-30)), max_abs: maxAbs, ref_max_abs: refMax };
        rows.push(row);
        console.log(`${spec.case} ${name}: rel_l2 ${row.rel_l2.toExponential(2)}, max_abs ${maxAbs.toExponential(2)} (|ref| ≤ ${refMax.toFixed(3)})`);
      }
      for (const vv of variants) for (const [, t] of vv.tensors) if (t instanceof tf.Tensor) t.dispose();
    } catch (e) {
      console.log(`${spec.case}: error ${(e as Error).message}`);
      rows.push({ case: spec.case, tensor: 'error', rel_l2: NaN, max_abs: NaN, ref_max_abs: NaN });
    } finally {
      io.close();
    }
  }
  const json = process.argv.includes('--json') ? flag('json', '') : '';
  if (json) fs.writeFileSync(json, JSON.stringify(rows) + '\n');
});
