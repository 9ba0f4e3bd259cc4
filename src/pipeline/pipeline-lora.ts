/**
 * LoRA on a pipeline's experts (Diffusers' `load_lora_weights` / `unload_lora_weights`): a file is
 * loaded into the chosen experts through the model-level loadLora (src/train/lora-io.ts) with its
 * up matrices B scaled by `scale`, and unloading puts the experts' plain Linear layers back, with
 * the very base weight variables they had, so the outputs are the base outputs again, bit for bit.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Linear } from '../../layers/linear.js';
import { LoraLinear, loraModules } from '../../layers/lora-linear.js';
import { WanModule } from '../../layers/module.js';
import { ConfigError } from '../errors.js';
import { loadLora, type LoadedLora } from '../train/lora-io.js';
import type { PipelineTransformer } from './pipeline-components.js';

/** Which expert of a two-expert model (Wan2.2-A14B) a LoRA goes into: 'high' = transformer (high noise), 'low' = transformer_2. */
export type LoraExpert = 'high' | 'low' | 'both';

export interface PipelineLoraOptions {
  /** Multiplies the adapter's ΔW (Diffusers' `lora_scale`); default 1, 0 = the base model (the file is still checked). */
  scale?: number;
  /** Default 'both': every expert the pipeline has. */
  expert?: LoraExpert;
}

/** A LoRA file as the pipeline applies it to its experts (also to an expert loaded again later). */
export interface PipelineLora {
  readonly file: string;
  readonly scale: number;
  /** Indices into pipeline.experts. */
  readonly experts: readonly number[];
}

/** Checks the options against a pipeline with `expertCount` experts. */
export function pipelineLora(file: string, options: PipelineLoraOptions, expertCount: number): PipelineLora {
  const scale = options.scale ?? 1;
  if (!Number.isFinite(scale)) throw new ConfigError(`loadLora: scale must be a finite number, got ${scale}`);
  const expert = options.expert ?? 'both';
  if (expert !== 'high' && expert !== 'low' && expert !== 'both') throw new ConfigError(`loadLora: expert must be 'high', 'low' or 'both', got '${String(expert)}'`);
  if (expert === 'low' && expertCount < 2) throw new ConfigError("loadLora: expert 'low' needs a two-expert model (transformer_2); this pipeline has one expert");
  const experts = expert === 'both' ? [...Array(expertCount).keys()] : expert === 'high' ? [0] : [1];
  return { file, scale, experts };
}

function asModule(model: PipelineTransformer, what: string): WanModule {
  if (!(model instanceof WanModule)) throw new ConfigError(`${what}: LoRA needs a WanTransformer3DModel expert, got ${model.constructor.name}`);
  return model;
}

/**
 * Loads `lora` into one expert: the expert must have no adapters yet (unloadLora first); B ← scale·B.
 * With scale 0 the file is loaded (so checked) and removed again, leaving the base model untouched.
 */
export function applyPipelineLora(model: PipelineTransformer, lora: PipelineLora): LoadedLora {
  const m = asModule(model, `loadLora '${lora.file}'`);
  if (loraModules(m).size > 0) throw new ConfigError(`loadLora '${lora.file}': the expert already has LoRA adapters; call unloadLora() first`);
  const loaded = loadLora(m, lora.file, { freezeBase: false });
  if (lora.scale === 0) {
    removeLora(m);
    return loaded;
  }
  if (lora.scale !== 1) {
    for (const a of loraModules(m).values()) a.loraB.weight.assign(tf.tidy(() => tf.mul(a.loraB.weight.value, lora.scale)));
  }
  return loaded;
}

/**
 * Replaces every LoraLinear of `model` by a plain Linear that takes over its weight and bias
 * variables (no copy; a merged adapter is unmerged first) and frees the adapter's A and B. Returns how many adapters were removed.
 */
export function removeLora(model: WanModule): number {
  let removed = 0;
  const visit = (parent: WanModule) => {
    for (const [name, child] of [...parent.children()]) {
      if (!(child instanceof LoraLinear)) {
        visit(child);
        continue;
      }
      child.unmerge();
      const plain = new Linear({ ...child.config, name: child.config.name?.replace(/_lora$/, '') });
      for (const [mine, theirs] of [[plain.weight, child.weight], [plain.bias, child.bias]] as const) {
        if (!mine || !theirs) continue;
        mine.variable = theirs.variable;
        theirs.variable = undefined;
      }
      parent.replaceModule(name, plain);
      child.dispose();
      removed++;
    }
  };
  visit(model);
  return removed;
}
