/**
 * Teaches the toy model (models/toy, shipped in the package) a colour word it has never seen, with
 * a LoRA, and measures what it learned: "sable" (heraldry's black) as a background colour. Before,
 * the model reads the unknown word as any of its backgrounds (mostly white); after, the background
 * is black. (The toy's VAE draws only its training palette — an orange area decodes as
 * blue-purple — so the new word names a colour it can draw.)
 *
 * The fine-tuning set is 32 of the toy's own clips (src/train/train-toy.ts: 5 frames of 32×32) over
 * black, captioned "… on a sable background". The word decides the background only at the start of
 * sampling, where the noisy latents show nothing yet, so σ is drawn near 1 (logit-normal with mean
 * 2, then the flow shift 3: median σ 0.96). Only the rank-8 adapters on the attention and
 * feed-forward linears train; the base weights stay frozen. The adapter is saved, then loaded into
 * the pipeline with pipe.loadLora.
 *
 * It prints the loss falling: the training loss (its mean over the first and over the last 10
 * steps) and a held-out loss (2 clips the training never sees, at fixed σ and fixed noise, so it
 * changes only with the weights). It generates the same prompt with the same seed before and after
 * (4 clips), and measures each clip's background (the per-channel median of its pixels) and its
 * distance to the toy's black. It writes to outDir:
 *   sable-lora.safetensors   the adapter (Diffusers/PEFT keys)
 *   before.gif, after.gif    the 4 clips side by side (32×32, 5 frames)
 *   before-after.gif         before (left) and after (right), one clip a row, 3× enlarged
 *
 * Run: npx tsx examples/finetune-lora.ts [outDir] [modelDir]
 * outDir defaults to a new temporary folder; modelDir to the package's models/toy, which is left as
 * it is. WAN_LORA_STEPS sets the training steps (default 40). About 40 s on 2 CPU cores (wasm).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  AutoencoderKLWan, FlowMatchingSampler, ShapesDataset, Trainer, WanPipeline, WanTransformer3DModel, applyLora, captionEn, defaultModelDir,
  flowMatchingBatch, flowMatchingLoss, randn, registerTrainingKernels, saveLora, saveVideo, selectBackend, trainableParams,
} from 'wan-tfjs';

const outDir = process.argv[2] ? path.resolve(process.argv[2]) : fs.mkdtempSync(path.join(os.tmpdir(), 'wan-lora-'));
// defaultModelDir({}): the package's models/toy, whatever $WAN_MODEL says (the recipe below is the toy's)
const modelDir = path.resolve(process.argv[3] ?? defaultModelDir({}));
const steps = Number.parseInt(process.env.WAN_LORA_STEPS ?? '40', 10);

const WORD = 'sable';
const TARGET = [0.05, 0.05, 0.05]; // the toy's black background (BACKGROUND_RGB.black)
const PROMPT = `a red circle moving right slowly on a ${WORD} background`;
const SEED = 7;
const SAMPLES = 4;
const TRAIN = 32; // training clips; 2 more are held out
const BATCH = 2;

/** Per-channel median of one clip's pixels [F, H, W, 3] in [0, 1]: its background colour, which covers most of the frame. */
function background(frames: Float32Array): number[] {
  return [0, 1, 2].map((c) => {
    const xs = Float32Array.from({ length: frames.length / 3 }, (_, i) => frames[i * 3 + c]).sort();
    return xs[xs.length >> 1];
  });
}

const distance = (a: readonly number[], b: readonly number[]) => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
const rgb = (c: readonly number[]) => `(${c.map((v) => v.toFixed(2)).join(', ')})`;
const lower = (a: number, b: number) => `${a.toFixed(4)} → ${b.toFixed(4)} (${(a / b).toFixed(2)}× lower)`;

await selectBackend('wasm');
registerTrainingKernels();
const started = performance.now();
const pipe = await WanPipeline.fromPretrained(modelDir);

/** SAMPLES clips of PROMPT from SEED (frames [SAMPLES, F, H, W, 3]), written side by side to <label>.gif, and their backgrounds' distances to TARGET. */
async function generate(label: string): Promise<{ frames: tf.Tensor5D; distances: number[] }> {
  const { frames, fps } = await pipe.textToVideo({ prompt: Array<string>(SAMPLES).fill(PROMPT), seed: SEED });
  const [B, F, H, W] = frames.shape;
  const row = tf.tidy(() => tf.reshape(tf.transpose(frames, [1, 2, 0, 3, 4]), [F, H, B * W, 3]));
  await saveVideo(row, path.join(outDir, `${label}.gif`), { fps, metadata: { prompt: PROMPT, seed: SEED } });
  row.dispose();
  const data = (await frames.data()) as Float32Array;
  const clip = data.length / B;
  const backgrounds = Array.from({ length: B }, (_, b) => background(data.subarray(b * clip, (b + 1) * clip)));
  console.log(`${label}: backgrounds ${backgrounds.map(rgb).join(' ')}`);
  return { frames: frames as tf.Tensor5D, distances: backgrounds.map((c) => distance(c, TARGET)) };
}

const before = await generate('before');

// The clips over black, their latents [34, 8, 5, 16, 16] (the VAE's posterior mean, normalised) and caption embeddings [34, 64, 32].
const ds = new ShapesDataset({ seed: 11, frames: 5, height: 32, width: 32, pixelsPerFrame: { slowly: 2, quickly: 4 }, growth: 0.4 });
const specs = Array.from({ length: TRAIN + 2 }, (_, i) => ({ ...ds.specAt(i), background: 'black' as const }));
const vae = await AutoencoderKLWan.fromPretrained(path.join(modelDir, 'vae'));
const latents = tf.tidy(() => {
  const video = tf.stack(specs.map((s) => tf.tensor4d(ds.render(s).frames, [5, 32, 32, 3]))); // [B, F, H, W, 3] in [-1, 1]
  return vae.normalizeLatents(vae.encode(tf.transpose(video, [0, 4, 1, 2, 3])).mean);
});
vae.dispose();
const embeds = await pipe.encodeText(specs.map((s) => captionEn(s).replace(/ black background$/, ` ${WORD} background`)));

const dit = await WanTransformer3DModel.fromPretrained(path.join(modelDir, 'transformer'));
const adapters = applyLora(dit, { rank: 8, alpha: 8 });

// The held-out loss: the 2 held-out clips at σ 0.9, 0.95, 0.99 and 0.999, with noise from a fixed seed.
const sigmas = [0.9, 0.95, 0.99, 0.999].flatMap((s) => [s, s]);
const heldOut = tf.tidy(() => {
  const idx = sigmas.map((_, i) => TRAIN + (i % 2));
  const x0 = tf.gather(latents, idx);
  return { ...flowMatchingBatch(x0, randn(x0.shape, 1), Float32Array.from(sigmas)), text: tf.gather(embeds, idx) };
});
const heldOutLoss = () => tf.tidy(() => flowMatchingLoss(dit.forward(heldOut.noisy, heldOut.timestep, heldOut.text), heldOut.target).dataSync()[0]);
const heldOutLosses = [heldOutLoss()];
console.log(`LoRA on ${adapters.size} linears (rank 8); ${steps} steps of ${BATCH} clips; held-out loss ${heldOutLosses[0].toFixed(4)}`);

const sampler = new FlowMatchingSampler({ sampling: 'logit_normal', logitMean: 2, shift: 3 }, 3);
const trainer = new Trainer(
  trainableParams(dit),
  (step) => tf.tidy(() => {
    const idx = Array.from({ length: BATCH }, (_, i) => (BATCH * (step - 1) + i) % TRAIN);
    const b = sampler.batch(tf.gather(latents, idx));
    return flowMatchingLoss(dit.forward(b.noisy, b.timestep, tf.gather(embeds, idx)), b.target);
  }),
  {
    steps,
    optimizer: { lr: 1e-3, weightDecay: 0 },
    logEvery: 5,
    onLog: (l) => {
      heldOutLosses.push(heldOutLoss());
      console.log(`step ${l.step}: training loss ${l.loss.toFixed(4)}, held-out loss ${heldOutLosses.at(-1)!.toFixed(4)}`);
    },
  },
);
await trainer.run();
console.log(`training loss, mean of the first and of the last 10 steps: ${lower(mean(trainer.losses.slice(0, 10)), mean(trainer.losses.slice(-10)))}`);
console.log(`held-out loss, before and after training: ${lower(heldOutLosses[0], heldOutLosses.at(-1)!)}`);
const lora = path.join(outDir, `${WORD}-lora.safetensors`);
saveLora(dit, lora);
trainer.dispose();
dit.dispose();
tf.dispose([latents, embeds, heldOut.noisy, heldOut.target, heldOut.sigma, heldOut.timestep, heldOut.text]);

await pipe.loadLora(lora);
const after = await generate('after');
const pairs = tf.tidy(() => {
  const [B, F, H, W] = before.frames.shape;
  // [B, F, H, 2W, 3] → [F, B·H, 2W, 3], 3× enlarged
  const side = tf.reshape(tf.transpose(tf.concat([before.frames, after.frames], 3), [1, 0, 2, 3, 4]), [F, B * H, 2 * W, 3]) as tf.Tensor4D;
  return tf.image.resizeNearestNeighbor(side, [3 * B * H, 6 * W]);
});
await saveVideo(pairs, path.join(outDir, 'before-after.gif'), { fps: 4, metadata: { prompt: PROMPT, seed: SEED } });
console.log(`"${PROMPT}", seed ${SEED}: background's distance to black ${rgb(TARGET)}, mean of ${SAMPLES} clips: before ${mean(before.distances).toFixed(3)}, after ${mean(after.distances).toFixed(3)}`);
console.log(`wrote ${path.basename(lora)}, before.gif, after.gif and before-after.gif to ${outDir} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
tf.dispose([before.frames, after.frames, pairs]);
pipe.dispose();
