// Host memory of a checkpoint load (issue 17, item 1): loadWeights reads one tensor's byte range
// at a time and releases it before the next. What is measured, per tensor, on backend cpu: the
// distinct host buffers the loader fills from the file (through TensorSource.readRawInto / readRaw
// / read, seen by a wrapper source) together with the buffer the backend keeps for the loaded
// tensor (a float32 decode of a bf16 tensor counts there), from the first read of that tensor
// until its slot receives it. The peak over tensors must stay within the largest tensor's host
// bytes + 10 %. Not seen: the per-piece decode temporaries of decodeStreamed (≤ 4 × READ_CHUNK_BYTES,
// garbage after each piece) and the header, read once at open.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { float32ToBf16Bits } from '../weights/dtypes.js';
import { READ_CHUNK_BYTES, loadWeights, type HasNamedWeights, type WeightSlot } from '../weights/load.js';
import { SafetensorsFile, writeSafetensors } from '../weights/safetensors.js';
import { CountingSource } from './helpers/counting-source.js';

const SHAPES: Record<string, number[]> = { big32: [1024, 2048], bigBf16: [1536, 2048], half: [300], small: [64] };

function values(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  return Float32Array.from({ length: n }, () => ((a = (a * 1664525 + 1013904223) >>> 0) / 2 ** 32) * 4 - 2);
}

let dir: string;
let file: string;
const data: Record<string, Float32Array> = {};

beforeAll(async () => {
  await tf.setBackend('cpu');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-stream-'));
  file = path.join(dir, 'model.safetensors');
  const dtypes = { big32: 'F32', bigBf16: 'BF16', half: 'F16', small: 'F32' } as const;
  Object.entries(SHAPES).forEach(([k, s], i) => (data[k] = values(s[0] * (s[1] ?? 1), i + 1)));
  writeSafetensors(file, Object.fromEntries(Object.entries(SHAPES).map(([k, shape]) => [k, { shape, data: data[k], dtype: dtypes[k as keyof typeof dtypes] }])));
});

afterAll(() => fs.rmSync(dir, { recursive: true }));

describe('loadWeights streams tensor by tensor', () => {
  it('holds at most the largest tensor + 10 % of host memory on backend cpu (bf16 decoded to float32 counted)', () => {
    const source = new CountingSource(SafetensorsFile.open(file));
    const cpu = tf.backend() as MathBackendCPU;
    const held = new Map<string, number>();
    const loaded = new Map<string, tf.Tensor>();
    const slots = new Map<string, WeightSlot>(
      Object.entries(SHAPES).map(([name, shape]) => [
        name,
        {
          shape,
          assign(value: tf.Tensor) {
            // the backend's array for the tensor, plus every buffer read for it; counted once each
            const backing = cpu.data.get(value.dataId).values as Float32Array;
            const live = new Set([...source.buffers, backing.buffer]);
            held.set(name, [...live].reduce((a, b) => a + b.byteLength, 0));
            source.buffers.clear();
            loaded.set(name, value);
          },
          read: () => undefined,
        },
      ]),
    );
    const model: HasNamedWeights = { namedWeights: () => slots };
    loadWeights(model, source);
    source.close();
    // host bytes of each tensor as the backend holds it: float32, 4 bytes an element
    const tensorBytes = (name: string) => SHAPES[name].reduce((a, d) => a * d, 1) * 4;
    const largest = Math.max(...Object.keys(SHAPES).map(tensorBytes));
    const peak = Math.max(...held.values());
    expect(peak).toBeLessThanOrEqual(1.1 * largest);
    // float32 is read straight into the tensor's array; bf16 adds one read buffer only
    expect(held.get('big32')).toBe(tensorBytes('big32'));
    expect(held.get('bigBf16')).toBe(tensorBytes('bigBf16') + READ_CHUNK_BYTES);
    expect(Array.from(loaded.get('big32')!.dataSync().subarray(0, 5))).toEqual(Array.from(data.big32.subarray(0, 5)));
    const bf16 = loaded.get('bigBf16')!.dataSync();
    for (const i of [0, 1, READ_CHUNK_BYTES / 2 - 1, READ_CHUNK_BYTES / 2, bf16.length - 1]) {
      expect(new Uint32Array(new Float32Array([bf16[i]]).buffer)[0]).toBe((float32ToBf16Bits(data.bigBf16[i]) << 16) >>> 0);
    }
    expect(loaded.get('half')!.dataSync()[0]).toBeCloseTo(data.half[0], 2);
    tf.dispose([...loaded.values()]);
    console.log(`host peak of the load: ${peak} bytes, largest tensor ${largest} bytes (${(peak / largest).toFixed(3)}×)`);
  });
});
