// The package as a user meets it (issue 18): `npm pack` of the built library, the tarball installed
// into a temporary project with `npm install <tgz>` (dependencies from the registry or npm's cache),
// then README snippets and an example run there with tsx, importing `wan-tfjs` from node_modules.
// Uses dist/ as `npm ci` builds it (through `prepare`); skipped when it is not built.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const built = fs.existsSync(path.join(root, 'dist/src/index.js'));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf-8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
const snippet = (marker: string): string => {
  const found = blocks.filter((b) => b.includes(marker));
  expect(found, marker).toHaveLength(1);
  return found[0];
};

let project: string;
beforeAll(() => {
  if (!built) return;
  project = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-packed-'));
  // --ignore-scripts: pack the dist/ that is there rather than rebuild it under other tests' feet.
  const tgz = execFileSync(npm, ['pack', '--ignore-scripts', '--silent', '--pack-destination', project], { cwd: root, encoding: 'utf-8' }).trim().split('\n').at(-1)!;
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'wan-user', version: '1.0.0', private: true, type: 'module' }));
  execFileSync(npm, ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', path.join(project, tgz)], { cwd: project, encoding: 'utf-8', stdio: ['ignore', 'pipe', 'pipe'] });
}, 180_000);
afterAll(() => {
  if (project) fs.rmSync(project, { recursive: true, force: true });
});

/** Writes `code` as <name> in the project and runs it with tsx there. */
function runInProject(name: string, code: string, args: string[] = [], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  fs.writeFileSync(path.join(project, name), code);
  const { WAN_MODEL: _m, TSX_TSCONFIG_PATH: _t, ...rest } = process.env;
  const p = spawnSync(process.execPath, ['--import', TSX, name, ...args], { cwd: project, encoding: 'utf-8', timeout: 120_000, env: { ...rest, ...env } });
  return { status: p.status, stdout: p.stdout, stderr: p.stderr };
}

describe.runIf(built)('the packed tarball installed in a new project', () => {
  it('resolves wan-tfjs from node_modules, not from the repository', () => {
    const r = runInProject('where.mts', "console.log(import.meta.resolve('wan-tfjs'));\n");
    expect(r.status, r.stderr).toBe(0);
    expect(fileURLToPath(r.stdout.trim())).toBe(fs.realpathSync(path.join(project, 'node_modules/wan-tfjs/dist/src/index.js')));
  });

  it('runs the README safetensors snippet as written', () => {
    const r = runInProject('safetensors.mts', snippet('SafetensorsFile.open'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/BF16 .*\{ note: 'hi' \}/s);
  });

  it('runs the README text-to-video snippet on the toy model the package ships', () => {
    // The snippet's default `models/toy` is the repository's folder; the package ships it under node_modules.
    const r = runInProject('t2v.mts', snippet('pipe.textToVideo({\n  prompt'), [], { WAN_MODEL: path.join(project, 'node_modules/wan-tfjs/models/toy') });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/step 20\/20/);
  });

  it('runs examples/write-video.ts copied into the project', () => {
    const r = runInProject('write-video.mts', fs.readFileSync(path.join(root, 'examples/write-video.ts'), 'utf-8'), [path.join(project, 'video')]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('gif: 24 frames, 96x64, 12.00 fps');
  });
});
