import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import { AutoencoderKLWan } from '../layers/autoencoder-kl-wan.js';
import { UMT5EncoderModel } from '../layers/umt5-encoder-model.js';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';

const std = (t: tf.Tensor) => {
  const d = Array.from(t.dataSync());
  const m = d.reduce((a, v) => a + v, 0) / d.length;
  return Math.sqrt(d.reduce((a, v) => a + (v - m) ** 2, 0) / d.length);
};

describe('withRandomWeights (from_config)', () => {
  it('sets every parameter, deterministically for a seed, like new + initialize(seed)', () => {
    const config = { numAttentionHeads: 2, attentionHeadDim: 8, inChannels: 4, outChannels: 4, textDim: 8, freqDim: 16, ffnDim: 24, numLayers: 1 };
    const a = WanTransformer3DModel.withRandomWeights(config, { seed: 7 });
    const b = new WanTransformer3DModel(config).initialize(7);
    for (const [k, p] of a.namedParams()) expect(p.value.dataSync(), k).toEqual(b.namedParams().get(k)!.value.dataSync());
    expect(() => new WanTransformer3DModel(config).namedParams().get('proj_out.weight')!.value).toThrow(/initialize\(\) first/);
    a.dispose();
    b.dispose();
    const v = AutoencoderKLWan.withRandomWeights({ baseDim: 8, zDim: 4, dimMult: [1, 2, 2], numResBlocks: 1, temperalDownsample: [true, true], latentsMean: [0, 0, 0, 0], latentsStd: [1, 1, 1, 1] }, { seed: 3 });
    expect([...v.namedParams().values()].every((p) => p.isSet)).toBe(true);
    v.dispose();
  });

  it("UMT5 follows transformers' _init_weights", () => {
    const m = UMT5EncoderModel.withRandomWeights({ vocabSize: 64, dModel: 32, dKv: 8, dFf: 48, numLayers: 1, numHeads: 2 }, { seed: 5 });
    const p = m.namedParams();
    expect(std(p.get('shared.weight')!.value)).toBeCloseTo(1, 1);
    expect(std(p.get('encoder.block.0.layer.1.DenseReluDense.wo.weight')!.value)).toBeCloseTo(48 ** -0.5, 1);
    expect(std(p.get('encoder.block.0.layer.0.SelfAttention.q.weight')!.value)).toBeCloseTo(256 ** -0.5, 1);
    expect(p.get('encoder.final_layer_norm.weight')!.value.dataSync().every((x) => x === 1)).toBe(true);
    const again = UMT5EncoderModel.withRandomWeights({ vocabSize: 64, dModel: 32, dKv: 8, dFf: 48, numLayers: 1, numHeads: 2 }, { seed: 5 });
    expect(again.namedParams().get('shared.weight')!.value.dataSync()).toEqual(p.get('shared.weight')!.value.dataSync());
    m.dispose();
    again.dispose();
  });
});
