/**
 * AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"), as torch.optim.AdamW computes it:
 *   p ← p·(1 − lr·λ)
 *   m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²
 *   p ← p − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
 * The moments are named like torch's state (`exp_avg`, `exp_avg_sq`) so a checkpoint can carry them.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CheckpointError, ConfigError, ShapeError } from '../errors.js';

export interface AdamWConfig {
  /** Learning rate, or a schedule of the (1-based) step. Default 1e-4. */
  lr?: number | ((step: number) => number);
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay λ (torch default 0.01). */
  weightDecay?: number;
  /** Which parameters decay; default all. */
  decay?: (name: string) => boolean;
}

interface Slot {
  variable: tf.Variable;
  m: tf.Variable;
  v: tf.Variable;
}

export class AdamW {
  /** Number of updates applied so far. */
  step = 0;
  private readonly slots = new Map<string, Slot>();
  readonly config: Required<Omit<AdamWConfig, 'decay'>> & Pick<AdamWConfig, 'decay'>;

  constructor(params: ReadonlyMap<string, tf.Variable>, config: AdamWConfig = {}) {
    this.config = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, ...config };
    const { beta1, beta2 } = this.config;
    if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1)) throw new ConfigError(`AdamW: betas must lie in [0, 1), got (${beta1}, ${beta2})`);
    for (const [name, variable] of params) {
      this.slots.set(name, {
        variable,
        m: tf.tidy(() => tf.variable(tf.zerosLike(variable), false)),
        v: tf.tidy(() => tf.variable(tf.zerosLike(variable), false)),
      });
    }
  }

  learningRate(step = this.step + 1): number {
    const lr = this.config.lr;
    return typeof lr === 'function' ? lr(step) : lr;
  }

  /** One update from gradients by parameter name (a missing name is left unchanged). Does not dispose `grads`. */
  applyGradients(grads: Readonly<Record<string, tf.Tensor>>): void {
    this.step++;
    const t = this.step;
    const { beta1, beta2, eps, weightDecay } = this.config;
    const lr = this.learningRate(t);
    const c1 = 1 - beta1 ** t;
    const c2 = 1 - beta2 ** t;
    for (const [name, s] of this.slots) {
      const g = grads[name];
      if (!g) continue;
      if (g.shape.join() !== s.variable.shape.join()) throw new ShapeError(`gradient '${name}'`, `[${g.shape}]`, `[${s.variable.shape}]`);
      tf.tidy(() => {
        const m = tf.add(tf.mul(s.m, beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(s.v, beta2), tf.mul(tf.square(g), 1 - beta2));
        s.m.assign(m);
        s.v.assign(v);
        const decay = weightDecay > 0 && (this.config.decay?.(name) ?? true) ? 1 - lr * weightDecay : 1;
        const update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), eps));
        s.variable.assign(tf.sub(tf.mul(s.variable, decay), tf.mul(update, lr)));
      });
    }
  }

  /** The optimizer state as named tensors (`<param>.exp_avg`, `<param>.exp_avg_sq`); the caller disposes them. */
  stateTensors(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const [name, s] of this.slots) {
      out.set(`${name}.exp_avg`, s.m.clone());
      out.set(`${name}.exp_avg_sq`, s.v.clone());
    }
    return out;
  }

  /** Restores state saved by stateTensors; `read(key)` returns a tensor the optimizer takes ownership of. */
  loadState(step: number, read: (key: string) => tf.Tensor | undefined, label = 'optimizer state'): void {
    const missing: string[] = [];
    for (const [name, s] of this.slots) {
      for (const [key, target] of [[`${name}.exp_avg`, s.m], [`${name}.exp_avg_sq`, s.v]] as const) {
        const t = read(key);
        if (!t) {
          missing.push(key);
          continue;
        }
        if (t.shape.join() !== target.shape.join()) {
          t.dispose();
          throw new CheckpointError(`shape [${t.shape}] does not fit the parameter's [${target.shape}]`, label, key);
        }
        target.assign(t);
        t.dispose();
      }
    }
    if (missing.length) throw new CheckpointError(`missing ${missing.length} optimizer tensors: ${missing.slice(0, 10).join(', ')}`, label);
    this.step = step;
  }

  dispose(): void {
    for (const s of this.slots.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.slots.clear();
  }
}

/**
 * Scales gradients in place (returns new tensors, disposing the old) so their global L2 norm is at
 * most maxNorm, as torch.nn.utils.clip_grad_norm_. Returns the norm before clipping.
 */
export function clipGradNorm(grads: Record<string, tf.Tensor>, maxNorm: number): number {
  const names = Object.keys(grads);
  if (names.length === 0) return 0;
  const total = tf.tidy(() => tf.sqrt(tf.addN(names.map((n) => tf.sum(tf.square(grads[n]))))));
  const norm = total.dataSync()[0];
  total.dispose();
  if (norm > maxNorm) {
    const k = maxNorm / (norm + 1e-6);
    for (const n of names) {
      const old = grads[n];
      grads[n] = tf.mul(old, k);
      old.dispose();
    }
  }
  return norm;
}
