import * as fs from 'node:fs';
import { safeText } from '../src/describe.js';
import { CheckpointError, ConfigError } from '../src/errors.js';
import { jsonNestsDeeperThan } from '../weights/json-structure.js';

/** A parsed config.json object. */
export type ConfigJson = Record<string, unknown>;

/** `json` as an object of config fields; a ConfigError naming `what` ("a VAE config") otherwise. */
export function configObject(json: unknown, what: string): ConfigJson {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ConfigError(`${what} must be a JSON object, got ${JSON.stringify(json)}`);
  }
  return json as ConfigJson;
}

/** Deepest nesting readJsonFile accepts: configs and tokenizer files nest a few levels; deeper is a broken or hostile file. */
const MAX_JSON_DEPTH = 128;

/**
 * Reads and parses a JSON file; a CheckpointError naming the file when it cannot be read or
 * parsed, or nests deeper than MAX_JSON_DEPTH (checked before parsing, so no deep value is built
 * and no later JSON.stringify or String() of it can overflow the stack).
 */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf-8');
  } catch (e) {
    throw new CheckpointError(`cannot read (${(e as NodeJS.ErrnoException).code ?? safeText((e as Error).message)})`, file);
  }
  if (jsonNestsDeeperThan(text, MAX_JSON_DEPTH)) throw new CheckpointError(`JSON nests deeper than ${MAX_JSON_DEPTH} levels`, file);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`cannot parse JSON (${safeText((e as Error).message)})`, file);
  }
}

/**
 * A reader of typed config fields: `field(json, key, fallback, check, expected)` gives json[key]
 * when present and accepted by `check`, `fallback` when absent, and otherwise throws a
 * ConfigError `<owner> field "<key>" must be <expected>, got <value>`.
 */
export function configFieldReader(owner: string) {
  return function field<T>(json: ConfigJson, key: string, fallback: T, check: (v: unknown) => v is T, expected: string): T {
    if (!(key in json) || json[key] === undefined) return fallback;
    const v = json[key];
    if (!check(v)) throw new ConfigError(`${owner} field "${key}" must be ${expected}, got ${JSON.stringify(v)}`);
    return v;
  };
}
