import { ConfigError, OutOfMemoryError, WanError } from '../errors.js';
import type { MemoryBudget } from '../pipeline/memory-budget.js';
import type { PipelineSpec } from '../pipeline/pipeline-spec.js';
import { resolveSettings } from '../pipeline/resolve-settings.js';
import type { JobSpec } from './job-queue.js';

/**
 * The budget of the largest worker a job could meet: unlimited memory (the server cannot know the
 * workers' machines), but no tensor over 2^32 − 1 elements, the length limit of a JS typed array on
 * every backend, at the smallest element size (bf16). A job over it runs nowhere.
 */
const ANY_WORKER: MemoryBudget = {
  backend: 'any',
  freeBytes: Number.POSITIVE_INFINITY,
  bytesPerElement: 2,
  maxTensorElements: 2 ** 32 - 1,
  compositeAttention: false,
};

/** resolveSettings' names of the settings → the request's fields, so an error names what the client sent. */
const REQUEST_FIELDS: ReadonlyArray<[RegExp, string]> = [
  [/^numInferenceSteps\b/, 'steps'],
  [/^guidanceScale\b/, 'guidance'],
];

/**
 * Checks a parsed job (parseJobSpec's) against the model before it is queued, as resolveSettings
 * does for a call (frames, size, steps, fps against the configs), and refuses a size or frame count
 * that no worker could run (ANY_WORKER: a tensor over the typed-array limit); the memory of a real
 * worker is that worker's to judge. A refusal is a ConfigError whose message starts with the
 * request's field (`numFrames: …`, `width: …`, `steps: …`), which the server answers with a 400.
 */
export function checkJobSpec(spec: PipelineSpec, job: JobSpec): void {
  try {
    // the settings against the configs first (no memory limit), then the resolved size against ANY_WORKER
    const call = resolveSettings(
      spec,
      { prompt: job.prompt, negativePrompt: job.negativePrompt, seed: job.seed, numFrames: job.numFrames, width: job.width, height: job.height, numInferenceSteps: job.steps, guidanceScale: job.guidance, fps: job.fps },
      { decode: true, budget: { ...ANY_WORKER, maxTensorElements: Number.POSITIVE_INFINITY } },
    );
    try {
      call.checkMemory(true, ANY_WORKER);
    } catch (e) {
      if (!(e instanceof OutOfMemoryError)) throw e;
      throw new ConfigError(
        `${e.argument}: ${call.numFrames} frames at ${call.width}×${call.height} need a tensor of more than 2^32 − 1 elements, more than any worker's backend holds; ask for a smaller size or fewer frames`,
      );
    }
  } catch (e) {
    if (!(e instanceof WanError)) throw e;
    // resolveSettings names the settings as the library does; the client sent the request's names
    throw new ConfigError(REQUEST_FIELDS.reduce((m, [from, to]) => m.replace(from, to), e.message));
  }
}
