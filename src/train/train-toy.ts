/**
 * `npm run train:toy`: trains the small text-to-video model that ships with the library, with the
 * library's own layers and training code, and writes it in the Diffusers layout to models/toy/
 * (model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/, wan_tfjs.json).
 *
 * The model is the Wan architecture with small dims: AutoencoderKLWan (2× spatial, no temporal
 * compression, so 32×32×5 clips become 16×16×5 latents), WanTransformer3DModel (4 blocks, width 192,
 * patch 5×2×2, so 64 tokens, each holding the whole clip of its 4×4-pixel window), and a one-layer
 * UMT5EncoderModel behind a Unigram tokenizer.json built from the caption vocabulary (English and
 * Chinese). The text encoder stays random and frozen: the DiT learns to read it.
 * Phases: (1) the VAE on single frames (its past-frame kernel taps start at zero and get no gradient
 * from one-frame clips, so it is a per-frame autoencoder); (2) latents and caption embeddings of the
 * dataset; (3) the DiT with the flow-matching loss on English and Chinese captions, full or without
 * the speed/background phrase, and 10 % empty captions for guidance. The clips move 2 or 4 px per
 * frame and their object grows by 40 %.
 * Why a token spans all 5 frames: the DiT has only relative (rotary) positions, so with one token
 * per frame the sense of motion is a relation between tokens of different frames at an offset
 * whose sign the caption sets, and a DiT trained that way learns the colour and the axis but leaves
 * left/right to the seed (bench/RESULTS.md). With the frames inside the token, the sense is a
 * per-token pattern (which edge enters first), learnt as readily as the colour.
 * Environment: WAN_TOY_OUT (default models/toy), WAN_TOY_VAE_STEPS, WAN_TOY_DIT_STEPS, WAN_TOY_CLIPS,
 * WAN_TOY_DIT_BATCH, WAN_TOY_DIT_LR (peak, default 1e-3), WAN_TOY_HIGH_SIGMA (fraction of DiT batches
 * drawn at high noise, default 0), WAN_TOY_FRAME_SIGMA (fraction of DiT batches with σ drawn per
 * token frame, default 0: with 5-frame patches there is one token frame), WAN_TOY_ANCHOR (chance
 * that such a sample has one nearly clean frame, default 0), WAN_TOY_VAE=<model dir> (reuse its
 * VAE, skipping phase 1), WAN_TOY_DIT_INIT=<model dir> (continue from its DiT), WAN_TOY_BACKEND
 * (default: the fastest available, cuda first), WAN_TOY_RESULTS (default bench/RESULTS.md, appended
 * to). A run resumes each phase from its checkpoint in <out>/.train/. The defaults are the current
 * recipe: the VAE phase takes about 22 min on 2 CPU cores (wasm), the DiT phase (4500 steps of batch
 * 256) 15 min on one H200 (cuda) and far too long on a CPU, where WAN_TOY_DIT_BATCH=8 is the
 * practical size. The committed DiT was trained in two runs of this recipe on the committed VAE, the
 * second continuing the first (WAN_TOY_DIT_INIT) at half the learning rate; bench/RESULTS.md lists them.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { AutoencoderKLWan, type AutoencoderKLWanConfig } from '../../layers/autoencoder-kl-wan.js';
import type { WanModule } from '../../layers/module.js';
import { UMT5EncoderModel, type UMT5Config } from '../../layers/umt5-encoder-model.js';
import { WanTransformer3DModel, type WanTransformerConfig } from '../../layers/wan-transformer-3d-model.js';
import { WanTextEncoder } from '../text/text-encoder.js';
import { WanTokenizer } from '../text/tokenizer.js';
import { writeSafetensors, type TensorToWrite } from '../../weights/safetensors.js';
import { BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, SPEEDS, ShapesDataset, captionEn, captionZh, type CaptionParts } from './dataset.js';
import { uniform } from '../random.js';
import { FlowMatchingSampler, flowMatchingLoss } from './flow-matching.js';
import { registerTrainingKernels } from './kernels.js';
import { selectBackend } from '../backend/select.js';
import { Trainer, trainableParams, type TrainLog } from './trainer.js';

export const TOY = {
  frames: 5,
  height: 32,
  width: 32,
  maxTextLength: 64,
  flowShift: 3,
  /** Half a DiT token's width and a whole one per frame: an edge crosses a token within the clip. */
  pixelsPerFrame: { slowly: 2, quickly: 4 },
  /** Objects grow by 40 % over a clip. */
  growth: 0.4,
  vae: {
    baseDim: 8, zDim: 8, dimMult: [1, 2], numResBlocks: 1, attnScales: [], temperalDownsample: [false],
    scaleFactorSpatial: 2, scaleFactorTemporal: 1,
  } satisfies Partial<AutoencoderKLWanConfig>,
  transformer: {
    patchSize: [5, 2, 2], numAttentionHeads: 6, attentionHeadDim: 32, inChannels: 8, outChannels: 8, textDim: 32, freqDim: 64, ffnDim: 768, numLayers: 4,
  } satisfies Partial<WanTransformerConfig>,
  textEncoder: { dModel: 32, dKv: 8, dFf: 64, numLayers: 1, numHeads: 4, relativeAttentionNumBuckets: 32, relativeAttentionMaxDistance: 128 },
} as const;

const ZH_PIECES = ['一个', '的', '在', '背景上', '向', '移动', '红色', '绿色', '蓝色', '黄色', '青色', '品红色', '圆形', '正方形', '三角形', '左', '右', '上', '下', '缓慢地', '快速地', '黑色', '灰色', '白色'];

/** A Unigram tokenizer.json shaped like umT5's (NFKC, Metaspace, `</s>` appended) over the caption vocabulary. */
export function toyTokenizerJson(): Record<string, unknown> {
  const words = new Set<string>(['a', 'moving', 'on', 'background', ...SHAPES, ...COLOURS, ...DIRECTIONS, ...SPEEDS, ...BACKGROUNDS]);
  const vocab: Array<[string, number]> = [['<pad>', 0], ['</s>', 0], ['<unk>', 0], ['▁', -3]];
  for (const w of words) vocab.push([`▁${w}`, -5]);
  for (const p of ZH_PIECES) vocab.push([p, -5], [`▁${p}`, -6]);
  const chars = new Set([...'abcdefghijklmnopqrstuvwxyz', ...ZH_PIECES.join('')]);
  for (const c of chars) vocab.push([c, -10]);
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const metaspace = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<pad>'), special(1, '</s>'), special(2, '<unk>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }] },
    pre_tokenizer: metaspace,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }, { Sequence: { id: 'B', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      special_tokens: { '</s>': { id: '</s>', ids: [1], tokens: ['</s>'] } },
    },
    decoder: metaspace,
    model: { type: 'Unigram', unk_id: 2, vocab, byte_fallback: false },
  };
}

const TOKENIZER_CONFIG = { model_max_length: TOY.maxTextLength, pad_token: '<pad>', eos_token: '</s>', unk_token: '<unk>', tokenizer_class: 'T5Tokenizer' };

function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  return v === undefined ? fallback : Number.parseInt(v, 10);
}

function log(msg: string): void {
  process.stdout.write(`[train-toy ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/** Linear warm-up to `peak` over `warmup` steps, then cosine decay to peak/10 at `total`. */
export function warmupCosine(peak: number, warmup: number, total: number): (step: number) => number {
  return (step) => {
    if (step <= warmup) return (peak * step) / warmup;
    const p = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
    return peak * (0.1 + 0.45 * (1 + Math.cos(Math.PI * p)));
  };
}

const report = (phase: string) => (l: TrainLog) =>
  log(`${phase} step ${l.step}: loss ${l.loss.toFixed(5)}  lr ${l.lr.toExponential(2)}  |g| ${l.gradNorm.toFixed(3)}  ${l.stepsPerSecond.toFixed(2)} steps/s`);

/** Every parameter of a module in checkpoint layout, for writeSafetensors. */
function exportWeights(model: WanModule): Record<string, TensorToWrite> {
  const out: Record<string, TensorToWrite> = {};
  for (const [k, p] of model.namedParams()) {
    const t = p.read();
    if (!t) continue;
    out[k] = { shape: [...t.shape], data: Float32Array.from(t.dataSync()) };
    t.dispose();
  }
  return out;
}

function writeJson(file: string, json: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
}

/** Frames [F, H, W, 3] of n clips → video [n, 3, F, H, W]. */
export function clipsToVideo(ds: ShapesDataset, indices: number[]): tf.Tensor5D {
  const F = ds.frames;
  const data = new Float32Array(indices.length * F * ds.height * ds.width * 3);
  indices.forEach((idx, i) => data.set(ds.get(idx).frames, i * F * ds.height * ds.width * 3));
  return tf.tidy(() => tf.transpose(tf.tensor5d(data, [indices.length, F, ds.height, ds.width, 3]), [0, 4, 1, 2, 3]));
}

/** Zeroes the kernel taps that read past frames, so the VAE starts as a per-frame autoencoder. */
function zeroPastTaps(vae: AutoencoderKLWan): void {
  for (const [k, p] of vae.namedParams()) {
    if (p.shape.length !== 5 || p.shape[2] < 2 || !k.endsWith('weight')) continue;
    const w = p.read()!;
    const kt = p.shape[2];
    const masked = tf.tidy(() => tf.concat([tf.zerosLike(tf.slice(w, [0, 0, 0, 0, 0], [-1, -1, kt - 1, -1, -1])), tf.slice(w, [0, 0, kt - 1, 0, 0], [-1, -1, 1, -1, -1])], 2));
    w.dispose();
    p.assign(masked);
  }
}

export async function trainToy(): Promise<void> {
  const out = path.resolve(process.env.WAN_TOY_OUT ?? 'models/toy');
  const work = path.join(out, '.train');
  const vaeSteps = envInt('WAN_TOY_VAE_STEPS', 1000);
  const ditSteps = envInt('WAN_TOY_DIT_STEPS', 4500);
  const nClips = envInt('WAN_TOY_CLIPS', 4096);
  const ditBatch = envInt('WAN_TOY_DIT_BATCH', 256);
  const ditLr = Number(process.env.WAN_TOY_DIT_LR ?? 1e-3);
  const highSigma = Number(process.env.WAN_TOY_HIGH_SIGMA ?? 0);
  const frameSigma = Number(process.env.WAN_TOY_FRAME_SIGMA ?? 0);
  const anchor = Number(process.env.WAN_TOY_ANCHOR ?? 0);
  const ditInit = process.env.WAN_TOY_DIT_INIT;
  registerTrainingKernels();
  // Training keeps float32 everywhere (backend 'cuda' too): no bf16 optimizer state or gradients.
  await selectBackend(process.env.WAN_TOY_BACKEND, { precision: 'fp32' });
  fs.mkdirSync(work, { recursive: true });
  const started = Date.now();
  log(`backend ${tf.getBackend()}, ${os.cpus().length} cores; VAE ${vaeSteps} steps, DiT ${ditSteps} steps of batch ${ditBatch}, ${nClips} clips → ${out}`);
  const ds = new ShapesDataset({ seed: 1, frames: TOY.frames, height: TOY.height, width: TOY.width, pixelsPerFrame: TOY.pixelsPerFrame, growth: TOY.growth });

  // (1) VAE on single frames, or the VAE of an earlier run (WAN_TOY_VAE=<model dir>).
  const reuseVae = process.env.WAN_TOY_VAE;
  let vae: AutoencoderKLWan;
  let vaeRun = { steps: 0, losses: [] as number[], elapsedMs: 0 };
  if (reuseVae) {
    vae = await AutoencoderKLWan.fromPretrained(path.join(path.resolve(reuseVae), 'vae'));
    log(`vae: reused from ${reuseVae}`);
  } else {
    vae = new AutoencoderKLWan({ ...TOY.vae, latentsMean: new Array(TOY.vae.zDim).fill(0), latentsStd: new Array(TOY.vae.zDim).fill(1) }).initialize(11);
    zeroPastTaps(vae);
    const frameRand = uniform(3);
    const vaeTrainer = new Trainer(
      trainableParams(vae),
      (step) => tf.tidy(() => {
        const B = 16;
        const F = ds.frames;
        const clips = Array.from({ length: B }, (_, i) => ds.get(100_000 + step * B + i));
        const data = new Float32Array(B * ds.height * ds.width * 3);
        clips.forEach((c, i) => {
          const f = Math.floor(frameRand() * F);
          const n = ds.height * ds.width * 3;
          data.set(c.frames.subarray(f * n, (f + 1) * n), i * n);
        });
        const x = tf.transpose(tf.tensor5d(data, [B, 1, ds.height, ds.width, 3]), [0, 4, 1, 2, 3]);
        const { mean, logvar } = vae.encode(x);
        const y = vae.decode(mean);
        // reconstruction + a small pull of the latents towards 0 (their scale is normalised after training)
        return tf.add(tf.mean(tf.squaredDifference(y, x)), tf.mul(1e-4, tf.add(tf.mean(tf.square(mean)), tf.mean(tf.abs(logvar))))) as tf.Scalar;
      }),
      { steps: vaeSteps, optimizer: { lr: warmupCosine(5e-4, 50, vaeSteps), weightDecay: 0 }, logEvery: 10, onLog: report('vae'), checkpointEvery: 50, checkpointPath: path.join(work, 'vae.safetensors') },
    );
    if (vaeTrainer.resume(path.join(work, 'vae.safetensors'))) log(`vae: resumed at step ${vaeTrainer.step}`);
    vaeRun = await vaeTrainer.run();
    vaeTrainer.dispose();
  }

  // (2) Latents of the dataset, their per-channel statistics, and caption embeddings.
  const latentChunks: tf.Tensor[] = [];
  for (let s = 0; s < nClips; s += 16) {
    const idx = Array.from({ length: Math.min(16, nClips - s) }, (_, i) => s + i);
    const video = clipsToVideo(ds, idx);
    const post = vae.encode(video);
    latentChunks.push(post.mean);
    tf.dispose([video, post.logvar]);
  }
  const rawLatents = tf.concat(latentChunks, 0);
  tf.dispose(latentChunks);
  // A DiT that continues from an earlier model keeps the latent statistics it was trained with.
  const stats = ditInit && reuseVae
    ? { latentsMean: [...vae.config.latentsMean], latentsStd: [...vae.config.latentsStd] }
    : tf.tidy(() => {
      const { mean, variance } = tf.moments(tf.reshape(tf.transpose(rawLatents, [1, 0, 2, 3, 4]), [TOY.vae.zDim, -1]), 1);
      return { latentsMean: Array.from(mean.dataSync()), latentsStd: Array.from(tf.sqrt(tf.add(variance, 1e-6)).dataSync()) };
    });
  const vaeConfig = { ...vae.config, ...stats };
  const normVae = new AutoencoderKLWan(vaeConfig);
  const latents = normVae.normalizeLatents(rawLatents);
  normVae.dispose();
  rawLatents.dispose();
  log(`encoded ${nClips} clips to latents [${latents.shape}]`);

  const tokenizerJson = toyTokenizerJson();
  const vocabSize = (tokenizerJson.model as { vocab: unknown[] }).vocab.length;
  const t5Config: Partial<UMT5Config> = { ...TOY.textEncoder, vocabSize };
  const t5 = new UMT5EncoderModel(t5Config).initialize(5);
  const textEncoder = new WanTextEncoder(new WanTokenizer(tokenizerJson, TOKENIZER_CONFIG, { maxLength: TOY.maxTextLength }), t5, { cache: null, maxLength: TOY.maxTextLength });
  // Every caption in both languages, in full and without the speed and/or background phrase; each
  // distinct caption is encoded once and the clips index into the table.
  const variants: CaptionParts[] = [{}, { speed: false }, { background: false }, { speed: false, background: false }];
  const captions = new Map<string, number>([['', 0]]);
  const captionIds = Array.from({ length: nClips }, (_, i) => {
    const spec = ds.specAt(i);
    return variants.flatMap((parts) => [captionEn(spec, parts), captionZh(spec, parts)]).map((c) => {
      if (!captions.has(c)) captions.set(c, captions.size);
      return captions.get(c)!;
    });
  });
  const texts = [...captions.keys()];
  const embParts: tf.Tensor[] = [];
  for (let s = 0; s < texts.length; s += 64) embParts.push(await textEncoder.encode(texts.slice(s, s + 64)));
  const embeddings = tf.concat(embParts, 0);
  tf.dispose(embParts);
  log(`caption embeddings [${embeddings.shape}] (${texts.length - 1} distinct captions, English and Chinese, full and shortened, and the empty one)`);

  // (3) DiT on the latents.
  const dit = ditInit ? await WanTransformer3DModel.fromPretrained(path.join(path.resolve(ditInit), 'transformer')) : new WanTransformer3DModel(TOY.transformer).initialize(7);
  if (ditInit) log(`dit: continues from ${ditInit}`);
  const sampler = new FlowMatchingSampler({ sampling: 'logit_normal', shift: TOY.flowShift }, 9);
  // Batches drawn at high noise (logit mean 2: σ ≈ 0.9–0.99), where the layout of the clip, and so the
  // direction of motion, is decided and only the caption can say it.
  const highSampler = new FlowMatchingSampler({ sampling: 'logit_normal', logitMean: 2, shift: TOY.flowShift }, 19);
  const pick = uniform(21);
  const ditTrainer = new Trainer(
    trainableParams(dit),
    () => tf.tidy(() => {
      const idx = Array.from({ length: ditBatch }, () => Math.floor(pick() * nClips));
      const x0 = tf.gather(latents, idx);
      // 10 % empty captions (the unconditional branch of classifier-free guidance), else one variant at random.
      const ctx = tf.gather(embeddings, idx.map((i) => (pick() < 0.1 ? 0 : captionIds[i][Math.floor(pick() * captionIds[i].length)])));
      // Optionally a share of the batches with σ drawn per token frame (for DiTs with several token
      // frames), so that cleaner frames predict noisier ones.
      const b = pick() < frameSigma ? sampler.framewiseBatch(x0, dit.config.patchSize, anchor) : (pick() < highSigma ? highSampler : sampler).batch(x0);
      return flowMatchingLoss(dit.forward(b.noisy, b.timestep, ctx), b.target);
    }),
    {
      steps: ditSteps,
      optimizer: { lr: warmupCosine(ditLr, 100, ditSteps), weightDecay: 0.01 },
      logEvery: 25,
      onLog: report('dit'),
      checkpointEvery: 250,
      checkpointPath: path.join(work, 'dit.safetensors'),
    },
  );
  if (ditTrainer.resume(path.join(work, 'dit.safetensors'))) log(`dit: resumed at step ${ditTrainer.step}`);
  const ditRun = await ditTrainer.run();
  ditTrainer.dispose();

  // (4) The model folder, in the Diffusers layout.
  writeJson(path.join(out, 'model_index.json'), {
    _class_name: 'WanPipeline',
    _diffusers_version: '0.35.0',
    scheduler: ['diffusers', 'UniPCMultistepScheduler'],
    text_encoder: ['transformers', 'UMT5EncoderModel'],
    tokenizer: ['transformers', 'T5TokenizerFast'],
    transformer: ['diffusers', 'WanTransformer3DModel'],
    vae: ['diffusers', 'AutoencoderKLWan'],
  });
  const t = dit.config;
  writeJson(path.join(out, 'transformer', 'config.json'), {
    _class_name: 'WanTransformer3DModel', _diffusers_version: '0.35.0',
    patch_size: t.patchSize, num_attention_heads: t.numAttentionHeads, attention_head_dim: t.attentionHeadDim,
    in_channels: t.inChannels, out_channels: t.outChannels, text_dim: t.textDim, freq_dim: t.freqDim, ffn_dim: t.ffnDim,
    num_layers: t.numLayers, cross_attn_norm: t.crossAttnNorm, qk_norm: t.qkNorm, eps: t.eps, image_dim: null,
    added_kv_proj_dim: null, rope_max_seq_len: t.ropeMaxSeqLen, pos_embed_seq_len: null,
  });
  writeSafetensors(path.join(out, 'transformer', 'diffusion_pytorch_model.safetensors'), exportWeights(dit), { format: 'pt' });
  const v = vaeConfig;
  writeJson(path.join(out, 'vae', 'config.json'), {
    _class_name: 'AutoencoderKLWan', _diffusers_version: '0.35.0',
    base_dim: v.baseDim, decoder_base_dim: v.decoderBaseDim, z_dim: v.zDim, dim_mult: v.dimMult, num_res_blocks: v.numResBlocks,
    attn_scales: v.attnScales, temperal_downsample: v.temperalDownsample, dropout: 0, latents_mean: v.latentsMean, latents_std: v.latentsStd,
    is_residual: v.isResidual, in_channels: v.inChannels, out_channels: v.outChannels, patch_size: v.patchSize,
    scale_factor_spatial: v.scaleFactorSpatial, scale_factor_temporal: v.scaleFactorTemporal,
  });
  writeSafetensors(path.join(out, 'vae', 'diffusion_pytorch_model.safetensors'), exportWeights(vae), { format: 'pt' });
  const c = t5.config;
  writeJson(path.join(out, 'text_encoder', 'config.json'), {
    architectures: ['UMT5EncoderModel'], model_type: 'umt5', vocab_size: c.vocabSize, d_model: c.dModel, d_kv: c.dKv, d_ff: c.dFf,
    num_layers: c.numLayers, num_heads: c.numHeads, relative_attention_num_buckets: c.relativeAttentionNumBuckets,
    relative_attention_max_distance: c.relativeAttentionMaxDistance, layer_norm_epsilon: c.layerNormEpsilon,
    feed_forward_proj: 'gated-gelu', is_encoder_decoder: true, tie_word_embeddings: false, pad_token_id: 0, eos_token_id: 1,
  });
  writeSafetensors(path.join(out, 'text_encoder', 'model.safetensors'), exportWeights(t5), { format: 'pt' });
  writeJson(path.join(out, 'tokenizer', 'tokenizer.json'), tokenizerJson);
  writeJson(path.join(out, 'tokenizer', 'tokenizer_config.json'), TOKENIZER_CONFIG);
  writeJson(path.join(out, 'scheduler', 'scheduler_config.json'), {
    _class_name: 'UniPCMultistepScheduler', _diffusers_version: '0.35.0', prediction_type: 'flow_prediction', use_flow_sigmas: true,
    flow_shift: TOY.flowShift, num_train_timesteps: 1000, solver_order: 2, solver_type: 'bh2', predict_x0: true, lower_order_final: true,
    final_sigmas_type: 'zero', disable_corrector: [], thresholding: false, timestep_spacing: 'linspace',
  });
  writeJson(path.join(out, 'wan_tfjs.json'), { height: TOY.height, width: TOY.width, num_frames: TOY.frames, fps: 8, num_inference_steps: 20, guidance_scale: 4.0, max_sequence_length: TOY.maxTextLength });
  const bytes = ['transformer/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors', 'text_encoder/model.safetensors']
    .reduce((s, f) => s + fs.statSync(path.join(out, f)).size, 0);
  const minutes = (Date.now() - started) / 60_000;
  log(`wrote ${out} (${(bytes / 1e6).toFixed(2)} MB of safetensors) in ${minutes.toFixed(1)} min`);

  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  const last = (xs: number[]) => (xs.length ? (xs.slice(-20).reduce((a, b) => a + b, 0) / Math.min(20, xs.length)).toFixed(4) : 'n/a');
  const results = process.env.WAN_TOY_RESULTS ?? path.join('bench', 'RESULTS.md');
  fs.mkdirSync(path.dirname(results), { recursive: true });
  fs.appendFileSync(
    results,
    `\n## train:toy (${new Date().toISOString().slice(0, 10)})\n` +
      `- machine: ${cpu}, ${os.cpus().length} cores (shared), Node ${process.version}, tfjs backend ${tf.getBackend()}\n` +
      `- VAE ${vaeRun.steps} steps in ${(vaeRun.elapsedMs / 60_000).toFixed(1)} min (final loss ≈ ${last(vaeRun.losses)}); DiT ${ditRun.steps} steps in ${(ditRun.elapsedMs / 60_000).toFixed(1)} min (final loss ≈ ${last(ditRun.losses)})\n` +
      `- total ${minutes.toFixed(1)} min; ${(bytes / 1e6).toFixed(2)} MB of safetensors written to ${path.relative(process.cwd(), out) || out}\n`,
  );
  tf.dispose([latents, embeddings]);
  for (const m of [vae, dit, t5]) m.dispose();
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  trainToy().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
}
