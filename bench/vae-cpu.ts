import * as tf from '@tensorflow/tfjs-core';
import { AutoencoderKLWan, type AutoencoderKLWanConfig } from '../layers/autoencoder-kl-wan.js';
import { selectBackend } from '../src/backend/select.js';
import { appendResults, benchOptions, runMain, stats, type TimingStats } from './harness.js';

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

async function timeWorkload(w: Workload, runs: number): Promise<{ encode: TimingStats; decode: TimingStats; latent: number[] }> {
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
  const { runs, backends, record } = benchOptions();
  const lines: string[] = [];
  for (const b of backends) {
    await selectBackend(b);
    for (const w of WORKLOADS) {
      const r = await timeWorkload(w, runs);
      const line =
        `${b}, ${w.name}, video [${w.video}] ↔ latent [${r.latent}]: encode ${r.encode.median.toFixed(1)} ms (min ${r.encode.min.toFixed(1)}), ` +
        `decode ${r.decode.median.toFixed(1)} ms (min ${r.decode.min.toFixed(1)})`;
      console.log(line);
      lines.push(line);
    }
  }
  if (!record) return;
  appendResults({
    title: 'vae-cpu',
    command: `npm run bench:vae -- --runs ${runs} --backends ${backends.join(',')}`,
    workload: `AutoencoderKLWan encode (chunks of 1, then 4 frames) and decode (one latent frame at a time) of the parity-fixture shapes, random weights, median of ${runs} after one warm-up`,
    lines,
  });
}

runMain(main);
