import type { ComponentLayout } from '../../weights/component-layout.js';
import { SafetensorsFile } from '../../weights/safetensors.js';

/** The prefix the repack puts before every Diffusers key. */
const PREFIX = 'vae.';

/**
 * A synthetic single-file layout: a Wan VAE repacked as one .safetensors whose keys are Diffusers'
 * names prefixed `vae.`, with its Diffusers config.json carried as JSON in the file's metadata
 * (`config`). Adding a layout is this one file (and an entry in a family's list).
 */
export const REPACKED_WAN_VAE: ComponentLayout = {
  name: 'repacked single-file keys (vae.*)',
  matches: (source) => source.keys().every((k) => k.startsWith(PREFIX)),
  readsConfigFile: false,
  config: (_file, source) => {
    const text = source instanceof SafetensorsFile ? source.metadata.config : undefined;
    return text === undefined ? undefined : { json: JSON.parse(text) as Record<string, unknown> };
  },
  rename: () => (key) => key.slice(PREFIX.length),
};
