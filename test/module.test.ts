import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import { Linear } from '../layers/linear.js';
import { RMSNorm } from '../layers/rms-norm.js';
import { WanModule } from '../layers/module.js';

class Pair extends WanModule {
  readonly a = this.addModule('a', new Linear({ inFeatures: 3, outFeatures: 2 }));
  readonly norm = this.addModule('norm', new RMSNorm({ dim: 2 }));
}

describe('WanModule', () => {
  it('lists weights under dotted checkpoint names with PyTorch shapes', () => {
    const m = new Pair();
    const names = [...m.namedWeights()].map(([k, s]) => `${k}:${s.shape.join('x')}`);
    expect(names).toEqual(['a.weight:2x3', 'a.bias:2', 'norm.weight:2']);
  });

  it('exposes trainable variables to optimizers and frees them on dispose', () => {
    const before = tf.memory().numTensors;
    const m = new Pair().initialize(1);
    expect(m.trainableWeights.length).toBe(3);
    expect(m.countParams()).toBe(10);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('Linear matches x·Wᵀ + b', () => {
    const l = new Linear({ inFeatures: 2, outFeatures: 2 });
    l.weight.assign(tf.tensor2d([[1, 2], [3, 4]]));
    l.bias!.assign(tf.tensor1d([10, 20]));
    const y = l.forward(tf.tensor2d([[1, 1]]));
    expect(Array.from(y.dataSync())).toEqual([13, 27]);
    l.dispose();
  });
});
