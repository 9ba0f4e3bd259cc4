import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { findFfprobe } from './ffmpeg.js';
import { VideoFormatError } from './video-error.js';

/** What a video file holds, as read back from its container. */
export interface VideoInfo {
  frameCount: number;
  width: number;
  height: number;
  /** Average frame rate: frames / duration. */
  fps: number;
  durationS: number;
  /** Sample entry / codec name, e.g. 'avc1' (parser) or 'h264' (ffprobe). */
  codec: string;
  /** Container metadata tags (title, comment, …). */
  tags: Record<string, string>;
}

interface Box {
  type: string;
  /** Offsets of the payload (after the header) within the buffer. */
  start: number;
  end: number;
}

/** The boxes directly inside buf[start, end). */
function boxes(buf: Uint8Array, start: number, end: number): Box[] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Box[] = [];
  let p = start;
  while (p + 8 <= end) {
    let size = dv.getUint32(p);
    const type = String.fromCharCode(...buf.subarray(p + 4, p + 8));
    let header = 8;
    if (size === 1) {
      if (p + 16 > end) throw new VideoFormatError(`MP4: box '${type}' at ${p} is truncated`);
      size = Number(dv.getBigUint64(p + 8));
      header = 16;
    } else if (size === 0) {
      size = end - p;
    }
    if (size < header || p + size > end) throw new VideoFormatError(`MP4: box '${type}' at byte ${p} (size ${size}) runs past its parent`);
    out.push({ type, start: p + header, end: p + size });
    p += size;
  }
  return out;
}

function child(buf: Uint8Array, parent: Box, type: string): Box | undefined {
  return boxes(buf, parent.start, parent.end).find((b) => b.type === type);
}

function path(buf: Uint8Array, parent: Box, ...types: string[]): Box | undefined {
  let b: Box | undefined = parent;
  for (const t of types) {
    if (!b) return undefined;
    b = child(buf, b, t);
  }
  return b;
}

const TAG_NAMES: Record<string, string> = {
  '\xa9nam': 'title',
  '\xa9cmt': 'comment',
  desc: 'description',
  '\xa9ART': 'artist',
  '\xa9too': 'encoder',
  '\xa9day': 'date',
  '\xa9alb': 'album',
  '\xa9gen': 'genre',
};

/** iTunes-style tags in moov/udta/meta/ilst (what ffmpeg's -metadata writes). */
function readTags(buf: Uint8Array, moov: Box): Record<string, string> {
  const tags: Record<string, string> = {};
  const meta = path(buf, moov, 'udta', 'meta');
  if (!meta) return tags;
  // ISO meta is a full box (4 bytes of version/flags before its children); QuickTime's is not.
  const peek = String.fromCharCode(...buf.subarray(meta.start + 4, meta.start + 8));
  const inner: Box = peek === 'hdlr' ? meta : { type: 'meta', start: meta.start + 4, end: meta.end };
  const ilst = child(buf, inner, 'ilst');
  if (!ilst) return tags;
  for (const item of boxes(buf, ilst.start, ilst.end)) {
    const data = child(buf, item, 'data');
    if (!data) continue;
    const text = Buffer.from(buf.subarray(data.start + 8, data.end)).toString('utf-8');
    tags[TAG_NAMES[item.type] ?? item.type] = text;
  }
  return tags;
}

/** Parses the `moov` box of an MP4: frame count, coded size, frame rate and tags of the first video track. */
export function parseMoov(buf: Uint8Array, moov: Box = { type: 'moov', start: 0, end: buf.length }): VideoInfo {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (const trak of boxes(buf, moov.start, moov.end).filter((b) => b.type === 'trak')) {
    const mdia = child(buf, trak, 'mdia');
    const hdlr = mdia && child(buf, mdia, 'hdlr');
    if (!mdia || !hdlr || String.fromCharCode(...buf.subarray(hdlr.start + 8, hdlr.start + 12)) !== 'vide') continue;
    const mdhd = child(buf, mdia, 'mdhd');
    const stbl = path(buf, mdia, 'minf', 'stbl');
    if (!mdhd || !stbl) throw new VideoFormatError('MP4: the video track has no mdhd or stbl box');
    const timescale = buf[mdhd.start] === 1 ? dv.getUint32(mdhd.start + 20) : dv.getUint32(mdhd.start + 12);
    const stsz = child(buf, stbl, 'stsz');
    const stts = child(buf, stbl, 'stts');
    const stsd = child(buf, stbl, 'stsd');
    if (!stsz || !stts || !stsd) throw new VideoFormatError('MP4: the video track lacks stsz, stts or stsd');
    const frameCount = dv.getUint32(stsz.start + 8);
    let ticks = 0;
    const entries = dv.getUint32(stts.start + 4);
    for (let i = 0; i < entries; i++) ticks += dv.getUint32(stts.start + 8 + i * 8) * dv.getUint32(stts.start + 12 + i * 8);
    const entry = stsd.start + 8;
    const codec = String.fromCharCode(...buf.subarray(entry + 4, entry + 8));
    // Visual sample entry: 8 header + 6 reserved + 2 data ref + 16 pre-defined/reserved, then width, height.
    const width = dv.getUint16(entry + 32);
    const height = dv.getUint16(entry + 34);
    const durationS = timescale > 0 ? ticks / timescale : 0;
    return { frameCount, width, height, fps: durationS > 0 ? frameCount / durationS : 0, durationS, codec, tags: readTags(buf, moov) };
  }
  throw new VideoFormatError('MP4: no video track');
}

/** Reads an MP4 file's boxes (only the moov box is loaded, never the media data). */
export function parseMp4File(file: string): VideoInfo {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(16);
    let p = 0;
    while (p + 8 <= size) {
      fs.readSync(fd, head, 0, 16, p);
      let boxSize = head.readUInt32BE(0);
      const type = head.toString('latin1', 4, 8);
      let header = 8;
      if (boxSize === 1) {
        boxSize = Number(head.readBigUInt64BE(8));
        header = 16;
      } else if (boxSize === 0) {
        boxSize = size - p;
      }
      if (boxSize < header || p + boxSize > size) throw new VideoFormatError(`MP4: box '${type}' at byte ${p} runs past the end of ${file} (truncated?)`);
      if (type === 'moov') {
        const buf = Buffer.alloc(boxSize - header);
        fs.readSync(fd, buf, 0, buf.length, p + header);
        return parseMoov(new Uint8Array(buf.buffer, buf.byteOffset, buf.length));
      }
      p += boxSize;
    }
    throw new VideoFormatError(`MP4: ${file} has no moov box`);
  } finally {
    fs.closeSync(fd);
  }
}

interface FfprobeJson {
  streams?: Array<{ codec_name?: string; width?: number; height?: number; nb_frames?: string; avg_frame_rate?: string; duration?: string }>;
  format?: { duration?: string; tags?: Record<string, string> };
}

function ratio(s: string | undefined): number {
  if (!s) return 0;
  const [a, b] = s.split('/').map(Number);
  return b ? a / b : a;
}

/** Probes a video with ffprobe (any container it reads). */
export function ffprobe(file: string, bin: string): Promise<VideoInfo> {
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,width,height,nb_frames,avg_frame_rate,duration:format=duration:format_tags', '-of', 'json', file],
      (err, stdout, stderr) => {
        if (err) return reject(new VideoFormatError(`ffprobe cannot read ${file}: ${stderr.trim() || err.message}`));
        const j = JSON.parse(stdout) as FfprobeJson;
        const s = j.streams?.[0];
        if (!s) return reject(new VideoFormatError(`${file} has no video stream`));
        const durationS = Number(s.duration ?? j.format?.duration ?? 0);
        const frameCount = Number(s.nb_frames ?? 0);
        resolve({
          frameCount,
          width: s.width ?? 0,
          height: s.height ?? 0,
          fps: durationS > 0 && frameCount > 0 ? frameCount / durationS : ratio(s.avg_frame_rate),
          durationS,
          codec: s.codec_name ?? '',
          tags: j.format?.tags ?? {},
        });
      },
    );
  });
}

/** Frame count, size, fps and tags of an MP4: with ffprobe when it is on PATH, else by parsing the boxes. */
export async function probeMp4(file: string): Promise<VideoInfo> {
  const bin = findFfprobe();
  return bin ? ffprobe(file, bin) : parseMp4File(file);
}
