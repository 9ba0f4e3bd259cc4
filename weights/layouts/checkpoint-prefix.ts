/** Prefixes some single-file repacks (ComfyUI) put before every key of a DiT checkpoint. */
export const CHECKPOINT_KEY_PREFIXES: readonly string[] = ['model.diffusion_model.', 'diffusion_model.'];

/** `key` without a leading repack prefix such as `model.diffusion_model.`. */
export function stripCheckpointPrefix(key: string): string {
  for (const p of CHECKPOINT_KEY_PREFIXES) if (key.startsWith(p)) return key.slice(p.length);
  return key;
}
