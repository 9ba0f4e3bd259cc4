import type { GenerateOptions } from './generate-options.js';
import { checkPixelRange } from './image-condition.js';
import { checkFiniteInput, valueRange } from './tensor-checks.js';

/**
 * The checks of a call's tensor values, made when it runs (each one reduction and a read): the
 * embeddings and latents finite (NonFiniteError naming the argument), the images finite and in [0, 1].
 */
export async function checkInputValues(o: GenerateOptions): Promise<void> {
  for (const [name, t] of [['promptEmbeds', o.promptEmbeds], ['negativePromptEmbeds', o.negativePromptEmbeds], ['latents', o.latents]] as const) {
    if (t) await checkFiniteInput(name, t);
  }
  for (const [name, t] of [['image', o.image], ['lastImage', o.lastImage]] as const) {
    if (!t) continue;
    await checkFiniteInput(name, t);
    const [lo, hi] = await valueRange(t);
    checkPixelRange(name, lo, hi);
  }
}
