/**
 * Writing frames made by any tfjs code as a video: a GIF (pure JS), a folder of PNGs (pure JS),
 * and an MP4 (H.264 through ffmpeg when it is installed, else the built-in uncompressed writer),
 * then reading each back.
 *
 *   npx tsx examples/write-video.ts [output folder]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { decodeGif, probeMp4, saveVideo } from 'wan-tfjs';

const outDir = process.argv[2] ?? 'wan-video-example';
fs.mkdirSync(outDir, { recursive: true });

// A disc circling over a colour gradient: frames [F, H, W, 3] float32 in [0, 1].
const [F, H, W] = [24, 64, 96];
const frames = tf.tidy(() => {
  const ys = tf.reshape(tf.linspace(0, 1, H), [1, H, 1, 1]);
  const xs = tf.reshape(tf.linspace(0, 1, W), [1, 1, W, 1]);
  const angle = tf.reshape(tf.mul(tf.range(0, F, 1, 'float32'), (2 * Math.PI) / F), [F, 1, 1, 1]);
  const cx = tf.add(0.5, tf.mul(0.3, tf.cos(angle)));
  const cy = tf.add(0.5, tf.mul(0.3, tf.sin(angle)));
  const d2 = tf.add(tf.square(tf.sub(xs, cx)), tf.square(tf.mul(tf.sub(ys, cy), H / W)));
  const disc = tf.cast(tf.less(d2, 0.01), 'float32');
  const background = tf.concat([tf.mul(tf.ones([F, H, W, 1]), xs), tf.mul(tf.ones([F, H, W, 1]), ys), tf.fill([F, H, W, 1], 0.4)], 3);
  return tf.add(tf.mul(background, tf.sub(1, disc)), tf.mul(disc, tf.tensor([1, 0.9, 0.2])));
});

const metadata = { prompt: 'a yellow disc circling over a gradient', software: 'wan-tfjs example' };
const gif = await saveVideo(frames, path.join(outDir, 'disc.gif'), { fps: 12, metadata });
const info = decodeGif(fs.readFileSync(gif.path));
console.log(`gif: ${info.frames.length} frames, ${info.width}x${info.height}, ${info.fps.toFixed(2)} fps, ${gif.bytes} bytes`);

const png = await saveVideo(frames, path.join(outDir, 'disc-frames'), { fps: 12, format: 'png', metadata });
console.log(`png: ${fs.readdirSync(png.path).length} files in ${png.path}`);

const mp4 = await saveVideo(frames, path.join(outDir, 'disc.mp4'), { fps: 12, metadata });
const m = await probeMp4(mp4.path);
console.log(`mp4: ${m.frameCount} frames, ${m.width}x${m.height}, ${m.fps.toFixed(2)} fps, ${mp4.bytes} bytes (${mp4.encoder})`);
frames.dispose();
