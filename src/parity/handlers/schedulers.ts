import * as tf from '@tensorflow/tfjs-core';
import { loadScheduler } from '../../../schedulers/load-scheduler.js';
import type { ParityCase, ParityHandler, ParityVariant } from '../types.js';

type Plain = { shape: number[]; data: Float32Array };

/** A tensor's values as a plain array (the tensor is disposed). */
function plain(t: tf.Tensor): Plain {
  const out = { shape: t.shape, data: t.dataSync() as Float32Array };
  t.dispose();
  return out;
}

/**
 * Scheduler cases: for each (n, shift) of `grid` the timesteps and sigmas; then `trajectory.steps` steps at
 * `trajectory.shift` from input.sample with the synthetic model output v = 0.5·tanh(x) + 0.001·t.
 */
const handler: ParityHandler = {
  components: ['scheduler-unipc', 'scheduler-euler', 'scheduler-dpmpp'],
  async run(c: ParityCase): Promise<ParityVariant[]> {
    const scheduler = await loadScheduler(c.dir);
    const tensors: ParityVariant['tensors'] = [];
    for (const [n, shift] of c.spec.grid ?? []) {
      scheduler.setTimesteps(n, { shift });
      const name = `n${n}.shift${String(shift)}`;
      tensors.push([`output.timesteps.${name}`, { shape: [n], data: Float32Array.from(scheduler.timesteps) }]);
      tensors.push([`output.sigmas.${name}`, { shape: [n + 1], data: Float32Array.from(scheduler.sigmas) }]);
    }
    const traj = c.spec.trajectory;
    if (traj) {
      scheduler.setTimesteps(traj.steps, { shift: traj.shift });
      let sample = c.tensor('input.sample');
      scheduler.timesteps.forEach((t, i) => {
        // The reference computes 0.001·t in float32.
        const v = tf.tidy(() => tf.add(tf.mul(tf.tanh(sample), 0.5), Math.fround(Math.fround(0.001) * t)));
        const next = scheduler.step(v, t, sample);
        tensors.push([`debug.model_output.${i}`, plain(v)]);
        sample.dispose();
        sample = next;
        tensors.push([`output.trajectory.${i}`, { shape: next.shape, data: next.dataSync() as Float32Array }]);
      });
      sample.dispose();
    }
    scheduler.dispose();
    return [{ tensors }];
  },
};

export default handler;
