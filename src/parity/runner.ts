import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { SafetensorsFile } from '../../weights/safetensors.js';
import { hostToTensor } from '../../weights/load.js';
import { parsePythonJson } from '../config/python-json.js';
import type { CaseSpec, ParityCase, ParityHandler } from './types.js';
import { CheckpointError } from '../errors.js';

export type ParityStatus = 'PASS' | 'FAIL' | 'SKIP';

export interface ParityResult {
  case: string;
  component: string;
  status: ParityStatus;
  /** The line the runner prints. */
  line: string;
  maxAbsErr?: number;
}

export interface TensorComparison {
  maxAbsErr: number;
  worstIndex: number;
  ok: boolean;
  shapeOk: boolean;
}

/** |got − expected| ≤ atol + rtol·|expected| elementwise (NaN never passes). */
export function compareArrays(
  got: ArrayLike<number>,
  gotShape: readonly number[],
  expected: ArrayLike<number>,
  expectedShape: readonly number[],
  tol: { atol: number; rtol: number },
): TensorComparison {
  const shapeOk = gotShape.length === expectedShape.length && gotShape.every((d, i) => d === expectedShape[i]);
  if (!shapeOk || got.length !== expected.length) return { maxAbsErr: Infinity, worstIndex: -1, ok: false, shapeOk: false };
  let maxAbsErr = 0;
  let worstIndex = -1;
  let ok = true;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - expected[i]);
    if (!(err <= tol.atol + tol.rtol * Math.abs(expected[i]))) ok = false;
    if (!(err <= maxAbsErr)) {
      maxAbsErr = Number.isNaN(err) ? Infinity : err;
      worstIndex = i;
    }
  }
  return { maxAbsErr, worstIndex, ok, shapeOk: true };
}

const handlersDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'handlers');

/** Loads every handler under src/parity/handlers/, by component name. */
export async function loadHandlers(): Promise<Map<string, ParityHandler>> {
  const out = new Map<string, ParityHandler>();
  if (!fs.existsSync(handlersDir)) return out;
  for (const f of fs.readdirSync(handlersDir).sort()) {
    if (!/\.(ts|js)$/.test(f) || f.endsWith('.d.ts')) continue;
    const mod = (await import(pathToFileURL(path.join(handlersDir, f)).href)) as { default?: ParityHandler };
    if (mod.default) for (const c of mod.default.components) out.set(c, mod.default);
  }
  return out;
}

/** The case folders (those with a case.json) directly under `dir`, or `dir` itself if it is one. */
export function findCases(dir: string): string[] {
  if (fs.existsSync(path.join(dir, 'case.json'))) return [dir];
  return fs
    .readdirSync(dir)
    .map((d) => path.join(dir, d))
    .filter((d) => fs.existsSync(path.join(d, 'case.json')))
    .sort();
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toExponential(2) : String(x);
}

/** Runs one case folder with the given handlers. */
export async function runCase(caseDir: string, handlers: Map<string, ParityHandler>): Promise<ParityResult> {
  // case.json as Python's json writes it: bare NaN / Infinity / -Infinity are read as numbers.
  const spec = parsePythonJson(fs.readFileSync(path.join(caseDir, 'case.json'), 'utf-8')) as CaseSpec;
  const name = spec.case ?? path.basename(caseDir);
  const handler = handlers.get(spec.component);
  if (!handler) {
    return { case: name, component: spec.component, status: 'SKIP', line: `SKIP ${name} (${spec.component} not supported yet)` };
  }
  const tol = spec.tolerance ?? { atol: 1e-4, rtol: 1e-4 };
  const tolText = `atol=${tol.atol},rtol=${tol.rtol}`;
  const ioPath = path.join(caseDir, 'io.safetensors');
  const io = fs.existsSync(ioPath) ? SafetensorsFile.open(ioPath) : undefined;
  const c: ParityCase = {
    name,
    dir: caseDir,
    spec,
    io,
    tensor: (n) => {
      if (!io) throw new CheckpointError(`case ${name} asks for tensor '${n}' but has no io.safetensors`, ioPath);
      return hostToTensor(io.read(n));
    },
  };
  const before = tf.memory().numTensors;
  try {
    const variants = await handler.run(c);
    let worst = 0;
    let checked = 0;
    const labels: string[] = [];
    const ownChecks: string[] = [];
    for (const v of variants) {
      if (v.label) labels.push(v.label);
      if (v.checked) ownChecks.push(`${v.checked.count} ${v.checked.what}`);
      const produced = new Set(v.tensors.map(([n]) => n));
      const missing = (spec.outputs ?? []).filter((o) => !produced.has(o));
      if (missing.length) {
        return { case: name, component: spec.component, status: 'FAIL', line: `FAIL ${name} ${v.label ? `[${v.label}] ` : ''}outputs not computed: ${missing.join(', ')}` };
      }
      for (const [tname, value] of v.tensors) {
        if (!io?.has(tname)) continue;
        const exp = io.read(tname);
        const got = value instanceof Object && 'dataSync' in value ? { shape: value.shape, data: value.dataSync() } : value;
        const r = compareArrays(got.data, got.shape, exp.data, exp.shape, tol);
        checked++;
        if (!r.ok) {
          const where = r.shapeOk ? `max_abs_err=${fmt(r.maxAbsErr)} at flat index ${r.worstIndex} (got ${got.data[r.worstIndex]}, expected ${exp.data[r.worstIndex]})` : `shape [${got.shape}] vs expected [${exp.shape}]`;
          return {
            case: name,
            component: spec.component,
            status: 'FAIL',
            maxAbsErr: r.maxAbsErr,
            line: `FAIL ${name} first mismatch ${v.label ? `[${v.label}] ` : ''}${tname}: ${where} tol=${tolText}`,
          };
        }
        worst = Math.max(worst, r.maxAbsErr);
      }
    }
    if (checked === 0 && ownChecks.length === 0) {
      return { case: name, component: spec.component, status: 'FAIL', line: `FAIL ${name} nothing was compared` };
    }
    const extra = (labels.length > 1 ? `, layouts: ${labels.join(', ')}` : '') + (ownChecks.length ? `, ${ownChecks.join(', ')}` : '');
    return {
      case: name,
      component: spec.component,
      status: 'PASS',
      maxAbsErr: worst,
      line: `PASS ${name} max_abs_err=${fmt(worst)} tol=${tolText} (${checked} tensors${extra})`,
    };
  } catch (e) {
    return { case: name, component: spec.component, status: 'FAIL', line: `FAIL ${name} error: ${(e as Error).message}` };
  } finally {
    io?.close();
    const leaked = tf.memory().numTensors - before;
    if (leaked > 0 && process.env.WAN_PARITY_DEBUG) console.error(`${name}: ${leaked} tensors left after the case`);
  }
}

/** Runs every case under `dir`; `onResult` sees each result as it comes. */
export async function runParity(dir: string, onResult?: (r: ParityResult) => void): Promise<ParityResult[]> {
  const handlers = await loadHandlers();
  const results: ParityResult[] = [];
  for (const caseDir of findCases(dir)) {
    const r = await runCase(caseDir, handlers);
    onResult?.(r);
    results.push(r);
  }
  return results;
}
