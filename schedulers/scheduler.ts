import * as tf from '@tensorflow/tfjs-core';
import type { ConfigJson } from '../src/config/config-schema.js';
import { ConfigError, ShapeError, WanError } from '../src/errors.js';

/**
 * Which sigma list `setTimesteps` builds:
 * - 'diffusers': Diffusers `UniPCMultistepScheduler` with `use_flow_sigmas`: σ = linspace(1, 1/T, n+1)[:-1], shifted,
 *   σ₀ −= 1e-6 when it is within 1e-6 of 1;
 * - 'wan': the Wan repo's `FlowUniPCMultistepScheduler` (built with shift 1, the shift given at set_timesteps):
 *   σ = linspace(σ_max, 0, n+1)[:-1] with σ_max = float32(1 − 1/T), shifted.
 * Both: timesteps = int(σ·T) (truncated), sigmas float32 with a final 0.
 */
export type SigmaSchedule = 'diffusers' | 'wan';

/** Options of `setTimesteps`. */
export interface SetTimestepsOptions {
  /**
   * The shift s of σ' = s·σ / (1 + (s − 1)·σ) for this schedule, in place of the config's
   * (`flow_shift` / `shift`): the schedule equals the reference's built from the config with that value.
   */
  shift?: number;
}

/** Where on the schedule to add noise: a timestep of `timesteps` (looked up as the reference does) or a sigma in [0, 1]. One value, or one per batch item. */
export type NoiseLevel = { timestep: number | readonly number[] } | { sigma: number | readonly number[] };

/** A flow-matching sampler: x_σ = (1 − σ)·x₀ + σ·ε, the model predicting v = ε − x₀. */
export interface FlowScheduler {
  /** The reference's class name (`_class_name` in scheduler_config.json). */
  readonly className: string;
  /** σ·1000 for each step, as the reference produces them (integers for UniPC / DPM++, float32 values for Euler). Empty before `setTimesteps`. */
  readonly timesteps: readonly number[];
  /** n + 1 float32 sigmas, the last one the final sigma (0). */
  readonly sigmas: readonly number[];
  /** The index of the next step, once the first `step` has fixed it. */
  readonly stepIndex: number | undefined;
  /** Builds the schedule for n steps; clears the history. */
  setTimesteps(numInferenceSteps: number, options?: SetTimestepsOptions): void;
  /** Starts the next trajectory at schedule index `index` instead of looking the first timestep up. */
  setBeginIndex(index: number): void;
  /** One step from `sample` at `timestep`: returns the sample at the next timestep (the caller owns it). Inputs are not disposed. */
  step(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor): tf.Tensor;
  /** x_σ = (1 − σ)·original + σ·noise (training, image-to-video conditioning). */
  addNoise(original: tf.Tensor, noise: tf.Tensor, at: NoiseLevel): tf.Tensor;
  /** Same as `addNoise`, in Diffusers' `scale_noise(sample, timestep, noise)` argument order. */
  scaleNoise(sample: tf.Tensor, at: NoiseLevel, noise: tf.Tensor): tf.Tensor;
  /** Back to the state right after `setTimesteps`: the multistep history is disposed, the step index forgotten. */
  reset(): void;
  /** Releases the tensors the scheduler holds. */
  dispose(): void;
}

/** Rounds to float32: the reference keeps its sigma table and the step coefficients in float32 tensors. */
export const f32 = Math.fround;

/** numpy.linspace(start, stop, num) in float64, value for value: i·step + start, the last one exactly `stop`. */
export function linspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const div = num - 1;
  const delta = stop - start;
  const step = delta / div;
  const out: number[] = [];
  for (let i = 0; i < num; i++) out.push(step === 0 ? (i / div) * delta + start : i * step + start);
  out[div] = stop;
  return out;
}

/** σ' = s·σ / (1 + (s − 1)·σ), float64 as numpy evaluates it. */
export function shiftSigma(shift: number, sigma: number): number {
  return (shift * sigma) / (1 + (shift - 1) * sigma);
}

/** The same shift on a float32 tensor (torch ops on the training table): every operation rounded to float32. */
export function shiftSigmaF32(shift: number, sigma: number): number {
  return f32(f32(f32(shift) * sigma) / f32(1 + f32(f32(shift - 1) * sigma)));
}

/** λ(σ) = log α − log σ with α = 1 − σ, in float32 (+∞ at σ = 0). */
export function lambdaF32(sigma: number): number {
  return f32(f32(Math.log(f32(1 - sigma))) - f32(Math.log(sigma)));
}

/** Solves A·x = b (small, dense) by Gaussian elimination with partial pivoting. */
export function solveLinear(a: readonly (readonly number[])[], b: readonly number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row.slice(0, n), b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    [m[c], m[p]] = [m[p], m[c]];
    for (let r = c + 1; r < n; r++) {
      const k = m[r][c] / m[c][c];
      for (let j = c; j <= n; j++) m[r][j] -= k * m[c][j];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = m[r][n];
    for (let j = r + 1; j < n; j++) s -= m[r][j] * x[j];
    x[r] = s / m[r][r];
  }
  return x;
}

/** The schedule a subclass computes for n steps. */
export interface Schedule {
  timesteps: number[];
  sigmas: number[];
}

/**
 * What the three flow schedulers share: the schedule, the step index (Diffusers' `_init_step_index` rule),
 * the multistep history of converted model outputs, and the forward noising.
 */
export abstract class FlowSchedulerBase implements FlowScheduler {
  abstract readonly className: string;
  protected _timesteps: number[] = [];
  protected _sigmas: number[] = [];
  protected _stepIndex: number | undefined;
  protected _beginIndex: number | undefined;
  /** Converted model outputs (x₀ predictions), oldest first; at most `solverOrder` kept. */
  protected outputs: tf.Tensor[] = [];
  /** How many steps the history has warmed up (Diffusers' `lower_order_nums`). */
  protected lowerOrderNums = 0;

  get timesteps(): readonly number[] {
    return this._timesteps;
  }

  get sigmas(): readonly number[] {
    return this._sigmas;
  }

  get stepIndex(): number | undefined {
    return this._stepIndex;
  }

  get numInferenceSteps(): number {
    return this._timesteps.length;
  }

  /** The schedule for n steps at the given shift. */
  protected abstract computeSchedule(numInferenceSteps: number, shift: number): Schedule;

  /** The config's shift. */
  protected abstract get configShift(): number;

  /** One step at schedule index `index` (history updated by the subclass); returns a new tensor. */
  protected abstract stepAt(modelOutput: tf.Tensor, sample: tf.Tensor, index: number): tf.Tensor;

  setTimesteps(numInferenceSteps: number, options: SetTimestepsOptions = {}): void {
    if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1) {
      throw new ConfigError(`${this.className}.setTimesteps: numInferenceSteps must be an integer ≥ 1, got ${numInferenceSteps}`);
    }
    const shift = options.shift ?? this.configShift;
    if (!Number.isFinite(shift) || shift <= 0) {
      throw new ConfigError(`${this.className}.setTimesteps: shift must be a finite number > 0, got ${shift}`);
    }
    const s = this.computeSchedule(numInferenceSteps, shift);
    this._timesteps = s.timesteps;
    this._sigmas = s.sigmas;
    this.reset();
  }

  setBeginIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= Math.max(1, this._timesteps.length)) {
      throw new ConfigError(
        `${this.className}.setBeginIndex: index must be an integer in [0, ${this._timesteps.length - 1}] (call setTimesteps first), got ${index}`,
      );
    }
    this._beginIndex = index;
  }

  /** Diffusers' `index_for_timestep`: the second match if the timestep repeats, the first otherwise; none → the last index. */
  protected indexForTimestep(timestep: number): number {
    const matches: number[] = [];
    this._timesteps.forEach((t, i) => {
      if (t === timestep) matches.push(i);
    });
    if (matches.length === 0) return this.indexForMissingTimestep(timestep);
    return matches.length > 1 ? matches[1] : matches[0];
  }

  /** A timestep that is not on the schedule: the multistep schedulers take the last index, as the reference does. */
  protected indexForMissingTimestep(_timestep: number): number {
    return this._timesteps.length - 1;
  }

  step(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor): tf.Tensor {
    // modelOutput, sample: [B, ...] of one shape → the sample at the next sigma, same shape
    const n = this._timesteps.length;
    if (n === 0) throw new ConfigError(`${this.className}.step: no schedule; call setTimesteps(n) first`);
    if (!modelOutput.shape.every((d, i) => d === sample.shape[i]) || modelOutput.rank !== sample.rank) {
      throw new ShapeError('modelOutput', `[${modelOutput.shape}]`, `the shape of sample [${sample.shape}]`);
    }
    if (this._stepIndex === undefined) {
      this._stepIndex = this._beginIndex ?? this.indexForTimestep(timestep);
    }
    if (this._stepIndex >= n) {
      throw new WanError(
        `${this.className}.step: all ${n} steps of the schedule are done; call reset() or setTimesteps() to start another trajectory`,
      );
    }
    const prev = this.stepAt(modelOutput, sample, this._stepIndex);
    this._stepIndex += 1;
    return prev;
  }

  /** Adds `m` to the history, disposing what falls out of the last `keep`. */
  protected pushOutput(m: tf.Tensor, keep: number): void {
    this.outputs.push(m);
    while (this.outputs.length > keep) this.outputs.shift()?.dispose();
  }

  /** The sigma(s) of a noise level, one per batch item or one for all. */
  protected sigmasFor(at: NoiseLevel): number[] {
    if ('sigma' in at) {
      const s = typeof at.sigma === 'number' ? [at.sigma] : [...at.sigma];
      for (const v of s) {
        if (!(v >= 0 && v <= 1)) throw new ConfigError(`${this.className}: sigma must lie in [0, 1], got ${v}`);
      }
      return s.map(f32);
    }
    if (this._timesteps.length === 0) throw new ConfigError(`${this.className}: no schedule to look timesteps up in; call setTimesteps(n) first`);
    const ts = typeof at.timestep === 'number' ? [at.timestep] : [...at.timestep];
    // As the reference: without a begin index each timestep is looked up; otherwise the current (or begin) index is used.
    return ts.map((t) => {
      const i = this._beginIndex === undefined ? this.indexForTimestep(t) : (this._stepIndex ?? this._beginIndex);
      return this._sigmas[i];
    });
  }

  addNoise(original: tf.Tensor, noise: tf.Tensor, at: NoiseLevel): tf.Tensor {
    // original, noise: [B, ...]; σ per batch item or one σ for all
    if (!original.shape.every((d, i) => d === noise.shape[i]) || original.rank !== noise.rank) {
      throw new ShapeError('noise', `[${noise.shape}]`, `the shape of original [${original.shape}]`);
    }
    const sig = this.sigmasFor(at);
    if (sig.length !== 1 && sig.length !== original.shape[0]) {
      throw new ShapeError('noise level', `${sig.length} values`, `1 or one per batch item (${original.shape[0]})`);
    }
    return tf.tidy(() => {
      const shape = sig.length === 1 ? [] : [sig.length, ...original.shape.slice(1).map(() => 1)];
      const s = tf.tensor(sig, shape, 'float32');
      const a = tf.sub(1, s);
      return tf.add(tf.mul(a, original), tf.mul(s, noise));
    });
  }

  scaleNoise(sample: tf.Tensor, at: NoiseLevel, noise: tf.Tensor): tf.Tensor {
    return this.addNoise(sample, noise, at);
  }

  reset(): void {
    this.clearHistory();
    this._stepIndex = undefined;
    this._beginIndex = undefined;
  }

  dispose(): void {
    this.clearHistory();
  }

  /** Disposes the multistep history. */
  protected clearHistory(): void {
    for (const t of this.outputs) t.dispose();
    this.outputs = [];
    this.lowerOrderNums = 0;
  }
}

/** A scheduler_config.json as parsed. */
export type SchedulerJson = ConfigJson;

/** Kept here for importers of this module; the parser lives in src/config/python-json.ts. */
export { parsePythonJson } from '../src/config/python-json.js';
