/**
 * Text to video in a few lines: load a Wan model folder, generate, write the video.
 *
 *   npx tsx examples/generate.ts [model folder] [out.mp4|out.gif] ["prompt"] [first-frame.png]
 *
 * The model folder is a Diffusers Wan checkpoint (model_index.json) or an original Wan release;
 * without one, the model `wan-tfjs generate` uses without --model: $WAN_MODEL, else the toy model
 * the package ships. Defaults: out wan-example.gif, prompt "a red circle moving right".
 * With a PNG, an image-to-video model (Wan2.2-TI2V-5B, Wan2.2-I2V-A14B) makes the video from that
 * first frame; the video takes the image's size.
 * Frames, size, steps and guidance come from the model's defaults; pass them to textToVideo to
 * change them. MP4 goes through ffmpeg when it is found, else through the built-in (uncompressed) writer.
 */
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { WanError, WanPipeline, decodePng, pngToImage, saveVideo, selectBackend } from 'wan-tfjs';

const [modelDir, out = 'wan-example.gif', prompt = 'a red circle moving right', firstFrame] = process.argv.slice(2);

tf.enableProdMode();
console.log(`backend: ${await selectBackend()}`);

// The first frame as [H, W, 3] in [0, 1], the layout of the frames the pipeline returns; read before
// the (slow) model load so that a bad file fails at once.
let image: tf.Tensor3D | undefined;
try {
  image = firstFrame ? pngToImage(decodePng(fs.readFileSync(firstFrame), firstFrame)) : undefined;
} catch (e) {
  console.error(`cannot read ${firstFrame}: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
const pipe = await WanPipeline.fromPretrained(modelDir);   // undefined: $WAN_MODEL, else the bundled toy model
try {
  const result = await pipe.textToVideo({
    prompt,
    image,
    negativePrompt: 'blurry, static, low quality',
    seed: 42,
    onStep: ({ step, total, timestep, elapsedMs }) => console.log(`step ${step}/${total} (t=${timestep}) ${(elapsedMs / 1000).toFixed(1)}s`),
  });
  const saved = await saveVideo(result.frames, out, {
    fps: result.fps,
    metadata: { prompt, seed: result.seed, steps: result.numInferenceSteps, guidance: result.guidanceScale, software: 'wan-tfjs example' },
  });
  result.frames.dispose();
  console.log(`wrote ${saved.path}: ${saved.frameCount} frames, ${saved.width}x${saved.height}, ${saved.fps} fps${firstFrame ? `, from ${firstFrame}` : ''}`);
} catch (e) {
  // The library's errors (WanError: ConfigError, ShapeError, …) say what to change.
  if (!(e instanceof WanError)) throw e;
  console.error(`${e.name}: ${e.message}`);
  process.exitCode = 1;
} finally {
  image?.dispose();
  pipe.dispose();
}
