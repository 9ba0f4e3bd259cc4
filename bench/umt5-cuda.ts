import * as tf from '@tensorflow/tfjs-core';
import { UMT5EncoderModel } from '../layers/umt5-encoder-model.js';
import { selectBackend } from '../src/backend/select.js';
import { CudaBackend } from '../src/cuda/index.js';
import type { Precision } from '../src/kernels/registry.js';
import { runMain } from './harness.js';
import { flag, initializeFromPool } from './gpu-weights.js';

// npx tsx bench/umt5-cuda.ts [--precision bf16|fp32] [--batch 2] [--text-len 512] [--warmup 1] [--iters 3]
// The text encoding of one generation: umT5-XXL (google/umt5-xxl's published shapes, random weights
// N(0, 0.02) made on the GPU) over the prompt and the negative prompt, [batch, 512] token ids padded
// as the pipeline pads them, on backend 'cuda'. Prints one JSON line: the wall time of an encode
// (median after warm-up, output read back), the weights' GPU bytes, the peak GPU memory held by
// tensors during an encode, and the time to release the encoder (the pipeline frees it after encoding).

const GIB = 2 ** 30;

runMain(async () => {
  const precision = flag('precision', 'bf16') as Precision;
  const batch = Number(flag('batch', '2'));
  const textLen = Number(flag('text-len', '512'));
  const warmup = Number(flag('warmup', '1'));
  const iters = Number(flag('iters', '3'));
  await selectBackend('cuda', { precision });
  const backend = tf.backend();
  if (!(backend instanceof CudaBackend)) throw new Error("backend 'cuda' is not the CudaBackend");

  const made = performance.now();
  const encoder = new UMT5EncoderModel('umt5-xxl');
  initializeFromPool(encoder, 5000);
  backend.synchronize();
  const makeMs = performance.now() - made;
  const weightsGib = backend.heldBytes / GIB;

  // token ids: a prompt of ~80 tokens then padding (id 0), mask 1 on the tokens, as the pipeline pads to 512
  const used = Math.min(80, textLen);
  const ids = tf.tensor2d(
    Array.from({ length: batch * textLen }, (_, i) => (i % textLen < used ? 1 + ((i * 7919) % 250_000) : 0)),
    [batch, textLen],
    'int32',
  );
  const mask = tf.tensor2d(Array.from({ length: batch * textLen }, (_, i) => (i % textLen < used ? 1 : 0)), [batch, textLen], 'int32');
  backend.resetPeak();
  const times: number[] = [];
  for (let i = 0; i < warmup + iters; i++) {
    const start = performance.now();
    const out = encoder.forward(ids, mask);
    await out.data();
    out.dispose();
    const ms = performance.now() - start;
    if (i >= warmup) times.push(ms);
  }
  const peakGib = backend.memory().peakBytesInGPU / GIB;
  tf.dispose([ids, mask]);
  const released = performance.now();
  encoder.dispose();
  backend.synchronize();
  const releaseMs = performance.now() - released;
  times.sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      bench: 'umt5-cuda',
      model: 'umt5-xxl',
      dtype: precision,
      batch,
      text_len: textLen,
      encode_ms: Number(times[Math.floor(times.length / 2)].toFixed(1)),
      min_ms: Number(times[0].toFixed(1)),
      weights_gib: Number(weightsGib.toFixed(2)),
      peak_gib: Number(peakGib.toFixed(2)),
      make_weights_ms: Math.round(makeMs),
      release_ms: Number(releaseMs.toFixed(1)),
      held_after_release_gib: Number((backend.heldBytes / GIB).toFixed(3)),
      device: backend.device.name,
    }),
  );
});
