import { parsePythonJson } from '../src/config/python-json.js';
import { safeText } from '../src/describe.js';
import { CheckpointError } from '../src/errors.js';
import { fileSystem } from './file-system.js';
import { jsonNestsDeeperThan } from './json-structure.js';

/** Deepest nesting readJsonFile accepts: configs and tokenizer files nest a few levels; deeper is a broken or hostile file. */
const MAX_JSON_DEPTH = 128;

/**
 * Reads and parses a JSON file, accepting Python's NaN / Infinity / -Infinity; a CheckpointError
 * naming the file when it cannot be read or parsed, or nests deeper than MAX_JSON_DEPTH (checked
 * before parsing, so no deep value is built and no later JSON.stringify of it can overflow the stack).
 */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fileSystem().readFileSync(file, 'utf-8');
  } catch (e) {
    throw new CheckpointError(`cannot read (${(e as NodeJS.ErrnoException).code ?? safeText((e as Error).message)})`, file);
  }
  if (jsonNestsDeeperThan(text, MAX_JSON_DEPTH)) throw new CheckpointError(`JSON nests deeper than ${MAX_JSON_DEPTH} levels`, file);
  try {
    return parsePythonJson(text);
  } catch (e) {
    throw new CheckpointError(`cannot parse JSON (${safeText((e as Error).message)})`, file);
  }
}
