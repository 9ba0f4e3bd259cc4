import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, SPEEDS, ShapesDataset, captionEn, captionZh, isHeldOut,
} from '../src/train/dataset.js';
import { uniform } from '../src/random.js';
import { measureClip } from '../src/train/measure.js';

describe('ShapesDataset', () => {
  it('is deterministic from the seed and differs across seeds', () => {
    const a = new ShapesDataset({ seed: 3 }).get(17);
    const b = new ShapesDataset({ seed: 3 }).get(17);
    const c = new ShapesDataset({ seed: 4 }).get(17);
    expect(a.captionEn).toBe(b.captionEn);
    expect(a.frames).toEqual(b.frames);
    expect(a.frames).not.toEqual(c.frames);
  });

  it('gives frames [F, H, W, 3] in [-1, 1] and captions in both languages', () => {
    const ds = new ShapesDataset({ seed: 1, frames: 5, height: 32, width: 32 });
    const clip = ds.get(0);
    expect(clip.shape).toEqual([5, 32, 32, 3]);
    expect(clip.frames.length).toBe(5 * 32 * 32 * 3);
    expect(Math.min(...clip.frames)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...clip.frames)).toBeLessThanOrEqual(1);
    expect(clip.captionEn).toContain(clip.spec.colour);
    expect(clip.captionEn).toContain(clip.spec.direction);
    expect(captionZh({ colour: 'red', shape: 'circle', direction: 'left', speed: 'slowly', background: 'black' }))
      .toBe('一个红色的圆形在黑色背景上缓慢地向左移动');
    expect(captionEn({ colour: 'red', shape: 'circle', direction: 'left', speed: 'slowly', background: 'black' }))
      .toBe('a red circle moving left slowly on a black background');
    const spec = { colour: 'blue', shape: 'square', direction: 'up', speed: 'quickly', background: 'white' } as const;
    expect(captionEn(spec, { speed: false, background: false })).toBe('a blue square moving up');
    expect(captionEn(spec, { background: false })).toBe('a blue square moving up quickly');
    expect(captionZh(spec, { speed: false, background: false })).toBe('一个蓝色的正方形向上移动');
    expect(captionZh(spec, { speed: false })).toBe('一个蓝色的正方形在白色背景上向上移动');
  });

  it('never yields a held-out combination, and every colour, shape and direction still occurs', () => {
    const ds = new ShapesDataset({ seed: 2 });
    const seen = new Set<string>();
    for (let i = 0; i < 400; i++) {
      const s = ds.specAt(i);
      expect(isHeldOut(s.colour, s.shape, s.direction)).toBe(false);
      seen.add(s.colour).add(s.shape).add(s.direction);
    }
    for (const x of [...COLOURS, ...SHAPES, ...DIRECTIONS]) expect(seen.has(x)).toBe(true);
    const held = COLOURS.flatMap((c) => SHAPES.flatMap((s) => DIRECTIONS.filter((d) => isHeldOut(c, s, d))));
    expect(held.length).toBeGreaterThan(5);
  });

  it('keeps the object inside the frame for the whole clip', () => {
    const ds = new ShapesDataset({ seed: 5 });
    for (let i = 0; i < 50; i++) {
      const s = ds.specAt(i);
      const travel = ds.pixelsPerFrame[s.speed] * (ds.frames - 1);
      for (const t of [0, travel]) {
        const dx = s.direction === 'left' ? -t : s.direction === 'right' ? t : 0;
        const dy = s.direction === 'up' ? -t : s.direction === 'down' ? t : 0;
        expect(s.x0 + dx - s.size).toBeGreaterThanOrEqual(0);
        expect(s.x0 + dx + s.size).toBeLessThanOrEqual(ds.width);
        expect(s.y0 + dy - s.size).toBeGreaterThanOrEqual(0);
        expect(s.y0 + dy + s.size).toBeLessThanOrEqual(ds.height);
      }
    }
  });
});

describe('ShapesDataset growth', () => {
  /** Object pixels (those away from the background colour) of each frame. */
  const areas = (frames: Float32Array, F: number, n: number): number[] =>
    Array.from({ length: F }, (_, f) => {
      let a = 0;
      for (let i = 0; i < n; i++) {
        const o = (f * n + i) * 3;
        const bg = [frames[0], frames[1], frames[2]]; // the corner pixel is background
        if (Math.hypot(frames[o] - bg[0], frames[o + 1] - bg[1], frames[o + 2] - bg[2]) > 0.5) a++;
      }
      return a;
    });

  it('grows the object by the factor asked for over the clip and keeps it inside the frame', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000 }), fc.double({ min: 0, max: 0.6, noNaN: true }), (i, growth) => {
        const ds = new ShapesDataset({ seed: 2, frames: 5, height: 32, width: 32, pixelsPerFrame: { slowly: 2, quickly: 4 }, growth });
        const clip = ds.get(i);
        const s = clip.spec;
        const travel = ds.pixelsPerFrame[s.speed] * 4;
        const [ux, uy] = s.direction === 'left' ? [-1, 0] : s.direction === 'right' ? [1, 0] : s.direction === 'up' ? [0, -1] : [0, 1];
        for (const [t, r] of [[0, s.size], [travel, s.size * (1 + growth)]]) {
          expect(Math.min(s.x0 + ux * t - r, s.y0 + uy * t - r)).toBeGreaterThanOrEqual(0);
          expect(Math.max(s.x0 + ux * t + r, s.y0 + uy * t + r)).toBeLessThanOrEqual(32);
        }
        const a = areas(clip.frames, 5, 32 * 32);
        // area ∝ size²: the last frame holds (1 + growth)² times the first's pixels (± edge pixels)
        expect(a[4] / a[0]).toBeGreaterThan((1 + growth) ** 2 * 0.75);
        expect(a[4] / a[0]).toBeLessThan((1 + growth) ** 2 * 1.33);
        const m = measureClip(clip.frames, clip.shape);
        expect(`${m.colour} ${m.direction}`).toBe(`${s.colour} ${s.direction}`);
      }),
      { numRuns: 30 },
    );
  });

  it('rejects a negative growth', () => {
    expect(() => new ShapesDataset({ growth: -0.1 })).toThrow(/growth/);
  });
});

describe('measureClip', () => {
  it('recovers colour and direction of every combination rendered by the dataset', () => {
    const ds = new ShapesDataset({ frames: 5, height: 32, width: 32, excludeHeldOut: false });
    const rand = uniform(11);
    let n = 0;
    for (const colour of COLOURS) for (const shape of SHAPES) for (const direction of DIRECTIONS) {
      const background = BACKGROUNDS[n % BACKGROUNDS.length];
      const speed = SPEEDS[(n >> 1) % 2];
      const clip = ds.render(ds.place({ colour, shape, direction, speed, background }, rand));
      const m = measureClip(clip.frames, clip.shape);
      expect(`${m.colour} ${m.direction}`, clip.captionEn).toBe(`${colour} ${direction}`);
      n++;
    }
  });

  it('recovers the speed as the centroid velocity within half a pixel per frame', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000 }), (i) => {
        const ds = new ShapesDataset({ seed: 9, height: 24, width: 24 });
        const clip = ds.get(i);
        const m = measureClip(clip.frames, clip.shape);
        const speed = Math.hypot(...m.velocity);
        expect(Math.abs(speed - ds.pixelsPerFrame[clip.spec.speed])).toBeLessThan(0.5);
        expect(m.direction).toBe(clip.spec.direction);
      }),
      { numRuns: 30 },
    );
  });

  it('is robust to mild noise, as in a generated clip', () => {
    const ds = new ShapesDataset({ seed: 12 });
    const rand = uniform(5);
    for (let i = 0; i < 20; i++) {
      const clip = ds.get(i);
      const noisy = clip.frames.map((v) => Math.max(-1, Math.min(1, v + (rand() - 0.5) * 0.3)));
      const m = measureClip(noisy, clip.shape);
      expect(`${m.colour} ${m.direction}`).toBe(`${clip.spec.colour} ${clip.spec.direction}`);
    }
  });

  it('rejects a clip that is not [F, H, W, 3]', () => {
    expect(() => measureClip(new Float32Array(12), [2, 2, 3])).toThrow(/frames/);
  });
});
