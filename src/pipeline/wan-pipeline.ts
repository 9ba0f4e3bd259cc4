import * as tf from '@tensorflow/tfjs-core';
import { AutoencoderKLWan, type WanVaeDecodeOptions } from '../../layers/autoencoder-kl-wan.js';
import { WanTransformer3DModel } from '../../layers/wan-transformer-3d-model.js';
import { loadScheduler } from '../../schedulers/index.js';
import type { FlowScheduler } from '../../schedulers/scheduler.js';
import { locateComponent, openCheckpoint } from '../../weights/component.js';
import { UMT5_FAMILY, WAN_VAE_FAMILY } from '../../weights/families.js';
import { offloadingBackend, requireOffloading } from '../backend/offload.js';
import { CheckpointError, ConfigError, OutOfMemoryError, ShapeError } from '../errors.js';
import { WanTextEncoder } from '../text/text-encoder.js';
import { runExclusive } from './call-queue.js';
import type { Conditioning } from './conditioning.js';
import { checkAbort, denoise, type Experts } from './denoise-loop.js';
import { ExpertSlot, type ExpertResidency } from './expert-slot.js';
import type { GenerateOptions, TextToVideoResult } from './generate-options.js';
import { checkInputValues } from './input-values.js';
import { latentStats } from './latent-normalization.js';
import { memoryBudget } from './memory-budget.js';
import { formatBytes } from './memory-estimate.js';
import { modelMemoryInput, planMemory, type MemoryPlan } from './memory-plan.js';
import { defaultModelDir } from './default-model.js';
import { hasModelFiles, withModelFiles, type ModelFiles } from './model-files.js';
import { readModelIndex, type ModelIndex, type SamplingDefaults } from './model-index.js';
import type { PipelineTextEncoder, PipelineTransformer, PipelineVae } from './pipeline-components.js';
import { FALLBACK_DEFAULTS, readPipelineSpec, sameSpec, specOf, type PipelineSpec } from './pipeline-spec.js';
import { ResolvedCall, resolveSettings } from './resolve-settings.js';
import { checkFloat32 } from './tensor-checks.js';
import { chooseVaeTile } from './vae-budget.js';
import { applyPipelineLora, pipelineLora, removeLora, type PipelineLora, type PipelineLoraOptions } from './pipeline-lora.js';
import type { LoadedLora } from '../train/lora-io.js';
import { WanModule } from '../../layers/module.js';
import { savePipeline } from './save-pipeline.js';

export interface WanPipelineComponents {
  /** The only expert, or the high-noise expert of a two-expert model. */
  transformer: PipelineTransformer | ExpertSlot;
  /** The low-noise expert (with boundaryRatio). */
  transformer2?: PipelineTransformer | ExpertSlot;
  vae?: PipelineVae;
  /** The VAE's factors when no VAE is loaded (default 8 spatial, 4 temporal; the VAE's config wins when there is one). */
  vaeScaleFactors?: { spatial: number; temporal: number };
  textEncoder?: PipelineTextEncoder;
  /** Stepped by one call at a time: calls on pipelines sharing it are queued. */
  scheduler: FlowScheduler;
  /** `transformer` runs while t ≥ boundaryRatio·numTrainTimesteps, `transformer2` after. */
  boundaryRatio?: number | null;
  /** Per-token timesteps [B, L] (Wan2.2-TI2V-5B). */
  expandTimesteps?: boolean;
  numTrainTimesteps?: number;
  defaults?: Partial<SamplingDefaults>;
  /** Two experts: where they live (default 'both'); 'swap' needs both loaded and backend 'cuda'. */
  residency?: ExpertResidency;
  /** The memory mode fromPretrained chose, when it chose one. */
  memoryPlan?: MemoryPlan;
}

/**
 * Options of WanPipeline.fromPretrained. The ModelFiles fields (transformer, transformer2, vae,
 * textEncoder, tokenizer, boundaryRatio) give components one by one, e.g. ComfyUI single files,
 * replacing the model folder's or, with no folder, making the model (see withModelFiles).
 */
export interface WanPipelineLoadOptions extends ModelFiles {
  /**
   * Two-expert models: both experts on the device ('both'); both loaded once, the idle one in
   * pinned host memory and swapped at the boundary ('swap', backend 'cuda'); or only the one in use
   * loaded, the other read from disk again at the boundary ('active'). On backend 'cuda' the default
   * is planned from the free GPU memory (planMemory; `memoryPlan` says what and why); elsewhere 'both'.
   */
  residency?: ExpertResidency;
  /**
   * Block streaming: the first N blocks of each expert live in pinned host memory and are copied to
   * the device one block ahead of use (WanTransformer3DModel.offloadBlocks). Backend 'cuda' only
   * (a ConfigError elsewhere, N > 0); on 'cuda' the default is planned with `residency`.
   */
  offloadBlocks?: number;
  /** Load the text encoder when the folder has one (default true); without it, pass embeddings. */
  loadTextEncoder?: boolean;
  /** Load the VAE (default true); without it, generate() still returns latents. */
  loadVae?: boolean;
  /** Called while each component's tensors load. */
  onProgress?: (event: { component: string; loaded: number; total: number }) => void;
}

function asSlot(name: string, t: PipelineTransformer | ExpertSlot): ExpertSlot {
  return t instanceof ExpertSlot ? t : new ExpertSlot(name, t);
}

/** Runs `f` on `x` and frees `x`: one intermediate of x's size at a time. */
function replacing(x: tf.Tensor, f: (t: tf.Tensor) => tf.Tensor): tf.Tensor {
  try {
    return f(x);
  } finally {
    x.dispose();
  }
}

// video: [B, 3, F, H, W] in [−1, 1] → frames [B, F, H, W, 3] in [0, 1]; disposes video
function toFrames(video: tf.Tensor): tf.Tensor {
  const half = replacing(video, (x) => tf.div(x, 2));
  const shifted = replacing(half, (x) => tf.add(x, 0.5));
  const clamped = replacing(shifted, (x) => tf.clipByValue(x, 0, 1));
  return replacing(clamped, (x) => tf.transpose(x, [0, 2, 3, 4, 1]));
}

/**
 * Wan text-to-video (Diffusers' WanPipeline) and image-to-video (WanImageToVideoPipeline): text
 * embeddings → flow-matching denoising with classifier-free guidance, one or two experts split at
 * boundary_ratio (src/pipeline/denoise-loop.ts), conditioned by the call's task (text, first-frame
 * tokens, image channels) → VAE decode → frames in [0, 1]. Staged: `encodeText`, `generate`
 * (→ latents), `decodeLatents` (→ frames), or `textToVideo` for all three. Settings are resolved
 * once per call (resolveSettings; a ResolvedCall may be passed instead of options). Calls are
 * independent: concurrent calls give exactly their sequential results (the scheduler's state is one
 * trajectory's at a time, so they take turns stepping).
 */
export class WanPipeline {
  readonly experts: readonly [ExpertSlot] | readonly [ExpertSlot, ExpertSlot];
  readonly vae: PipelineVae | undefined;
  readonly textEncoder: PipelineTextEncoder | undefined;
  readonly scheduler: FlowScheduler;
  readonly boundaryRatio: number | null;
  readonly expandTimesteps: boolean;
  readonly numTrainTimesteps: number;
  readonly defaults: SamplingDefaults;
  readonly residency: ExpertResidency;
  /** The memory mode fromPretrained planned (backend 'cuda', residency or offloadBlocks not given); `reason` is one line for a log. */
  readonly memoryPlan: MemoryPlan | undefined;
  /** What settings are resolved against. */
  readonly spec: PipelineSpec;
  private disposed = false;
  /** The LoRA loaded with loadLora, if any. */
  private lora: PipelineLora | undefined;
  /** Expert models that carry `lora` (a released expert is loaded again without it). */
  private readonly adapted = new WeakSet<PipelineTransformer>();
  /** Residency 'swap': the expert whose weights are on the device. */
  private onDevice: 0 | 1 = 0;
  /** The folder or files fromPretrained loaded (savePretrained reads the text encoder's files from it). */
  private source: ModelIndex | undefined;

  constructor(c: WanPipelineComponents) {
    const first = asSlot('transformer', c.transformer);
    this.boundaryRatio = c.boundaryRatio ?? null;
    if (this.boundaryRatio !== null) {
      if (!c.transformer2) throw new ConfigError('boundaryRatio is set (two experts) but transformer2 is missing');
      if (!(this.boundaryRatio > 0 && this.boundaryRatio < 1)) throw new ConfigError(`boundaryRatio: got ${this.boundaryRatio}, expected a number in (0, 1)`);
      this.experts = [first, asSlot('transformer_2', c.transformer2)];
    } else {
      if (c.transformer2) throw new ConfigError('transformer2 given without boundaryRatio: set boundaryRatio (e.g. 0.875 for Wan2.2-T2V-A14B)');
      this.experts = [first];
    }
    this.residency = c.residency ?? 'both';
    if (this.residency === 'active' && this.experts.length === 2 && !this.experts.every((e) => e.canReload)) {
      throw new ConfigError("residency 'active' needs experts that can be reloaded (ExpertSlot with a loader; fromPretrained makes them)");
    }
    if (this.residency === 'swap' && this.experts.length === 2) {
      requireOffloading("residency 'swap'");
      const idle = this.experts[1].current;
      if (!idle?.moveWeights || !this.experts[0].current?.moveWeights) throw new ConfigError("residency 'swap' needs both experts loaded, as models that can move their weights (WanTransformer3DModel)");
      idle.moveWeights('host');
    }
    this.memoryPlan = c.memoryPlan;
    const model = first.current ?? this.experts[1]?.current;
    if (!model) throw new ConfigError('at least one expert must be loaded when the pipeline is built');
    this.vae = c.vae;
    this.textEncoder = c.textEncoder;
    this.scheduler = c.scheduler;
    this.expandTimesteps = c.expandTimesteps ?? false;
    this.numTrainTimesteps = c.numTrainTimesteps ?? 1000;
    this.defaults = { ...FALLBACK_DEFAULTS, ...c.defaults };
    this.spec = specOf({
      transformer: model.config,
      vae: c.vae ? { config: c.vae.config, encodes: c.vae.encode !== undefined } : undefined,
      vaeScaleFactors: c.vaeScaleFactors,
      boundaryRatio: this.boundaryRatio,
      numTrainTimesteps: this.numTrainTimesteps,
      expandTimesteps: this.expandTimesteps,
      hasTextEncoder: c.textEncoder !== undefined,
      defaults: this.defaults,
    });
  }

  /**
   * Loads a model folder in the Diffusers layout (model_index.json; transformer/, transformer_2/
   * with boundary_ratio, vae/, text_encoder/, tokenizer/, scheduler/) or the original Wan layout
   * (high_noise_model/ + low_noise_model/, or one WanModel; Wan2.x_VAE.safetensors), or the
   * ModelIndex read from one; or (model undefined, options.transformer given) single files such as
   * ComfyUI's, the scheduler then the Wan release's UniPC flow config; or, with neither, the CLI's
   * default model (defaultModelDir: $WAN_MODEL, else the toy model the package ships). Every
   * checkpoint is checked before anything is loaded; a missing or truncated file raises a
   * CheckpointError naming it.
   */
  static async fromPretrained(model?: string | ModelIndex, options: WanPipelineLoadOptions = {}): Promise<WanPipeline> {
    const files: ModelFiles = { transformer: options.transformer, transformer2: options.transformer2, vae: options.vae, textEncoder: options.textEncoder, tokenizer: options.tokenizer, boundaryRatio: options.boundaryRatio };
    const folder = model ?? (hasModelFiles(files) ? undefined : defaultModelDir(process.env));
    const base = typeof folder === 'string' ? readModelIndex(folder) : folder;
    const index = base === undefined || hasModelFiles(files) ? withModelFiles(base, files, process.env) : base;
    const wantVae = options.loadVae ?? true;
    const wantText = (options.loadTextEncoder ?? true) && index.textEncoder !== undefined;
    // PyTorch pickles of an original release are refused first, by name
    if (wantVae && index.vae) locateComponent(index.vae, WAN_VAE_FAMILY);
    if (wantText && index.textEncoder) locateComponent(index.textEncoder, UMT5_FAMILY);
    if (wantText && !index.tokenizer) throw new CheckpointError('the model has a text encoder but no tokenizer (tokenizer/tokenizer.json or google/umt5-xxl/tokenizer.json)', index.root);
    const spec = readPipelineSpec(index, { loadVae: wantVae, loadTextEncoder: wantText });
    for (const p of [index.transformer, index.transformer2, wantVae ? index.vae : undefined, wantText ? index.textEncoder : undefined]) if (p) openCheckpoint(p).close();
    const progress = (component: string) => (loaded: number, total: number) => options.onProgress?.({ component, loaded, total });
    const backend = offloadingBackend();
    const fixed = { residency: options.residency, offloadBlocks: options.offloadBlocks };
    const memoryPlan = backend && (fixed.residency === undefined || fixed.offloadBlocks === undefined) ? planMemory(modelMemoryInput(index, spec, { vae: wantVae, textEncoder: wantText }, backend), fixed) : undefined;
    const residency = fixed.residency ?? memoryPlan?.residency ?? 'both';
    const offloadBlocks = fixed.offloadBlocks ?? memoryPlan?.offloadBlocks ?? 0;
    if (residency === 'swap' && index.transformer2) requireOffloading("residency 'swap'");
    const loader = (name: string, p: string) => () => WanTransformer3DModel.fromPretrained(p, { onProgress: progress(name), offloadBlocks });
    const slots: ExpertSlot[] = [];
    let vae: AutoencoderKLWan | undefined;
    let textEncoder: WanTextEncoder | undefined;
    try {
      const scheduler = await loadScheduler(index.scheduler);
      const load2 = index.transformer2 ? loader('transformer_2', index.transformer2) : undefined;
      // 'swap': the low-noise expert loads first and goes to host memory before the other loads
      const idle = load2 && residency === 'swap' ? new ExpertSlot('transformer_2', await load2(), load2) : undefined;
      if (idle) slots.push(idle);
      idle?.current?.moveWeights?.('host');
      const first = new ExpertSlot('transformer', await loader('transformer', index.transformer)(), loader('transformer', index.transformer));
      slots.push(first);
      const second = idle ?? (load2 ? new ExpertSlot('transformer_2', residency === 'both' ? await load2() : undefined, load2) : undefined);
      if (second && !idle) slots.push(second);
      if (wantVae && index.vae) vae = await AutoencoderKLWan.fromPretrained(index.vae, { onProgress: progress('vae') });
      if (wantText && index.textEncoder) textEncoder = await WanTextEncoder.fromPretrained(index.textEncoder, { tokenizerDir: index.tokenizer, maxLength: index.defaults.maxSequenceLength, onProgress: progress('text_encoder') });
      const pipe = new WanPipeline({
        transformer: first,
        transformer2: second,
        vae,
        vaeScaleFactors: { spatial: spec.scaleFactorSpatial, temporal: spec.scaleFactorTemporal },
        textEncoder,
        scheduler,
        boundaryRatio: index.boundaryRatio,
        expandTimesteps: index.expandTimesteps,
        numTrainTimesteps: index.numTrainTimesteps,
        defaults: index.defaults,
        residency,
        memoryPlan,
      });
      pipe.source = index;
      return pipe;
    } catch (e) {
      for (const slot of slots) slot.dispose();
      vae?.dispose();
      textEncoder?.dispose();
      throw e;
    }
  }

  /** Noise channels of the latents (the DiT's out_channels). */
  get latentChannels(): number {
    return this.spec.latentChannels;
  }

  /** Image-condition channels the DiT takes after the noise: 0, or (Wan2.2-I2V-A14B) the VAE's temporal factor (a mask) + z_dim. */
  get conditionChannels(): number {
    return this.spec.conditionChannels;
  }

  /** The DiT's patch (pt, ph, pw). */
  get patchSize(): readonly number[] {
    return this.spec.patchSize;
  }

  /** The DiT's text width. */
  get textDim(): number {
    return this.spec.textDim;
  }

  /** Spatial factor of the VAE (8 for Wan2.1, 16 for Wan2.2). */
  get vaeScaleFactorSpatial(): number {
    return this.spec.scaleFactorSpatial;
  }

  /** Temporal factor of the VAE (4). */
  get vaeScaleFactorTemporal(): number {
    return this.spec.scaleFactorTemporal;
  }

  private checkNotDisposed(): void {
    if (this.disposed) throw new ConfigError('this pipeline was disposed: load it again');
  }

  /** Prompt(s) → embeddings [B, Ltxt, textDim] with the text encoder (the caller disposes). */
  async encodeText(prompt: string | readonly string[]): Promise<tf.Tensor> {
    this.checkNotDisposed();
    if (!this.textEncoder) {
      throw new ConfigError('this pipeline has no text encoder (the model folder has no text_encoder/): pass promptEmbeds and negativePromptEmbeds instead of prompts');
    }
    const prompts = typeof prompt === 'string' ? [prompt] : [...prompt];
    if (prompts.length === 0) throw new ConfigError('prompt: got an empty list, expected at least one prompt');
    const e = await this.textEncoder.encode(prompts);
    if (e.rank !== 3 || e.shape[0] !== prompts.length || e.shape[2] !== this.textDim) {
      const shape = `[${e.shape}]`;
      e.dispose();
      throw new ShapeError('text encoder output', shape, `[${prompts.length}, Ltxt, ${this.textDim}] (the transformer's text_dim)`);
    }
    return e;
  }

  /** Fills in defaults and checks everything that needs no tensor's values, before any tensor is made (resolveSettings against this pipeline). */
  resolve(o: GenerateOptions, options: { decode?: boolean } = {}): ResolvedCall {
    return resolveSettings(this.spec, o, { decode: options.decode ?? false });
  }

  /** The call for options, or a call resolved earlier (again if for another model; its memory checked against what is free now). */
  private callFor(o: GenerateOptions | ResolvedCall, decode: boolean): ResolvedCall {
    this.checkNotDisposed();
    if (!(o instanceof ResolvedCall)) return resolveSettings(this.spec, o, { decode });
    if (!sameSpec(o.spec, this.spec)) return resolveSettings(this.spec, { ...o.options, seed: o.options.seeds ? undefined : o.seed }, { decode });
    o.checkMemory(decode);
    return o;
  }

  private readonly expertSet: Experts = {
    indexAt: (t) => (this.boundaryRatio === null || t >= this.boundaryRatio * this.numTrainTimesteps ? 0 : 1),
    get: async (i) => {
      const slot = this.experts[i];
      if (!slot) throw new ConfigError(`this pipeline has no expert ${i}`);
      if (this.residency === 'active' && !slot.resident) this.experts[1 - i]?.release();
      if (this.residency === 'swap' && i !== this.onDevice) {
        // the idle expert's device memory is freed before the other's copies allocate theirs
        this.experts[this.onDevice]?.current?.moveWeights?.('host');
        slot.current?.moveWeights?.('device');
        this.onDevice = i;
      }
      const model = await slot.get();
      if (this.lora?.experts.includes(i) && !this.adapted.has(model)) {
        applyPipelineLora(model, this.lora);
        this.adapted.add(model);
      }
      return model;
    },
  };

  /**
   * Loads a LoRA file (Diffusers/PEFT or original Wan/ComfyUI keys) into the experts `options.expert`
   * names, its ΔW multiplied by `options.scale` (Diffusers' `load_lora_weights` with `lora_scale`).
   * One LoRA at a time: unloadLora() first to change it. An expert that is not resident now
   * (residency 'active') gets it when it is loaded. Returns what was loaded, per resident expert.
   */
  async loadLora(file: string, options: PipelineLoraOptions = {}): Promise<LoadedLora[]> {
    this.checkNotDisposed();
    if (this.lora) throw new ConfigError(`loadLora '${file}': '${this.lora.file}' is loaded; call unloadLora() first`);
    const lora = pipelineLora(file, options, this.experts.length);
    const done: PipelineTransformer[] = [];
    const loaded: LoadedLora[] = [];
    try {
      for (const i of lora.experts) {
        const model = this.experts[i].current;
        if (!model) continue;
        loaded.push(applyPipelineLora(model, lora));
        done.push(model);
      }
    } catch (e) {
      for (const model of done) if (model instanceof WanModule) removeLora(model);
      throw e;
    }
    for (const model of done) this.adapted.add(model);
    this.lora = lora;
    return loaded;
  }

  /** Removes the LoRA loadLora loaded: the experts give their base outputs again, exactly. */
  unloadLora(): void {
    this.checkNotDisposed();
    for (const slot of this.experts) {
      const model = slot.current;
      if (model && this.adapted.has(model) && model instanceof WanModule) removeLora(model);
      if (model) this.adapted.delete(model);
    }
    this.lora = undefined;
  }

  /**
   * Writes the pipeline to `dir` as a Diffusers pipeline folder (`DiffusionPipeline.save_pretrained`):
   * model_index.json, wan_tfjs.json (the sampling defaults), scheduler/, transformer/ (and
   * transformer_2/), vae/, and text_encoder/ + tokenizer/ when it has a text encoder; every model
   * in float32. fromPretrained(dir) loads it back to the same outputs. The experts and the VAE are
   * written as they are in memory (a non-resident expert is loaded as a call would load it); the
   * text encoder and tokenizer from the files they were loaded from. Atomic: written beside `dir`,
   * then renamed into place; an existing `dir` holding other files is refused (CheckpointError).
   * A loaded LoRA is refused (ConfigError): unloadLora() first. Waits for running calls to finish.
   */
  async savePretrained(dir: string): Promise<void> {
    this.checkNotDisposed();
    await runExclusive(this.scheduler, undefined, () =>
      savePipeline(
        {
          expertCount: this.experts.length,
          expert: (i) => this.expertSet.get(i),
          vae: this.vae,
          textEncoder: this.textEncoder,
          scheduler: this.scheduler,
          boundaryRatio: this.boundaryRatio,
          expandTimesteps: this.expandTimesteps,
          conditionChannels: this.conditionChannels,
          defaults: this.defaults,
          source: this.source,
          loraFile: this.lora?.file,
        },
        dir,
      ),
    );
  }

  /**
   * The denoising loop: returns the final latents [B, C, F', H', W'] (the caller disposes).
   * Follows Diffusers' WanPipeline.__call__: timesteps from the scheduler, the model gets t as
   * given (σ·1000, truncated to an integer by UniPC), CFG per step with the active expert's scale.
   * With `image`, WanImageToVideoPipeline: for expand_timesteps (TI2V-5B) the DiT sees the image's
   * latent as frame 0 with timestep 0 on its tokens, the scheduler steps the latents as they are, and
   * the result gets the image's latent as frame 0; for image-condition channels (I2V-A14B) the DiT
   * sees [latents, mask, image latents] along the channels at every step.
   */
  async generate(o: GenerateOptions | ResolvedCall): Promise<tf.Tensor> {
    return this.advising(this.run(this.callFor(o, false)));
  }

  // Checks the call's values, then runs it when the scheduler is free.
  private async run(call: ResolvedCall): Promise<tf.Tensor> {
    await checkInputValues(call.options);
    return runExclusive(this.scheduler, call.options.signal, () => this.denoiseCall(call));
  }

  private async denoiseCall(call: ResolvedCall): Promise<tf.Tensor> {
    const o = call.options;
    checkAbort(o.signal);
    const owned: tf.Tensor[] = [];
    let conditioning: Conditioning | undefined;
    try {
      let cond = o.promptEmbeds;
      if (!cond) {
        cond = await this.encodeText(o.prompt ?? []);
        owned.push(cond);
      }
      // Diffusers: do_classifier_free_guidance = guidance_scale > 1, for the whole run.
      let uncond = call.guidanceScale > 1 ? o.negativePromptEmbeds : undefined;
      if (call.guidanceScale > 1 && !uncond) {
        const neg = o.negativePrompt ?? '';
        uncond = await this.encodeText(typeof neg === 'string' ? Array<string>(call.batch).fill(neg) : neg);
        owned.push(uncond);
      }
      checkAbort(o.signal);
      conditioning = call.strategy.prepare(this.spec, this.vae, o, call);
      return await denoise({
        experts: this.expertSet,
        guidance: [call.guidanceScale, call.guidanceScale2 ?? call.guidanceScale],
        scheduler: this.scheduler,
        numInferenceSteps: call.numInferenceSteps,
        shift: call.shift,
        cond,
        uncond,
        conditioning,
        latents: o.latents ? o.latents.clone() : call.noise(),
        signal: o.signal,
        onStep: o.onStep,
        checkFinite: o.checkFinite,
      });
    } finally {
      tf.dispose(owned);
      conditioning?.dispose();
    }
  }

  /**
   * `work`, an OutOfMemoryError from it naming residency 'swap' when both experts are on the device
   * and moving the idle one (the smaller, to be safe) to host memory frees at least the shortfall
   * (needed − available).
   */
  private async advising<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (e) {
      throw e instanceof OutOfMemoryError ? this.withResidencyAdvice(e) : e;
    }
  }

  private withResidencyAdvice(e: OutOfMemoryError): OutOfMemoryError {
    if (this.residency !== 'both' || this.experts.length !== 2) return e;
    const idle = Math.min(...this.experts.map((x) => x.current?.weightBytes?.() ?? 0));
    if (idle < e.neededBytes - e.availableBytes) return e;
    const own = e.message.slice(e.argument.length + 2);
    const advice = `residency 'swap' (--experts swap) keeps the idle expert's ${formatBytes(idle)} in pinned host memory, swapped at the boundary`;
    return new OutOfMemoryError('residency', e.neededBytes, e.availableBytes, `${own}; or, cheapest, ${advice}`, e.op === undefined ? undefined : { op: e.op, inUseBytes: e.inUseBytes ?? 0 });
  }

  /**
   * Latents [B, zDim, F', H', W'] → frames [B, F, H, W, 3] in [0, 1] (the caller disposes):
   * z = latents / (1/std) + mean (Diffusers' de-normalisation), VAE decode, clamp(x/2 + 0.5, 0, 1),
   * with at most two video-sized tensors alive at once.
   */
  decodeLatents(latents: tf.Tensor, options: WanVaeDecodeOptions = {}): tf.Tensor {
    const { vae, z } = this.vaeInput(latents);
    return toFrames(replacing(z, (x) => tf.tidy(() => vae.decode(x, options))));
  }

  /** decodeLatents, yielding to the event loop while the VAE decodes (AutoencoderKLWan: between decoder stages), so `options.signal` stops it within one stage. */
  async decodeLatentsAsync(latents: tf.Tensor, options: WanVaeDecodeOptions = {}): Promise<tf.Tensor> {
    const { vae, z } = this.vaeInput(latents);
    let video: tf.Tensor;
    try {
      video = vae.decodeAsync ? await vae.decodeAsync(z, options) : tf.tidy(() => vae.decode(z, options));
    } finally {
      z.dispose();
    }
    return toFrames(video);
  }

  // latents: [B, zDim, F, H, W] → the VAE and z = latents / (1/std) + mean, checked
  private vaeInput(latents: tf.Tensor): { vae: PipelineVae; z: tf.Tensor } {
    this.checkNotDisposed();
    const vae = this.vae;
    if (!vae) throw new ConfigError('this pipeline has no VAE (the model folder has no vae/): decode the latents elsewhere');
    const c = vae.config;
    if (latents.rank !== 5 || latents.shape[1] !== c.zDim) throw new ShapeError('latents', `[${latents.shape}]`, `[B, ${c.zDim}, F, H, W]`);
    checkFloat32('latents', latents);
    const z = tf.tidy(() => {
      const { mean, stdInv } = latentStats(c);
      return tf.add(tf.div(latents, stdInv), mean);
    });
    return { vae, z };
  }

  /**
   * Text (or embeddings, and images) → frames [B, F, H, W, 3] in [0, 1], with the settings used. The
   * VAE decode's tiles (vaeDecodePlan) are settled before denoising, so a budget that cannot be met
   * fails at once.
   */
  async textToVideo(o: GenerateOptions | ResolvedCall): Promise<TextToVideoResult> {
    const call = this.callFor(o, true);
    const tiles = this.vaeDecodePlan(call);
    const latents = await this.advising(this.run(call));
    try {
      checkAbort(call.options.signal);
      return { ...call.settings, frames: await this.advising(this.decodeLatentsAsync(latents, { ...tiles, signal: call.options.signal })) };
    } finally {
      latents.dispose();
    }
  }

  /**
   * The decode's spatial tiles for a call: vaeDecode as given without vaeMemoryBudget; with it,
   * chooseVaeTile for latents call.latentShape [B, zDim, F', h, w] on the current backend (its
   * storage width and attention kernel), the frame conversion and (image tasks) the encoder's filter
   * copies counted: {} (whole frames) when they fit.
   */
  private vaeDecodePlan(call: ResolvedCall): Pick<WanVaeDecodeOptions, 'tileSize' | 'tileOverlap'> {
    const o = call.options;
    if (o.vaeMemoryBudget === undefined) return { ...o.vaeDecode };
    const vae = this.vae;
    if (!(vae instanceof AutoencoderKLWan)) throw new ConfigError("vaeMemoryBudget: this pipeline's VAE is not an AutoencoderKLWan, so its decode's peak cannot be predicted; pass vaeDecode.tileSize instead");
    const [batch, , frames, height, width] = call.latentShape;
    const backend = memoryBudget();
    const options = { bytesPerElement: backend.bytesPerElement, compositeAttention: backend.compositeAttention, toFrames: true, encoderFilters: call.task !== 'text-to-video' };
    return chooseVaeTile(vae.config, { batch, frames, height, width }, o.vaeMemoryBudget, options, o.vaeDecode).decode;
  }

  /** Frees the text encoder's weights (embeddings already made stay valid). */
  releaseTextEncoder(): void {
    this.textEncoder?.release();
  }

  /** Frees every component (once; later calls are refused). Each component is freed even if another one fails to; the first failure is rethrown. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const failures: unknown[] = [];
    const free = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        failures.push(e);
      }
    };
    for (const e of this.experts) free(() => e.dispose());
    free(() => this.vae?.dispose());
    free(() => this.textEncoder?.dispose());
    free(() => this.scheduler.dispose());
    if (failures.length > 0) throw failures[0];
  }
}
