/**
 * The rectified-flow training objective Wan is trained with (WAN-SPEC §6.1):
 *   x_σ = (1 − σ)·x₀ + σ·ε,   target v = ε − x₀,   loss = mean((model(x_σ, 1000·σ) − v)²).
 *
 * σ is sampled as the Diffusers flow-matching trainers do (`training_utils.compute_density_for_timestep_sampling`
 * in diffusers, used by its SD3/Flux/Wan LoRA scripts): u ~ U(0, 1) ('uniform') or u = sigmoid(N(m, s²))
 * ('logit_normal', SD3 paper §3.1), then the same time shift the samplers use,
 * σ = s·u / (1 + (s − 1)·u) (FlowMatchEulerDiscreteScheduler / Wan's `shift`), so training puts its
 * effort where sampling spends its steps. The model's timestep input is 1000·σ.
 *
 * `framewiseBatch` draws σ per latent frame instead (independent draws, as in Diffusion Forcing,
 * Chen et al. 2024) and gives the DiT per-token timesteps, the form Wan2.2-TI2V uses for its clean
 * first frame: predicting a noisy frame from cleaner ones teaches the model motion across frames.
 */
import * as tf from '@tensorflow/tfjs-core';
import { patchGrid, type PatchSize } from '../../layers/wan-patch.js';
import { ConfigError, ShapeError } from '../errors.js';
import { MAX_SEED, Xoshiro128, randn, uniform } from '../random.js';

export type TimestepSampling = 'uniform' | 'logit_normal';

export interface FlowMatchingConfig {
  /** How u ∈ (0, 1) is drawn before the shift. Default 'logit_normal'. */
  sampling?: TimestepSampling;
  logitMean?: number;
  logitStd?: number;
  /** The time shift s (Wan: 3.0 in the Diffusers configs, 5.0/12.0 in the original). Default 1 (none). */
  shift?: number;
  /** Timestep scale: the model sees numTrainTimesteps·σ. Default 1000. */
  numTrainTimesteps?: number;
}

/** σ' = s·σ / (1 + (s − 1)·σ). */
export function shiftSigma(sigma: number, shift: number): number {
  return (shift * sigma) / (1 + (shift - 1) * sigma);
}

/** Draws `batch` values of σ ∈ (0, 1) from a seeded stream (`rand` returns U[0, 1)). */
export function sampleSigmas(batch: number, rand: () => number, config: FlowMatchingConfig = {}): Float32Array {
  const sampling = config.sampling ?? 'logit_normal';
  const shift = config.shift ?? 1;
  if (!(shift > 0)) throw new ConfigError(`flow matching: shift must be > 0, got ${shift}`);
  const out = new Float32Array(batch);
  for (let i = 0; i < batch; i++) {
    let u: number;
    if (sampling === 'uniform') {
      u = rand();
    } else {
      // Box–Muller: one standard normal from two uniforms.
      const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
      u = 1 / (1 + Math.exp(-((config.logitMean ?? 0) + (config.logitStd ?? 1) * z)));
    }
    out[i] = shiftSigma(Math.min(Math.max(u, 1e-5), 1 - 1e-5), shift);
  }
  return out;
}

export interface FlowMatchingBatch {
  /** x_σ, same shape as x₀. */
  noisy: tf.Tensor;
  /** v = ε − x₀. */
  target: tf.Tensor;
  /** [B] σ per sample, or [B, F'] per token frame (framewiseBatch). */
  sigma: tf.Tensor;
  /** [B] model timestep numTrainTimesteps·σ, or per token [B, L] (framewiseBatch). */
  timestep: tf.Tensor;
}

/** x_σ = (1 − σ)·x₀ + σ·ε and v = ε − x₀, with s broadcasting against x0 (call inside tf.tidy). */
function interpolate(x0: tf.Tensor, noise: tf.Tensor, s: tf.Tensor): { noisy: tf.Tensor; target: tf.Tensor } {
  return { noisy: tf.add(tf.mul(tf.sub(1, s), x0), tf.mul(s, noise)), target: tf.sub(noise, x0) };
}

function checkNoise(x0: tf.Tensor, noise: tf.Tensor): void {
  if (noise.shape.join() !== x0.shape.join()) throw new ShapeError('noise', `[${noise.shape}]`, `[${x0.shape}] (the shape of x0)`);
}

/**
 * Builds one training batch from clean latents.
 * x0: [B, ...] latents; noise: same shape (ε ~ N(0, 1)); sigmas: [B].
 */
export function flowMatchingBatch(x0: tf.Tensor, noise: tf.Tensor, sigmas: Float32Array, config: FlowMatchingConfig = {}): FlowMatchingBatch {
  const B = x0.shape[0];
  checkNoise(x0, noise);
  if (sigmas.length !== B) throw new ShapeError('sigmas', `${sigmas.length} values`, `${B} (the batch of x0)`);
  const T = config.numTrainTimesteps ?? 1000;
  return tf.tidy(() => {
    const sigma = tf.tensor1d(sigmas);
    const { noisy, target } = interpolate(x0, noise, tf.reshape(sigma, [B, ...x0.shape.slice(1).map(() => 1)]));
    return { noisy, target, sigma, timestep: tf.mul(sigma, T) };
  });
}

/**
 * A batch with one σ per DiT token frame (pt latent frames for patch size (pt, ph, pw)).
 * x0, noise: [B, C, F, H, W]; sigmas: [B·F'] row-major, F' = F / pt. timestep: [B, F'·H'·W'] per
 * token, in the DiT's token order (frame-major), H' = H / ph, W' = W / pw.
 */
export function flowMatchingFrameBatch(x0: tf.Tensor, noise: tf.Tensor, sigmas: Float32Array, patchSize: PatchSize, config: FlowMatchingConfig = {}): FlowMatchingBatch {
  const [Fp, Hp, Wp] = patchGrid(x0.shape, patchSize, 'x0');
  checkNoise(x0, noise);
  const [B, , F] = x0.shape;
  const pt = patchSize[0];
  if (sigmas.length !== B * Fp) throw new ShapeError('sigmas', `${sigmas.length} values`, `${B * Fp} (batch ${B} × ${Fp} token frames)`);
  const T = config.numTrainTimesteps ?? 1000;
  return tf.tidy(() => {
    const sigma = tf.tensor2d(sigmas, [B, Fp]);
    // [B, F'] → [B, 1, F, 1, 1]: each token frame's σ over its pt latent frames.
    const { noisy, target } = interpolate(x0, noise, tf.reshape(tf.tile(tf.reshape(sigma, [B, Fp, 1]), [1, 1, pt]), [B, 1, F, 1, 1]));
    const timestep = tf.reshape(tf.tile(tf.reshape(tf.mul(sigma, T), [B, Fp, 1]), [1, 1, Hp * Wp]), [B, Fp * Hp * Wp]);
    return { noisy, target, sigma, timestep };
  });
}

/** Mean squared error between the predicted and target velocity: a scalar. */
export function flowMatchingLoss(prediction: tf.Tensor, target: tf.Tensor): tf.Scalar {
  if (prediction.shape.join() !== target.shape.join()) throw new ShapeError('prediction', `[${prediction.shape}]`, `[${target.shape}] (the target's shape)`);
  return tf.tidy(() => tf.mean(tf.squaredDifference(prediction, target)) as tf.Scalar);
}

/**
 * A seeded source of σ draws and noise tensors for a training run: σ from the stream uniform(seed),
 * each batch's ε from randn with a seed drawn from a second stream, Xoshiro128(MAX_SEED − seed).
 */
export class FlowMatchingSampler {
  private readonly rand: () => number;
  private readonly noiseSeeds: Xoshiro128;

  constructor(readonly config: FlowMatchingConfig = {}, seed = 0) {
    this.rand = uniform(seed);
    this.noiseSeeds = new Xoshiro128(MAX_SEED - seed);
  }

  /** ε ~ N(0, 1) shaped like x0 for one batch, disposed once `make` has used it. */
  private withNoise(x0: tf.Tensor, make: (noise: tf.Tensor) => FlowMatchingBatch): FlowMatchingBatch {
    const noise = randn(x0.shape, this.noiseSeeds.nextUint32());
    try {
      return make(noise);
    } finally {
      noise.dispose();
    }
  }

  /** σ draws, ε ~ N(0, 1) and the batch for clean latents x0: [B, ...]. */
  batch(x0: tf.Tensor): FlowMatchingBatch {
    const sigmas = sampleSigmas(x0.shape[0], this.rand, this.config);
    return this.withNoise(x0, (noise) => flowMatchingBatch(x0, noise, sigmas, this.config));
  }

  /**
   * Like batch, with σ drawn per DiT token frame (flowMatchingFrameBatch). x0: [B, C, F, H, W]. With
   * probability `anchor` a sample also gets one random token frame nearly clean (σ ~ U(0, 0.1)), so
   * that the others are predicted from it, as an image-to-video model predicts a clip from its first frame.
   */
  framewiseBatch(x0: tf.Tensor, patchSize: PatchSize, anchor = 0): FlowMatchingBatch {
    const [frames] = patchGrid(x0.shape, patchSize, 'x0');
    const B = x0.shape[0];
    const sigmas = sampleSigmas(B * frames, this.rand, this.config);
    if (anchor > 0) {
      for (let b = 0; b < B; b++) if (this.rand() < anchor) sigmas[b * frames + Math.floor(this.rand() * frames)] = 0.1 * this.rand();
    }
    return this.withNoise(x0, (noise) => flowMatchingFrameBatch(x0, noise, sigmas, patchSize, this.config));
  }
}
