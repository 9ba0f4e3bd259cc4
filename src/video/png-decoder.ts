import * as zlib from 'node:zlib';
import * as tf from '@tensorflow/tfjs-core';
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
 * Decodes non-interlaced PNGs to 8-bit RGB: grey, RGB, grey + alpha and RGBA at 8 or 16 bits
 * (16-bit samples keep their high byte), and 8-bit palette images. Alpha is dropped, as PIL's
 * convert('RGB') does. Checks every chunk's CRC. Throws VideoFormatError on anything else.
 */
export function decodePng(bytes: Uint8Array, label = 'PNG'): DecodedPng {
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
    const type = String.fromCharCode(...bytes.subarray(off + 4, off + 8));
    if (off + 12 + len > bytes.length) throw new VideoFormatError(`${label}: chunk ${type} runs past the end of the file`);
    const data = bytes.subarray(off + 8, off + 8 + len);
    if (crc32(bytes.subarray(off + 4, off + 8 + len)) !== dv.getUint32(off + 8 + len)) throw new VideoFormatError(`${label}: CRC mismatch in chunk ${type}`);
    off += 12 + len;
    if (type === 'IHDR') {
      width = dv.getUint32(data.byteOffset - bytes.byteOffset);
      height = dv.getUint32(data.byteOffset - bytes.byteOffset + 4);
      const [depth, ct, , , interlace] = data.subarray(8, 13);
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
      text[String.fromCharCode(...data.subarray(0, nul))] = String.fromCharCode(...data.subarray(nul + 1));
    } else if (type === 'iTXt') {
      const nul = data.indexOf(0);
      let p = nul + 3;
      p = data.indexOf(0, p) + 1;
      p = data.indexOf(0, p) + 1;
      text[String.fromCharCode(...data.subarray(0, nul))] = Buffer.from(data.subarray(p)).toString('utf-8');
    } else if (type === 'IEND') {
      break;
    }
  }
  if (bytesPerPixel === 0) throw new VideoFormatError(`${label}: no IHDR chunk`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * bytesPerPixel;
  if (raw.length !== height * (stride + 1)) throw new VideoFormatError(`${label}: image data has ${raw.length} bytes, expected ${height * (stride + 1)}`);
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
