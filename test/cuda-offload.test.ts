// Offloading on backend 'cuda' (issue 17, items 4 and 5) against the host stand-in of the addon
// (test/cuda/mock-native.ts, whose copies on the copy stream land only when the compute stream
// waits for them): offload → prefetch keeps the DataId and the stored bits (f32, bf16, fp8 with its
// scale), device bytes drop by the buffer's size while offloaded, kernels and reads of an offloaded
// buffer, and nothing leaked.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import fc from 'fast-check';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tensorFromFp8, tensorFromStored } from '../src/backend/precision.js';
import type { CudaBackend } from '../src/cuda/index.js';
import { DeviceType } from '../src/cuda/native.js';
import { OutOfMemoryError } from '../src/errors.js';
import { decodeTensorBytes, float32ToBf16Bits } from '../weights/dtypes.js';
import type { MockNative } from './cuda/mock-native.js';
import { registerMockCuda } from './helpers/mock-cuda.js';

let native: MockNative;
let backend: CudaBackend;

beforeAll(async () => {
  ({ native, backend } = await registerMockCuda());
});

afterEach(() => {
  backend.memoryLimit = undefined;
  native.capacity = undefined;
});

/** The raw bytes of a tensor's device buffer (its storage as it is, no decoding). */
function rawBytes(t: tf.Tensor): Uint8Array {
  const out = new Uint8Array(t.size * backend.width(t));
  native.download(backend.ptr(t), out);
  return out;
}

/** n deterministic float32 values in [−3, 3). */
function values(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  return Float32Array.from({ length: n }, () => ((a = (a * 1664525 + 1013904223) >>> 0) / 2 ** 32) * 6 - 3);
}

/** A tensor of each storage type: f32 (an upload), bf16 (checkpoint bits), e4m3fn fp8 codes with a scale. */
function makeTensors(n: number, seed: number, scale: number): tf.Tensor[] {
  const v = values(n, seed);
  const bits = Uint16Array.from(v, float32ToBf16Bits);
  const codes = Uint8Array.from({ length: n }, (_, i) => (seed + 37 * i) & 0x7e); // no NaN codes (0x7f, 0xff)
  return [
    tf.tensor1d(v),
    tensorFromStored(bits, [n], 'bf16', () => v),
    tensorFromFp8(() => codes, [n], 'e4m3fn', scale, () => decodeTensorBytes('F8_E4M3', codes) as Float32Array),
  ];
}

describe('offload and prefetch', () => {
  it('keep the DataId, the storage type, the scale and every stored bit; device bytes drop by the buffer size meanwhile', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.nat(10_000), fc.double({ min: 2 ** -10, max: 64, noNaN: true }), (n, seed, scale) => {
        const tensors = makeTensors(n, seed, scale);
        expect(tensors.map((t) => backend.storage(t))).toEqual([DeviceType.F32, DeviceType.BF16, DeviceType.F8_E4M3]);
        const numTensors = tf.memory().numTensors;
        for (const t of tensors) {
          const bits = rawBytes(t);
          const decoded = t.dataSync().slice();
          const dataId = t.dataId;
          const held = backend.heldBytes;
          const buffers = native.liveBuffers;
          const hostBefore = backend.offloadStats().hostBytes;
          expect(backend.offload([dataId])).toBe(bits.length);
          expect(backend.isOffloaded(dataId)).toBe(true);
          expect(backend.heldBytes).toBe(held - bits.length);
          expect(native.liveBuffers).toBe(buffers - 1);
          expect(backend.offloadStats().hostBytes).toBe(hostBefore + bits.length);
          backend.prefetch([dataId]);
          expect(t.dataId).toBe(dataId);
          expect(backend.isOffloaded(dataId)).toBe(false);
          expect(backend.heldBytes).toBe(held);
          expect(rawBytes(t)).toEqual(bits);
          expect(t.dataSync()).toEqual(decoded);
          // offloaded a second time: the host copy is reused, no second copy to the host
          const toHost = native.copied.deviceToHost;
          backend.offload([dataId]);
          expect(native.copied.deviceToHost).toBe(toHost);
          expect(backend.heldBytes).toBe(held - bits.length);
          // a read of an offloaded buffer gives its values and leaves it offloaded
          expect(t.dataSync()).toEqual(decoded);
          expect(backend.isOffloaded(dataId)).toBe(true);
          expect(backend.heldBytes).toBe(held - bits.length);
        }
        expect(tf.memory().numTensors).toBe(numTensors);
        tf.dispose(tensors);
      }),
      { numRuns: 40 },
    );
    expect(backend.offloadStats().hostBytes).toBe(0);
    expect(native.liveHostBuffers).toBe(0);
  });

  it('a kernel reading a prefetched buffer waits for its copy; one reading an unprefetched offloaded buffer brings it back', () => {
    const a = tf.tensor1d(values(64, 1));
    const b = tf.tensor1d(values(64, 2));
    const expected = tf.add(a, b);
    const want = expected.dataSync().slice();
    backend.offload([a.dataId, b.dataId]);
    const demand = backend.offloadStats().demandLoads;
    backend.prefetch([a.dataId]);
    // the mock lands a copy only when the compute stream waits for it: a kernel reading `a` before that would see zeros
    const sum = tf.add(a, b);
    expect(sum.dataSync()).toEqual(want);
    expect(backend.offloadStats().demandLoads).toBe(demand + 1); // b, not a
    expect(backend.isOffloaded(b.dataId)).toBe(false);
    tf.dispose([a, b, expected, sum]);
  });

  it('disposing an offloaded or a prefetched tensor frees its device and host memory', () => {
    const held = backend.heldBytes;
    const buffers = native.liveBuffers;
    const [x, y, z] = makeTensors(100, 7, 0.5);
    backend.offload([x.dataId, y.dataId, z.dataId]);
    backend.prefetch([y.dataId]); // its copy not yet waited for
    tf.dispose([x, y, z]);
    expect(backend.heldBytes).toBe(held);
    expect(native.liveBuffers).toBe(buffers);
    expect(native.liveHostBuffers).toBe(0);
    expect(backend.offloadStats().hostBytes).toBe(0);
  });

  it('a prefetch that does not fit is an OutOfMemoryError naming it, and leaves the buffer offloaded', () => {
    const t = tf.tensor1d(values(256, 3));
    const want = t.dataSync().slice();
    backend.offload([t.dataId]);
    backend.memoryLimit = backend.heldBytes + 100;
    let err: unknown;
    try {
      backend.prefetch([t.dataId]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect((err as OutOfMemoryError).op).toBe('prefetch');
    expect((err as OutOfMemoryError).neededBytes).toBe(256 * 4);
    expect((err as OutOfMemoryError).availableBytes).toBe(100);
    expect(backend.isOffloaded(t.dataId)).toBe(true);
    backend.memoryLimit = undefined;
    expect(t.dataSync()).toEqual(want);
    t.dispose();
  });
});
