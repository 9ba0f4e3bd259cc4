import * as tf from '@tensorflow/tfjs-core';
import { defineConfig, field, type ConfigJson, type ConfigOf } from '../src/config/config-schema.js';
import { boolean, integer, listOf, oneOf, positiveInt, positiveNumber } from '../src/config/value-types.js';
import { f32, FlowSchedulerBase, lambdaF32, linspace, type Schedule, shiftSigma, solveLinear } from './scheduler.js';

/** UniPC settings, as Diffusers' UniPCMultistepScheduler names them; defaults are the reference class's. */
const FIELDS = {
  numTrainTimesteps: field('num_train_timesteps', integer(2), 1000),
  /** Order p of the predictor (the corrector adds one). */
  solverOrder: field('solver_order', positiveInt, 2),
  /** Only `flow_prediction` (v = ε − x₀) is supported; Diffusers assumes `epsilon` when the key is absent. */
  predictionType: field('prediction_type', oneOf(['flow_prediction']), 'flow_prediction', { absent: 'epsilon' }),
  /** Diffusers maps the DPM-Solver names onto bh2. */
  solverType: field('solver_type', oneOf(['bh1', 'bh2'], { midpoint: 'bh2', heun: 'bh2', logrho: 'bh2' }), 'bh2'),
  /** Order 1 on the last steps (min(solverOrder, steps left)). */
  lowerOrderFinal: field('lower_order_final', boolean, true),
  /** Step indices after which the corrector is skipped. */
  disableCorrector: field('disable_corrector', listOf(integer(0), 'integers ≥ 0'), []),
  /** The shift s of the sigma schedule. */
  flowShift: field('flow_shift', positiveNumber, 1.0),
  finalSigmasType: field('final_sigmas_type', oneOf(['zero', 'sigma_min']), 'zero'),
  /** Which sigma list setTimesteps builds (see SigmaSchedule): set by the class the JSON names. */
  sigmaSchedule: field(null, oneOf(['diffusers', 'wan']), 'diffusers'),
};

/** UniPC multistep for flow matching (`scheduler/scheduler_config.json` of the Wan Diffusers checkpoints). */
export type FlowUniPCConfig = ConfigOf<typeof FIELDS>;

/** Reference options of which only one value is supported here. */
const UNSUPPORTED = { thresholding: false, use_dynamic_shifting: false, predict_x0: true, solver_p: null } as const;

/**
 * Reads, writes and checks FlowUniPCConfig: Diffusers' UniPCMultistepScheduler (with use_flow_sigmas),
 * or the Wan repo's FlowUniPCMultistepScheduler (`shift`; the 'wan' sigma schedule; flow_prediction by default).
 */
export const FlowUniPCConfig = defineConfig(FIELDS, {
  what: 'a UniPC scheduler',
  dialects: [
    {
      name: 'UniPCMultistepScheduler',
      fixed: {
        ...UNSUPPORTED,
        use_flow_sigmas: { only: true, absent: false, why: 'the flow-matching schedule; the VP-diffusion schedule is not supported' },
        use_karras_sigmas: false,
        use_exponential_sigmas: false,
        use_beta_sigmas: false,
        rescale_betas_zero_snr: false,
        shift_terminal: null,
        sigma_min: null,
        sigma_max: null,
      },
    },
    {
      name: 'FlowUniPCMultistepScheduler',
      fields: { flowShift: { key: 'shift' }, predictionType: { absent: 'flow_prediction' }, sigmaSchedule: { default: 'wan' } },
      fixed: UNSUPPORTED,
    },
  ],
  dialectOf: (c) => (c.sigmaSchedule === 'wan' ? 'FlowUniPCMultistepScheduler' : 'UniPCMultistepScheduler'),
  check: (c, name) =>
    c.sigmaSchedule === 'wan' && c.finalSigmasType !== 'zero'
      ? `${name('finalSigmasType')} "${c.finalSigmasType}" is not available with the 'wan' sigma schedule (only "zero")`
      : undefined,
});

/** The published Wan2.1 / Wan2.2-A14B Diffusers scheduler config (TI2V-5B uses flowShift 5). */
export const defaultFlowUniPCConfig: FlowUniPCConfig = {
  numTrainTimesteps: 1000,
  solverOrder: 2,
  predictionType: 'flow_prediction',
  solverType: 'bh2',
  lowerOrderFinal: true,
  disableCorrector: [],
  flowShift: 3.0,
  finalSigmasType: 'zero',
  sigmaSchedule: 'diffusers',
};

/**
 * Diffusers `UniPCMultistepScheduler` (use_flow_sigmas, flow_prediction, predict_x0) and, with
 * `sigmaSchedule: 'wan'`, the Wan repo's `FlowUniPCMultistepScheduler`: a UniP predictor of order p and a UniC
 * corrector applied to the sample the previous predictor produced, using the new model output.
 */
export class FlowUniPCMultistepScheduler extends FlowSchedulerBase {
  /** UniPCMultistepScheduler, or FlowUniPCMultistepScheduler with the 'wan' schedule. */
  readonly className: string;
  readonly config: FlowUniPCConfig;
  /** The sample the last predictor started from (corrected), for the next corrector. */
  private lastSample: tf.Tensor | undefined;
  /** The predictor order of the last step; the next corrector uses it. */
  private thisOrder = 0;

  /** `config` over the published Wan settings (defaultFlowUniPCConfig). */
  constructor(config: Partial<FlowUniPCConfig> = {}) {
    super();
    this.config = FlowUniPCConfig.resolve(config, defaultFlowUniPCConfig);
    this.className = this.config.sigmaSchedule === 'wan' ? 'FlowUniPCMultistepScheduler' : 'UniPCMultistepScheduler';
  }

  /**
   * From a scheduler_config.json; absent keys take the reference class's defaults. `_class_name`
   * FlowUniPCMultistepScheduler (the Wan repo's) selects the 'wan' schedule and reads `shift`.
   */
  static fromJSON(json: ConfigJson): FlowUniPCMultistepScheduler {
    return new FlowUniPCMultistepScheduler(FlowUniPCConfig.fromJSON(json));
  }

  protected get configShift(): number {
    return this.config.flowShift;
  }

  protected computeSchedule(n: number, shift: number): Schedule {
    const T = this.config.numTrainTimesteps;
    let sig: number[];
    if (this.config.sigmaSchedule === 'wan') {
      const sigmaMax = f32(1 - 1 / T);
      sig = linspace(sigmaMax, 0, n + 1).slice(0, n).map((s) => shiftSigma(shift, s));
    } else {
      sig = linspace(1, 1 / T, n + 1).slice(0, n).map((s) => shiftSigma(shift, s));
      const eps = 1e-6;
      if (Math.abs(sig[0] - 1) < eps) sig[0] -= eps;
    }
    const last = this.config.finalSigmasType === 'zero' ? 0 : sig[n - 1];
    return { timesteps: sig.map((s) => Math.trunc(s * T)), sigmas: [...sig, last].map(f32) };
  }

  // modelOutput, sample: [B, ...] — x₀ = x − σ·v; corrector on `sample`, then the predictor
  protected stepAt(modelOutput: tf.Tensor, sample: tf.Tensor, i: number): tf.Tensor {
    const c = this.config;
    const lowerOrder = c.lowerOrderFinal ? Math.min(c.solverOrder, this._timesteps.length - i) : c.solverOrder;
    const order = Math.min(lowerOrder, this.lowerOrderNums + 1);
    const lastSample = this.lastSample;
    const correctFrom = i > 0 && !c.disableCorrector.includes(i - 1) ? lastSample : undefined;
    const { m, corrected, prev } = tf.tidy(() => {
      const m = tf.sub(sample, tf.mul(modelOutput, this._sigmas[i]));
      const corrected = correctFrom ? this.correct(m, correctFrom, i, this.thisOrder) : tf.clone(sample);
      const prev = this.predict([...this.outputs, m], corrected, i, order);
      return { m, corrected, prev };
    });
    this.pushOutput(m, c.solverOrder);
    lastSample?.dispose();
    this.lastSample = corrected;
    this.thisOrder = order;
    this.lowerOrderNums = Math.min(this.lowerOrderNums + 1, c.solverOrder);
    return prev;
  }

  /**
   * B(h) coefficients: hh = −h, hφ₁ = expm1(hh), B = hh (bh1) or expm1(hh) (bh2),
   * b_k = k!·φ_k(hh)/B with φ₁ = hφ₁/hh − 1, φ_{k+1} = φ_k/hh − 1/(k+1)!; all float32.
   */
  private coefficients(h: number, order: number): { hh: number; hPhi1: number; bh: number; b: number[] } {
    const hh = f32(-h);
    const hPhi1 = f32(Math.expm1(hh));
    const bh = this.config.solverType === 'bh1' ? hh : f32(Math.expm1(hh));
    let hPhiK = f32(f32(hPhi1 / hh) - 1);
    let factorial = 1;
    const b: number[] = [];
    for (let k = 1; k <= order; k++) {
      b.push(f32(f32(hPhiK * factorial) / bh));
      factorial *= k + 1;
      hPhiK = f32(f32(hPhiK / hh) - f32(1 / factorial));
    }
    return { hh, hPhi1, bh, b };
  }

  /** R[k][j] = r_j^k for k < rows. */
  private static vandermonde(rks: number[], rows: number): number[][] {
    return Array.from({ length: rows }, (_, k) => rks.map((r) => f32(r ** k)));
  }

  // history: converted outputs oldest first, the current one last; x: [B, ...] the (corrected) sample at σ_i
  // x_t = (σ_t/σ_s)·x − α_t·hφ₁·m₀ − α_t·B·Σ_k ρ_k·D_k,  D_k = (m_{−k} − m₀)/r_k,  r_k = (λ_{s−k} − λ_s)/h
  private predict(history: tf.Tensor[], x: tf.Tensor, i: number, order: number): tf.Tensor {
    const S = this._sigmas;
    const sigmaT = S[i + 1];
    const sigmaS0 = S[i];
    const alphaT = f32(1 - sigmaT);
    const lambdaS0 = lambdaF32(sigmaS0);
    const h = f32(lambdaF32(sigmaT) - lambdaS0);
    const m0 = history[history.length - 1];
    const rks: number[] = [];
    const d1s: tf.Tensor[] = [];
    for (let k = 1; k < order; k++) {
      const rk = f32(f32(lambdaF32(S[i - k]) - lambdaS0) / h);
      rks.push(rk);
      d1s.push(tf.div(tf.sub(history[history.length - 1 - k], m0), rk));
    }
    rks.push(1);
    const { hPhi1, bh, b } = this.coefficients(h, order);
    const xt = tf.sub(tf.mul(x, f32(sigmaT / sigmaS0)), tf.mul(m0, f32(alphaT * hPhi1)));
    if (d1s.length === 0) return xt;
    const rhos =
      order === 2
        ? [0.5]
        : solveLinear(FlowUniPCMultistepScheduler.vandermonde(rks, order - 1).map((row) => row.slice(0, order - 1)), b.slice(0, order - 1)).map(f32);
    return tf.sub(xt, tf.mul(FlowUniPCMultistepScheduler.weighted(rhos, d1s), f32(alphaT * bh)));
  }

  // m: [B, ...] the new converted output; last: the sample the previous predictor started from
  // x_c = (σ_i/σ_{i−1})·last − α_i·hφ₁·m_prev − α_i·B·(Σ_k ρ_k·D_k + ρ_p·(m − m_prev)),  ρ from R·ρ = b
  private correct(m: tf.Tensor, last: tf.Tensor, i: number, order: number): tf.Tensor {
    const S = this._sigmas;
    const hist = this.outputs;
    const sigmaT = S[i];
    const sigmaS0 = S[i - 1];
    const alphaT = f32(1 - sigmaT);
    const lambdaS0 = lambdaF32(sigmaS0);
    const h = f32(lambdaF32(sigmaT) - lambdaS0);
    const m0 = hist[hist.length - 1];
    const rks: number[] = [];
    const d1s: tf.Tensor[] = [];
    for (let k = 1; k < order; k++) {
      const rk = f32(f32(lambdaF32(S[i - (k + 1)]) - lambdaS0) / h);
      rks.push(rk);
      d1s.push(tf.div(tf.sub(hist[hist.length - 1 - k], m0), rk));
    }
    rks.push(1);
    const { hPhi1, bh, b } = this.coefficients(h, order);
    const rhos = order === 1 ? [0.5] : solveLinear(FlowUniPCMultistepScheduler.vandermonde(rks, order), b).map(f32);
    const xt = tf.sub(tf.mul(last, f32(sigmaT / sigmaS0)), tf.mul(m0, f32(alphaT * hPhi1)));
    const d1t = tf.mul(tf.sub(m, m0), rhos[rhos.length - 1]);
    const res = d1s.length === 0 ? d1t : tf.add(FlowUniPCMultistepScheduler.weighted(rhos, d1s), d1t);
    return tf.sub(xt, tf.mul(res, f32(alphaT * bh)));
  }

  /** Σ_k ρ_k·D_k. */
  private static weighted(rhos: number[], ds: tf.Tensor[]): tf.Tensor {
    return ds.map((d, k) => tf.mul(d, rhos[k])).reduce((a, t) => tf.add(a, t));
  }

  protected override clearHistory(): void {
    super.clearHistory();
    this.lastSample?.dispose();
    this.lastSample = undefined;
    this.thisOrder = 0;
  }
}
