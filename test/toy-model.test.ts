import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/select.js';
import { ShapeError } from '../src/errors.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { COLOURS, DIRECTIONS, SHAPES, captionEn, captionZh, isHeldOut, type Colour, type Direction, type Shape } from '../src/train/dataset.js';
import { measureClip } from '../src/train/measure.js';

const MODEL = path.resolve(process.env.WAN_TOY_MODEL ?? 'models/toy');
// Issue #8's acceptance measurement, on the committed model or on WAN_TOY_MODEL=<dir> (about 40 s on wasm).

/** The held-out (colour, shape, direction) triples: never seen together in training. */
const heldOut: Array<{ colour: Colour; shape: Shape; direction: Direction }> = COLOURS.flatMap((colour) =>
  SHAPES.flatMap((shape) => DIRECTIONS.filter((direction) => isHeldOut(colour, shape, direction)).map((direction) => ({ colour, shape, direction }))),
);

describe('the trained toy model (models/toy)', () => {
  let pipe: WanPipeline;
  beforeAll(async () => {
    // The model is committed (issue 8); a missing one is a failure, not a skip.
    expect(fs.existsSync(path.join(MODEL, 'model_index.json')), `${MODEL} has no model_index.json`).toBe(true);
    await selectBackend('wasm');
    pipe = await WanPipeline.fromPretrained(MODEL);
  }, 60_000);

  it('draws the captioned colour moving in the captioned direction for ≥ 90 % of held-out captions', async () => {
    let hits = 0;
    let colours = 0;
    let directions = 0;
    const misses: string[] = [];
    let n = 0;
    for (const [i, c] of heldOut.entries()) {
      const spec = { ...c, speed: 'quickly' as const, background: (['black', 'gray', 'white'] as const)[i % 3] };
      const prompt = i % 2 === 0 ? captionEn(spec) : captionZh(spec);
      const { frames } = await pipe.textToVideo({ prompt, seed: 1000 + i });
      const pixels = tf.tidy(() => tf.sub(tf.mul(frames, 2), 1));
      const m = measureClip(pixels.dataSync() as Float32Array, pixels.shape);
      tf.dispose([frames, pixels]);
      n++;
      if (m.colour === c.colour) colours++;
      if (m.direction === c.direction) directions++;
      if (m.colour === c.colour && m.direction === c.direction) hits++;
      else misses.push(`${prompt} → ${m.colour} ${m.direction}`);
    }
    expect(n).toBeGreaterThan(5);
    const summary = `${hits}/${n} right on both (colour ${colours}/${n}, direction ${directions}/${n})`;
    console.log(`toy model ${MODEL}: ${summary}`);
    expect(hits / n, `${summary}\n${misses.join('\n')}`).toBeGreaterThanOrEqual(0.9);
  }, 600_000);

  it('refuses a frame count its 5-frame patches cannot cover, naming the nearest that works', async () => {
    for (const [numFrames, nearest] of [[7, '5'], [8, '10'], [1, '5']] as const) {
      const e = await pipe.textToVideo({ prompt: 'a red circle moving right', numFrames }).then(() => undefined, (x: unknown) => x);
      expect(e).toBeInstanceOf(ShapeError);
      expect(e).toMatchObject({ argument: 'numFrames', nearest });
      expect(String(e)).toMatch(/multiple of 5 latent frames/);
    }
  });
});
