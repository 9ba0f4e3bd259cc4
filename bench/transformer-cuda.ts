import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { PRESETS, WanTransformer3DModel, type WanTransformerPreset } from '../layers/wan-transformer-3d-model.js';
import { selectBackend } from '../src/backend/select.js';
import { CudaBackend, cudnnInfo, type AttentionKernel } from '../src/cuda/index.js';
import type { Precision } from '../src/kernels/registry.js';
import { flag as arg, initializeFromPool, kernelProfile } from './gpu-weights.js';

// npx tsx bench/transformer-cuda.ts [--precision bf16|fp32] [--attention auto|cudnn|flash]
//   [--preset wan2.1-t2v-1.3b] [--frames 81 --height 480 --width 832] [--text-len 512] [--layers N]
//   [--warmup 1] [--iters 2] [--profile] [--json FILE]
// One forward of a Wan DiT (published config, random weights ~ N(0, 0.02) as the PyTorch yardstick
// torch_wan_ref.py draws them) on backend 'cuda': wall time per forward (median after warm-up,
// output read back) and the peak GPU memory held by tensors, weights included. --profile adds a
// per-kernel breakdown of one more forward (each kernel timed alone, so its total exceeds the wall
// time a little), grouped as attention / GEMM / norm + modulation / rope / the rest. Prints one
// JSON line; --json also writes it to FILE. Run the yardstick beside it on the same GPU:
//   python3 .device/bench/torch_wan_ref.py --preset wan2.1-1.3b --dtype bf16

async function main(): Promise<void> {
  const presetName = arg('preset', 'wan2.1-t2v-1.3b') as WanTransformerPreset;
  const preset = PRESETS[presetName];
  if (!preset) throw new Error(`unknown preset ${presetName}; one of ${Object.keys(PRESETS).join(', ')}`);
  const frames = Number(arg('frames', '81'));
  const height = Number(arg('height', '480'));
  const width = Number(arg('width', '832'));
  const textLen = Number(arg('text-len', '512'));
  const warmup = Number(arg('warmup', '1'));
  const iters = Number(arg('iters', '2'));
  const layers = process.argv.includes('--layers') ? Number(arg('layers', '0')) : preset.numLayers;
  const jsonFile = process.argv.includes('--json') ? arg('json', '') : undefined;

  const precision = arg('precision', 'bf16') as Precision;
  const attentionKernel = arg('attention', 'auto') as AttentionKernel;
  await selectBackend('cuda', { precision, attention: attentionKernel });
  const backend = tf.backend();
  if (!(backend instanceof CudaBackend)) throw new Error("backend 'cuda' is not the CudaBackend");
  const config = { ...preset, numLayers: layers };
  const model = new WanTransformer3DModel(config);
  const t0 = performance.now();
  initializeFromPool(model, 1);
  const initMs = performance.now() - t0;
  const stride = config.inChannels === 48 ? 16 : 8;
  const latent = [1, config.inChannels, Math.floor((frames - 1) / 4) + 1, height / stride, width / stride];
  const [pt, ph, pw] = config.patchSize;
  const tokens = (latent[2] / pt) * (latent[3] / ph) * (latent[4] / pw);
  const x = tf.randomNormal(latent, 0, 1, 'float32', 2);
  const t = tf.tensor1d([500]);
  const ctx = tf.randomNormal([1, textLen, config.textDim], 0, 1, 'float32', 3);
  const weightBytes = (tf.memory() as tf.MemoryInfo & { numBytesInGPU: number }).numBytesInGPU;
  backend.resetPeak();

  const times: number[] = [];
  for (let i = 0; i < warmup + iters; i++) {
    const start = performance.now();
    const out = model.forward(x, t, ctx);
    await out.data();
    const ms = performance.now() - start;
    out.dispose();
    if (i >= warmup) times.push(ms);
    console.error(`forward ${i + 1}/${warmup + iters}: ${ms.toFixed(0)} ms`);
  }
  const mem = tf.memory() as tf.MemoryInfo & { peakBytesInGPU: number; numBytesInGPUAllocated: number };
  const profile = process.argv.includes('--profile') ? await kernelProfile(() => model.forward(x, t, ctx)) : undefined;
  times.sort((a, b) => a - b);
  const dim = config.numAttentionHeads * config.attentionHeadDim;
  const flops = layers * (2 * tokens * (4 * dim * dim + 2 * dim * config.ffnDim) + 2 * (textLen * 2 * dim * dim) + 4 * tokens * tokens * dim + 4 * tokens * textLen * dim);
  const median = times[Math.floor(times.length / 2)];
  const result = {
    bench: 'transformer-cuda',
    preset: presetName,
    layers,
    dtype: precision,
    attention: attentionKernel,
    cudnn: cudnnInfo().available ? cudnnInfo().version : `unavailable: ${cudnnInfo().error}`,
    latents: latent,
    tokens,
    median_ms: Number(median.toFixed(1)),
    min_ms: Number(times[0].toFixed(1)),
    tflops: Number((flops / (median / 1000) / 1e12).toFixed(1)),
    peak_gib: Number((mem.peakBytesInGPU / 2 ** 30).toFixed(2)),
    weights_gib: Number((weightBytes / 2 ** 30).toFixed(2)),
    pool_reserved_gib: Number((mem.numBytesInGPUAllocated / 2 ** 30).toFixed(2)),
    init_ms: Math.round(initMs),
    device: backend.device.name,
    node: process.version,
    ...(profile ? { profile_layers: layers, profile_total_ms: profile.totalMs, profile_groups_ms: profile.groups, profile_kernels: profile.kernels.slice(0, 16) } : {}),
  };
  console.log(JSON.stringify(result));
  if (jsonFile) fs.writeFileSync(jsonFile, JSON.stringify(result) + '\n');
  tf.dispose([x, t, ctx]);
  model.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
