import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  FlowDPMSolverMultistepScheduler,
  FlowMatchEulerDiscreteScheduler,
  type FlowScheduler,
  FlowUniPCMultistepScheduler,
} from '../schedulers/index.js';
import { shiftSigma } from '../schedulers/scheduler.js';

const MAKERS: Array<[string, () => FlowScheduler]> = [
  ['UniPC (diffusers schedule)', () => new FlowUniPCMultistepScheduler()],
  ['UniPC (wan schedule)', () => new FlowUniPCMultistepScheduler({ sigmaSchedule: 'wan' })],
  ['Euler', () => new FlowMatchEulerDiscreteScheduler()],
  ['DPM++', () => new FlowDPMSolverMultistepScheduler()],
];

/**
 * Euler takes σ_max from its float32 training table, shift(1) = f32(s)/f32(1 + f32(s − 1)), which for a shift that
 * float32 cannot hold exactly lands one ulp either side of 1, as in the reference (and a shift below 1 doubles that
 * once the inference sigmas are shifted again); the other schedules are exact there.
 */
function ulpSlack(s: FlowScheduler): number {
  return s instanceof FlowMatchEulerDiscreteScheduler ? 2 ** -21 : 0;
}

const steps = fc.integer({ min: 1, max: 100 });
const shifts = fc.double({ min: 0.5, max: 20, noNaN: true });

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe.each(MAKERS)('%s schedule', (_name, make) => {
  it('sigmas: n + 1 finite float32 values, strictly decreasing from ≤ 1 to a final 0', () => {
    fc.assert(
      fc.property(steps, shifts, (n, shift) => {
        const s = make();
        s.setTimesteps(n, { shift });
        expect(s.sigmas.length).toBe(n + 1);
        expect(s.timesteps.length).toBe(n);
        expect(s.sigmas[0]).toBeLessThanOrEqual(1 + ulpSlack(s));
        expect(s.sigmas[n]).toBe(0);
        for (let i = 0; i <= n; i++) {
          expect(Number.isFinite(s.sigmas[i])).toBe(true);
          expect(Math.fround(s.sigmas[i])).toBe(s.sigmas[i]);
          if (i > 0) expect(s.sigmas[i]).toBeLessThan(s.sigmas[i - 1]);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('timesteps = 1000·σ: float32 products for Euler; for UniPC / DPM++ integers truncated from the float64 sigma', () => {
    fc.assert(
      fc.property(steps, shifts, (n, shift) => {
        const s = make();
        s.setTimesteps(n, { shift });
        s.timesteps.forEach((t, i) => {
          expect(Number.isFinite(t)).toBe(true);
          if (i > 0) expect(t).toBeLessThanOrEqual(s.timesteps[i - 1]);
          const exact = 1000 * s.sigmas[i];
          if (s instanceof FlowMatchEulerDiscreteScheduler) {
            expect(t).toBe(Math.fround(exact));
          } else {
            // Truncation toward zero of σ·1000 in float64; σ here is its float32 rounding (relative error ≤ 2⁻²⁴).
            expect(Number.isInteger(t)).toBe(true);
            expect(exact - t).toBeGreaterThan(-1e-3);
            expect(exact - t).toBeLessThan(1 + 1e-3);
          }
        });
      }),
      { numRuns: 60 },
    );
  });

  it('a larger shift never lowers a sigma (Euler: up to its float32 table rounding)', () => {
    fc.assert(
      fc.property(steps, shifts, shifts, (n, a, b) => {
        const lo = make();
        const hi = make();
        lo.setTimesteps(n, { shift: Math.min(a, b) });
        hi.setTimesteps(n, { shift: Math.max(a, b) });
        lo.sigmas.forEach((v, i) => expect(hi.sigmas[i]).toBeGreaterThanOrEqual(v - ulpSlack(lo)));
      }),
      { numRuns: 40 },
    );
  });

  it('a full trajectory stays finite, and leaves no tensor behind', () => {
    fc.assert(
      fc.property(steps, shifts, fc.integer({ min: 0, max: 1000 }), (n, shift, seed) => {
        const s = make();
        s.setTimesteps(n, { shift });
        // A repeated first timestep makes the reference start at index 1 (index_for_timestep); start at 0 explicitly.
        s.setBeginIndex(0);
        const before = tf.memory().numTensors;
        let x = tf.randomNormal([1, 2, 3], 0, 1, 'float32', seed);
        for (const t of s.timesteps) {
          const v = tf.tidy(() => tf.add(tf.mul(tf.tanh(x), -0.7), 0.1));
          const next = s.step(v, t, x);
          tf.dispose([v, x]);
          x = next;
        }
        expect(Array.from(x.dataSync()).every(Number.isFinite)).toBe(true);
        x.dispose();
        s.dispose();
        expect(tf.memory().numTensors).toBe(before);
      }),
      { numRuns: 25 },
    );
  });
});

describe('shift map and step rules', () => {
  it("σ' = sσ/(1+(s−1)σ) is increasing in σ and in s (up to float64 rounding), and fixes 0 and 1", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        shifts,
        shifts,
        (x, y, s, r) => {
          const [a, b] = x < y ? [x, y] : [y, x];
          expect(shiftSigma(s, a)).toBeLessThanOrEqual(shiftSigma(s, b) + 1e-12);
          if (b - a > 1e-6) expect(shiftSigma(s, a)).toBeLessThan(shiftSigma(s, b));
          if (s < r) expect(shiftSigma(s, a)).toBeLessThanOrEqual(shiftSigma(r, a) + 1e-12);
          expect(shiftSigma(s, 0)).toBe(0);
          expect(shiftSigma(s, 1)).toBeCloseTo(1, 12);
        },
      ),
    );
  });

  it('Euler with a zero model output leaves the sample unchanged at every step', () => {
    fc.assert(
      fc.property(steps, shifts, fc.integer({ min: 0, max: 1000 }), (n, shift, seed) => {
        const s = new FlowMatchEulerDiscreteScheduler();
        s.setTimesteps(n, { shift });
        const before = tf.memory().numTensors;
        const x = tf.randomNormal([2, 3], 0, 1, 'float32', seed);
        const zero = tf.zerosLike(x);
        for (const t of s.timesteps) {
          const next = s.step(zero, t, x);
          expect(Array.from(next.dataSync())).toEqual(Array.from(x.dataSync()));
          next.dispose();
        }
        tf.dispose([x, zero]);
        expect(tf.memory().numTensors).toBe(before);
      }),
      { numRuns: 30 },
    );
  });

  it('the first step takes index 1 when the first timestep repeats (Diffusers index_for_timestep), else index 0', () => {
    fc.assert(
      fc.property(steps, shifts, (n, shift) => {
        const s = new FlowUniPCMultistepScheduler();
        s.setTimesteps(n, { shift });
        const x = tf.zeros([1]);
        const next = s.step(x, s.timesteps[0], x);
        expect(s.stepIndex).toBe(n > 1 && s.timesteps[1] === s.timesteps[0] ? 2 : 1);
        tf.dispose([x, next]);
        s.dispose();
      }),
      { numRuns: 60 },
    );
  });
});
