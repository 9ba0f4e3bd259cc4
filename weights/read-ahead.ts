import { fileSystem, startReadingThread } from './file-system.js';
import type { TensorSource } from './safetensors.js';

/**
 * Read-ahead of a checkpoint's files while it loads. The loader reads a tensor, hands it to the
 * backend (an upload on cuda) and only then reads the next, so on its own the disk idles during
 * every hand-over. A worker thread reads the files front to back at the same time, filling the
 * operating system's page cache just ahead of the loader, whose reads then come from memory:
 * the load takes about as long as one sequential read of the files. The thread stays at most
 * READ_AHEAD_LEAD_BYTES ahead of the bytes the loader has consumed (a shared counter it waits on),
 * so what it brings in is not evicted before the loader reads it when the files outgrow the page
 * cache. Its 16 MiB buffer is all the host memory it holds (the page cache is the kernel's, given
 * back under pressure); its read errors are ignored, since the loader's own reads report them.
 */

/** Checkpoints smaller than this load without a read-ahead thread (starting one costs more than it saves). */
export const READ_AHEAD_MIN_BYTES = 256 * 2 ** 20;

/** How far (bytes) the thread may read ahead of what the loader consumed. */
export const READ_AHEAD_LEAD_BYTES = 2 ** 30;

/** A running read-ahead: consumed(bytes) as the loader reads tensors; stop() when done, whether or not the load succeeded. */
export interface ReadAhead {
  consumed(bytes: number): void;
  /** The bytes the thread has read so far. */
  readBytes(): number;
  stop(): void;
}

export interface ReadAheadOptions {
  /** Below this total the files load without a thread (default READ_AHEAD_MIN_BYTES). */
  minBytes?: number;
  /** How far ahead of the loader the thread may read (default READ_AHEAD_LEAD_BYTES). */
  leadBytes?: number;
}

/** The files `source` reads its tensors from, each once, in the order its keys first reach them. */
export function filesOf(source: TensorSource): string[] {
  return [...new Set(source.keys().map((k) => source.info(k).file))];
}

/** Starts reading `files` ahead on a worker thread when they hold at least minBytes; undefined otherwise. */
export function startReadAhead(files: readonly string[], options: ReadAheadOptions = {}): ReadAhead | undefined {
  const { minBytes = READ_AHEAD_MIN_BYTES, leadBytes = READ_AHEAD_LEAD_BYTES } = options;
  const fs = fileSystem();
  let bytes = 0;
  for (const f of files) {
    try {
      bytes += fs.statSync(f).size;
    } catch {
      return undefined;
    }
  }
  if (bytes < minBytes) return undefined;
  const shared = new SharedArrayBuffer(16); // [bytes the loader consumed, bytes the thread read]
  const counter = new BigInt64Array(shared);
  const thread = startReadingThread(files, shared, leadBytes);
  return {
    consumed: (n) => {
      Atomics.add(counter, 0, BigInt(n));
      Atomics.notify(counter, 0);
    },
    readBytes: () => Number(Atomics.load(counter, 1)),
    stop: () => thread.stop(),
  };
}
