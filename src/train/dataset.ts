/**
 * A procedural text-to-video dataset: short clips of one coloured shape (circle, square, triangle)
 * moving left, right, up or down at one of two speeds over a plain background, each with an
 * English and a Chinese caption. Everything is a pure function of (seed, index), so a run can be
 * reproduced and a held-out split stays held out.
 */
import { ConfigError } from '../errors.js';
import { uniform } from '../random.js';

export const SHAPES = ['circle', 'square', 'triangle'] as const;
export const COLOURS = ['red', 'green', 'blue', 'yellow', 'cyan', 'magenta'] as const;
export const DIRECTIONS = ['left', 'right', 'up', 'down'] as const;
export const SPEEDS = ['slowly', 'quickly'] as const;
export const BACKGROUNDS = ['black', 'gray', 'white'] as const;

export type Shape = (typeof SHAPES)[number];
export type Colour = (typeof COLOURS)[number];
export type Direction = (typeof DIRECTIONS)[number];
export type Speed = (typeof SPEEDS)[number];
export type Background = (typeof BACKGROUNDS)[number];

/** Linear RGB in [0, 1] of each object colour; far apart so a measurement can tell them apart. */
export const COLOUR_RGB: Readonly<Record<Colour, readonly [number, number, number]>> = {
  red: [0.9, 0.1, 0.1],
  green: [0.1, 0.8, 0.15],
  blue: [0.15, 0.25, 0.95],
  yellow: [0.95, 0.9, 0.1],
  cyan: [0.1, 0.85, 0.9],
  magenta: [0.85, 0.15, 0.85],
};

export const BACKGROUND_RGB: Readonly<Record<Background, readonly [number, number, number]>> = {
  black: [0.05, 0.05, 0.05],
  gray: [0.4, 0.4, 0.4],
  white: [0.93, 0.93, 0.93],
};

const ZH = {
  circle: '圆形', square: '正方形', triangle: '三角形',
  red: '红色', green: '绿色', blue: '蓝色', yellow: '黄色', cyan: '青色', magenta: '品红色',
  left: '左', right: '右', up: '上', down: '下',
  slowly: '缓慢地', quickly: '快速地',
  black: '黑色', gray: '灰色', white: '白色',
} as const;

/** Everything that determines one clip. Positions and sizes are in pixels of frame 0. */
export interface ClipSpec {
  shape: Shape;
  colour: Colour;
  direction: Direction;
  speed: Speed;
  background: Background;
  /** Centre of the object in frame 0. */
  x0: number;
  y0: number;
  /** Radius of the circle, half side of the square, circumradius-ish half size of the triangle. */
  size: number;
}

export interface DatasetConfig {
  /** Frames per clip; Wan's VAE wants 4n + 1. Default 5. */
  frames?: number;
  height?: number;
  width?: number;
  seed?: number;
  /** Pixels per frame at each speed; default slowly 1.5, quickly 3. */
  pixelsPerFrame?: Readonly<Record<Speed, number>>;
  /** Exclude held-out (colour, shape, direction) combinations (see isHeldOut). Default true. */
  excludeHeldOut?: boolean;
  /**
   * Relative growth of the object over the clip (it approaches): size at frame f is
   * size·(1 + growth·f/(F − 1)). A cue to the arrow of time that does not depend on the caption.
   * Default 0.
   */
  growth?: number;
}

export interface Clip {
  spec: ClipSpec;
  captionEn: string;
  captionZh: string;
  /** [F, H, W, 3] row-major, values in [-1, 1]. */
  frames: Float32Array;
  shape: [number, number, number, 3];
}

/**
 * The held-out split: (colour, shape, direction) triples never shown together in training, while
 * every colour, shape and direction on its own still is. About one triple in seven.
 */
export function isHeldOut(colour: Colour, shape: Shape, direction: Direction): boolean {
  return (COLOURS.indexOf(colour) + 2 * SHAPES.indexOf(shape) + 3 * DIRECTIONS.indexOf(direction)) % 7 === 3;
}

/** The optional phrases of a caption (both included by default). */
export interface CaptionParts {
  speed?: boolean;
  background?: boolean;
}

type CaptionSpec = Pick<ClipSpec, 'shape' | 'colour' | 'direction' | 'speed' | 'background'>;

/** "a red circle moving left slowly on a black background" (speed and background optional). */
export function captionEn(s: CaptionSpec, parts: CaptionParts = {}): string {
  const speed = parts.speed ?? true ? ` ${s.speed}` : '';
  const background = parts.background ?? true ? ` on a ${s.background} background` : '';
  return `a ${s.colour} ${s.shape} moving ${s.direction}${speed}${background}`;
}

/** "一个红色的圆形在黑色背景上缓慢地向左移动" (speed and background optional). */
export function captionZh(s: CaptionSpec, parts: CaptionParts = {}): string {
  const speed = parts.speed ?? true ? ZH[s.speed] : '';
  const background = parts.background ?? true ? `在${ZH[s.background]}背景上` : '';
  return `一个${ZH[s.colour]}的${ZH[s.shape]}${background}${speed}向${ZH[s.direction]}移动`;
}

/** Unit step of the object per frame for a direction (image y grows downwards). */
export function directionVector(d: Direction): [number, number] {
  return d === 'left' ? [-1, 0] : d === 'right' ? [1, 0] : d === 'up' ? [0, -1] : [0, 1];
}

/** Fraction of pixel (px, py)'s area the shape covers, from 4×4 sub-samples (anti-aliased edges). */
function coverage(shape: Shape, cx: number, cy: number, r: number, px: number, py: number): number {
  let hit = 0;
  for (let sy = 0; sy < 4; sy++) {
    for (let sx = 0; sx < 4; sx++) {
      const x = px + (sx + 0.5) / 4 - cx;
      const y = py + (sy + 0.5) / 4 - cy;
      let inside: boolean;
      if (shape === 'circle') inside = x * x + y * y <= r * r;
      else if (shape === 'square') inside = Math.abs(x) <= r * 0.85 && Math.abs(y) <= r * 0.85;
      else {
        // Upward triangle with apex (0, −r), base y = +0.8r spanning ±r.
        const t = (y + r) / (1.8 * r);
        inside = t >= 0 && t <= 1 && Math.abs(x) <= t * r;
      }
      if (inside) hit++;
    }
  }
  return hit / 16;
}

/** Renders a spec: frames [F, H, W, 3] in [-1, 1]; the object grows by `growth` over the clip. */
export function renderClip(spec: ClipSpec, frames: number, height: number, width: number, pixelsPerFrame: number, growth = 0): Float32Array {
  const out = new Float32Array(frames * height * width * 3);
  const fg = COLOUR_RGB[spec.colour];
  const bg = BACKGROUND_RGB[spec.background];
  const [ux, uy] = directionVector(spec.direction);
  for (let f = 0; f < frames; f++) {
    const cx = spec.x0 + ux * pixelsPerFrame * f;
    const cy = spec.y0 + uy * pixelsPerFrame * f;
    const r = spec.size * (1 + (growth * f) / Math.max(1, frames - 1));
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const a = Math.abs(x + 0.5 - cx) > r + 1 || Math.abs(y + 0.5 - cy) > r + 1 ? 0 : coverage(spec.shape, cx, cy, r, x, y);
        const o = ((f * height + y) * width + x) * 3;
        for (let c = 0; c < 3; c++) out[o + c] = 2 * (a * fg[c] + (1 - a) * bg[c]) - 1;
      }
    }
  }
  return out;
}

/** The dataset: `get(i)` is a pure function of (seed, i). */
export class ShapesDataset {
  readonly frames: number;
  readonly height: number;
  readonly width: number;
  readonly seed: number;
  readonly pixelsPerFrame: Readonly<Record<Speed, number>>;
  readonly excludeHeldOut: boolean;
  readonly growth: number;

  constructor(config: DatasetConfig = {}) {
    this.frames = config.frames ?? 5;
    this.height = config.height ?? 32;
    this.width = config.width ?? 32;
    this.seed = config.seed ?? 0;
    this.pixelsPerFrame = config.pixelsPerFrame ?? { slowly: 1.5, quickly: 3 };
    this.excludeHeldOut = config.excludeHeldOut ?? true;
    this.growth = config.growth ?? 0;
    if (!(this.growth >= 0)) throw new ConfigError(`ShapesDataset: growth must be ≥ 0, got ${this.growth}`);
    if (this.frames < 2 || this.height < 8 || this.width < 8) {
      throw new ConfigError(`ShapesDataset: frames ≥ 2 and height, width ≥ 8 are needed; got frames ${this.frames}, ${this.height}×${this.width}`);
    }
  }

  /** A random spec for index i (resampled until it is not held out, when excluding). */
  specAt(index: number): ClipSpec {
    const rand = uniform(((this.seed * 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    let colour = pick(COLOURS);
    let shape = pick(SHAPES);
    let direction = pick(DIRECTIONS);
    while (this.excludeHeldOut && isHeldOut(colour, shape, direction)) {
      colour = pick(COLOURS);
      shape = pick(SHAPES);
      direction = pick(DIRECTIONS);
    }
    return this.place({ colour, shape, direction, speed: pick(SPEEDS), background: pick(BACKGROUNDS) }, rand);
  }

  /**
   * Places an object so that it stays inside the frame for the whole clip (its size at the start,
   * its grown size at the end; the mean size is that of a clip without growth).
   */
  place(s: Pick<ClipSpec, 'shape' | 'colour' | 'direction' | 'speed' | 'background'>, rand: () => number): ClipSpec {
    const size = (Math.min(this.height, this.width) * (0.14 + 0.05 * rand())) / (1 + this.growth / 2);
    const end = size * (1 + this.growth);
    const travel = this.pixelsPerFrame[s.speed] * (this.frames - 1);
    const [ux, uy] = directionVector(s.direction);
    const span = (extent: number, u: number) => {
      // the start-side margin holds the start size, the far side the grown size after the travel
      const lo = u < 0 ? end + 1 + travel : u > 0 ? size + 1 : end + 1;
      const hi = u > 0 ? extent - end - 1 - travel : extent - end - 1;
      return lo + rand() * Math.max(0, hi - lo);
    };
    return { ...s, size, x0: span(this.width, ux), y0: span(this.height, uy) };
  }

  get(index: number): Clip {
    return this.render(this.specAt(index));
  }

  render(spec: ClipSpec): Clip {
    return {
      spec,
      captionEn: captionEn(spec),
      captionZh: captionZh(spec),
      frames: renderClip(spec, this.frames, this.height, this.width, this.pixelsPerFrame[spec.speed], this.growth),
      shape: [this.frames, this.height, this.width, 3],
    };
  }
}
