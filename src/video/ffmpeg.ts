import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AbortError } from '../errors.js';
import { betweenFrames } from './output-file.js';
import { VideoEncoderError } from './video-error.js';

/** The optional npm package that ships an ffmpeg binary; never a dependency of this library. */
const FFMPEG_INSTALLER = '@ffmpeg-installer/ffmpeg';

/** The first executable named `name` on PATH. */
export function findOnPath(name: string, envPath = process.env.PATH ?? ''): string | undefined {
  const exts = process.platform === 'win32' ? (process.env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';') : [''];
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) continue;
    for (const ext of exts) {
      const candidate = path.join(dir, name + ext);
      try {
        fs.accessSync(candidate, fs.constants.X_OK);
        if (fs.statSync(candidate).isFile()) return candidate;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

function installerPath(mod: unknown): string | undefined {
  if (typeof mod !== 'object' || mod === null) return undefined;
  const direct = (mod as { path?: unknown }).path;
  if (typeof direct === 'string') return direct;
  const dflt = (mod as { default?: unknown }).default;
  if (typeof dflt === 'object' && dflt !== null && typeof (dflt as { path?: unknown }).path === 'string') return (dflt as { path: string }).path;
  return undefined;
}

/**
 * Locates ffmpeg: `$WAN_FFMPEG` if set, else `ffmpeg` on PATH, else the binary of the optional
 * package @ffmpeg-installer/ffmpeg when it is installed. Undefined when there is none.
 */
export async function findFfmpeg(): Promise<string | undefined> {
  const env = process.env.WAN_FFMPEG;
  if (env) return env;
  const onPath = findOnPath('ffmpeg');
  if (onPath) return onPath;
  try {
    const spec = FFMPEG_INSTALLER;
    const mod: unknown = await import(/* @vite-ignore */ spec);
    return installerPath(mod);
  } catch {
    return undefined;
  }
}

/** `ffprobe` on PATH, if any. */
export function findFfprobe(): string | undefined {
  return findOnPath('ffprobe');
}

/** The message for a missing ffmpeg when it was asked for (encoder 'ffmpeg'). */
export const FFMPEG_MISSING =
  'the MP4 encoder "ffmpeg" needs ffmpeg, which was not found: install it (apt install ffmpeg, brew install ffmpeg, or npm install @ffmpeg-installer/ffmpeg) or set WAN_FFMPEG; or use encoder "auto" / "builtin" (an uncompressed MP4 without ffmpeg), or write a GIF or PNG frames instead (format "gif" / "png", --format gif)';

export interface Mp4EncodeOptions {
  width: number;
  height: number;
  fps: number;
  /** Written with -metadata key=value (MP4 keys: title, comment, description, artist, …). */
  metadata?: Readonly<Record<string, string>>;
  /** x264 constant rate factor (0–51, lower is better); default 18. */
  crf?: number;
  signal?: AbortSignal;
  ffmpegPath?: string;
  /** An audio file (any format ffmpeg reads) muxed as AAC, cut to the video's length. */
  audio?: string;
  /** Subtitles burned into the frames: the file's name relative to `cwd`, of the characters [A-Za-z0-9._-] only (it goes into a filter graph unquoted). */
  subtitles?: string;
  /** ffmpeg's working folder (where `subtitles` is found). */
  cwd?: string;
}

/**
 * The ffmpeg command line for `frameCount` raw rgb24 frames on stdin → H.264 yuv420p MP4 at `out`,
 * with `o.subtitles` burned in and `o.audio` as an AAC track cut to the video's length.
 */
export function ffmpegArgs(out: string, o: Mp4EncodeOptions, frameCount: number): string[] {
  const args = ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${o.width}x${o.height}`, '-r', String(o.fps), '-i', 'pipe:0'];
  if (o.audio !== undefined) args.push('-i', path.resolve(o.audio));
  if (o.subtitles !== undefined && !/^[A-Za-z0-9._-]+$/.test(o.subtitles)) throw new VideoEncoderError(`subtitles: the file name given to ffmpeg's filter must be of [A-Za-z0-9._-], got ${JSON.stringify(o.subtitles)}`);
  const filters: string[] = [];
  // yuv420p subsamples chroma 2×2, so x264 needs even sides: pad the odd ones by one pixel.
  if (o.width % 2 || o.height % 2) filters.push('pad=ceil(iw/2)*2:ceil(ih/2)*2');
  if (o.subtitles !== undefined) filters.push(`subtitles=${o.subtitles}`);
  if (filters.length) args.push('-vf', filters.join(','));
  args.push('-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-crf', String(o.crf ?? 18), '-movflags', '+faststart');
  if (o.audio !== undefined) args.push('-map', '0:v:0', '-map', '1:a:0', '-c:a', 'aac', '-t', String(frameCount / o.fps));
  for (const [k, v] of Object.entries(o.metadata ?? {})) args.push('-metadata', `${k}=${v}`);
  args.push('-f', 'mp4', out);
  return args;
}

function writeChunk(child: ChildProcess, data: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const stdin = child.stdin!;
    const ok = stdin.write(data, (err) => (err ? reject(err) : undefined));
    if (ok) resolve();
    else {
      const onDrain = () => {
        stdin.off('error', onError);
        resolve();
      };
      const onError = (err: Error) => {
        stdin.off('drain', onDrain);
        reject(err);
      };
      stdin.once('drain', onDrain);
      stdin.once('error', onError);
    }
  });
}

/** ffmpeg processes encoding now (removed when they exit). */
const running = new Set<ChildProcess>();

/**
 * Kills every ffmpeg this process has started and not yet seen exit (SIGKILL, at once), for a
 * forced exit: otherwise an encoder outlives it and goes on writing its temporary file.
 */
export function killEncoders(): void {
  for (const child of running) child.kill('SIGKILL');
}

/**
 * Streams `frameCount` frames ([H, W, 3] uint8 each, from `frame(i)`) into ffmpeg, which writes an
 * H.264 MP4 at `out` (the caller picks a temporary name and renames it). On failure or abort the
 * process is stopped and the error thrown; the caller removes `out`.
 */
export async function encodeMp4(out: string, frameCount: number, frame: (i: number) => Promise<Uint8Array>, o: Mp4EncodeOptions): Promise<void> {
  const bin = o.ffmpegPath ?? (await findFfmpeg());
  if (!bin) throw new VideoEncoderError(FFMPEG_MISSING);
  // A relative path to the binary is the caller's, not relative to `o.cwd`.
  const command = o.cwd !== undefined && /[\\/]/.test(bin) ? path.resolve(bin) : bin;
  const child = spawn(command, ffmpegArgs(out, o, frameCount), { stdio: ['pipe', 'ignore', 'pipe'], cwd: o.cwd });
  running.add(child);
  child.once('exit', () => running.delete(child));
  child.once('error', () => running.delete(child));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf-8')).slice(-4000);
  });
  child.stdin!.on('error', () => {
    // EPIPE when ffmpeg exits early; the exit code and stderr carry the reason.
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>((resolve) => {
    child.once('error', (e) => resolve({ code: null, signal: null, spawnError: e }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  const expected = o.width * o.height * 3;
  try {
    for (let i = 0; i < frameCount; i++) {
      await betweenFrames(o.signal);
      const data = await frame(i);
      if (data.length !== expected) throw new VideoEncoderError(`frame ${i} has ${data.length} bytes, expected ${o.width}×${o.height}×3 = ${expected}`);
      if (child.exitCode !== null || child.signalCode !== null) break;
      await writeChunk(child, data).catch(() => undefined);
    }
    if (o.signal?.aborted) throw new AbortError('video writing was aborted');
    child.stdin!.end();
  } catch (e) {
    child.kill('SIGKILL');
    await exited;
    throw e;
  }
  const r = await exited;
  if (r.spawnError) throw new VideoEncoderError(`cannot run ffmpeg at ${bin}: ${r.spawnError.message}`);
  if (r.code !== 0) {
    throw new VideoEncoderError(`ffmpeg failed (${r.code !== null ? `exit code ${r.code}` : `signal ${r.signal}`}): ${stderr.trim().split('\n').slice(-3).join(' | ') || 'no message'}`);
  }
}
