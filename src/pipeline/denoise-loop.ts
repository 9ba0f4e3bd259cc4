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
 * v [B, C, F', H', W'] for latents x [B, C, F', H', W'] at timestep t: the expert's prediction from
 * the task's model input, guided v_neg + g·(v − v_neg) when there is an uncond. The forwards check
 * `signal` between blocks (yielding to the event loop there with forwardAsync); every tensor made
 * here but v is freed, on abort too.
 */
async function predict(d: DenoiseInput, model: PipelineTransformer, x: tf.Tensor, t: number, g: number): Promise<tf.Tensor> {
  const { conditioning, signal } = d;
  const made: tf.Tensor[] = [];
  try {
    const input = tf.tidy(() => conditioning.modelInput(x));
    if (input !== x) made.push(input);
    const timestep = tf.tidy(() => conditioning.timestep(t));
    made.push(timestep);
    const forward = (text: tf.Tensor): Promise<tf.Tensor> =>
      model.forwardAsync ? model.forwardAsync(input, timestep, text, { signal }) : Promise.resolve(tf.tidy(() => model.forward(input, timestep, text, { signal })));
    const vCond = await forward(d.cond);
    if (!d.uncond) return vCond;
    made.push(vCond);
    const vUncond = await forward(d.uncond);
    made.push(vUncond);
    return tf.tidy(() => tf.add(vUncond, tf.mul(g, tf.sub(vCond, vUncond))));
  } finally {
    tf.dispose(made);
  }
}

/**
 * The denoising loop of Diffusers' WanPipeline.__call__: for each timestep t of the scheduler
 * (σ·1000, truncated to an integer by UniPC) the expert for t predicts v from the task's model
 * input, with classifier-free guidance v = v_neg + g·(v − v_neg) at that expert's scale, and the
 * scheduler steps the latents. Yields to the event loop before each step and, with models that have
 * forwardAsync, before each transformer block (so an abort lands within one block),
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
      const v = await predict(d, model, x, t, g);
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
