import * as zlib from 'node:zlib';
import { encode } from 'fast-png';
import { concatBytes } from './bytes.js';

/** CRC-32 (ISO 3309, the one PNG and zlib use) of `bytes`, continuing from `crc`. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  return zlib.crc32(bytes, crc);
}

/** A PNG chunk: length, type, data, CRC of type and data. */
function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** Text a tEXt chunk holds as it is: printable ISO-8859-1 and line feeds (PNG spec 11.3.4.3). */
const TEXT_LATIN1 = /^[\n\x20-\x7e\xa0-\xff]*$/;

/** An iTXt chunk: keyword NUL, compression flag 0, method 0, language tag "" NUL, translated keyword "" NUL, UTF-8 text. */
function itxtChunk(keyword: string, text: string): Uint8Array {
  const utf8 = Buffer.from(text, 'utf-8');
  const data = new Uint8Array(keyword.length + 5 + utf8.length);
  for (let i = 0; i < keyword.length; i++) data[i] = keyword.charCodeAt(i);
  data.set(utf8, keyword.length + 5);
  return chunk('iTXt', data);
}

/**
 * Encodes one RGB image as a PNG (8-bit truecolour, no interlace) with fast-png. rgb: [height,
 * width, 3] uint8 row-major. Each `text` entry becomes a tEXt chunk where its text is printable
 * ISO-8859-1, else an iTXt chunk (UTF-8, which fast-png does not write); keywords are printable
 * ASCII, 1 to 79 characters (others replaced by '_', an empty one is 'Comment').
 */
export function encodePng(rgb: Uint8Array, width: number, height: number, text: Readonly<Record<string, string>> = {}): Uint8Array {
  const latin1: Record<string, string> = {};
  const itxt: Uint8Array[] = [];
  for (const [k, v] of Object.entries(text)) {
    const keyword = k.replace(/[^\x20-\x7e]/g, '_').slice(0, 79) || 'Comment';
    if (TEXT_LATIN1.test(v)) latin1[keyword] = v;
    else itxt.push(itxtChunk(keyword, v));
  }
  const png = encode({ width, height, data: rgb, channels: 3, depth: 8, text: latin1 }, { zlib: { level: 9 } });
  // iTXt chunks go before IEND, the last 12 bytes.
  return itxt.length === 0 ? png : concatBytes([png.subarray(0, png.length - 12), ...itxt, png.subarray(png.length - 12)]);
}
