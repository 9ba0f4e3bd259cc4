import * as tf from '@tensorflow/tfjs-core';
import { AutoencoderKLWan } from '../layers/autoencoder-kl-wan.js';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { selectBackend } from '../src/backend/select.js';
import { registerTrainingKernels } from '../src/train/kernels.js';
import { TOY } from '../src/train/train-toy.js';
import { appendResults, benchOptions, runMain, stats, type TimingStats } from './harness.js';

// npm run bench:train [-- --runs N --backends wasm,cpu --no-record]
// Times one training step (forward, backward through every parameter, gradients read back) of the
// toy VAE (16 single 32×32 frames, MSE reconstruction) and the toy DiT (batch 8, 16×16×5 latents,
// text 64×32) with registerTrainingKernels, and appends the figures to bench/RESULTS.md.

async function timeStep(model: { trainableWeights: Array<{ read(): tf.Tensor }> }, loss: () => tf.Scalar, runs: number): Promise<TimingStats> {
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const times: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const start = performance.now();
    const { value, grads } = tf.variableGrads(loss, vars);
    await Promise.all(Object.values(grads).map((g) => g.data()));
    tf.dispose([value, ...Object.values(grads)]);
    if (i > 0) times.push(performance.now() - start);
  }
  return stats(times);
}

async function main(): Promise<void> {
  const opts = benchOptions();
  const backends = process.argv.includes('--backends') ? opts.backends : ['wasm'];
  registerTrainingKernels();
  const lines: string[] = [];
  for (const backend of backends) {
    await selectBackend(backend);
    const vae = new AutoencoderKLWan({ ...TOY.vae, latentsMean: new Array(TOY.vae.zDim).fill(0), latentsStd: new Array(TOY.vae.zDim).fill(1) }).initialize(1);
    const frames = tf.randomUniform([16, 3, 1, TOY.height, TOY.width], -1, 1, 'float32', 2);
    const vaeStep = await timeStep(vae, () => tf.tidy(() => tf.mean(tf.squaredDifference(vae.decode(vae.encode(frames).mean), frames)) as tf.Scalar), opts.runs);
    const dit = new WanTransformer3DModel(TOY.transformer).initialize(1);
    const s = TOY.vae.scaleFactorSpatial;
    const latents = tf.randomNormal([8, TOY.transformer.inChannels, TOY.frames, TOY.height / s, TOY.width / s], 0, 1, 'float32', 3);
    const text = tf.randomNormal([8, TOY.maxTextLength, TOY.transformer.textDim], 0, 1, 'float32', 4);
    const t = tf.linspace(50, 950, 8);
    const ditStep = await timeStep(dit, () => tf.tidy(() => tf.mean(tf.square(dit.forward(latents, t, text))) as tf.Scalar), opts.runs);
    tf.dispose([frames, latents, text, t]);
    vae.dispose();
    dit.dispose();
    for (const [name, r] of [['toy VAE step (16 frames 32×32)', vaeStep], ['toy DiT step (batch 8, 80 tokens, text 64)', ditStep]] as const) {
      const line = `${backend}, ${name}: ${r.median.toFixed(1)} ms (min ${r.min.toFixed(1)})`;
      console.log(line);
      lines.push(line);
    }
  }
  if (opts.record) {
    appendResults({
      title: 'train-step',
      command: `npm run bench:train -- --runs ${opts.runs}${process.argv.includes('--backends') ? ` --backends ${backends.join(',')}` : ''}`,
      workload: 'one training step (forward + backward, gradients read back) of the toy models of src/train/train-toy.ts, random weights, with registerTrainingKernels; median of the runs after one warm-up',
      lines,
    });
  }
}

runMain(main);
