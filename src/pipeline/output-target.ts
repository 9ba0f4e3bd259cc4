import * as fs from 'node:fs';
import * as path from 'node:path';
import { outputError, removeQuietly, tempNames } from '../video/output-file.js';
import { OutputFileError } from '../video/video-error.js';

/** NAME_MAX of most file systems: bytes of one name. */
const NAME_MAX = 255;

function statOf(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch {
    return undefined;
  }
}

/** The error saveVideo would report for a system error `code` on `target`. */
function refused(target: string, code: string): unknown {
  return outputError(Object.assign(new Error(code), { code, syscall: 'open' }), target);
}

/**
 * Checks, before any work, that a video can be written to `file` as a file or as a folder of PNG
 * frames (`kind`): its name fits the file system, nothing of the other kind is in the way, and the
 * nearest existing folder above it takes a new file (a temporary one is created and removed there).
 * A refusal is the OutputFileError saveVideo would raise after the generation.
 */
export function checkOutputTarget(file: string, kind: 'file' | 'folder'): void {
  const target = path.resolve(file);
  if (Buffer.byteLength(path.basename(target)) > NAME_MAX) throw refused(target, 'ENAMETOOLONG');
  const existing = statOf(target);
  if (existing?.isDirectory() && kind === 'file') throw refused(target, 'EISDIR');
  if (existing && !existing.isDirectory() && kind === 'folder') throw refused(target, 'EEXIST');
  // saveVideo creates the folders that are missing below the nearest existing one
  let dir = path.dirname(target);
  while (!statOf(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  if (!statOf(dir)?.isDirectory()) throw refused(target, 'ENOTDIR');
  const probe = tempNames(dir).tmp;
  try {
    fs.closeSync(fs.openSync(probe, 'wx'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new OutputFileError(target, 'ENOENT', `cannot write ${target}: the folder ${dir} does not take new files (a virtual or special file system); choose another folder (ENOENT in open)`, e);
    }
    throw outputError(e, target);
  }
  removeQuietly(probe);
}
