// Tuning probe for backend 'cuda' (run on the GPU machine with tsx):
// 1. times WanAttention's D ≤ 128 tile choices (WAN_CUDA_ATTENTION_TILE; TILES=a,b lists them) at the 1.3B bench shape
//    (32,760 tokens, 12 heads × 128; self- and cross-attention) and checks they agree;
// 2. breaks one forward of a 2-layer Wan2.1-1.3B transformer at that size down by kernel.
import * as tf from '@tensorflow/tfjs-core';
import { PRESETS, WanTransformer3DModel } from '../../layers/wan-transformer-3d-model.js';
import { attention } from '../../src/backend/ops.js';
import { selectBackend } from '../../src/backend/select.js';
import { CudaBackend } from '../../src/cuda/index.js';
import { kernelProfile } from '../../bench/gpu-weights.js';

async function main(): Promise<void> {
  await selectBackend('cuda');
  const backend = tf.backend();
  if (!(backend instanceof CudaBackend)) throw new Error('not on cuda');
  const L = 32760;
  const q = tf.randomNormal([1, L, 12, 128], 0, 1, 'float32', 1);
  const k = tf.randomNormal([1, L, 12, 128], 0, 1, 'float32', 2);
  const v = tf.randomNormal([1, L, 12, 128], 0, 1, 'float32', 3);
  const kc = tf.slice(k, [0, 0, 0, 0], [1, 512, 12, 128]);
  const vc = tf.slice(v, [0, 0, 0, 0], [1, 512, 12, 128]);
  let reference: Float32Array | undefined;
  for (const tile of (process.env.TILES ?? 'default,64x32,128x64c8').split(',')) {
    process.env.WAN_CUDA_ATTENTION_TILE = tile;
    const times: number[] = [];
    const cross: number[] = [];
    let diff = 0;
    for (let i = 0; i < 3; i++) {
      let out: tf.Tensor | undefined;
      times.push(Number((await backend.time(() => (out = attention(q, k, v)))).kernelMs));
      if (i === 0 && out) {
        const data = out.dataSync() as Float32Array;
        if (!reference) reference = data;
        else for (let j = 0; j < data.length; j++) diff = Math.max(diff, Math.abs(data[j] - reference[j]));
      }
      out?.dispose();
      let oc: tf.Tensor | undefined;
      cross.push(Number((await backend.time(() => (oc = attention(q, kc, vc)))).kernelMs));
      oc?.dispose();
    }
    const flops = 4 * L * L * 128 * 12;
    const best = Math.min(...times.slice(1));
    console.log(`tile ${tile}: self ${best.toFixed(1)} ms (${(flops / best / 1e9).toFixed(1)} TFLOP/s), cross ${Math.min(...cross.slice(1)).toFixed(2)} ms, max |diff| vs default ${diff.toExponential(2)}`);
  }
  delete process.env.WAN_CUDA_ATTENTION_TILE;
  tf.dispose([q, k, v, kc, vc]);

  tf.env().set('CHECK_COMPUTATION_FOR_ERRORS', false);
  const model = new WanTransformer3DModel({ ...PRESETS['wan2.1-t2v-1.3b'], numLayers: 2 });
  const pool = tf.randomNormal([1 << 24], 0, 0.02, 'float32', 4);
  for (const slot of model.namedWeights().values()) {
    const n = slot.shape.reduce((a, b) => a * b, 1);
    slot.assign(tf.tidy(() => tf.reshape(tf.slice(pool, [0], [n]), [...slot.shape])));
  }
  pool.dispose();
  const x = tf.randomNormal([1, 16, 21, 60, 104], 0, 1, 'float32', 5);
  const t = tf.tensor1d([500]);
  const ctx = tf.randomNormal([1, 512, 4096], 0, 1, 'float32', 6);
  tf.dispose(model.forward(x, t, ctx));
  const profile = await kernelProfile(() => model.forward(x, t, ctx));
  console.log(`2-layer forward, kernel time ${profile.totalMs.toFixed(0)} ms:`);
  for (const [name, ms, count] of profile.kernels.slice(0, 20)) {
    console.log(`  ${name.padEnd(22)} ${ms.toFixed(1).padStart(8)} ms  ${String(count).padStart(4)} calls`);
  }
  tf.dispose([x, t, ctx]);
  model.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
