import * as tf from '@tensorflow/tfjs-core';
import { defineConfig, field, type ConfigJson, type ConfigOf } from '../src/config/config-schema.js';
import { positiveInt, positiveNumber } from '../src/config/value-types.js';
import { WanError } from '../src/errors.js';
import { f32, FlowSchedulerBase, linspace, type Schedule, shiftSigma, shiftSigmaF32 } from './scheduler.js';

/** Flow-match Euler settings (`FlowMatchEulerDiscreteScheduler` configs); defaults are the reference class's. */
const FIELDS = {
  numTrainTimesteps: field('num_train_timesteps', positiveInt, 1000),
  /** The shift s of the sigma schedule (applied to the training table and again to the inference sigmas, as the reference does). */
  shift: field('shift', positiveNumber, 1.0),
};

/** Flow-match Euler (`FlowMatchEulerDiscreteScheduler` configs). */
export type FlowMatchEulerConfig = ConfigOf<typeof FIELDS>;

/** Reads, writes and checks FlowMatchEulerConfig; the reference's options this port lacks must keep their defaults. */
export const FlowMatchEulerConfig = defineConfig(FIELDS, {
  what: 'a flow-match Euler scheduler',
  dialects: [
    {
      name: 'FlowMatchEulerDiscreteScheduler',
      fixed: {
        use_dynamic_shifting: false,
        invert_sigmas: false,
        use_karras_sigmas: false,
        use_exponential_sigmas: false,
        use_beta_sigmas: false,
        stochastic_sampling: false,
        shift_terminal: null,
      },
    },
  ],
});

/** The config of the first Wan2.1-T2V Diffusers revisions that shipped this scheduler (shift 3). */
export const defaultFlowMatchEulerConfig: FlowMatchEulerConfig = {
  numTrainTimesteps: 1000,
  shift: 3.0,
};

/**
 * Diffusers `FlowMatchEulerDiscreteScheduler`: x_{i+1} = x_i + (σ_{i+1} − σ_i)·v_i.
 * Schedule: the training table σ_k = shift(k/T) (float32, k = T…1) gives σ_max, σ_min; the inference sigmas are
 * linspace(σ_max·T, σ_min·T, n)/T shifted again (float64), float32, then a final 0; timesteps = σ·T in float32.
 */
export class FlowMatchEulerDiscreteScheduler extends FlowSchedulerBase {
  readonly className = 'FlowMatchEulerDiscreteScheduler';
  readonly config: FlowMatchEulerConfig;

  /** `config` over the published Wan2.1 settings (defaultFlowMatchEulerConfig). */
  constructor(config: Partial<FlowMatchEulerConfig> = {}) {
    super();
    this.config = FlowMatchEulerConfig.resolve(config, defaultFlowMatchEulerConfig);
  }

  /** From a scheduler_config.json; absent keys take the reference class's defaults (shift 1). */
  static fromJSON(json: ConfigJson): FlowMatchEulerDiscreteScheduler {
    return new FlowMatchEulerDiscreteScheduler(FlowMatchEulerConfig.fromJSON(json));
  }

  protected get configShift(): number {
    return this.config.shift;
  }

  protected computeSchedule(n: number, shift: number): Schedule {
    const T = this.config.numTrainTimesteps;
    // The training table's ends: σ(T/T) and σ(1/T), shifted in float32.
    const sigmaMax = shiftSigmaF32(shift, f32(T / T));
    const sigmaMin = shiftSigmaF32(shift, f32(1 / T));
    const sig = linspace(sigmaMax * T, sigmaMin * T, n).map((t) => f32(shiftSigma(shift, t / T)));
    return { timesteps: sig.map((s) => f32(s * T)), sigmas: [...sig, 0] };
  }

  /** The reference has no fallback for a timestep that is not on the schedule. */
  protected override indexForMissingTimestep(timestep: number): number {
    throw new WanError(
      `FlowMatchEulerDiscreteScheduler: timestep ${timestep} is not on the schedule; pass a value of scheduler.timesteps (or call setBeginIndex)`,
    );
  }

  // modelOutput, sample: [B, ...] → sample + (σ_{i+1} − σ_i)·v
  protected stepAt(modelOutput: tf.Tensor, sample: tf.Tensor, i: number): tf.Tensor {
    const dt = f32(this._sigmas[i + 1] - this._sigmas[i]);
    return tf.tidy(() => tf.add(sample, tf.mul(modelOutput, dt)));
  }
}
