// Hand-written: the npm GIF encoders (gifenc, omggif) write no comment extension, which carries the clip's metadata here.
import { VideoEncoderError } from './video-error.js';
import { concatBytes } from './bytes.js';

/** Bits per channel of the colour histogram and of the nearest-colour cache. */
const HIST_BITS = 6;
const HIST_SIZE = 1 << (3 * HIST_BITS);
const SHIFT = 8 - HIST_BITS;

function histKey(r: number, g: number, b: number): number {
  return ((r >> SHIFT) << (2 * HIST_BITS)) | ((g >> SHIFT) << HIST_BITS) | (b >> SHIFT);
}

/** A 256-entry colour table and the mapping of RGB pixels onto it. */
export class GifPalette {
  /** Exact colour → index, when the frames hold at most 256 colours (then the GIF is lossless). */
  private readonly exact: Map<number, number> | undefined;
  /** Nearest palette index for each histogram cell, filled on demand (-1 = not computed). */
  private readonly cache = new Int16Array(HIST_SIZE).fill(-1);

  /** colors: [256, 3] uint8. */
  constructor(readonly colors: Uint8Array, exact?: Map<number, number>) {
    this.exact = exact;
  }

  private nearest(r: number, g: number, b: number): number {
    let best = 0;
    let bestD = Infinity;
    const c = this.colors;
    for (let i = 0; i < 256; i++) {
      const dr = c[i * 3] - r;
      const dg = c[i * 3 + 1] - g;
      const db = c[i * 3 + 2] - b;
      const d = 2 * dr * dr + 4 * dg * dg + 3 * db * db;
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    }
    return best;
  }

  /** rgb: [N, 3] uint8 → indices [N]. */
  map(rgb: Uint8Array): Uint8Array {
    const n = rgb.length / 3;
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const r = rgb[i * 3];
      const g = rgb[i * 3 + 1];
      const b = rgb[i * 3 + 2];
      if (this.exact) {
        out[i] = this.exact.get((r << 16) | (g << 8) | b) ?? this.nearest(r, g, b);
        continue;
      }
      const k = histKey(r, g, b);
      let idx = this.cache[k];
      if (idx < 0) {
        // The cell's centre stands for every colour in it (error ≤ half a cell per channel).
        const half = 1 << (SHIFT - 1);
        idx = this.nearest((r & ~((1 << SHIFT) - 1)) | half, (g & ~((1 << SHIFT) - 1)) | half, (b & ~((1 << SHIFT) - 1)) | half);
        this.cache[k] = idx;
      }
      out[i] = idx;
    }
    return out;
  }
}

interface Box {
  cells: Int32Array;
  count: number;
  /** Channel (0 r, 1 g, 2 b) with the widest range, and that range in histogram cells. */
  axis: number;
  range: number;
}

/**
 * Collects the colours of every frame, then builds a 256-colour palette: the exact colours when
 * there are at most 256 of them, otherwise a median cut (Heckbert 1982) over a 6-bit-per-channel
 * histogram, each box represented by the mean of its pixels.
 */
export class GifPaletteBuilder {
  private readonly counts = new Float64Array(HIST_SIZE);
  private readonly sums = new Float64Array(HIST_SIZE * 3);
  private distinct: Map<number, number> | undefined = new Map();

  /** rgb: [N, 3] uint8. */
  add(rgb: Uint8Array): void {
    for (let i = 0; i < rgb.length; i += 3) {
      const r = rgb[i];
      const g = rgb[i + 1];
      const b = rgb[i + 2];
      const k = histKey(r, g, b);
      this.counts[k]++;
      this.sums[k * 3] += r;
      this.sums[k * 3 + 1] += g;
      this.sums[k * 3 + 2] += b;
      if (this.distinct) {
        const c = (r << 16) | (g << 8) | b;
        if (!this.distinct.has(c)) {
          if (this.distinct.size === 256) this.distinct = undefined;
          else this.distinct.set(c, this.distinct.size);
        }
      }
    }
  }

  build(): GifPalette {
    const colors = new Uint8Array(256 * 3);
    if (this.distinct) {
      for (const [c, i] of this.distinct) colors.set([c >> 16, (c >> 8) & 0xff, c & 0xff], i * 3);
      return new GifPalette(colors, this.distinct);
    }
    const occupied: number[] = [];
    for (let k = 0; k < HIST_SIZE; k++) if (this.counts[k] > 0) occupied.push(k);
    const boxes: Box[] = [this.box(Int32Array.from(occupied))];
    while (boxes.length < 256) {
      let pick = -1;
      let bestScore = 0;
      boxes.forEach((b, i) => {
        const score = b.range * Math.sqrt(b.count);
        if (b.cells.length > 1 && b.range > 0 && score > bestScore) {
          bestScore = score;
          pick = i;
        }
      });
      if (pick < 0) break;
      const [lo, hi] = this.split(boxes[pick]);
      boxes.splice(pick, 1, lo, hi);
    }
    boxes.forEach((b, i) => {
      const s = [0, 0, 0];
      for (const k of b.cells) for (let c = 0; c < 3; c++) s[c] += this.sums[k * 3 + c];
      for (let c = 0; c < 3; c++) colors[i * 3 + c] = Math.round(s[c] / b.count);
    });
    return new GifPalette(colors);
  }

  private channel(k: number, axis: number): number {
    return (k >> ((2 - axis) * HIST_BITS)) & ((1 << HIST_BITS) - 1);
  }

  private box(cells: Int32Array): Box {
    let count = 0;
    const lo = [Infinity, Infinity, Infinity];
    const hi = [-1, -1, -1];
    for (const k of cells) {
      count += this.counts[k];
      for (let a = 0; a < 3; a++) {
        const v = this.channel(k, a);
        if (v < lo[a]) lo[a] = v;
        if (v > hi[a]) hi[a] = v;
      }
    }
    let axis = 0;
    for (let a = 1; a < 3; a++) if (hi[a] - lo[a] > hi[axis] - lo[axis]) axis = a;
    return { cells, count, axis, range: hi[axis] - lo[axis] };
  }

  /** Splits a box at the pixel-weighted median of its widest channel. */
  private split(b: Box): [Box, Box] {
    const sorted = Int32Array.from(b.cells).sort((x, y) => this.channel(x, b.axis) - this.channel(y, b.axis));
    let acc = 0;
    let cut = 1;
    for (let i = 0; i < sorted.length - 1; i++) {
      acc += this.counts[sorted[i]];
      cut = i + 1;
      if (acc >= b.count / 2) break;
    }
    return [this.box(sorted.subarray(0, cut)), this.box(sorted.subarray(cut))];
  }
}

/** A growable byte buffer. */
class Bytes {
  private buf = new Uint8Array(1024);
  length = 0;

  push(...bytes: number[]): void {
    this.reserve(bytes.length);
    for (const b of bytes) this.buf[this.length++] = b;
  }

  append(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }

  u16(v: number): void {
    this.push(v & 0xff, (v >> 8) & 0xff);
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** Writes `data` as GIF sub-blocks (≤ 255 bytes each) followed by the block terminator. */
function subBlocks(out: Bytes, data: Uint8Array): void {
  for (let i = 0; i < data.length; i += 255) {
    const n = Math.min(255, data.length - i);
    out.push(n);
    out.append(data.subarray(i, i + n));
  }
  out.push(0);
}

/** Dictionary (prefix code, next index) → code as a flat table shared by every call; an entry counts only if its stamp is the current generation. */
let lzwTableStore: { table: Int16Array; stamp: Uint32Array } | undefined;
let lzwGeneration = 0;

function lzwTables(): { table: Int16Array; stamp: Uint32Array } {
  lzwTableStore ??= { table: new Int16Array(4096 << 8), stamp: new Uint32Array(4096 << 8) };
  return lzwTableStore;
}

/**
 * GIF's variable-length LZW (GIF89a specification, appendix F) of 8-bit indices with a 4096-entry
 * table, emitting a clear code whenever the table fills. Returns the packed code stream.
 */
export function lzwEncode(indices: Uint8Array, minCodeSize = 8): Uint8Array {
  const clear = 1 << minCodeSize;
  const eoi = clear + 1;
  const { table, stamp } = lzwTables();
  let generation = ++lzwGeneration;
  let next = eoi + 1;
  let codeSize = minCodeSize + 1;
  const out = new Bytes();
  let acc = 0;
  let bits = 0;
  const emit = (code: number) => {
    acc |= code << bits;
    bits += codeSize;
    while (bits >= 8) {
      out.push(acc & 0xff);
      acc >>>= 8;
      bits -= 8;
    }
  };
  emit(clear);
  if (indices.length === 0) {
    emit(eoi);
    if (bits > 0) out.push(acc & 0xff);
    return out.bytes();
  }
  let prefix = indices[0];
  for (let i = 1; i < indices.length; i++) {
    const k = indices[i];
    const key = (prefix << 8) | k;
    if (stamp[key] === generation) {
      prefix = table[key];
      continue;
    }
    emit(prefix);
    if (next === 4096) {
      emit(clear);
      next = eoi + 1;
      codeSize = minCodeSize + 1;
      generation = ++lzwGeneration;
    } else {
      if (next >= 1 << codeSize) codeSize++;
      table[key] = next++;
      stamp[key] = generation;
    }
    prefix = k;
  }
  emit(prefix);
  emit(eoi);
  if (bits > 0) out.push(acc & 0xff);
  return out.bytes();
}

export interface GifOptions {
  /** Frames per second; each frame's delay is a whole number of centiseconds, spread so the average matches. */
  fps: number;
  /** Times to repeat the animation; 0 (default) loops forever. */
  loop?: number;
  /** Text for a comment extension (non-ASCII characters are escaped as \uXXXX). */
  comment?: string;
}

/** Delay of frame `i` in centiseconds: consecutive differences of round(i·100/fps), at least 2 (browsers treat less as 10). */
export function gifFrameDelay(i: number, fps: number): number {
  return Math.max(2, Math.round(((i + 1) * 100) / fps) - Math.round((i * 100) / fps));
}

/**
 * Writes an animated GIF89a piece by piece: `header()`, then `frame(rgb, i)` for each frame, then
 * `trailer()`, so a long video streams to a file without being held whole.
 */
export class GifWriter {
  constructor(
    readonly width: number,
    readonly height: number,
    readonly palette: GifPalette,
    readonly options: GifOptions,
  ) {
    if (!(width >= 1 && width <= 65535 && height >= 1 && height <= 65535)) {
      throw new VideoEncoderError(`GIF frames must be 1–65535 pixels on each side; got ${width}×${height}`);
    }
    if (!(options.fps > 0)) throw new VideoEncoderError(`fps must be positive; got ${options.fps}`);
  }

  /** Header, logical screen, global colour table, looping and comment extensions. */
  header(): Uint8Array {
    const out = new Bytes();
    for (const ch of 'GIF89a') out.push(ch.charCodeAt(0));
    out.u16(this.width);
    out.u16(this.height);
    out.push(0xf7, 0, 0); // global colour table of 2^(7+1) entries, 8-bit colour resolution
    out.append(this.palette.colors);
    out.push(0x21, 0xff, 11);
    for (const ch of 'NETSCAPE2.0') out.push(ch.charCodeAt(0));
    out.push(3, 1);
    out.u16(this.options.loop ?? 0);
    out.push(0);
    if (this.options.comment) {
      const ascii = this.options.comment.replace(/[^\x20-\x7e\n]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
      out.push(0x21, 0xfe);
      subBlocks(out, Uint8Array.from(ascii, (c) => c.charCodeAt(0)));
    }
    return out.bytes();
  }

  /** One frame: graphic control extension (delay), image descriptor, LZW data. rgb: [H, W, 3] uint8. */
  frame(rgb: Uint8Array, index: number): Uint8Array {
    if (rgb.length !== this.width * this.height * 3) {
      throw new VideoEncoderError(`GIF frame ${index} has ${rgb.length} bytes, expected ${this.width}×${this.height}×3`);
    }
    const out = new Bytes();
    out.push(0x21, 0xf9, 4, 0x04); // disposal 1: leave the frame in place
    out.u16(gifFrameDelay(index, this.options.fps));
    out.push(0, 0);
    out.push(0x2c);
    out.u16(0);
    out.u16(0);
    out.u16(this.width);
    out.u16(this.height);
    out.push(0);
    out.push(8);
    subBlocks(out, lzwEncode(this.palette.map(rgb), 8));
    return out.bytes();
  }

  trailer(): Uint8Array {
    return Uint8Array.of(0x3b);
  }
}

/** Encodes frames ([H, W, 3] uint8 each) as one animated GIF in memory. */
export function encodeGif(frames: readonly Uint8Array[], width: number, height: number, options: GifOptions): Uint8Array {
  const builder = new GifPaletteBuilder();
  for (const f of frames) builder.add(f);
  const w = new GifWriter(width, height, builder.build(), options);
  const parts = [w.header(), ...frames.map((f, i) => w.frame(f, i)), w.trailer()];
  return concatBytes(parts);
}
