import * as tf from '@tensorflow/tfjs-core';
import type { FlowScheduler } from '../../schedulers/scheduler.js';
import { AbortError, NonFiniteError } from '../errors.js';
import type { Conditioning } from './conditioning.js';
import type { StepInfo } from './generate-options.js';
import type { PipelineTransformer } from './pipeline-components.js';
import { allFinite } from './tensor-checks.js';

/** The experts of a pipeline as the loop uses them. */
export interface Experts {
  /** Which expert runs at timestep t: 0 (the only, or high-noise, one) or 1 (low-noise). */
  indexAt(t: number): 0 | 1;
  /** That expert, loaded (with residency 'active', the other one is released first). */
  get(index: 0 | 1): Promise<PipelineTransformer>;
}

/** One trajectory: everything the loop reads, and the initial latents it takes over. */
export interface DenoiseInput {
  experts: Experts;
  /** Guidance of expert 0 and of expert 1. */
  guidance: readonly [number, number];
  /** A scheduler this trajectory owns while it runs (reset when it ends). */
  scheduler: FlowScheduler;
  numInferenceSteps: number;
  /** Flow shift for this trajectory; undefined keeps the scheduler config's. */
  shift: number | undefined;
  /** [B, Ltxt, textDim]; `uncond` only with guidance (Diffusers: guidance_scale > 1 for the whole run). */
  cond: tf.Tensor;
  uncond: tf.Tensor | undefined;
  conditioning: Conditioning;
  /** [B, C, F', H', W'], disposed by the loop. */
  latents: tf.Tensor;
  signal?: AbortSignal;
  onStep?: (info: StepInfo) => void;
  checkFinite?: boolean;
}

function nextTick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Throws AbortError once `signal` is aborted. */
export function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError('generation was aborted');
}

/**
 * The denoising loop of Diffusers' WanPipeline.__call__: for each timestep t of the scheduler
 * (σ·1000, truncated to an integer by UniPC) the expert for t predicts v from the task's model
 * input, with classifier-free guidance v = v_neg + g·(v − v_neg) at that expert's scale, and the
 * scheduler steps the latents. Yields to the event loop before each step (so an abort lands),
 * reports progress, and returns the task's finish of the last latents (the caller disposes).
 */
export async function denoise(d: DenoiseInput): Promise<tf.Tensor> {
  let latents: tf.Tensor | undefined = d.latents;
  const { scheduler, conditioning } = d;
  try {
    scheduler.setTimesteps(d.numInferenceSteps, d.shift !== undefined ? { shift: d.shift } : {});
    scheduler.setBeginIndex(0);
    const timesteps = [...scheduler.timesteps];
    const start = performance.now();
    for (let i = 0; i < timesteps.length; i++) {
      await nextTick();
      checkAbort(d.signal);
      const t = timesteps[i];
      const e = d.experts.indexAt(t);
      const model = await d.experts.get(e);
      const g = d.guidance[e];
      const x: tf.Tensor = latents;
      const v = tf.tidy(() => {
        const timestep = conditioning.timestep(t);
        const input = conditioning.modelInput(x);
        const vCond = model.forward(input, timestep, d.cond);
        if (!d.uncond) return vCond;
        const vUncond = model.forward(input, timestep, d.uncond);
        return tf.add(vUncond, tf.mul(g, tf.sub(vCond, vUncond)));
      });
      const next = scheduler.step(v, t, x);
      v.dispose();
      x.dispose();
      latents = next;
      if (d.checkFinite && !(await allFinite(next))) {
        throw new NonFiniteError('latents', `hold NaN or infinite values after step ${i + 1} of ${timesteps.length} (t=${t}, ${e === 0 ? 'transformer' : 'transformer_2'})`, i + 1);
      }
      d.onStep?.({ step: i + 1, total: timesteps.length, timestep: t, expert: e === 0 ? 'transformer' : 'transformer_2', guidanceScale: g, elapsedMs: performance.now() - start, latents: next });
    }
    const out = conditioning.finish(latents);
    if (out === latents) latents = undefined;
    return out;
  } finally {
    latents?.dispose();
    scheduler.reset();
  }
}
