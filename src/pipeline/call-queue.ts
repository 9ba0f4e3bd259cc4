import { AbortError } from '../errors.js';

/** The last call queued on each guarded object (a scheduler, whose state one trajectory owns at a time). */
const tails = new WeakMap<object, Promise<void>>();

/** Resolves when `p` settles, or rejects with AbortError as soon as `signal` aborts. */
function waitUnlessAborted(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new AbortError('generation was aborted'));
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(new AbortError('generation was aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

/**
 * Runs `run` once every call queued before it on `key` has finished (first come, first served), so
 * that calls sharing `key` give exactly what they give one after another. A call aborted while it
 * waits rejects at once and leaves the queue as it was.
 */
export async function runExclusive<T>(key: object, signal: AbortSignal | undefined, run: () => Promise<T>): Promise<T> {
  const previous = tails.get(key) ?? Promise.resolve();
  let release = () => {};
  const done = new Promise<void>((resolve) => {
    release = resolve;
  });
  const tail = previous.then(() => done);
  tails.set(key, tail);
  try {
    await waitUnlessAborted(previous, signal);
    return await run();
  } finally {
    release();
    if (tails.get(key) === tail) tails.delete(key);
  }
}
