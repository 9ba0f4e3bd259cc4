import * as tf from '@tensorflow/tfjs-core';
import { WanTransformer3DModel, type WanTransformerConfig } from '../layers/wan-transformer-3d-model.js';
import { selectBackend } from '../src/backend/select.js';
import { appendResults, benchOptions, runMain, stats, type TimingStats } from './harness.js';

// npm run bench:transformer [-- --runs N --backends cpu,wasm --no-record]
// Times one forward of a small Wan DiT (random weights) per backend and appends the figures to
// bench/RESULTS.md.

const CONFIG: Partial<WanTransformerConfig> = {
  numAttentionHeads: 4,
  attentionHeadDim: 64,
  ffnDim: 1024,
  numLayers: 4,
  inChannels: 16,
  outChannels: 16,
  textDim: 512,
};
const LATENT = [1, 16, 3, 16, 16];
const TEXT_LEN = 64;

async function timeBackend(backend: string, runs: number): Promise<TimingStats> {
  await selectBackend(backend);
  const model = new WanTransformer3DModel(CONFIG).initialize(1);
  const x = tf.randomNormal(LATENT, 0, 1, 'float32', 2);
  const t = tf.tensor1d([500]);
  const text = tf.randomNormal([1, TEXT_LEN, CONFIG.textDim ?? 4096], 0, 1, 'float32', 3);
  const once = async (): Promise<number> => {
    const start = performance.now();
    const out = model.forward(x, t, text);
    await out.data();
    out.dispose();
    return performance.now() - start;
  };
  await once();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await once());
  tf.dispose([x, t, text]);
  model.dispose();
  return stats(times);
}

async function main(): Promise<void> {
  const { runs, backends, record } = benchOptions();
  const D = (CONFIG.numAttentionHeads ?? 0) * (CONFIG.attentionHeadDim ?? 0);
  const tokens = (LATENT[2] * LATENT[3] * LATENT[4]) / 4;
  const shape = `D ${D} (${CONFIG.numAttentionHeads}×${CONFIG.attentionHeadDim}), ffn ${CONFIG.ffnDim}, ${CONFIG.numLayers} layers, latent [${LATENT}] = ${tokens} tokens, text ${TEXT_LEN}×${CONFIG.textDim}`;
  console.log(`Wan DiT forward, ${shape}; median of ${runs} after one warm-up`);
  const lines: string[] = [];
  for (const b of backends) {
    const r = await timeBackend(b, runs);
    const line = `${b}: ${r.median.toFixed(1)} ms per forward (min ${r.min.toFixed(1)} ms)`;
    console.log(line);
    lines.push(line);
  }
  if (!record) return;
  appendResults({
    title: 'transformer-cpu',
    command: `npm run bench:transformer -- --runs ${runs} --backends ${backends.join(',')}`,
    workload: `${shape}, random weights, median of ${runs} after one warm-up`,
    lines,
  });
}

runMain(main);
