import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import type { DecodedPng } from './png-decoder.js';

export type WatermarkPosition = 'top-left' | 'top-right' | 'bottom-left' | 'bottom-right';

export const WATERMARK_POSITIONS: readonly WatermarkPosition[] = ['top-left', 'top-right', 'bottom-left', 'bottom-right'];

/** A logo: RGB pixels [height, width, 3] and alpha [height, width], 0–255 each (a decodePng result; without `alpha` it is opaque). */
export type WatermarkImage = Pick<DecodedPng, 'width' | 'height' | 'rgb' | 'alpha'>;

export interface Watermark {
  image: WatermarkImage;
  /** The corner it sits in (default 'bottom-right'). */
  position?: WatermarkPosition;
  /** The logo's width as a fraction of the frame's width, in (0, 1] (default 0.2); its aspect ratio is kept. */
  scale?: number;
  /** Multiplies the logo's alpha, in [0, 1] (default 1). */
  opacity?: number;
  /** Pixels between the logo and the frame's edges (default 8); an integer ≥ 0. */
  margin?: number;
}

/** Where and how large the logo lands in a frame of `height` × `width`. */
export interface WatermarkPlacement {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** How an error names a watermark option (saveVideo's `watermark.scale`, the CLI's `--watermark-scale`). */
export type OptionName = (option: 'position' | 'scale' | 'opacity' | 'margin' | 'image') => string;

/**
 * Checks a watermark's options apart from its fit in the frame: each error is a ConfigError naming
 * the option as `name(option)` gives it (default `watermark.<option>`).
 */
export function checkWatermark(w: Watermark, name: OptionName = (o) => `watermark.${o}`): void {
  const { image } = w;
  const position = w.position ?? 'bottom-right';
  const scale = w.scale ?? 0.2;
  const opacity = w.opacity ?? 1;
  const margin = w.margin ?? 8;
  if (!WATERMARK_POSITIONS.includes(position)) throw new ConfigError(`${name('position')}: got '${String(position)}', expected one of ${WATERMARK_POSITIONS.join(', ')}`);
  if (!(scale > 0 && scale <= 1)) throw new ConfigError(`${name('scale')}: got ${scale}, expected a fraction of the frame's width in (0, 1]`);
  if (!(opacity >= 0 && opacity <= 1)) throw new ConfigError(`${name('opacity')}: got ${opacity}, expected a number in [0, 1]`);
  if (!(Number.isInteger(margin) && margin >= 0)) throw new ConfigError(`${name('margin')}: got ${margin}, expected an integer ≥ 0 (pixels)`);
  if (!(Number.isInteger(image.width) && Number.isInteger(image.height) && image.width > 0 && image.height > 0)) throw new ConfigError(`${name('image')}: got ${image.width}×${image.height}, expected positive integer sides`);
  if (image.rgb.length !== image.width * image.height * 3) throw new ConfigError(`${name('image')}: rgb has ${image.rgb.length} values, expected ${image.width}×${image.height}×3`);
  if (image.alpha && image.alpha.length !== image.width * image.height) throw new ConfigError(`${name('image')}: alpha has ${image.alpha.length} values, expected ${image.width}×${image.height}`);
}

/** Checks a watermark's options (checkWatermark, errors named by `name`) and places it in a frame of `height` × `width`. */
export function watermarkPlacement(w: Watermark, height: number, width: number, name?: OptionName): WatermarkPlacement {
  checkWatermark(w, name);
  const { image } = w;
  const position = w.position ?? 'bottom-right';
  const scale = w.scale ?? 0.2;
  const margin = w.margin ?? 8;
  const logoWidth = Math.max(1, Math.round(scale * width));
  const logoHeight = Math.max(1, Math.round((logoWidth * image.height) / image.width));
  if (logoWidth + 2 * margin > width || logoHeight + 2 * margin > height) {
    throw new ConfigError(`${(name ?? ((o) => `watermark.${o}`))('scale')}: a ${logoWidth}×${logoHeight} logo with a ${margin}-pixel margin does not fit a ${width}×${height} frame; lower the scale or the margin`);
  }
  const top = position.startsWith('top') ? margin : height - margin - logoHeight;
  const left = position.endsWith('left') ? margin : width - margin - logoWidth;
  return { top, left, height: logoHeight, width: logoWidth };
}

/**
 * The logo as two frame-sized layers: `colour` [H, W, 3] in [0, 1] and `weight` [H, W, 1], its
 * alpha × opacity where the logo lies (resized with tf.image.resizeBilinear) and 0 elsewhere. The
 * caller disposes both.
 */
export function watermarkLayers(w: Watermark, height: number, width: number): { colour: tf.Tensor3D; weight: tf.Tensor3D } {
  const p = watermarkPlacement(w, height, width);
  const { image } = w;
  const opacity = w.opacity ?? 1;
  return tf.tidy(() => {
    const rgb = tf.div(tf.tensor3d(image.rgb, [image.height, image.width, 3], 'float32'), 255);
    const alpha = image.alpha ? tf.div(tf.tensor3d(image.alpha, [image.height, image.width, 1], 'float32'), 255) : tf.ones([image.height, image.width, 1]);
    const resized = tf.image.resizeBilinear(tf.concat([rgb, alpha], 2) as tf.Tensor3D, [p.height, p.width]);
    const pads: Array<[number, number]> = [
      [p.top, height - p.top - p.height],
      [p.left, width - p.left - p.width],
      [0, 0],
    ];
    const colour = tf.pad(tf.slice(resized, [0, 0, 0], [p.height, p.width, 3]), pads);
    const weight = tf.pad(tf.mul(tf.clipByValue(tf.slice(resized, [0, 0, 3], [p.height, p.width, 1]), 0, 1), opacity), pads);
    return { colour: colour as tf.Tensor3D, weight: weight as tf.Tensor3D };
  });
}

/** out = (1 − weight)·frames + weight·colour over frames [..., H, W, 3] in [0, 1], with the layers of watermarkLayers. */
export function blendLayers<T extends tf.Tensor>(frames: T, layers: { colour: tf.Tensor3D; weight: tf.Tensor3D }): T {
  return tf.tidy(() => tf.add(tf.mul(frames, tf.sub(1, layers.weight)), tf.mul(layers.colour, layers.weight)) as T);
}

/**
 * Blends a logo into every frame of `frames` [F, H, W, 3] (float32 in [0, 1]):
 * out = (1 − a·opacity)·frame + a·opacity·logo, where a is the logo's alpha, the logo resized to
 * `scale` of the frame's width in the corner `position`, `margin` pixels from the edges. Options
 * out of range are ConfigErrors naming the option. Returns a new tensor; `frames` is not disposed.
 */
export function applyWatermark(frames: tf.Tensor4D, w: Watermark): tf.Tensor4D {
  if (frames.rank !== 4 || frames.shape[3] !== 3) throw new ShapeError('frames', `[${frames.shape.join(', ')}]`, '[F, H, W, 3]');
  const layers = watermarkLayers(w, frames.shape[1], frames.shape[2]);
  try {
    return tf.tidy(() => blendLayers(tf.cast(frames, 'float32') as tf.Tensor4D, layers));
  } finally {
    layers.colour.dispose();
    layers.weight.dispose();
  }
}
