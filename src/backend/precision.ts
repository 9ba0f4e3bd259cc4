import * as tf from '@tensorflow/tfjs-core';
import type { StoredFormat } from '../kernels/registry.js';

/** A backend that takes raw 16-bit floats as they are stored (backend 'cuda'). */
interface StoredUploader {
  writeStored(bits: Uint16Array, shape: number[], format: StoredFormat): tf.DataId;
}

function takesStored(b: tf.KernelBackend): b is tf.KernelBackend & StoredUploader {
  return typeof (b as Partial<StoredUploader>).writeStored === 'function';
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
