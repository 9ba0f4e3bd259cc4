import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { encode as encodeRgbaPng } from 'fast-png';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, type CliIO } from '../src/cli.js';
import { ConfigError } from '../src/errors.js';
import { findOnPath } from '../src/video/ffmpeg.js';
import { decodePng } from '../src/video/png-decoder.js';
import { saveVideo } from '../src/video/save-video.js';
import { fixtureDir } from './helpers/fixtures.js';
import { applyWatermark, watermarkPlacement, WATERMARK_POSITIONS, type Watermark, type WatermarkImage } from '../src/video/watermark.js';

/** ffmpeg on PATH, else the binary of the @ffmpeg-installer platform package when it is installed. */
const INSTALLER_FFMPEG = path.resolve('node_modules/@ffmpeg-installer/linux-x64/ffmpeg');
const FFMPEG = findOnPath('ffmpeg') ?? (process.platform === 'linux' && fs.existsSync(INSTALLER_FFMPEG) ? INSTALLER_FFMPEG : undefined);

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-watermark-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A 4×4 RGBA logo: distinct colours and alpha 0, 64, …, 255 over its pixels, as PNG bytes. */
function logoPng(): Uint8Array {
  const data = new Uint8Array(4 * 4 * 4);
  for (let i = 0; i < 16; i++) data.set([(i * 37) % 256, 255 - i * 13, (i * 91) % 256, [0, 64, 128, 200, 255][i % 5]], i * 4);
  return encodeRgbaPng({ width: 4, height: 4, data, channels: 4, depth: 8 });
}

function logo(): WatermarkImage {
  return decodePng(logoPng(), 'logo');
}

/** Frames [F, H, W, 3] in [0, 1]: a smooth pattern. */
function frames(F: number, H: number, W: number): Float32Array {
  const out = new Float32Array(F * H * W * 3);
  for (let i = 0; i < out.length; i++) out[i] = ((i * 7919) % 251) / 251;
  return out;
}

describe('watermark', () => {
  it('decodePng keeps an RGBA image\'s alpha', () => {
    const img = logo();
    expect(img.alpha).toBeDefined();
    expect(Array.from(img.alpha!.slice(0, 6))).toEqual([0, 64, 128, 200, 255, 0]);
  });

  it('blends by the formula (1 − a·opacity)·frame + a·opacity·logo in the chosen corner, the rest unchanged, no tensor leaked', () => {
    const [F, H, W] = [2, 16, 20];
    const data = frames(F, H, W);
    const img = logo();
    const opacity = 0.6;
    // scale 0.2 of 20 pixels: the logo keeps its 4×4 size (no resampling), 2 pixels from the bottom-right corner.
    const w: Watermark = { image: img, position: 'bottom-right', scale: 0.2, opacity, margin: 2 };
    expect(watermarkPlacement(w, H, W)).toEqual({ top: 10, left: 14, height: 4, width: 4 });
    const before = tf.memory().numTensors;
    const x = tf.tensor4d(data, [F, H, W, 3]);
    const y = applyWatermark(x, w);
    const out = y.dataSync();
    x.dispose();
    y.dispose();
    expect(tf.memory().numTensors).toBe(before);
    let inside = 0;
    for (let f = 0; f < F; f++) for (let r = 0; r < H; r++) for (let c = 0; c < W; c++) for (let k = 0; k < 3; k++) {
      const i = ((f * H + r) * W + c) * 3 + k;
      const inLogo = r >= 10 && r < 14 && c >= 14 && c < 18;
      if (!inLogo) {
        expect(out[i]).toBe(data[i]);
        continue;
      }
      const j = (r - 10) * 4 + (c - 14);
      const a = (img.alpha![j] / 255) * opacity;
      expect(out[i]).toBeCloseTo((1 - a) * data[i] + a * (img.rgb[j * 3 + k] / 255), 5);
      if (a > 0 && Math.abs(img.rgb[j * 3 + k] / 255 - data[i]) > 0.05) inside++;
    }
    expect(inside).toBeGreaterThan(40);
  });

  it('places the logo in each corner, scaled to a fraction of the frame width with its aspect ratio', () => {
    const img: WatermarkImage = { width: 8, height: 4, rgb: new Uint8Array(8 * 4 * 3).fill(255) };
    const at = Object.fromEntries(WATERMARK_POSITIONS.map((position) => [position, watermarkPlacement({ image: img, position, scale: 0.25, margin: 3 }, 30, 40)]));
    expect(at).toEqual({
      'top-left': { top: 3, left: 3, height: 5, width: 10 },
      'top-right': { top: 3, left: 27, height: 5, width: 10 },
      'bottom-left': { top: 22, left: 3, height: 5, width: 10 },
      'bottom-right': { top: 22, left: 27, height: 5, width: 10 },
    });
    // An opaque white logo (no alpha) over black frames: white exactly in the placed box.
    const x = tf.zeros([1, 30, 40, 3]) as tf.Tensor4D;
    const y = applyWatermark(x, { image: img, position: 'top-right', scale: 0.25, margin: 3 });
    const out = y.dataSync();
    tf.dispose([x, y]);
    for (let r = 0; r < 30; r++) for (let c = 0; c < 40; c++) expect(out[(r * 40 + c) * 3]).toBeCloseTo(r >= 3 && r < 8 && c >= 27 && c < 37 ? 1 : 0, 5);
  });

  it('refuses bad options with a ConfigError naming the option', () => {
    const image = logo();
    const bad: Array<[Partial<Watermark>, RegExp]> = [
      [{ position: 'center' as Watermark['position'] }, /watermark\.position: got 'center'/],
      [{ scale: 0 }, /watermark\.scale: got 0/],
      [{ scale: 1.5 }, /watermark\.scale: got 1\.5/],
      [{ scale: Number.NaN }, /watermark\.scale/],
      [{ opacity: -0.1 }, /watermark\.opacity: got -0\.1/],
      [{ opacity: 2 }, /watermark\.opacity: got 2/],
      [{ margin: -1 }, /watermark\.margin: got -1/],
      [{ margin: 1.5 }, /watermark\.margin/],
      [{ scale: 1, margin: 8 }, /watermark\.scale: a 20×20 logo with a 8-pixel margin does not fit a 20×16 frame/],
    ];
    for (const [o, re] of bad) {
      const before = tf.memory().numTensors;
      const x = tf.zeros([1, 16, 20, 3]) as tf.Tensor4D;
      let err: unknown;
      try {
        applyWatermark(x, { image, ...o });
      } catch (e) {
        err = e;
      }
      x.dispose();
      expect(err).toBeInstanceOf(ConfigError);
      expect(String(err)).toMatch(re);
      expect(tf.memory().numTensors).toBe(before);
    }
  });

  it('saveVideo blends the watermark into every frame of a GIF and PNG frames, from host uint8 frames or a tensor, without ffmpeg; no tensor leaked', async () => {
    const [F, H, W] = [3, 16, 20];
    const rgb = new Uint8Array(F * H * W * 3).fill(40);
    const w: Watermark = { image: { width: 4, height: 4, rgb: new Uint8Array(48).fill(240), alpha: new Uint8Array(16).fill(255) }, position: 'top-left', scale: 0.2, opacity: 0.5, margin: 1 };
    const before = tf.memory().numTensors;
    const out = path.join(dir, 'frames');
    const saved = await saveVideo({ data: rgb, shape: [F, H, W, 3] }, out, { fps: 8, format: 'png', watermark: w });
    expect(saved.frameCount).toBe(F);
    for (const name of fs.readdirSync(out)) {
      const png = decodePng(fs.readFileSync(path.join(out, name)));
      // 0.5·40/255 + 0.5·240/255 → 140 inside; 40 outside.
      expect(png.rgb[(1 * W + 1) * 3]).toBe(140);
      expect(png.rgb[(4 * W + 4) * 3 + 2]).toBe(140);
      expect(png.rgb[(5 * W + 5) * 3]).toBe(40);
    }
    const x = tf.tensor4d(new Float32Array(F * H * W * 3).fill(40 / 255), [F, H, W, 3]);
    const gif = path.join(dir, 'w.gif');
    await saveVideo(x, gif, { fps: 8, watermark: w });
    x.dispose();
    expect(fs.statSync(gif).size).toBeGreaterThan(0);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('saveVideo runs transformFrames (the upscaler / frame-rate hook) before the watermark and disposes what it returns', async () => {
    const [F, H, W] = [2, 8, 10];
    const x = tf.tensor4d(frames(F, H, W), [F, H, W, 3]);
    const before = tf.memory().numTensors;
    let seen: number[] = [];
    const saved = await saveVideo(x, path.join(dir, 'twice.png'), {
      fps: 16,
      format: 'png',
      transformFrames: (f) => {
        seen = f.shape;
        // Twice the frames, twice the size: each a nearest-neighbour 2× upscale.
        return tf.tidy(() => tf.image.resizeNearestNeighbor(tf.concat([f, f], 0), [2 * H, 2 * W]));
      },
      watermark: { image: logo(), scale: 0.2, margin: 0 },
    }).catch((e: unknown) => e);
    // Four frames under a .png name: a folder of PNG frames of that name.
    expect(seen).toEqual([F, H, W, 3]);
    expect(saved).toMatchObject({ frameCount: 4, width: 20, height: 16 });
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  it('subtitles and audio: a ConfigError naming the option when the output is not an MP4 through ffmpeg or the file is missing; nothing written', async () => {
    const d = path.join(dir, 'refusals');
    fs.mkdirSync(d);
    const srt = path.join(d, 'subs.srt');
    fs.writeFileSync(srt, '1\n00:00:00,000 --> 00:00:01,000\nHi\n');
    const video = { data: new Uint8Array(2 * 8 * 8 * 3), shape: [2, 8, 8, 3] };
    const cases: Array<[string, Parameters<typeof saveVideo>[2], RegExp]> = [
      ['a.gif', { fps: 8, audio: srt }, /^ConfigError: audio: needs MP4 output through ffmpeg; this clip is written as gif/],
      ['a.mp4', { fps: 8, subtitles: srt, encoder: 'builtin' }, /^ConfigError: subtitles: needs ffmpeg to write the MP4, and encoder is "builtin"/],
      ['a.mp4', { fps: 8, audio: path.join(d, 'none.wav') }, /^ConfigError: audio: .*none\.wav is not a file/],
    ];
    for (const [name, o, re] of cases) {
      const err = await saveVideo(video, path.join(d, name), o).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect(String(err)).toMatch(re);
    }
    expect(fs.readdirSync(d)).toEqual(['subs.srt']);
  });

  it.runIf(FFMPEG)('through ffmpeg: the audio track is in the MP4 and the subtitles change the pixels where the text is', async () => {
    const d = path.join(dir, 'ffmpeg');
    fs.mkdirSync(d);
    const wav = path.join(d, 'tone.wav');
    execFileSync(FFMPEG!, ['-v', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=3', wav]);
    const srt = path.join(d, 'subs.srt');
    fs.writeFileSync(srt, '1\n00:00:00,000 --> 00:00:05,000\nHELLO WORLD\n');
    const [F, H, W] = [8, 96, 160];
    const video = { data: new Uint8Array(F * H * W * 3).fill(30), shape: [F, H, W, 3] };
    const plain = path.join(d, 'plain.mp4');
    const both = path.join(d, "it's: both.mp4");
    await saveVideo(video, plain, { fps: 8, ffmpegPath: FFMPEG });
    // A relative ffmpeg path stays the caller's while ffmpeg runs in the output's folder.
    const saved = await saveVideo(video, both, { fps: 8, ffmpegPath: path.relative(process.cwd(), FFMPEG!), audio: wav, subtitles: srt });
    expect(saved.encoder).toBe('ffmpeg');
    const info = spawnSync(FFMPEG!, ['-hide_banner', '-i', both], { encoding: 'utf-8' }).stderr;
    expect(info).toMatch(/Audio: aac/);
    // The audio is cut to the clip's second.
    expect(info).toMatch(/Duration: 00:00:01\.0/);
    expect(spawnSync(FFMPEG!, ['-hide_banner', '-i', plain], { encoding: 'utf-8' }).stderr).not.toMatch(/Audio:/);
    const decode = (file: string) => new Uint8Array(execFileSync(FFMPEG!, ['-v', 'error', '-i', file, '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'gray', 'pipe:1']));
    const a = decode(plain);
    const b = decode(both);
    let changedBottom = 0;
    let changedTop = 0;
    for (let r = 0; r < H; r++) for (let c = 0; c < W; c++) {
      const changed = Math.abs(a[r * W + c] - b[r * W + c]) > 40;
      if (changed && r >= H / 2) changedBottom++;
      if (changed && r < H / 4) changedTop++;
    }
    expect(changedBottom).toBeGreaterThan(50);
    expect(changedTop).toBe(0);
    // The subtitles' temporary copy is gone.
    expect(fs.readdirSync(d).sort()).toEqual(["it's: both.mp4", 'plain.mp4', 'subs.srt', 'tone.wav']);
  });
});

describe('wan-tfjs generate --watermark, --subtitles, --audio', () => {
  const T2V = fixtureDir('pipeline-t2v');
  const IO_FILE = path.join(T2V, 'io.safetensors');
  const BASE = ['generate', '--model', T2V, '--prompt-embeds', `${IO_FILE}:input.prompt_embeds`, '--negative-prompt-embeds', `${IO_FILE}:input.negative_prompt_embeds`, '--backend', 'cpu', '--size', '48x32', '--frames', '5', '--steps', '2', '--seed', '5', '--quiet'];

  async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const io: CliIO = { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t), isTTY: false, columns: 100 }, env: {} };
    const code = await main(argv, io);
    return { code, stdout, stderr };
  }

  it('blends the logo into every frame written', async () => {
    const white = path.join(dir, 'white.png');
    fs.writeFileSync(white, encodeRgbaPng({ width: 4, height: 4, data: new Uint8Array(64).fill(255), channels: 4, depth: 8 }));
    const out = path.join(dir, 'cli-frames');
    const r = await run([...BASE, '--format', 'png', '--out', out, '--watermark', white, '--watermark-position', 'top-left', '--watermark-scale', '0.25']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const names = fs.readdirSync(out);
    expect(names).toHaveLength(5);
    for (const name of names) {
      const png = decodePng(fs.readFileSync(path.join(out, name)));
      // A 12×12 white square 8 pixels from the top-left corner.
      for (const [y, x] of [[8, 8], [13, 14], [19, 19]]) expect(Array.from(png.rgb.subarray((y * 48 + x) * 3, (y * 48 + x) * 3 + 3))).toEqual([255, 255, 255]);
    }
  });

  it('bad post-processing flags: one line naming the flag, exit code 1, nothing written', async () => {
    const logoFile = path.join(dir, 'logo.png');
    fs.writeFileSync(logoFile, logoPng());
    const d = path.join(dir, 'cli-refusals');
    fs.mkdirSync(d);
    const cases: Array<[string[], RegExp]> = [
      [['--watermark', logoFile, '--watermark-scale', '2'], /^wan-tfjs: --watermark-scale: got 2, expected a fraction/],
      [['--watermark', logoFile, '--watermark-position', 'middle'], /^wan-tfjs: --watermark-position: got 'middle', expected one of top-left/],
      [['--watermark', logoFile, '--watermark-opacity', 'half'], /^wan-tfjs: --watermark-opacity: got "half", expected a number/],
      [['--watermark', logoFile, '--watermark-scale', '1'], /^wan-tfjs: --watermark-scale: a 48×48 logo .* does not fit a 48×32 frame/],
      [['--watermark-opacity', '0.5'], /^wan-tfjs: --watermark-opacity goes with --watermark FILE\.png/],
      [['--watermark', path.join(dir, 'none.png')], /^wan-tfjs: --watermark: no file/],
      [['--subtitles', logoFile], /^wan-tfjs: --subtitles needs an mp4 written by ffmpeg, not gif/],
      [['--audio', path.join(dir, 'none.wav')], /^wan-tfjs: --audio: no file/],
    ];
    for (const [extra, message] of cases) {
      const r = await run([...BASE, '--out', path.join(d, 'clip.gif'), ...extra]);
      expect(r.code, extra.join(' ')).toBe(1);
      expect(r.stderr.trim().split('\n'), extra.join(' ')).toHaveLength(1);
      expect(r.stderr, extra.join(' ')).toMatch(message);
    }
    const list = path.join(dir, 'jobs.jsonl');
    fs.writeFileSync(list, '{"prompt": "a fox"}\n');
    // a prompt list takes the flags for every clip (test/prompt-list.test.ts), checked the same way
    const r = await run(['generate', '--prompts', list, '--out-dir', path.join(d, 'clips'), '--watermark', path.join(dir, 'none.png')]);
    expect(r.stderr).toMatch(/^wan-tfjs: --watermark: no file/);
    expect(fs.readdirSync(d)).toEqual([]);
  });
});
