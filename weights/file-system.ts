import type * as NodeFs from 'node:fs';
import type * as NodePath from 'node:path';
import type * as NodeWorkerThreads from 'node:worker_threads';
import { safeText } from '../src/describe.js';
import { CheckpointError, WanError } from '../src/errors.js';

/**
 * Node's `fs` and `path`, looked up when a file is first read (process.getBuiltinModule) rather
 * than imported: no module of weights/ or layers/ imports a Node built-in, so `wan-tfjs/layers`
 * and `wan-tfjs/weights` bundle for any platform, and only reading or writing files needs Node.
 * This is the one place the library's checkpoint and config I/O reaches the file system.
 */
function builtin<T>(id: 'node:fs' | 'node:path' | 'node:worker_threads'): T {
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

// The read-ahead thread's code (see read-ahead.ts), eval'd by a Worker; it reaches its modules as
// this file does. counters: [bytes the loader consumed, bytes read here].
const READER = `
const { workerData } = process.getBuiltinModule('node:worker_threads');
const fs = process.getBuiltinModule('node:fs');
const counters = new BigInt64Array(workerData.counters);
const buffer = Buffer.allocUnsafe(16 * 1024 * 1024);
let read = 0;
for (const file of workerData.files) {
  let fd;
  try {
    fd = fs.openSync(file, 'r');
    for (let position = 0, n = 1; n > 0; position += n, read += n) {
      while (read - Number(Atomics.load(counters, 0)) > workerData.lead) Atomics.wait(counters, 0, Atomics.load(counters, 0), 50);
      n = fs.readSync(fd, buffer, 0, buffer.length, position);
      Atomics.store(counters, 1, BigInt(read + n));
    }
  } catch {
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
`;

/**
 * Starts a thread that reads `files` front to back in 16 MiB pieces (discarding them: it fills the
 * page cache), never more than `leadBytes` ahead of the count in counters[0], publishing its own
 * count in counters[1]. Its read errors are ignored; stop() ends it.
 */
export function startReadingThread(files: readonly string[], counters: SharedArrayBuffer, leadBytes: number): { stop(): void } {
  const { Worker } = builtin<typeof NodeWorkerThreads>('node:worker_threads');
  const worker = new Worker(READER, { eval: true, workerData: { files: [...files], counters, lead: leadBytes } });
  worker.unref();
  worker.on('error', () => {});
  return { stop: () => void worker.terminate() };
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
