import * as tf from '@tensorflow/tfjs-core';
import { LayerVariable, layers } from '@tensorflow/tfjs-layers';
import type { LayerArgs } from '@tensorflow/tfjs-layers/dist/engine/topology.js';
import { storeParam } from '../src/backend/ops.js';
import { ConfigError, ShapeError } from '../src/errors.js';
import type { WeightSlot } from '../weights/load.js';

/** How a parameter is initialised when no checkpoint fills it. */
export type Init = 'zeros' | 'ones' | { normal: number } | { uniform: number };

export interface ParamOptions {
  init?: Init;
  /** Checkpoint layout → storage layout (e.g. a conv kernel [out,in,kt,kh,kw] → [kt,kh,kw,in,out]). */
  toStorage?: (t: tf.Tensor) => tf.Tensor;
  /** Storage layout → checkpoint layout; required when `toStorage` is given. */
  fromStorage?: (t: tf.Tensor) => tf.Tensor;
  trainable?: boolean;
  /**
   * Keep this parameter in float32 whatever the backend's precision policy (norm weights,
   * modulation tables: what the reference keeps in fp32). Modules mark whole subtrees with
   * WanModule.keepInFp32.
   */
  keepFp32?: boolean;
}

let seedCounter = 0;

/**
 * One parameter: its checkpoint-layout shape, and a tfjs-layers variable once set. Layers read it
 * through `value` in their forward pass.
 */
export class Param implements WeightSlot {
  variable: LayerVariable | undefined;
  /** Kept in float32 whatever the backend's precision (see ParamOptions.keepFp32). */
  keepFp32: boolean;

  constructor(
    readonly name: string,
    readonly shape: readonly number[],
    private readonly options: ParamOptions,
  ) {
    this.keepFp32 = options.keepFp32 ?? false;
  }

  get isSet(): boolean {
    return this.variable !== undefined;
  }

  /** The parameter in storage layout. */
  get value(): tf.Tensor {
    if (!this.variable) {
      throw new ConfigError(`parameter '${this.name}' is not set: load a checkpoint or call initialize() first`);
    }
    return this.variable.read();
  }

  assign(value: tf.Tensor): void {
    if (value.shape.length !== this.shape.length || value.shape.some((d, i) => d !== this.shape[i])) {
      const got = `[${value.shape}]`;
      value.dispose();
      throw new ShapeError(`parameter '${this.name}'`, got, `[${this.shape}]`);
    }
    const stored = this.options.toStorage ? tf.tidy(() => this.options.toStorage!(value)) : value;
    if (stored !== value) value.dispose();
    const cast = stored.dtype === 'float32' ? stored : tf.cast(stored, 'float32');
    if (cast !== stored) stored.dispose();
    const f32 = storeParam(cast, this.keepFp32);
    if (this.variable) {
      this.variable.write(f32);
      f32.dispose();
    } else {
      this.variable = new LayerVariable(f32, 'float32', this.name.replace(/[^A-Za-z0-9_.\-/]/g, '_'), this.options.trainable ?? true);
      f32.dispose();
    }
  }

  read(): tf.Tensor | undefined {
    if (!this.variable) return undefined;
    const v = this.variable.read();
    return this.options.fromStorage ? tf.tidy(() => this.options.fromStorage!(v)) : v.clone();
  }

  /** Sets the parameter from its initialiser if nothing has set it yet. */
  initialize(seed: number): void {
    if (this.variable) return;
    const init = this.options.init ?? { normal: 0.02 };
    const shape = [...this.shape];
    const t =
      init === 'zeros' ? tf.zeros(shape)
      : init === 'ones' ? tf.ones(shape)
      : 'normal' in init ? tf.randomNormal(shape, 0, init.normal, 'float32', seed)
      : tf.randomUniform(shape, -init.uniform, init.uniform, 'float32', seed);
    this.assign(t);
  }

  dispose(): void {
    this.variable?.dispose();
    this.variable = undefined;
  }
}

/**
 * Base of every network piece: a tfjs-layers Layer whose parameters are registered under the
 * reference's dotted names, so `namedWeights()` lists exactly the checkpoint keys.
 */
export abstract class WanModule extends layers.Layer {
  private readonly childModules = new Map<string, WanModule>();
  private readonly ownParams = new Map<string, Param>();

  constructor(args: LayerArgs = {}) {
    super(args);
    this.built = true;
  }

  /** The serialisation name: the subclass's static `className`, else its JS class name. */
  override getClassName(): string {
    const ctor = this.constructor as { className?: string; name: string };
    return ctor.className ?? ctor.name;
  }

  /** Registers a sub-module under `name` (a path segment of the checkpoint keys). */
  protected addModule<T extends WanModule>(name: string, module: T): T {
    this.childModules.set(name, module);
    return module;
  }

  /**
   * Keeps every parameter of this module and its sub-modules in float32 whatever the backend's
   * precision (Diffusers' `_keep_in_fp32_modules`). Call before the weights are set.
   */
  keepInFp32(): this {
    for (const p of this.namedParams().values()) p.keepFp32 = true;
    return this;
  }

  /** Registers a parameter under `name` with its checkpoint-layout shape. */
  protected addParam(name: string, shape: readonly number[], options: ParamOptions = {}): Param {
    const p = new Param(`${this.name}/${name}`, shape, options);
    this.ownParams.set(name, p);
    return p;
  }

  /** Every parameter of this module and its children, by dotted checkpoint name. */
  namedWeights(): Map<string, WeightSlot> {
    const out = new Map<string, WeightSlot>();
    for (const [k, p] of this.namedParams()) out.set(k, p);
    return out;
  }

  /** Like namedWeights, with the Param objects themselves. */
  namedParams(prefix = ''): Map<string, Param> {
    const out = new Map<string, Param>();
    for (const [k, p] of this.ownParams) out.set(prefix + k, p);
    for (const [k, m] of this.childModules) for (const [kk, p] of m.namedParams(`${prefix}${k}.`)) out.set(kk, p);
    return out;
  }

  /** The direct sub-modules, by name. */
  children(): ReadonlyMap<string, WanModule> {
    return this.childModules;
  }

  /**
   * Puts `replacement` in place of the sub-module registered as `name`: in the registry (so its
   * parameters take the old module's checkpoint keys) and in every field or array slot of this
   * module that held the old one (so forward() calls the replacement). Returns the old module.
   */
  replaceModule(name: string, replacement: WanModule): WanModule {
    const old = this.childModules.get(name);
    if (!old) throw new ConfigError(`${this.getClassName()} has no sub-module '${name}'; it has [${[...this.childModules.keys()].join(', ')}]`);
    this.childModules.set(name, replacement);
    for (const key of Object.keys(this)) {
      const v: unknown = Reflect.get(this, key);
      if (v === old) Reflect.set(this, key, replacement);
      else if (Array.isArray(v)) v.forEach((x: unknown, i) => { if (x === old) v[i] = replacement; });
    }
    return old;
  }

  /** Sets every parameter a checkpoint has not set from its initialiser (deterministic for a seed). */
  initialize(seed = 0): this {
    let i = 0;
    for (const p of this.namedParams().values()) p.initialize(seed * 1_000_003 + i++ + (seed === 0 ? seedCounter++ * 7919 : 0));
    return this;
  }

  /** Number of scalar parameters. */
  override countParams(): number {
    let n = 0;
    for (const p of this.namedParams().values()) n += p.shape.reduce((a, d) => a * d, 1);
    return n;
  }

  override get trainableWeights(): LayerVariable[] {
    if (!this.trainable) return [];
    const out: LayerVariable[] = [];
    for (const p of this.namedParams().values()) if (p.variable?.trainable) out.push(p.variable);
    return out;
  }

  override set trainableWeights(_weights: LayerVariable[]) {
    throw new ConfigError('the weights of a WanModule are set through namedWeights() or a checkpoint');
  }

  override get nonTrainableWeights(): LayerVariable[] {
    const out: LayerVariable[] = [];
    for (const p of this.namedParams().values()) if (p.variable && (!p.variable.trainable || !this.trainable)) out.push(p.variable);
    return out;
  }

  override set nonTrainableWeights(_weights: LayerVariable[]) {
    throw new ConfigError('the weights of a WanModule are set through namedWeights() or a checkpoint');
  }

  /** Frees every parameter of this module and its children. */
  override dispose(): { refCountAfterDispose: number; numDisposedVariables: number } {
    let n = 0;
    for (const p of this.namedParams().values()) {
      if (p.isSet) n++;
      p.dispose();
    }
    return { refCountAfterDispose: 0, numDisposedVariables: n };
  }
}

/** Conv3d kernel [out, in, kt, kh, kw] (PyTorch) ↔ [kt, kh, kw, in, out] (tfjs). */
export const conv3dLayout: Pick<ParamOptions, 'toStorage' | 'fromStorage'> = {
  toStorage: (t) => tf.transpose(t, [2, 3, 4, 1, 0]),
  fromStorage: (t) => tf.transpose(t, [4, 3, 0, 1, 2]),
};

/** Conv2d kernel [out, in, kh, kw] (PyTorch) ↔ [kh, kw, in, out] (tfjs). */
export const conv2dLayout: Pick<ParamOptions, 'toStorage' | 'fromStorage'> = {
  toStorage: (t) => tf.transpose(t, [2, 3, 1, 0]),
  fromStorage: (t) => tf.transpose(t, [3, 2, 0, 1]),
};

/**
 * `next`, after disposing `previous` unless it is `keep` (a forward's input): a chain of stages frees
 * each intermediate as soon as the next stage has used it, instead of at the end of the tidy.
 */
export function replacing(previous: tf.Tensor, keep: tf.Tensor, next: tf.Tensor): tf.Tensor {
  if (previous !== keep && previous !== next) previous.dispose();
  return next;
}
