import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.js';

/** This module's folder: from import.meta.url (ESM), else __dirname (the CommonJS build). */
function moduleDir(): string | undefined {
  if (typeof import.meta.url === 'string' && import.meta.url) return path.dirname(fileURLToPath(import.meta.url));
  return typeof __dirname === 'string' ? __dirname : undefined;
}

/**
 * The package root: the nearest folder above this module with the package.json named wan-tfjs
 * (node_modules/wan-tfjs in an installed package, the checkout in the repository), if any.
 */
export function packageRoot(): string | undefined {
  let dir = moduleDir();
  while (dir !== undefined) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        if ((JSON.parse(fs.readFileSync(pj, 'utf-8')) as { name?: string }).name === 'wan-tfjs') return dir;
      } catch {
        // an unreadable package.json is not ours: keep looking above it
      }
    }
    const up = path.dirname(dir);
    dir = up === dir ? undefined : up;
  }
  return undefined;
}

/**
 * The model used when none is given (the CLI's `generate` without `--model`,
 * `WanPipeline.fromPretrained()` without a folder): `$WAN_MODEL`, else the toy model the package
 * ships in `models/toy` under `root`. `argument` names, in the error, what was not given.
 */
export function defaultModelDir(env: Readonly<Record<string, string | undefined>> = process.env, root: string | undefined = packageRoot(), argument = 'model'): string {
  if (env.WAN_MODEL) return env.WAN_MODEL;
  const toy = root ? path.join(root, 'models', 'toy') : undefined;
  if (toy && fs.existsSync(path.join(toy, 'model_index.json'))) return toy;
  throw new ConfigError(
    `no ${argument} given and the default model (models/toy) is not installed: pass ${argument === 'model' ? 'a model folder' : `${argument} <folder>`} ` +
      '(a Diffusers Wan folder with model_index.json, or an original Wan release) or set WAN_MODEL',
  );
}
