import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadHandlers, runCase, type ParityResult } from '../../src/parity/runner.js';

export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');

export function fixtureDir(name: string): string {
  return path.join(FIXTURES, name);
}

/** Runs one fixture case through the parity runner (the same code as `npm run parity`). */
export async function parityCase(name: string): Promise<ParityResult> {
  return runCase(fixtureDir(name), await loadHandlers());
}
