import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { fp32 } from '../src/backend/ops.js';
import { CheckpointError, ConfigError, ShapeError } from '../src/errors.js';
import { loadWeights } from '../weights/load.js';
import { openCheckpoint } from '../weights/sharded.js';
import {
  detectTransformerLayout,
  originalToDiffusersKey,
  stripCheckpointPrefix,
  type TransformerKeyLayout,
} from '../weights/wan-transformer-keys.js';
import { FP32LayerNorm } from './fp32-layer-norm.js';
import { Linear } from './linear.js';
import { WanModule, type Param } from './module.js';
import { WanPatchEmbedding, unpatchify } from './wan-patch.js';
import { WanRotaryPosEmbed } from './wan-rotary-pos-embed.js';
import { WanTimeTextImageEmbedding } from './wan-time-text-image-embedding.js';
import { WanTransformerBlock } from './wan-transformer-block.js';
import { configFieldReader, configObject, readJsonFile, type ConfigJson } from './config-json.js';

/** The DiT hyper-parameters: Diffusers' WanTransformer3DModel config fields in camelCase. */
export interface WanTransformerConfig {
  /** (pt, ph, pw); `patch_size`. */
  patchSize: [number, number, number];
  numAttentionHeads: number;
  attentionHeadDim: number;
  inChannels: number;
  outChannels: number;
  textDim: number;
  freqDim: number;
  ffnDim: number;
  numLayers: number;
  crossAttnNorm: boolean;
  /** 'rms_norm_across_heads' (every published model) or null for no q/k norm. */
  qkNorm: 'rms_norm_across_heads' | null;
  eps: number;
  /** Image-to-video conditioning (Wan2.1 I2V); must be null here. */
  imageDim: number | null;
  /** Image-to-video key/value projections; must be null here. */
  addedKvProjDim: number | null;
  ropeMaxSeqLen: number;
  posEmbedSeqLen: number | null;
}

/** Diffusers' defaults (the 14B shape). */
const DEFAULT_CONFIG: WanTransformerConfig = {
  patchSize: [1, 2, 2],
  numAttentionHeads: 40,
  attentionHeadDim: 128,
  inChannels: 16,
  outChannels: 16,
  textDim: 4096,
  freqDim: 256,
  ffnDim: 13824,
  numLayers: 40,
  crossAttnNorm: true,
  qkNorm: 'rms_norm_across_heads',
  eps: 1e-6,
  imageDim: null,
  addedKvProjDim: null,
  ropeMaxSeqLen: 1024,
  posEmbedSeqLen: null,
};

const CONFIG_KEYS = Object.keys(DEFAULT_CONFIG) as Array<keyof WanTransformerConfig>;

const SNAKE: Record<keyof WanTransformerConfig, string> = {
  patchSize: 'patch_size',
  numAttentionHeads: 'num_attention_heads',
  attentionHeadDim: 'attention_head_dim',
  inChannels: 'in_channels',
  outChannels: 'out_channels',
  textDim: 'text_dim',
  freqDim: 'freq_dim',
  ffnDim: 'ffn_dim',
  numLayers: 'num_layers',
  crossAttnNorm: 'cross_attn_norm',
  qkNorm: 'qk_norm',
  eps: 'eps',
  imageDim: 'image_dim',
  addedKvProjDim: 'added_kv_proj_dim',
  ropeMaxSeqLen: 'rope_max_seq_len',
  posEmbedSeqLen: 'pos_embed_seq_len',
};

function preset(numAttentionHeads: number, ffnDim: number, numLayers: number, channels: number): WanTransformerConfig {
  return { ...DEFAULT_CONFIG, patchSize: [1, 2, 2], numAttentionHeads, ffnDim, numLayers, inChannels: channels, outChannels: channels };
}

/** The published DiT shapes (see the models' config.json). 'wan2.2-t2v-a14b' is each of its two experts. */
export const PRESETS = {
  'wan2.1-t2v-1.3b': preset(12, 8960, 30, 16),
  'wan2.1-t2v-14b': preset(40, 13824, 40, 16),
  'wan2.2-t2v-a14b': preset(40, 13824, 40, 16),
  'wan2.2-ti2v-5b': preset(24, 14336, 30, 48),
} as const satisfies Record<string, WanTransformerConfig>;

export type WanTransformerPreset = keyof typeof PRESETS;

const field = configFieldReader('config');

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
const isIntOrNull = (v: unknown): v is number | null => v === null || isInt(v);
const isPatch = (v: unknown): v is [number, number, number] => Array.isArray(v) && v.length === 3 && v.every(isInt);

function fromDiffusersJSON(json: ConfigJson): WanTransformerConfig {
  const d = DEFAULT_CONFIG;
  const qk = json.qk_norm;
  if (qk !== undefined && qk !== null && qk !== 'rms_norm_across_heads') {
    throw new ConfigError(`config field "qk_norm" must be "rms_norm_across_heads" or null, got ${JSON.stringify(qk)}`);
  }
  return {
    patchSize: field(json, SNAKE.patchSize, d.patchSize, isPatch, 'three positive integers'),
    numAttentionHeads: field(json, SNAKE.numAttentionHeads, d.numAttentionHeads, isInt, 'a positive integer'),
    attentionHeadDim: field(json, SNAKE.attentionHeadDim, d.attentionHeadDim, isInt, 'a positive integer'),
    inChannels: field(json, SNAKE.inChannels, d.inChannels, isInt, 'a positive integer'),
    outChannels: field(json, SNAKE.outChannels, null, isIntOrNull, 'a positive integer or null') ?? field(json, SNAKE.inChannels, d.inChannels, isInt, 'a positive integer'),
    textDim: field(json, SNAKE.textDim, d.textDim, isInt, 'a positive integer'),
    freqDim: field(json, SNAKE.freqDim, d.freqDim, isInt, 'a positive integer'),
    ffnDim: field(json, SNAKE.ffnDim, d.ffnDim, isInt, 'a positive integer'),
    numLayers: field(json, SNAKE.numLayers, d.numLayers, isInt, 'a positive integer'),
    crossAttnNorm: field(json, SNAKE.crossAttnNorm, d.crossAttnNorm, isBool, 'true or false'),
    qkNorm: qk === undefined ? d.qkNorm : qk,
    eps: field(json, SNAKE.eps, d.eps, isNum, 'a positive number'),
    imageDim: field(json, SNAKE.imageDim, d.imageDim, isIntOrNull, 'a positive integer or null'),
    addedKvProjDim: field(json, SNAKE.addedKvProjDim, d.addedKvProjDim, isIntOrNull, 'a positive integer or null'),
    ropeMaxSeqLen: field(json, SNAKE.ropeMaxSeqLen, d.ropeMaxSeqLen, isInt, 'a positive integer'),
    posEmbedSeqLen: field(json, SNAKE.posEmbedSeqLen, d.posEmbedSeqLen, isIntOrNull, 'a positive integer or null'),
  };
}

/** The original WanModel constructor defaults (for fields a config.json leaves out). */
const ORIGINAL_DEFAULTS = { dim: 2048, numHeads: 16, ffnDim: 8192, numLayers: 32, inDim: 16, outDim: 16 };

function fromOriginalJSON(json: ConfigJson): WanTransformerConfig {
  const d = DEFAULT_CONFIG;
  const o = ORIGINAL_DEFAULTS;
  const dim = field(json, 'dim', o.dim, isInt, 'a positive integer');
  const heads = field(json, 'num_heads', o.numHeads, isInt, 'a positive integer');
  if (dim % heads !== 0) throw new ConfigError(`config "dim" ${dim} is not divisible by "num_heads" ${heads}`);
  const window = json.window_size;
  if (window !== undefined && !(Array.isArray(window) && window.every((w) => w === -1))) {
    throw new ConfigError(`config "window_size" ${JSON.stringify(window)}: only global attention (-1, -1) is supported`);
  }
  const inDim = field(json, 'in_dim', o.inDim, isInt, 'a positive integer');
  return {
    ...d,
    patchSize: field(json, 'patch_size', d.patchSize, isPatch, 'three positive integers'),
    numAttentionHeads: heads,
    attentionHeadDim: dim / heads,
    inChannels: inDim,
    outChannels: field(json, 'out_dim', o.outDim, isInt, 'a positive integer'),
    textDim: field(json, 'text_dim', d.textDim, isInt, 'a positive integer'),
    freqDim: field(json, 'freq_dim', d.freqDim, isInt, 'a positive integer'),
    ffnDim: field(json, 'ffn_dim', o.ffnDim, isInt, 'a positive integer'),
    numLayers: field(json, 'num_layers', o.numLayers, isInt, 'a positive integer'),
    crossAttnNorm: field(json, 'cross_attn_norm', d.crossAttnNorm, isBool, 'true or false'),
    qkNorm: field(json, 'qk_norm', true, isBool, 'true or false') ? 'rms_norm_across_heads' : null,
    eps: field(json, 'eps', d.eps, isNum, 'a positive number'),
  };
}

function overlay<K extends keyof WanTransformerConfig>(out: WanTransformerConfig, partial: Partial<WanTransformerConfig>, key: K): void {
  const v = partial[key];
  if (v !== undefined) out[key] = v;
}

/** Throws a ConfigError for a configuration this port cannot build. */
function validateConfig(c: WanTransformerConfig): WanTransformerConfig {
  for (const k of ['numAttentionHeads', 'attentionHeadDim', 'inChannels', 'outChannels', 'textDim', 'freqDim', 'ffnDim', 'numLayers', 'ropeMaxSeqLen'] as const) {
    if (!isInt(c[k])) throw new ConfigError(`${k} must be a positive integer, got ${JSON.stringify(c[k])}`);
  }
  if (!isPatch(c.patchSize)) throw new ConfigError(`patchSize must be three positive integers, got ${JSON.stringify(c.patchSize)}`);
  if (c.attentionHeadDim % 2 !== 0) throw new ConfigError(`attentionHeadDim must be even for rotary embeddings, got ${c.attentionHeadDim}`);
  if (c.qkNorm !== null && c.qkNorm !== 'rms_norm_across_heads') {
    throw new ConfigError(`qkNorm must be 'rms_norm_across_heads' or null, got ${JSON.stringify(c.qkNorm)}`);
  }
  if (!isNum(c.eps)) throw new ConfigError(`eps must be a positive number, got ${JSON.stringify(c.eps)}`);
  if (c.imageDim !== null || c.addedKvProjDim !== null) {
    throw new ConfigError(
      `image-to-video conditioning (imageDim ${c.imageDim}, addedKvProjDim ${c.addedKvProjDim}) is not supported; ` +
        'use a text-to-video checkpoint (image_dim and added_kv_proj_dim null)',
    );
  }
  return c;
}

/** Builds, reads and checks WanTransformerConfig objects. */
export const WanTransformerConfig = {
  /** Diffusers' defaults (the 14B shape). */
  defaults: DEFAULT_CONFIG as Readonly<WanTransformerConfig>,

  /**
   * Reads a checkpoint's config.json: Diffusers (`_class_name` "WanTransformer3DModel",
   * `num_attention_heads`, `in_channels`, …) or original Wan (`_class_name` "WanModel", `dim`,
   * `num_heads`, `in_dim`, …). Missing fields take Diffusers' defaults.
   */
  fromJSON(json: unknown): WanTransformerConfig {
    const j = configObject(json, 'a transformer config');
    const cls = j._class_name;
    if (cls !== undefined && cls !== 'WanTransformer3DModel' && cls !== 'WanModel') {
      throw new ConfigError(`config _class_name "${String(cls)}" is not a Wan transformer (expected WanTransformer3DModel or WanModel)`);
    }
    const original = cls === 'WanModel' || (cls === undefined && 'dim' in j && 'num_heads' in j);
    return validateConfig(original ? fromOriginalJSON(j) : fromDiffusersJSON(j));
  },

  /** Defaults overlaid with `partial` (only the config's own fields are read), validated. */
  resolve(partial: Partial<WanTransformerConfig> = {}): WanTransformerConfig {
    const out: WanTransformerConfig = { ...DEFAULT_CONFIG };
    for (const k of CONFIG_KEYS) overlay(out, partial, k);
    out.patchSize = [...out.patchSize];
    return validateConfig(out);
  },
};

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
}

/** Options of WanTransformer3DModel.fromPretrained. */
export interface WanTransformerLoadOptions {
  /** Overrides the config.json fields; required (a preset or a full config) when the folder has no config.json. */
  config?: Partial<WanTransformerConfig>;
  /** Key naming of the checkpoint; default 'auto' (detected from the keys). */
  layout?: 'auto' | TransformerKeyLayout;
  onProgress?: (loaded: number, total: number, key: string) => void;
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
   * Loads a DiT from a folder (or a .safetensors / .safetensors.index.json file) in either layout:
   * Diffusers (`config.json` with WanTransformer3DModel, keys `blocks.0.attn1.to_q.weight`) or
   * original Wan (`config.json` with WanModel, keys `blocks.0.self_attn.q.weight`, optionally
   * prefixed `model.diffusion_model.`). The layout is detected from the keys.
   */
  static async fromPretrained(dir: string, options: WanTransformerLoadOptions = {}): Promise<WanTransformer3DModel> {
    const isFile = fs.existsSync(dir) && fs.statSync(dir).isFile();
    const configDir = isFile ? path.dirname(dir) : dir;
    const configPath = path.join(configDir, 'config.json');
    let config: WanTransformerConfig;
    if (fs.existsSync(configPath)) {
      config = WanTransformerConfig.resolve({ ...WanTransformerConfig.fromJSON(readJsonFile(configPath)), ...options.config });
    } else if (options.config) {
      config = WanTransformerConfig.resolve(options.config);
    } else if (!fs.existsSync(configDir)) {
      throw new CheckpointError('folder does not exist', configDir);
    } else {
      throw new ConfigError(
        `${configPath} not found: point at a transformer folder (e.g. <model>/transformer) or pass options.config ` +
          `(a preset such as PRESETS['wan2.1-t2v-1.3b'])`,
      );
    }
    const source = openCheckpoint(dir);
    const model = new WanTransformer3DModel(config);
    try {
      const layout = options.layout && options.layout !== 'auto' ? options.layout : detectTransformerLayout(source.keys());
      loadWeights(model, source, {
        rename: (key) => {
          const k = stripCheckpointPrefix(key);
          if (layout === 'original') return originalToDiffusersKey(k) ?? k;
          return /\.norm_added_q\.(weight|bias)$/.test(k) ? undefined : k;
        },
        onProgress: options.onProgress,
      });
    } catch (e) {
      model.dispose();
      throw e;
    } finally {
      source.close();
    }
    return model;
  }

  // hiddenStates: [B, C_in, F, H, W], timestep: [B] or per token [B, L] (B may be 1 to share it),
  // encoderHiddenStates: [B, Ltxt, textDim] → [B, C_out, F, H, W]
  forward(hiddenStates: tf.Tensor, timestep: tf.Tensor, encoderHiddenStates: tf.Tensor, options: WanTransformerForwardOptions = {}): tf.Tensor {
    const c = this.config;
    const D = this.innerDim;
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
    const debug = options.debug;
    return tf.tidy(() => {
      const rotary = this.rope.forward(hiddenStates.shape);
      debug?.('rope_cos', rotary.cos);
      debug?.('rope_sin', rotary.sin);

      let x = this.patchEmbedding.forward(hiddenStates);
      if (debug) debug('patch_embedding', tf.transpose(tf.reshape(x, [B, F, H, W, D]), [0, 4, 1, 2, 3]));

      const cond = this.conditionEmbedder.forward(timestep, encoderHiddenStates);
      debug?.('temb', cond.temb);
      debug?.('timestep_proj', cond.timestepProj);
      debug?.('text_embedding', cond.encoderHiddenStates);
      const temb6 = tf.reshape(cond.timestepProj, perToken ? [Bt, L, 6, D] : [Bt, 6, D]);

      this.blocks.forEach((block, i) => {
        const next = block.forward(x, cond.encoderHiddenStates, temb6, rotary);
        debug?.(`block.${i}`, next);
        x.dispose();
        x = next;
      });

      // shift, scale = scale_shift_table + temb (fp32): [Bt, 1, D] or per token [Bt, L, D]
      const [shift, scale] = fp32(() => {
        const mod = perToken
          ? tf.add(tf.reshape(this.scaleShiftTable.value, [1, 1, 2, D]), tf.expandDims(cond.temb, 2))
          : tf.add(this.scaleShiftTable.value, tf.expandDims(cond.temb, 1));
        return tf.split(mod, 2, perToken ? 2 : 1).map((m) => (perToken ? tf.reshape(m, [Bt, L, D]) : m));
      });
      const normed = this.normOut.forwardModulated(x, scale, shift);
      const y = this.projOut.forward(normed);
      debug?.('proj_out', y);
      return unpatchify(y, grid, c.patchSize);
    });
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
    return { ...super.getConfig(), ...this.config, patchSize: [...this.config.patchSize] };
  }
}

tf.serialization.registerClass(WanTransformer3DModel);
