import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeGif } from './gif-decoder.js';
import { parseMp4File } from './mp4-probe.js';
import { decodePng } from './png-decoder.js';
import { VideoFormatError } from './video-error.js';

/** One checkpoint file of the model: its name and the SHA-256 (hex) of its safetensors header. */
export interface CheckpointIdentity {
  readonly file: string;
  readonly headerSha256: string;
}

/** Which model made a clip: a Hugging Face repo id or a folder (or file), and its checkpoint files' headers. */
export interface ModelIdentity {
  readonly id: string;
  readonly checkpoints: readonly CheckpointIdentity[];
}

/** What the caller knows of a clip's making; saveVideo adds the sizes it writes and the time. */
export interface ProvenanceInput {
  readonly prompt?: string;
  readonly negativePrompt?: string;
  readonly seed: number;
  readonly steps: number;
  readonly guidance: number;
  /** The low-noise expert's guidance (two-expert models). */
  readonly guidance2?: number;
  /** The library version that made the clip. */
  readonly libraryVersion: string;
  readonly model: ModelIdentity;
  /** Who submitted the job, where a server knows it. */
  readonly submitter?: string;
}

/** The record of a clip's making, embedded in the file and written beside it. */
export interface Provenance extends ProvenanceInput {
  readonly numFrames: number;
  readonly width: number;
  readonly height: number;
  readonly fps: number;
  /** When the clip was written (ISO 8601, UTC). */
  readonly createdAt: string;
}

/**
 * The sidecar `<clip>.json`: the record, the clip's format and its content hash, the SHA-256 (hex)
 * of the file's bytes, or for a folder of PNG frames of the lines `<name> <sha256 of the file>\n`
 * of its frame files in name order.
 */
export interface ProvenanceSidecar {
  readonly format: 'mp4' | 'gif' | 'png';
  readonly sha256: string;
  readonly provenance: Provenance;
}

/** The field of the embedded metadata JSON (MP4 comment tag, GIF comment, PNG Comment chunk) that holds the record. */
export const PROVENANCE_FIELD = 'provenance';

const FRAME_FILE = /^frame-\d+\.png$/;

/** The sidecar of a clip (a file or a PNG frames folder): its path with `.json` appended. */
export function sidecarPath(clip: string): string {
  return `${path.resolve(clip)}.json`;
}

function fileSha256(file: string): string {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) hash.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** The content hash of a clip as the sidecar states it (see ProvenanceSidecar.sha256). */
export function contentSha256(clip: string): string {
  if (!fs.statSync(clip).isDirectory()) return fileSha256(clip);
  const hash = createHash('sha256');
  for (const name of fs.readdirSync(clip).filter((f) => FRAME_FILE.test(f)).sort()) hash.update(`${name} ${fileSha256(path.join(clip, name))}\n`);
  return hash.digest('hex');
}

/** The metadata JSON a writer embeds: the metadata's strings, and the record under PROVENANCE_FIELD. */
export function metadataJson(meta: Readonly<Record<string, string>>, provenance: Provenance | undefined): string {
  return JSON.stringify(provenance ? { ...meta, [PROVENANCE_FIELD]: provenance } : meta);
}

function readBytes(file: string): Uint8Array {
  return new Uint8Array(fs.readFileSync(file));
}

/** The embedded metadata JSON of a clip of `format` (the first frame's for a PNG folder); a VideoFormatError when there is none. */
function embeddedJson(clip: string, format: ProvenanceSidecar['format']): string {
  let text: string | undefined;
  if (format === 'mp4') text = parseMp4File(clip).tags.comment;
  else if (format === 'gif') text = decodeGif(readBytes(clip)).comments[0];
  else {
    const file = fs.statSync(clip).isDirectory() ? fs.readdirSync(clip).filter((f) => FRAME_FILE.test(f)).sort().map((f) => path.join(clip, f))[0] : clip;
    if (file === undefined) throw new VideoFormatError(`${clip} holds no frame-*.png file`);
    text = decodePng(readBytes(file), file).text.Comment;
  }
  if (text === undefined) throw new VideoFormatError(`${clip} carries no metadata comment`);
  return text;
}

/** The record embedded in a clip of `format`; a VideoFormatError when it has none or it is not JSON. */
export function embeddedProvenance(clip: string, format: ProvenanceSidecar['format']): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(embeddedJson(clip, format));
  } catch (e) {
    if (e instanceof VideoFormatError) throw e;
    throw new VideoFormatError(`${clip}: its metadata comment is not JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || !(PROVENANCE_FIELD in parsed)) throw new VideoFormatError(`${clip}: its metadata carries no '${PROVENANCE_FIELD}' record`);
  return (parsed as Record<string, unknown>)[PROVENANCE_FIELD];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The sidecar of `clip`, checked for its fields; a VideoFormatError naming the sidecar when it is missing or malformed. */
export function readSidecar(clip: string): ProvenanceSidecar {
  const file = sidecarPath(clip);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf-8');
  } catch (e) {
    throw new VideoFormatError(`cannot read the sidecar ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new VideoFormatError(`the sidecar ${file} is not JSON (${(e as Error).message})`);
  }
  if (!isRecord(j) || !['mp4', 'gif', 'png'].includes(String(j.format)) || typeof j.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(j.sha256) || !isRecord(j.provenance)) {
    throw new VideoFormatError(`the sidecar ${file} lacks its format (mp4, gif or png), sha256 (64 hex digits) or provenance record`);
  }
  return j as unknown as ProvenanceSidecar;
}

/** JSON with object keys sorted, so that equal records give equal text. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isRecord(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

export interface VerifyResult {
  /** The content hash matches the sidecar's and the embedded record equals the sidecar's. */
  readonly ok: boolean;
  /** What differs, one line each (empty when ok). */
  readonly differences: readonly string[];
  readonly sidecar: ProvenanceSidecar;
}

/**
 * Checks `clip` against its sidecar: the content hash recomputed from the clip, and the record
 * embedded in the clip field by field against the sidecar's. A missing or unreadable clip or
 * sidecar is a VideoFormatError naming it; a clip whose embedded record cannot be read is a
 * difference.
 */
export function verifyClip(clip: string): VerifyResult {
  const sidecar = readSidecar(clip);
  let sha256: string;
  try {
    sha256 = contentSha256(clip);
  } catch (e) {
    throw new VideoFormatError(`cannot read ${clip} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const differences: string[] = [];
  if (sha256 !== sidecar.sha256) differences.push(`content sha256 ${sha256} differs from the sidecar's ${sidecar.sha256}`);
  let embedded: unknown;
  try {
    embedded = embeddedProvenance(clip, sidecar.format);
  } catch (e) {
    differences.push(`embedded record unreadable: ${(e as Error).message}`);
  }
  if (embedded !== undefined) {
    const a: Record<string, unknown> = isRecord(embedded) ? embedded : {};
    const b: Record<string, unknown> = sidecar.provenance as unknown as Record<string, unknown>;
    const fields = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort().filter((k) => canonical(a[k]) !== canonical(b[k]));
    if (fields.length) differences.push(`embedded record differs from the sidecar's in ${fields.join(', ')}`);
  }
  return { ok: differences.length === 0, differences, sidecar };
}
