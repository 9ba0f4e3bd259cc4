import { describeValue, safeText, shapeText } from '../src/describe.js';
import { CheckpointError } from '../src/errors.js';
import {
  SAFETENSORS_DTYPES,
  decodeTensorBytes,
  dtypeSize,
  float32ToBf16Bits,
  float32ToF16Bits,
  isSafetensorsDtype,
  type SafetensorsDtype,
} from './dtypes.js';
import { filePaths, fileSystem } from './file-system.js';
import { findJsonStructureProblem } from './json-structure.js';

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
  /** Fills `dest` with the tensor's stored bytes from byte `offset` of the tensor on (reading a tensor in pieces, into the caller's buffer). */
  readRawInto(name: string, dest: Uint8Array, offset?: number): void;
  /** The header's `__metadata__` strings, where the source has one header (a single file). */
  readonly metadata?: Readonly<Record<string, string>>;
  close(): void;
}

function fail(file: string, message: string, tensor?: string): never {
  throw new CheckpointError(message, file, tensor);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonNegativeInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Deepest nesting a header may have (serde_json's recursion limit, which the reference reader inherits). */
const MAX_HEADER_DEPTH = 128;

/** ∏ shape, or undefined once a partial product passes 2^53 (checked left to right, as the reference's checked_mul). */
function checkedNumel(shape: readonly number[]): number | undefined {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) return undefined;
  }
  return n;
}

/** The header text: valid UTF-8 with no byte order mark, no key repeated within an object, nested at most MAX_HEADER_DEPTH deep. */
function headerText(file: string, bytes: Uint8Array): string {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    fail(file, 'header starts with a UTF-8 byte order mark (EF BB BF), which the format does not allow; re-save the file without it');
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    fail(file, 'header is not valid UTF-8');
  }
  const problem = findJsonStructureProblem(text, MAX_HEADER_DEPTH);
  if (problem?.kind === 'depth') fail(file, `header nests deeper than ${problem.limit} levels`);
  if (problem?.kind === 'duplicate') {
    const where = problem.depth === 1 ? 'at the top level of the header' : problem.parent !== undefined ? `in '${safeText(problem.parent, 120)}'` : 'in a nested object';
    fail(file, `duplicate key '${safeText(problem.key, 120)}' ${where}; the format forbids duplicate keys (JSON.parse would silently keep the last)`);
  }
  return text;
}

/**
 * Parses and validates a safetensors header. `fileSize` is the size of the whole file. The
 * header is `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}`
 * with offsets relative to the data area at 8 + header length; the spans must tile the data area
 * exactly (sorted by offset: begin of each = end of the previous, the last ending at the file's end).
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
  // the length is a u64: lo + hi·2^32
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  if (hi !== 0 || lo > MAX_HEADER_BYTES) fail(file, `header length ${dv.getBigUint64(0, true)} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  const headerLen = lo;
  if (8 + headerLen > fileSize) fail(file, `header length ${headerLen} runs past the end of the ${fileSize}-byte file (truncated?)`);
  const text = headerText(file, readHeader(headerLen));
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    fail(file, `header is not valid JSON (${safeText((e as Error).message, 200)})`);
  }
  if (!isPlainObject(parsed)) fail(file, `header is ${describeValue(parsed)}, not a JSON object`);
  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  // no prototype: a key named __proto__ is kept as data
  const metadata = Object.create(null) as Record<string, string>;
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) fail(file, `__metadata__ is ${describeValue(entry)}, not an object`);
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') fail(file, `__metadata__ value of '${safeText(k, 120)}' is ${describeValue(v)}, not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (!isPlainObject(entry)) fail(file, `entry is ${describeValue(entry)}, not an object`, name);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isSafetensorsDtype(dtype)) fail(file, `unknown dtype (${describeValue(dtype)}); known: ${Object.keys(SAFETENSORS_DTYPES).join(', ')}`, name);
    if (!Array.isArray(shape)) fail(file, `shape is ${describeValue(shape)}, not a list of non-negative integers`, name);
    const badDim = shape.findIndex((d) => !isNonNegativeInteger(d));
    if (badDim >= 0) fail(file, `shape[${badDim}] is ${describeValue(shape[badDim])}, not a non-negative integer`, name);
    if (!Array.isArray(offsets) || offsets.length !== 2) fail(file, `data_offsets is ${describeValue(offsets)}, not a pair of non-negative integers`, name);
    const badOffset = offsets.findIndex((d) => !isNonNegativeInteger(d));
    if (badOffset >= 0) fail(file, `data_offsets[${badOffset}] is ${describeValue(offsets[badOffset])}, not a non-negative integer`, name);
    const dims = shape as number[];
    const [b, e] = offsets as [number, number];
    const numel = checkedNumel(dims);
    if (numel === undefined) fail(file, `shape ${shapeText(dims)} holds more than 2^53 elements`, name);
    // bytes = ∏ shape · size of one element
    const expected = numel * dtypeSize(dtype);
    if (!Number.isSafeInteger(expected)) fail(file, `shape ${shapeText(dims)} of ${dtype} needs more than 2^53 bytes`, name);
    if (e < b || e - b !== expected) {
      fail(file, `data_offsets [${b}, ${e}] span ${e - b} bytes, but shape ${shapeText(dims)} of ${dtype} needs ${expected}`, name);
    }
    if (e > dataSize) fail(file, `data_offsets [${b}, ${e}] run past the ${dataSize}-byte data area (truncated file?)`, name);
    tensors.set(name, { name, dtype, shape: dims, begin: dataStart + b, end: dataStart + e });
  }
  // The spans, sorted by (begin, end), must tile [dataStart, fileSize): each begins where the last ended.
  const spans = [...tensors.values()].sort((x, y) => x.begin - y.begin || x.end - y.end);
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
    const fs = fileSystem();
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new CheckpointError(`cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, file);
    }
    try {
      const stat = fs.fstatSync(fd);
      if (!stat.isFile()) throw new CheckpointError('not a regular file', file);
      const prefix = new Uint8Array(Math.min(8, stat.size));
      readFully(fd, prefix, 0, file);
      const { tensors, metadata } = parseHeader(file, prefix, stat.size, (n) => {
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
    const buf = new Uint8Array(t.end - t.begin);
    this.readRawInto(name, buf);
    return buf;
  }

  /** Fills `dest` with the tensor's bytes [offset, offset + dest.byteLength) straight from the file. */
  readRawInto(name: string, dest: Uint8Array, offset = 0): void {
    const t = this.info(name);
    if (this.fd === undefined) throw new CheckpointError('file is closed', this.path, name);
    const bytes = t.end - t.begin;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + dest.byteLength > bytes) {
      throw new CheckpointError(`byte range [${offset}, ${offset + dest.byteLength}) lies outside the tensor's ${bytes} bytes`, this.path, name);
    }
    readFully(this.fd, dest, t.begin + offset, this.path, name);
  }

  /** Reads and decodes one tensor (float types → float32, integer types → int32). */
  read(name: string): HostTensor {
    const t = this.info(name);
    const data = decodeTensorBytes(t.dtype, this.readRaw(name), name);
    return { dtype: data instanceof Float32Array ? 'float32' : 'int32', shape: [...t.shape], data };
  }

  close(): void {
    if (this.fd !== undefined) {
      fileSystem().closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

/** Fills `buf` from the file at `position`; a read error or an early end of file is a CheckpointError. */
function readFully(fd: number, buf: Uint8Array, position: number, file: string, tensor?: string): void {
  let off = 0;
  while (off < buf.byteLength) {
    let n: number;
    try {
      n = fileSystem().readSync(fd, buf, off, buf.byteLength - off, position + off);
    } catch (e) {
      throw new CheckpointError(`cannot read at byte ${position + off} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, file, tensor);
    }
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

/** A tensor to write as given bytes (e.g. fp8 codes): `raw` holds ∏ shape · size of `dtype` little-endian bytes. */
export interface RawTensorToWrite {
  readonly shape: readonly number[];
  readonly dtype: SafetensorsDtype;
  readonly raw: Uint8Array;
}

function encode(t: TensorToWrite | RawTensorToWrite, name: string): { dtype: SafetensorsDtype; bytes: Uint8Array } {
  const numel = t.shape.reduce((a, d) => a * d, 1);
  if ('raw' in t) {
    const expected = numel * dtypeSize(t.dtype);
    if (t.raw.byteLength !== expected) throw new CheckpointError(`shape [${t.shape}] of ${t.dtype} needs ${expected} bytes but raw has ${t.raw.byteLength}`, undefined, name);
    return { dtype: t.dtype, bytes: t.raw };
  }
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

/** Tensor names writeSafetensors refuses. */
const RESERVED_NAMES: ReadonlySet<string> = new Set(['__metadata__', '__proto__']);

/**
 * Writes tensors to a safetensors file. The file is written under a temporary name beside the
 * target and renamed on success, so a failure never leaves a half-written checkpoint.
 */
export function writeSafetensors(
  file: string,
  tensors: Readonly<Record<string, TensorToWrite | RawTensorToWrite>>,
  metadata: Readonly<Record<string, string>> = {},
): void {
  const names = Object.keys(tensors).sort();
  for (const n of names) {
    if (RESERVED_NAMES.has(n)) {
      throw new CheckpointError('the name is reserved (__metadata__ holds the metadata; __proto__ would be lost by JavaScript readers); rename the tensor', file, n);
    }
  }
  const encoded = names.map((n) => ({ name: n, ...encode(tensors[n], n) }));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  let offset = 0;
  for (const e of encoded) {
    header[e.name] = { dtype: e.dtype, shape: [...tensors[e.name].shape], data_offsets: [offset, offset + e.bytes.byteLength] };
    offset += e.bytes.byteLength;
  }
  let json = JSON.stringify(header);
  const utf8 = new TextEncoder();
  json += ' '.repeat((8 - (utf8.encode(json).byteLength % 8)) % 8);
  const headerBytes = utf8.encode(json);
  if (headerBytes.byteLength > MAX_HEADER_BYTES) {
    throw new CheckpointError(`the header would be ${headerBytes.byteLength} bytes, over the ${MAX_HEADER_BYTES}-byte limit of readers`, file);
  }
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  const fs = fileSystem();
  const path = filePaths();
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
