import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import { maxAbsDiff, maxAbsDiffArrays } from './helpers/compare.js';

describe('test/helpers/compare', () => {
  it('maxAbsDiff gives max |a − b| over tensors of one shape', () => {
    const d = tf.tidy(() => maxAbsDiff(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[1, 2.5], [3, 3]])));
    expect(d).toBe(1);
  });

  it('maxAbsDiff refuses tensors of different shapes instead of broadcasting', () => {
    tf.tidy(() => {
      // [2, 2] − [1, 2] would broadcast; [4] − [2, 2] has the same size in another shape
      expect(() => maxAbsDiff(tf.tensor2d([[1, 2], [1, 2]]), tf.tensor2d([[1, 2]]))).toThrow(/shape \[2,2\] vs \[1,2\]/);
      expect(() => maxAbsDiff(tf.tensor1d([1, 2, 1, 2]), tf.tensor2d([[1, 2], [1, 2]]))).toThrow(/shape \[4\] vs \[2,2\]/);
    });
  });

  it('maxAbsDiffArrays refuses arrays of different lengths (truncated or over-long results)', () => {
    expect(maxAbsDiffArrays([1, 2, 3], new Float32Array([1, 2, 4]))).toBe(1);
    expect(() => maxAbsDiffArrays([1, 2], [1, 2, 3])).toThrow(/length 2 vs 3/);
    expect(() => maxAbsDiffArrays([1, 2, 3], [1, 2])).toThrow(/length 3 vs 2/);
  });
});
