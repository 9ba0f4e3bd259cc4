import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../src/errors.js';
import {
  ConfigReader,
  f32,
  FlowSchedulerBase,
  lambdaF32,
  linspace,
  type Schedule,
  type SchedulerJson,
  type SigmaSchedule,
  shiftSigma,
  solveLinear,
} from './scheduler.js';

/** UniPC multistep for flow matching (`scheduler/scheduler_config.json` of the Wan Diffusers checkpoints). */
export interface FlowUniPCConfig {
  numTrainTimesteps: number;
  /** Order p of the predictor (the corrector adds one). */
  solverOrder: number;
  /** Only `flow_prediction` (v = ε − x₀) is supported. */
  predictionType: 'flow_prediction';
  solverType: 'bh1' | 'bh2';
  /** Order 1 on the last steps (min(solverOrder, steps left)). */
  lowerOrderFinal: boolean;
  /** Step indices after which the corrector is skipped. */
  disableCorrector: number[];
  /** The shift s of the sigma schedule. */
  flowShift: number;
  finalSigmasType: 'zero' | 'sigma_min';
  sigmaSchedule: SigmaSchedule;
}

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

  constructor(config: Partial<FlowUniPCConfig> = {}) {
    super();
    this.config = { ...defaultFlowUniPCConfig, ...config };
    const c = this.config;
    this.className = c.sigmaSchedule === 'wan' ? 'FlowUniPCMultistepScheduler' : 'UniPCMultistepScheduler';
    if (!Number.isInteger(c.solverOrder) || c.solverOrder < 1) {
      throw new ConfigError(`UniPCMultistepScheduler: solverOrder must be an integer ≥ 1, got ${c.solverOrder}`);
    }
    if (!Number.isInteger(c.numTrainTimesteps) || c.numTrainTimesteps < 2) {
      throw new ConfigError(`UniPCMultistepScheduler: numTrainTimesteps must be an integer ≥ 2, got ${c.numTrainTimesteps}`);
    }
    if (c.sigmaSchedule === 'wan' && c.finalSigmasType !== 'zero') {
      throw new ConfigError(`UniPCMultistepScheduler: finalSigmasType '${c.finalSigmasType}' is not available with sigmaSchedule 'wan' (only 'zero')`);
    }
  }

  /**
   * From a scheduler_config.json; absent keys take the reference class's defaults. `_class_name`
   * FlowUniPCMultistepScheduler (the Wan repo's) selects the 'wan' schedule and reads `shift`.
   */
  static fromJSON(json: SchedulerJson): FlowUniPCMultistepScheduler {
    const wan = json._class_name === 'FlowUniPCMultistepScheduler';
    const r = new ConfigReader(json, wan ? 'FlowUniPCMultistepScheduler' : 'UniPCMultistepScheduler');
    if (!wan) {
      r.requireDefault('use_flow_sigmas', true);
      if (json.use_flow_sigmas !== true) {
        throw new ConfigError('UniPCMultistepScheduler config: use_flow_sigmas must be true (flow-matching schedule); the VP-diffusion schedule is not supported');
      }
      for (const k of ['use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas', 'rescale_betas_zero_snr']) r.requireDefault(k, false);
      for (const k of ['shift_terminal', 'sigma_min', 'sigma_max']) r.requireDefault(k, null);
    }
    r.requireDefault('thresholding', false);
    r.requireDefault('use_dynamic_shifting', false);
    r.requireDefault('predict_x0', true);
    r.requireDefault('solver_p', null);
    return new FlowUniPCMultistepScheduler({
      numTrainTimesteps: r.number('num_train_timesteps', 1000),
      solverOrder: r.number('solver_order', 2),
      predictionType: r.choice('prediction_type', wan ? 'flow_prediction' : 'epsilon', ['flow_prediction'] as const),
      // Diffusers maps the DPM-Solver names onto bh2.
      solverType: r.choice('solver_type', 'bh2', ['bh1', 'bh2', 'midpoint', 'heun', 'logrho'] as const) === 'bh1' ? 'bh1' : 'bh2',
      lowerOrderFinal: r.boolean('lower_order_final', true),
      disableCorrector: r.numbers('disable_corrector', []),
      flowShift: wan ? r.number('shift', 1.0) : r.number('flow_shift', 1.0),
      finalSigmasType: r.choice('final_sigmas_type', 'zero', ['zero', 'sigma_min'] as const),
      sigmaSchedule: wan ? 'wan' : 'diffusers',
    });
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
