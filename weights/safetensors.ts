import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckpointError } from '../src/errors.js';
import {
  decodeTensorBytes,
  dtypeSize,
  float32ToBf16Bits,
  float32ToF16Bits,
  isSafetensorsDtype,
  type SafetensorsDtype,
} from './dtypes.js';

/** Largest header a reader accepts (the reference implementation's bound). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Where one tensor lies in a safetensors file. Offsets are absolute file positions. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

/** A decoded tensor: float types as float32, integer and bool types as int32. */
export interface HostTensor {
  readonly dtype: 'float32' | 'int32';
  readonly shape: number[];
  readonly data: Float32Array | Int32Array;
}

/** Anything that hands out named tensors: one file, or a sharded checkpoint. */
export interface TensorSource {
  /** A readable label (the file or index path) for messages. */
  readonly label: string;
  keys(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo & { readonly file: string };
  read(name: string): HostTensor;
  /** The tensor's raw little-endian bytes as stored. */
  readRaw(name: string): Uint8Array;
  close(): void;
}

function fail(file: string, message: string, tensor?: string): never {
  throw new CheckpointError(message, file, tensor);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses and validates a safetensors header. `fileSize` is the size of the whole file.
 * Throws CheckpointError on anything malformed.
 */
export function parseHeader(
  file: string,
  prefix: Uint8Array,
  fileSize: number,
  readHeader: (length: number) => Uint8Array,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string>; dataStart: number } {
  if (fileSize < 8 || prefix.byteLength < 8) fail(file, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
  const dv = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  if (hi !== 0 || lo > MAX_HEADER_BYTES) fail(file, `header length ${hi * 2 ** 32 + lo} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  const headerLen = lo;
  if (8 + headerLen > fileSize) fail(file, `header length ${headerLen} runs past the end of the ${fileSize}-byte file (truncated?)`);
  const bytes = readHeader(headerLen);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    fail(file, 'header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    fail(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(parsed)) fail(file, 'header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) fail(file, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') fail(file, `__metadata__ value for '${k}' is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (!isPlainObject(entry)) fail(file, 'entry is not an object', name);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isSafetensorsDtype(dtype)) fail(file, `unknown dtype ${JSON.stringify(dtype)}`, name);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      fail(file, `shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)
    ) {
      fail(file, `data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`, name);
    }
    const [b, e] = offsets as [number, number];
    const numel = (shape as number[]).reduce((a, d) => a * d, 1);
    const expected = numel * dtypeSize(dtype);
    if (!Number.isSafeInteger(expected) || e < b || e - b !== expected) {
      fail(file, `data_offsets [${b}, ${e}] span ${e - b} bytes, but shape [${shape}] of ${dtype} needs ${expected}`, name);
    }
    if (e > dataSize) fail(file, `data_offsets [${b}, ${e}] run past the ${dataSize}-byte data area (truncated file?)`, name);
    tensors.set(name, { name, dtype, shape: shape as number[], begin: dataStart + b, end: dataStart + e });
  }
  const spans = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = dataStart;
  for (const t of spans) {
    if (t.begin < cursor) fail(file, `data overlaps the previous tensor (starts at ${t.begin - dataStart}, expected ${cursor - dataStart})`, t.name);
    if (t.begin > cursor) fail(file, `gap in the data area before this tensor (starts at ${t.begin - dataStart}, expected ${cursor - dataStart})`, t.name);
    cursor = t.end;
  }
  if (cursor !== fileSize) fail(file, `data area is ${dataSize} bytes but the tensors cover ${cursor - dataStart} (trailing bytes or truncation)`);
  return { tensors, metadata, dataStart };
}

/** One safetensors file, opened for reading tensor by tensor from their offsets. */
export class SafetensorsFile implements TensorSource {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    fd: number,
    tensors: Map<string, TensorInfo>,
    metadata: Record<string, string>,
  ) {
    this.fd = fd;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  get label(): string {
    return this.path;
  }

  /** Opens and validates a file; only the header is read. */
  static open(file: string): SafetensorsFile {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new CheckpointError(`cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, file);
    }
    try {
      const size = fs.fstatSync(fd).size;
      const prefix = new Uint8Array(Math.min(8, size));
      fs.readSync(fd, prefix, 0, prefix.byteLength, 0);
      const { tensors, metadata } = parseHeader(file, prefix, size, (n) => {
        const buf = new Uint8Array(n);
        readFully(fd, buf, 8, file);
        return buf;
      });
      return new SafetensorsFile(file, fd, tensors, metadata);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo & { file: string } {
    const t = this.tensors.get(name);
    if (!t) throw new CheckpointError('no such tensor in this file', this.path, name);
    return { ...t, file: this.path };
  }

  /** The tensor's raw little-endian bytes. */
  readRaw(name: string): Uint8Array {
    const t = this.info(name);
    if (this.fd === undefined) throw new CheckpointError('file is closed', this.path, name);
    const buf = new Uint8Array(t.end - t.begin);
    readFully(this.fd, buf, t.begin, this.path, name);
    return buf;
  }

  /** Reads and decodes one tensor (float types → float32, integer types → int32). */
  read(name: string): HostTensor {
    const t = this.info(name);
    const data = decodeTensorBytes(t.dtype, this.readRaw(name), name);
    return { dtype: data instanceof Float32Array ? 'float32' : 'int32', shape: [...t.shape], data };
  }

  close(): void {
    if (this.fd !== undefined) {
      fs.closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

function readFully(fd: number, buf: Uint8Array, position: number, file: string, tensor?: string): void {
  let off = 0;
  while (off < buf.byteLength) {
    const n = fs.readSync(fd, buf, off, buf.byteLength - off, position + off);
    if (n === 0) throw new CheckpointError(`unexpected end of file at byte ${position + off}`, file, tensor);
    off += n;
  }
}

/** A tensor to write: float data is stored as `dtype` (default F32). */
export interface TensorToWrite {
  readonly shape: readonly number[];
  readonly data: Float32Array | Int32Array;
  readonly dtype?: 'F32' | 'F16' | 'BF16' | 'I32' | 'I64';
}

function encode(t: TensorToWrite, name: string): { dtype: SafetensorsDtype; bytes: Uint8Array } {
  const numel = t.shape.reduce((a, d) => a * d, 1);
  if (numel !== t.data.length) throw new CheckpointError(`shape [${t.shape}] holds ${numel} values but data has ${t.data.length}`, undefined, name);
  const dtype = t.dtype ?? (t.data instanceof Int32Array ? 'I32' : 'F32');
  const bytes = new Uint8Array(numel * dtypeSize(dtype));
  const dv = new DataView(bytes.buffer);
  for (let i = 0; i < numel; i++) {
    const v = t.data[i];
    switch (dtype) {
      case 'F32': dv.setFloat32(i * 4, v, true); break;
      case 'F16': dv.setUint16(i * 2, float32ToF16Bits(v), true); break;
      case 'BF16': dv.setUint16(i * 2, float32ToBf16Bits(v), true); break;
      case 'I32': dv.setInt32(i * 4, v, true); break;
      case 'I64': dv.setBigInt64(i * 8, BigInt(Math.trunc(v)), true); break;
    }
  }
  return { dtype, bytes };
}

/**
 * Writes tensors to a safetensors file. The file is written under a temporary name beside the
 * target and renamed on success, so a failure never leaves a half-written checkpoint.
 */
export function writeSafetensors(
  file: string,
  tensors: Readonly<Record<string, TensorToWrite>>,
  metadata: Readonly<Record<string, string>> = {},
): void {
  const names = Object.keys(tensors).sort();
  const encoded = names.map((n) => ({ name: n, ...encode(tensors[n], n) }));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  let offset = 0;
  for (const e of encoded) {
    header[e.name] = { dtype: e.dtype, shape: [...tensors[e.name].shape], data_offsets: [offset, offset + e.bytes.byteLength] };
    offset += e.bytes.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf-8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.byteLength));
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, headerBytes);
    for (const e of encoded) fs.writeSync(fd, e.bytes);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.closeSync(fd); } catch { /* already closed */ }
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
