import * as tf from '@tensorflow/tfjs-core';
import { geluTanh, type LinearActivation } from '../src/backend/ops.js';
import { ConfigError } from '../src/errors.js';
import { Linear, type LinearConfig } from './linear.js';
import { WanModule } from './module.js';

/** A low-rank adapter's shape: ΔW = (alpha / rank) · B · A. */
export interface LoraConfig {
  rank: number;
  /** Default rank (scale 1), as PEFT and Diffusers assume when a file gives no alpha. */
  alpha?: number;
}

/**
 * A Linear with a LoRA adapter (Hu et al. 2021; PEFT's `lora.Linear`):
 *   y = x·Wᵀ + b + (alpha/rank) · (x·Aᵀ)·Bᵀ,   A = `lora_A.weight` [r, in], B = `lora_B.weight` [out, r].
 * A starts as PEFT's kaiming-uniform (U(±1/√in)), B as zeros, so a fresh adapter changes nothing.
 * The base `weight`/`bias` keep their keys, so a base checkpoint still loads.
 */
export class LoraLinear extends Linear {
  static override readonly className = 'LoraLinear';
  readonly loraA: Linear;
  readonly loraB: Linear;
  readonly rank: number;
  readonly alpha: number;
  private mergedFlag = false;

  constructor(config: LinearConfig, lora: LoraConfig) {
    super(config);
    if (!Number.isInteger(lora.rank) || lora.rank < 1) throw new ConfigError(`LoRA rank must be a positive integer, got ${lora.rank}`);
    this.rank = lora.rank;
    this.alpha = lora.alpha ?? lora.rank;
    this.loraA = this.addModule('lora_A', new Linear({ inFeatures: config.inFeatures, outFeatures: lora.rank, bias: false }));
    this.loraB = this.addModule('lora_B', new Linear({ inFeatures: lora.rank, outFeatures: config.outFeatures, bias: false }));
    this.loraB.weight.assign(tf.zeros([config.outFeatures, lora.rank]));
  }

  /** Wraps an existing Linear, taking over its weight and bias variables (no copy). */
  static fromLinear(base: Linear, lora: LoraConfig): LoraLinear {
    const out = new LoraLinear({ ...base.config, name: `${base.name}_lora` }, lora);
    for (const [mine, theirs] of [[out.weight, base.weight], [out.bias, base.bias]] as const) {
      if (!mine || !theirs) continue;
      mine.dispose();
      mine.variable = theirs.variable;
      theirs.variable = undefined;
    }
    return out;
  }

  /** alpha / rank. */
  get scale(): number {
    return this.alpha / this.rank;
  }

  /** Whether ΔW is currently folded into the base weight. */
  get merged(): boolean {
    return this.mergedFlag;
  }

  // x: [..., in] → [..., out]; the activation applies to the sum of the base product and the adapter
  override forward(x: tf.Tensor, activation: LinearActivation = 'none'): tf.Tensor {
    if (this.mergedFlag) return super.forward(x, activation);
    return tf.tidy(() => {
      const y = tf.add(super.forward(x), tf.mul(this.loraB.forward(this.loraA.forward(x)), this.scale));
      return activation === 'gelu_tanh' ? geluTanh(y) : y;
    });
  }

  /** ΔW = scale · B·A: [out, in]. */
  delta(): tf.Tensor2D {
    return tf.tidy(() => tf.mul(tf.matMul(this.loraB.weight.value, this.loraA.weight.value), this.scale) as tf.Tensor2D);
  }

  /** W ← W + ΔW; the forward then skips the adapter. */
  merge(): void {
    if (this.mergedFlag) return;
    this.weight.assign(tf.tidy(() => tf.add(this.weight.value, this.delta())));
    this.mergedFlag = true;
  }

  /** W ← W − ΔW. */
  unmerge(): void {
    if (!this.mergedFlag) return;
    this.weight.assign(tf.tidy(() => tf.sub(this.weight.value, this.delta())));
    this.mergedFlag = false;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), rank: this.rank, alpha: this.alpha };
  }
}

tf.serialization.registerClass(LoraLinear);

/** The linears LoRA targets in a WanTransformer3DModel: attention q/k/v/out and the FFN. PEFT-style suffixes. */
export const WAN_LORA_TARGETS: readonly string[] = ['to_q', 'to_k', 'to_v', 'to_out.0', 'ffn.net.0.proj', 'ffn.net.2'];

export interface ApplyLoraOptions extends LoraConfig {
  /** Module-path suffixes to wrap (PEFT `target_modules` matching: equal, or ending in `.<target>`). */
  targets?: readonly string[];
  /** Make every non-LoRA parameter non-trainable (default true). */
  freezeBase?: boolean;
  /** Per-module rank/alpha overrides (a loaded file may differ per module). */
  perModule?: (path: string) => LoraConfig | undefined;
}

interface ModuleSite {
  path: string;
  parent: WanModule;
  name: string;
  module: WanModule;
}

function walk(root: WanModule, prefix = '', out: ModuleSite[] = []): ModuleSite[] {
  for (const [name, module] of root.children()) {
    const path = prefix + name;
    out.push({ path, parent: root, name, module });
    walk(module, `${path}.`, out);
  }
  return out;
}

function matches(path: string, targets: readonly string[]): boolean {
  return targets.some((t) => path === t || path.endsWith(`.${t}`));
}

/** Every LoRA-wrapped linear of a model, by module path. */
export function loraModules(model: WanModule): Map<string, LoraLinear> {
  const out = new Map<string, LoraLinear>();
  for (const s of walk(model)) if (s.module instanceof LoraLinear) out.set(s.path, s.module);
  return out;
}

/**
 * Wraps the matching Linear layers of `model` (by default the attention and feed-forward linears
 * of a WanTransformer3DModel) in LoraLinear adapters, in place. Returns the wrapped modules by path.
 * Modules that are already LoraLinear are left as they are.
 */
export function applyLora(model: WanModule, options: ApplyLoraOptions): Map<string, LoraLinear> {
  const targets = options.targets ?? WAN_LORA_TARGETS;
  const sites = walk(model).filter((s) => s.module instanceof Linear && !(s.module instanceof LoraLinear) && matches(s.path, targets));
  if (sites.length === 0) throw new ConfigError(`applyLora: no Linear module matches the targets [${targets.join(', ')}]`);
  for (const site of sites) {
    const cfg = options.perModule?.(site.path) ?? { rank: options.rank, alpha: options.alpha };
    const wrapped = LoraLinear.fromLinear(site.module as Linear, cfg);
    wrapped.loraA.initialize(hashPath(site.path));
    site.parent.replaceModule(site.name, wrapped);
  }
  if (options.freezeBase ?? true) setBaseTrainable(model, false);
  return loraModules(model);
}

/** Sets trainability of every parameter that is not part of a LoRA adapter. */
export function setBaseTrainable(model: WanModule, trainable: boolean): void {
  for (const [key, p] of model.namedParams()) {
    if (/\.lora_[AB]\./.test(key) || !p.variable) continue;
    p.variable.trainable = trainable;
  }
}

/** Folds every adapter into its base weight. */
export function mergeLora(model: WanModule): void {
  for (const m of loraModules(model).values()) m.merge();
}

/** Undoes mergeLora. */
export function unmergeLora(model: WanModule): void {
  for (const m of loraModules(model).values()) m.unmerge();
}

function hashPath(path: string): number {
  let h = 2166136261;
  for (let i = 0; i < path.length; i++) h = Math.imul(h ^ path.charCodeAt(i), 16777619) >>> 0;
  return h % 1_000_000;
}
