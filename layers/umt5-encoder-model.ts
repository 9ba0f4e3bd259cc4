import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { CheckpointError, ConfigError, ShapeError } from '../src/errors.js';
import { loadWeights } from '../weights/load.js';
import type { TensorSource } from '../weights/safetensors.js';
import { openCheckpoint } from '../weights/sharded.js';
import { umt5CheckpointRename } from '../weights/umt5-keys.js';
import { WanModule } from './module.js';
import { RMSNorm } from './rms-norm.js';
import { T5Embedding } from './t5-embedding.js';
import { UMT5Block } from './umt5-block.js';
import { configObject, readJsonFile } from './config-json.js';

/** transformers' UMT5Config fields the encoder uses, in camelCase. */
export interface UMT5Config {
  vocabSize: number;
  dModel: number;
  /** Width of one attention head. */
  dKv: number;
  dFf: number;
  numLayers: number;
  numHeads: number;
  relativeAttentionNumBuckets: number;
  relativeAttentionMaxDistance: number;
  layerNormEpsilon: number;
  /** Only the gated tanh-GELU of umT5 is supported: 'gated-gelu' (or its spelled-out aliases). */
  feedForwardProj: 'gated-gelu' | 'gated-gelu_new' | 'gated-gelu_pytorch_tanh';
}

/** transformers' UMT5Config defaults (umt5-small). */
const DEFAULT_CONFIG: UMT5Config = {
  vocabSize: 250112,
  dModel: 512,
  dKv: 64,
  dFf: 1024,
  numLayers: 8,
  numHeads: 6,
  relativeAttentionNumBuckets: 32,
  relativeAttentionMaxDistance: 128,
  layerNormEpsilon: 1e-6,
  feedForwardProj: 'gated-gelu',
};

/** The published encoder shapes (google/umt5-xxl config.json, the Wan text encoder). */
export const UMT5_PRESETS = {
  'umt5-xxl': {
    vocabSize: 256384,
    dModel: 4096,
    dKv: 64,
    dFf: 10240,
    numLayers: 24,
    numHeads: 64,
    relativeAttentionNumBuckets: 32,
    relativeAttentionMaxDistance: 128,
    layerNormEpsilon: 1e-6,
    feedForwardProj: 'gated-gelu',
  },
} as const satisfies Record<string, UMT5Config>;

export type UMT5Preset = keyof typeof UMT5_PRESETS;

const SNAKE: Record<keyof UMT5Config, string> = {
  vocabSize: 'vocab_size',
  dModel: 'd_model',
  dKv: 'd_kv',
  dFf: 'd_ff',
  numLayers: 'num_layers',
  numHeads: 'num_heads',
  relativeAttentionNumBuckets: 'relative_attention_num_buckets',
  relativeAttentionMaxDistance: 'relative_attention_max_distance',
  layerNormEpsilon: 'layer_norm_epsilon',
  feedForwardProj: 'feed_forward_proj',
};

const FEED_FORWARD_PROJ = ['gated-gelu', 'gated-gelu_new', 'gated-gelu_pytorch_tanh'] as const;

const isPositiveInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;

function validateConfig(c: UMT5Config): UMT5Config {
  const ints: Array<keyof UMT5Config> = ['vocabSize', 'dModel', 'dKv', 'dFf', 'numLayers', 'numHeads', 'relativeAttentionNumBuckets', 'relativeAttentionMaxDistance'];
  for (const k of ints) {
    if (!isPositiveInt(c[k])) throw new ConfigError(`umT5 config "${SNAKE[k]}" must be a positive integer, got ${JSON.stringify(c[k])}`);
  }
  if (c.relativeAttentionNumBuckets < 4) {
    throw new ConfigError(`umT5 config "relative_attention_num_buckets" must be at least 4, got ${c.relativeAttentionNumBuckets}`);
  }
  if (!(typeof c.layerNormEpsilon === 'number' && c.layerNormEpsilon > 0)) {
    throw new ConfigError(`umT5 config "layer_norm_epsilon" must be a positive number, got ${JSON.stringify(c.layerNormEpsilon)}`);
  }
  if (!(FEED_FORWARD_PROJ as readonly string[]).includes(c.feedForwardProj)) {
    throw new ConfigError(
      `umT5 config "feed_forward_proj" ${JSON.stringify(c.feedForwardProj)} is not supported; umT5 uses ${FEED_FORWARD_PROJ.map((s) => `"${s}"`).join(' / ')}`,
    );
  }
  return c;
}

/** The companion of the UMT5Config interface: defaults, presets, reading config.json. */
export const UMT5Config = {
  defaults: DEFAULT_CONFIG as Readonly<UMT5Config>,
  presets: UMT5_PRESETS,

  /** Reads transformers' config.json (snake_case fields); missing fields take transformers' defaults. */
  fromJSON(json: unknown): UMT5Config {
    const j = configObject(json, 'a umT5 config');
    if (j.model_type !== undefined && j.model_type !== 'umt5' && j.model_type !== 't5') {
      throw new ConfigError(`config model_type "${String(j.model_type)}" is not a umT5 encoder (expected "umt5")`);
    }
    const out = { ...DEFAULT_CONFIG } as Record<keyof UMT5Config, unknown>;
    for (const k of Object.keys(SNAKE) as Array<keyof UMT5Config>) if (j[SNAKE[k]] !== undefined) out[k] = j[SNAKE[k]];
    return validateConfig(out as UMT5Config);
  },

  /** A preset name or a partial config over the defaults, validated. */
  resolve(config: UMT5Preset | Partial<UMT5Config> = {}): UMT5Config {
    if (typeof config === 'string') {
      const preset: UMT5Config | undefined = (UMT5_PRESETS as Record<string, UMT5Config>)[config];
      if (!preset) throw new ConfigError(`unknown umT5 preset "${config}"; valid: ${Object.keys(UMT5_PRESETS).join(', ')}`);
      return { ...preset };
    }
    const out = { ...DEFAULT_CONFIG };
    for (const k of Object.keys(SNAKE) as Array<keyof UMT5Config>) {
      if (config[k] !== undefined) (out as Record<keyof UMT5Config, unknown>)[k] = config[k];
    }
    return validateConfig(out);
  },
};

/** What forwardWithHiddenStates returns (transformers' `output_hidden_states=True`). */
export interface UMT5EncoderOutput {
  /** [B, L, dModel], after the final norm. */
  lastHiddenState: tf.Tensor;
  /**
   * numLayers + 1 tensors [B, L, dModel] as transformers reports them: the embedding output, the
   * output of blocks 0 … numLayers−2, and last the final-normed output (= lastHiddenState).
   */
  hiddenStates: tf.Tensor[];
}

/** Options of UMT5EncoderModel.fromPretrained. */
export interface UMT5LoadOptions {
  /** Used when the folder has no config.json (the original Wan file); default: read from the tensor shapes. */
  config?: UMT5Preset | Partial<UMT5Config>;
  onProgress?: (loaded: number, total: number, key: string) => void;
}

/** The original Wan file name (after converting its .pth to safetensors). */
const ORIGINAL_FILE = /^models_t5_.*\.safetensors$/;

/**
 * The checkpoint under `dir`: `dir` itself if a file, else its `text_encoder/`, else the original
 * Wan `models_t5_*.safetensors` in it (a `models_t5_*.pth` alone must be converted first), else `dir`.
 */
function locateCheckpoint(dir: string): string {
  if (!fs.existsSync(dir)) throw new CheckpointError('folder or file does not exist', dir);
  if (fs.statSync(dir).isFile()) return dir;
  if (fs.existsSync(path.join(dir, 'text_encoder'))) return path.join(dir, 'text_encoder');
  const files = fs.readdirSync(dir);
  const original = files.find((f) => ORIGINAL_FILE.test(f));
  if (original) return path.join(dir, original);
  const pickled = files.find((f) => /^models_t5_.*\.pth$/.test(f));
  if (pickled) {
    throw new CheckpointError(
      `the umT5 encoder is a PyTorch pickle (${pickled}); convert it to safetensors first (python: ` +
        `safetensors.torch.save_file(torch.load(f, map_location="cpu"), "${pickled.replace(/\.pth$/, '.safetensors')}"))`,
      dir,
    );
  }
  return dir;
}

/** A config read off the tensor shapes of an original-layout (or config-less) checkpoint. */
function configFromShapes(source: TensorSource): UMT5Config {
  const keys = source.keys();
  const shape = (...names: string[]): readonly number[] => {
    for (const n of names) if (source.has(n)) return source.info(n).shape;
    throw new CheckpointError(`no config.json beside it and no '${names.join("' or '")}' to read the model size from`, source.label);
  };
  const [vocabSize, dModel] = shape('token_embedding.weight', 'shared.weight', 'encoder.embed_tokens.weight');
  const [numBuckets, numHeads] = shape('blocks.0.pos_embedding.embedding.weight', 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight');
  const [inner] = shape('blocks.0.attn.q.weight', 'encoder.block.0.layer.0.SelfAttention.q.weight');
  const [dFf] = shape('blocks.0.ffn.fc1.weight', 'encoder.block.0.layer.1.DenseReluDense.wi_1.weight');
  const blocks = new Set(keys.map((k) => /^(?:blocks|encoder\.block)\.(\d+)\./.exec(k)?.[1]).filter((b) => b !== undefined));
  return UMT5Config.resolve({
    ...UMT5_PRESETS['umt5-xxl'],
    vocabSize,
    dModel,
    numHeads,
    dKv: inner / numHeads,
    dFf,
    numLayers: blocks.size,
    relativeAttentionNumBuckets: numBuckets,
  });
}

/**
 * transformers' UMT5EncoderModel: `shared` token embedding (no scaling) → `encoder.block.N`
 * (self-attention with a per-layer relative position bias, gated-GELU FFN, both pre-norm
 * residual) → `encoder.final_layer_norm`. Keys equal transformers'; the original Wan names load
 * through weights/umt5-keys.ts.
 */
export class UMT5EncoderModel extends WanModule {
  static readonly className = 'UMT5EncoderModel';
  readonly config: UMT5Config;
  readonly shared: T5Embedding;
  readonly blocks: UMT5Block[];
  readonly finalLayerNorm: RMSNorm;

  constructor(config: UMT5Preset | Partial<UMT5Config> = 'umt5-xxl') {
    super({});
    const c = (this.config = UMT5Config.resolve(config));
    this.shared = this.addModule('shared', new T5Embedding({ numEmbeddings: c.vocabSize, embeddingDim: c.dModel }));
    this.blocks = [];
    for (let i = 0; i < c.numLayers; i++) this.blocks.push(this.addModule(`encoder.block.${i}`, new UMT5Block(c)));
    this.finalLayerNorm = this.addModule('encoder.final_layer_norm', new RMSNorm({ dim: c.dModel, eps: c.layerNormEpsilon }));
  }

  /**
   * Loads an encoder from `dir`: a transformers folder (`config.json` + `model.safetensors` or
   * `model-0000N-of-0000M.safetensors` + `model.safetensors.index.json`), a model root holding
   * `text_encoder/`, the original Wan root holding `models_t5_umt5-xxl-enc-bf16.safetensors`, or
   * a .safetensors / index file. Without a config.json the size is read from the tensor shapes.
   */
  static async fromPretrained(dir: string, options: UMT5LoadOptions = {}): Promise<UMT5EncoderModel> {
    const target = locateCheckpoint(dir);
    const isFile = fs.statSync(target).isFile();
    const configPath = path.join(isFile ? path.dirname(target) : target, 'config.json');
    const source = openCheckpoint(target);
    let model: UMT5EncoderModel | undefined;
    try {
      const useConfigJson = !ORIGINAL_FILE.test(path.basename(target)) && fs.existsSync(configPath);
      const config = useConfigJson ? UMT5Config.fromJSON(readJsonFile(configPath)) : options.config ? UMT5Config.resolve(options.config) : configFromShapes(source);
      model = new UMT5EncoderModel(config);
      loadWeights(model, source, { rename: umt5CheckpointRename(source.keys()), onProgress: options.onProgress });
    } catch (e) {
      model?.dispose();
      throw e;
    } finally {
      source.close();
    }
    return model;
  }

  private checkInputs(inputIds: tf.Tensor, attentionMask: tf.Tensor | undefined): void {
    if (inputIds.rank !== 2 || inputIds.size === 0) throw new ShapeError('inputIds', `[${inputIds.shape}]`, '[B, L] with B, L ≥ 1');
    if (attentionMask && (attentionMask.rank !== 2 || attentionMask.shape[0] !== inputIds.shape[0] || attentionMask.shape[1] !== inputIds.shape[1])) {
      throw new ShapeError('attentionMask', `[${attentionMask.shape}]`, `[${inputIds.shape}] (the shape of inputIds)`);
    }
    const ids = inputIds.dataSync();
    const V = this.config.vocabSize;
    for (let i = 0; i < ids.length; i++) {
      if (!(Number.isInteger(ids[i]) && ids[i] >= 0 && ids[i] < V)) {
        const L = inputIds.shape[1] as number;
        throw new ShapeError('inputIds', `token id ${ids[i]} at [${Math.floor(i / L)}, ${i % L}]`, `ids in [0, ${V}) (vocab_size)`);
      }
    }
  }

  // inputIds: [B, L] int32, attentionMask: [B, L] (1 = token, 0 = padding; default all 1) → [B, L, dModel]
  forward(inputIds: tf.Tensor, attentionMask?: tf.Tensor): tf.Tensor {
    return this.run(inputIds, attentionMask, false).lastHiddenState;
  }

  // inputIds: [B, L] int32, attentionMask: [B, L] → last hidden state and every hidden state, [B, L, dModel] each
  forwardWithHiddenStates(inputIds: tf.Tensor, attentionMask?: tf.Tensor): UMT5EncoderOutput {
    return this.run(inputIds, attentionMask, true);
  }

  // inputIds: [B, L], attentionMask: [B, L] → [B, L, dModel] (and the hidden states when keepHidden)
  private run(inputIds: tf.Tensor, attentionMask: tf.Tensor | undefined, keepHidden: boolean): UMT5EncoderOutput {
    this.checkInputs(inputIds, attentionMask);
    return tf.tidy(() => {
      const mask = attentionMask ? tf.cast(attentionMask, 'float32') : undefined;
      let x = this.shared.forward(inputIds);
      const hiddenStates: tf.Tensor[] = [];
      for (const block of this.blocks) {
        if (keepHidden) hiddenStates.push(x);
        const next = block.forward(x, mask);
        if (!keepHidden) x.dispose();
        x = next;
      }
      const lastHiddenState = this.finalLayerNorm.forward(x);
      if (keepHidden) hiddenStates.push(lastHiddenState);
      return { lastHiddenState, hiddenStates };
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return Array.isArray(inputs) ? this.forward(inputs[0], inputs[1]) : this.forward(inputs);
  }

  override computeOutputShape(inputShape: (number | null)[]): (number | null)[] {
    return [...inputShape, this.config.dModel];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...this.config };
  }
}

tf.serialization.registerClass(UMT5EncoderModel);
