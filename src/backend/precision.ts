import * as tf from '@tensorflow/tfjs-core';
import type { Fp8Format, StoredFormat } from '../kernels/registry.js';

/**
 * A backend that takes raw 16-bit floats as they are stored (backend 'cuda'). It keeps no reference to
 * `bits` once writeStored returns (the loader reuses that buffer for the next tensor); so for writeFp8's codes.
 */
interface StoredUploader {
  writeStored(bits: Uint16Array, shape: number[], format: StoredFormat): tf.DataId;
}

function takesStored(b: tf.KernelBackend): b is tf.KernelBackend & StoredUploader {
  return typeof (b as Partial<StoredUploader>).writeStored === 'function';
}

/** A backend that keeps float8 codes with their per-tensor scale as stored (backend 'cuda' with an addon that dequantizes them). */
interface Fp8Uploader {
  /** Whether it can keep fp8 now (false: the loader dequantizes on the host). */
  readonly keepsFp8: boolean;
  writeFp8(codes: Uint8Array, shape: number[], format: Fp8Format, scale: number): tf.DataId;
}

function takesFp8(b: tf.KernelBackend): b is tf.KernelBackend & Fp8Uploader {
  const u = b as Partial<Fp8Uploader>;
  return typeof u.writeFp8 === 'function' && u.keepsFp8 === true;
}

/**
 * A float32 tensor from a checkpoint's raw 16-bit floats. A backend that stores bfloat16 takes the
 * bits as they are (no float32 copy on the host: it keeps or converts them on the device under its
 * precision policy); any other backend gets `decode()`'s float32 values. `bits` is a buffer or a
 * function that reads it, so that a backend taking float32 never holds the 16-bit copy beside it.
 */
export function tensorFromStored(bits: Uint16Array | (() => Uint16Array), shape: number[], format: StoredFormat, decode: () => Float32Array): tf.Tensor {
  const backend = tf.backend();
  if (takesStored(backend)) {
    const stored = typeof bits === 'function' ? bits() : bits;
    return tf.engine().makeTensorFromDataId(backend.writeStored(stored, shape, format), shape, 'float32', backend);
  }
  return tf.tensor(decode(), shape, 'float32');
}

/**
 * A float32 tensor of value w = decode(q) · scale from a checkpoint's float8 codes q. A backend
 * that keeps fp8 takes the codes and the scale as they are (1 byte an element, no float32 copy on
 * the host or the device); any other backend gets `decode()`'s float32 values. `codes` is a
 * function that reads them, so that a backend taking float32 never holds them beside its values.
 */
export function tensorFromFp8(codes: () => Uint8Array, shape: number[], format: Fp8Format, scale: number, decode: () => Float32Array): tf.Tensor {
  const backend = tf.backend();
  if (takesFp8(backend)) return tf.engine().makeTensorFromDataId(backend.writeFp8(codes(), shape, format, scale), shape, 'float32', backend);
  return tf.tensor(decode(), shape, 'float32');
}
