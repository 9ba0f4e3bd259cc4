import * as zlib from 'node:zlib';
import { concatBytes } from './bytes.js';

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (ISO 3309, the one PNG and zlib use) of `bytes`, continuing from `crc`. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** A tEXt chunk: Latin-1 keyword (1–79 chars), NUL, text. Non-Latin-1 text goes in iTXt instead. */
function textChunk(keyword: string, text: string): Uint8Array {
  const key = keyword.replace(/[^\x20-\x7e]/g, '_').slice(0, 79) || 'Comment';
  if (/^[\x00-\xff]*$/.test(text)) {
    const data = new Uint8Array(key.length + 1 + text.length);
    for (let i = 0; i < key.length; i++) data[i] = key.charCodeAt(i);
    for (let i = 0; i < text.length; i++) data[key.length + 1 + i] = text.charCodeAt(i);
    return chunk('tEXt', data);
  }
  // iTXt: keyword NUL, compression flag 0, method 0, language tag "" NUL, translated keyword "" NUL, UTF-8 text.
  const utf8 = Buffer.from(text, 'utf-8');
  const data = new Uint8Array(key.length + 5 + utf8.length);
  for (let i = 0; i < key.length; i++) data[i] = key.charCodeAt(i);
  data.set(utf8, key.length + 5);
  return chunk('iTXt', data);
}

/** The PNG Paeth predictor of a byte from its left (a), upper (b) and upper-left (c) neighbours. */
export function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/**
 * Filters every scanline with the PNG filter (None, Sub, Up, Average, Paeth) whose output has the
 * smallest sum of absolute signed bytes (the heuristic of the PNG specification, section 12.8).
 * rgb: [H, W, 3] row-major → [H, 1 + 3W] with the filter type first in each row.
 */
function filterRows(rgb: Uint8Array, width: number, height: number): Uint8Array {
  const stride = width * 3;
  const out = new Uint8Array(height * (stride + 1));
  const candidate = new Uint8Array(stride);
  const best = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const row = rgb.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? rgb.subarray((y - 1) * stride, y * stride) : undefined;
    let bestType = 0;
    let bestCost = Infinity;
    for (let type = 0; type < 5; type++) {
      let cost = 0;
      for (let i = 0; i < stride; i++) {
        const a = i >= 3 ? row[i - 3] : 0;
        const b = prev ? prev[i] : 0;
        const c = prev && i >= 3 ? prev[i - 3] : 0;
        const pred = type === 0 ? 0 : type === 1 ? a : type === 2 ? b : type === 3 ? (a + b) >> 1 : paeth(a, b, c);
        const v = (row[i] - pred) & 0xff;
        candidate[i] = v;
        cost += v < 128 ? v : 256 - v;
      }
      if (cost < bestCost) {
        bestCost = cost;
        bestType = type;
        best.set(candidate);
      }
    }
    out[y * (stride + 1)] = bestType;
    out.set(best, y * (stride + 1) + 1);
  }
  return out;
}

/**
 * Encodes one RGB image as a PNG (8-bit truecolor, no interlace).
 * rgb: [height, width, 3] uint8 row-major. `text` entries become tEXt (or iTXt) chunks.
 */
export function encodePng(rgb: Uint8Array, width: number, height: number, text: Readonly<Record<string, string>> = {}): Uint8Array {
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour
  const idat = zlib.deflateSync(filterRows(rgb, width, height), { level: 9 });
  const parts = [
    SIGNATURE,
    chunk('IHDR', ihdr),
    ...Object.entries(text).map(([k, v]) => textChunk(k, v)),
    chunk('IDAT', new Uint8Array(idat.buffer, idat.byteOffset, idat.byteLength)),
    chunk('IEND', new Uint8Array(0)),
  ];
  return concatBytes(parts);
}
