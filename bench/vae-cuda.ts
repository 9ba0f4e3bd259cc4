import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { AutoencoderKLWan } from '../layers/autoencoder-kl-wan.js';
import { selectBackend } from '../src/backend/select.js';
import { CudaBackend, cudnnInfo } from '../src/cuda/index.js';
import type { Precision } from '../src/kernels/registry.js';
import { predictVaeDecodePeak } from '../src/pipeline/vae-budget.js';
import { runMain } from './harness.js';
import { flag, initializeFromPool, kernelProfile, registerHostTimedCuda } from './gpu-weights.js';

// npx tsx bench/vae-cuda.ts [--precision bf16|fp32] [--frames 81 --height 480 --width 832]
//   [--tile N [--tile-overlap M]] [--warmup 1] [--iters 2] [--profile] [--host-profile] [--plans] [--json FILE]
// The Wan2.1 VAE decode (published config, random weights N(0, 0.02), frame by frame with the
// causal cache) of a random latent [1, 16, (frames−1)/4+1, H/8, W/8] on backend 'cuda': wall time
// (median after warm-up, until the video is complete on the GPU, as the yardstick times it) and
// the peak GPU memory held by tensors, weights included, and the host time until decode() returns
// (issue_ms: the work queued). --tile N decodes in spatial tiles of N×N output pixels (decode's
// tileSize; --tile-overlap its tileOverlap, default N/4) and reports predicted_gib, the bound of
// predictVaeDecodePeak (src/pipeline/vae-budget.ts) for the same decode, beside peak_gib. --profile adds the kernel time by group for one more decode;
// --host-profile the host time inside each addon function over the timed decodes; conv_plans counts the
// cuDNN convolution plans by API (WAN_CUDNN_CONV=fused|graph|legacy picks it), --plans lists them. Prints one JSON line;
// --json also writes it to FILE. Its yardstick, on the same GPU:
//   python3 bench/torch/wan_vae_ref.py --dtype bf16 --frames 81 --height 480 --width 832

/**
 * The cuDNN convolution plans by kind ("graph", "graph+bias+residual", "legacy bf16", …): how many, how many
 * refused, how many run kernels compiled at run time, and the time spent planning; --plans prints every line.
 */
function convPlanSummary(text: string): Record<string, { plans: number; refused: number; runtimeCompiled: number; planningMs: number }> {
  const kinds: Record<string, { plans: number; refused: number; runtimeCompiled: number; planningMs: number }> = {};
  for (const line of text.split('\n').filter((l) => l.length > 0)) {
    if (process.argv.includes('--plans')) console.error(line);
    const kind = /\] ((?:graph|legacy)[^:]*):/.exec(line)?.[1] ?? '?';
    const k = (kinds[kind] ??= { plans: 0, refused: 0, runtimeCompiled: 0, planningMs: 0 });
    k.plans++;
    if (line.includes(': refused')) k.refused++;
    if (line.includes('runtime-compiled')) k.runtimeCompiled++;
    k.planningMs = Number((k.planningMs + Number(/planned in ([\d.]+) ms/.exec(line)?.[1] ?? 0)).toFixed(1));
  }
  return kinds;
}

runMain(async () => {
  const precision = flag('precision', 'bf16') as Precision;
  const frames = Number(flag('frames', '81'));
  const height = Number(flag('height', '480'));
  const width = Number(flag('width', '832'));
  const warmup = Number(flag('warmup', '1'));
  const iters = Number(flag('iters', '2'));
  const tile = process.argv.includes('--tile') ? Number(flag('tile', '0')) : undefined;
  const tileOverlap = process.argv.includes('--tile-overlap') ? Number(flag('tile-overlap', '0')) : undefined;
  const decodeOptions = tile === undefined ? {} : { tileSize: tile, tileOverlap };
  const host = process.argv.includes('--host-profile') ? registerHostTimedCuda() : undefined;
  await selectBackend('cuda', { precision });
  const backend = tf.backend();
  if (!(backend instanceof CudaBackend)) throw new Error("backend 'cuda' is not the CudaBackend");
  const vae = new AutoencoderKLWan('wan2.1');
  initializeFromPool(vae, 1);
  const latent = [1, 16, Math.floor((frames - 1) / 4) + 1, height / 8, width / 8];
  const z = tf.randomNormal(latent, 0, 1, 'float32', 2);
  const weightBytes = backend.memory().numBytesInGPU;
  backend.resetPeak();
  const times: number[] = [];
  const issued: number[] = [];
  let shape: number[] = [];
  for (let i = 0; i < warmup + iters; i++) {
    if (i === warmup) host?.reset();
    const start = performance.now();
    const video = vae.decode(z, decodeOptions);
    if (i >= warmup) issued.push(performance.now() - start);
    backend.synchronize();
    const ms = performance.now() - start;
    shape = video.shape;
    video.dispose();
    if (i >= warmup) times.push(ms);
    console.error(`decode ${i + 1}/${warmup + iters}: ${ms.toFixed(0)} ms`);
  }
  const peak = backend.memory().peakBytesInGPU;
  const predicted = predictVaeDecodePeak(vae.config, { batch: 1, frames: latent[2], height: latent[3], width: latent[4] }, { bytesPerElement: precision === 'bf16' ? 2 : 4, tileSize: tile }).bytes;
  const hostCalls = host?.byFunction().map(([n, ms, calls]): [string, number, number] => [n, Number((ms / iters).toFixed(2)), calls / iters]);
  const profile = process.argv.includes('--profile') ? await kernelProfile(() => vae.decode(z)) : undefined;
  const plans = convPlanSummary(backend.native.convPlans() ?? '');
  times.sort((a, b) => a - b);
  const result = {
    bench: 'vae-cuda',
    vae: 'wan2.1',
    dtype: precision,
    latents: latent,
    ...(tile === undefined ? {} : { tile, tile_overlap: tileOverlap ?? Math.floor(tile / 4) }),
    video: shape,
    median_ms: Number(times[Math.floor(times.length / 2)].toFixed(1)),
    min_ms: Number(times[0].toFixed(1)),
    issue_ms: Number(issued.sort((a, b) => a - b)[Math.floor(issued.length / 2)].toFixed(1)),
    peak_gib: Number((peak / 2 ** 30).toFixed(2)),
    peak_bytes: peak,
    predicted_gib: Number((predicted / 2 ** 30).toFixed(2)),
    predicted_bytes: predicted,
    weights_gib: Number((weightBytes / 2 ** 30).toFixed(3)),
    cudnn: cudnnInfo().available ? cudnnInfo().version : `unavailable: ${cudnnInfo().error}`,
    device: backend.device.name,
    conv_api: process.env.WAN_CUDNN_CONV ?? 'fused',
    conv_plans: plans,
    ...(hostCalls ? { host_ms_per_decode: hostCalls.slice(0, 12) } : {}),
    ...(profile ? { profile_total_ms: profile.totalMs, profile_groups_ms: profile.groups, profile_kernels: profile.kernels.slice(0, 16) } : {}),
  };
  console.log(JSON.stringify(result));
  const json = process.argv.includes('--json') ? flag('json', '') : '';
  if (json) fs.writeFileSync(json, JSON.stringify(result) + '\n');
  z.dispose();
  vae.dispose();
});
