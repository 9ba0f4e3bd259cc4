import * as tf from '@tensorflow/tfjs-core';
import type { ConfigJson } from '../src/config/config-schema.js';
import { CheckpointError, WanError } from '../src/errors.js';
import type { ComponentFamily } from './component-layout.js';
import { filePaths, fileSystem, listFolder, pathKind } from './file-system.js';
import type { HasNamedWeights } from './load.js';
import { writeSafetensors, type TensorToWrite } from './safetensors.js';

/**
 * Replacing a folder atomically: everything is written into a temporary folder beside `target`,
 * which then takes its place (an existing folder is moved aside only once the new one is complete,
 * and put back if the final rename fails). On any failure nothing new is left behind and an
 * existing folder is unchanged. An existing folder holding any name `allowed` rejects is refused,
 * never replaced (it is replaced whole).
 */
export interface FolderReplacement {
  readonly target: string;
  /** The temporary folder to write into, beside target. */
  readonly tmp: string;
  /** Where an existing target is moved aside while the new one takes its place. */
  readonly old: string;
  readonly existed: boolean;
}

/** Checks that `dir` may be replaced (absent, or a folder of `allowed` names only) and names its temporary folder; writes nothing. */
export function planFolderReplacement(dir: string, allowed: (name: string) => boolean, what: string): FolderReplacement {
  const fs = fileSystem();
  const path = filePaths();
  const target = path.resolve(dir);
  const kind = pathKind(target);
  if (fs.existsSync(target) && kind !== 'folder') throw new CheckpointError('exists and is not a folder; savePretrained writes a folder', target);
  const others = kind === 'folder' ? listFolder(target).filter((n) => !allowed(n)) : [];
  if (others.length > 0) {
    throw new CheckpointError(
      `holds other files (${others.slice(0, 3).join(', ')}${others.length > 3 ? ', …' : ''}); savePretrained replaces a folder whole, so give an empty or new folder (or one holding only ${what})`,
      target,
    );
  }
  const stamp = `${process.pid}-${Date.now()}`;
  const beside = (what: string) => path.join(path.dirname(target), `.${path.basename(target)}.${what}-${stamp}`);
  return { target, tmp: beside('tmp'), old: beside('old'), existed: kind === 'folder' };
}

/** Creates the temporary folder (and the target's parent). */
export function startFolderReplacement(r: FolderReplacement): void {
  const fs = fileSystem();
  fs.mkdirSync(filePaths().dirname(r.target), { recursive: true });
  fs.mkdirSync(r.tmp);
}

/** Puts the complete temporary folder in the target's place. */
export function finishFolderReplacement(r: FolderReplacement): void {
  const fs = fileSystem();
  if (!r.existed) {
    fs.renameSync(r.tmp, r.target);
    return;
  }
  fs.renameSync(r.target, r.old);
  try {
    fs.renameSync(r.tmp, r.target);
  } catch (e) {
    fs.renameSync(r.old, r.target);
    throw e;
  }
  try {
    fs.rmSync(r.old, { recursive: true, force: true });
  } catch {
    /* the new folder is in place; a leftover of the old one is not an error */
  }
}

/** After a failure: removes the temporary folder; returns the error to throw (a file-system error becomes a CheckpointError naming the target). */
export function abandonFolderReplacement(r: FolderReplacement, e: unknown): unknown {
  fileSystem().rmSync(r.tmp, { recursive: true, force: true });
  const code = (e as NodeJS.ErrnoException).code;
  if (e instanceof WanError || code === undefined) return e;
  return new CheckpointError(`cannot save (${code}); nothing was written`, r.target);
}

/**
 * Saves a model in the Diffusers / transformers layout of `family` (the inverse of its Diffusers
 * layout in layouts/, whose renames are the identity on the model's own keys): `dir/config.json`
 * (`configJson`, the schema's toJSON) and `dir/<family.stem>.safetensors` with every weight of
 * `namedWeights()` under its checkpoint key, in checkpoint (PyTorch) layout (each slot's `read()`
 * applies the parameter's fromStorage), as float32. Atomic (FolderReplacement): an existing `dir`
 * that holds anything but a saved component's two files is refused.
 */
export function savePretrained(model: HasNamedWeights, dir: string, family: ComponentFamily, configJson: ConfigJson): void {
  const weightsFile = `${family.stem}.safetensors`;
  const replacement = planFolderReplacement(dir, (n) => n === family.configFile || n === weightsFile, 'a saved component');

  const tensors: Record<string, TensorToWrite> = {};
  const unset: string[] = [];
  for (const [key, slot] of model.namedWeights()) {
    const t = slot.read();
    if (t === undefined) {
      unset.push(key);
      continue;
    }
    const f32 = t.dtype === 'float32' ? t : tf.cast(t, 'float32');
    tensors[key] = { shape: [...t.shape], data: f32.dataSync() as Float32Array, dtype: 'F32' };
    if (f32 !== t) f32.dispose();
    t.dispose();
  }
  if (unset.length) {
    throw new CheckpointError(`cannot save a model with unset weights (${unset.slice(0, 5).join(', ')}${unset.length > 5 ? ', …' : ''}): load a checkpoint or call initialize() first`, replacement.target);
  }

  const path = filePaths();
  try {
    startFolderReplacement(replacement);
    fileSystem().writeFileSync(path.join(replacement.tmp, family.configFile), `${JSON.stringify(configJson, null, 2)}\n`);
    writeSafetensors(path.join(replacement.tmp, weightsFile), tensors, { format: 'pt' });
    finishFolderReplacement(replacement);
  } catch (e) {
    throw abandonFolderReplacement(replacement, e);
  }
}
