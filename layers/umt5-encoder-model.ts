import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '../src/errors.js';
import { UMT5_FAMILY } from '../weights/families.js';
import { loadPretrained, type PretrainedOptions } from '../weights/load-pretrained.js';
import { savePretrained } from '../weights/save-pretrained.js';
import { WanModule } from './module.js';
import { RMSNorm } from './rms-norm.js';
import { T5Embedding } from './t5-embedding.js';
import { UMT5Block } from './umt5-block.js';
import { UMT5Config, type UMT5Preset } from './umt5-config.js';

export { UMT5Config, UMT5_PRESETS, type UMT5Preset } from './umt5-config.js';

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

/** Options of UMT5EncoderModel.fromPretrained: `config` overrides config.json or the size read from the tensor shapes. */
export type UMT5LoadOptions = PretrainedOptions<UMT5Config, UMT5Preset>;

/**
 * transformers' UMT5EncoderModel: `shared` token embedding (no scaling) → `encoder.block.N`
 * (self-attention with a per-layer relative position bias, gated-GELU FFN, both pre-norm
 * residual) → `encoder.final_layer_norm`. Keys equal transformers'; the original Wan names load
 * through the original layout (weights/layouts/umt5-original.ts).
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
   * An encoder with random weights, initialised as transformers' `UMT5PreTrainedModel._init_weights`
   * (initializer_factor 1): `shared` N(0, 1), q N(0, (d_model·d_kv)^−½), k, v and the relative
   * attention bias N(0, d_model^−½), o N(0, (heads·d_kv)^−½), wi_0/wi_1 N(0, d_model^−½), wo
   * N(0, d_ff^−½), norms ones. A seed other than 0 gives the same weights every time; 0 (the default)
   * a different draw per call.
   */
  static withRandomWeights(config: UMT5Preset | Partial<UMT5Config> = 'umt5-xxl', options: { seed?: number } = {}): UMT5EncoderModel {
    const model = new UMT5EncoderModel(config);
    const c = model.config;
    const seed = options.seed ?? 0;
    const rules: [RegExp, number][] = [
      [/^shared\.weight$/, 1],
      [/\.SelfAttention\.q\.weight$/, (c.dModel * c.dKv) ** -0.5],
      [/\.SelfAttention\.(k|v)\.weight$/, c.dModel ** -0.5],
      [/\.SelfAttention\.o\.weight$/, (c.numHeads * c.dKv) ** -0.5],
      [/\.relative_attention_bias\.weight$/, c.dModel ** -0.5],
      [/\.wi_[01]\.weight$/, c.dModel ** -0.5],
      [/\.wo\.weight$/, c.dFf ** -0.5],
    ];
    let i = 0;
    for (const [key, p] of model.namedParams()) {
      const std = rules.find(([re]) => re.test(key))?.[1];
      if (std !== undefined) p.assign(tf.randomNormal([...p.shape], 0, std, 'float32', seed === 0 ? undefined : seed * 1_000_003 + i));
      i++;
    }
    // the layer norms (ones)
    return model.initialize(seed);
  }

  /**
   * Loads an encoder from a transformers folder (`config.json` + `model.safetensors` or
   * `model-0000N-of-0000M.safetensors` + `model.safetensors.index.json`), a model root holding
   * `text_encoder/`, the original Wan root holding `models_t5_umt5-xxl-enc-bf16.safetensors`, or
   * a .safetensors / index file. Without a config.json the size is read from the tensor shapes.
   */
  static async fromPretrained(dirOrFile: string, options: UMT5LoadOptions = {}): Promise<UMT5EncoderModel> {
    return loadPretrained(dirOrFile, UMT5_FAMILY, UMT5Config, (c) => new UMT5EncoderModel(c), options);
  }

  /** Saves the model to folder `dir` in the Diffusers layout (config.json + model.safetensors, float32), atomically; fromPretrained reads it back. */
  savePretrained(dir: string): void {
    savePretrained(this, dir, UMT5_FAMILY, UMT5Config.toJSON(this.config));
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
    return { ...super.getConfig(), ...UMT5Config.getConfig(this.config) };
  }
}

tf.serialization.registerClass(UMT5EncoderModel);
