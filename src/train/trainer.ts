/**
 * A training loop that runs on any tfjs backend: gradients of a user loss with respect to the
 * trainable parameters, global-norm clipping, AdamW, loss reporting as it goes, and checkpoints
 * (trainable weights + optimizer moments + step) written atomically as one safetensors file, from
 * which a run resumes exactly when the loss is a pure function of the step.
 */
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { AbortError, CheckpointError, ConfigError } from '../errors.js';
import type { Param, WanModule } from '../../layers/module.js';
import { hostToTensor } from '../../weights/load.js';
import { fp32, setFusedKernels } from '../backend/ops.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../weights/safetensors.js';
import { AdamW, clipGradNorm, type AdamWConfig } from './adamw.js';

export interface TrainLog {
  step: number;
  /** Mean loss over the steps since the last report. */
  loss: number;
  lr: number;
  gradNorm: number;
  /** Wall time since run() started. */
  elapsedMs: number;
  stepsPerSecond: number;
}

export interface TrainerConfig {
  /** Total number of optimizer steps (a resumed run continues up to it). */
  steps: number;
  optimizer?: AdamWConfig;
  /** Clip the global gradient norm to this (default 1, as the Diffusers trainers); Infinity to disable. */
  maxGradNorm?: number;
  /** Report every n steps (default 10). */
  logEvery?: number;
  onLog?: (log: TrainLog) => void;
  /** Write a checkpoint every n steps and at the end, to checkpointPath. */
  checkpointEvery?: number;
  checkpointPath?: string;
  signal?: AbortSignal;
}

/** The trainable parameters of a model by checkpoint key, optionally prefixed (`transformer.`). */
export function trainableParams(model: WanModule, prefix = ''): Map<string, Param> {
  const out = new Map<string, Param>();
  for (const [k, p] of model.namedParams()) if (p.variable?.trainable && model.trainable) out.set(prefix + k, p);
  return out;
}

function variableOf(name: string, p: Param): tf.Variable {
  const v = p.variable?.read();
  if (!(v instanceof tf.Variable)) throw new ConfigError(`parameter '${name}' is not set: load or initialize the model before training`);
  return v;
}

const FORMAT = 'wan-tfjs-trainer/1';

export class Trainer {
  readonly optimizer: AdamW;
  private readonly vars = new Map<string, tf.Variable>();
  readonly losses: number[] = [];

  /**
   * params: the parameters to train, by name (see trainableParams).
   * loss(step): builds the scalar loss for a (1-based) step; it runs inside tf.variableGrads.
   */
  constructor(
    readonly params: ReadonlyMap<string, Param>,
    readonly loss: (step: number) => tf.Scalar,
    readonly config: TrainerConfig,
  ) {
    if (params.size === 0) throw new ConfigError('Trainer: no trainable parameters (are they all frozen?)');
    if (!(config.steps >= 0)) throw new ConfigError(`Trainer: steps must be ≥ 0, got ${config.steps}`);
    if (config.checkpointEvery && !config.checkpointPath) throw new ConfigError('Trainer: checkpointEvery needs a checkpointPath');
    for (const [name, p] of params) this.vars.set(name, variableOf(name, p));
    this.optimizer = new AdamW(this.vars, config.optimizer);
  }

  get step(): number {
    return this.optimizer.step;
  }

  /**
   * One optimizer step; returns the loss and the gradient norm before clipping. The step is an
   * fp32 island: forward, gradients and optimizer state stay float32 whatever the backend's
   * precision (weights loaded in bf16 become float32 at their first update).
   */
  trainStep(): { loss: number; gradNorm: number } {
    return fp32(() => this.stepInFp32());
  }

  private stepInFp32(): { loss: number; gradNorm: number } {
    const step = this.step + 1;
    const names = [...this.vars.keys()];
    const list = names.map((n) => this.vars.get(n)!);
    // The fused kernels have no gradients: the step is recorded with the composite ops.
    const fusedWas = setFusedKernels(false);
    let recorded: { value: tf.Scalar; grads: tf.NamedTensorMap };
    try {
      recorded = tf.variableGrads(() => this.loss(step), list);
    } finally {
      setFusedKernels(fusedWas);
    }
    const { value, grads } = recorded;
    const byName: Record<string, tf.Tensor> = {};
    const idToName = new Map(list.map((v, i) => [v.name, names[i]]));
    for (const [varName, g] of Object.entries(grads)) byName[idToName.get(varName) ?? varName] = g;
    const loss = value.dataSync()[0];
    value.dispose();
    if (!Number.isFinite(loss)) {
      tf.dispose(Object.values(byName));
      throw new ConfigError(`Trainer: the loss is ${loss} at step ${step}; lower the learning rate or check the inputs`);
    }
    const gradNorm = clipGradNorm(byName, this.config.maxGradNorm ?? 1);
    this.optimizer.applyGradients(byName);
    tf.dispose(Object.values(byName));
    return { loss, gradNorm };
  }

  /** Runs until config.steps, reporting and checkpointing as configured. */
  async run(): Promise<{ steps: number; losses: number[]; elapsedMs: number }> {
    const start = Date.now();
    const firstStep = this.step;
    const every = this.config.logEvery ?? 10;
    let sum = 0;
    let n = 0;
    let gradNorm = 0;
    while (this.step < this.config.steps) {
      if (this.config.signal?.aborted) throw new AbortError(`training stopped at step ${this.step}`);
      const r = this.trainStep();
      this.losses.push(r.loss);
      sum += r.loss;
      n++;
      gradNorm = r.gradNorm;
      if (this.step % every === 0 || this.step === this.config.steps) {
        const elapsedMs = Date.now() - start;
        this.config.onLog?.({
          step: this.step,
          loss: sum / n,
          lr: this.optimizer.learningRate(this.step),
          gradNorm,
          elapsedMs,
          stepsPerSecond: (this.step - firstStep) / Math.max(1e-3, elapsedMs / 1000),
        });
        sum = 0;
        n = 0;
      }
      if (this.config.checkpointEvery && this.config.checkpointPath && (this.step % this.config.checkpointEvery === 0 || this.step === this.config.steps)) {
        this.saveCheckpoint(this.config.checkpointPath);
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return { steps: this.step - firstStep, losses: this.losses, elapsedMs: Date.now() - start };
  }

  /**
   * Writes `model.<name>` (trainable weights, checkpoint layout), `optimizer.<name>.exp_avg|exp_avg_sq`
   * and the step (metadata) to `file`, atomically (a temporary file renamed into place).
   */
  saveCheckpoint(file: string): void {
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, p] of this.params) {
      const t = p.read()!;
      tensors[`model.${name}`] = { shape: [...t.shape], data: Float32Array.from(t.dataSync()) };
      t.dispose();
    }
    for (const [key, t] of this.optimizer.stateTensors()) {
      tensors[`optimizer.${key}`] = { shape: [...t.shape], data: Float32Array.from(t.dataSync()) };
      t.dispose();
    }
    writeSafetensors(file, tensors, { format: FORMAT, step: String(this.step) });
  }

  /** Restores weights, optimizer state and step from a checkpoint; returns false if `file` does not exist. */
  resume(file: string): boolean {
    if (!fs.existsSync(file)) return false;
    const src = SafetensorsFile.open(file);
    try {
      if (src.metadata.format !== FORMAT) throw new CheckpointError(`not a trainer checkpoint (metadata format '${src.metadata.format ?? ''}', expected '${FORMAT}')`, file);
      const step = Number(src.metadata.step);
      if (!Number.isInteger(step) || step < 0) throw new CheckpointError(`bad step '${src.metadata.step}' in metadata`, file);
      const missing = [...this.params.keys()].filter((n) => !src.has(`model.${n}`));
      if (missing.length) throw new CheckpointError(`missing ${missing.length} weights: ${missing.slice(0, 10).join(', ')}`, file);
      for (const [name, p] of this.params) {
        const key = `model.${name}`;
        if (src.info(key).shape.join() !== p.shape.join()) throw new CheckpointError(`shape [${src.info(key).shape}] vs parameter [${p.shape}]`, file, key);
      }
      for (const [name, p] of this.params) p.assign(hostToTensor(src.read(`model.${name}`)));
      this.optimizer.loadState(step, (k) => (src.has(`optimizer.${k}`) ? hostToTensor(src.read(`optimizer.${k}`)) : undefined), file);
      return true;
    } finally {
      src.close();
    }
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}
