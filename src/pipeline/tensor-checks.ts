import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, NonFiniteError } from '../errors.js';

/** Refuses a tensor that is not float32 (int32 or bool latents, embeddings or images). */
export function checkFloat32(name: string, t: tf.Tensor, expected = 'float32'): void {
  if (t.dtype !== 'float32') throw new ConfigError(`${name}: got ${/^[aeiou]/.test(t.dtype) ? 'an' : 'a'} ${t.dtype} tensor, expected ${expected}`);
}

/** Whether every value is finite: Σ 0·x is 0 then, and NaN as soon as one value is NaN or ±∞ (one reduction, one read). */
export async function allFinite(t: tf.Tensor): Promise<boolean> {
  const sum = tf.tidy(() => tf.sum(tf.mul(t, 0)));
  try {
    return (await sum.data())[0] === 0;
  } finally {
    sum.dispose();
  }
}

/** Refuses an input holding NaN or ±∞. */
export async function checkFiniteInput(name: string, t: tf.Tensor): Promise<void> {
  if (!(await allFinite(t))) throw new NonFiniteError(name, 'holds NaN or infinite values');
}

/** [min, max] of a tensor, read back. */
export async function valueRange(t: tf.Tensor): Promise<[number, number]> {
  const [lo, hi] = tf.tidy(() => [tf.min(t), tf.max(t)]);
  try {
    return [(await lo.data())[0], (await hi.data())[0]];
  } finally {
    tf.dispose([lo, hi]);
  }
}
