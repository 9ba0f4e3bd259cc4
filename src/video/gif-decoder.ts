import { concatBytes } from './bytes.js';
import { VideoFormatError } from './video-error.js';

/** One decoded GIF frame: the whole canvas after drawing it, and its delay. */
export interface GifFrame {
  /** [height, width, 3] uint8. */
  rgb: Uint8Array;
  delayCs: number;
}

export interface DecodedGif {
  width: number;
  height: number;
  frames: GifFrame[];
  /** NETSCAPE2.0 loop count (0 = forever), if present. */
  loop: number | undefined;
  comments: string[];
  /** Frames per second implied by the delays (frames / total seconds). */
  fps: number;
}

/** GIF's LZW (GIF89a appendix F) → palette indices. */
export function lzwDecode(data: Uint8Array, minCodeSize: number, expected: number): Uint8Array {
  const clear = 1 << minCodeSize;
  const eoi = clear + 1;
  const prefix = new Int16Array(4096);
  const suffix = new Uint8Array(4096);
  const length = new Uint16Array(4096);
  for (let i = 0; i < clear; i++) {
    suffix[i] = i;
    length[i] = 1;
  }
  const out = new Uint8Array(expected);
  let pos = 0;
  let codeSize = minCodeSize + 1;
  let next = eoi + 1;
  let prev = -1;
  let acc = 0;
  let bits = 0;
  let p = 0;
  const firstOf = (code: number) => {
    while (length[code] > 1) code = prefix[code];
    return suffix[code];
  };
  const write = (code: number) => {
    const n = length[code];
    if (pos + n > expected) throw new VideoFormatError(`GIF: image data decodes to more than the ${expected} pixels of the frame`);
    for (let i = n - 1; i >= 0; i--) {
      out[pos + i] = suffix[code];
      code = prefix[code];
    }
    pos += n;
  };
  for (;;) {
    while (bits < codeSize) {
      if (p >= data.length) return pos === expected ? out : fail();
      acc |= data[p++] << bits;
      bits += 8;
    }
    const code = acc & ((1 << codeSize) - 1);
    acc >>>= codeSize;
    bits -= codeSize;
    if (code === clear) {
      codeSize = minCodeSize + 1;
      next = eoi + 1;
      prev = -1;
      continue;
    }
    if (code === eoi) break;
    if (prev < 0) {
      if (code >= clear) throw new VideoFormatError(`GIF: code ${code} after a clear code`);
      write(code);
      prev = code;
      continue;
    }
    if (code > next) throw new VideoFormatError(`GIF: LZW code ${code} is beyond the table (${next})`);
    const first = code < next ? firstOf(code) : firstOf(prev);
    if (next < 4096) {
      prefix[next] = prev;
      suffix[next] = first;
      length[next] = length[prev] + 1;
      next++;
      if (next === 1 << codeSize && codeSize < 12) codeSize++;
    }
    write(code);
    prev = code;
  }
  return pos === expected ? out : fail();

  function fail(): never {
    throw new VideoFormatError(`GIF: image data decodes to ${pos} pixels, expected ${expected}`);
  }
}

/** Decodes an animated GIF fully (non-interlaced frames; transparency and disposal are ignored). */
export function decodeGif(bytes: Uint8Array): DecodedGif {
  const head = String.fromCharCode(...bytes.subarray(0, 6));
  if (head !== 'GIF89a' && head !== 'GIF87a') throw new VideoFormatError('not a GIF file (bad signature)');
  const u16 = (o: number) => bytes[o] | (bytes[o + 1] << 8);
  const need = (o: number) => {
    if (o > bytes.length) throw new VideoFormatError(`GIF: truncated at byte ${bytes.length}`);
  };
  need(13);
  const width = u16(6);
  const height = u16(8);
  const flags = bytes[10];
  let p = 13;
  let global: Uint8Array | undefined;
  if (flags & 0x80) {
    const n = 3 << ((flags & 7) + 1);
    need(p + n);
    global = bytes.subarray(p, p + n);
    p += n;
  }
  const readBlocks = (): Uint8Array => {
    const parts: Uint8Array[] = [];
    for (;;) {
      need(p + 1);
      const n = bytes[p++];
      if (n === 0) break;
      need(p + n);
      parts.push(bytes.subarray(p, p + n));
      p += n;
    }
    return concatBytes(parts);
  };
  const canvas = new Uint8Array(width * height * 3);
  const frames: GifFrame[] = [];
  const comments: string[] = [];
  let loop: number | undefined;
  let delay = 0;
  for (;;) {
    need(p + 1);
    const tag = bytes[p++];
    if (tag === 0x3b) break;
    if (tag === 0x21) {
      const label = bytes[p++];
      const data = readBlocks();
      if (label === 0xf9 && data.length >= 4) delay = data[1] | (data[2] << 8);
      else if (label === 0xfe) comments.push(String.fromCharCode(...data));
      else if (label === 0xff && String.fromCharCode(...data.subarray(0, 11)) === 'NETSCAPE2.0') loop = data[12] | (data[13] << 8);
      continue;
    }
    if (tag !== 0x2c) throw new VideoFormatError(`GIF: unexpected block 0x${tag.toString(16)} at byte ${p - 1}`);
    need(p + 9);
    const x = u16(p);
    const y = u16(p + 2);
    const w = u16(p + 4);
    const h = u16(p + 6);
    const f = bytes[p + 8];
    p += 9;
    if (f & 0x40) throw new VideoFormatError('GIF: interlaced frames are not supported');
    let table = global;
    if (f & 0x80) {
      const n = 3 << ((f & 7) + 1);
      need(p + n);
      table = bytes.subarray(p, p + n);
      p += n;
    }
    if (!table) throw new VideoFormatError('GIF: a frame has no colour table');
    if (x + w > width || y + h > height) throw new VideoFormatError(`GIF: frame ${frames.length} lies outside the ${width}×${height} canvas`);
    need(p + 1);
    const minCodeSize = bytes[p++];
    const indices = lzwDecode(readBlocks(), minCodeSize, w * h);
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        const i = indices[r * w + c];
        const o = ((y + r) * width + (x + c)) * 3;
        canvas[o] = table[i * 3];
        canvas[o + 1] = table[i * 3 + 1];
        canvas[o + 2] = table[i * 3 + 2];
      }
    }
    frames.push({ rgb: canvas.slice(), delayCs: delay });
  }
  const total = frames.reduce((s, fr) => s + fr.delayCs, 0);
  return { width, height, frames, loop, comments, fps: total > 0 ? (frames.length * 100) / total : 0 };
}
