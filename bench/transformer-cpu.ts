import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { WanTransformer3DModel, type WanTransformerConfig } from '../layers/wan-transformer-3d-model.js';
import { selectBackend } from '../src/backend/select.js';

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

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function timeBackend(backend: string, runs: number): Promise<{ median: number; min: number }> {
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
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)], min: times[0] };
}

async function main(): Promise<void> {
  const runs = Number(arg('runs') ?? 3);
  const backends = (arg('backends') ?? 'cpu,wasm').split(',');
  const D = (CONFIG.numAttentionHeads ?? 0) * (CONFIG.attentionHeadDim ?? 0);
  const tokens = (LATENT[2] * LATENT[3] * LATENT[4]) / 4;
  const shape = `D ${D} (${CONFIG.numAttentionHeads}×${CONFIG.attentionHeadDim}), ffn ${CONFIG.ffnDim}, ${CONFIG.numLayers} layers, latent [${LATENT}] = ${tokens} tokens, text ${TEXT_LEN}×${CONFIG.textDim}`;
  console.log(`Wan DiT forward, ${shape}; median of ${runs} after one warm-up`);
  const lines: string[] = [];
  for (const b of backends) {
    const r = await timeBackend(b, runs);
    const line = `${b}: ${r.median.toFixed(1)} ms per forward (min ${r.min.toFixed(1)} ms)`;
    console.log(line);
    lines.push(`- ${line}`);
  }
  if (process.argv.includes('--no-record')) return;
  const file = path.join(path.dirname(fileURLToPath(import.meta.url)), 'RESULTS.md');
  if (!fs.existsSync(file)) fs.writeFileSync(file, '# Benchmark results (appended by the bench/ scripts)\n');
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  const entry = [
    '',
    `## ${new Date().toISOString().slice(0, 10)} transformer-cpu`,
    `- machine: ${cpu}, ${os.cpus().length} cores, node ${process.version}`,
    `- command: npm run bench:transformer -- --runs ${runs} --backends ${backends.join(',')}`,
    `- workload: ${shape}, random weights, median of ${runs} after one warm-up`,
    ...lines,
    '',
  ].join('\n');
  fs.appendFileSync(file, entry);
  console.log(`appended to ${file}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
