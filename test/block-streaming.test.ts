// Block streaming (offloadBlocks, issue 17, item 4) and out-of-memory in a forward (item 5) on
// backend 'cuda' against the host stand-in of the addon (test/cuda/mock-native.ts; its copies land
// only when the compute stream waits for them, so a block read before its prefetch finished shows).
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import type { CudaBackend } from '../src/cuda/index.js';
import { ConfigError, OutOfMemoryError } from '../src/errors.js';
import { hostToTensor } from '../weights/load.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import type { MockNative } from './cuda/mock-native.js';
import { registerMockCuda } from './helpers/mock-cuda.js';
import { fixtureDir } from './helpers/fixtures.js';

const T2V = fixtureDir('wan-transformer-t2v');

let native: MockNative;
let backend: CudaBackend;

beforeAll(async () => {
  ({ native, backend } = await registerMockCuda());
});

afterEach(() => {
  backend.memoryLimit = undefined;
});

/** The fixture's inputs: hidden states [1, 16, 3, 8, 12], timestep [1], text [1, Ltxt, 32]. */
function fixtureInputs(): tf.Tensor[] {
  const io = SafetensorsFile.open(path.join(T2V, 'io.safetensors'));
  try {
    return ['input.hidden_states', 'input.timestep', 'input.encoder_hidden_states'].map((k) => hostToTensor(io.read(k)));
  } finally {
    io.close();
  }
}

/** Device bytes of block i's weights. */
function blockBytes(model: WanTransformer3DModel, i: number): number {
  return backend.bytesOf([...model.blocks[i].namedParams().values()].map((p) => p.value.dataId));
}

/** One forward's output and the device peak above what was held before it. */
async function forward(model: WanTransformer3DModel, [x, t, text]: tf.Tensor[]): Promise<{ out: tf.Tensor; peak: number }> {
  backend.resetPeak();
  const out = await model.forwardAsync(x, t, text);
  return { out, peak: backend.memory().peakBytesInGPU };
}

describe('offloadBlocks', () => {
  it('gives exactly the resident output on the fixture DiT, streaming all blocks or one, and every block comes from its prefetch', async () => {
    const model = await WanTransformer3DModel.fromPretrained(path.join(T2V, 'transformer'));
    const inputs = fixtureInputs();
    try {
      const resident = (await forward(model, inputs)).out;
      const want = resident.dataSync();
      for (const n of [model.blocks.length, 1]) {
        model.offloadBlocks(n);
        const demand = backend.offloadStats().demandLoads;
        const tensors = tf.memory().numTensors;
        const held = backend.heldBytes;
        const { out } = await forward(model, inputs);
        expect(out.dataSync()).toEqual(want);
        expect(backend.offloadStats().demandLoads).toBe(demand);
        out.dispose();
        // the streamed blocks are back on the host, nothing else left behind
        expect(tf.memory().numTensors).toBe(tensors);
        expect(backend.heldBytes).toBe(held);
        model.offloadBlocks(0);
      }
      resident.dispose();
    } finally {
      tf.dispose(inputs);
      model.dispose();
    }
    expect(native.liveHostBuffers).toBe(0);
  });

  it('lowers the device peak by about the streamed blocks: at least (n − 2) blocks, at most n', async () => {
    const model = WanTransformer3DModel.withRandomWeights({ patchSize: [1, 2, 2], numAttentionHeads: 2, attentionHeadDim: 16, inChannels: 16, outChannels: 16, textDim: 32, ffnDim: 48, numLayers: 6, qkNorm: 'rms_norm_across_heads', crossAttnNorm: true }, { seed: 5 });
    const inputs = fixtureInputs();
    try {
      const block = blockBytes(model, 0);
      // the first forward makes the cached rotary tables, which later forwards hold throughout
      (await forward(model, inputs)).out.dispose();
      const resident = await forward(model, inputs);
      const want = resident.out.dataSync();
      resident.out.dispose();
      for (const n of [2, 4, 6]) {
        model.offloadBlocks(n);
        const streamed = await forward(model, inputs);
        expect(streamed.out.dataSync()).toEqual(want);
        const saved = resident.peak - streamed.peak;
        expect(saved).toBeGreaterThanOrEqual((n - 2) * block);
        expect(saved).toBeLessThanOrEqual(n * block);
        streamed.out.dispose();
      }
    } finally {
      tf.dispose(inputs);
      model.dispose();
    }
  });

  it('fromPretrained moves each streamed block to host memory as it loads: the device never holds them all', async () => {
    backend.resetPeak();
    const start = backend.heldBytes;
    const full = await WanTransformer3DModel.fromPretrained(path.join(T2V, 'transformer'));
    const all = backend.heldBytes - start;
    const block = blockBytes(full, 0);
    full.dispose();
    backend.resetPeak();
    const streamed = await WanTransformer3DModel.fromPretrained(path.join(T2V, 'transformer'), { offloadBlocks: 2 });
    try {
      expect(streamed.offloadedBlocks).toBe(2);
      expect(backend.heldBytes - start).toBe(all - 2 * block);
      // one tensor of a streamed block at a time: the load's peak is below everything less one block
      expect(backend.memory().peakBytesInGPU - start).toBeLessThan(all - block);
      expect(backend.offloadStats().hostBytes).toBe(2 * block);
    } finally {
      streamed.dispose();
    }
  });

  it('is refused out of range, and on a backend that holds tensors in host memory', async () => {
    const model = await WanTransformer3DModel.fromPretrained(path.join(T2V, 'transformer'));
    try {
      expect(() => model.offloadBlocks(3)).toThrow(/offloadBlocks: got 3, expected an integer in \[0, 2\]/);
      expect(() => model.offloadBlocks(1.5)).toThrow(ConfigError);
      await tf.setBackend('cpu');
      expect(() => model.offloadBlocks(1)).toThrow(/offloadBlocks: 1: backend 'cpu' keeps every tensor in host memory/);
      expect(() => model.offloadBlocks(0)).not.toThrow();
    } finally {
      await tf.setBackend('cuda');
      model.dispose();
    }
  });
});

describe('out of memory in a forward', () => {
  it('names what did not fit and the offloadBlocks that would; following the advice converges, and nothing leaks', async () => {
    const model = WanTransformer3DModel.withRandomWeights({ patchSize: [1, 2, 2], numAttentionHeads: 2, attentionHeadDim: 16, inChannels: 16, outChannels: 16, textDim: 32, ffnDim: 48, numLayers: 8, qkNorm: 'rms_norm_across_heads', crossAttnNorm: true }, { seed: 9 });
    const inputs = fixtureInputs();
    try {
      const block = blockBytes(model, 0);
      const held = backend.heldBytes;
      const { out, peak } = await forward(model, inputs);
      out.dispose();
      // room for everything but three blocks: streaming 5 (three saved beyond the two in flight) fits
      backend.memoryLimit = peak - 3 * block;
      const advised: number[] = [];
      for (;;) {
        const tensors = tf.memory().numTensors;
        try {
          (await model.forwardAsync(inputs[0], inputs[1], inputs[2])).dispose();
          break;
        } catch (e) {
          expect(e).toBeInstanceOf(OutOfMemoryError);
          const oom = e as OutOfMemoryError;
          expect(oom.argument).toBe('offloadBlocks');
          expect(oom.op).toMatch(/^[A-Z]\w+$|^prefetch$/);
          expect(oom.message).toMatch(/needs .* more, which does not fit \(WAN_CUDA_MEMORY_LIMIT is .*: .* in use, .* free\)/);
          const n = Number(/offloadBlocks: (\d+) \(--offload-blocks \1\)/.exec(oom.message)?.[1]);
          expect(n).toBeGreaterThan(model.offloadedBlocks);
          advised.push(n);
          expect(tf.memory().numTensors).toBe(tensors);
          expect(backend.heldBytes).toBe(held - (model.offloadedBlocks * block));
          model.offloadBlocks(n);
        }
        expect(advised.length).toBeLessThanOrEqual(8);
      }
      expect(advised.length).toBeGreaterThan(0);
      expect(model.offloadedBlocks).toBeLessThanOrEqual(5);
    } finally {
      backend.memoryLimit = undefined;
      tf.dispose(inputs);
      model.dispose();
    }
  });
});
