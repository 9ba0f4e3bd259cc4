import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FlowDPMSolverMultistepScheduler,
  FlowMatchEulerDiscreteScheduler,
  type FlowScheduler,
  FlowUniPCMultistepScheduler,
  loadScheduler,
} from '../schedulers/index.js';
import { ConfigError, ShapeError, WanError } from '../src/errors.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { fixtureDir, parityCase } from './helpers/fixtures.js';
import { maxAbsDiffArrays } from './helpers/compare.js';

const CASES = ['scheduler-unipc', 'scheduler-euler', 'scheduler-dpmpp'] as const;

function fixture(name: string): SafetensorsFile {
  return SafetensorsFile.open(path.join(fixtureDir(name), 'io.safetensors'));
}

/** The fixtures' synthetic trajectory: v = 0.5·tanh(x) + 0.001·t; returns the samples after each step (data only). */
function trajectory(s: FlowScheduler, start: tf.Tensor): Float32Array[] {
  const out: Float32Array[] = [];
  let x = tf.clone(start);
  for (const t of s.timesteps) {
    const v = tf.tidy(() => tf.add(tf.mul(tf.tanh(x), 0.5), Math.fround(Math.fround(0.001) * t)));
    const next = s.step(v, t, x);
    v.dispose();
    x.dispose();
    x = next;
    out.push(x.dataSync() as Float32Array);
  }
  x.dispose();
  return out;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('scheduler parity', () => {
  for (const name of CASES) {
    it(`${name}: timesteps, sigmas and the trajectory equal the reference`, async () => {
      const r = await parityCase(name);
      expect(r.line).toMatch(/^PASS/);
    });
  }
});

describe('scheduler state', () => {
  const opened: SafetensorsFile[] = [];
  afterAll(() => opened.forEach((f) => f.close()));

  for (const name of CASES) {
    it(`${name}: reset() and setTimesteps() give the reference trajectory again, and no tensor leaks`, async () => {
      const io = fixture(name);
      opened.push(io);
      const s = await loadScheduler(fixtureDir(name));
      const start = tf.tensor(io.read('input.sample').data, io.read('input.sample').shape);
      const expected = io.read('output.trajectory.9').data;
      const before = tf.memory().numTensors;

      s.setTimesteps(10, { shift: 5 });
      const first = trajectory(s, start);
      expect(maxAbsDiffArrays(first[9], expected)).toBeLessThan(1e-5);
      // A finished schedule refuses another step until it is reset.
      expect(() => s.step(start, s.timesteps[0], start)).toThrow(WanError);

      s.reset();
      const again = trajectory(s, start);
      expect(maxAbsDiffArrays(again[9], expected)).toBeLessThan(1e-5);

      s.setTimesteps(4, { shift: 1 });
      trajectory(s, start);
      s.setTimesteps(10, { shift: 5 });
      const third = trajectory(s, start);
      expect(maxAbsDiffArrays(third[9], expected)).toBeLessThan(1e-5);

      s.dispose();
      expect(tf.memory().numTensors).toBe(before);
      start.dispose();
    });
  }

  it('holds at most solverOrder outputs and one sample between steps', async () => {
    const s = await loadScheduler(fixtureDir('scheduler-unipc'));
    s.setTimesteps(6);
    const x = tf.ones([1, 2, 3]);
    const before = tf.memory().numTensors;
    let cur = tf.clone(x);
    for (const t of s.timesteps) {
      const next = s.step(cur, t, cur);
      cur.dispose();
      cur = next;
      // history (2 outputs + the last sample) plus the caller's sample, never more
      expect(tf.memory().numTensors - before).toBeLessThanOrEqual(4);
    }
    cur.dispose();
    s.dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});

describe('schedules', () => {
  it("the 'wan' UniPC schedule is the Wan repo's: A14B at 40 steps, shift 12", () => {
    const s = new FlowUniPCMultistepScheduler({ sigmaSchedule: 'wan', flowShift: 12 });
    s.setTimesteps(40);
    expect(s.className).toBe('FlowUniPCMultistepScheduler');
    expect(s.timesteps.slice(0, 6)).toEqual([999, 997, 995, 993, 990, 988]);
    expect(s.timesteps.slice(-4)).toEqual([571, 492, 386, 235]);
  });

  it("the 'wan' schedule lies on the same grid as the Diffusers DPM++ flow sigmas (linspace from 0.999)", () => {
    const io = fixture('scheduler-dpmpp');
    try {
      for (const [n, shift] of [[4, 12], [10, 5], [40, 1]]) {
        const s = new FlowUniPCMultistepScheduler({ sigmaSchedule: 'wan' });
        s.setTimesteps(n, { shift });
        expect(maxAbsDiffArrays(s.sigmas, io.read(`output.sigmas.n${n}.shift${shift}`).data)).toBeLessThan(1e-6);
      }
    } finally {
      io.close();
    }
  });

  it('a shift option equals a config built with that shift', () => {
    const a = new FlowMatchEulerDiscreteScheduler({ shift: 7 });
    a.setTimesteps(12);
    const b = new FlowMatchEulerDiscreteScheduler({ shift: 2 });
    b.setTimesteps(12, { shift: 7 });
    expect(b.sigmas).toEqual(a.sigmas);
    expect(b.timesteps).toEqual(a.timesteps);
  });

  it('addNoise gives (1 − σ)·x₀ + σ·ε at the schedule sigma of a timestep, or at a given sigma per item', async () => {
    const io = fixture('scheduler-unipc');
    const sigmas = io.read('output.sigmas.n10.shift5').data;
    io.close();
    const s = await loadScheduler(fixtureDir('scheduler-unipc'));
    s.setTimesteps(10, { shift: 5 });
    const before = tf.memory().numTensors;
    const x0 = tf.tensor([1, 2, 3, 4], [2, 2]);
    const eps = tf.tensor([-1, 0.5, 2, 0], [2, 2]);
    const atT = s.addNoise(x0, eps, { timestep: s.timesteps[3] });
    const sg = sigmas[3];
    expect(maxAbsDiffArrays(atT.dataSync(), [1, 2, 3, 4].map((v, i) => (1 - sg) * v + sg * [-1, 0.5, 2, 0][i]))).toBeLessThan(1e-6);
    const perItem = s.scaleNoise(x0, { sigma: [0, 1] }, eps);
    expect(Array.from(perItem.dataSync())).toEqual([1, 2, 2, 0]);
    expect(() => s.addNoise(x0, eps, { sigma: [0.1, 0.2, 0.3] })).toThrow(ShapeError);
    expect(() => s.addNoise(x0, eps, { sigma: 1.5 })).toThrow(ConfigError);
    tf.dispose([x0, eps, atT, perItem]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('errors', () => {
  it('step before setTimesteps, and mismatched shapes, are refused with typed errors', () => {
    const s = new FlowDPMSolverMultistepScheduler();
    const a = tf.zeros([1, 4]);
    const b = tf.zeros([1, 5]);
    expect(() => s.step(a, 999, a)).toThrow(ConfigError);
    s.setTimesteps(5);
    expect(() => s.step(a, s.timesteps[0], b)).toThrow(ShapeError);
    expect(() => s.setTimesteps(0)).toThrow(ConfigError);
    expect(() => s.setTimesteps(5, { shift: -1 })).toThrow(ConfigError);
    tf.dispose([a, b]);
  });

  it('Euler refuses a timestep that is not on its schedule', () => {
    const s = new FlowMatchEulerDiscreteScheduler({ shift: 5 });
    s.setTimesteps(4);
    const a = tf.zeros([2]);
    expect(() => s.step(a, 123.5, a)).toThrow(/not on the schedule/);
    a.dispose();
  });

  it('loadScheduler picks the class from _class_name, reads model folders, and rejects what it cannot run', async () => {
    const unipc = await loadScheduler(fixtureDir('pipeline-a14b'));
    expect(unipc).toBeInstanceOf(FlowUniPCMultistepScheduler);
    expect((unipc as FlowUniPCMultistepScheduler).config.flowShift).toBe(3);
    const euler = await loadScheduler(path.join(fixtureDir('scheduler-euler'), 'scheduler', 'scheduler_config.json'));
    expect(euler).toBeInstanceOf(FlowMatchEulerDiscreteScheduler);
    const dpm = await loadScheduler(path.join(fixtureDir('scheduler-dpmpp'), 'scheduler'));
    expect(dpm).toBeInstanceOf(FlowDPMSolverMultistepScheduler);

    await expect(loadScheduler({ _class_name: 'DDIMScheduler' })).rejects.toThrow(/"DDIMScheduler" is not supported/);
    await expect(loadScheduler({ _class_name: 'UniPCMultistepScheduler', use_flow_sigmas: true })).rejects.toThrow(/prediction_type/);
    await expect(
      loadScheduler({ _class_name: 'UniPCMultistepScheduler', use_flow_sigmas: true, prediction_type: 'flow_prediction', use_karras_sigmas: true }),
    ).rejects.toThrow(/use_karras_sigmas/);
    await expect(loadScheduler({ _class_name: 'FlowMatchEulerDiscreteScheduler', stochastic_sampling: true })).rejects.toThrow(ConfigError);
    await expect(loadScheduler(path.join(fixtureDir('scheduler-euler'), 'nowhere'))).rejects.toThrow(/no scheduler_config\.json found/);
  });
});
