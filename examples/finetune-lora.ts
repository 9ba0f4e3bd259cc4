/**
 * LoRA fine-tune of the toy model (models/toy, made by `npm run train:toy`) on a new motion: a
 * "quickly" moving object now dashes at 5 pixels per frame instead of 4. Only the adapters on the
 * attention and feed-forward linears train (rank 4); blocks use gradient checkpointing. The adapter
 * is saved in both published key forms:
 *   <out>/toy-dash-lora.safetensors        (Diffusers/PEFT: transformer.….lora_A.weight)
 *   <out>/toy-dash-lora-wan.safetensors    (original Wan/ComfyUI: diffusion_model.….lora_down.weight)
 * Run: npx tsx examples/finetune-lora.ts [modelDir] [outDir]   (env WAN_LORA_STEPS, default 200)
 * modelDir defaults to models/toy, outDir to ./lora-out (the model folder is left as it is).
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as fs from 'node:fs';
import {
  AutoencoderKLWan, FlowMatchingSampler, ShapesDataset, Trainer, WanTextEncoder, WanTransformer3DModel, applyLora, captionEn,
  enableGradientCheckpointing, flowMatchingLoss, readModelIndex, registerTrainingKernels, saveLora, trainableParams,
} from 'wan-tfjs';

const modelDir = path.resolve(process.argv[2] ?? 'models/toy');
const outDir = path.resolve(process.argv[3] ?? 'lora-out');
const steps = Number.parseInt(process.env.WAN_LORA_STEPS ?? '200', 10);

// The toy model's training set (src/train/train-toy.ts): 5 frames of 32×32, objects moving 2 or 4 px
// per frame and growing by 40 % over a clip; flow shift 3.
const TOY = { frames: 5, height: 32, width: 32, pixelsPerFrame: { slowly: 2, quickly: 4 }, growth: 0.4, flowShift: 3 };

/** Clips of the dataset as a video batch [B, 3, F, H, W] in [-1, 1]. */
function clipsToVideo(ds: ShapesDataset, indices: number[]): tf.Tensor5D {
  const F = ds.frames;
  const data = new Float32Array(indices.length * F * ds.height * ds.width * 3);
  indices.forEach((idx, i) => data.set(ds.get(idx).frames, i * F * ds.height * ds.width * 3));
  return tf.tidy(() => tf.transpose(tf.tensor5d(data, [indices.length, F, ds.height, ds.width, 3]), [0, 4, 1, 2, 3]));
}

/** Seeded uniform draws in [0, 1) (mulberry32), so a run picks the same batches each time. */
function uniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

registerTrainingKernels();
await tf.setBackend('wasm');
const dit = await WanTransformer3DModel.fromPretrained(path.join(modelDir, 'transformer'));
const vae = await AutoencoderKLWan.fromPretrained(path.join(modelDir, 'vae'));
const text = await WanTextEncoder.fromPretrained(modelDir, { maxLength: readModelIndex(modelDir).defaults.maxSequenceLength });

// The new motion: "quickly" now means 5 px/frame.
const ds = new ShapesDataset({ seed: 77, frames: TOY.frames, height: TOY.height, width: TOY.width, pixelsPerFrame: { ...TOY.pixelsPerFrame, quickly: 5 }, growth: TOY.growth });
const indices: number[] = [];
for (let i = 0; indices.length < 64; i++) if (ds.specAt(i).speed === 'quickly') indices.push(i);
const latentParts: tf.Tensor[] = [];
for (let s = 0; s < indices.length; s += 16) {
  const video = clipsToVideo(ds, indices.slice(s, s + 16));
  const post = vae.encode(video);
  latentParts.push(vae.normalizeLatents(post.mean));
  tf.dispose([video, post.mean, post.logvar]);
}
const latents = tf.concat(latentParts, 0);
tf.dispose(latentParts);
const embeds = await text.encode(indices.map((i) => captionEn(ds.specAt(i))));

const adapters = applyLora(dit, { rank: 4, alpha: 4 });
enableGradientCheckpointing(dit.blocks);
console.log(`LoRA on ${adapters.size} linears; ${trainableParams(dit).size} trainable tensors`);
const sampler = new FlowMatchingSampler({ sampling: 'logit_normal', shift: TOY.flowShift }, 3);
const pick = uniform(5);
const trainer = new Trainer(
  trainableParams(dit),
  () => tf.tidy(() => {
    const idx = Array.from({ length: 8 }, () => Math.floor(pick() * indices.length));
    const b = sampler.batch(tf.gather(latents, idx));
    return flowMatchingLoss(dit.forward(b.noisy, b.timestep, tf.gather(embeds, idx)), b.target);
  }),
  { steps, optimizer: { lr: 1e-3, weightDecay: 0 }, logEvery: 20, onLog: (l) => console.log(`step ${l.step}: loss ${l.loss.toFixed(5)}`) },
);
await trainer.run();
fs.mkdirSync(outDir, { recursive: true });
saveLora(dit, path.join(outDir, 'toy-dash-lora.safetensors'), { format: 'diffusers' });
saveLora(dit, path.join(outDir, 'toy-dash-lora-wan.safetensors'), { format: 'wan' });
console.log(`saved the adapter to ${outDir}`);
trainer.dispose();
tf.dispose([latents, embeds]);
for (const m of [dit, vae]) m.dispose();
text.release();
