import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AbortError, WanError } from '../errors.js';
import { OutputFileError } from './video-error.js';

/**
 * An output is written under a temporary name in its own folder and renamed into place when complete:
 * `.wan-tfjs-<8 hex>.tmp` (the file or PNG folder being written), `.old` (a PNG folder being replaced)
 * and `.json` (the journal of that replacement), all with the same hex. The names are short, so an
 * output name of up to NAME_MAX (255 bytes) works, and recognisable, so what a killed process left is
 * tidied by the next write into that folder (tidyOutputFolder).
 */
const TEMP_NAME = /^\.wan-tfjs-([0-9a-f]{8})\.(tmp|old|json)$/;

/** A temporary file or folder unmodified this long belongs to a killed write (a live one writes every frame). */
export const STALE_TEMP_MS = 15 * 60_000;

export interface TempNames {
  tmp: string;
  old: string;
  journal: string;
}

/** Fresh temporary names in `dir`. */
export function tempNames(dir: string): TempNames {
  const base = path.join(dir, `.wan-tfjs-${randomBytes(4).toString('hex')}`);
  return { tmp: `${base}.tmp`, old: `${base}.old`, journal: `${base}.json` };
}

/** Lets timers and signal handlers run (so an abort from a timer or SIGINT lands), then throws AbortError if aborted. */
export async function betweenFrames(signal: AbortSignal | undefined): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  if (signal?.aborted) throw new AbortError('video writing was aborted');
}

/** What to do about each system error code an output can meet. */
const ADVICE: Readonly<Record<string, string>> = {
  EACCES: 'permission denied; choose a folder you can write to, or change its permissions',
  EPERM: 'operation not permitted; choose a folder you can write to, or change its permissions',
  EROFS: 'the file system is read-only; write the output to a writable disk',
  ENOSPC: 'no space left on the device; free some space or write the output to another disk',
  EDQUOT: 'the disk quota is used up; free some space or write the output to another disk',
  EFBIG: 'the file is too large for this file system; write a shorter or smaller video, or to another disk',
  EISDIR: 'a folder has that name; choose another file name or remove the folder',
  EEXIST: 'a file is in the way (a path component that should be a folder, or an existing output); choose another path or remove it',
  ENOTDIR: 'a component of the path is a file, not a folder; choose another path',
  ENOTEMPTY: 'a folder in the way is not empty; choose another path or remove it',
  ENAMETOOLONG: 'the name is too long for the file system (255 bytes a name on most); choose a shorter name',
  ENOENT: 'its folder disappeared while writing; check the path and write again',
  ELOOP: 'the path has a loop of symbolic links; choose another path',
  EMFILE: 'too many open files in this process; raise the limit (ulimit -n) or close files',
  ENFILE: 'too many open files on the system; close some and write again',
  EIO: 'an input/output error on the device; check the disk',
};

function isSystemError(e: unknown): e is NodeJS.ErrnoException & { code: string } {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && typeof (e as NodeJS.ErrnoException).syscall === 'string';
}

/** A system error met while writing `target` as an OutputFileError that names it and says what to do; other errors unchanged. */
export function outputError(e: unknown, target: string): unknown {
  if (e instanceof WanError || !isSystemError(e)) return e;
  const advice = Object.hasOwn(ADVICE, e.code) ? ADVICE[e.code] : e.message;
  return new OutputFileError(target, e.code, `cannot write ${target}: ${advice} (${e.code} in ${e.syscall})`, e);
}

/** Removes a file or folder; false (never a throw) when that fails, so a first error stays the one reported. */
export function removeQuietly(p: string): boolean {
  try {
    fs.rmSync(p, { recursive: true, force: true });
    return true;
  } catch {
    return false;
  }
}

/** Writes all of `bytes` at the descriptor's position, or at `position`. */
export function writeAll(fd: number, bytes: Uint8Array, position?: number): void {
  for (let done = 0; done < bytes.length; ) {
    done += fs.writeSync(fd, bytes, done, bytes.length - done, position === undefined ? null : position + done);
  }
}

/** A new file `file` holding `bytes`, flushed to the disk. */
export function writeFileDurably(file: string, bytes: Uint8Array): void {
  const fd = fs.openSync(file, 'wx');
  try {
    writeAll(fd, bytes);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Flushes a file written by another process (ffmpeg) to the disk. */
export function syncFile(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Flushes a folder's entries (a rename, new files) to the disk; Windows cannot open a folder for that. */
export function syncFolder(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The journal of a PNG folder replacement: the output's name in the folder and the writing process. */
interface Journal {
  target: string;
  pid: number;
}

/**
 * Replaces `target`, an existing folder, by the finished folder `names.tmp` so that a kill at any point
 * loses neither: the journal is written, the old folder renamed aside to `names.old`, the new one
 * renamed in, the old one removed, the journal removed. tidyOutputFolder completes what a kill left.
 */
export function replaceFolder(names: TempNames, target: string): void {
  const dir = path.dirname(target);
  const journal: Journal = { target: path.basename(target), pid: process.pid };
  writeFileDurably(names.journal, new TextEncoder().encode(JSON.stringify(journal)));
  syncFolder(dir);
  fs.renameSync(target, names.old);
  try {
    fs.renameSync(names.tmp, target);
  } catch (e) {
    // Put the old folder back; if even that fails, the journal lets the next write finish the swap.
    try {
      fs.renameSync(names.old, target);
      removeQuietly(names.journal);
    } catch {
      // the first error is the one to report
    }
    throw e;
  }
  syncFolder(dir);
  if (removeQuietly(names.old)) removeQuietly(names.journal);
}

/** Whether process `pid` runs (on this machine). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The journal in `file`, or undefined when it is not one (cut short by a kill while it was written). */
function readJournal(file: string): Journal | undefined {
  let j: unknown;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf-8'));
  } catch {
    return undefined;
  }
  if (typeof j !== 'object' || j === null) return undefined;
  const { target, pid } = j as Record<string, unknown>;
  // Only a plain name in this folder: a journal never points elsewhere.
  if (typeof target !== 'string' || typeof pid !== 'number' || target !== path.basename(target) || target === '.' || target === '..' || target === '') return undefined;
  return { target, pid };
}

/**
 * Finishes the folder replacement of journal `names.journal` when its process is gone (or the journal is
 * stale): the new folder goes in place, the old one away; when the new one is missing, the old one goes
 * back. Returns false, leaving every file, for a replacement still running or one it cannot resolve
 * without losing a folder (something new at the target while both temporary folders exist).
 */
function finishReplacement(dir: string, names: TempNames, now: number): boolean {
  const stale = now - fs.statSync(names.journal).mtimeMs > STALE_TEMP_MS;
  const journal = readJournal(names.journal);
  // A journal cut short: the kill came before the first rename, so the target is intact.
  if (!journal) return stale && removeQuietly(names.journal);
  if (!stale && running(journal.pid)) return false;
  const target = path.join(dir, journal.target);
  if (fs.existsSync(names.tmp)) {
    if (fs.existsSync(target)) {
      if (fs.existsSync(names.old)) return false;
      fs.renameSync(target, names.old);
    }
    fs.renameSync(names.tmp, target);
  } else if (!fs.existsSync(target) && fs.existsSync(names.old)) {
    fs.renameSync(names.old, target);
  }
  syncFolder(dir);
  return removeQuietly(names.old) && removeQuietly(names.journal);
}

/**
 * Tidies what killed writes left in `dir`, best effort (it never throws): finishes PNG folder
 * replacements whose process is gone, then removes temporary files and folders unmodified for
 * STALE_TEMP_MS (kept while a journal names them).
 */
export function tidyOutputFolder(dir: string, now = Date.now()): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return;
  }
  const pending = new Set<string>();
  for (const name of entries) {
    const m = TEMP_NAME.exec(name);
    if (m?.[2] !== 'json') continue;
    const base = path.join(dir, `.wan-tfjs-${m[1]}`);
    let done = false;
    try {
      done = finishReplacement(dir, { tmp: `${base}.tmp`, old: `${base}.old`, journal: `${base}.json` }, now);
    } catch {
      // left for the next write
    }
    if (!done) pending.add(m[1]);
  }
  for (const name of entries) {
    const m = TEMP_NAME.exec(name);
    if (!m || m[2] === 'json' || pending.has(m[1])) continue;
    const p = path.join(dir, name);
    try {
      if (now - fs.statSync(p).mtimeMs > STALE_TEMP_MS) removeQuietly(p);
    } catch {
      // already gone
    }
  }
}
