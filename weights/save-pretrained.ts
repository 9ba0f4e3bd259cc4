import * as tf from '@tensorflow/tfjs-core';
import type { ConfigJson } from '../src/config/config-schema.js';
import { CheckpointError } from '../src/errors.js';
import type { ComponentFamily } from './component-layout.js';
import { filePaths, fileSystem, listFolder, pathKind } from './file-system.js';
import type { HasNamedWeights } from './load.js';
import { writeSafetensors, type TensorToWrite } from './safetensors.js';

/**
 * Saves a model in the Diffusers / transformers layout of `family` (the inverse of its Diffusers
 * layout in layouts/, whose renames are the identity on the model's own keys): `dir/config.json`
 * (`configJson`, the schema's toJSON) and `dir/<family.stem>.safetensors` with every weight of
 * `namedWeights()` under its checkpoint key, in checkpoint (PyTorch) layout (each slot's `read()`
 * applies the parameter's fromStorage), as float32.
 *
 * Atomic: everything is written into a temporary folder beside `dir`, which then replaces `dir`
 * (an existing folder `dir` is moved aside only once the new one is complete, and put back if the
 * final rename fails). On any failure nothing new is left behind and an existing `dir` is unchanged.
 * An existing `dir` that holds anything but a saved component's two files is refused, never replaced.
 */
export function savePretrained(model: HasNamedWeights, dir: string, family: ComponentFamily, configJson: ConfigJson): void {
  const fs = fileSystem();
  const path = filePaths();
  const target = path.resolve(dir);
  const existing = pathKind(target);
  if (fs.existsSync(target) && existing !== 'folder') throw new CheckpointError('exists and is not a folder; savePretrained writes a folder', target);
  // A folder is replaced whole, so only one that holds nothing but a saved component may be replaced.
  const weightsFile = `${family.stem}.safetensors`;
  const others = existing === 'folder' ? listFolder(target).filter((n) => n !== 'config.json' && n !== weightsFile) : [];
  if (others.length > 0) {
    throw new CheckpointError(
      `holds other files (${others.slice(0, 3).join(', ')}${others.length > 3 ? ', …' : ''}); savePretrained replaces a folder whole, so give an empty or new folder`,
      target,
    );
  }

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
    throw new CheckpointError(`cannot save a model with unset weights (${unset.slice(0, 5).join(', ')}${unset.length > 5 ? ', …' : ''}): load a checkpoint or call initialize() first`, target);
  }

  const parent = path.dirname(target);
  const stamp = `${process.pid}-${Date.now()}`;
  const base = path.basename(target);
  const tmp = path.join(parent, `.${base}.tmp-${stamp}`);
  const old = path.join(parent, `.${base}.old-${stamp}`);
  let created = false;
  try {
    fs.mkdirSync(parent, { recursive: true });
    fs.mkdirSync(tmp);
    created = true;
    fs.writeFileSync(path.join(tmp, family.configFile), `${JSON.stringify(configJson, null, 2)}\n`);
    writeSafetensors(path.join(tmp, `${family.stem}.safetensors`), tensors, { format: 'pt' });
    if (existing === 'folder') {
      fs.renameSync(target, old);
      try {
        fs.renameSync(tmp, target);
      } catch (e) {
        fs.renameSync(old, target);
        throw e;
      }
      try {
        fs.rmSync(old, { recursive: true, force: true });
      } catch {
        /* the new folder is in place; a leftover of the old one is not an error */
      }
    } else {
      fs.renameSync(tmp, target);
    }
  } catch (e) {
    if (created) fs.rmSync(tmp, { recursive: true, force: true });
    const code = (e as NodeJS.ErrnoException).code;
    if (e instanceof CheckpointError || code === undefined) throw e;
    throw new CheckpointError(`cannot save (${code}); nothing was written`, target);
  }
}
