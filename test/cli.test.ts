import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import fsModule from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultModelDir, main, parseSize, type CliIO } from '../src/cli.js';
import { findOnPath } from '../src/video/ffmpeg.js';
import { decodeGif } from '../src/video/gif-decoder.js';
import { parseMp4File } from '../src/video/mp4-probe.js';
import { crc32, encodePng } from '../src/video/png-encoder.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { fixtureDir } from './helpers/fixtures.js';
import { assembleTinyModel } from './helpers/tiny-model.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const T2V = fixtureDir('pipeline-t2v');
const A14B = fixtureDir('pipeline-a14b');
const IO_FILE = path.join(T2V, 'io.safetensors');
const EMBEDS = ['--prompt-embeds', `${IO_FILE}:input.prompt_embeds`, '--negative-prompt-embeds', `${IO_FILE}:input.negative_prompt_embeds`];
const SMALL = ['--backend', 'cpu', '--size', '48x32', '--frames', '5', '--steps', '2', '--seed', '5'];

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-cli-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(argv: string[], o: { tty?: boolean; env?: Record<string, string>; signal?: AbortSignal; onStderr?: (s: string) => void } = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: CliIO = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => ((stderr += s), o.onStderr?.(s)), isTTY: o.tty ?? false, columns: 100 },
    env: o.env ?? {},
    signal: o.signal,
  };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

/** `png` with the data of its first `type` chunk changed by `edit`, and that chunk's CRC made right again. */
function editChunk(png: Uint8Array, type: string, edit: (data: DataView) => void): Uint8Array {
  const out = Uint8Array.from(png);
  const dv = new DataView(out.buffer);
  for (let off = 8; off + 12 <= out.length; off += 12 + dv.getUint32(off)) {
    const len = dv.getUint32(off);
    if (Buffer.from(out.subarray(off + 4, off + 8)).toString('latin1') !== type) continue;
    edit(new DataView(out.buffer, off + 8, len));
    dv.setUint32(off + 8 + len, crc32(out.subarray(off + 4, off + 8 + len)));
    return out;
  }
  throw new Error(`no ${type} chunk`);
}

function emptyDir(name: string): string {
  const d = path.join(tmp, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** Parameters of every tensor in the safetensors files under `dir`, from their headers. */
function paramsUnder(dir: string): number {
  let n = 0;
  for (const f of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!f.name.endsWith('.safetensors') || f.name === 'io.safetensors') continue;
    const st = SafetensorsFile.open(path.join(f.parentPath, f.name));
    for (const k of st.keys()) n += st.info(k).shape.reduce((a, d) => a * d, 1);
    st.close();
  }
  return n;
}

/** The paths `f` opened or read through fs (openSync, readFileSync) and checked with accessSync, in order. */
async function fileAccesses(f: () => Promise<unknown>): Promise<Array<[string, string]>> {
  const seen: Array<[string, string]> = [];
  const original = { openSync: fsModule.openSync, readFileSync: fsModule.readFileSync, accessSync: fsModule.accessSync };
  const spy = <F extends (...args: never[]) => unknown>(name: string, fn: F): F =>
    function (this: unknown, ...args: Parameters<F>) {
      seen.push([name, String(args[0])]);
      return Reflect.apply(fn, this, args);
    } as F;
  fsModule.openSync = spy('open', original.openSync);
  fsModule.readFileSync = spy('read', original.readFileSync);
  fsModule.accessSync = spy('access', original.accessSync);
  syncBuiltinESMExports();
  try {
    await f();
  } finally {
    Object.assign(fsModule, original);
    syncBuiltinESMExports();
  }
  return seen;
}

describe('wan-tfjs CLI', () => {
  it('--help and --version', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/wan-tfjs generate "PROMPT" | --prompt/);
    const version = await run(['--version']);
    expect(version.stdout.trim()).toBe((JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf-8')) as { version: string }).version);
  });

  it('inspect a Diffusers A14B folder: layout, experts, configs, parameter count', async () => {
    const r = await run(['inspect', A14B]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/layout: Diffusers model folder \(WanPipeline\), two experts, boundary_ratio 0\.875/);
    for (const c of ['transformer  WanTransformer3DModel', 'transformer_2  WanTransformer3DModel', 'vae  AutoencoderKLWan', 'scheduler  UniPCMultistepScheduler']) expect(r.stdout).toContain(c);
    expect(r.stdout).toContain(`parameters: ${paramsUnder(A14B).toLocaleString('en-US')}`);
    expect(r.stdout).toMatch(/num_layers=2/);
  });

  it('inspect a file lists its tensors and dtypes; --json gives the same numbers', async () => {
    const file = path.join(T2V, 'transformer', 'diffusion_pytorch_model.safetensors');
    const st = SafetensorsFile.open(file);
    const keys = st.keys();
    st.close();
    const text = await run(['inspect', file, '--all']);
    expect(text.stdout).toContain(`${keys.length} tensors (F32 ×${keys.length})`);
    expect(text.stdout).toMatch(/blocks\.0\.attn1\.to_q\.weight\s+F32\s+\[32, 32\]/);
    const json = JSON.parse((await run(['inspect', '--json', file])).stdout) as { kind: string; parameters: number; components: Array<{ checkpoint: { tensorCount: number } }> };
    expect(json.kind).toBe('checkpoint');
    expect(json.components[0].checkpoint.tensorCount).toBe(keys.length);
    expect(json.parameters).toBe(paramsUnder(path.join(T2V, 'transformer')));
  });

  it('inspect errors are one line, exit code 1, no stack', async () => {
    const pth = path.join(tmp, 'Wan2.1_VAE.pth');
    fs.writeFileSync(pth, 'pickle');
    for (const target of [pth, path.join(tmp, 'absent')]) {
      const r = await run(['inspect', target]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect((await run(['inspect', pth])).stderr).toMatch(/convert it to safetensors/);
    expect((await run(['frobnicate'])).stderr).toMatch(/unknown command "frobnicate"/);
    expect((await run(['generate', '--bogus'])).stderr).toMatch(/Unknown option '--bogus'/);
  });

  it('generate a GIF from embeddings with plain progress lines and metadata', async () => {
    const out = path.join(emptyDir('gif'), 'clip.gif');
    const before = tf.memory().numTensors;
    const r = await run(['generate', '--model', T2V, ...EMBEDS, ...SMALL, '--fps', '10', '--out', out]);
    expect(r.code).toBe(0);
    expect(tf.memory().numTensors).toBe(before);
    expect(r.stderr).toMatch(/^step 1\/2 t=999 elapsed [\d.]+s eta [\d.]+s$/m);
    expect(r.stderr).toMatch(/^step 2\/2 /m);
    expect(r.stderr).not.toContain('\r');
    expect(r.stdout).toMatch(/wrote .*clip\.gif \(5 frames, 48×32, 10 fps, seed 5\)/);
    const g = decodeGif(fs.readFileSync(out));
    expect([g.frames.length, g.width, g.height]).toEqual([5, 48, 32]);
    expect(g.fps).toBeCloseTo(10, 5);
    expect(JSON.parse(g.comments[0])).toMatchObject({ seed: '5', steps: '2', model: 'pipeline-t2v' });
    expect(JSON.parse(g.comments[0]).software).toMatch(/^wan-tfjs \d/);
  });

  it('generate from a prompt with a model that has a text encoder; inspect lists it', async () => {
    const model = assembleTinyModel(path.join(tmp, 'tiny'));
    const info = await run(['inspect', model]);
    expect(info.stdout).toMatch(/text_encoder {2}UMT5EncoderModel/);
    expect(info.stdout).toMatch(/defaults: 2 steps, guidance 5, 5 frames at 8 fps, 48×32/);
    const out = path.join(emptyDir('prompt'), 'fox.gif');
    // The prompt as the positional argument, as the README's quick start types it.
    const r = await run(['generate', 'a red fox', '--model', model, '--negative-prompt', 'blurry', '--backend', 'wasm', '--seed', '11', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/5 frames, 48×32, 8 fps, seed 11/);
    expect(JSON.parse(decodeGif(fs.readFileSync(out)).comments[0])).toMatchObject({ prompt: 'a red fox', negativePrompt: 'blurry', seed: '11' });
    await tf.setBackend('cpu');
  });

  it('draws a progress bar with elapsed time and ETA on a terminal', async () => {
    const out = path.join(emptyDir('tty'), 'frames');
    const r = await run(['generate', '--model', T2V, ...EMBEDS, ...SMALL, '--format', 'png', '--out', out], { tty: true });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/\r\x1b\[2K\[█+░*\] step 1\/2 t=999 +elapsed \d+:\d\d +ETA \d+:\d\d/);
    expect(fs.readdirSync(out)).toHaveLength(5);
  });

  it('bad arguments and missing files: one line, exit code 1, nothing written', async () => {
    const d = emptyDir('bad');
    const out = path.join(d, 'x.gif');
    const cases: Array<[string[], RegExp]> = [
      [['--frames', '6'], /numFrames: got 6, expected 1 \+ 4k .*nearest valid: 5/],
      [['--size', '50x32'], /width: got 50, expected a positive multiple of 16.*nearest valid: 48/],
      [['--size', 'big'], /--size: got "big", expected WIDTHxHEIGHT/],
      [['--steps', '0'], /numInferenceSteps: got 0, expected an integer in \[1, 1000\]/],
      [['--steps', 'many'], /--steps: got "many", expected an integer/],
      [['--guidance2', '3'], /guidanceScale2 .*one transformer/],
      [['--format', 'webm'], /--format: got "webm"/],
      [['--format', 'png'], /--format png does not match --out .*x\.gif/],
      [['two', 'prompts'], /generate takes one prompt argument, got 2/],
    ];
    for (const [extra, message] of cases) {
      const r = await run(['generate', '--model', T2V, ...EMBEDS, '--backend', 'cpu', '--size', '48x32', '--frames', '5', '--steps', '1', '--out', out, ...extra]);
      expect(r.code, extra.join(' ')).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const broken = path.join(tmp, 'broken-model');
    fs.cpSync(T2V, broken, { recursive: true });
    fs.chmodSync(path.join(broken, 'vae'), 0o755);
    fs.rmSync(path.join(broken, 'vae', 'diffusion_pytorch_model.safetensors'), { force: true });
    const missing = await run(['generate', '--model', broken, ...EMBEDS, ...SMALL, '--out', out]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/wan-tfjs: .*vae.*/);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it('settings and the output are checked before a byte of weights is read: one line, exit 1, under 1 s', async () => {
    const model = assembleTinyModel(path.join(tmp, 'tiny'));
    const d = emptyDir('early');
    const folder = path.join(d, 'taken.gif');
    fs.mkdirSync(folder);
    const cases: Array<[string[], RegExp]> = [
      [['--frames', '7'], /^wan-tfjs: numFrames: got 7, expected 1 \+ 4k frames .*nearest valid: 9/],
      [['--out', '/proc/x.mp4'], /^wan-tfjs: cannot write \/proc\/x\.mp4: the folder \/proc does not take new files/],
      [['--out', folder], /^wan-tfjs: cannot write .*taken\.gif: a folder has that name; choose another file name or remove the folder/],
      [['--out', path.join(d, `${'n'.repeat(256)}.gif`)], /^wan-tfjs: cannot write .*: the name is too long/],
      [['--out', path.join(d, 'x.webm')], /^wan-tfjs: --out .*x\.webm: \.webm files are not written; use \.mp4, \.gif or \.png/],
      [['--guidance2', '3'], /^wan-tfjs: guidanceScale2 applies to the low-noise expert/],
      [['--size', '50x32'], /^wan-tfjs: width: got 50, expected a positive multiple of 16/],
      [['--steps', '99999999999'], /^wan-tfjs: numInferenceSteps: got 99999999999, expected an integer in \[1, 1000\]/],
      [['--size', '100000x100000'], /^wan-tfjs: width×height: 100000×100000 need at least [\d.]+ \w+ \(.*\); the cpu backend has [\d.]+ GiB free; at most about \d+×\d+ could fit\n$/],
      [['--image', path.join(tmp, 'small-first.png')], /^wan-tfjs: image: a first frame needs an image-to-video model/],
    ];
    fs.writeFileSync(path.join(tmp, 'small-first.png'), encodePng(new Uint8Array(16 * 16 * 3), 16, 16));
    for (const [extra, message] of cases) {
      let r: Run | undefined;
      const start = performance.now();
      const seen = await fileAccesses(async () => {
        r = await run(['generate', 'a red fox', '--model', model, '--backend', 'cpu', '--quiet', '--out', path.join(d, 'clip.gif'), ...extra]);
      });
      const ms = performance.now() - start;
      expect(r!.code, extra.join(' ')).toBe(1);
      expect(r!.stderr.trim().split('\n'), extra.join(' ')).toHaveLength(1);
      expect(r!.stderr, extra.join(' ')).toMatch(message);
      expect(ms, extra.join(' ')).toBeLessThan(1000);
      expect(seen.filter(([, p]) => p.endsWith('.safetensors')), extra.join(' ')).toEqual([]);
    }
    expect(fs.readdirSync(d)).toEqual(['taken.gif']);
  });

  it('reads model_index.json once and shows the loading', async () => {
    const model = assembleTinyModel(path.join(tmp, 'tiny'));
    const out = path.join(emptyDir('once'), 'clip.gif');
    let r: Run | undefined;
    const seen = await fileAccesses(async () => {
      r = await run(['generate', 'a red fox', '--model', model, '--backend', 'cpu', '--seed', '3', '--out', out]);
    });
    expect(r!.code, r!.stderr).toBe(0);
    expect(seen.filter(([, p]) => path.basename(p) === 'model_index.json')).toHaveLength(1);
    for (const c of ['transformer', 'vae', 'text_encoder']) expect(r!.stderr).toMatch(new RegExp(`^loaded ${c} \\(\\d+ tensors\\) in [\\d.]+s$`, 'm'));
    expect(r!.stderr).toMatch(/^5 frames 48×32, 2 steps, guidance 5, seed 3$/m);
  });

  it('--image: image-to-video on a per-token-timestep model; clear errors elsewhere', async () => {
    const ti2v = path.join(tmp, 'ti2v');
    fs.cpSync(T2V, ti2v, { recursive: true });
    for (const f of fs.readdirSync(ti2v, { recursive: true, withFileTypes: true })) fs.chmodSync(path.join(f.parentPath, f.name), f.isDirectory() ? 0o755 : 0o644);
    const index = JSON.parse(fs.readFileSync(path.join(ti2v, 'model_index.json'), 'utf-8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(ti2v, 'model_index.json'), JSON.stringify({ ...index, expand_timesteps: true }));
    expect((await run(['inspect', ti2v])).stdout).toMatch(/task: text-to-video, and image-to-video from a first frame/);
    expect((await run(['inspect', T2V])).stdout).toMatch(/task: text-to-video\n/);
    const i2v = path.join(tmp, 'i2v-channels');
    fs.cpSync(ti2v, i2v, { recursive: true });
    const cfgFile = path.join(i2v, 'transformer', 'config.json');
    fs.writeFileSync(cfgFile, JSON.stringify({ ...(JSON.parse(fs.readFileSync(cfgFile, 'utf-8')) as Record<string, unknown>), in_channels: 12 }));
    fs.writeFileSync(path.join(i2v, 'model_index.json'), JSON.stringify({ ...index, _class_name: 'WanImageToVideoPipeline' }));
    expect((await run(['inspect', i2v])).stdout).toMatch(/task: image-to-video \(image-condition channels 12 = 4 \+ 8; image required, lastImage optional\)/);
    const d = emptyDir('i2v');
    const rgb = Uint8Array.from({ length: 32 * 48 * 3 }, (_, i) => (i * 37) % 256);
    const png = path.join(tmp, 'first.png');
    fs.writeFileSync(png, encodePng(rgb, 48, 32));
    fs.writeFileSync(path.join(tmp, 'small.png'), encodePng(rgb.subarray(0, 16 * 48 * 3), 48, 16));
    // Damaged image data under right CRCs; a header of 16384×16384 (data never inflated); a folder.
    fs.writeFileSync(path.join(tmp, 'broken.png'), editChunk(encodePng(rgb, 48, 32), 'IDAT', (d) => d.setUint16(4, d.getUint16(4) ^ 0xff55)));
    fs.writeFileSync(path.join(tmp, 'huge.png'), editChunk(encodePng(rgb, 48, 32), 'IHDR', (d) => [0, 4].forEach((at) => d.setUint32(at, 16384))));
    fs.mkdirSync(path.join(tmp, 'folder.png'));
    const plain = ['--backend', 'cpu', '--frames', '5', '--steps', '2', '--seed', '5'];
    const out = path.join(d, 'clip.gif');
    const ok = await run(['generate', '--model', ti2v, ...EMBEDS, ...plain, '--image', png, '--out', out]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/5 frames, 48×32/);
    expect(ok.stderr).toMatch(/^encoded the image condition \(1 VAE chunk\) in [\d.]+s$/m);
    expect(JSON.parse(decodeGif(fs.readFileSync(out)).comments[0])).toMatchObject({ image: 'first.png' });
    const cases: Array<[string, string[], RegExp]> = [
      [T2V, ['--image', png], /image: a first frame needs an image-to-video model/],
      [ti2v, ['--image', path.join(tmp, 'small.png'), '--size', '48x32'], /image: got \[16,48,3\], expected 32×48 pixels/],
      [ti2v, ['--image', path.join(tmp, 'first.jpg')], /--image: got ".*first\.jpg", expected a \.png file/],
      [ti2v, ['--image', path.join(tmp, 'none.png')], /--image: no file .*none\.png/],
      [ti2v, ['--image', path.join(tmp, 'broken.png')], /^wan-tfjs: --image .*broken\.png: the image data \(IDAT\) is not a valid zlib stream/],
      [ti2v, ['--image', path.join(tmp, 'huge.png')], /^wan-tfjs: --image .*huge\.png: 16384×16384 pixels is more than the 16777216 \(4096×4096\) that are decoded/],
      [ti2v, ['--image', path.join(tmp, 'folder.png')], /^wan-tfjs: --image: cannot read .*folder\.png \(EISDIR\)/],
      [ti2v, ['--image', png, '--last-image', png], /lastImage: a last frame needs a model with image-condition channels/],
      [ti2v, ['--last-image', png], /--last-image needs --image \(the first frame\) too/],
      [ti2v, ['--image', png, '--last-image', path.join(tmp, 'last.gif')], /--last-image: got ".*last\.gif", expected a \.png file/],
    ];
    for (const [model, extra, message] of cases) {
      const r = await run(['generate', '--model', model, ...EMBEDS, ...plain, '--out', path.join(d, 'bad.gif'), ...extra]);
      expect(r.code, extra.join(' ')).toBe(1);
      expect(r.stderr).toMatch(message);
    }
    expect(fs.readdirSync(d).sort()).toEqual(['clip.gif', 'clip.gif.json']);
  });

  it('without --model: $WAN_MODEL, else the bundled models/toy, else a clear message', () => {
    expect(defaultModelDir({ WAN_MODEL: '/some/model' })).toBe('/some/model');
    expect(defaultModelDir({})).toBe(path.join(ROOT, 'models', 'toy'));
    expect(() => defaultModelDir({}, emptyDir('no-toy'))).toThrow(/no --model given and the default model \(models\/toy\) is not installed/);
  });

  it('Ctrl-C (an abort) during the denoising loop exits 130 and writes nothing', async () => {
    const d = emptyDir('abort');
    const ctrl = new AbortController();
    const r = await run(['generate', '--model', T2V, ...EMBEDS, ...SMALL, '--steps', '4', '--out', path.join(d, 'x.gif')], {
      signal: ctrl.signal,
      onStderr: (s) => {
        if (s.startsWith('step 1/')) ctrl.abort();
      },
    });
    expect(r.code).toBe(130);
    expect(r.stderr).not.toMatch(/^step 2\//m);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it('--experts, --offload-blocks and --vae-budget: a bad value, or streaming on cpu, is one line naming the flag, exit code 1', async () => {
    const out = path.join(emptyDir('memory-modes'), 'x.gif');
    const cases: Array<[string[], RegExp]> = [
      [['--experts', 'sideways'], /^wan-tfjs: --experts: got "sideways", expected both, swap or active$/],
      [['--offload-blocks', '-1'], /^wan-tfjs: --offload-blocks: got -1, expected 0 or more blocks$/],
      [['--offload-blocks', 'two'], /^wan-tfjs: --offload-blocks: got "two", expected an integer$/],
      [['--offload-blocks', '1'], /^wan-tfjs: offloadBlocks: 1: backend 'cpu' keeps every tensor in host memory already/],
      [['--vae-budget', 'lots'], /^wan-tfjs: --vae-budget: got "lots", expected a memory size such as 8g, 512m or a number of bytes$/],
      [['--vae-budget', '1k'], /^wan-tfjs: vaeMemoryBudget: /],
    ];
    for (const [flags, message] of cases) {
      const r = await run(['generate', '--model', T2V, ...EMBEDS, ...SMALL, '--quiet', ...flags, '--out', out]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(message);
    }
    expect(fs.existsSync(out)).toBe(false);
  });

  it('the file system refusing --out is one line naming the path and what to do, exit code 1, before the model loads', async () => {
    const d = emptyDir('out-refused');
    fs.mkdirSync(path.join(d, 'x.gif'));
    const r = await run(['generate', '--model', T2V, ...EMBEDS, ...SMALL, '--quiet', '--out', path.join(d, 'x.gif')]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([`wan-tfjs: cannot write ${path.join(d, 'x.gif')}: a folder has that name; choose another file name or remove the folder (EISDIR in open)`]);
    expect(fs.readdirSync(d)).toEqual(['x.gif']);
  });

  // With the optional @ffmpeg-installer/ffmpeg installed there is always an ffmpeg to find.
  it.skipIf(fs.existsSync('node_modules/@ffmpeg-installer/ffmpeg'))('MP4 without ffmpeg: the built-in writer, with a note', async () => {
    const saved = { PATH: process.env.PATH, WAN_FFMPEG: process.env.WAN_FFMPEG };
    process.env.PATH = emptyDir('empty-path');
    delete process.env.WAN_FFMPEG;
    const out = path.join(emptyDir('mp4-builtin'), 'x.mp4');
    try {
      const r = await run(['generate', '--model', T2V, ...EMBEDS, ...SMALL, '--fps', '16', '--out', out]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/ffmpeg not found: the MP4 is written uncompressed by the built-in writer/);
      expect(r.stdout).toMatch(/wrote .*x\.mp4 \(5 frames, 48×32, 16 fps, seed 5, uncompressed H\.264\)/);
    } finally {
      process.env.PATH = saved.PATH;
      if (saved.WAN_FFMPEG !== undefined) process.env.WAN_FFMPEG = saved.WAN_FFMPEG;
    }
    const info = parseMp4File(out);
    expect(info).toMatchObject({ frameCount: 5, width: 48, height: 32, codec: 'avc1' });
    expect(info.fps).toBeCloseTo(16, 9);
    expect(JSON.parse(info.tags.comment)).toMatchObject({ seed: '5' });
  });

  it.runIf(findOnPath('ffmpeg'))('generate an MP4 whose frames, size, fps and title read back', async () => {
    const out = path.join(emptyDir('mp4'), 'clip.mp4');
    let r: Run | undefined;
    const seen = await fileAccesses(async () => {
      r = await run(['generate', '--model', A14B, ...EMBEDS, ...SMALL, '--guidance', '4', '--guidance2', '3', '--fps', '16', '--out', out]);
    });
    expect(r!.code).toBe(0);
    // ffmpeg is looked up once: one check of the binary it found on PATH
    expect(seen.filter(([what, p]) => what === 'access' && p === findOnPath('ffmpeg'))).toHaveLength(1);
    const info = parseMp4File(out);
    expect(info).toMatchObject({ frameCount: 5, width: 48, height: 32 });
    expect(info.fps).toBeCloseTo(16, 3);
    expect(JSON.parse(info.tags.comment)).toMatchObject({ guidance: '4', guidance2: '3', seed: '5' });
  });

  it('parses sizes as WIDTHxHEIGHT', () => {
    expect(parseSize('832x480')).toEqual([832, 480]);
    expect(parseSize(' 1280 × 720 ')).toEqual([1280, 720]);
    expect(() => parseSize('832')).toThrow(/WIDTHxHEIGHT/);
  });

  it('runs as an executable script: shebang, exit code 1 and one line on a typed error', () => {
    expect(fs.readFileSync(path.join(ROOT, 'src', 'cli.ts'), 'utf-8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    const p = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'cli.ts'), 'inspect', path.join(tmp, 'nothing-here')], { cwd: ROOT, encoding: 'utf-8' });
    expect(p.status).toBe(1);
    expect(p.stderr.trim()).toMatch(/^wan-tfjs: .*nothing-here: no such file or folder$/);
  });
});
