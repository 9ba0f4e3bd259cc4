// Memory modes of WanPipeline on backend 'cuda' (issue 17, item 4) against the host stand-in of the
// addon: residency 'swap' on the two-expert fixture gives the frames of 'both' with the idle expert
// in pinned host memory, swapped once at the boundary; offloadBlocks through fromPretrained; the
// planner's choice when the options are left out; refusals on a backend without device memory.
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { offloadingBackend } from '../src/backend/offload.js';
import type { CudaBackend } from '../src/cuda/index.js';
import { ConfigError, OutOfMemoryError } from '../src/errors.js';
import { modelMemoryInput } from '../src/pipeline/memory-plan.js';
import { readModelIndex } from '../src/pipeline/model-index.js';
import { readPipelineSpec } from '../src/pipeline/pipeline-spec.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { hostToTensor } from '../weights/load.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import type { MockNative } from './cuda/mock-native.js';
import { registerMockCuda } from './helpers/mock-cuda.js';
import { fixtureDir } from './helpers/fixtures.js';

const A14B = fixtureDir('pipeline-a14b');

let native: MockNative;
let backend: CudaBackend;

beforeAll(async () => {
  ({ native, backend } = await registerMockCuda());
});

afterEach(() => {
  backend.memoryLimit = undefined;
});

/** The fixture's call (4 steps, guidance 4.0 / 3.0, the boundary after step 2) with its embeddings and initial latents. */
function fixtureCall(): { call: Parameters<WanPipeline['textToVideo']>[0]; inputs: tf.Tensor[] } {
  const io = SafetensorsFile.open(path.join(A14B, 'io.safetensors'));
  try {
    const [cond, uncond, latents] = ['input.prompt_embeds', 'input.negative_prompt_embeds', 'input.latents'].map((k) => hostToTensor(io.read(k)));
    return { call: { promptEmbeds: cond, negativePromptEmbeds: uncond, latents, height: 32, width: 48, numFrames: 5, numInferenceSteps: 4, guidanceScale: 4, guidanceScale2: 3 }, inputs: [cond, uncond, latents] };
  } finally {
    io.close();
  }
}

/** Device bytes of an expert's weights. */
function expertBytes(p: WanPipeline, i: 0 | 1): number {
  const m = p.experts[i]?.current;
  if (!(m instanceof WanTransformer3DModel)) throw new Error(`expert ${i} is not loaded`);
  return backend.bytesOf([...m.namedParams().values()].map((q) => q.value.dataId));
}

describe("residency 'swap'", () => {
  it("gives the frames of 'both', with the idle expert in host memory and one swap at the boundary", async () => {
    const held = backend.heldBytes;
    const { call, inputs } = fixtureCall();
    const both = await WanPipeline.fromPretrained(A14B, { residency: 'both', offloadBlocks: 0 });
    const bothHeld = backend.heldBytes - held;
    const low = expertBytes(both, 1);
    const high = expertBytes(both, 0);
    const want = await both.textToVideo(call);
    const frames = want.frames.dataSync().slice();
    want.frames.dispose();
    // a call leaves caches behind (rotary tables, filter layouts): compare after one
    const bothAfter = backend.heldBytes - held;
    both.dispose();
    const swap = await WanPipeline.fromPretrained(A14B, { residency: 'swap', offloadBlocks: 0 });
    try {
      expect(backend.heldBytes - held).toBe(bothHeld - low);
      expect(backend.offloadStats().hostBytes).toBe(low);
      const copied = native.copied.hostToDevice;
      const got = await swap.textToVideo(call);
      expect(got.frames.dataSync()).toEqual(frames);
      got.frames.dispose();
      // steps 1–2 on the high-noise expert, 3–4 on the low-noise one: one swap, the low-noise weights copied back once
      expect(native.copied.hostToDevice - copied).toBe(low);
      expect(backend.heldBytes - held).toBe(bothAfter - high);
      // the next video starts on the high-noise expert: one swap back, then the boundary
      const again = await swap.textToVideo(call);
      expect(again.frames.dataSync()).toEqual(frames);
      again.frames.dispose();
      expect(native.copied.hostToDevice - copied).toBe(low + high + low);
      expect(backend.offloadStats().demandLoads).toBe(0);
    } finally {
      swap.dispose();
      tf.dispose(inputs);
    }
    expect(backend.heldBytes).toBe(held);
    expect(native.liveHostBuffers).toBe(0);
  });

  it('streams blocks through fromPretrained with the same latents', async () => {
    const { call, inputs } = fixtureCall();
    const p = await WanPipeline.fromPretrained(A14B, { residency: 'both', offloadBlocks: 0 });
    const want = await p.generate(call);
    const latents = want.dataSync().slice();
    want.dispose();
    p.dispose();
    const streamed = await WanPipeline.fromPretrained(A14B, { residency: 'swap', offloadBlocks: 1 });
    try {
      const got = await streamed.generate(call);
      expect(got.dataSync()).toEqual(latents);
      got.dispose();
      expect(backend.offloadStats().demandLoads).toBe(0);
    } finally {
      streamed.dispose();
      tf.dispose(inputs);
    }
  });
});

describe('out of memory in a call', () => {
  it("with both experts resident names residency 'swap' when the idle expert's bytes cover the shortfall, and swap then fits; nothing leaks", async () => {
    const held = backend.heldBytes;
    const { call, inputs } = fixtureCall();
    const both = await WanPipeline.fromPretrained(A14B, { residency: 'both', offloadBlocks: 0 });
    try {
      const low = expertBytes(both, 1);
      (await both.generate(call)).dispose();
      backend.resetPeak();
      (await both.generate(call)).dispose();
      const peak = backend.memory().peakBytesInGPU;
      backend.memoryLimit = peak - Math.floor(low / 2);
      const tensors = tf.memory().numTensors;
      const before = backend.heldBytes;
      const err = await both.generate(call).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(OutOfMemoryError);
      const oom = err as OutOfMemoryError;
      expect(oom.argument).toBe('residency');
      expect(oom.message).toMatch(/needs .* more, which does not fit \(WAN_CUDA_MEMORY_LIMIT is .*: .* in use, .* free\)/);
      expect(oom.message).toMatch(/residency 'swap' \(--experts swap\) keeps the idle expert's .* in pinned host memory/);
      expect(tf.memory().numTensors).toBe(tensors);
      expect(backend.heldBytes).toBe(before);
    } finally {
      both.dispose();
    }
    const swap = await WanPipeline.fromPretrained(A14B, { residency: 'swap', offloadBlocks: 0 });
    try {
      (await swap.generate(call)).dispose();
    } finally {
      swap.dispose();
      backend.memoryLimit = undefined;
      tf.dispose(inputs);
    }
    expect(backend.heldBytes).toBe(held);
  });
});

describe('the planned mode', () => {
  it('is both experts resident when they fit, swap when only one does, and says why in one line', async () => {
    const index = readModelIndex(A14B);
    const input = modelMemoryInput(index, readPipelineSpec(index), { vae: true, textEncoder: false }, offloadingBackend()!);
    const roomy = await WanPipeline.fromPretrained(A14B);
    expect(roomy.memoryPlan).toMatchObject({ residency: 'both', offloadBlocks: 0, fits: true });
    expect(roomy.residency).toBe('both');
    roomy.dispose();
    // room for one expert and the rest of the default call, not two
    backend.memoryLimit = backend.heldBytes + input.otherBytes + Math.max(...input.expertBytes) + Math.min(...input.expertBytes) / 2;
    const tight = await WanPipeline.fromPretrained(A14B);
    try {
      expect(tight.memoryPlan).toMatchObject({ residency: 'swap', offloadBlocks: 0, fits: true });
      expect(tight.memoryPlan?.reason).toMatch(/^memory: residency 'swap': both experts \(.*\) do not fit the .* free; one does/);
      expect(tight.memoryPlan?.reason).not.toMatch(/\n/);
      expect(tight.residency).toBe('swap');
    } finally {
      tight.dispose();
    }
  });

  it('on a backend that holds tensors in host memory: nothing planned, swap and streaming refused', async () => {
    await tf.setBackend('cpu');
    try {
      const p = await WanPipeline.fromPretrained(A14B);
      expect(p.memoryPlan).toBeUndefined();
      expect(p.residency).toBe('both');
      p.dispose();
      await expect(WanPipeline.fromPretrained(A14B, { residency: 'swap' })).rejects.toThrow(ConfigError);
      await expect(WanPipeline.fromPretrained(A14B, { offloadBlocks: 1 })).rejects.toThrow(/offloadBlocks: 1: backend 'cpu' keeps every tensor in host memory/);
    } finally {
      await tf.setBackend('cuda');
    }
  });
});
