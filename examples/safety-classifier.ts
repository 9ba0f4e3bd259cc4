/**
 * A safety checker that runs an image classifier from @huggingface/transformers (Transformers.js) on
 * the frames of a clip before saveVideo writes it, after the built-in prompt blocklist. A flagged
 * clip is not written: saveVideo throws a SafetyError with the classifier's reason and frame.
 *
 *   npm install @huggingface/transformers      (not a dependency of wan-tfjs)
 *   npx tsx examples/safety-classifier.ts [out.gif] [classifier model]
 *
 * Defaults: wan-safety-example.gif, the classifier Falconsai/nsfw_image_detection (labels "nsfw" and
 * "normal", downloaded from the Hugging Face Hub on first use). Without @huggingface/transformers the
 * example says how to install it and exits with code 0.
 */
import { WanPipeline, SafetyError, promptBlocklist, saveVideo, type SafetyChecker } from 'wan-tfjs';

const out = process.argv[2] ?? 'wan-safety-example.gif';
const classifierModel = process.argv[3] ?? 'Falconsai/nsfw_image_detection';
/** The score of label "nsfw" at or above which a frame is flagged. */
const THRESHOLD = 0.5;
/** Frames classified per clip, evenly spaced (the first and the last included). */
const SAMPLED_FRAMES = 4;

/** What this example uses of @huggingface/transformers. */
interface Transformers {
  pipeline(task: 'image-classification', model: string): Promise<(image: unknown) => Promise<Array<{ label: string; score: number }>>>;
  RawImage: new (data: Uint8Array, width: number, height: number, channels: 3) => unknown;
}

async function loadTransformers(): Promise<Transformers | undefined> {
  const name = '@huggingface/transformers';
  try {
    const mod: unknown = await import(name);
    const m = mod as Partial<Transformers>;
    return typeof m.pipeline === 'function' && typeof m.RawImage === 'function' ? (mod as Transformers) : undefined;
  } catch {
    return undefined;
  }
}

const transformers = await loadTransformers();
if (!transformers) {
  console.log('examples/safety-classifier.ts needs @huggingface/transformers, which wan-tfjs does not depend on: npm install @huggingface/transformers');
} else {
  const classify = await transformers.pipeline('image-classification', classifierModel);
  const blocklist = promptBlocklist();
  const checker: SafetyChecker = async (input) => {
    const byPrompt = await blocklist(input);
    if (byPrompt.flagged) return byPrompt;
    const { frames } = input;
    const picks = [...new Set(Array.from({ length: SAMPLED_FRAMES }, (_, i) => Math.round((i * (frames.count - 1)) / Math.max(1, SAMPLED_FRAMES - 1))))];
    for (const i of picks) {
      const labels = await classify(new transformers.RawImage(await frames.frame(i), frames.width, frames.height, 3));
      const nsfw = labels.find((l) => l.label.toLowerCase() === 'nsfw')?.score ?? 0;
      if (nsfw >= THRESHOLD) return { flagged: true, reason: `${classifierModel} scores the frame "nsfw" ${nsfw.toFixed(2)}`, frame: i };
    }
    return { flagged: false };
  };

  const prompt = 'a red circle moving right';
  const pipe = await WanPipeline.fromPretrained();
  const { frames, fps, seed } = await pipe.textToVideo({ prompt, seed: 42 });
  try {
    const saved = await saveVideo(frames, out, { fps, metadata: { prompt, seed }, safetyChecker: checker });
    console.log(`passed the checker; wrote ${saved.path}`);
  } catch (e) {
    if (!(e instanceof SafetyError)) throw e;
    console.log(`not written: ${e.reason}${e.frame !== undefined ? ` (frame ${e.frame})` : ''}`);
  } finally {
    frames.dispose();
    pipe.dispose();
  }
}
