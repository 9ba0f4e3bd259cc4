import type * as NodeFs from 'node:fs';
import type * as NodePath from 'node:path';
import { safeText } from '../src/describe.js';
import { CheckpointError, WanError } from '../src/errors.js';

/**
 * Node's `fs` and `path`, looked up when a file is first read (process.getBuiltinModule) rather
 * than imported: no module of weights/ or layers/ imports a Node built-in, so `wan-tfjs/layers`
 * and `wan-tfjs/weights` bundle for any platform, and only reading or writing files needs Node.
 * This is the one place the library's checkpoint and config I/O reaches the file system.
 */
function builtin<T>(id: 'node:fs' | 'node:path'): T {
  const module = globalThis.process?.getBuiltinModule?.(id);
  if (module === undefined) {
    throw new WanError(
      `reading checkpoint files needs Node.js ≥ 20.16 (process.getBuiltinModule('${id}')); elsewhere, ` +
        'construct the model and fill it with loadWeights from a TensorSource',
    );
  }
  return module as T;
}

/** Node's fs module. */
export function fileSystem(): typeof NodeFs {
  return builtin<typeof NodeFs>('node:fs');
}

/** Node's path module. */
export function filePaths(): typeof NodePath {
  return builtin<typeof NodePath>('node:path');
}

/** What is at `p`: a file, a folder, or nothing (or something unreadable). */
export function pathKind(p: string): 'file' | 'folder' | undefined {
  try {
    const stat = fileSystem().statSync(p);
    return stat.isFile() ? 'file' : stat.isDirectory() ? 'folder' : undefined;
  } catch {
    return undefined;
  }
}

/** The names in a folder; a CheckpointError naming it when it cannot be listed. */
export function listFolder(folder: string): string[] {
  try {
    return fileSystem().readdirSync(folder);
  } catch (e) {
    throw new CheckpointError(`cannot list (${(e as NodeJS.ErrnoException).code ?? safeText((e as Error).message)})`, folder);
  }
}
