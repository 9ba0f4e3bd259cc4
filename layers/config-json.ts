import { ConfigError } from '../src/errors.js';

/** A parsed config.json object. */
export type ConfigJson = Record<string, unknown>;

/** `json` as an object of config fields; a ConfigError naming `what` ("a VAE config") otherwise. */
export function configObject(json: unknown, what: string): ConfigJson {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ConfigError(`${what} must be a JSON object, got ${JSON.stringify(json)}`);
  }
  return json as ConfigJson;
}
