import * as fs from 'node:fs';
import * as path from 'node:path';

/** Temporary entries saveVideo creates in `dir` (`.wan-tfjs-<hex>.tmp`). */
function tempEntries(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((n) => /^\.wan-tfjs-[0-9a-f]+\.tmp$/.test(n));
  } catch {
    return [];
  }
}

/** A function removing the temporary entries that appear in `dir` after now (those of the write about to start). */
export function newTempRemover(dir: string): () => void {
  const before = new Set(tempEntries(dir));
  return () => {
    for (const n of tempEntries(dir)) if (!before.has(n)) fs.rmSync(path.join(dir, n), { recursive: true, force: true });
  };
}
