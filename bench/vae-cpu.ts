import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { AutoencoderKLWan, type AutoencoderKLWanConfig } from '../layers/autoencoder-kl-wan.js';
import { selectBackend } from '../src/backend/select.js';

// npm run bench:vae [-- --runs N --backends cpu,wasm --no-record]
// Times encode and decode of two small Wan VAEs (random weights; the shapes of the parity fixtures)
// per backend and appends the figures to bench/RESULTS.md.

interface Workload {
  name: string;
  config: Partial<AutoencoderKLWanConfig>;
  video: [number, number, number, number, number];
}

const WORKLOADS: Workload[] = [
  {
    name: 'Wan2.1 layout (base 8, z 4, dim_mult [1,2,2,2], 1 res block)',
    config: { baseDim: 8, zDim: 4, dimMult: [1, 2, 2, 2], numResBlocks: 1, latentsMean: [0, 0, 0, 0], latentsStd: [1, 1, 1, 1] },
    video: [1, 3, 9, 32, 32],
  },
  {
    name: 'Wan2.2 layout (base 8, decoder 12, z 6, patch 2, residual, 1 res block)',
    config: {
      baseDim: 8,
      decoderBaseDim: 12,
      zDim: 6,
      dimMult: [1, 2, 2, 2],
      numResBlocks: 1,
      isResidual: true,
      inChannels: 12,
      outChannels: 12,
      patchSize: 2,
      latentsMean: [0, 0, 0, 0, 0, 0],
      latentsStd: [1, 1, 1, 1, 1, 1],
    },
    video: [1, 3, 5, 64, 64],
  },
];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function stats(times: number[]): { median: number; min: number } {
  const t = [...times].sort((a, b) => a - b);
  return { median: t[Math.floor(t.length / 2)], min: t[0] };
}

async function timeWorkload(w: Workload, runs: number): Promise<{ encode: { median: number; min: number }; decode: { median: number; min: number }; latent: number[] }> {
  const vae = new AutoencoderKLWan(w.config).initialize(1);
  const video = tf.randomUniform(w.video, -1, 1, 'float32', 2);
  const enc: number[] = [];
  const dec: number[] = [];
  let latent: number[] = [];
  for (let i = 0; i <= runs; i++) {
    let start = performance.now();
    const { mean, logvar } = vae.encode(video);
    await mean.data();
    const encMs = performance.now() - start;
    start = performance.now();
    const out = vae.decode(mean);
    await out.data();
    const decMs = performance.now() - start;
    latent = mean.shape;
    tf.dispose([mean, logvar, out]);
    if (i > 0) {
      enc.push(encMs);
      dec.push(decMs);
    }
  }
  video.dispose();
  vae.dispose();
  return { encode: stats(enc), decode: stats(dec), latent };
}

async function main(): Promise<void> {
  const runs = Number(arg('runs') ?? 3);
  const backends = (arg('backends') ?? 'cpu,wasm').split(',');
  const lines: string[] = [];
  for (const b of backends) {
    await selectBackend(b);
    for (const w of WORKLOADS) {
      const r = await timeWorkload(w, runs);
      const line =
        `${b}, ${w.name}, video [${w.video}] ↔ latent [${r.latent}]: encode ${r.encode.median.toFixed(1)} ms (min ${r.encode.min.toFixed(1)}), ` +
        `decode ${r.decode.median.toFixed(1)} ms (min ${r.decode.min.toFixed(1)})`;
      console.log(line);
      lines.push(`- ${line}`);
    }
  }
  if (process.argv.includes('--no-record')) return;
  const file = path.join(path.dirname(fileURLToPath(import.meta.url)), 'RESULTS.md');
  if (!fs.existsSync(file)) fs.writeFileSync(file, '# Benchmark results (appended by the bench/ scripts)\n');
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  const entry = [
    '',
    `## ${new Date().toISOString().slice(0, 10)} vae-cpu`,
    `- machine: ${cpu}, ${os.cpus().length} cores, node ${process.version}`,
    `- command: npm run bench:vae -- --runs ${runs} --backends ${backends.join(',')}`,
    `- workload: AutoencoderKLWan encode (chunks of 1, then 4 frames) and decode (one latent frame at a time) of the parity-fixture shapes, random weights, median of ${runs} after one warm-up`,
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
