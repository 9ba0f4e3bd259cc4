import * as zlib from 'node:zlib';
import { decode } from 'fast-png';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { crc32 } from './png-encoder.js';
import { VideoFormatError } from './video-error.js';

/** A decoded PNG: RGB pixels [height, width, 3] and its text chunks. */
export interface DecodedPng {
  width: number;
  height: number;
  rgb: Uint8Array;
  /** The alpha samples [height, width] (0–255) of a grey + alpha or RGBA image; absent for the other colour types. */
  alpha?: Uint8Array;
  text: Record<string, string>;
}

/** Samples per pixel of each PNG colour type: grey, RGB, palette index, grey + alpha, RGBA. */
const SAMPLES: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/**
 * The most pixels decodePng decodes by default: 4096×4096 (16.8 MP; at most 134 MB of image data, a
 * 201 MB RGB result, 805 MB as the pipeline's float32 image). An image is a first or last frame of the
 * video, whose size it sets: Wan's largest videos are 1280×720 (0.9 MP), and a generation at
 * 4096×4096 already needs more memory than a host has, so a larger PNG can only be a mistake or a
 * decompression bomb, refused from its header before anything is inflated.
 */
export const MAX_PNG_PIXELS = 4096 * 4096;

export interface DecodePngOptions {
  /** The most pixels (width × height) to decode; larger images are a VideoFormatError (default MAX_PNG_PIXELS). */
  maxPixels?: number;
}

/** The IHDR fields decodePng reads. */
interface PngHeader {
  width: number;
  height: number;
  depth: number;
  colour: number;
  interlace: number;
}

/** The chunks decodePng reads before fast-png decodes the file. */
interface PngChunks {
  header: PngHeader;
  hasPalette: boolean;
  idat: Uint8Array[];
  /** The iTXt chunks' text by keyword (fast-png reads tEXt only). */
  itxt: Record<string, string>;
}

/**
 * Walks the chunks from the signature to IEND, checking each one's bounds and CRC, and collects
 * those decodePng checks before anything is inflated. Every error is a VideoFormatError.
 */
function readChunks(bytes: Uint8Array, label: string): PngChunks {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length < 8 || sig.some((b, i) => bytes[i] !== b)) throw new VideoFormatError(`${label}: not a PNG file (bad signature)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let header: PngHeader | undefined;
  let hasPalette = false;
  const idat: Uint8Array[] = [];
  const itxt: Record<string, string> = {};
  for (let off = 8; ; ) {
    if (off + 12 > bytes.length) throw new VideoFormatError(`${label}: truncated at byte ${off}`);
    const len = dv.getUint32(off);
    const type = Buffer.from(bytes.subarray(off + 4, off + 8)).toString('latin1');
    if (off + 12 + len > bytes.length) throw new VideoFormatError(`${label}: chunk ${type} runs past the end of the file`);
    const data = bytes.subarray(off + 8, off + 8 + len);
    if (crc32(bytes.subarray(off + 4, off + 8 + len)) !== dv.getUint32(off + 8 + len)) throw new VideoFormatError(`${label}: CRC mismatch in chunk ${type}`);
    off += 12 + len;
    if (type === 'IHDR') {
      if (len !== 13) throw new VideoFormatError(`${label}: an IHDR chunk of ${len} bytes (expected 13)`);
      const at = data.byteOffset - bytes.byteOffset;
      header = { width: dv.getUint32(at), height: dv.getUint32(at + 4), depth: data[8], colour: data[9], interlace: data[12] };
    } else if (type === 'PLTE') {
      if (len % 3 !== 0 || len === 0) throw new VideoFormatError(`${label}: a PLTE chunk of ${len} bytes (expected a positive multiple of 3)`);
      hasPalette = true;
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'iTXt') {
      // keyword NUL, compression flag, method, language tag NUL, translated keyword NUL, UTF-8 text
      const nul = data.indexOf(0);
      const language = data.indexOf(0, nul + 3);
      const translated = data.indexOf(0, language + 1);
      if (nul > 0 && data[nul + 1] === 0 && language > 0 && translated > 0) itxt[Buffer.from(data.subarray(0, nul)).toString('latin1')] = Buffer.from(data.subarray(translated + 1)).toString('utf-8');
    } else if (type === 'IEND') {
      if (!header) throw new VideoFormatError(`${label}: no IHDR chunk`);
      return { header, hasPalette, idat, itxt };
    }
  }
}

/**
 * Checks the header of a PNG that decodePng decodes: a size of at most `maxPixels`, and a format
 * it converts to RGB.
 */
function checkHeader({ width, height, depth, colour, interlace }: PngHeader, maxPixels: number, label: string): void {
  if (width < 1 || height < 1 || width > 0x7fffffff || height > 0x7fffffff) throw new VideoFormatError(`${label}: a size of ${width}×${height} pixels in IHDR (each side must be 1 to 2^31 − 1)`);
  if (width * height > maxPixels) {
    const side = Math.sqrt(maxPixels);
    throw new VideoFormatError(
      `${label}: ${width}×${height} pixels is more than the ${maxPixels}${Number.isInteger(side) ? ` (${side}×${side})` : ''} that are decoded; an image is a frame of the video, so resize it to the video's size (e.g. 1280×720)`,
    );
  }
  if (SAMPLES[colour] === undefined || (depth !== 8 && (depth !== 16 || colour === 3)) || interlace !== 0) {
    throw new VideoFormatError(
      `${label}: supported are non-interlaced grey, RGB, grey + alpha and RGBA PNGs at 8 or 16 bits and 8-bit palette PNGs; this one has bit depth ${depth}, colour type ${colour}, interlace ${interlace} (re-save it as 8-bit RGB)`,
    );
  }
}

/**
 * Checks that the image data inflates to exactly the `expected` bytes the header declares,
 * inflating no more than that (fast-png inflates without a bound, so a small file could otherwise
 * inflate to gigabytes).
 */
function checkImageData(idat: readonly Uint8Array[], expected: number, header: PngHeader, label: string): void {
  let length: number;
  try {
    length = zlib.inflateSync(Buffer.concat(idat), { maxOutputLength: expected }).length;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') throw new VideoFormatError(`${label}: the image data (IDAT) inflates to more than the ${expected} bytes that its ${header.width}×${header.height} header declares`);
    throw new VideoFormatError(`${label}: the image data (IDAT) is not a valid zlib stream (${e instanceof Error ? e.message : String(e)}); the file is damaged`);
  }
  if (length !== expected) throw new VideoFormatError(`${label}: the image data (IDAT) inflates to ${length} bytes, expected ${expected} for ${header.width}×${header.height}`);
}

/**
 * Decodes non-interlaced PNGs to 8-bit RGB with fast-png: grey, RGB, grey + alpha and RGBA at 8 or
 * 16 bits (16-bit samples keep their high byte), and 8-bit palette images. `rgb` drops alpha, as
 * PIL's convert('RGB') does; grey + alpha and RGBA images also give their alpha samples as `alpha`. Checks every chunk's CRC, refuses images over `maxPixels` from the
 * header and inflates no more than the header declares. Text comes from tEXt and iTXt chunks.
 * Every error is a VideoFormatError whose message starts with `label` (the file, or the argument
 * and file).
 */
export function decodePng(bytes: Uint8Array, label = 'PNG', options: DecodePngOptions = {}): DecodedPng {
  const maxPixels = options.maxPixels ?? MAX_PNG_PIXELS;
  if (!(maxPixels >= 1)) throw new ConfigError(`maxPixels: got ${maxPixels}, expected a number ≥ 1 (Infinity for no bound)`);
  const { header, hasPalette, idat, itxt } = readChunks(bytes, label);
  checkHeader(header, maxPixels, label);
  const { width, height, colour } = header;
  const bytesPerSample = header.depth / 8;
  if (colour === 3 && !hasPalette) throw new VideoFormatError(`${label}: a palette image without a PLTE chunk`);
  checkImageData(idat, height * (width * SAMPLES[colour] * bytesPerSample + 1), header, label);
  let png: ReturnType<typeof decode>;
  try {
    png = decode(bytes);
  } catch (e) {
    throw new VideoFormatError(`${label}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const text = { ...png.text, ...itxt };
  // samples [height, width, channels]: uint8, or uint16 at 16 bits
  const { data, channels, palette } = png;
  if (colour === 2 && bytesPerSample === 1) return { width, height, rgb: new Uint8Array(data.buffer, data.byteOffset, data.length), text };
  const shift = 8 * (bytesPerSample - 1);
  const rgb = new Uint8Array(width * height * 3);
  const alpha = colour === 4 || colour === 6 ? new Uint8Array(width * height) : undefined;
  for (let i = 0; i < width * height; i++) {
    if (alpha) alpha[i] = data[i * channels + channels - 1] >> shift;
    if (colour === 3) {
      const k = data[i];
      const entry = palette?.[k];
      if (!entry) throw new VideoFormatError(`${label}: pixel ${i} uses palette entry ${k}, but the palette has ${palette?.length ?? 0}`);
      rgb[i * 3] = entry[0];
      rgb[i * 3 + 1] = entry[1];
      rgb[i * 3 + 2] = entry[2];
    } else if (colour === 0 || colour === 4) {
      rgb.fill(data[i * channels] >> shift, i * 3, i * 3 + 3);
    } else {
      rgb[i * 3] = data[i * channels] >> shift;
      rgb[i * 3 + 1] = data[i * channels + 1] >> shift;
      rgb[i * 3 + 2] = data[i * channels + 2] >> shift;
    }
  }
  return alpha ? { width, height, rgb, alpha, text } : { width, height, rgb, text };
}

/** A decoded PNG as an image tensor [H, W, 3], float32 in [0, 1]: the layout of the pipeline's frames and of its `image` option. */
export function pngToImage(png: DecodedPng): tf.Tensor3D {
  return tf.tidy(() => tf.div(tf.tensor3d(png.rgb, [png.height, png.width, 3], 'float32'), 255));
}
