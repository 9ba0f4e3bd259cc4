import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Linear } from '../layers/linear.js';
import { RMSNorm } from '../layers/rms-norm.js';
import { WanModule } from '../layers/module.js';
import { attention, geluTanh } from '../src/backend/ops.js';
import { checkpoint, enableGradientCheckpointing, trainableVariables } from '../src/train/checkpointing.js';

/** A transformer-shaped block: attention with q/k norm, a gated residual, a GELU FFN. */
class MiniBlock extends WanModule {
  readonly toQ = this.addModule('to_q', new Linear({ inFeatures: 8, outFeatures: 8 }));
  readonly toK = this.addModule('to_k', new Linear({ inFeatures: 8, outFeatures: 8 }));
  readonly toV = this.addModule('to_v', new Linear({ inFeatures: 8, outFeatures: 8 }));
  readonly normQ = this.addModule('norm_q', new RMSNorm({ dim: 8, eps: 1e-6 }));
  readonly ff1 = this.addModule('ff1', new Linear({ inFeatures: 8, outFeatures: 16 }));
  readonly ff2 = this.addModule('ff2', new Linear({ inFeatures: 16, outFeatures: 8 }));

  // x: [B, L, 8], cond: { gate: [B, 1, 8] } → [B, L, 8]
  forward(x: tf.Tensor, cond: { gate: tf.Tensor }): tf.Tensor {
    return tf.tidy(() => {
      const [B, L] = x.shape;
      const heads = (t: tf.Tensor) => tf.reshape(t, [B, L, 2, 4]);
      const q = heads(this.normQ.forward(this.toQ.forward(x)));
      const a = tf.reshape(attention(q, heads(this.toK.forward(x)), heads(this.toV.forward(x))), [B, L, 8]);
      const h = tf.add(x, tf.mul(a, cond.gate));
      return tf.add(h, this.ff2.forward(geluTanh(this.ff1.forward(h))));
    });
  }
}

describe('gradient checkpointing', () => {
  const blocks = [new MiniBlock().initialize(1), new MiniBlock().initialize(2)];
  const x = tf.randomNormal([2, 5, 8], 0, 1, 'float32', 3);
  const gate = tf.randomNormal([2, 1, 8], 0, 1, 'float32', 4);
  const target = tf.randomNormal([2, 5, 8], 0, 1, 'float32', 5);
  const vars = blocks.flatMap(trainableVariables);

  beforeAll(() => blocks[1].normQ.weight!.assign(tf.randomUniform([8], 0.5, 1.5, 'float32', 6)));
  afterAll(() => {
    blocks.forEach((b) => b.dispose());
    tf.dispose([x, gate, target]);
  });

  const loss = () => {
    let h = x;
    for (const b of blocks) h = b.forward(h, { gate });
    return tf.mean(tf.squaredDifference(h, target)) as tf.Scalar;
  };
  const grads = () => {
    const { value, grads: g } = tf.variableGrads(loss, vars);
    const out = { loss: value.dataSync()[0], grads: Object.fromEntries(Object.entries(g).map(([k, t]) => [k, Array.from(t.dataSync())])) };
    tf.dispose([value, ...Object.values(g)]);
    return out;
  };

  it('gives the same loss and gradients as the plain backward within 1e-5', () => {
    const plain = grads();
    const off = enableGradientCheckpointing(blocks);
    const ckpt = grads();
    off();
    expect(Object.keys(ckpt.grads).sort()).toEqual(Object.keys(plain.grads).sort());
    expect(Math.abs(ckpt.loss - plain.loss)).toBeLessThan(1e-6);
    let nonZero = 0;
    for (const k of Object.keys(plain.grads)) {
      const a = plain.grads[k];
      const b = ckpt.grads[k];
      for (let i = 0; i < a.length; i++) {
        expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(1e-5);
        if (a[i] !== 0) nonZero++;
      }
    }
    expect(nonZero).toBeGreaterThan(100);
    expect(blocks[0].forward).toBe(MiniBlock.prototype.forward);
  });

  it('gives input gradients equal to the plain ones and leaks no tensors', () => {
    const f = (t: tf.Tensor) => tf.sum(tf.square(blocks[0].forward(t, { gate })));
    const wrapped = checkpoint((t: tf.Tensor, c: { gate: tf.Tensor }) => blocks[0].forward(t, c), () => trainableVariables(blocks[0]));
    const g = (t: tf.Tensor) => tf.sum(tf.square(wrapped(t, { gate })));
    for (let round = 0; round < 2; round++) {
      const before = tf.memory().numTensors;
      const plain = tf.grad(f)(x);
      const mid = tf.memory().numTensors;
      const ck = tf.grad(g)(x);
      expect(tf.memory().numTensors - mid, 'checkpointed backward leaves only its result').toBe(1);
      const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(plain, ck))));
      expect(diff.dataSync()[0]).toBeLessThanOrEqual(1e-5);
      tf.dispose([plain, ck, diff]);
      if (round === 1) expect(tf.memory().numTensors).toBe(before);
    }
  });

  it('is the plain forward outside a gradient computation', () => {
    const off = enableGradientCheckpointing(blocks);
    const before = tf.memory().numTensors;
    const y = blocks[0].forward(x, { gate });
    off();
    const z = blocks[0].forward(x, { gate });
    expect(Array.from(y.dataSync())).toEqual(Array.from(z.dataSync()));
    tf.dispose([y, z]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
