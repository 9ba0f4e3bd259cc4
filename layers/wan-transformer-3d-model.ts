import * as tf from '@tensorflow/tfjs-core';
import { fp32 } from '../src/backend/ops.js';
import { offloadingBackend, requireOffloading, type OffloadingBackend } from '../src/backend/offload.js';
import { AbortError, ConfigError, OutOfMemoryError, ShapeError } from '../src/errors.js';
import { WAN_TRANSFORMER_FAMILY } from '../weights/families.js';
import { loadPretrained, type PretrainedOptions } from '../weights/load-pretrained.js';
import { savePretrained } from '../weights/save-pretrained.js';
import { FP32LayerNorm } from './fp32-layer-norm.js';
import { Linear } from './linear.js';
import { WanModule, type Param } from './module.js';
import { WanPatchEmbedding, unpatchify, type TokenGrid } from './wan-patch.js';
import { WanRotaryPosEmbed } from './wan-rotary-pos-embed.js';
import { WanTimeTextImageEmbedding } from './wan-time-text-image-embedding.js';
import { WanTransformerBlock } from './wan-transformer-block.js';
import { WanTransformerConfig } from './wan-transformer-config.js';

export { PRESETS, WanTransformerConfig, type WanTransformerPreset } from './wan-transformer-config.js';

/** Options of WanTransformer3DModel.forward. */
export interface WanTransformerForwardOptions {
  /**
   * Receives the intermediates in execution order under the fixture names: rope_cos, rope_sin
   * [1, L, 1, d]; patch_embedding [B, D, F', H', W']; temb [B, D] | [B, L, D]; timestep_proj
   * [B, 6D] | [B, L, 6D]; text_embedding [B, Ltxt, D]; block.<i> [B, L, D]; proj_out
   * [B, L, pt·ph·pw·C]. A tensor is freed when the forward returns: read it in the callback
   * (dataSync) or keep a copy with tf.keep(t.clone()).
   */
  debug?: (name: string, value: tf.Tensor) => void;
  /**
   * Checked before each transformer block: once aborted, the forward frees what it made and throws
   * AbortError. forwardAsync also yields to the event loop there, so an abort from a timer or a
   * signal handler lands within one block.
   */
  signal?: AbortSignal;
}

/** Resolves after pending timers and I/O callbacks (a signal handler's abort among them) have run. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Options of WanTransformer3DModel.fromPretrained: `config` overrides the config.json fields, and is
 * required (a preset or a full config) when the checkpoint has no config.json; `offloadBlocks`
 * streams the first N blocks (see WanTransformer3DModel.offloadBlocks), each block's weights moved
 * to pinned host memory as soon as they are loaded, so the device never holds them all.
 */
export type WanTransformerLoadOptions = PretrainedOptions<WanTransformerConfig, never> & { offloadBlocks?: number };

/** The block index of a checkpoint key in either layout (`blocks.3.attn1.to_q.weight`, `model.diffusion_model.blocks.3.…`). */
function blockOfKey(key: string): number | undefined {
  const m = /(?:^|\.)blocks\.(\d+)\./.exec(key);
  return m ? Number(m[1]) : undefined;
}

/** The DataIds of a module's weights that are set. */
function weightIds(module: WanModule): tf.DataId[] {
  return [...module.namedParams().values()].filter((p) => p.isSet).map((p) => p.value.dataId);
}

/**
 * The Wan diffusion transformer (Diffusers' WanTransformer3DModel, original `WanModel`): patch
 * embedding, timestep/text conditioning, `numLayers` WanTransformerBlocks with 3D RoPE, the
 * modulated output norm, `proj_out` and unpatchify. Keys are Diffusers' names.
 */
export class WanTransformer3DModel extends WanModule {
  static readonly className = 'WanTransformer3DModel';
  readonly config: WanTransformerConfig;
  readonly rope: WanRotaryPosEmbed;
  readonly patchEmbedding: WanPatchEmbedding;
  readonly conditionEmbedder: WanTimeTextImageEmbedding;
  readonly blocks: WanTransformerBlock[];
  readonly normOut: FP32LayerNorm;
  readonly projOut: Linear;
  readonly scaleShiftTable: Param;
  /** How many of the first blocks stream from pinned host memory (offloadBlocks). */
  private streamed = 0;

  constructor(config: Partial<WanTransformerConfig> & { name?: string } = {}) {
    super({ name: config.name });
    const c = (this.config = WanTransformerConfig.resolve(config));
    const dim = c.numAttentionHeads * c.attentionHeadDim;
    const [pt, ph, pw] = c.patchSize;
    this.rope = this.addModule('rope', new WanRotaryPosEmbed({ attentionHeadDim: c.attentionHeadDim, patchSize: c.patchSize, maxSeqLen: c.ropeMaxSeqLen }));
    this.patchEmbedding = this.addModule('patch_embedding', new WanPatchEmbedding({ inChannels: c.inChannels, dim, patchSize: c.patchSize }));
    this.conditionEmbedder = this.addModule(
      'condition_embedder',
      new WanTimeTextImageEmbedding({ dim, timeFreqDim: c.freqDim, timeProjDim: 6 * dim, textEmbedDim: c.textDim }),
    );
    this.blocks = [];
    for (let i = 0; i < c.numLayers; i++) {
      const block = new WanTransformerBlock({
        dim,
        ffnDim: c.ffnDim,
        numHeads: c.numAttentionHeads,
        qkNorm: c.qkNorm !== null,
        crossAttnNorm: c.crossAttnNorm,
        eps: c.eps,
      });
      this.blocks.push(this.addModule(`blocks.${i}`, block));
    }
    this.normOut = this.addModule('norm_out', new FP32LayerNorm({ dim, eps: c.eps, elementwiseAffine: false }));
    this.projOut = this.addModule('proj_out', new Linear({ inFeatures: dim, outFeatures: c.outChannels * pt * ph * pw }));
    this.scaleShiftTable = this.addParam('scale_shift_table', [1, 2, dim], { init: { normal: 1 / Math.sqrt(dim) }, keepFp32: true });
  }

  /** Model width D = heads × head dim. */
  get innerDim(): number {
    return this.config.numAttentionHeads * this.config.attentionHeadDim;
  }

  /**
   * A model with random weights (Diffusers' `from_config`; the name `fromConfig` is tfjs' deserialiser): `new WanTransformer3DModel(config)` +
   * `initialize(seed)`. The initialisation is Diffusers' (PyTorch's defaults: linears and the patch
   * conv U(±1/√fan_in), scale_shift_table N(0, 1/dim), norms ones/zeros). A seed other than 0 gives
   * the same weights every time; 0 (the default) a different draw per call.
   */
  static withRandomWeights(config: Partial<WanTransformerConfig> & { name?: string } = {}, options: { seed?: number } = {}): WanTransformer3DModel {
    return new WanTransformer3DModel(config).initialize(options.seed);
  }

  /**
   * Loads a DiT from a folder (a `transformer/` folder, a model root holding one, an original expert
   * folder) or a .safetensors / .safetensors.index.json file, in either layout: Diffusers (keys
   * `blocks.0.attn1.to_q.weight`, WanTransformer3DModel config.json) or original Wan (keys
   * `blocks.0.self_attn.q.weight`, optionally prefixed `model.diffusion_model.`; WanModel
   * config.json). The layout is detected from the keys (weights/families.ts).
   */
  static async fromPretrained(dirOrFile: string, options: WanTransformerLoadOptions = {}): Promise<WanTransformer3DModel> {
    const { offloadBlocks = 0, ...rest } = options;
    const backend = offloadBlocks === 0 ? undefined : requireOffloading(`offloadBlocks: ${offloadBlocks}`);
    let model: WanTransformer3DModel | undefined;
    const build = (c: WanTransformerConfig) => {
      const m = new WanTransformer3DModel(c);
      m.streamed = checkOffloadBlocks(offloadBlocks, c.numLayers);
      return (model = m);
    };
    return loadPretrained(dirOrFile, WAN_TRANSFORMER_FAMILY, WanTransformerConfig, build, {
      ...rest,
      onProgress: (loaded, total, key) => {
        const i = blockOfKey(key);
        if (backend && model && i !== undefined && i < model.streamed) backend.offload(weightIds(model.blocks[i]));
        rest.onProgress?.(loaded, total, key);
      },
    });
  }

  /** How many of the first blocks stream from pinned host memory during a forward (offloadBlocks). */
  get offloadedBlocks(): number {
    return this.streamed;
  }

  /**
   * Block streaming (ComfyUI's block swap): the weights of the first n blocks live in pinned host
   * memory. In a forward, block i+1 is copied to the device on the backend's copy stream while
   * block i computes, and a streamed block's device copy is freed once its kernels are queued, so
   * at most two streamed blocks are on the device at a time: the device holds (n − min(n, 2)) blocks'
   * bytes less. Outputs are unchanged (the same bytes are read). n = 0 brings every block back.
   * Backend 'cuda' only: n > 0 elsewhere is a ConfigError (those backends hold tensors in host memory).
   */
  offloadBlocks(n: number): void {
    checkOffloadBlocks(n, this.blocks.length);
    const backend = n > 0 ? requireOffloading(`offloadBlocks: ${n}`) : offloadingBackend();
    for (let i = Math.min(n, this.streamed); i < Math.max(n, this.streamed); i++) {
      if (i < n) backend?.offload(weightIds(this.blocks[i]));
      else backend?.prefetch(weightIds(this.blocks[i]));
    }
    this.streamed = n;
  }

  /**
   * Moves every weight to pinned host memory ('host': the idle expert under residency 'swap'), or
   * starts bringing them back ('device'), all but the streamed blocks', whose copies the forward
   * makes. Backend 'cuda' only (ConfigError elsewhere).
   */
  moveWeights(where: 'host' | 'device'): void {
    const backend = requireOffloading(`moving the weights of ${this.name} to the ${where}`);
    if (where === 'host') {
      backend.offload(weightIds(this));
      return;
    }
    const streamed = new Set(this.blocks.slice(0, this.streamed).flatMap((b) => weightIds(b)));
    backend.prefetch(weightIds(this).filter((id) => !streamed.has(id)));
  }

  /** Device bytes of every weight when on the device (0 on a backend that does not offload). */
  weightBytes(): number {
    return offloadingBackend()?.bytesOf(weightIds(this)) ?? 0;
  }

  /**
   * `e` with the offloadBlocks that would make it fit, where streaming more blocks can: the least
   * n > offloadedBlocks with (n − min(n, 2)) − (s − min(s, 2)) ≥ ⌈shortfall / block bytes⌉ blocks
   * (s = offloadedBlocks, shortfall = needed − available); else `e` as it is.
   */
  private withOffloadAdvice(e: OutOfMemoryError, backend: OffloadingBackend): OutOfMemoryError {
    if (this.blocks.length === 0) return e;
    const block = backend.bytesOf(weightIds(this.blocks[0]));
    const s = this.streamed;
    const blocks = Math.ceil(Math.max(1, e.neededBytes - e.availableBytes) / block);
    const saved = (n: number) => n - Math.min(n, 2);
    let n = s + 1;
    while (n <= this.blocks.length && saved(n) - saved(s) < blocks) n++;
    if (block === 0 || n > this.blocks.length) return e;
    const own = e.message.slice(e.argument.length + 2);
    return new OutOfMemoryError('offloadBlocks', e.neededBytes, e.availableBytes, `${own}; or stream blocks from host memory: offloadBlocks: ${n} (--offload-blocks ${n}) keeps ${((saved(n) - saved(s)) * block / 2 ** 30).toFixed(2)} GiB more of this transformer's weights off the device`, e.op === undefined ? undefined : { op: e.op, inUseBytes: e.inUseBytes ?? 0 });
  }

  /** Saves the model to folder `dir` in the Diffusers layout (config.json + diffusion_pytorch_model.safetensors, float32), atomically; fromPretrained reads it back. */
  savePretrained(dir: string): void {
    savePretrained(this, dir, WAN_TRANSFORMER_FAMILY, WanTransformerConfig.toJSON(this.config));
  }

  // hiddenStates: [B, C_in, F, H, W], timestep: [B] or per token [B, L] (B may be 1 to share it),
  // encoderHiddenStates: [B, Ltxt, textDim] → [B, C_out, F, H, W]
  forward(hiddenStates: tf.Tensor, timestep: tf.Tensor, encoderHiddenStates: tf.Tensor, options: WanTransformerForwardOptions = {}): tf.Tensor {
    const run = this.stages(hiddenStates, timestep, encoderHiddenStates, options);
    let r = run.next();
    while (!r.done) r = run.next();
    return r.value;
  }

  /** forward, yielding to the event loop before each block (so `signal` can abort mid-step). */
  async forwardAsync(hiddenStates: tf.Tensor, timestep: tf.Tensor, encoderHiddenStates: tf.Tensor, options: WanTransformerForwardOptions = {}): Promise<tf.Tensor> {
    const run = this.stages(hiddenStates, timestep, encoderHiddenStates, options);
    let r = run.next();
    while (!r.done) {
      await yieldToEventLoop();
      r = run.next();
    }
    return r.value;
  }

  /**
   * The forward as stages: yields before each block, then checks `signal` (AbortError once
   * aborted). Tensors made between yields live in their own tidy scope, so a caller may run other
   * tf code while it is suspended; every intermediate is freed on return or throw.
   */
  private *stages(hiddenStates: tf.Tensor, timestep: tf.Tensor, encoderHiddenStates: tf.Tensor, options: WanTransformerForwardOptions): Generator<void, tf.Tensor, void> {
    const c = this.config;
    if (hiddenStates.rank !== 5 || hiddenStates.shape[1] !== c.inChannels) {
      throw new ShapeError('hiddenStates', `[${hiddenStates.shape}]`, `[B, ${c.inChannels}, F, H, W]`);
    }
    const B = hiddenStates.shape[0];
    const grid = this.rope.grid(hiddenStates.shape);
    const [F, H, W] = grid;
    const L = F * H * W;
    const Bt = timestep.shape[0];
    const perToken = timestep.rank === 2;
    if ((timestep.rank !== 1 && !perToken) || (Bt !== B && Bt !== 1) || (perToken && timestep.shape[1] !== L)) {
      throw new ShapeError('timestep', `[${timestep.shape}]`, `[${B}] or per token [${B}, ${L}] (L = ${F}·${H}·${W} tokens)`);
    }
    if (encoderHiddenStates.rank !== 3 || encoderHiddenStates.shape[0] !== B || (encoderHiddenStates.shape[1] ?? 0) < 1 || encoderHiddenStates.shape[2] !== c.textDim) {
      throw new ShapeError('encoderHiddenStates', `[${encoderHiddenStates.shape}]`, `[${B}, Ltxt ≥ 1, ${c.textDim}]`);
    }
    const streaming = this.streamed > 0 ? offloadingBackend() : undefined;
    try {
      // block 0's copy overlaps the embeddings
      if (streaming) streaming.prefetch(weightIds(this.blocks[0]));
      return yield* this.run(hiddenStates, timestep, encoderHiddenStates, grid, options, streaming);
    } catch (e) {
      const backend = offloadingBackend();
      throw e instanceof OutOfMemoryError && backend ? this.withOffloadAdvice(e, backend) : e;
    } finally {
      // the streamed blocks' device copies an abort or a failure left behind
      if (streaming) for (const b of this.blocks.slice(0, this.streamed)) streaming.offload(weightIds(b));
    }
  }

  /** The stages after the checks: embeddings, the blocks (streamed ones prefetched one block ahead and dropped after), the output. */
  private *run(
    hiddenStates: tf.Tensor,
    timestep: tf.Tensor,
    encoderHiddenStates: tf.Tensor,
    grid: TokenGrid,
    options: WanTransformerForwardOptions,
    streaming: OffloadingBackend | undefined,
  ): Generator<void, tf.Tensor, void> {
    const { debug, signal } = options;
    const c = this.config;
    const D = this.innerDim;
    const B = hiddenStates.shape[0];
    const [F, H, W] = grid;
    const L = F * H * W;
    const Bt = timestep.shape[0];
    const perToken = timestep.rank === 2;
    // rotary cos/sin [1, L, 1, d]; x [B, L, D]; temb [Bt, D] | [Bt, L, D]; temb6 [Bt, 6, D] | [Bt, L, 6, D]; text [B, Ltxt, D]
    const s = tf.tidy(() => {
      const rotary = this.rope.forward(hiddenStates.shape);
      debug?.('rope_cos', rotary.cos);
      debug?.('rope_sin', rotary.sin);

      const x = this.patchEmbedding.forward(hiddenStates);
      if (debug) debug('patch_embedding', tf.transpose(tf.reshape(x, [B, F, H, W, D]), [0, 4, 1, 2, 3]));

      const cond = this.conditionEmbedder.forward(timestep, encoderHiddenStates);
      debug?.('temb', cond.temb);
      debug?.('timestep_proj', cond.timestepProj);
      debug?.('text_embedding', cond.encoderHiddenStates);
      const temb6 = tf.reshape(cond.timestepProj, perToken ? [Bt, L, 6, D] : [Bt, 6, D]);
      return { cos: rotary.cos, sin: rotary.sin, x, temb: cond.temb, temb6, text: cond.encoderHiddenStates };
    });
    let x = s.x;
    try {
      for (let i = 0; i < this.blocks.length; i++) {
        yield;
        if (signal?.aborted) throw new AbortError('generation was aborted');
        if (streaming && i + 1 < this.streamed) streaming.prefetch(weightIds(this.blocks[i + 1]));
        const h = x;
        const next = tf.tidy(() => {
          const y = this.blocks[i].forward(h, s.text, s.temb6, { cos: s.cos, sin: s.sin });
          debug?.(`block.${i}`, y);
          return y;
        });
        x.dispose();
        x = next;
        // freed after the block's kernels (stream-ordered); the host copy stays
        if (streaming && i < this.streamed) streaming.offload(weightIds(this.blocks[i]));
      }
      const h = x;
      return tf.tidy(() => {
        // shift, scale = scale_shift_table + temb (fp32): [Bt, 1, D] or per token [Bt, L, D]
        const [shift, scale] = fp32(() => {
          const mod = perToken
            ? tf.add(tf.reshape(this.scaleShiftTable.value, [1, 1, 2, D]), tf.expandDims(s.temb, 2))
            : tf.add(this.scaleShiftTable.value, tf.expandDims(s.temb, 1));
          return tf.split(mod, 2, perToken ? 2 : 1).map((m) => (perToken ? tf.reshape(m, [Bt, L, D]) : m));
        });
        const normed = this.normOut.forwardModulated(h, scale, shift);
        const y = this.projOut.forward(normed);
        debug?.('proj_out', y);
        return unpatchify(y, grid, c.patchSize);
      });
    } finally {
      tf.dispose([x, s.cos, s.sin, s.temb, s.temb6, s.text]);
    }
  }

  /** inputs: [hiddenStates, timestep, encoderHiddenStates]. */
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const xs = Array.isArray(inputs) ? inputs : [inputs];
    if (xs.length !== 3) throw new ShapeError('inputs', `${xs.length} tensors`, '[hiddenStates, timestep, encoderHiddenStates]');
    return this.forward(xs[0], xs[1], xs[2]);
  }

  /** Frees the parameters and the cached rotary tables. */
  override dispose(): { refCountAfterDispose: number; numDisposedVariables: number } {
    this.rope.dispose();
    return super.dispose();
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...WanTransformerConfig.getConfig(this.config) };
  }
}

/** n as offloadBlocks of a transformer with `numLayers` blocks: an integer in [0, numLayers], else a ConfigError. */
function checkOffloadBlocks(n: number, numLayers: number): number {
  if (!Number.isInteger(n) || n < 0 || n > numLayers) throw new ConfigError(`offloadBlocks: got ${n}, expected an integer in [0, ${numLayers}] (the transformer's blocks)`);
  return n;
}

tf.serialization.registerClass(WanTransformer3DModel);
