// The package as a user meets it (issue 18): `npm pack` of the built library, the tarball installed
// once into a temporary project with `npm install <tgz>` (dependencies from the registry or npm's
// cache), then every README ```ts snippet and every example in examples/ run there with tsx, as
// written and with the defaults they state, importing `wan-tfjs` from node_modules. They run
// concurrently, each in its own process. Uses dist/ as `npm ci` builds it (through `prepare`);
// skipped when it is not built.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGif } from '../src/video/gif-decoder.js';
import { encodePng } from '../src/video/png-encoder.js';
import { assembleTinyModel } from './helpers/tiny-model.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const built = fs.existsSync(path.join(root, 'dist/src/index.js'));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf-8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf-8')) as T;
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** A snippet run or an example takes a few seconds alone; several share 2 cores with other test files. */
const RUN_TIMEOUT_MS = 300_000;

// What the defaults are, from the model the package ships (models/toy).
const TOY = path.join(root, 'models', 'toy');
const toySettings = readJson<{ num_frames: number; height: number; width: number; fps: number; num_inference_steps: number }>(path.join(TOY, 'wan_tfjs.json'));
const toyDit = readJson<{ patch_size: [number, number, number]; in_channels: number; num_attention_heads: number; attention_head_dim: number; num_layers: number }>(path.join(TOY, 'transformer', 'config.json'));
const toyVae = readJson<{ z_dim: number; scale_factor_spatial: number; scale_factor_temporal: number }>(path.join(TOY, 'vae', 'config.json'));

let project: string;
let i2vModel: string;
let firstFrame: string;
beforeAll(() => {
  if (!built) return;
  project = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-packed-'));
  // --ignore-scripts: pack the dist/ that is there rather than rebuild it under other tests' feet.
  const tgz = execFileSync(npm, ['pack', '--ignore-scripts', '--silent', '--pack-destination', project], { cwd: root, encoding: 'utf-8' }).trim().split('\n').at(-1)!;
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'wan-user', version: '1.0.0', private: true, type: 'module' }));
  execFileSync(npm, ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', path.join(project, tgz)], { cwd: project, encoding: 'utf-8', stdio: ['ignore', 'pipe', 'pipe'] });
  // The image-to-video snippet's defaults are a published checkpoint and the user's image: it reads
  // WAN_I2V_MODEL and WAN_FIRST_FRAME (as the README says), here a tiny TI2V-like model and a PNG of its size.
  i2vModel = assembleTinyModel(path.join(project, 'tiny-ti2v'), { expandTimesteps: true });
  const { width, height } = readJson<{ width: number; height: number }>(path.join(i2vModel, 'wan_tfjs.json'));
  firstFrame = path.join(project, 'first.png');
  fs.writeFileSync(firstFrame, encodePng(Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 13) % 256), width, height));
  fs.mkdirSync(path.join(project, 'tmp'));
}, 300_000);
afterAll(() => {
  if (project) fs.rmSync(project, { recursive: true, force: true });
});

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Writes `code` as <name> in the project and runs it with tsx there, as a user would: no WAN_*
 * variables but those in `env`, os.tmpdir() the project's tmp/ (so runs do not share files).
 */
function runInProject(name: string, code: string, args: string[] = [], env: Record<string, string> = {}): Promise<Run> {
  fs.writeFileSync(path.join(project, name), code);
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WAN_') && k !== 'TSX_TSCONFIG_PATH'));
  const child = spawn(process.execPath, ['--import', TSX, name, ...args], {
    cwd: project,
    timeout: RUN_TIMEOUT_MS,
    env: { ...inherited, TMPDIR: path.join(project, 'tmp'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf-8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf-8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/**
 * What each README snippet prints when it works, with the defaults it states; a snippet is found by
 * a line of its code (`marker`). Every ```ts block must match exactly one entry.
 */
const SNIPPETS: { marker: string; env?: () => Record<string, string>; prints: () => RegExp[] }[] = [
  {
    marker: 'const pipe = await WanPipeline.fromPretrained();',
    prints: () => [new RegExp(`step ${toySettings.num_inference_steps}/${toySettings.num_inference_steps} `)],
  },
  {
    marker: "pipe.textToVideo({ prompt: 'the cat slowly turns its head', image",
    env: () => ({ WAN_I2V_MODEL: i2vModel, WAN_FIRST_FRAME: firstFrame }),
    prints: () => [new RegExp(`^${readJson<{ num_frames: number }>(path.join(i2vModel, 'wan_tfjs.json')).num_frames} frames from ${escape(firstFrame)}$`, 'm')],
  },
  {
    marker: 'applyLora(dit, { rank: 4, alpha: 4 });',
    // to_q/k/v/out of both attentions and the two FFN linears of every block
    prints: () => [/^step 4 loss \d/m, new RegExp(`^${10 * toyDit.num_layers} adapted linears$`, 'm')],
  },
  {
    marker: 'const velocity = dit.forward(latents, timestep, text);',
    prints: () => {
      const [pt, ph, pw] = toyDit.patch_size;
      return [new RegExp(`^\\[ 1, ${toyDit.in_channels}, ${pt}, ${4 * ph}, ${6 * pw} \\]$`, 'm')];
    },
  },
  {
    marker: "const prefix = 'blocks.0.attn1.';",
    prints: () => [/^\[ 'to_q\.weight', 'to_q\.bias', 'to_k\.weight' \]$/m, new RegExp(`^\\[ 1, 6, ${toyDit.num_attention_heads * toyDit.attention_head_dim} \\]$`, 'm')],
  },
  {
    marker: 'scheduler.setTimesteps(10, { shift: 5 });',
    // the first timestep is num_train_timesteps − 1; the last sigma is final_sigmas_type "zero"
    prints: () => [/^\[ 999, \d+, \d+ \] 0$/m],
  },
  {
    marker: 'const vae = await AutoencoderKLWan.fromPretrained(',
    prints: () => {
      const [s, t] = [toyVae.scale_factor_spatial, toyVae.scale_factor_temporal];
      return [new RegExp(`^\\[ 1, ${toyVae.z_dim}, ${1 + (9 - 1) / t}, ${32 / s}, ${32 / s} \\] \\[ 1, 3, 9, 32, 32 \\]$`, 'm')];
    },
  },
  {
    marker: 'SafetensorsFile.open(file)',
    prints: () => [/^BF16 Float32Array\(4\) \[ 1, 2, 3, 4 \] \[Object: null prototype\] \{ note: 'hi' \}$/m],
  },
];

const snippetOf = (marker: string): string => {
  const found = blocks.filter((b) => b.includes(marker));
  expect(found, marker).toHaveLength(1);
  return found[0];
};

/** The examples the packed test runs (below). */
const EXAMPLES = ['finetune-lora.ts', 'generate.ts', 'reuse-attention.ts', 'safety-classifier.ts', 'write-video.ts'];

describe('what the packed test covers', () => {
  it('each ```ts block of the README is one of the snippets it runs', () => {
    expect(blocks.map((b) => SNIPPETS.filter((s) => b.includes(s.marker)).length)).toEqual(blocks.map(() => 1));
  });

  it('each example in examples/ is one it runs', () => {
    expect(fs.readdirSync(path.join(root, 'examples')).filter((f) => f.endsWith('.ts')).sort()).toEqual(EXAMPLES);
  });
});

describe.runIf(built).concurrent('the packed tarball installed in a new project', () => {
  it('resolves wan-tfjs from node_modules, not from the repository', async ({ expect }) => {
    const r = await runInProject('where.mts', "console.log(import.meta.resolve('wan-tfjs'));\n");
    expect(r.status, r.stderr).toBe(0);
    expect(fileURLToPath(r.stdout.trim())).toBe(fs.realpathSync(path.join(project, 'node_modules/wan-tfjs/dist/src/index.js')));
  });

  it.for(SNIPPETS.map((s, i) => [i + 1, s.marker, s] as const))('runs README snippet %i (%s) as written', { timeout: RUN_TIMEOUT_MS }, async ([i, marker, s], { expect }) => {
    const r = await runInProject(`snippet-${i}.mts`, snippetOf(marker), [], s.env?.() ?? {});
    expect(r.status, r.stderr).toBe(0);
    for (const re of s.prints()) expect(r.stdout).toMatch(re);
  });

  it('reports a README snippet broken on purpose (an exported name misspelled) as a failure with its error', async ({ expect }) => {
    const code = snippetOf('SafetensorsFile.open(file)');
    const broken = code.replaceAll('SafetensorsFile', 'SafetensorFile');
    expect(broken).not.toBe(code);
    const r = await runInProject('broken-snippet.mts', broken);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("does not provide an export named 'SafetensorFile'");
  }, RUN_TIMEOUT_MS);

  it('runs examples/generate.ts with its defaults: the toy model the package ships, wan-example.gif', async ({ expect }) => {
    const r = await runInProject('generate.mts', fs.readFileSync(path.join(root, 'examples/generate.ts'), 'utf-8'));
    expect(r.status, r.stderr).toBe(0);
    const { num_frames: F, width: W, height: H, fps } = toySettings;
    expect(r.stdout).toMatch(new RegExp(`wan-example\\.gif: ${F} frames, ${W}x${H}, ${fps} fps$`, 'm'));
    const g = decodeGif(fs.readFileSync(path.join(project, 'wan-example.gif')));
    expect([g.frames.length, g.width, g.height]).toEqual([F, W, H]);
  }, RUN_TIMEOUT_MS);

  it('runs examples/reuse-attention.ts with its default model, the toy model the package ships', async ({ expect }) => {
    const r = await runInProject('reuse-attention.mts', fs.readFileSync(path.join(root, 'examples/reuse-attention.ts'), 'utf-8'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/loaded to_q\.weight, .*norm_k\.weight \(\d+ parameters\)/);
    expect(r.stdout).toContain(`attention: [2,10,${toyDit.num_attention_heads * toyDit.attention_head_dim}]`);
    expect(r.stdout).toContain('max |standalone − inside the DiT| = 0');
    const m = /fine-tuning loss: ([\d.]+) -> ([\d.]+)/.exec(r.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBeLessThan(Number(m![1]) / 2);
  }, RUN_TIMEOUT_MS);

  it('runs examples/safety-classifier.ts: without @huggingface/transformers (not a dependency) it says how to install it, exit 0, nothing written', async ({ expect }) => {
    const r = await runInProject('safety-classifier.mts', fs.readFileSync(path.join(root, 'examples/safety-classifier.ts'), 'utf-8'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('examples/safety-classifier.ts needs @huggingface/transformers, which wan-tfjs does not depend on: npm install @huggingface/transformers');
    expect(fs.existsSync(path.join(project, 'wan-safety-example.gif'))).toBe(false);
  }, RUN_TIMEOUT_MS);

  it('runs examples/write-video.ts with its default folder', async ({ expect }) => {
    const r = await runInProject('write-video.mts', fs.readFileSync(path.join(root, 'examples/write-video.ts'), 'utf-8'));
    expect(r.status, r.stderr).toBe(0);
    // 24 frames of 96×64 at 12 fps: the example's definition
    expect(r.stdout).toContain('gif: 24 frames, 96x64, 12.00 fps');
    expect(r.stdout).toContain('mp4: 24 frames, 96x64, 12.00 fps');
    expect(fs.readdirSync(path.join(project, 'wan-video-example')).sort()).toEqual(['disc-frames', 'disc.gif', 'disc.mp4']);
  }, RUN_TIMEOUT_MS);

  it('runs examples/finetune-lora.ts with its defaults: the package\'s toy model, left as it is; a new folder under os.tmpdir()', async ({ expect }) => {
    const installedToy = path.join(project, 'node_modules', 'wan-tfjs', 'models', 'toy');
    const listing = (d: string): string[] => fs.readdirSync(d, { recursive: true, encoding: 'utf-8' }).sort();
    const toyBefore = listing(installedToy);
    const r = await runInProject('finetune-lora.mts', fs.readFileSync(path.join(root, 'examples/finetune-lora.ts'), 'utf-8'));
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const train = /training loss, mean of the first and of the last 10 steps: ([\d.]+) → ([\d.]+)/.exec(r.stdout);
    const heldOut = /held-out loss, before and after training: ([\d.]+) → ([\d.]+)/.exec(r.stdout);
    expect(train && heldOut, r.stdout).toBeTruthy();
    expect(Number(train![2])).toBeLessThan(Number(train![1]));
    expect(Number(heldOut![2])).toBeLessThan(Number(heldOut![1]));
    const out = /to (\S+) in [\d.]+ s$/m.exec(r.stdout)?.[1];
    expect(out && path.dirname(out)).toBe(path.join(project, 'tmp'));
    expect(listing(out!)).toEqual(['after.gif', 'before-after.gif', 'before.gif', 'sable-lora.safetensors']);
    expect(listing(installedToy)).toEqual(toyBefore);
  }, RUN_TIMEOUT_MS);
});
