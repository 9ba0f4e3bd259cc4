import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findComponentConfig } from '../../weights/component.js';
import { TOKENIZER_FILES } from '../../weights/families.js';
import { CheckpointError, ConfigError } from '../errors.js';

/** Hugging Face repos whose snapshots hold Wan's umT5 tokenizer (tokenizer.json at the root or in tokenizer/). */
export const HF_TOKENIZER_REPOS = ['google/umt5-xxl', 'Wan-AI/Wan2.1-T2V-1.3B-Diffusers'] as const;

/** The Hugging Face hub cache: `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. */
export function hfHubCache(env: Readonly<Record<string, string | undefined>>): string {
  return env.HF_HOME ? path.join(env.HF_HOME, 'hub') : path.join(os.homedir(), '.cache', 'huggingface', 'hub');
}

/** The folder holding tokenizer.json in a cached snapshot of `repo` (models--org--name/snapshots/<rev>/[tokenizer/]), if any. */
function cachedTokenizer(hub: string, repo: string): string | undefined {
  const snapshots = path.join(hub, `models--${repo.replace('/', '--')}`, 'snapshots');
  if (!fs.existsSync(snapshots)) return undefined;
  for (const rev of fs.readdirSync(snapshots).sort()) {
    for (const dir of [path.join(snapshots, rev, 'tokenizer'), path.join(snapshots, rev)]) {
      if (fs.existsSync(path.join(dir, TOKENIZER_FILES.configFile))) return dir;
    }
  }
  return undefined;
}

/**
 * Where the tokenizer of a single text-encoder file (which carries none) is: `given` (`--tokenizer`:
 * tokenizer.json, its folder, or a Diffusers model folder with tokenizer/), else a cached snapshot of
 * google/umt5-xxl or Wan-AI/Wan2.1-T2V-1.3B-Diffusers in the HF hub cache. Returns the tokenizer.json;
 * a ConfigError naming `flag` and the places looked in when there is none.
 */
export function locateTokenizer(given: string | undefined, env: Readonly<Record<string, string | undefined>>, flag = '--tokenizer'): string {
  if (given !== undefined) {
    try {
      return findComponentConfig(given, TOKENIZER_FILES);
    } catch (e) {
      if (e instanceof CheckpointError) throw new ConfigError(`${flag} ${given}: ${e.message}`);
      throw e;
    }
  }
  const hub = hfHubCache(env);
  for (const repo of HF_TOKENIZER_REPOS) {
    const dir = cachedTokenizer(hub, repo);
    if (dir) return path.join(dir, TOKENIZER_FILES.configFile);
  }
  throw new ConfigError(
    `the text encoder file carries no tokenizer: pass ${flag} DIR (a Diffusers Wan folder or its tokenizer/, or a folder with tokenizer.json); ` +
      `looked in the HF cache ${hub} for ${HF_TOKENIZER_REPOS.map((r) => `models--${r.replace('/', '--')}/snapshots/*/{tokenizer/,}tokenizer.json`).join(' and ')}`,
  );
}
