import * as tf from '@tensorflow/tfjs-core';
import { AutoencoderKLWan } from '../layers/autoencoder-kl-wan.js';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { setFusedKernels } from '../src/backend/ops.js';
import { selectBackend } from '../src/backend/select.js';
import { registerTrainingKernels } from '../src/train/kernels.js';
import { TOY } from '../src/train/train-toy.js';
import { appendResults, arg, benchOptions, runMain, stats, type TimingStats } from './harness.js';

// npm run bench:train [-- --runs N --backends wasm,cpu --batch 8 --models vae,dit --profile --no-record]
// Times one training step (forward, backward through every parameter, gradients read back) of the
// toy VAE (16 single 32×32 frames, MSE reconstruction) and the toy DiT (--batch clips of 16×16×5
// latents, text 64×32) with registerTrainingKernels and the fused kernels off (as the Trainer runs),
// and appends the figures to bench/RESULTS.md. --profile prints the DiT step's kernels by total time.

type Trainable = { trainableWeights: Array<{ read(): tf.Tensor }> };

/** One training step: the loss's gradients with respect to every trainable weight, read back. */
async function gradStep(vars: tf.Variable[], loss: () => tf.Scalar): Promise<void> {
  const { value, grads } = tf.variableGrads(loss, vars);
  await Promise.all(Object.values(grads).map((g) => g.data()));
  tf.dispose([value, ...Object.values(grads)]);
}

const variables = (model: Trainable) => model.trainableWeights.map((w) => w.read() as tf.Variable);

async function timeStep(model: Trainable, loss: () => tf.Scalar, runs: number): Promise<TimingStats> {
  const vars = variables(model);
  const times: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const start = performance.now();
    await gradStep(vars, loss);
    if (i > 0) times.push(performance.now() - start);
  }
  return stats(times);
}

/** Prints the kernels of one step by total kernel time, and their sum beside the step's wall time. */
async function profileStep(model: Trainable, loss: () => tf.Scalar): Promise<string> {
  const vars = variables(model);
  const start = performance.now();
  const info = await tf.profile(async () => {
    await gradStep(vars, loss);
    return tf.scalar(0);
  });
  const wall = performance.now() - start;
  const byName = new Map<string, { ms: number; n: number }>();
  for (const k of info.kernels) {
    const e = byName.get(k.name) ?? { ms: 0, n: 0 };
    e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    e.n++;
    byName.set(k.name, e);
  }
  const rows = [...byName].sort((a, b) => b[1].ms - a[1].ms);
  const total = rows.reduce((a, [, e]) => a + e.ms, 0);
  for (const [name, e] of rows.slice(0, 15)) console.log(`  ${name.padEnd(20)} ${e.ms.toFixed(1).padStart(9)} ms  ${String(e.n).padStart(5)} calls`);
  return `${info.kernels.length} kernels, ${total.toFixed(1)} ms of kernel time in ${wall.toFixed(1)} ms (profiled)`;
}

async function main(): Promise<void> {
  const opts = benchOptions();
  const backends = process.argv.includes('--backends') ? opts.backends : ['wasm'];
  const batch = Number(arg('batch') ?? 8);
  const models = (arg('models') ?? 'vae,dit').split(',');
  registerTrainingKernels();
  // Every step below is a training step, recorded as the Trainer records it: without the fused kernels.
  setFusedKernels(false);
  const lines: string[] = [];
  for (const backend of backends) {
    await selectBackend(backend, { precision: 'fp32' });
    const s = TOY.vae.scaleFactorSpatial;
    const [pt, ph, pw] = TOY.transformer.patchSize;
    const tokens = (TOY.frames / pt) * (TOY.height / s / ph) * (TOY.width / s / pw);
    const results: Array<[string, TimingStats]> = [];
    if (models.includes('vae')) {
      const vae = new AutoencoderKLWan({ ...TOY.vae, latentsMean: new Array(TOY.vae.zDim).fill(0), latentsStd: new Array(TOY.vae.zDim).fill(1) }).initialize(1);
      const frames = tf.randomUniform([16, 3, 1, TOY.height, TOY.width], -1, 1, 'float32', 2);
      results.push(['toy VAE step (16 frames 32×32)', await timeStep(vae, () => tf.tidy(() => tf.mean(tf.squaredDifference(vae.decode(vae.encode(frames).mean), frames)) as tf.Scalar), opts.runs)]);
      frames.dispose();
      vae.dispose();
    }
    if (models.includes('dit')) {
      const dit = new WanTransformer3DModel(TOY.transformer).initialize(1);
      const latents = tf.randomNormal([batch, TOY.transformer.inChannels, TOY.frames, TOY.height / s, TOY.width / s], 0, 1, 'float32', 3);
      const text = tf.randomNormal([batch, TOY.maxTextLength, TOY.transformer.textDim], 0, 1, 'float32', 4);
      const t = tf.linspace(50, 950, batch);
      const loss = () => tf.tidy(() => tf.mean(tf.square(dit.forward(latents, t, text))) as tf.Scalar);
      results.push([`toy DiT step (batch ${batch}, ${tokens} tokens, text ${TOY.maxTextLength})`, await timeStep(dit, loss, opts.runs)]);
      if (process.argv.includes('--profile')) {
        const line = `${backend}, toy DiT step, batch ${batch}: ${await profileStep(dit, loss)}`;
        console.log(line);
        lines.push(line);
      }
      tf.dispose([latents, text, t]);
      dit.dispose();
    }
    for (const [name, r] of results) {
      const line = `${backend}, ${name}: ${r.median.toFixed(1)} ms (min ${r.min.toFixed(1)})`;
      console.log(line);
      lines.push(line);
    }
  }
  if (opts.record) {
    appendResults({
      title: 'train-step',
      command: `npm run bench:train -- ${process.argv.slice(2).join(' ')}`,
      workload: 'one training step (forward + backward, gradients read back) of the toy models of src/train/train-toy.ts, random weights, with registerTrainingKernels; median of the runs after one warm-up',
      lines,
    });
  }
}

runMain(main);
