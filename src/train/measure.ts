/**
 * Measures what a clip shows, without knowing how it was made: the dominant colour of the moving
 * object and the direction of its centroid's track. Used to score generated clips against their
 * captions; validated on the dataset's own clips (test/dataset.test.ts).
 */
import { ShapeError } from '../errors.js';
import { COLOURS, COLOUR_RGB, type Colour, type Direction } from './dataset.js';

export interface ClipMeasurement {
  /** Palette colour nearest to the object's mean colour. */
  colour: Colour;
  /** Mean RGB in [0, 1] of the object's pixels. */
  rgb: [number, number, number];
  direction: Direction;
  /** Least-squares centroid velocity in pixels per frame (x right, y down). */
  velocity: [number, number];
  /** Object centroid per frame (NaN where no object pixel was found). */
  track: Array<[number, number]>;
}

function median(xs: Float32Array): number {
  const s = Float32Array.from(xs).sort();
  return s[s.length >> 1];
}

/**
 * frames: [F, H, W, 3] row-major in [-1, 1] (or a [1, F, H, W, 3] batch of one).
 * The background is the per-channel median over all pixels (the object covers a small part of the
 * frame); object pixels are those whose distance to it exceeds half the clip's largest distance.
 */
export function measureClip(frames: Float32Array, shape: readonly number[]): ClipMeasurement {
  const dims = shape.length === 5 && shape[0] === 1 ? shape.slice(1) : shape;
  if (dims.length !== 4 || dims[3] !== 3) throw new ShapeError('frames', `[${shape}]`, '[F, H, W, 3]');
  const [F, H, W] = dims;
  const n = F * H * W;
  if (frames.length !== n * 3) throw new ShapeError('frames', `${frames.length} values`, `${n * 3} for [${shape}]`);
  const chan = [0, 1, 2].map((c) => {
    const xs = new Float32Array(n);
    for (let i = 0; i < n; i++) xs[i] = (frames[i * 3 + c] + 1) / 2;
    return xs;
  });
  const bg = chan.map(median);
  const dist = new Float32Array(n);
  let maxDist = 0;
  for (let i = 0; i < n; i++) {
    const d = Math.hypot(chan[0][i] - bg[0], chan[1][i] - bg[1], chan[2][i] - bg[2]);
    dist[i] = d;
    if (d > maxDist) maxDist = d;
  }
  const threshold = Math.max(0.1, 0.5 * maxDist);
  const rgb: [number, number, number] = [0, 0, 0];
  let count = 0;
  const track: Array<[number, number]> = [];
  for (let f = 0; f < F; f++) {
    let sx = 0;
    let sy = 0;
    let sw = 0;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const i = (f * H + y) * W + x;
        if (dist[i] < threshold) continue;
        const w = dist[i];
        sx += w * (x + 0.5);
        sy += w * (y + 0.5);
        sw += w;
        for (let c = 0; c < 3; c++) rgb[c] += chan[c][i];
        count++;
      }
    }
    track.push(sw > 0 ? [sx / sw, sy / sw] : [NaN, NaN]);
  }
  for (let c = 0; c < 3; c++) rgb[c] = count > 0 ? rgb[c] / count : bg[c];
  let colour: Colour = COLOURS[0];
  let best = Infinity;
  for (const name of COLOURS) {
    const p = COLOUR_RGB[name];
    const d = (p[0] - rgb[0]) ** 2 + (p[1] - rgb[1]) ** 2 + (p[2] - rgb[2]) ** 2;
    if (d < best) {
      best = d;
      colour = name;
    }
  }
  const velocity = slope(track);
  const direction: Direction =
    Math.abs(velocity[0]) >= Math.abs(velocity[1]) ? (velocity[0] < 0 ? 'left' : 'right') : velocity[1] < 0 ? 'up' : 'down';
  return { colour, rgb, direction, velocity, track };
}

/** Least-squares slope of x(f) and y(f) over the frames with a centroid. */
function slope(track: Array<[number, number]>): [number, number] {
  const pts = track.map(([x, y], f) => ({ f, x, y })).filter((p) => Number.isFinite(p.x));
  if (pts.length < 2) return [0, 0];
  const mf = pts.reduce((a, p) => a + p.f, 0) / pts.length;
  const mx = pts.reduce((a, p) => a + p.x, 0) / pts.length;
  const my = pts.reduce((a, p) => a + p.y, 0) / pts.length;
  let sff = 0;
  let sfx = 0;
  let sfy = 0;
  for (const p of pts) {
    sff += (p.f - mf) ** 2;
    sfx += (p.f - mf) * (p.x - mx);
    sfy += (p.f - mf) * (p.y - my);
  }
  return [sfx / sff, sfy / sff];
}
