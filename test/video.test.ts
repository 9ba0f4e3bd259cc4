import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, ConfigError, ShapeError } from '../src/errors.js';
import { findFfmpeg, findFfprobe, findOnPath } from '../src/video/ffmpeg.js';
import { decodeGif, lzwDecode } from '../src/video/gif-decoder.js';
import { encodeGif, gifFrameDelay, lzwEncode } from '../src/video/gif-encoder.js';
import { parseMp4File, probeMp4 } from '../src/video/mp4-probe.js';
import { decodePng, MAX_PNG_PIXELS, pngToImage } from '../src/video/png-decoder.js';
import { crc32, encodePng } from '../src/video/png-encoder.js';
import { saveVideo, type RawVideo, type SaveVideoOptions } from '../src/video/save-video.js';
import { VideoEncoderError, VideoFormatError } from '../src/video/video-error.js';

const FFMPEG = findOnPath('ffmpeg');
const FFPROBE = findFfprobe();

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-video-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh empty folder under the test's temp dir. */
function emptyDir(name: string): string {
  const d = path.join(dir, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** A seeded LCG in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** F frames of H×W with at most `colors` distinct colours (a moving pattern). */
function pattern(F: number, H: number, W: number, colors = 256, seed = 1): Uint8Array {
  const r = rng(seed);
  const palette = Array.from({ length: colors }, () => [r() * 256, r() * 256, r() * 256].map(Math.floor));
  const out = new Uint8Array(F * H * W * 3);
  for (let f = 0; f < F; f++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const c = palette[(x + 3 * y + 5 * f + ((x * y) >> 2)) % colors];
    out.set(c, ((f * H + y) * W + x) * 3);
  }
  return out;
}

/** Decodes any image/video file to raw RGB frames with ffmpeg (an independent reader). */
function ffmpegDecode(file: string): Uint8Array {
  return new Uint8Array(execFileSync(FFMPEG!, ['-v', 'error', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], { maxBuffer: 1 << 28 }));
}

/** F frames of [H, W, 3] zeros whose reader aborts `ctrl` when it reaches frame `at`. */
function tripwireFrames(F: number, H: number, W: number, at: number, ctrl: AbortController): Uint8Array {
  const size = H * W * 3;
  class Tripwire extends Uint8Array {
    override subarray(begin?: number, end?: number): Uint8Array<ArrayBuffer> {
      if ((begin ?? 0) >= at * size) ctrl.abort();
      return super.subarray(begin, end);
    }
  }
  return new Tripwire(F * size);
}

/**
 * F frames of [H, W, 3] zeros whose reader takes `ms` per frame (busy), so timers fall due while a
 * writer runs; `onRead` is told of each frame read.
 */
function slowFrames(F: number, H: number, W: number, ms: number, onRead: () => void): Uint8Array {
  class Slow extends Uint8Array {
    // A frame read from it is a plain array, so only the read itself is slow.
    static get [Symbol.species](): Uint8ArrayConstructor {
      return Uint8Array;
    }

    override subarray(begin?: number, end?: number): Uint8Array<ArrayBuffer> {
      const until = performance.now() + ms;
      while (performance.now() < until);
      onRead();
      return super.subarray(begin, end);
    }
  }
  return new Slow(F * H * W * 3);
}

/**
 * Runs saveVideo on 12 slow frames with a signal that a timer aborts on its second tick (as a SIGINT
 * handler would), not from inside the frame read; returns the error, the ticks seen during the write
 * and the frames read.
 */
async function abortFromTimer(file: string, options: Omit<SaveVideoOptions, 'signal'>): Promise<{ error: unknown; ticks: number; reads: number }> {
  const [F, H, W] = [12, 16, 16];
  const ctrl = new AbortController();
  let ticks = 0;
  let reads = 0;
  const timer = setInterval(() => {
    if (++ticks === 2) ctrl.abort();
  }, 1);
  try {
    const data = slowFrames(F, H, W, 3, () => reads++);
    const error = await saveVideo({ data, shape: [F, H, W, 3] }, file, { ...options, signal: ctrl.signal }).then(
      () => undefined,
      (e: unknown) => e,
    );
    return { error, ticks, reads };
  } finally {
    clearInterval(timer);
  }
}

describe('PNG encoder', () => {
  it('CRC-32 of "123456789" is the check value CBF43926', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });

  it('round-trips pixels and text (ASCII in tEXt, other text in iTXt)', () => {
    const rgb = pattern(1, 13, 7, 4096, 3);
    const png = encodePng(rgb, 7, 13, { Description: 'a cat', Comment: '猫 {"seed":1}' });
    const d = decodePng(png);
    expect([d.width, d.height]).toEqual([7, 13]);
    expect(Buffer.from(d.rgb).equals(Buffer.from(rgb))).toBe(true);
    expect(d.text).toEqual({ Description: 'a cat', Comment: '猫 {"seed":1}' });
  });

  it('writes printable Latin-1 text as tEXt and any other text as iTXt, before IEND; keywords printable ASCII of at most 79 characters', () => {
    const text = { Title: 'caf\u00e9 \u00bd', Description: '\u732b\u{1F408}', Comment: 'tab\there', Author: '\x80\x9f', 'K\u00e9y': 'v', ['k'.repeat(90)]: 'long' };
    const png = encodePng(pattern(1, 2, 3), 3, 2, text);
    const chunks: Array<[string, string]> = [];
    for (let off = 8; off < png.length; ) {
      const len = new DataView(png.buffer, png.byteOffset).getUint32(off);
      const data = Buffer.from(png.subarray(off + 8, off + 8 + len));
      chunks.push([Buffer.from(png.subarray(off + 4, off + 8)).toString('latin1'), data.subarray(0, data.indexOf(0)).toString('latin1')]);
      off += 12 + len;
    }
    expect(chunks.map(([type]) => type)).toEqual(['IHDR', 'IDAT', 'tEXt', 'tEXt', 'tEXt', 'iTXt', 'iTXt', 'iTXt', 'IEND']);
    expect(chunks.filter(([type]) => type === 'tEXt').map(([, keyword]) => keyword)).toEqual(['Title', 'K_y', 'k'.repeat(79)]);
    expect(decodePng(png).text).toEqual({
      Title: 'caf\u00e9 \u00bd', Description: '\u732b\u{1F408}', Comment: 'tab\there', Author: '\x80\x9f', K_y: 'v', ['k'.repeat(79)]: 'long',
    });
  });

  it('decodes grey, grey + alpha, RGB, RGBA (8 and 16 bits) and palette PNGs to RGB, dropping alpha', () => {
    // A PNG by the spec: signature, IHDR, [PLTE], one IDAT of filter-0 rows, IEND; CRCs from zlib.
    const chunk = (type: string, data: Uint8Array) => {
      const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      const out = Buffer.alloc(12 + data.length);
      out.writeUInt32BE(data.length, 0);
      body.copy(out, 4);
      out.writeUInt32BE(zlib.crc32(body), 8 + data.length);
      return out;
    };
    // Filters each row with its type (0 none, 1 Sub, 2 Up, 3 Average, 4 Paeth; bpp bytes per pixel).
    const filterRows = (rows: Uint8Array[], bpp: number, types: number[]) => rows.map((row, y) => {
      const prev = y > 0 ? rows[y - 1] : new Uint8Array(row.length);
      const out = new Uint8Array(row.length + 1);
      out[0] = types[y];
      for (let i = 0; i < row.length; i++) {
        const a = i >= bpp ? row[i - bpp] : 0;
        const b = prev[i];
        const c = i >= bpp ? prev[i - bpp] : 0;
        const p = a + b - c;
        const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
        const pred = [0, a, b, (a + b) >> 1, paeth][types[y]];
        out[i + 1] = (row[i] - pred) & 0xff;
      }
      return out;
    });
    const build = (w: number, h: number, depth: number, colour: number, rows: Uint8Array[], plte?: Uint8Array, types?: number[]) => {
      const ihdr = Buffer.alloc(13);
      ihdr.writeUInt32BE(w, 0);
      ihdr.writeUInt32BE(h, 4);
      ihdr.set([depth, colour, 0, 0, 0], 8);
      const bpp = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colour] ?? 1) * Math.max(1, depth / 8);
      const raw = Buffer.concat(filterRows(rows, bpp, types ?? rows.map(() => 0)));
      return new Uint8Array(Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), ...(plte ? [chunk('PLTE', plte)] : []), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', new Uint8Array())]));
    };
    fc.assert(
      fc.property(fc.constantFrom(0, 2, 3, 4, 6), fc.constantFrom(8, 16), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 5 }), fc.integer(), (colour, depth16, w, h, seed) => {
        const types = Array.from({ length: h }, (_, y) => ((seed >>> 0) + 3 * y) % 5);
        const depth = colour === 3 ? 8 : depth16;
        const samples = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colour]!;
        const r = rng(seed);
        const random = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
        const bytes = random(h * w * samples * (depth / 8));
        const palette = colour === 3 ? random(3 * 256) : undefined;
        const rows = Array.from({ length: h }, (_, y) => bytes.subarray(y * w * samples * (depth / 8), (y + 1) * w * samples * (depth / 8)));
        const d = decodePng(build(w, h, depth, colour, rows, palette, types));
        const want = new Uint8Array(w * h * 3);
        for (let i = 0; i < w * h; i++) {
          const sample = (k: number) => bytes[(i * samples + k) * (depth / 8)];
          const rgb = colour === 3 ? [...palette!.subarray(3 * sample(0), 3 * sample(0) + 3)] : colour === 0 || colour === 4 ? [sample(0), sample(0), sample(0)] : [sample(0), sample(1), sample(2)];
          want.set(rgb, i * 3);
        }
        expect([d.width, d.height]).toEqual([w, h]);
        expect([...d.rgb]).toEqual([...want]);
      }),
      { numRuns: 60 },
    );
    const interlaced = build(1, 1, 8, 2, [new Uint8Array(3)]);
    interlaced[8 + 8 + 12] = 1;
    expect(() => decodePng(interlaced)).toThrow(VideoFormatError);
    const pal = new Uint8Array([10, 20, 30, 40, 50, 60]);
    expect(() => decodePng(build(1, 1, 8, 3, [new Uint8Array([2])], pal))).toThrow(/palette entry 2, but the palette has 2/);
    expect(() => decodePng(build(1, 1, 8, 3, [new Uint8Array([0])]))).toThrow(/without a PLTE chunk/);
    expect(() => decodePng(build(1, 1, 8, 3, [new Uint8Array([0])], pal.subarray(0, 4)))).toThrow(/PLTE chunk of 4 bytes/);
    expect(() => decodePng(build(1, 1, 16, 3, [new Uint8Array(2)], pal))).toThrow(/bit depth 16, colour type 3/);
    const image = pngToImage(decodePng(build(2, 1, 8, 2, [new Uint8Array([0, 51, 255, 102, 204, 1])])));
    expect(image.shape).toEqual([1, 2, 3]);
    expect(image.dtype).toBe('float32');
    expect([...image.dataSync()].map((v) => Math.round(v * 255))).toEqual([0, 51, 255, 102, 204, 1]);
    expect(image.dataSync()[2]).toBe(1);
    image.dispose();
  });

  it('rejects a corrupted chunk', () => {
    const png = encodePng(pattern(1, 4, 4), 4, 4);
    png[20] ^= 0xff;
    expect(() => decodePng(png)).toThrow(VideoFormatError);
  });

  it.runIf(FFMPEG)('ffmpeg reads the same pixels', () => {
    const rgb = pattern(1, 9, 11, 4096, 5);
    const file = path.join(dir, 'check.png');
    fs.writeFileSync(file, encodePng(rgb, 11, 9));
    expect(Buffer.from(ffmpegDecode(file)).equals(Buffer.from(rgb))).toBe(true);
  });
});

/** A PNG chunk: length, type, data and CRC. */
function pngChunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(zlib.crc32(body), 8 + data.length);
  return out;
}

/** A PNG file: the signature, IHDR for an 8-bit RGB image of w×h, then `chunks`, then IEND. */
function rgbPng(w: number, h: number, ...chunks: Buffer[]): Uint8Array {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return new Uint8Array(Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), ...chunks, pngChunk('IEND', new Uint8Array())]));
}

/** The error `f` throws. */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('nothing thrown');
}

describe('PNG decoder on damaged and oversized input', () => {
  const [W, H] = [6, 5];
  // Rows of filter type 0 and pixel bytes 7.
  const raw = Buffer.alloc(H * (W * 3 + 1), 7);
  for (let y = 0; y < H; y++) raw[y * (W * 3 + 1)] = 0;
  const idat = zlib.deflateSync(raw);

  it('image data that is not a valid zlib stream, though every CRC is right, is a VideoFormatError naming the file', () => {
    const flipped = Buffer.from(idat);
    flipped[4] ^= 0xff;
    flipped[5] ^= 0x55;
    for (const data of [flipped, idat.subarray(0, idat.length - 6), Buffer.from('not zlib at all')]) {
      const e = thrown(() => decodePng(rgbPng(W, H, pngChunk('IDAT', data)), 'first.png'));
      expect(e).toBeInstanceOf(VideoFormatError);
      expect(String(e)).toMatch(/^VideoFormatError: first\.png: the image data \(IDAT\) /);
    }
    expect(() => decodePng(rgbPng(W, H))).toThrow(VideoFormatError);
  });

  it('image data that inflates past the size its header declares stops there, a VideoFormatError', () => {
    const bomb = zlib.deflateSync(Buffer.alloc(16 << 20));
    const t0 = performance.now();
    const e = thrown(() => decodePng(rgbPng(W, H, pngChunk('IDAT', bomb)), 'bomb.png'));
    expect(performance.now() - t0).toBeLessThan(100);
    expect(e).toBeInstanceOf(VideoFormatError);
    expect(String(e)).toMatch(new RegExp(`bomb\\.png: the image data \\(IDAT\\) inflates to more than the ${H * (W * 3 + 1)} bytes`));
  });

  it('a PNG over the size limit (4096×4096 pixels by default) is refused from its header, before its data is inflated', () => {
    const t0 = performance.now();
    const e = thrown(() => decodePng(rgbPng(16384, 16384, pngChunk('IDAT', zlib.deflateSync(Buffer.alloc(1 << 20)))), '--image huge.png'));
    expect(performance.now() - t0).toBeLessThan(100);
    expect(e).toBeInstanceOf(VideoFormatError);
    expect(String(e)).toMatch(/--image huge\.png: 16384×16384 pixels is more than the 16777216 \(4096×4096\) that are decoded/);
    expect(MAX_PNG_PIXELS).toBe(4096 * 4096);
    const ok = rgbPng(W, H, pngChunk('IDAT', idat));
    expect(decodePng(ok, 'small.png', { maxPixels: W * H }).rgb[0]).toBe(7);
    expect(() => decodePng(ok, 'small.png', { maxPixels: W * H - 1 })).toThrow(/small\.png: 6×5 pixels is more than the 29 that are decoded/);
    expect(() => decodePng(rgbPng(0, 5, pngChunk('IDAT', idat)))).toThrow(VideoFormatError);
    expect(() => decodePng(ok, 'small.png', { maxPixels: Number.NaN })).toThrow(ConfigError);
  });

  it('every damaged PNG is a VideoFormatError: seeded byte changes with the CRCs made right again, and truncations', () => {
    const text = pngChunk('tEXt', Buffer.from('Comment\0{"seed":1}', 'latin1'));
    const itxt = pngChunk('iTXt', Buffer.from('Description\0\0\0\0\0猫', 'utf-8'));
    const base = rgbPng(W, H, text, itxt, pngChunk('IDAT', idat));
    const check = (bytes: Uint8Array) => {
      try {
        decodePng(bytes, 'fuzz.png');
      } catch (e) {
        expect(e).toBeInstanceOf(VideoFormatError);
      }
    };
    for (let n = 0; n < base.length; n += 3) check(base.subarray(0, n));
    // A tEXt chunk of 1 MB without its separator.
    check(rgbPng(W, H, pngChunk('tEXt', Buffer.alloc(1 << 20, 65)), pngChunk('IDAT', idat)));
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), (changes) => {
        const bytes = Buffer.from(base);
        for (const [at, x] of changes) bytes[8 + (at % (bytes.length - 8))] ^= x;
        // Each chunk's CRC recomputed over whatever its type and data now are.
        for (let off = 8; off + 12 <= bytes.length; ) {
          const len = bytes.readUInt32BE(off);
          if (off + 12 + len > bytes.length) break;
          bytes.writeUInt32BE(zlib.crc32(bytes.subarray(off + 4, off + 8 + len)), off + 8 + len);
          off += 12 + len;
        }
        check(bytes);
      }),
      { numRuns: 400, seed: 7 },
    );
  });
});

describe('GIF encoder', () => {
  it('LZW decode(encode(x)) = x, including streams long enough to refill the 4096-code table', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.integer({ min: 1, max: 256 }), fc.integer({ min: 1, max: 40 }), (xs, alphabet, repeat) => {
        const data = new Uint8Array(xs.length * repeat);
        for (let i = 0; i < data.length; i++) data[i] = xs[i % xs.length] % alphabet;
        expect(Buffer.from(lzwDecode(lzwEncode(data), 8, data.length)).equals(Buffer.from(data))).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('frame delays are whole centiseconds averaging 100/fps', () => {
    for (const fps of [8, 12, 15, 16, 24, 25, 30]) {
      const total = Array.from({ length: 48 }, (_, i) => gifFrameDelay(i, fps)).reduce((a, b) => a + b, 0);
      expect(Math.abs(total - (48 * 100) / fps)).toBeLessThanOrEqual(0.5);
    }
  });

  it('is lossless for ≤ 256 colours: frame count, size, delays, loop and comment read back', () => {
    const [F, H, W] = [5, 10, 12];
    const rgb = pattern(F, H, W, 200);
    const frames = Array.from({ length: F }, (_, i) => rgb.subarray(i * H * W * 3, (i + 1) * H * W * 3));
    const g = decodeGif(encodeGif(frames, W, H, { fps: 16, comment: '{"prompt":"a cat"}' }));
    expect([g.width, g.height, g.frames.length, g.loop]).toEqual([W, H, F, 0]);
    expect(g.frames.map((f) => f.delayCs)).toEqual([6, 7, 6, 6, 6]);
    expect(g.fps).toBeCloseTo(16, 0);
    expect(g.comments).toEqual(['{"prompt":"a cat"}']);
    g.frames.forEach((f, i) => expect(Buffer.from(f.rgb).equals(Buffer.from(frames[i]))).toBe(true));
  });

  it('quantises many colours to a palette with a small error', () => {
    const [H, W] = [32, 32];
    const rgb = new Uint8Array(H * W * 3);
    const r = rng(9);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      rgb.set([x * 8, y * 8, Math.floor(128 + 40 * (r() - 0.5))], (y * W + x) * 3);
    }
    const g = decodeGif(encodeGif([rgb], W, H, { fps: 10 }));
    let sum = 0;
    let max = 0;
    for (let i = 0; i < rgb.length; i++) {
      const e = Math.abs(g.frames[0].rgb[i] - rgb[i]);
      sum += e;
      max = Math.max(max, e);
    }
    expect(sum / rgb.length).toBeLessThan(6);
    expect(max).toBeLessThan(40);
  });

  it.runIf(FFMPEG)('ffmpeg decodes the same frames', () => {
    const [F, H, W] = [3, 6, 8];
    const rgb = pattern(F, H, W, 50, 4);
    const file = path.join(dir, 'check.gif');
    fs.writeFileSync(file, encodeGif(Array.from({ length: F }, (_, i) => rgb.subarray(i * H * W * 3, (i + 1) * H * W * 3)), W, H, { fps: 10 }));
    expect(Buffer.from(ffmpegDecode(file)).equals(Buffer.from(rgb))).toBe(true);
  });
});

describe('saveVideo', () => {
  it('writes a GIF from a float tensor [1, F, H, W, 3] and leaks no tensor', async () => {
    const [F, H, W] = [4, 8, 16];
    const values = pattern(F, H, W, 30);
    const x = tf.tidy(() => tf.div(tf.tensor(Float32Array.from(values), [1, F, H, W, 3]), 255));
    const before = tf.memory().numTensors;
    const file = path.join(emptyDir('gif-tensor'), 'out.gif');
    const r = await saveVideo(x, file, { fps: 12, metadata: { prompt: 'a cat', seed: 7 } });
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    expect(r).toMatchObject({ format: 'gif', frameCount: F, width: W, height: H, fps: 12 });
    const g = decodeGif(fs.readFileSync(file));
    expect([g.frames.length, g.width, g.height]).toEqual([F, W, H]);
    expect(g.fps).toBeCloseTo(12, 0);
    expect(JSON.parse(g.comments[0])).toEqual({ prompt: 'a cat', seed: '7' });
    g.frames.forEach((f, i) => expect(Buffer.from(f.rgb).equals(Buffer.from(values.subarray(i * H * W * 3, (i + 1) * H * W * 3)))).toBe(true));
    expect(fs.readdirSync(path.dirname(file))).toEqual(['out.gif']);
  });

  it('clamps float frames to [0, 1] and rounds to 0–255', async () => {
    const data = Float32Array.from([-0.5, 0, 0.5, 1, 1.5, Number.NaN, 0.2, 0.4, 0.6, 0.8, 1 / 255, 254.6 / 255]);
    const file = path.join(emptyDir('png-one'), 'frame.png');
    await saveVideo({ data, shape: [1, 2, 2, 3] }, file, { fps: 1, format: 'png' });
    expect([...decodePng(fs.readFileSync(file)).rgb]).toEqual([0, 0, 128, 255, 255, 0, 51, 102, 153, 204, 1, 255]);
  });

  it('writes PNG frames into a folder and replaces a previous run', async () => {
    const [F, H, W] = [3, 5, 4];
    const d = emptyDir('png-folder');
    const out = path.join(d, 'frames');
    const first = pattern(F, H, W, 12, 1);
    await saveVideo({ data: first, shape: [F, H, W, 3] }, out, { fps: 8, format: 'png', metadata: { prompt: 'p' } });
    const second = pattern(F, H, W, 12, 2);
    await saveVideo({ data: second, shape: [F, H, W, 3] }, out, { fps: 8, format: 'png' });
    expect(fs.readdirSync(out)).toEqual(['frame-00000.png', 'frame-00001.png', 'frame-00002.png']);
    expect(fs.readdirSync(d)).toEqual(['frames']);
    const p1 = decodePng(fs.readFileSync(path.join(out, 'frame-00001.png')));
    expect(Buffer.from(p1.rgb).equals(Buffer.from(second.subarray(H * W * 3, 2 * H * W * 3)))).toBe(true);
    expect(p1.text['Frame rate']).toBe('8');
  });

  it('rejects bad frames, fps and formats with typed errors and writes nothing', async () => {
    const d = emptyDir('bad');
    const ok: RawVideo = { data: new Uint8Array(2 * 4 * 4 * 3), shape: [2, 4, 4, 3] };
    await expect(saveVideo({ data: new Uint8Array(2 * 4 * 4 * 3 * 2), shape: [2, 2, 4, 4, 3] }, path.join(d, 'a.gif'), { fps: 8 })).rejects.toThrow(ShapeError);
    await expect(saveVideo({ data: new Uint8Array(2 * 4 * 4 * 4), shape: [2, 4, 4, 4] }, path.join(d, 'a.gif'), { fps: 8 })).rejects.toThrow(ShapeError);
    await expect(saveVideo({ data: new Uint8Array(5), shape: [2, 4, 4, 3] }, path.join(d, 'a.gif'), { fps: 8 })).rejects.toThrow(ShapeError);
    await expect(saveVideo(ok, path.join(d, 'a.gif'), { fps: 0 })).rejects.toThrow(ConfigError);
    await expect(saveVideo(ok, path.join(d, 'a.mp4'), { fps: 8, format: 'gif' })).rejects.toThrow(/does not match/);
    const aborted = AbortSignal.abort();
    await expect(saveVideo(ok, path.join(d, 'a.gif'), { fps: 8, signal: aborted })).rejects.toThrow(AbortError);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it('an abort in the middle of writing leaves no file', async () => {
    const [F, H, W] = [6, 4, 4];
    const ctrl = new AbortController();
    const d = emptyDir('abort');
    const data = tripwireFrames(F, H, W, 3, ctrl);
    await expect(saveVideo({ data, shape: [F, H, W, 3] }, path.join(d, 'x.gif'), { fps: 8, signal: ctrl.signal })).rejects.toThrow(AbortError);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it.each([
    ['a GIF', 'x.gif', { fps: 8 }],
    ['an MP4 by the built-in writer', 'x.mp4', { fps: 8, encoder: 'builtin' }],
    ['PNG frames', 'frames', { fps: 8, format: 'png' }],
  ] as const)('an abort from a timer lands while %s is written (the writer yields between frames) and leaves no file', async (_, name, options) => {
    const d = emptyDir(`abort-timer-${name}`);
    const { error, ticks, reads } = await abortFromTimer(path.join(d, name), options);
    expect(error).toBeInstanceOf(AbortError);
    expect(ticks).toBeGreaterThanOrEqual(2);
    // It stopped where the abort came, not at the end of the frames.
    expect(reads).toBeLessThan(12);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it.runIf(FFMPEG)('an abort from a timer lands while ffmpeg encodes and leaves no file', async () => {
    const d = emptyDir('abort-timer-ffmpeg');
    const { error, ticks, reads } = await abortFromTimer(path.join(d, 'x.mp4'), { fps: 8, encoder: 'ffmpeg' });
    expect(error).toBeInstanceOf(AbortError);
    expect(ticks).toBeGreaterThanOrEqual(2);
    expect(reads).toBeLessThan(12);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  // With the optional @ffmpeg-installer/ffmpeg installed there is always an ffmpeg to find.
  it.skipIf(fs.existsSync('node_modules/@ffmpeg-installer/ffmpeg'))('MP4 without ffmpeg: the built-in writer under auto; encoder ffmpeg is a VideoEncoderError that says how to get it', async () => {
    const d = emptyDir('no-ffmpeg');
    const saved = { PATH: process.env.PATH, WAN_FFMPEG: process.env.WAN_FFMPEG };
    process.env.PATH = d;
    delete process.env.WAN_FFMPEG;
    const [F, H, W] = [3, 24, 40];
    const video: RawVideo = { data: pattern(F, H, W), shape: [F, H, W, 3] };
    try {
      expect(await findFfmpeg()).toBeUndefined();
      const err = await saveVideo(video, path.join(d, 'forced.mp4'), { fps: 8, encoder: 'ffmpeg' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VideoEncoderError);
      expect(String(err)).toMatch(/needs ffmpeg.*apt install ffmpeg.*builtin.*gif/s);
      expect(fs.readdirSync(d)).toEqual([]);
      const r = await saveVideo(video, path.join(d, 'x.mp4'), { fps: 8, metadata: { prompt: 'a cat' } });
      expect(r).toMatchObject({ format: 'mp4', encoder: 'builtin', frameCount: F, width: W, height: H, fps: 8 });
      expect(r.bytes).toBe(fs.statSync(r.path).size);
    } finally {
      process.env.PATH = saved.PATH;
      if (saved.WAN_FFMPEG !== undefined) process.env.WAN_FFMPEG = saved.WAN_FFMPEG;
    }
    expect(fs.readdirSync(d)).toEqual(['x.mp4']);
    const info = parseMp4File(path.join(d, 'x.mp4'));
    expect(info).toMatchObject({ frameCount: F, width: W, height: H, codec: 'avc1' });
    expect(info.fps).toBeCloseTo(8, 9);
    expect(info.tags.title).toBe('a cat');
  });

  it('the built-in MP4 writer: a float tensor, tags, odd sizes padded to even as the ffmpeg path does, no tensor leaked', async () => {
    const [F, H, W] = [2, 17, 33];
    const values = pattern(F, H, W, 64);
    const x = tf.tidy(() => tf.div(tf.tensor(Float32Array.from(values), [1, F, H, W, 3]), 255));
    const before = tf.memory().numTensors;
    const file = path.join(emptyDir('mp4-builtin'), 'odd.mp4');
    const r = await saveVideo(x, file, { fps: 24, encoder: 'builtin', metadata: { prompt: 'a red fox', seed: 42 } });
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    expect(r).toMatchObject({ format: 'mp4', encoder: 'builtin', frameCount: F, width: W, height: H });
    const info = parseMp4File(file);
    expect(info).toMatchObject({ frameCount: F, width: W + 1, height: H + 1, codec: 'avc1' });
    expect(info.fps).toBeCloseTo(24, 9);
    expect(JSON.parse(info.tags.comment)).toEqual({ prompt: 'a red fox', seed: '42' });
    expect(fs.readdirSync(path.dirname(file))).toEqual(['odd.mp4']);
    // ffmpeg decodes every frame at the padded size.
    if (FFMPEG) expect(ffmpegDecode(file).length).toBe(F * (H + 1) * (W + 1) * 3);
  });

  it('an abort while the built-in MP4 writer runs leaves no file; an unknown encoder is a ConfigError', async () => {
    const [F, H, W] = [8, 16, 16];
    const size = H * W * 3;
    const ctrl = new AbortController();
    const d = emptyDir('mp4-builtin-abort');
    await expect(saveVideo({ data: tripwireFrames(F, H, W, 4, ctrl), shape: [F, H, W, 3] }, path.join(d, 'x.mp4'), { fps: 8, encoder: 'builtin', signal: ctrl.signal })).rejects.toThrow(AbortError);
    const bad = { fps: 8, encoder: 'x264' } as unknown as SaveVideoOptions;
    await expect(saveVideo({ data: new Uint8Array(size), shape: [1, H, W, 3] }, path.join(d, 'y.mp4'), bad)).rejects.toThrow(ConfigError);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it('an encoder that fails leaves no file', async () => {
    const d = emptyDir('ffmpeg-fails');
    const fake = path.join(dir, 'fake-ffmpeg.sh');
    fs.writeFileSync(fake, '#!/bin/sh\necho "x264 exploded" >&2\nexit 3\n', { mode: 0o755 });
    const err = await saveVideo({ data: new Uint8Array(4 * 48), shape: [4, 4, 4, 3] }, path.join(d, 'x.mp4'), { fps: 8, ffmpegPath: fake }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VideoEncoderError);
    expect(String(err)).toMatch(/exit code 3.*x264 exploded/);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it.runIf(FFMPEG)('writes an H.264 MP4 whose frame count, size, fps and tags read back', async () => {
    const [F, H, W] = [9, 48, 64];
    const file = path.join(emptyDir('mp4'), 'clip.mp4');
    const values = pattern(F, H, W, 64);
    const r = await saveVideo({ data: values, shape: [F, H, W, 3] }, file, { fps: 16, metadata: { prompt: 'a red fox', seed: 42, model: 'toy' } });
    expect(r.bytes).toBe(fs.statSync(file).size);
    expect(r.encoder).toBe('ffmpeg');
    const info = parseMp4File(file);
    expect(info).toMatchObject({ frameCount: F, width: W, height: H, codec: 'avc1' });
    expect(info.fps).toBeCloseTo(16, 3);
    expect(info.tags.title).toBe('a red fox');
    expect(JSON.parse(info.tags.comment)).toMatchObject({ prompt: 'a red fox', seed: '42', model: 'toy' });
    if (FFPROBE) {
      const p = await probeMp4(file);
      expect([p.frameCount, p.width, p.height, p.codec]).toEqual([F, W, H, 'h264']);
      expect(p.fps).toBeCloseTo(16, 3);
    }
    expect(fs.readdirSync(path.dirname(file))).toEqual(['clip.mp4']);
  });

  it.runIf(FFMPEG)('pads odd sizes to even for yuv420p', async () => {
    const file = path.join(emptyDir('mp4-odd'), 'odd.mp4');
    await saveVideo({ data: pattern(2, 17, 33), shape: [2, 17, 33, 3] }, file, { fps: 8 });
    expect(parseMp4File(file)).toMatchObject({ frameCount: 2, width: 34, height: 18 });
  });

  it.runIf(FFMPEG)('an abort while ffmpeg runs leaves no file', async () => {
    const [F, H, W] = [8, 16, 16];
    const size = H * W * 3;
    const ctrl = new AbortController();
    class Tripwire extends Uint8Array {
      override subarray(begin?: number, end?: number): Uint8Array<ArrayBuffer> {
        if ((begin ?? 0) >= 4 * size) ctrl.abort();
        return super.subarray(begin, end);
      }
    }
    const d = emptyDir('mp4-abort');
    await expect(saveVideo({ data: new Tripwire(F * size), shape: [F, H, W, 3] }, path.join(d, 'x.mp4'), { fps: 8, signal: ctrl.signal })).rejects.toThrow(AbortError);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it('the MP4 parser reports truncated files', () => {
    const file = path.join(dir, 'trunc.mp4');
    const box = Buffer.alloc(16);
    box.writeUInt32BE(1000, 0);
    box.write('moov', 4, 'latin1');
    fs.writeFileSync(file, box);
    expect(() => parseMp4File(file)).toThrow(/truncated/);
  });
});
