// Issue 18 item 8: what a TypeScript project that installed wan-tfjs needs in its tsconfig.
// A tiny consumer importing every subpath export is compiled with tsc against the package's
// built .d.ts (dist/, which `npm ci` builds through `prepare`): with `skipLibCheck: true` it
// compiles cleanly; without it tsc reports errors, all inside tfjs's own .d.ts files, none in
// wan-tfjs's. The README's install section says so.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const built = fs.existsSync(path.join(root, 'dist/src/index.d.ts'));
const tsc = path.join(root, 'node_modules/typescript/bin/tsc');

let dir = '';

function compile(skipLibCheck: boolean): { rc: number; errors: string[] } {
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
        skipLibCheck,
        types: ['node'],
      },
      files: ['index.ts'],
    }),
  );
  try {
    execFileSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { rc: 0, errors: [] };
  } catch (e) {
    const out = String((e as { stdout?: string }).stdout ?? '');
    return { rc: (e as { status?: number }).status ?? 1, errors: out.split('\n').filter((l) => l.includes('error TS')) };
  }
}

describe.skipIf(!built)('a TypeScript consumer of the built package', () => {
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-tfjs-consumer-'));
    fs.mkdirSync(path.join(dir, 'node_modules'));
    // The package as installed (its package.json exports → dist/*.d.ts), and @types/node.
    fs.symlinkSync(root, path.join(dir, 'node_modules/wan-tfjs'), 'dir');
    fs.symlinkSync(path.join(root, 'node_modules/@types'), path.join(dir, 'node_modules/@types'), 'dir');
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    fs.writeFileSync(
      path.join(dir, 'index.ts'),
      [
        "import { WanPipeline, ShapeError } from 'wan-tfjs';",
        "import { WanAttention } from 'wan-tfjs/layers';",
        "import { FlowMatchEulerDiscreteScheduler } from 'wan-tfjs/schedulers';",
        "import { SafetensorsFile } from 'wan-tfjs/weights';",
        'export const used = [WanPipeline, ShapeError, WanAttention, FlowMatchEulerDiscreteScheduler, SafetensorsFile];',
        '',
      ].join('\n'),
    );
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('compiles with skipLibCheck: true', () => {
    const { rc, errors } = compile(true);
    expect(errors).toEqual([]);
    expect(rc).toBe(0);
  }, 120_000);

  it("without skipLibCheck fails only inside tfjs's own .d.ts files", () => {
    const { rc, errors } = compile(false);
    expect(rc).not.toBe(0);
    expect(errors.length).toBeGreaterThan(0);
    for (const e of errors) expect(e).toMatch(/node_modules\/@tensorflow\//);
  }, 120_000);

  it('the README tells a consumer to set skipLibCheck', () => {
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    expect(readme).toMatch(/"skipLibCheck": true/);
  });
});
