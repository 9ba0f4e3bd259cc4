import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WanPatchEmbedding, patchify, unpatchify, type PatchSize } from '../layers/wan-patch.js';
import { applyRotaryEmb, ropeAxisDims, ropeTables } from '../layers/wan-rotary-pos-embed.js';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { maxAbsDiff } from './helpers/compare.js';

const patchArb = fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 3 }));

describe('WanTransformer3DModel over random small configs', () => {
  it('output shape = latent shape, each sample of a batch = its single-sample result, no tensors left', () => {
    fc.assert(
      fc.property(
        fc.record({
          heads: fc.integer({ min: 1, max: 3 }),
          headDim: fc.integer({ min: 1, max: 6 }).map((n) => 2 * n),
          layers: fc.integer({ min: 1, max: 2 }),
          inChannels: fc.integer({ min: 1, max: 4 }),
          outChannels: fc.integer({ min: 1, max: 4 }),
          textDim: fc.integer({ min: 1, max: 6 }),
          freqDim: fc.integer({ min: 2, max: 12 }),
          ffnDim: fc.integer({ min: 1, max: 12 }),
          patch: patchArb,
          crossAttnNorm: fc.boolean(),
          qkNorm: fc.boolean(),
        }),
        fc.integer({ min: 1, max: 2 }),
        fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 1000 }),
        (cfg, B, gridSize, textLen, perToken, seed) => {
          const [pt, ph, pw] = cfg.patch;
          const [F, H, W] = [gridSize[0] * pt, gridSize[1] * ph, gridSize[2] * pw];
          const L = gridSize[0] * gridSize[1] * gridSize[2];
          const model = new WanTransformer3DModel({
            numAttentionHeads: cfg.heads,
            attentionHeadDim: cfg.headDim,
            numLayers: cfg.layers,
            inChannels: cfg.inChannels,
            outChannels: cfg.outChannels,
            textDim: cfg.textDim,
            freqDim: cfg.freqDim,
            ffnDim: cfg.ffnDim,
            patchSize: cfg.patch,
            crossAttnNorm: cfg.crossAttnNorm,
            qkNorm: cfg.qkNorm ? 'rms_norm_across_heads' : null,
          }).initialize(seed + 1);
          const x = tf.randomNormal([B, cfg.inChannels, F, H, W], 0, 1, 'float32', seed);
          const t = perToken ? tf.randomUniform([B, L], 0, 1000, 'float32', seed) : tf.randomUniform([B], 0, 1000, 'float32', seed);
          const text = tf.randomNormal([B, textLen, cfg.textDim], 0, 1, 'float32', seed + 2);
          const before = tf.memory().numTensors;
          const out = model.forward(x, t, text);
          expect(tf.memory().numTensors).toBe(before + 1);
          expect(out.shape).toEqual([B, cfg.outChannels, F, H, W]);
          expect(out.dataSync().every(Number.isFinite)).toBe(true);
          tf.tidy(() => {
            const b = B - 1;
            const single = model.forward(tf.slice(x, [b], [1]), tf.slice(t, [b], [1]), tf.slice(text, [b], [1]));
            expect(maxAbsDiff(tf.slice(out, [b], [1]), single)).toBeLessThan(1e-4);
          });
          tf.dispose([out, x, t, text]);
          model.dispose();
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('patchify / unpatchify', () => {
  it('unpatchify ∘ patchify and patchify ∘ unpatchify are the identity', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 3 }),
        fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
        patchArb,
        (B, C, g, patch) => {
          tf.tidy(() => {
            const shape = [B, C, g[0] * patch[0], g[1] * patch[1], g[2] * patch[2]];
            const x = tf.randomNormal(shape);
            const tokens = patchify(x, patch);
            expect(tokens.shape).toEqual([B, g[0] * g[1] * g[2], patch[0] * patch[1] * patch[2] * C]);
            expect(Array.from(unpatchify(tokens, g, patch).dataSync())).toEqual(Array.from(x.dataSync()));
            const y = tf.randomNormal(tokens.shape);
            expect(Array.from(patchify(unpatchify(y, g, patch), patch).dataSync())).toEqual(Array.from(y.dataSync()));
          });
        },
      ),
      { numRuns: 40 },
    );
  });

  it('the patch embedding equals a Conv3d with kernel = stride = patch', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 5 }),
        fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
        patchArb,
        fc.integer({ min: 0, max: 1000 }),
        (C, D, g, patch, seed) => {
          const emb = new WanPatchEmbedding({ inChannels: C, dim: D, patchSize: patch as PatchSize }).initialize(seed + 1);
          tf.tidy(() => {
            const x = tf.randomNormal([1, C, g[0] * patch[0], g[1] * patch[1], g[2] * patch[2]], 0, 1, 'float32', seed);
            const kernel = emb.weight.read()!; // [D, C, pt, ph, pw]
            const conv = tf.conv3d(
              tf.transpose(x, [0, 2, 3, 4, 1]) as tf.Tensor5D,
              tf.transpose(kernel, [2, 3, 4, 1, 0]) as tf.Tensor5D,
              patch,
              'valid',
            );
            const expected = tf.add(tf.reshape(conv, [1, -1, D]), emb.bias.value);
            expect(maxAbsDiff(emb.forward(x), expected)).toBeLessThan(1e-5);
          });
          emb.dispose();
        },
      ),
      { numRuns: 30 },
    );
  });
});

describe('3D rotary embedding', () => {
  it('splits any even head dim as t = d − 2·2⌊d/6⌋, h = w = 2⌊d/6⌋, each section reading only its own axis', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 256 }).map((n) => 2 * n),
        fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
        (d, grid) => {
          const hw = 2 * Math.floor(d / 6);
          expect(ropeAxisDims(d)).toEqual([d - 2 * hw, hw, hw]);
          const { cos, sin } = ropeTables(d, grid);
          const [F, H, W] = grid;
          const bounds = [0, d - 2 * hw, d - hw, d];
          let worst = 0;
          for (let f = 0; f < F; f++) {
            for (let h = 0; h < H; h++) {
              for (let w = 0; w < W; w++) {
                const row = ((f * H + h) * W + w) * d;
                const pos = [f, h, w];
                for (let a = 0; a < 3; a++) {
                  const n = bounds[a + 1] - bounds[a];
                  for (let j = 0; j < n; j++) {
                    const angle = pos[a] * Math.pow(10000, -(2 * Math.floor(j / 2)) / n);
                    worst = Math.max(worst, Math.abs(cos[row + bounds[a] + j] - Math.cos(angle)), Math.abs(sin[row + bounds[a] + j] - Math.sin(angle)));
                  }
                }
              }
            }
          }
          expect(worst).toBeLessThan(1e-6);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('q·k after rotation depends only on the offset between the two tokens', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }).map((n) => 2 * n), fc.integer({ min: 0, max: 1000 }), (d, seed) => {
        const grid = [3, 3, 3] as const;
        const t = ropeTables(d, grid);
        tf.tidy(() => {
          const rotary = { cos: tf.tensor(t.cos, [1, 27, 1, d]), sin: tf.tensor(t.sin, [1, 27, 1, d]) };
          const q = applyRotaryEmb(tf.tile(tf.randomNormal([1, 1, 1, d], 0, 1, 'float32', seed), [1, 27, 1, 1]), rotary);
          const k = applyRotaryEmb(tf.tile(tf.randomNormal([1, 1, 1, d], 0, 1, 'float32', seed + 1), [1, 27, 1, 1]), rotary);
          const dots = tf.matMul(tf.reshape(q, [27, d]), tf.reshape(k, [27, d]), false, true).arraySync() as number[][];
          const tok = (f: number, h: number, w: number) => (f * 3 + h) * 3 + w;
          // (q at p, k at p + δ) for two p with the same δ
          expect(dots[tok(0, 1, 0)][tok(1, 2, 2)]).toBeCloseTo(dots[tok(1, 0, 0)][tok(2, 1, 2)], 4);
          expect(dots[tok(2, 2, 1)][tok(0, 1, 0)]).toBeCloseTo(dots[tok(2, 1, 2)][tok(0, 0, 1)], 4);
          // rotation keeps each vector's norm
          expect(maxAbsDiff(tf.norm(tf.reshape(q, [27, d]), 'euclidean', 1), tf.fill([27], tf.norm(tf.slice(tf.reshape(q, [27, d]), [0, 0], [1, d])).dataSync()[0]))).toBeLessThan(1e-4);
        });
      }),
      { numRuns: 30 },
    );
  });
});
