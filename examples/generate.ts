/**
 * Text to video in a few lines: load a Wan model folder, generate, write the video.
 *
 *   npx tsx examples/generate.ts <model folder> [out.mp4|out.gif] ["prompt"]
 *
 * The model folder is a Diffusers Wan checkpoint (model_index.json) or an original Wan release.
 * Frames, size, steps and guidance come from the model's defaults; pass them to textToVideo to
 * change them. MP4 goes through ffmpeg when it is found, else through the built-in (uncompressed) writer.
 */
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/backend/select.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { saveVideo } from '../src/video/save-video.js';

const [modelDir, out = 'wan-example.gif', prompt = 'a red fox running through fresh snow, morning light'] = process.argv.slice(2);
if (!modelDir) {
  console.error('usage: npx tsx examples/generate.ts <model folder> [out.mp4|out.gif] ["prompt"]');
  process.exit(1);
}

tf.enableProdMode();
console.log(`backend: ${await selectBackend()}`);

const pipe = await WanPipeline.fromPretrained(modelDir);
try {
  const result = await pipe.textToVideo({
    prompt,
    negativePrompt: 'blurry, static, low quality',
    seed: 42,
    onStep: ({ step, total, timestep, elapsedMs }) => console.log(`step ${step}/${total} (t=${timestep}) ${(elapsedMs / 1000).toFixed(1)}s`),
  });
  const saved = await saveVideo(result.frames, out, {
    fps: result.fps,
    metadata: { prompt, seed: result.seed, steps: result.numInferenceSteps, guidance: result.guidanceScale, software: 'wan-tfjs example' },
  });
  result.frames.dispose();
  console.log(`wrote ${saved.path}: ${saved.frameCount} frames, ${saved.width}x${saved.height}, ${saved.fps} fps`);
} finally {
  pipe.dispose();
}
