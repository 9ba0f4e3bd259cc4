import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { AbortError, ConfigError, ShapeError } from '../errors.js';
import { encodeMp4, FFMPEG_MISSING, findFfmpeg } from './ffmpeg.js';
import { GifPaletteBuilder, GifWriter } from './gif-encoder.js';
import { Mp4PcmWriter, type Mp4Tags } from './mp4-writer.js';
import { betweenFrames, outputError, removeQuietly, replaceFolder, syncFile, syncFolder, tempNames, tidyOutputFolder, writeAll, writeFileDurably, type TempNames } from './output-file.js';
import { encodePng } from './png-encoder.js';
import { contentSha256, metadataJson, sidecarPath, type Provenance, type ProvenanceInput, type ProvenanceSidecar } from './provenance.js';
import { promptBlocklist, runSafetyChecker, type SafetyChecker } from './safety.js';
import { VideoEncoderError } from './video-error.js';
import { blendLayers, watermarkLayers, type Watermark } from './watermark.js';

export type VideoFormat = 'mp4' | 'gif' | 'png';

export const VIDEO_FORMATS: readonly VideoFormat[] = ['mp4', 'gif', 'png'];

/**
 * Who writes an MP4: 'ffmpeg' (H.264 by x264, compressed), 'builtin' (the pure-TypeScript writer:
 * uncompressed H.264 I_PCM, about 1.5 bytes a pixel a frame) or 'auto' (ffmpeg when one is found,
 * else builtin).
 */
export type Mp4Encoder = 'auto' | 'ffmpeg' | 'builtin';

export const MP4_ENCODERS: readonly Mp4Encoder[] = ['auto', 'ffmpeg', 'builtin'];

/**
 * Frames on the host: [F, H, W, 3] (or [1, F, H, W, 3]) RGB, row-major. Uint8 data is 0–255,
 * float data is in [0, 1] (clamped, then scaled to 0–255 with rounding).
 */
export interface RawVideo {
  data: Uint8Array | Uint8ClampedArray | Float32Array;
  shape: readonly number[];
}

/** A tf tensor [F, H, W, 3] or [1, F, H, W, 3] (float32 in [0, 1], or int32 0–255), or host frames. */
export type VideoFrames = tf.Tensor | RawVideo;

/** What is recorded in the file: the prompt, seed, model, library version … (strings and numbers). */
export type VideoMetadata = Readonly<Record<string, string | number | boolean | undefined>>;

export interface SaveVideoOptions {
  fps: number;
  /** Default: from the file extension (.mp4, .gif, .png), else mp4. */
  format?: VideoFormat;
  metadata?: VideoMetadata;
  signal?: AbortSignal;
  /** MP4 encoder (default 'auto': ffmpeg when found, else the built-in writer). */
  encoder?: Mp4Encoder;
  /** ffmpeg binary for MP4 (default: WAN_FFMPEG, PATH, then @ffmpeg-installer/ffmpeg); implies ffmpeg under 'auto'. */
  ffmpegPath?: string;
  /** x264 CRF for MP4 through ffmpeg (default 18). */
  crf?: number;
  /**
   * The clip's provenance: completed with the sizes written and the time, embedded in the file's
   * metadata JSON (field `provenance`) and written beside it as `<file>.json` with the content hash.
   */
  provenance?: ProvenanceInput;
  /**
   * Looks at the frames and the prompt (provenance's, else metadata's) before anything is written; a
   * flagged clip is a SafetyError and nothing is written. Default: promptBlocklist(); false: none.
   */
  safetyChecker?: SafetyChecker | false;
  /**
   * The hook for an upscaler or frame-rate converter of your own: gets the frames as a float32
   * tensor [F, H, W, 3] in [0, 1] and returns the frames to write, [F', H', W', 3] (saveVideo
   * disposes both; set `fps` to the rate of what it returns). Runs first, before the watermark.
   */
  transformFrames?: (frames: tf.Tensor4D) => tf.Tensor4D | Promise<tf.Tensor4D>;
  /** A logo blended into every frame (any format, no ffmpeg needed), before the safety checker and the writing. */
  watermark?: Watermark;
  /** An .srt file whose subtitles ffmpeg burns into the frames (MP4 through ffmpeg only). */
  subtitles?: string;
  /** An audio file (any format ffmpeg reads) added as an AAC track cut to the clip's length (MP4 through ffmpeg only). */
  audio?: string;
}

export interface SavedVideo {
  path: string;
  format: VideoFormat;
  frameCount: number;
  width: number;
  height: number;
  fps: number;
  /** Bytes written (for PNG, all frames together). */
  bytes: number;
  /** What wrote the file: ffmpeg (MP4 only) or this library's own encoder. */
  encoder: 'ffmpeg' | 'builtin';
  /** With options.provenance: the sidecar written beside the clip and what it holds. */
  sidecar?: { path: string; content: ProvenanceSidecar };
}

/** Random access to frames as rgb24 [H, W, 3] uint8. */
interface FrameSource {
  count: number;
  height: number;
  width: number;
  frame(i: number): Promise<Uint8Array>;
}

function toUint8(src: ArrayLike<number>, float: boolean): Uint8Array {
  if (!float && src instanceof Uint8Array) return src;
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = float ? src[i] * 255 : src[i];
    // NaN maps to 0.
    out[i] = v > 0 ? (v < 255 ? Math.round(v) : 255) : 0;
  }
  return out;
}

function frameShape(shape: readonly number[]): [number, number, number] {
  const s = shape.length === 5 && shape[0] === 1 ? shape.slice(1) : shape;
  if (s.length !== 4 || s[3] !== 3 || s.some((d) => !Number.isInteger(d) || d < 1)) {
    const hint = shape.length === 5 && shape[0] !== 1 ? ' (save one video of a batch at a time: frames[b])' : shape.length === 5 && shape[1] === 3 ? ' (channels-first [B, 3, F, H, W]? transpose to [B, F, H, W, 3])' : '';
    throw new ShapeError('frames', `[${shape.join(', ')}]`, `[F, H, W, 3] or [1, F, H, W, 3]${hint}`);
  }
  return [s[0], s[1], s[2]];
}

/** A change to each frame [1, H, W, 3] (float32 in [0, 1]) as it is read: the watermark's blend. */
type FrameEdit = (frame: tf.Tensor4D) => tf.Tensor4D;

function frameSource(frames: VideoFrames, edit?: FrameEdit): FrameSource {
  const [count, height, width] = frameShape(frames.shape);
  const size = height * width * 3;
  if (frames instanceof tf.Tensor) {
    const x = frames;
    const float = x.dtype === 'float32';
    if (!float && x.dtype !== 'int32') throw new ShapeError('frames', `a ${x.dtype} tensor`, 'a float32 tensor in [0, 1] or an int32 tensor in 0–255');
    return {
      count,
      height,
      width,
      async frame(i) {
        const one = tf.tidy(() => {
          const f = tf.slice(tf.reshape(x, [count, height, width, 3]), [i, 0, 0, 0], [1, height, width, 3]);
          return edit ? edit((float ? f : tf.div(tf.cast(f, 'float32'), 255)) as tf.Tensor4D) : f;
        });
        try {
          return toUint8(await one.data(), float || edit !== undefined);
        } finally {
          one.dispose();
        }
      },
    };
  }
  const { data } = frames;
  if (data.length !== count * size) throw new ShapeError('frames.data', `${data.length} values`, `${count * size} (the product of shape [${frames.shape.join(', ')}])`);
  const float = data instanceof Float32Array;
  return {
    count,
    height,
    width,
    async frame(i) {
      const own = data.subarray(i * size, (i + 1) * size);
      if (!edit) return toUint8(own, float);
      const one = tf.tidy(() => {
        const f = tf.tensor4d(asTensorData(own), [1, height, width, 3], 'float32');
        return edit(float ? f : tf.div<tf.Tensor4D>(f, 255));
      });
      try {
        return toUint8(await one.data(), true);
      } finally {
        one.dispose();
      }
    },
  };
}

/** Host frames as a typed array tf takes (a Uint8ClampedArray viewed as a Uint8Array). */
function asTensorData(a: RawVideo['data']): Uint8Array | Float32Array {
  return a instanceof Uint8ClampedArray ? new Uint8Array(a.buffer, a.byteOffset, a.length) : a;
}

/** The frames as a new float32 tensor [F, H, W, 3] in [0, 1] (int32 and uint8 frames divided by 255). */
function videoTensor(frames: VideoFrames): tf.Tensor4D {
  const [count, height, width] = frameShape(frames.shape);
  if (frames instanceof tf.Tensor) {
    if (frames.dtype !== 'float32' && frames.dtype !== 'int32') throw new ShapeError('frames', `a ${frames.dtype} tensor`, 'a float32 tensor in [0, 1] or an int32 tensor in 0–255');
    const x = frames;
    return tf.tidy(() => {
      const f = tf.reshape(x, [count, height, width, 3]);
      return (x.dtype === 'float32' ? tf.clone(f) : tf.div(tf.cast(f, 'float32'), 255)) as tf.Tensor4D;
    });
  }
  const size = count * height * width * 3;
  if (frames.data.length !== size) throw new ShapeError('frames.data', `${frames.data.length} values`, `${size} (the product of shape [${frames.shape.join(', ')}])`);
  const { data } = frames;
  return tf.tidy(() => {
    const f = tf.tensor4d(asTensorData(data), [count, height, width, 3], 'float32');
    return data instanceof Float32Array ? f : tf.div<tf.Tensor4D>(f, 255);
  });
}

/** The extra inputs of an MP4 through ffmpeg, each an existing file; a ConfigError naming the option otherwise. */
function ffmpegInputs(o: SaveVideoOptions): Array<['subtitles' | 'audio', string]> {
  const inputs: Array<['subtitles' | 'audio', string]> = [];
  for (const key of ['subtitles', 'audio'] as const) {
    const file = o[key];
    if (file === undefined) continue;
    if (typeof file !== 'string' || !fs.existsSync(file) || !fs.statSync(file).isFile()) throw new ConfigError(`${key}: ${String(file)} is not a file`);
    inputs.push([key, file]);
  }
  return inputs;
}

/** The format a file name implies (.mp4, .gif, .png), if any. */
export function formatFromPath(file: string): VideoFormat | undefined {
  const ext = path.extname(file).toLowerCase().slice(1);
  return (VIDEO_FORMATS as readonly string[]).includes(ext) ? (ext as VideoFormat) : undefined;
}

function metadataStrings(m: VideoMetadata | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m ?? {})) if (v !== undefined) out[k] = String(v);
  return out;
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError('video writing was aborted');
}

/**
 * Creates `file`, hands `write` a `put` that appends bytes (and the descriptor), flushes it to the disk
 * and closes it; returns the bytes put.
 */
async function writeCounted(file: string, write: (put: (b: Uint8Array) => void, fd: number) => Promise<void>): Promise<number> {
  const fd = fs.openSync(file, 'wx');
  let bytes = 0;
  try {
    await write((b) => {
      writeAll(fd, b);
      bytes += b.length;
    }, fd);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return bytes;
}

async function writeGif(tmp: string, src: FrameSource, o: SaveVideoOptions, comment: string | undefined): Promise<number> {
  const builder = new GifPaletteBuilder();
  for (let i = 0; i < src.count; i++) {
    await betweenFrames(o.signal);
    builder.add(await src.frame(i));
  }
  const writer = new GifWriter(src.width, src.height, builder.build(), { fps: o.fps, comment });
  return writeCounted(tmp, async (put) => {
    put(writer.header());
    for (let i = 0; i < src.count; i++) {
      await betweenFrames(o.signal);
      put(writer.frame(await src.frame(i), i));
    }
    put(writer.trailer());
  });
}

function pngText(meta: Record<string, string>, comment: string | undefined): Record<string, string> {
  const text: Record<string, string> = {};
  if (meta.prompt) text.Description = meta.prompt;
  if (meta.software) text.Software = meta.software;
  if (comment !== undefined) text.Comment = comment;
  return text;
}

/** An MP4 at `tmp` through Mp4PcmWriter, one frame in memory at a time; returns the bytes written. */
async function writeBuiltinMp4(tmp: string, src: FrameSource, o: SaveVideoOptions, tags: Mp4Tags): Promise<number> {
  const writer = new Mp4PcmWriter(src.width, src.height, { fps: o.fps, tags });
  return writeCounted(tmp, async (put, fd) => {
    put(writer.header());
    for (let i = 0; i < src.count; i++) {
      await betweenFrames(o.signal);
      put(writer.frame(await src.frame(i)));
    }
    const { moov, mdatHeader, mdatHeaderOffset } = writer.finish();
    put(moov);
    writeAll(fd, mdatHeader, mdatHeaderOffset);
  });
}

/** The ffmpeg binary that writes the MP4 under `o.encoder`, or undefined for the built-in writer. */
async function ffmpegForMp4(o: SaveVideoOptions): Promise<string | undefined> {
  const encoder = o.encoder ?? 'auto';
  if (!MP4_ENCODERS.includes(encoder)) throw new ConfigError(`encoder: got '${encoder}', expected one of ${MP4_ENCODERS.join(', ')}`);
  if (encoder === 'builtin') return undefined;
  const bin = o.ffmpegPath ?? (await findFfmpeg());
  if (!bin && encoder === 'ffmpeg') throw new VideoEncoderError(FFMPEG_MISSING);
  return bin;
}

/** PNG frames into the new folder `tmp` as frame-00000.png, …, flushed to the disk; returns the bytes written. */
async function writePngFolder(tmp: string, src: FrameSource, o: SaveVideoOptions, text: Record<string, string>): Promise<number> {
  fs.mkdirSync(tmp);
  const digits = Math.max(5, String(src.count - 1).length);
  let bytes = 0;
  for (let i = 0; i < src.count; i++) {
    await betweenFrames(o.signal);
    const png = encodePng(await src.frame(i), src.width, src.height, { ...text, 'Frame rate': String(o.fps) });
    writeFileDurably(path.join(tmp, `frame-${String(i).padStart(digits, '0')}.png`), png);
    bytes += png.length;
  }
  syncFolder(tmp);
  return bytes;
}

/** Puts the finished folder `names.tmp` in place of `target`: absent, or a folder of our frames. */
function installFolder(names: TempNames, target: string): void {
  if (!fs.existsSync(target)) {
    fs.renameSync(names.tmp, target);
    return;
  }
  if (!fs.statSync(target).isDirectory()) throw new VideoEncoderError(`${target} exists and is not a folder; PNG frames are written into a folder`);
  const foreign = fs.readdirSync(target).filter((f) => !/^frame-\d+\.png$/.test(f));
  if (foreign.length) throw new VideoEncoderError(`${target} exists and holds other files (${foreign.slice(0, 3).join(', ')}); choose an empty or new folder for PNG frames`);
  replaceFolder(names, target);
}

/**
 * Writes frames as a video: 'mp4' (H.264 through ffmpeg, or when there is none the built-in writer
 * of uncompressed H.264; see `encoder`), 'gif' (pure JS, 256-colour global palette) or 'png' (one
 * PNG per frame in a folder `file`, or a single file when there is one frame and `file` ends in
 * .png). Metadata (prompt, seed, model, library version …) goes into the container: MP4 title/comment
 * tags, a GIF comment, PNG text chunks; the comment is JSON of the metadata and, with
 * `options.provenance`, the provenance record, which is also written beside the clip as `<file>.json`
 * (ProvenanceSidecar) with the clip's content hash, renamed into place right after the clip. The
 * safety checker (default promptBlocklist()) runs before anything is written. Post-processing, in
 * this order: `transformFrames` (a user's upscaler or frame-rate converter, on the whole clip), the
 * `watermark` blended into each frame as it is read, and for an MP4 through ffmpeg `subtitles`
 * burned in and an `audio` track.
 *
 * The output is written under a short temporary name beside `file` (`.wan-tfjs-<8 hex>.tmp`), flushed
 * to the disk and renamed into place when complete, so a name up to the file system's limit (255
 * bytes) works and a reader never sees a partial file. The writer yields to the event loop between
 * frames, so an abort from a timer or a SIGINT handler lands while it writes. After an error or an
 * abort nothing is left behind; a write that was killed leaves its temporary file, which the next
 * write into that folder removes once it is 15 minutes old (STALE_TEMP_MS). A PNG folder replaces an
 * earlier one through a journal (old folder renamed aside, new one in, old one removed), and the next
 * write into that folder completes a replacement that a kill interrupted, so neither folder is lost.
 * The file system's refusals (EACCES, EROFS, ENOSPC, EISDIR, ENAMETOOLONG …) are OutputFileErrors
 * that name `file` and say what to do.
 */
export async function saveVideo(frames: VideoFrames, file: string, options: SaveVideoOptions): Promise<SavedVideo> {
  const implied = formatFromPath(file);
  const format = options.format ?? implied ?? 'mp4';
  if (!VIDEO_FORMATS.includes(format)) throw new ConfigError(`format: got '${format}', expected one of ${VIDEO_FORMATS.join(', ')}`);
  if (implied && implied !== format) throw new ConfigError(`format '${format}' does not match the file name ${file} (a .${implied} file); change one of them`);
  if (!(Number.isFinite(options.fps) && options.fps > 0)) throw new ConfigError(`fps: got ${options.fps}, expected a positive number`);
  const inputs = ffmpegInputs(options);
  if (inputs.length && format !== 'mp4') throw new ConfigError(`${inputs[0][0]}: needs MP4 output through ffmpeg; this clip is written as ${format}`);
  const owned: tf.Tensor[] = [];
  try {
    let input = frames;
    if (options.transformFrames) {
      const x = videoTensor(frames);
      owned.push(x);
      checkAbort(options.signal);
      const y = await options.transformFrames(x);
      if (!(y instanceof tf.Tensor)) throw new ConfigError(`transformFrames: returned ${typeof y}, expected a tensor [F, H, W, 3] in [0, 1]`);
      if (y !== x) owned.push(y);
      input = y;
    }
    let edit: FrameEdit | undefined;
    if (options.watermark) {
      const [, height, width] = frameShape(input.shape);
      const layers = watermarkLayers(options.watermark, height, width);
      owned.push(layers.colour, layers.weight);
      edit = (f) => blendLayers(f, layers);
    }
    return await writeVideo(frameSource(input, edit), file, format, implied, inputs, options);
  } finally {
    for (const t of owned) t.dispose();
  }
}

async function writeVideo(src: FrameSource, file: string, format: VideoFormat, implied: VideoFormat | undefined, inputs: Array<['subtitles' | 'audio', string]>, options: SaveVideoOptions): Promise<SavedVideo> {
  checkAbort(options.signal);
  const meta = metadataStrings(options.metadata);
  const prompt = options.provenance?.prompt ?? meta.prompt;
  if (options.safetyChecker !== false) await runSafetyChecker(options.safetyChecker ?? promptBlocklist(), { frames: src, prompt });
  checkAbort(options.signal);
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const record: Provenance | undefined = options.provenance && { ...options.provenance, numFrames: src.count, width: src.width, height: src.height, fps: options.fps, createdAt: new Date().toISOString() };
  const comment = record || Object.keys(meta).length ? metadataJson(meta, record) : undefined;
  const singlePng = format === 'png' && src.count === 1 && implied === 'png';
  const ffmpeg = format === 'mp4' ? await ffmpegForMp4(options) : undefined;
  if (inputs.length && !ffmpeg) {
    const why = (options.encoder ?? 'auto') === 'builtin' ? 'encoder is "builtin"' : 'no ffmpeg was found (install it, set WAN_FFMPEG or ffmpegPath)';
    throw new ConfigError(`${inputs[0][0]}: needs ffmpeg to write the MP4, and ${why}`);
  }
  const names = tempNames(dir);
  // The subtitles go to ffmpeg's filter as a copy under a plain temporary name in `dir`.
  const subtitlesTmp = options.subtitles !== undefined ? tempNames(dir).tmp : undefined;
  const sidecarTmp = tempNames(dir).tmp;
  let sidecar: SavedVideo['sidecar'];
  let bytes = 0;
  try {
    fs.mkdirSync(dir, { recursive: true });
    tidyOutputFolder(dir);
    if (format === 'mp4') {
      const tags: Mp4Tags = {};
      if (prompt) tags.title = prompt;
      if (comment !== undefined) tags.comment = comment;
      if (ffmpeg) {
        // Created here, so the file system's refusals are ours to report; ffmpeg overwrites it (-y).
        fs.closeSync(fs.openSync(names.tmp, 'wx'));
        if (subtitlesTmp !== undefined && options.subtitles !== undefined) fs.copyFileSync(options.subtitles, subtitlesTmp, fs.constants.COPYFILE_EXCL);
        await encodeMp4(names.tmp, src.count, (i) => src.frame(i), {
          width: src.width,
          height: src.height,
          fps: options.fps,
          metadata: { ...tags },
          signal: options.signal,
          ffmpegPath: ffmpeg,
          crf: options.crf,
          audio: options.audio,
          subtitles: subtitlesTmp && path.basename(subtitlesTmp),
          cwd: subtitlesTmp && dir,
        });
        syncFile(names.tmp);
        bytes = fs.statSync(names.tmp).size;
      } else {
        bytes = await writeBuiltinMp4(names.tmp, src, options, tags);
      }
    } else if (format === 'gif') {
      bytes = await writeGif(names.tmp, src, options, comment);
    } else if (singlePng) {
      const png = encodePng(await src.frame(0), src.width, src.height, pngText(meta, comment));
      writeFileDurably(names.tmp, png);
      bytes = png.length;
    } else {
      bytes = await writePngFolder(names.tmp, src, options, pngText(meta, comment));
    }
    if (record) {
      sidecar = { path: sidecarPath(target), content: { format, sha256: contentSha256(names.tmp), provenance: record } };
      writeFileDurably(sidecarTmp, new TextEncoder().encode(`${JSON.stringify(sidecar.content, null, 2)}\n`));
    }
    checkAbort(options.signal);
    if (format === 'png' && !singlePng) installFolder(names, target);
    else fs.renameSync(names.tmp, target);
    if (sidecar) {
      try {
        fs.renameSync(sidecarTmp, sidecar.path);
      } catch (e) {
        // A clip without its sidecar is not left behind.
        removeQuietly(target);
        throw e;
      }
    }
    syncFolder(dir);
  } catch (e) {
    removeQuietly(names.tmp);
    removeQuietly(sidecarTmp);
    throw outputError(e, target);
  } finally {
    if (subtitlesTmp !== undefined) removeQuietly(subtitlesTmp);
  }
  return { path: target, format, frameCount: src.count, width: src.width, height: src.height, fps: options.fps, bytes, encoder: ffmpeg ? 'ffmpeg' : 'builtin', sidecar };
}
