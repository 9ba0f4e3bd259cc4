// Issue 18 item 10: a shape error from WanAttention names the argument the caller passed —
// a self-attention call with the wrong width must not blame encoderHiddenStates.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import { WanAttention } from '../layers/wan-attention.js';
import { ShapeError } from '../src/errors.js';

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('WanAttention shape errors', () => {
  const attn = new WanAttention({ dim: 8, heads: 2, dimHead: 4 }).initialize(0);

  it('self-attention with the wrong width blames hiddenStates', () => {
    const x = tf.zeros([1, 3, 6]);
    const err = catchError(() => attn.forward(x));
    x.dispose();
    expect(err).toBeInstanceOf(ShapeError);
    expect((err as ShapeError).argument).toBe('hiddenStates');
    expect((err as ShapeError).message).toBe('hiddenStates: got [1,3,6], expected [B, L, 8]');
    expect((err as ShapeError).message).not.toContain('encoderHiddenStates');
  });

  it('self-attention with the wrong rank blames hiddenStates', () => {
    const x = tf.zeros([3, 8]);
    const err = catchError(() => attn.forward(x));
    x.dispose();
    expect((err as ShapeError).argument).toBe('hiddenStates');
  });

  it('cross-attention with the wrong context width still blames encoderHiddenStates', () => {
    const x = tf.zeros([1, 3, 8]);
    const ctx = tf.zeros([1, 5, 6]);
    const err = catchError(() => attn.forward(x, ctx));
    tf.dispose([x, ctx]);
    expect(err).toBeInstanceOf(ShapeError);
    expect((err as ShapeError).argument).toBe('encoderHiddenStates');
    expect((err as ShapeError).message).toBe('encoderHiddenStates: got [1,5,6], expected [1, Lk, 8]');
  });

  it('a valid self-attention call still runs', () => {
    const x = tf.zeros([1, 3, 8]);
    const y = attn.forward(x);
    expect(y.shape).toEqual([1, 3, 8]);
    tf.dispose([x, y]);
  });
});
