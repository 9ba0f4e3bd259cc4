/**
 * One declarative config system for models and schedulers: each setting is declared once (its
 * property name, JSON key, kind of value, default), and reading a config.json, writing one,
 * validating a partial config given in code and copying one for tfjs' getConfig all follow from
 * that declaration. Messages name the setting as the input spelled it: the JSON key for fromJSON,
 * the property for resolve.
 */
import { describeValue } from '../describe.js';
import { ConfigError } from '../errors.js';
import type { ValueType } from './value-types.js';

/** A parsed JSON config object (config.json, scheduler_config.json). */
export type ConfigJson = Record<string, unknown>;

/** A JSON value without structure. */
export type JsonScalar = string | number | boolean | null;

/** One setting of a config. Its property name is its key in the Fields object. */
export interface Field<T> {
  /** Its JSON key as the reference writes it; null for a setting no JSON holds. */
  readonly key: string | null;
  readonly type: ValueType<T>;
  /** Its value when the JSON leaves the key out: the reference class's default. */
  readonly default: T;
  /** The JSON value the reference assumes when the key is absent, where that is not `default` (it may be one this port does not support). */
  readonly absent?: JsonScalar;
  /** Property name of an earlier field whose value this one takes when its key is absent or null (Diffusers' `out_channels or in_channels`). */
  readonly sameAs?: string;
}

/** Declares a setting: JSON key, kind of value, default, and optionally `absent` / `sameAs`. */
export function field<T>(key: string | null, type: ValueType<T>, defaultValue: NoInfer<T>, more: Pick<Field<T>, 'absent' | 'sameAs'> = {}): Field<T> {
  return { key, type, default: defaultValue, ...more };
}

/** The settings of a config, by property name. */
export type Fields = Readonly<Record<string, Field<unknown>>>;

/** The config object a Fields declaration describes. */
export type ConfigOf<F extends Fields> = { -readonly [K in keyof F]: F[K] extends Field<infer T> ? T : never };

/**
 * A key of a reference feature this port does not implement: the JSON may hold it only with the
 * value `only`. `absent` is what the reference assumes when the key is missing (default `only`).
 */
export type FixedKey = JsonScalar | { readonly only: JsonScalar; readonly absent?: JsonScalar; readonly why?: string };

/** One JSON spelling of a config: the class it names and how its keys differ from the declared fields. */
export interface Dialect<F extends Fields> {
  /** The value of the identity key (`_class_name`, `model_type`) that selects this dialect, written by toJSON. */
  readonly name: string;
  /** Other identity values read the same way. */
  readonly aliases?: readonly string[];
  /** Per field: another JSON key, another value assumed when absent, another default. */
  readonly fields?: { readonly [K in keyof F]?: { readonly key?: string | null; readonly absent?: JsonScalar; readonly default?: ConfigOf<F>[K] } };
  readonly fixed?: Readonly<Record<string, FixedKey>>;
}

export interface ConfigSchemaOptions<F extends Fields, P extends string> {
  /** The JSON key naming the class; default `_class_name`. */
  readonly identityKey?: string;
  /** What the config describes, for the message when the identity key names another class ("a Wan VAE"). */
  readonly what: string;
  /** The JSON spellings read; the first is assumed when the identity key is absent. */
  readonly dialects: readonly [Dialect<F>, ...Dialect<F>[]];
  /** The dialect toJSON writes for a config (by name); default the first. */
  readonly dialectOf?: (config: ConfigOf<F>) => string;
  /** Rules across fields: a problem as text, or undefined. `name` gives a field's name as the input spelled it. */
  readonly check?: (config: ConfigOf<F>, name: (field: keyof F & string) => string) => string | undefined;
  /** Published configs by name, built from the defaults. */
  readonly presets?: (defaults: Readonly<ConfigOf<F>>) => Readonly<Record<P, ConfigOf<F>>>;
}

/** What a config declaration gives: defaults, presets, and reading, writing, validating and copying configs. */
export interface ConfigSchema<F extends Fields, P extends string = never> {
  readonly fields: F;
  /** The reference's defaults (of the first dialect). */
  readonly defaults: Readonly<ConfigOf<F>>;
  readonly presets: Readonly<Record<P, Readonly<ConfigOf<F>>>>;
  /** Reads a JSON config (any dialect); absent keys take the reference's defaults. Throws a ConfigError naming the key. */
  fromJSON(json: unknown): ConfigOf<F>;
  /** The JSON config the reference would write, in the config's dialect; fromJSON reads it back equal. */
  toJSON(config: ConfigOf<F>): ConfigJson;
  /** A preset by name, or `base` (default: the defaults) overlaid with the fields `input` sets; validated, copied. */
  resolve(input?: P | Partial<ConfigOf<F>>, base?: Readonly<ConfigOf<F>>): ConfigOf<F>;
  /** A copy for tfjs' getConfig (property names, arrays copied). */
  getConfig(config: Readonly<ConfigOf<F>>): ConfigOf<F>;
}

function copyValue<T>(v: T): T {
  return (Array.isArray(v) ? v.map(copyValue) : v) as T;
}

function own(json: ConfigJson, key: string): unknown {
  return Object.hasOwn(json, key) ? json[key] : undefined;
}

/** Builds the schema of a config from its field declarations. */
export function defineConfig<F extends Fields, P extends string = never>(fields: F, options: ConfigSchemaOptions<F, P>): ConfigSchema<F, P> {
  type C = ConfigOf<F>;
  const names = Object.keys(fields) as Array<keyof F & string>;
  const identityKey = options.identityKey ?? '_class_name';
  const dialects = options.dialects;
  names.forEach((name, i) => {
    const same = fields[name].sameAs;
    if (same !== undefined && !names.slice(0, i).includes(same)) throw new ConfigError(`config field ${name}: sameAs "${same}" is not an earlier field`);
  });

  const fieldIn = (dialect: Dialect<F>, name: keyof F & string): Field<unknown> => ({ ...fields[name], ...dialect.fields?.[name] });
  const fail = (owner: string, problem: string): never => {
    throw new ConfigError(`${owner} config: ${problem}`);
  };
  const checked = (config: C, owner: string, name: (field: keyof F & string) => string): C => {
    const problem = options.check?.(config, name);
    return problem === undefined ? config : fail(owner, problem);
  };
  const dialectNamed = (name: string): Dialect<F> | undefined => dialects.find((d) => d.name === name || (d.aliases ?? []).includes(name));
  const defaultsOf = (dialect: Dialect<F>): C => {
    const out: Record<string, unknown> = {};
    for (const name of names) out[name] = copyValue(fieldIn(dialect, name).default);
    return out as C;
  };

  const defaults: C = defaultsOf(dialects[0]);
  const presets = options.presets?.(defaults) ?? ({} as Record<P, C>);

  function checkFixed(json: ConfigJson, dialect: Dialect<F>): void {
    for (const [key, spec] of Object.entries(dialect.fixed ?? {})) {
      const { only, absent = only, why } = typeof spec === 'object' && spec !== null ? spec : { only: spec, absent: spec, why: undefined };
      const given = own(json, key);
      const value = given === undefined ? absent : given;
      if (value === only) continue;
      const reason = why ? `: ${why}` : '';
      fail(
        dialect.name,
        given === undefined
          ? `"${key}" is not set, which the reference reads as ${describeValue(absent)}; only ${JSON.stringify(only)} is supported${reason}`
          : `"${key}" = ${describeValue(given)} is not supported (only ${JSON.stringify(only)}${reason})`,
      );
    }
  }

  function fromJSON(json: unknown): C {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      return fail(dialects[0].name, `must be a JSON object, got ${describeValue(json)}`);
    }
    const j = json as ConfigJson;
    const identity = own(j, identityKey);
    const dialect = identity === undefined ? dialects[0] : typeof identity === 'string' ? dialectNamed(identity) : undefined;
    if (!dialect) {
      const accepted = dialects.flatMap((d) => [d.name, ...(d.aliases ?? [])]);
      return fail(dialects[0].name, `${identityKey} ${describeValue(identity)} is not ${options.what} (expected ${accepted.join(' or ')})`);
    }
    checkFixed(j, dialect);
    const out: Record<string, unknown> = {};
    for (const name of names) {
      const f = fieldIn(dialect, name);
      if (f.key === null) {
        out[name] = copyValue(f.default);
        continue;
      }
      const raw = own(j, f.key);
      if ((raw === undefined || raw === null) && f.sameAs !== undefined) {
        out[name] = copyValue(out[f.sameAs]);
      } else if (raw === undefined && f.absent !== undefined) {
        const v = f.type.parse(f.absent);
        if (v === undefined) fail(dialect.name, `"${f.key}" is not set, which the reference reads as ${describeValue(f.absent)}; it must be ${f.type.expected}`);
        out[name] = v;
      } else if (raw === undefined) {
        out[name] = copyValue(f.default);
      } else {
        const v = f.type.parse(raw);
        if (v === undefined) fail(dialect.name, `"${f.key}" must be ${f.type.expected}, got ${describeValue(raw)}`);
        out[name] = v;
      }
    }
    return checked(out as C, dialect.name, (name) => {
      const key = fieldIn(dialect, name).key;
      return key === null ? name : `"${key}"`;
    });
  }

  function toJSON(config: C): ConfigJson {
    const dialect = (options.dialectOf && dialectNamed(options.dialectOf(config))) || dialects[0];
    const out: ConfigJson = { [identityKey]: dialect.name };
    for (const name of names) {
      const key = fieldIn(dialect, name).key;
      if (key !== null) out[key] = copyValue(config[name]);
    }
    for (const [key, spec] of Object.entries(dialect.fixed ?? {})) out[key] = typeof spec === 'object' && spec !== null ? spec.only : spec;
    return out;
  }

  function resolve(input: P | Partial<C> = {}, base: Readonly<C> = defaults): C {
    if (typeof input === 'string') {
      if (!Object.hasOwn(presets, input)) {
        return fail(dialects[0].name, `unknown preset ${describeValue(input)}; valid: ${Object.keys(presets).join(', ')}`);
      }
      return getConfig(presets[input]);
    }
    const out: Record<string, unknown> = {};
    const given = input as Partial<Record<string, unknown>>;
    for (const name of names) {
      const raw = given[name] !== undefined ? given[name] : base[name];
      const v = fields[name].type.parse(raw);
      if (v === undefined) fail(dialects[0].name, `${name} must be ${fields[name].type.expected}, got ${describeValue(raw)}`);
      out[name] = v;
    }
    return checked(out as C, dialects[0].name, (name) => name);
  }

  function getConfig(config: Readonly<C>): C {
    const out: Record<string, unknown> = {};
    for (const name of names) out[name] = copyValue(config[name]);
    return out as C;
  }

  return { fields, defaults: Object.freeze(defaults), presets, fromJSON, toJSON, resolve, getConfig };
}
