import * as tf from '@tensorflow/tfjs-core';
import { defineConfig, field, type ConfigJson, type ConfigOf } from '../src/config/config-schema.js';
import { boolean, integer, oneOf, positiveNumber } from '../src/config/value-types.js';
import { f32, FlowSchedulerBase, lambdaF32, linspace, type Schedule, shiftSigma } from './scheduler.js';

/** DPM-Solver++ settings, as Diffusers' DPMSolverMultistepScheduler names them; defaults are the reference class's. */
const FIELDS = {
  numTrainTimesteps: field('num_train_timesteps', integer(2), 1000),
  solverOrder: field('solver_order', integer(1, 3), 2),
  /** Only `flow_prediction` (v = ε − x₀) is supported; Diffusers assumes `epsilon` when the key is absent. */
  predictionType: field('prediction_type', oneOf(['flow_prediction']), 'flow_prediction', { absent: 'epsilon' }),
  /** Only the deterministic data-prediction solver. */
  algorithmType: field('algorithm_type', oneOf(['dpmsolver++']), 'dpmsolver++'),
  /** Second-order update: midpoint (−½·(α_t(e^{−h}−1))·D₁) or heun; Diffusers maps the UniPC names onto midpoint. */
  solverType: field('solver_type', oneOf(['midpoint', 'heun'], { logrho: 'midpoint', bh1: 'midpoint', bh2: 'midpoint' }), 'midpoint'),
  /** Lower orders on the last steps when there are fewer than 15. */
  lowerOrderFinal: field('lower_order_final', boolean, true),
  /** First order on the very last step. */
  eulerAtFinal: field('euler_at_final', boolean, false),
  flowShift: field('flow_shift', positiveNumber, 1.0),
  finalSigmasType: field('final_sigmas_type', oneOf(['zero']), 'zero'),
  /**
   * 'diffusers': σ = flip(shift(1 − linspace(1, 1/T, n+1)))[:-1]; 'wan': the Wan repo's
   * FlowDPMSolverMultistepScheduler list, linspace(float32(1 − 1/T), 0, n+1)[:-1] shifted. Set by the class the JSON names.
   */
  sigmaSchedule: field(null, oneOf(['diffusers', 'wan']), 'diffusers'),
};

/** DPM-Solver++ multistep for flow matching (`DPMSolverMultistepScheduler` with use_flow_sigmas). */
export type FlowDPMSolverConfig = ConfigOf<typeof FIELDS>;

/** Reference options of which only one value is supported here. */
const UNSUPPORTED = { thresholding: false, use_dynamic_shifting: false } as const;

/**
 * Reads, writes and checks FlowDPMSolverConfig: Diffusers' DPMSolverMultistepScheduler (with
 * use_flow_sigmas), or the Wan repo's FlowDPMSolverMultistepScheduler (`shift`; the 'wan' sigma schedule).
 */
export const FlowDPMSolverConfig = defineConfig(FIELDS, {
  what: 'a DPM-Solver++ scheduler',
  dialects: [
    {
      name: 'DPMSolverMultistepScheduler',
      fixed: {
        ...UNSUPPORTED,
        use_flow_sigmas: { only: true, absent: false, why: 'the flow-matching schedule; the VP-diffusion schedule is not supported' },
        use_karras_sigmas: false,
        use_exponential_sigmas: false,
        use_beta_sigmas: false,
        use_lu_lambdas: false,
        rescale_betas_zero_snr: false,
        variance_type: null,
      },
    },
    {
      name: 'FlowDPMSolverMultistepScheduler',
      fields: { flowShift: { key: 'shift' }, predictionType: { absent: 'flow_prediction' }, sigmaSchedule: { default: 'wan' } },
      fixed: UNSUPPORTED,
    },
  ],
  dialectOf: (c) => (c.sigmaSchedule === 'wan' ? 'FlowDPMSolverMultistepScheduler' : 'DPMSolverMultistepScheduler'),
});

/** The Wan DPM++ settings (Wan repo `sample_solver='dpm++'`), at the Wan2.1 Diffusers shift. */
export const defaultFlowDPMSolverConfig: FlowDPMSolverConfig = {
  numTrainTimesteps: 1000,
  solverOrder: 2,
  predictionType: 'flow_prediction',
  algorithmType: 'dpmsolver++',
  solverType: 'midpoint',
  lowerOrderFinal: true,
  eulerAtFinal: false,
  flowShift: 3.0,
  finalSigmasType: 'zero',
  sigmaSchedule: 'diffusers',
};

/**
 * Diffusers `DPMSolverMultistepScheduler` (dpmsolver++, use_flow_sigmas, flow_prediction): with α = 1 − σ,
 * λ = log α − log σ, h = λ_t − λ_s, the data-prediction multistep updates of Lu et al. 2022 on x₀ = x − σ·v.
 */
export class FlowDPMSolverMultistepScheduler extends FlowSchedulerBase {
  /** DPMSolverMultistepScheduler, or FlowDPMSolverMultistepScheduler with the 'wan' schedule. */
  readonly className: string;
  readonly config: FlowDPMSolverConfig;

  /** `config` over the Wan DPM++ settings (defaultFlowDPMSolverConfig). */
  constructor(config: Partial<FlowDPMSolverConfig> = {}) {
    super();
    this.config = FlowDPMSolverConfig.resolve(config, defaultFlowDPMSolverConfig);
    this.className = this.config.sigmaSchedule === 'wan' ? 'FlowDPMSolverMultistepScheduler' : 'DPMSolverMultistepScheduler';
  }

  /**
   * From a scheduler_config.json; absent keys take the reference class's defaults. `_class_name`
   * FlowDPMSolverMultistepScheduler (the Wan repo's) selects the 'wan' schedule and reads `shift`.
   */
  static fromJSON(json: ConfigJson): FlowDPMSolverMultistepScheduler {
    return new FlowDPMSolverMultistepScheduler(FlowDPMSolverConfig.fromJSON(json));
  }

  protected get configShift(): number {
    return this.config.flowShift;
  }

  protected computeSchedule(n: number, shift: number): Schedule {
    const T = this.config.numTrainTimesteps;
    const sig =
      this.config.sigmaSchedule === 'wan'
        ? linspace(f32(1 - 1 / T), 0, n + 1).slice(0, n).map((s) => shiftSigma(shift, s))
        : linspace(1, 1 / T, n + 1).map((a) => shiftSigma(shift, 1 - a)).reverse().slice(0, n);
    return { timesteps: sig.map((s) => Math.trunc(s * T)), sigmas: [...sig, 0].map(f32) };
  }

  // modelOutput, sample: [B, ...] — x₀ = x − σ·v, then the update of the order the history allows
  protected stepAt(modelOutput: tf.Tensor, sample: tf.Tensor, i: number): tf.Tensor {
    const c = this.config;
    const n = this._timesteps.length;
    const lowerOrderFinal = i === n - 1 && (c.eulerAtFinal || (c.lowerOrderFinal && n < 15) || c.finalSigmasType === 'zero');
    const lowerOrderSecond = i === n - 2 && c.lowerOrderFinal && n < 15;
    const { m, prev } = tf.tidy(() => {
      const m = tf.sub(sample, tf.mul(modelOutput, this._sigmas[i]));
      const history = [...this.outputs, m].slice(-c.solverOrder);
      let prev: tf.Tensor;
      if (c.solverOrder === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) prev = this.firstOrder(m, sample, i);
      else if (c.solverOrder === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) prev = this.secondOrder(history, sample, i);
      else prev = this.thirdOrder(history, sample, i);
      return { m, prev };
    });
    this.pushOutput(m, c.solverOrder);
    this.lowerOrderNums = Math.min(this.lowerOrderNums + 1, c.solverOrder);
    return prev;
  }

  /** α_t, σ_t, λ_t of schedule index k (float32). */
  private at(k: number): { alpha: number; sigma: number; lambda: number } {
    const sigma = this._sigmas[k];
    return { alpha: f32(1 - sigma), sigma, lambda: lambdaF32(sigma) };
  }

  // x_t = (σ_t/σ_s)·x − α_t(e^{−h} − 1)·m₀
  private firstOrder(m0: tf.Tensor, x: tf.Tensor, i: number): tf.Tensor {
    const t = this.at(i + 1);
    const s = this.at(i);
    const h = f32(t.lambda - s.lambda);
    return tf.sub(tf.mul(x, f32(t.sigma / s.sigma)), tf.mul(m0, f32(t.alpha * f32(f32(Math.exp(-h)) - 1))));
  }

  // D₀ = m₀, D₁ = (m₀ − m₁)/r₀ with r₀ = h₀/h; midpoint: x_t = (σ_t/σ_s₀)x − α_t(e^{−h}−1)D₀ − ½α_t(e^{−h}−1)D₁
  private secondOrder(history: tf.Tensor[], x: tf.Tensor, i: number): tf.Tensor {
    const t = this.at(i + 1);
    const s0 = this.at(i);
    const s1 = this.at(i - 1);
    const [m1, m0] = history.slice(-2);
    const h = f32(t.lambda - s0.lambda);
    const r0 = f32(f32(s0.lambda - s1.lambda) / h);
    const d1 = tf.mul(tf.sub(m0, m1), f32(1 / r0));
    const em1 = f32(f32(Math.exp(-h)) - 1);
    const a = f32(t.alpha * em1);
    const base = tf.sub(tf.mul(x, f32(t.sigma / s0.sigma)), tf.mul(m0, a));
    if (this.config.solverType === 'midpoint') return tf.sub(base, tf.mul(d1, f32(0.5 * a)));
    return tf.add(base, tf.mul(d1, f32(t.alpha * f32(f32(em1 / h) + 1))));
  }

  // D₁ = D₁₀ + r₀/(r₀+r₁)(D₁₀ − D₁₁), D₂ = (D₁₀ − D₁₁)/(r₀+r₁);
  // x_t = (σ_t/σ_s₀)x − α_t(e^{−h}−1)D₀ + α_t((e^{−h}−1)/h + 1)D₁ − α_t((e^{−h}−1+h)/h² − ½)D₂
  private thirdOrder(history: tf.Tensor[], x: tf.Tensor, i: number): tf.Tensor {
    const t = this.at(i + 1);
    const s0 = this.at(i);
    const s1 = this.at(i - 1);
    const s2 = this.at(i - 2);
    const [m2, m1, m0] = history.slice(-3);
    const h = f32(t.lambda - s0.lambda);
    const r0 = f32(f32(s0.lambda - s1.lambda) / h);
    const r1 = f32(f32(s1.lambda - s2.lambda) / h);
    const d10 = tf.mul(tf.sub(m0, m1), f32(1 / r0));
    const d11 = tf.mul(tf.sub(m1, m2), f32(1 / r1));
    const diff = tf.sub(d10, d11);
    const d1 = tf.add(d10, tf.mul(diff, f32(r0 / f32(r0 + r1))));
    const d2 = tf.mul(diff, f32(1 / f32(r0 + r1)));
    const em1 = f32(f32(Math.exp(-h)) - 1);
    const c1 = f32(t.alpha * f32(f32(em1 / h) + 1));
    const c2 = f32(t.alpha * f32(f32(f32(em1 + h) / f32(h * h)) - 0.5));
    const base = tf.sub(tf.mul(x, f32(t.sigma / s0.sigma)), tf.mul(m0, f32(t.alpha * em1)));
    return tf.sub(tf.add(base, tf.mul(d1, c1)), tf.mul(d2, c2));
  }
}
