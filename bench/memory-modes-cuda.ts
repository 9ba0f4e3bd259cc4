import * as tf from '@tensorflow/tfjs-core';
import { PRESETS, WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { selectBackend } from '../src/backend/select.js';
import { CudaBackend } from '../src/cuda/index.js';
import type { Precision } from '../src/kernels/registry.js';
import type { HasNamedWeights } from '../weights/load.js';
import { flag as arg, initializeFromPool } from './gpu-weights.js';

// npx tsx bench/memory-modes-cuda.ts [--modes resident,swap,offload] [--offload-blocks N]
//   [--frames 81 --height 720 --width 1280] [--text-len 512] [--layers N] [--precision bf16|fp32]
//   [--warmup 1] [--iters 2]          (WAN_CUDA_MEMORY_LIMIT=24g caps the pool: a smaller card)
// One denoising step with guidance (the cond and the uncond forward of one expert, then
// v_neg + g·(v − v_neg)) of Wan2.2-T2V-A14B's experts (random weights ~ N(0, 0.02) of the published
// shapes, made on the GPU; --layers shrinks each expert) in each memory mode:
//   resident  both experts on the GPU;
//   swap      one expert on the GPU, the other in pinned host memory (swap_ms: moving one to the
//             host and the other back, as at the boundary; the first time it pins host memory for
//             the expert leaving; swap_again_ms: the swap back, as in every later video, when both
//             have host copies);
//   offload   swap, and the first N blocks of the expert in use streamed from pinned host memory
//             (--offload-blocks N, default half the blocks).
// Prints one JSON line per mode: median and min wall time per step (output read back), the peak
// GPU memory held by tensors (weights included), what is held on the GPU before the step (weights,
// inputs) and in pinned host memory.
// A mode that runs out of memory prints its OutOfMemoryError's message in the line. Appends nothing.

const GIB = 2 ** 30;

/** Every weight of `model` from the random pool; each block i < streamed moved to pinned host memory as soon as it is made. */
function initialize(model: WanTransformer3DModel, backend: CudaBackend, seed: number, streamed: number): void {
  const own: HasNamedWeights = { namedWeights: () => new Map([['scale_shift_table', model.scaleShiftTable]]) };
  initializeFromPool(own, seed);
  let k = 1;
  for (const [name, child] of model.children()) {
    initializeFromPool(child, seed + k++);
    const block = /^blocks\.(\d+)$/.exec(name);
    if (block && Number(block[1]) < streamed) backend.offload([...child.namedParams().values()].map((p) => p.value.dataId));
  }
  model.offloadBlocks(streamed);
}

async function main(): Promise<void> {
  const preset = PRESETS['wan2.2-t2v-a14b'];
  const frames = Number(arg('frames', '81'));
  const height = Number(arg('height', '720'));
  const width = Number(arg('width', '1280'));
  const textLen = Number(arg('text-len', '512'));
  const warmup = Number(arg('warmup', '1'));
  const iters = Number(arg('iters', '2'));
  const layers = Number(arg('layers', String(preset.numLayers)));
  const streamed = Number(arg('offload-blocks', String(Math.floor(layers / 2))));
  const modes = arg('modes', 'resident,swap,offload').split(',');
  const precision = arg('precision', 'bf16') as Precision;
  await selectBackend('cuda', { precision });
  const backend = tf.backend();
  if (!(backend instanceof CudaBackend)) throw new Error("backend 'cuda' is not the CudaBackend");
  const config = { ...preset, numLayers: layers };
  const latent = [1, config.inChannels, Math.floor((frames - 1) / 4) + 1, height / 8, width / 8];
  const [pt, ph, pw] = config.patchSize;
  const tokens = (latent[2] / pt) * (latent[3] / ph) * (latent[4] / pw);

  for (const mode of modes) {
    if (mode !== 'resident' && mode !== 'swap' && mode !== 'offload') throw new Error(`--modes: unknown mode '${mode}' (resident, swap, offload)`);
    const n = mode === 'offload' ? streamed : 0;
    const line: Record<string, unknown> = {
      bench: 'memory-modes-cuda',
      mode,
      preset: 'wan2.2-t2v-a14b',
      layers,
      offload_blocks: n,
      dtype: precision,
      latents: latent,
      tokens,
      memory_limit_gib: backend.memoryLimit === undefined ? null : Number((backend.memoryLimit / GIB).toFixed(2)),
      device: backend.device.name,
    };
    const experts: WanTransformer3DModel[] = [];
    const inputs: tf.Tensor[] = [];
    try {
      // the low-noise expert first: under swap it goes to host memory before the other is made
      const low = new WanTransformer3DModel({ ...config, name: 'transformer_2' });
      experts.push(low);
      initialize(low, backend, 2000, n);
      if (mode !== 'resident') low.moveWeights('host');
      const high = new WanTransformer3DModel({ ...config, name: 'transformer' });
      experts.push(high);
      initialize(high, backend, 1000, n);
      const x = tf.randomNormal(latent, 0, 1, 'float32', 2);
      const t = tf.tensor1d([900]);
      const cond = tf.randomNormal([1, textLen, config.textDim], 0, 1, 'float32', 3);
      const uncond = tf.randomNormal([1, textLen, config.textDim], 0, 1, 'float32', 4);
      inputs.push(x, t, cond, uncond);
      backend.synchronize();
      line.held_gib = Number((backend.heldBytes / GIB).toFixed(2));
      line.host_pinned_gib = Number((backend.offloadStats().hostBytes / GIB).toFixed(2));
      backend.resetPeak();
      const times: number[] = [];
      for (let i = 0; i < warmup + iters; i++) {
        const start = performance.now();
        const vc = await high.forwardAsync(x, t, cond);
        const vu = await high.forwardAsync(x, t, uncond);
        const v = tf.tidy(() => tf.add(vu, tf.mul(4, tf.sub(vc, vu))));
        tf.dispose([vc, vu]);
        await v.data();
        v.dispose();
        const ms = performance.now() - start;
        if (i >= warmup) times.push(ms);
        console.error(`${mode}: step ${i + 1}/${warmup + iters}: ${ms.toFixed(0)} ms`);
      }
      times.sort((a, b) => a - b);
      line.step_ms = Number(times[Math.floor(times.length / 2)].toFixed(1));
      line.min_ms = Number(times[0].toFixed(1));
      line.peak_gib = Number((backend.memory().peakBytesInGPU / GIB).toFixed(2));
      line.demand_loads = backend.offloadStats().demandLoads;
      if (mode !== 'resident') {
        const start = performance.now();
        high.moveWeights('host');
        low.moveWeights('device');
        backend.synchronize(); // both streams: the copies to the host and back have landed
        line.swap_ms = Number((performance.now() - start).toFixed(1));
        // the next video's swaps: both experts have pinned host copies now, so a swap is one host → device copy
        const again = performance.now();
        low.moveWeights('host');
        high.moveWeights('device');
        backend.synchronize();
        line.swap_again_ms = Number((performance.now() - again).toFixed(1));
      }
    } catch (e) {
      line.error = (e as Error).message.split('\n')[0];
    } finally {
      tf.dispose(inputs);
      for (const m of experts) m.dispose();
    }
    console.log(JSON.stringify(line));
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
