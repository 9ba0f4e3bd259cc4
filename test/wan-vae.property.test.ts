import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AutoencoderKLWan, vaePatchify, vaeUnpatchify } from '../layers/autoencoder-kl-wan.js';
import { WanAttentionBlock } from '../layers/wan-attention-block.js';
import type { WanModule } from '../layers/module.js';
import { AvgDown3D } from '../layers/wan-avg-down.js';
import { CausalCache, WanCausalConv3d } from '../layers/wan-causal-conv3d.js';
import { DupUp3D } from '../layers/wan-dup-up.js';
import { WanResidualBlock } from '../layers/wan-residual-block.js';
import { maxAbsDiff } from './helpers/compare.js';

function meanAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.mean(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

/** Splits n into consecutive positive chunk lengths chosen by `cuts` (values in [0, 1)). */
function partition(n: number, cuts: number[]): number[] {
  const points = [...new Set(cuts.map((c) => 1 + Math.floor(c * (n - 1))).filter((p) => p > 0 && p < n))].sort((a, b) => a - b);
  const bounds = [0, ...points, n];
  return bounds.slice(1).map((b, i) => b - bounds[i]);
}

/** Runs `step` over x [B, T, …] in time chunks of `lengths`, concatenating the outputs along time. */
function chunked(x: tf.Tensor, lengths: number[], step: (chunk: tf.Tensor) => tf.Tensor): tf.Tensor {
  const outs: tf.Tensor[] = [];
  let t = 0;
  for (const n of lengths) {
    const c = tf.slice(x, [0, t, 0, 0, 0], [-1, n, -1, -1, -1]);
    outs.push(step(c));
    c.dispose();
    t += n;
  }
  const y = tf.concat(outs, 1);
  tf.dispose(outs);
  return y;
}

const tinyVae = fc.record({
  isResidual: fc.boolean(),
  baseDim: fc.integer({ min: 2, max: 4 }),
  zDim: fc.integer({ min: 1, max: 3 }),
  mult: fc.constantFrom([1, 1, 1], [1, 2, 2]),
  patch: fc.boolean(),
  seed: fc.integer({ min: 1, max: 1000 }),
});

type TinyVae = { isResidual: boolean; baseDim: number; zDim: number; mult: readonly number[]; patch: boolean; seed: number };

/**
 * Keeps only the centre tap of every 3×3 spatial kernel (×3, so the signal keeps its scale) and
 * silences the attention output, so every output position reads only its own input position.
 */
function keepCentreTaps(module: WanModule): void {
  for (const [key, p] of module.namedParams()) {
    const shape = p.shape;
    if (/attentions\.0\.proj\./.test(key)) p.assign(tf.zeros([...shape]));
    else if (shape.length >= 4 && shape[shape.length - 1] === 3) {
      const mask = tf.tidy(() => {
        const m = tf.buffer([3, 3]);
        m.set(3, 1, 1);
        return m.toTensor();
      });
      const v = p.read()!;
      p.assign(tf.mul(v, mask));
      tf.dispose([v, mask]);
    }
  }
}

function buildVae(c: TinyVae): AutoencoderKLWan {
  const p = c.isResidual && c.patch ? 2 : null;
  const ch = 3 * (p ?? 1) ** 2;
  return new AutoencoderKLWan({
    baseDim: c.baseDim,
    decoderBaseDim: c.isResidual ? c.baseDim + 1 : null,
    zDim: c.zDim,
    dimMult: [...c.mult],
    numResBlocks: 1,
    temperalDownsample: [true, true],
    latentsMean: Array.from({ length: c.zDim }, () => 0),
    latentsStd: Array.from({ length: c.zDim }, () => 1),
    isResidual: c.isResidual,
    inChannels: ch,
    outChannels: ch,
    patchSize: p,
  }).initialize(c.seed);
}

describe('AutoencoderKLWan over random tiny configs', () => {
  it('latents are [B, z, 1+k, H/s, W/s]; decode restores [B, 3, 1+4k, H, W] in [−1, 1]; chunked = frame-by-frame = streamed; no leak', () => {
    fc.assert(
      fc.property(tinyVae, fc.integer({ min: 0, max: 2 }), fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 2 }), fc.integer({ min: 2, max: 3 }), (cfg, k, h, w, chunkSize) => {
        const vae = buildVae(cfg);
        const s = vae.spatialCompression;
        expect(s).toBe(cfg.isResidual && cfg.patch ? 8 : 4);
        const video = tf.randomUniform([1, 3, 1 + 4 * k, h * s, w * s], -1, 1, 'float32', cfg.seed);
        const before = tf.memory().numTensors;
        const { mean, logvar } = vae.encode(video);
        expect(mean.shape).toEqual([1, cfg.zDim, 1 + k, h, w]);
        expect(logvar.shape).toEqual(mean.shape);
        const byFrame = vae.decode(mean);
        const byChunk = vae.decode(mean, { chunkSize });
        const streamed = [...vae.decodeChunks(mean)];
        expect(streamed.map((t) => t.shape[2])).toEqual([1, ...Array.from({ length: k }, () => 4)]);
        const joined = tf.concat(streamed, 2);
        expect(tf.memory().numTensors).toBe(before + 5 + streamed.length);
        expect(byFrame.shape).toEqual([1, 3, 1 + 4 * k, h * s, w * s]);
        const v = byFrame.dataSync();
        expect(v.every((x) => x >= -1 && x <= 1)).toBe(true);
        expect(maxAbsDiff(byChunk, byFrame)).toBeLessThan(1e-5);
        expect(maxAbsDiff(joined, byFrame)).toBe(0);
        tf.dispose([mean, logvar, byFrame, byChunk, joined, ...streamed]);
        expect(tf.memory().numTensors).toBe(before);
        tf.dispose(video);
        vae.dispose();
      }),
      { numRuns: 8 },
    );
  });

  it('each sample of a batch encodes and decodes as it does alone', () => {
    for (const isResidual of [false, true]) {
      const vae = buildVae({ isResidual, baseDim: 3, zDim: 2, mult: [1, 1, 1], patch: true, seed: 7 });
      const s = vae.spatialCompression;
      const batch = tf.randomUniform([2, 3, 5, 2 * s, s], -1, 1, 'float32', 8);
      const second = tf.slice(batch, [1, 0, 0, 0, 0], [1, -1, -1, -1, -1]);
      const both = vae.encode(batch);
      const alone = vae.encode(second);
      const meanOfSecond = tf.slice(both.mean, [1, 0, 0, 0, 0], [1, -1, -1, -1, -1]);
      expect(maxAbsDiff(meanOfSecond, alone.mean)).toBeLessThan(1e-5);
      const decodedBoth = vae.decode(both.mean);
      const decodedAlone = vae.decode(alone.mean);
      const decodedSecond = tf.slice(decodedBoth, [1, 0, 0, 0, 0], [1, -1, -1, -1, -1]);
      expect(maxAbsDiff(decodedSecond, decodedAlone)).toBeLessThan(1e-5);
      tf.dispose([batch, second, both.mean, both.logvar, alone.mean, alone.logvar, meanOfSecond, decodedBoth, decodedAlone, decodedSecond]);
      vae.dispose();
    }
  });

  it('tiled decode: one tile covering the latent is the untiled decode; with a spatially pointwise decoder any tiling is exact', () => {
    fc.assert(
      fc.property(
        tinyVae,
        fc.integer({ min: 3, max: 5 }),
        fc.integer({ min: 3, max: 6 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 2 }),
        (cfg, h, w, tileLatents, overlapLatents) => {
          const vae = buildVae(cfg);
          const s = vae.spatialCompression;
          // Each output pixel then depends on its own latent pixel only, so tiles cannot disagree and
          // any difference is a placement or blending error.
          keepCentreTaps(vae.decoder);
          const z = tf.randomNormal([1, cfg.zDim, 2, h, w], 0, 1, 'float32', cfg.seed);
          const before = tf.memory().numTensors;
          const full = vae.decode(z);
          const oneTile = vae.decode(z, { tileSize: Math.max(h, w) * s });
          const tiled = vae.decode(z, { tileSize: (tileLatents + overlapLatents) * s, tileOverlap: overlapLatents * s });
          expect(tf.memory().numTensors).toBe(before + 3);
          expect(tiled.shape).toEqual(full.shape);
          expect(maxAbsDiff(oneTile, full)).toBe(0);
          expect(maxAbsDiff(tiled, full)).toBeLessThan(1e-5);
          tf.dispose([z, full, oneTile, tiled]);
          vae.dispose();
        },
      ),
      { numRuns: 6 },
    );
  });

  it('tiled encode: one tile covering the video is the untiled encode; with a block-local encoder any tiling is exact', () => {
    fc.assert(
      fc.property(
        tinyVae,
        fc.integer({ min: 2, max: 4 }),
        fc.integer({ min: 2, max: 5 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 2 }),
        (cfg, h, w, tileLatents, overlapLatents) => {
          const vae = buildVae(cfg);
          const s = vae.spatialCompression;
          // A 3×3 conv then reads its own pixel and a stride-2 downsample (padded right and bottom) pixel
          // 2i+1 of its 2×2 block, so each latent depends on its own s×s block of pixels only and tiles
          // aligned to latents cannot disagree.
          keepCentreTaps(vae.encoder);
          const video = tf.randomUniform([1, vae.config.inChannels / (vae.config.patchSize ?? 1) ** 2, 5, h * s, w * s], -1, 1, 'float32', cfg.seed);
          const before = tf.memory().numTensors;
          const full = vae.encode(video);
          const oneTile = vae.encode(video, { tileSize: Math.max(h, w) * s });
          const seen: Array<[number, number]> = [];
          const tiled = vae.encode(video, { tileSize: (tileLatents + overlapLatents) * s, tileOverlap: overlapLatents * s, onProgress: (d, t) => seen.push([d, t]) });
          expect(tf.memory().numTensors).toBe(before + 6);
          expect(tiled.mean.shape).toEqual(full.mean.shape);
          expect(maxAbsDiff(oneTile.mean, full.mean)).toBe(0);
          expect(maxAbsDiff(oneTile.logvar, full.logvar)).toBe(0);
          expect(maxAbsDiff(tiled.mean, full.mean)).toBeLessThan(1e-5);
          expect(maxAbsDiff(tiled.logvar, full.logvar)).toBeLessThan(1e-5);
          // progress counts every chunk of every tile, ending at the total
          expect(seen.map(([d]) => d)).toEqual(seen.map((_, k) => k + 1));
          expect(seen.at(-1)![0]).toBe(seen.at(-1)![1]);
          tf.dispose([video, full.mean, full.logvar, oneTile.mean, oneTile.logvar, tiled.mean, tiled.logvar]);
          vae.dispose();
        },
      ),
      { numRuns: 20 },
    );
  });

  it('tiled encode of a generic random model stays close to the untiled one, and bad tiles are refused', () => {
    const vae = buildVae({ isResidual: false, baseDim: 4, zDim: 3, mult: [1, 2, 2], patch: false, seed: 13 });
    const s = vae.spatialCompression;
    const video = tf.randomUniform([1, 3, 5, 6 * s, 6 * s], -1, 1, 'float32', 13);
    const full = vae.encode(video);
    const tiled = vae.encode(video, { tileSize: 4 * s, tileOverlap: 2 * s });
    expect(tiled.mean.shape).toEqual(full.mean.shape);
    expect(meanAbsDiff(tiled.mean, full.mean)).toBeLessThan(0.5 * tf.tidy(() => tf.mean(tf.abs(full.mean)).dataSync()[0]));
    expect(() => vae.encode(video, { tileSize: s - 1 })).toThrow(/encode option tileSize/);
    expect(() => vae.encode(video, { tileSize: 2 * s, tileOverlap: 2 * s })).toThrow(/encode option tileOverlap/);
    tf.dispose([video, full.mean, full.logvar, tiled.mean, tiled.logvar]);
    vae.dispose();
  });

  it('tiled decode of a generic random model is its tiles decoded alone, blended by linear ramps over the overlaps (6×6 latents, tile 4, overlap 2)', () => {
    // With random weights the tiles disagree over the overlap (each sees zero padding at its edges and
    // attends only within itself) by about as much as the signal, so a flat average, a hard cut or a
    // zeroed seam there fails the 1e-5 bound; the placement arithmetic for tiles that agree is checked
    // by the pointwise-decoder property above.
    for (const seed of [11, 12]) {
      const vae = buildVae({ isResidual: seed % 2 === 0, baseDim: 4, zDim: 3, mult: [1, 2, 2], patch: true, seed });
      const s = vae.spatialCompression;
      const z = tf.randomNormal([1, 3, 2, 6, 6], 0, 0.5, 'float32', seed);
      const tiled = vae.decode(z, { tileSize: 4 * s, tileOverlap: 2 * s });
      // The grid: tiles of 4 latents at latents 0 and 2 along each axis, so pixels [2s, 4s) are shared.
      const starts = [0, 2];
      const tiles = starts.map((r) => starts.map((c) => tf.tidy(() => vae.decode(tf.slice(z, [0, 0, 0, r, c], [-1, -1, -1, 4, 4])).dataSync())));
      // Decode clamps to [−1, 1]; blending tiles clamped first equals clamping the blend only inside it.
      expect(tiles.flat().every((t) => t.every((v) => Math.abs(v) < 1))).toBe(true);
      // Weight of the second tile at pixel p along an axis: 0 before the overlap, rising linearly over it
      // (at pixel centres), 1 after; the first tile gets the rest.
      const ramp = (p: number) => Math.min(1, Math.max(0, (p - 2 * s + 0.5) / (2 * s)));
      const weight = (k: number, p: number) => (k === 0 ? 1 - ramp(p) : ramp(p));
      const [, C, T, H, W] = tiled.shape as number[];
      const n = 4 * s;
      const blend = new Float32Array(C * T * H * W);
      let disagreement = 0;
      for (let ch = 0; ch < C; ch++) for (let t = 0; t < T; t++) for (let Y = 0; Y < H; Y++) for (let X = 0; X < W; X++) {
        const covering: number[] = [];
        starts.forEach((r, i) => starts.forEach((c, j) => {
          const [y, x] = [Y - r * s, X - c * s];
          if (y < 0 || y >= n || x < 0 || x >= n) return;
          const v = tiles[i][j][((ch * T + t) * n + y) * n + x];
          covering.push(v);
          blend[((ch * T + t) * H + Y) * W + X] += weight(i, Y) * weight(j, X) * v;
        }));
        disagreement = Math.max(disagreement, Math.max(...covering) - Math.min(...covering));
      }
      expect(disagreement).toBeGreaterThan(0.05);
      const expected = tf.tensor(blend, tiled.shape);
      expect(maxAbsDiff(tiled, expected)).toBeLessThan(1e-5);
      tf.dispose([z, tiled, expected]);
      vae.dispose();
    }
  });
});

describe('causal streaming of the building blocks', () => {
  it('WanCausalConv3d over chunks with a cache = one causal conv over the clip = conv3d with 2·pt zero frames in front', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom<[number, number]>([3, 1], [1, 0]),
        fc.constantFrom<[number, number]>([3, 1], [1, 0]),
        fc.integer({ min: 1, max: 7 }),
        fc.array(fc.double({ min: 0, max: 0.999, noNaN: true }), { maxLength: 4 }),
        fc.integer({ min: 1, max: 1000 }),
        (cin, cout, [kt, pt], [ks, ps], T, cuts, seed) => {
          const conv = new WanCausalConv3d({ inChannels: cin, outChannels: cout, kernelSize: [kt, ks, ks], padding: [pt, ps, ps] }).initialize(seed);
          const x = tf.randomNormal([2, T, 3, 4, cin], 0, 1, 'float32', seed);
          const before = tf.memory().numTensors;
          const whole = conv.forward(x);
          const cache = new CausalCache();
          const streamed = chunked(x, partition(T, cuts), (c) => conv.forward(c, cache));
          expect(cache.numTensors).toBe(kt > 1 ? 1 : 0);
          cache.dispose();
          const reference = tf.tidy(() => {
            const padded = tf.pad(x, [[0, 0], [2 * pt, 0], [ps, ps], [ps, ps], [0, 0]]) as tf.Tensor5D;
            return tf.add(tf.conv3d(padded, conv.weight.value as tf.Tensor5D, 1, 'valid'), conv.bias.value);
          });
          expect(whole.shape).toEqual([2, T, 3, 4, cout]);
          expect(maxAbsDiff(streamed, whole)).toBeLessThan(1e-5);
          expect(maxAbsDiff(reference, whole)).toBeLessThan(1e-5);
          tf.dispose([whole, streamed, reference]);
          expect(tf.memory().numTensors).toBe(before);
          tf.dispose(x);
          conv.dispose();
        },
      ),
      { numRuns: 30 },
    );
  });

  it('a residual block + attention block streamed in random chunks equals the single pass', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.double({ min: 0, max: 0.999, noNaN: true }), { maxLength: 3 }),
        fc.integer({ min: 1, max: 1000 }),
        (inDim, outDim, T, cuts, seed) => {
          const res = new WanResidualBlock({ inDim, outDim }).initialize(seed);
          const attn = new WanAttentionBlock({ dim: outDim }).initialize(seed + 1);
          const x = tf.randomNormal([1, T, 2, 3, inDim], 0, 1, 'float32', seed);
          const before = tf.memory().numTensors;
          const step = (c: tf.Tensor, cache?: CausalCache) => tf.tidy(() => attn.forward(res.forward(c, cache)));
          const whole = step(x);
          const cache = new CausalCache();
          const streamed = chunked(x, partition(T, cuts), (c) => step(c, cache));
          cache.dispose();
          expect(maxAbsDiff(streamed, whole)).toBeLessThan(1e-5);
          tf.dispose([whole, streamed]);
          expect(tf.memory().numTensors).toBe(before);
          tf.dispose(x);
          res.dispose();
          attn.dispose();
        },
      ),
      { numRuns: 20 },
    );
  });
});

describe('Wan2.2 shortcuts and patchify', () => {
  it('AvgDown3D undoes DupUp3D; DupUp3D drops factorT − 1 frames on the first chunk', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 3 }),
        (inC, mult, ft, fs, T) => {
          const outC = inC * mult;
          const up = new DupUp3D({ inChannels: inC, outChannels: outC, factorT: ft, factorS: fs });
          const down = new AvgDown3D({ inChannels: outC, outChannels: inC, factorT: ft, factorS: fs });
          const x = tf.randomNormal([2, T, 2, 3, inC]);
          const before = tf.memory().numTensors;
          const y = up.forward(x);
          const first = up.forward(x, true);
          const back = down.forward(y);
          expect(y.shape).toEqual([2, T * ft, 2 * fs, 3 * fs, outC]);
          expect(first.shape[1]).toBe(T * ft - (ft - 1));
          expect(maxAbsDiff(back, x)).toBeLessThan(1e-6);
          tf.dispose([y, first, back]);
          expect(tf.memory().numTensors).toBe(before);
          x.dispose();
        },
      ),
      { numRuns: 30 },
    );
  });

  it('vaePatchify puts pixel (i·p + q, j·p + r) of channel c at channel c·p² + r·p + q; vaeUnpatchify inverts it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }), (p, C, h, w) => {
        const [H, W] = [h * p, w * p];
        const x = tf.tensor(Float32Array.from({ length: 2 * H * W * C }, (_, i) => i), [1, 2, H, W, C]);
        const y = vaePatchify(x, p);
        const xs = x.dataSync();
        const ys = y.dataSync();
        for (let t = 0; t < 2; t++)
          for (let i = 0; i < h; i++)
            for (let j = 0; j < w; j++)
              for (let c = 0; c < C; c++)
                for (let q = 0; q < p; q++)
                  for (let r = 0; r < p; r++) {
                    const got = ys[(((t * h + i) * w + j) * C * p * p) + c * p * p + r * p + q];
                    expect(got).toBe(xs[((t * H + i * p + q) * W + j * p + r) * C + c]);
                  }
        const back = vaeUnpatchify(y, p);
        expect(Array.from(back.dataSync())).toEqual(Array.from(xs));
        tf.dispose([x, y, back]);
      }),
      { numRuns: 20 },
    );
  });
});
