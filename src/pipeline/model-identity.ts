import * as fs from 'node:fs';
import * as path from 'node:path';
import { safetensorsHeaderSha256 } from '../../weights/header-hash.js';
import type { ModelIdentity } from '../video/provenance.js';
import type { ModelIndex } from './model-index.js';

/** `org/name` of a Hugging Face cache folder (`…/models--org--name/snapshots/<rev>/…`) in `p`, if it is one. */
export function hubRepoId(p: string): string | undefined {
  const m = /(?:^|[\\/])models--([^\\/]+?)--([^\\/]+)(?:[\\/]|$)/.exec(p);
  return m ? `${m[1]}/${m[2]}` : undefined;
}

/** The .safetensors files of a component: the file itself, or those directly in its folder (sorted). */
function componentFiles(p: string): string[] {
  if (!fs.statSync(p).isDirectory()) return [p];
  return fs.readdirSync(p).filter((f) => f.endsWith('.safetensors')).sort().map((f) => path.join(p, f));
}

/**
 * The model's identity for provenance: its Hugging Face repo id when it lies in the hub cache, else
 * its resolved folder (the transformer's file for a model given as files), and the SHA-256 of each checkpoint
 * file's safetensors header (transformer, transformer_2, VAE, text encoder), each file named
 * relative to the model folder when it lies inside it.
 */
export async function modelIdentity(index: ModelIndex): Promise<ModelIdentity> {
  const root = path.resolve(index.root);
  const files = [index.transformer, index.transformer2, index.vae, index.textEncoder].filter((p): p is string => p !== undefined).flatMap(componentFiles);
  const checkpoints = [];
  for (const file of files) {
    const abs = path.resolve(file);
    const rel = path.relative(root, abs);
    const inside = rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
    checkpoints.push({ file: inside ? rel.split(path.sep).join('/') : abs, headerSha256: await safetensorsHeaderSha256(abs) });
  }
  return { id: hubRepoId(root) ?? (index.layout === 'files' ? path.resolve(index.transformer) : root), checkpoints };
}
