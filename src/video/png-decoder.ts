import * as zlib from 'node:zlib';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { crc32, paeth } from './png-encoder.js';
import { VideoFormatError } from './video-error.js';

/** A decoded PNG: RGB pixels [height, width, 3] and its text chunks. */
export interface DecodedPng {
  width: number;
  height: number;
  rgb: Uint8Array;
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

/** Bytes as ISO-8859-1 text (a PNG tEXt chunk), at any length. */
function latin1(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

/**
 * Decodes non-interlaced PNGs to 8-bit RGB: grey, RGB, grey + alpha and RGBA at 8 or 16 bits
 * (16-bit samples keep their high byte), and 8-bit palette images. Alpha is dropped, as PIL's
 * convert('RGB') does. Checks every chunk's CRC, refuses images over `maxPixels` from the header and
 * inflates no more than the header declares. Every error is a VideoFormatError whose message starts
 * with `label` (the file, or the argument and file).
 */
export function decodePng(bytes: Uint8Array, label = 'PNG', options: DecodePngOptions = {}): DecodedPng {
  const maxPixels = options.maxPixels ?? MAX_PNG_PIXELS;
  if (!(maxPixels >= 1)) throw new ConfigError(`maxPixels: got ${maxPixels}, expected a number ≥ 1 (Infinity for no bound)`);
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length < 8 || sig.some((b, i) => bytes[i] !== b)) throw new VideoFormatError(`${label}: not a PNG file (bad signature)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 8;
  let width = 0;
  let height = 0;
  let bytesPerPixel = 0;
  let colour = 0;
  let bytesPerSample = 1;
  let palette: Uint8Array | undefined;
  const idat: Uint8Array[] = [];
  const text: Record<string, string> = {};
  for (;;) {
    if (off + 12 > bytes.length) throw new VideoFormatError(`${label}: truncated at byte ${off}`);
    const len = dv.getUint32(off);
    const type = latin1(bytes.subarray(off + 4, off + 8));
    if (off + 12 + len > bytes.length) throw new VideoFormatError(`${label}: chunk ${type} runs past the end of the file`);
    const data = bytes.subarray(off + 8, off + 8 + len);
    if (crc32(bytes.subarray(off + 4, off + 8 + len)) !== dv.getUint32(off + 8 + len)) throw new VideoFormatError(`${label}: CRC mismatch in chunk ${type}`);
    off += 12 + len;
    if (type === 'IHDR') {
      if (len !== 13) throw new VideoFormatError(`${label}: an IHDR chunk of ${len} bytes (expected 13)`);
      width = dv.getUint32(data.byteOffset - bytes.byteOffset);
      height = dv.getUint32(data.byteOffset - bytes.byteOffset + 4);
      if (width < 1 || height < 1 || width > 0x7fffffff || height > 0x7fffffff) throw new VideoFormatError(`${label}: a size of ${width}×${height} pixels in IHDR (each side must be 1 to 2^31 − 1)`);
      if (width * height > maxPixels) {
        const side = Math.sqrt(maxPixels);
        throw new VideoFormatError(
          `${label}: ${width}×${height} pixels is more than the ${maxPixels}${Number.isInteger(side) ? ` (${side}×${side})` : ''} that are decoded; an image is a frame of the video, so resize it to the video's size (e.g. 1280×720)`,
        );
      }
      const [depth, ct, , , interlace] = data.subarray(8);
      colour = ct;
      if (SAMPLES[colour] === undefined || (depth !== 8 && (depth !== 16 || colour === 3)) || interlace !== 0) {
        throw new VideoFormatError(
          `${label}: supported are non-interlaced grey, RGB, grey + alpha and RGBA PNGs at 8 or 16 bits and 8-bit palette PNGs; this one has bit depth ${depth}, colour type ${colour}, interlace ${interlace} (re-save it as 8-bit RGB)`,
        );
      }
      bytesPerSample = depth / 8;
      bytesPerPixel = SAMPLES[colour] * bytesPerSample;
    } else if (type === 'PLTE') {
      if (data.length % 3 !== 0 || data.length === 0) throw new VideoFormatError(`${label}: a PLTE chunk of ${data.length} bytes (expected a positive multiple of 3)`);
      palette = data;
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'tEXt') {
      const nul = data.indexOf(0);
      if (nul > 0) text[latin1(data.subarray(0, nul))] = latin1(data.subarray(nul + 1));
    } else if (type === 'iTXt') {
      const nul = data.indexOf(0);
      let p = nul + 3;
      p = data.indexOf(0, p) + 1;
      p = data.indexOf(0, p) + 1;
      if (nul > 0) text[latin1(data.subarray(0, nul))] = Buffer.from(data.subarray(p)).toString('utf-8');
    } else if (type === 'IEND') {
      break;
    }
  }
  if (bytesPerPixel === 0) throw new VideoFormatError(`${label}: no IHDR chunk`);
  const stride = width * bytesPerPixel;
  const expected = height * (stride + 1);
  let raw: Buffer;
  try {
    raw = zlib.inflateSync(Buffer.concat(idat), { maxOutputLength: expected });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') throw new VideoFormatError(`${label}: the image data (IDAT) inflates to more than the ${expected} bytes that its ${width}×${height} header declares`);
    throw new VideoFormatError(`${label}: the image data (IDAT) is not a valid zlib stream (${e instanceof Error ? e.message : String(e)}); the file is damaged`);
  }
  if (raw.length !== expected) throw new VideoFormatError(`${label}: the image data (IDAT) inflates to ${raw.length} bytes, expected ${expected} for ${width}×${height}`);
  const pix = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const type = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = pix.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? pix.subarray((y - 1) * stride, y * stride) : undefined;
    for (let i = 0; i < stride; i++) {
      const a = i >= bytesPerPixel ? row[i - bytesPerPixel] : 0;
      const b = prev ? prev[i] : 0;
      const c = prev && i >= bytesPerPixel ? prev[i - bytesPerPixel] : 0;
      const pred = type === 0 ? 0 : type === 1 ? a : type === 2 ? b : type === 3 ? (a + b) >> 1 : type === 4 ? paeth(a, b, c) : -1;
      if (pred < 0) throw new VideoFormatError(`${label}: unknown filter type ${type} in row ${y}`);
      row[i] = (src[i] + pred) & 0xff;
    }
  }
  if (colour === 2 && bytesPerSample === 1) return { width, height, rgb: pix, text };
  if (colour === 3 && !palette) throw new VideoFormatError(`${label}: a palette image without a PLTE chunk`);
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    // the high byte of each sample (16-bit PNGs are big-endian)
    const at = (sample: number) => pix[i * bytesPerPixel + sample * bytesPerSample];
    if (colour === 3) {
      const k = at(0);
      if (3 * k + 2 >= palette!.length) throw new VideoFormatError(`${label}: pixel ${i} uses palette entry ${k}, but the palette has ${palette!.length / 3}`);
      rgb.set(palette!.subarray(3 * k, 3 * k + 3), i * 3);
    } else if (colour === 0 || colour === 4) {
      rgb.fill(at(0), i * 3, i * 3 + 3);
    } else {
      rgb[i * 3] = at(0);
      rgb[i * 3 + 1] = at(1);
      rgb[i * 3 + 2] = at(2);
    }
  }
  return { width, height, rgb, text };
}

/** A decoded PNG as an image tensor [H, W, 3], float32 in [0, 1]: the layout of the pipeline's frames and of its `image` option. */
export function pngToImage(png: DecodedPng): tf.Tensor3D {
  return tf.tidy(() => tf.div(tf.tensor3d(png.rgb, [png.height, png.width, 3], 'float32'), 255));
}
