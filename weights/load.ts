import * as tf from '@tensorflow/tfjs-core';
import { tensorFromFp8, tensorFromStored } from '../src/backend/precision.js';
import { safeText, shapeText } from '../src/describe.js';
import { CheckpointError } from '../src/errors.js';
import { decodeTensorBytes, dtypeSize, isFloatDtype, type SafetensorsDtype } from './dtypes.js';
import { findFp8Scales, fp8FormatOf, isFp8Dtype, readScale, scaleFp8 } from './fp8.js';
import type { HostTensor, TensorSource } from './safetensors.js';

/**
 * One weight of a model as the loader sees it: its shape in the checkpoint's (PyTorch) layout,
 * and a way to set it from a tensor in that layout. A layer may store it in another layout.
 */
export interface WeightSlot {
  readonly shape: readonly number[];
  /** Sets the weight from a tensor in checkpoint layout. The callee takes ownership of `value`. */
  assign(value: tf.Tensor): void;
  /** The current value in checkpoint layout (a new tensor the caller disposes), if set. */
  read(): tf.Tensor | undefined;
}

/** Anything whose weights are listed by dotted checkpoint names (every layer of the library). */
export interface HasNamedWeights {
  namedWeights(): Map<string, WeightSlot>;
}

export interface LoadOptions {
  /** Maps a checkpoint key to the model's key; return undefined to ignore the tensor. */
  rename?: (key: string) => string | undefined;
  /** Keys of the model that may stay unset (e.g. buffers the reference does not store). */
  optional?: (modelKey: string) => boolean;
  /** Called after each tensor is loaded. */
  onProgress?: (loaded: number, total: number, key: string) => void;
}

function shapeEq(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Fills every weight of `model` from `source`, one tensor at a time: each is read from its byte
 * range, handed to the backend and released before the next (host memory held by the loader: one
 * tensor plus a READ_CHUNK_BYTES buffer where it is decoded; tensors a backend takes as stored are
 * all read into one staging buffer of the largest one's size; see readTensor). Missing, unexpected and mis-shaped tensors are all collected first and reported in one
 * CheckpointError before anything is read. ComfyUI's scaled fp8 weights load as
 * w = decode(q) · s with their per-tensor scale s (see fp8.ts; kept as q and s on a backend that
 * stores fp8, see readTensor); the scales and quantization
 * configs are not model tensors, so they are neither renamed nor unexpected, while a scale
 * without its weight is unexpected and a scale of more than one element is mis-shaped.
 */
export function loadWeights(model: HasNamedWeights, source: TensorSource, options: LoadOptions = {}): void {
  const slots = model.namedWeights();
  const fp8 = findFp8Scales(source);
  const plan: Array<[string, string]> = [];
  const unexpected: string[] = [];
  const misShaped: string[] = [...fp8.misShaped];
  const seen = new Set<string>();
  for (const key of source.keys()) {
    if (fp8.auxiliary.has(key)) continue;
    const target = options.rename ? options.rename(key) : key;
    if (target === undefined) continue;
    const slot = slots.get(target);
    if (!slot) {
      unexpected.push(key);
      continue;
    }
    seen.add(target);
    const shape = source.info(key).shape;
    if (!shapeEq(shape, slot.shape)) misShaped.push(`${safeText(key, 120)}: file ${shapeText(shape)} vs model ${shapeText(slot.shape)}`);
    else plan.push([key, target]);
  }
  const missing = [...slots.keys()].filter((k) => !seen.has(k) && !(options.optional?.(k) ?? false));
  if (missing.length || unexpected.length || misShaped.length) {
    const parts: string[] = [];
    const list = (xs: string[]) => xs.slice(0, 20).join(', ') + (xs.length > 20 ? `, … (${xs.length} in all)` : '');
    if (missing.length) parts.push(`missing ${missing.length}: ${list(missing)}`);
    if (unexpected.length) parts.push(`unexpected ${unexpected.length}: ${list(unexpected.map((k) => safeText(k, 120)))}`);
    if (misShaped.length) parts.push(`mis-shaped ${misShaped.length}: ${list(misShaped)}`);
    throw new CheckpointError(`checkpoint does not fit the model; ${parts.join('; ')}`, source.label);
  }
  // one staging buffer, of the largest tensor a backend may take as stored
  const stored = plan.map(([key]) => source.info(key)).filter((t) => t.dtype === 'BF16' || t.dtype === 'F16' || isFp8Dtype(t.dtype));
  const staging = new StagingBuffer(stored.reduce((most, t) => Math.max(most, t.end - t.begin), 0));
  plan.forEach(([key, target], i) => {
    slots.get(target)!.assign(readTensor(source, key, fp8.scaleOf.get(key), staging));
    options.onProgress?.(i + 1, plan.length, key);
  });
}

/**
 * One host buffer for the tensors a backend takes as stored (16-bit floats, fp8 codes) and lets go of
 * once uploaded (writeStored / writeFp8): each is read into it in turn, so a load holds one buffer of
 * its largest such tensor, allocated on first use (never on a backend that decodes on the host) and
 * faulted in once, instead of a fresh array per tensor left for the garbage collector.
 */
export class StagingBuffer {
  private buffer: ArrayBuffer | undefined;
  constructor(private readonly capacity: number) {}

  /** The first `n` bytes of the buffer (n ≤ capacity), valid until the next call. */
  bytes(n: number): Uint8Array {
    if (n > this.capacity) throw new RangeError(`StagingBuffer: ${n} bytes asked of a ${this.capacity}-byte buffer`);
    this.buffer ??= new ArrayBuffer(this.capacity);
    return new Uint8Array(this.buffer, 0, n);
  }
}

/** Bytes read from the file per piece when a tensor is decoded on the host (the loader's only buffer beside the tensor). */
export const READ_CHUNK_BYTES = 1 << 20;

/** Whether this machine stores numbers little-endian, as safetensors does (then F32 / I32 bytes are read straight into the tensor's array). */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const bytesOf = (a: Float32Array | Int32Array | Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * A float tensor decoded to float32 piece by piece: READ_CHUNK_BYTES of stored bytes at a time are
 * read into one reused buffer and decoded into the result, so the host holds the float32 tensor
 * and that buffer, never the whole stored copy beside it.
 */
function decodeStreamed(source: TensorSource, key: string, dtype: SafetensorsDtype, n: number): Float32Array {
  const width = dtypeSize(dtype);
  const per = Math.max(1, Math.floor(READ_CHUNK_BYTES / width));
  const out = new Float32Array(n);
  const chunk = new Uint8Array(Math.min(n, per) * width);
  for (let i = 0; i < n; i += per) {
    const piece = chunk.subarray(0, Math.min(per, n - i) * width);
    source.readRawInto(key, piece, i * width);
    out.set(decodeTensorBytes(dtype, piece, key), i);
  }
  return out;
}

/**
 * One checkpoint tensor as a tfjs tensor, read from its byte range alone. bfloat16 and float16
 * tensors go to the backend as stored where it keeps 16-bit floats (tensorFromStored: the 16-bit
 * array is the only host copy), else are decoded piece by piece (decodeStreamed); float32 and
 * int32 bytes are read straight into the tensor's array. A float8 tensor is w = decode(q) · s with
 * the per-tensor scale of `scaleKey` (s = 1 without one, as in plain fp8_e4m3fn files): a backend
 * that keeps fp8 takes the codes and s (tensorFromFp8: the codes are the only host copy), any
 * other gets float32 decoded piece by piece and scaled in place. Other integer types (small
 * buffers such as ids) are decoded whole to int32. With `staging`, the 16-bit and fp8 bytes a
 * backend takes as stored are read into it rather than into a new array.
 */
export function readTensor(source: TensorSource, key: string, scaleKey?: string, staging?: StagingBuffer): tf.Tensor {
  const info = source.info(key);
  const shape = [...info.shape];
  const n = tf.util.sizeFromShape(shape);
  if (isFp8Dtype(info.dtype)) {
    const scale = scaleKey === undefined ? 1 : readScale(source, scaleKey);
    const readCodes = () => {
      const codes = staging ? staging.bytes(n) : new Uint8Array(n);
      source.readRawInto(key, codes);
      return codes;
    };
    return tensorFromFp8(readCodes, shape, fp8FormatOf(info.dtype), scale, () => scaleFp8(decodeStreamed(source, key, info.dtype, n), scale));
  }
  if (scaleKey !== undefined) throw new CheckpointError(`has a weight scale, but the weight is ${info.dtype}, not float8`, source.label, key);
  if (info.dtype === 'BF16' || info.dtype === 'F16') {
    const readBits = () => {
      const bytes = staging ? staging.bytes(2 * n) : new Uint8Array(2 * n);
      source.readRawInto(key, bytes);
      return new Uint16Array(bytes.buffer, 0, n);
    };
    return tensorFromStored(readBits, shape, info.dtype === 'BF16' ? 'bf16' : 'f16', () => decodeStreamed(source, key, info.dtype, n));
  }
  if (LITTLE_ENDIAN && (info.dtype === 'F32' || info.dtype === 'I32')) {
    const values = info.dtype === 'F32' ? new Float32Array(n) : new Int32Array(n);
    source.readRawInto(key, bytesOf(values));
    return tf.tensor(values, shape, info.dtype === 'F32' ? 'float32' : 'int32');
  }
  if (isFloatDtype(info.dtype)) return tf.tensor(decodeStreamed(source, key, info.dtype, n), shape, 'float32');
  return hostToTensor(source.read(key));
}

/** A decoded host tensor as a tfjs tensor (float32 or int32). */
export function hostToTensor(t: HostTensor): tf.Tensor {
  return tf.tensor(t.data, t.shape, t.dtype);
}
