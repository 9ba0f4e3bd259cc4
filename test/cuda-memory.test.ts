// Memory of backend 'cuda' against the host stand-in of the addon (test/cuda/mock-native.ts):
// WAN_CUDA_MEMORY_LIMIT parsing and the cap it puts on the bytes the backend holds, and an
// allocation that fails (over the cap, or the addon's "out of GPU memory") as an OutOfMemoryError
// with no tensor or device buffer left behind.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Linear } from '../layers/linear.js';
import { CudaBackend, memoryLimitFromEnv } from '../src/cuda/index.js';
import { parseMemorySize } from '../src/cuda/backend.js';
import { BackendError, OutOfMemoryError } from '../src/errors.js';
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
  delete process.env.WAN_CUDA_MEMORY_LIMIT;
});

describe('WAN_CUDA_MEMORY_LIMIT', () => {
  it('reads sizes with binary units and rejects anything else naming the variable', () => {
    expect(parseMemorySize('24g', 'V')).toBe(24 * 2 ** 30);
    expect(parseMemorySize('40GiB', 'V')).toBe(40 * 2 ** 30);
    expect(parseMemorySize('512m', 'V')).toBe(512 * 2 ** 20);
    expect(parseMemorySize('1.5g', 'V')).toBe(1.5 * 2 ** 30);
    expect(parseMemorySize('123456', 'V')).toBe(123456);
    for (const bad of ['lots', '-1g', '0', '24x', '', '1e9']) expect(() => parseMemorySize(bad, 'WAN_CUDA_MEMORY_LIMIT')).toThrow(/WAN_CUDA_MEMORY_LIMIT must be a memory size/);
    process.env.WAN_CUDA_MEMORY_LIMIT = '24g';
    expect(memoryLimitFromEnv()).toBe(24 * 2 ** 30);
    process.env.WAN_CUDA_MEMORY_LIMIT = '24 apples';
    expect(() => memoryLimitFromEnv()).toThrow(BackendError);
    process.env.WAN_CUDA_MEMORY_LIMIT = '';
    expect(memoryLimitFromEnv()).toBeUndefined();
  });

  it('caps the bytes the backend holds: an upload past it is an OutOfMemoryError, and freeing makes room again', () => {
    const base = backend.heldBytes;
    backend.memoryLimit = base + 1000;
    const a = tf.zeros([200]); // 800 bytes
    expect(backend.heldBytes).toBe(base + 800);
    let err: unknown;
    try {
      tf.tensor(new Float32Array(100));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OutOfMemoryError);
    const oom = err as OutOfMemoryError;
    expect(oom.neededBytes).toBe(400);
    expect(oom.availableBytes).toBe(200);
    expect(oom.inUseBytes).toBe(base + 800);
    expect(oom.message).toMatch(/WAN_CUDA_MEMORY_LIMIT is/);
    a.dispose();
    expect(backend.heldBytes).toBe(base);
    tf.tensor(new Float32Array(100)).dispose();
  });
});

describe('out of memory in a forward', () => {
  /** Runs a tidy'd Linear forward under each capacity from what is held up to what the forward needs. */
  function sweep(setCap: (cap: number) => void, cause: RegExp): number {
    const lin = new Linear({ inFeatures: 24, outFeatures: 40 }).initialize(3);
    const x = tf.randomUniform([6, 24]);
    const tensors = tf.memory().numTensors;
    const buffers = native.liveBuffers;
    const held = backend.heldBytes;
    let failures = 0;
    for (let extra = 0; extra <= 4096; extra += 16) {
      setCap(held + extra);
      try {
        tf.tidy(() => tf.sum(lin.forward(x, 'gelu_tanh'))).dispose();
      } catch (e) {
        expect(e).toBeInstanceOf(OutOfMemoryError);
        const oom = e as OutOfMemoryError;
        expect(oom.op).toMatch(/^[A-Z]\w+$/); // the kernel's name
        expect(oom.neededBytes).toBeGreaterThan(0);
        expect(oom.message).toMatch(/needs .* more, which does not fit .* in use, .* free/);
        expect(oom.message).toMatch(/width×height or fewer numFrames/);
        expect(oom.message).toMatch(/tileSize, tileOverlap/);
        expect(oom.message).toMatch(cause);
        failures++;
      }
      expect(tf.memory().numTensors).toBe(tensors);
      expect(native.liveBuffers).toBe(buffers);
      expect(backend.heldBytes).toBe(held);
    }
    setCap(Infinity);
    lin.dispose();
    x.dispose();
    return failures;
  }

  it('the addon failing an allocation ("out of GPU memory") leaves no tensor or buffer behind at any point of the forward', () => {
    const failures = sweep((cap) => (native.capacity = cap === Infinity ? undefined : native.memory().inUse - backend.heldBytes + cap), /out of GPU memory: could not allocate/);
    expect(failures).toBeGreaterThan(3);
  });

  it('so does WAN_CUDA_MEMORY_LIMIT, which names itself', () => {
    const failures = sweep((cap) => (backend.memoryLimit = cap === Infinity ? undefined : cap), /WAN_CUDA_MEMORY_LIMIT is/);
    expect(failures).toBeGreaterThan(3);
  });
});
