import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeSafetensors, SafetensorsFile } from '../weights/safetensors.js';
import { fixtureDir } from './helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-parity-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

function parity(...args: string[]): { lines: string[]; errors: string[]; status: number | null } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src/parity/cli.ts'), ...args], { cwd: root, encoding: 'utf-8' });
  return { lines: r.stdout.trim().split('\n'), errors: r.stderr.trim().split('\n'), status: r.status };
}

describe('npm run parity -- <dir>', () => {
  it('prints its usage for --help (exit 0), and one line for a folder it cannot read (exit 2)', () => {
    const help = parity('--help');
    expect(help.lines).toEqual(['usage: npm run parity -- <fixtures dir> [--backend cpu|wasm|tensorflow|cuda]']);
    expect(help.status).toBe(0);
    const missing = parity(path.join(tmp, 'no-such-folder'), '--backend', 'wasm');
    expect(missing.errors.filter((l) => l !== '')).toEqual([expect.stringMatching(/^parity: .*no-such-folder/)]);
    expect(missing.status).toBe(2);
  });

  it('unknown flags or a missing value print the usage, exit 2', () => {
    for (const args of [['--bogus', tmp], [tmp, '--backend'], [tmp, 'extra'], []]) {
      const r = parity(...args);
      expect(r.errors.filter((l) => l !== ''), args.join(' ')).toEqual([expect.stringMatching(/^parity: /), 'usage: npm run parity -- <fixtures dir> [--backend cpu|wasm|tensorflow|cuda]']);
      expect(r.status, args.join(' ')).toBe(2);
    }
  });

  it('a folder without cases does not pass: a line saying so, "0 passed, 0 failed", exit 1', () => {
    const dir = path.join(tmp, 'empty');
    fs.mkdirSync(dir);
    const { lines, status } = parity(dir, '--backend=cpu');
    expect(lines).toEqual([`no parity cases found in ${dir}`, '0 passed, 0 failed']);
    expect(status).toBe(1);
  });

  it('prints PASS/SKIP per case, then "N passed, N failed", and exits 0', () => {
    const dir = path.join(tmp, 'ok');
    fs.mkdirSync(dir);
    fs.cpSync(fixtureDir('scheduler-euler'), path.join(dir, 'scheduler-euler'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'zz-other'));
    fs.writeFileSync(path.join(dir, 'zz-other', 'case.json'), JSON.stringify({ case: 'zz-other', component: 'wan-s2v' }));
    const { lines, status } = parity(dir);
    expect(lines[0]).toMatch(/^PASS scheduler-euler max_abs_err=\S+ tol=atol=0\.00001,rtol=0\.00001 \(38 tensors\)$/);
    expect(lines[1]).toBe('SKIP zz-other (wan-s2v not supported yet)');
    expect(lines[lines.length - 1]).toBe('1 passed, 0 failed');
    expect(status).toBe(0);
  });

  it('prints FAIL naming the first mismatching tensor and exits 1', () => {
    const dir = path.join(tmp, 'bad', 'scheduler-euler');
    fs.cpSync(fixtureDir('scheduler-euler'), dir, { recursive: true });
    const io = SafetensorsFile.open(path.join(dir, 'io.safetensors'));
    const tensors = Object.fromEntries(io.keys().map((k) => {
      const t = io.read(k);
      return [k, { shape: t.shape, data: t.data }];
    }));
    io.close();
    const sig = tensors['output.sigmas.n10.shift5'];
    const data = Float32Array.from(sig.data);
    data[3] += 0.01;
    tensors['output.sigmas.n10.shift5'] = { shape: sig.shape, data };
    writeSafetensors(path.join(dir, 'io.safetensors'), tensors);
    const { lines, status } = parity(path.dirname(dir));
    expect(lines[0]).toMatch(/^FAIL scheduler-euler first mismatch output\.sigmas\.n10\.shift5: max_abs_err=1\.00e-2 at flat index 3/);
    expect(lines[lines.length - 1]).toBe('0 passed, 1 failed');
    expect(status).toBe(1);
  });
});
