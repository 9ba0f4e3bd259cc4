// Backend 'cuda' from an installed package (issue 18, item 3): the tarball ships the addon's sources
// and build script, `wan-tfjs build-cuda` finds them from the installed layout, and the errors say
// what is missing (the addon, with the command that builds it there; nvcc; the CUDA version; cuDNN).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/select.js';
import { buildCuda, main, type CliIO } from '../src/cli.js';
import { buildCommand, describeToolchain, findCudaToolchain, isSourceCheckout, packageRoot } from '../src/cuda/native.js';
import { BackendError, ConfigError } from '../src/errors.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SAVED = { addon: process.env.WAN_CUDA_ADDON, home: process.env.CUDA_HOME };

let tmp: string;
let installed: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-cuda-npm-'));
  // what `npm install wan-tfjs` leaves: node_modules/wan-tfjs with package.json, dist and the shipped sources
  installed = path.join(tmp, 'project', 'node_modules', 'wan-tfjs');
  fs.mkdirSync(path.join(installed, 'dist', 'src'), { recursive: true });
  fs.mkdirSync(path.join(installed, 'src', 'cuda'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(installed, 'package.json'));
  fs.copyFileSync(path.join(ROOT, 'src', 'cuda', 'build.mjs'), path.join(installed, 'src', 'cuda', 'build.mjs'));
  fs.cpSync(path.join(ROOT, 'src', 'cuda', 'native'), path.join(installed, 'src', 'cuda', 'native'), { recursive: true });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => {
  for (const [k, v] of [['WAN_CUDA_ADDON', SAVED.addon], ['CUDA_HOME', SAVED.home]] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

function io(env: Record<string, string>): CliIO & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (s: string | Uint8Array) => (out += String(s)) },
    stderr: { write: (s: string) => (err += s) },
    env,
    out: () => out,
    err: () => err,
  };
}

/** A fake nvcc printing `release` as `nvcc --version` does, in a folder of its own. */
function fakeNvcc(release: string): string {
  const dir = fs.mkdtempSync(path.join(tmp, 'bin-'));
  fs.writeFileSync(path.join(dir, 'nvcc'), `#!/bin/sh\necho "Cuda compilation tools, release ${release}, V${release}.1"\n`, { mode: 0o755 });
  return dir;
}

describe('the tarball', () => {
  it('ships the build script and every addon source, and no other TypeScript source', () => {
    const json = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf-8', stdio: ['ignore', 'pipe', 'ignore'] });
    const files = new Set((JSON.parse(json) as { files: { path: string }[] }[])[0].files.map((f) => f.path));
    expect(files).toContain('src/cuda/build.mjs');
    const sources = fs.readdirSync(path.join(ROOT, 'src', 'cuda', 'native'));
    expect(sources.length).toBeGreaterThan(10);
    for (const f of sources) expect(files).toContain(`src/cuda/native/${f}`);
    expect([...files].filter((f) => f.startsWith('src/') && f.endsWith('.ts'))).toEqual([]);
  });
});

describe('wan-tfjs build-cuda from an installed package', () => {
  it('finds the package root and build script from dist/src inside node_modules', () => {
    expect(packageRoot(path.join(installed, 'dist', 'src'))).toBe(installed);
    expect(isSourceCheckout(installed)).toBe(false);
    expect(buildCommand(installed)).toBe('npx wan-tfjs build-cuda');
    expect(isSourceCheckout(ROOT)).toBe(true);
    expect(buildCommand(ROOT)).toBe('npm run build:cuda');
  });

  it('runs the installed build script and reports a missing nvcc in one line', async () => {
    const t = io({ CUDA_HOME: path.join(tmp, 'no-cuda'), PATH: path.join(tmp, 'empty-bin') });
    const code = await buildCuda([], t, packageRoot(path.join(installed, 'dist', 'src')));
    expect(code).toBe(1);
    const lines = t.err().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^build:cuda: nvcc not found: CUDA_HOME=.*no-cuda has no bin\/nvcc/);
    expect(fs.existsSync(path.join(installed, 'build', 'Release', 'wan_cuda.node'))).toBe(false);
  });

  it('a package without the sources gives one ConfigError line naming them', async () => {
    const bare = path.join(tmp, 'bare');
    fs.mkdirSync(bare, { recursive: true });
    await expect(buildCuda([], io({}), bare)).rejects.toThrow(ConfigError);
    await expect(buildCuda([], io({}), bare)).rejects.toThrow(/src\/cuda\/build\.mjs or its sources .* reinstall wan-tfjs/);
  });

  it('build-cuda --help lists what the build needs; the main usage names the command', async () => {
    const t = io({});
    expect(await main(['build-cuda', '--help'], t)).toBe(0);
    expect(t.out()).toMatch(/npx wan-tfjs build-cuda/);
    for (const v of ['CUDA_HOME', 'WAN_CUDA_ARCHS', 'WAN_CUDNN_INCLUDE', 'WAN_CUDA_ADDON', '--compile-only']) expect(t.out()).toContain(v);
    const u = io({});
    expect(await main(['--help'], u)).toBe(0);
    expect(u.out()).toContain('wan-tfjs build-cuda');
    const bad = io({});
    expect(await main(['build-cuda', '--arch', '90'], bad)).toBe(1);
    expect(bad.err()).toMatch(/^wan-tfjs: .*--arch/);
  });
});

describe('what backend cuda says is missing', () => {
  it('nvcc absent: neither CUDA_HOME, CUDA_PATH, PATH nor the default folders have it', () => {
    const t = findCudaToolchain({ PATH: path.join(tmp, 'empty-bin') }, []);
    expect(t.nvcc).toBeUndefined();
    expect(describeToolchain(t)).toMatch(/^nvcc is missing \(nvcc is not on PATH.*\): install the CUDA toolkit 12 or 13/);
    expect(describeToolchain(findCudaToolchain({ CUDA_HOME: '/no/such/cuda' }, []))).toMatch(/nvcc is missing \(CUDA_HOME=\/no\/such\/cuda has no bin\/nvcc\)/);
  });

  it('names the CUDA version nvcc reports, and one older than 12 as too old', () => {
    const t13 = findCudaToolchain({ PATH: fakeNvcc('13.0') }, []);
    expect(t13.cudaVersion).toBe('13.0');
    expect(describeToolchain(t13)).toMatch(/^nvcc .*nvcc \(CUDA 13\.0\)/);
    expect(describeToolchain(findCudaToolchain({ PATH: fakeNvcc('11.8') }, []))).toMatch(/is CUDA 11\.8, which is too old \(CUDA 12 or 13 is needed\)/);
  });

  it('says whether cuDNN headers are there (optional)', () => {
    const inc = fs.mkdtempSync(path.join(tmp, 'cudnn-'));
    const without = findCudaToolchain({ PATH: fakeNvcc('13.0'), WAN_CUDNN_INCLUDE: inc }, []);
    if (!without.cudnnInclude) expect(describeToolchain(without)).toMatch(/cuDNN headers absent \(optional: set WAN_CUDNN_INCLUDE/);
    fs.writeFileSync(path.join(inc, 'cudnn.h'), '');
    expect(describeToolchain(findCudaToolchain({ PATH: fakeNvcc('13.0'), WAN_CUDNN_INCLUDE: inc }, []))).toContain(`cuDNN headers in ${inc}`);
  });

  it('selectBackend("cuda") without the addon: the build command, then nvcc, in one BackendError line', async () => {
    process.env.WAN_CUDA_ADDON = path.join(tmp, 'missing', 'wan_cuda.node');
    process.env.CUDA_HOME = path.join(tmp, 'no-cuda');
    const err = await selectBackend('cuda').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    const msg = (err as Error).message;
    expect(msg.split('\n')).toHaveLength(1);
    expect(msg).toMatch(/not built: .*wan_cuda\.node does not exist\. Run `npm run build:cuda`/);
    expect(msg).toMatch(/Here: nvcc is missing \(CUDA_HOME=.*no-cuda has no bin\/nvcc\)/);
  });
});
