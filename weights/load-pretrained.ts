import type { ConfigOf, ConfigSchema, Fields } from '../src/config/config-schema.js';
import { ConfigError } from '../src/errors.js';
import type { CheckpointConfig, ComponentFamily } from './component-layout.js';
import { openComponent, type OpenedComponent } from './component.js';
import { filePaths } from './file-system.js';
import { loadWeights, type HasNamedWeights } from './load.js';
import { filesOf, startReadAhead } from './read-ahead.js';

/** Options of a model's fromPretrained. */
export interface PretrainedOptions<C, P extends string> {
  /** A preset name, or fields overriding the checkpoint's config (the whole config when the checkpoint gives none). */
  config?: P | Partial<C>;
  /** Called after each tensor is loaded. */
  onProgress?: (loaded: number, total: number, key: string) => void;
}

/** The model's config: a named preset; else the checkpoint's config overlaid with the given fields. */
function resolveConfig<F extends Fields, P extends string>(
  component: OpenedComponent,
  family: ComponentFamily,
  schema: ConfigSchema<F, P>,
  given: P | Partial<ConfigOf<F>> | undefined,
): ConfigOf<F> {
  if (typeof given === 'string') return schema.resolve(given);
  const found: CheckpointConfig | undefined = component.config;
  if (found === undefined && given === undefined) {
    const path = filePaths();
    const pass = `pass options.config (${family.presetHint ? `${family.presetHint} or ` : ''}a full config)`;
    throw new ConfigError(
      component.layout.readsConfigFile
        ? `${path.join(component.folder, family.configFile)} not found and the ${family.name} config cannot be read from the tensor shapes: ` +
            `point at a ${family.name} folder (e.g. <model>/${family.subfolders[0]}) or ${pass}`
        : `${component.checkpoint}: a checkpoint with ${component.layout.name} has no config file, and its tensor shapes match no published ${family.name}: ${pass}`,
    );
  }
  const base = found === undefined ? undefined : 'json' in found ? schema.fromJSON(found.json) : schema.resolve(found.preset as P);
  return schema.resolve(given ?? {}, base);
}

/**
 * Loads a pretrained model of `family` from a file or folder: opens the component (openComponent),
 * resolves its config against `schema`, builds the model with `build` and fills every weight
 * through the layout's key rename, the files read ahead on a worker thread (read-ahead.ts). The files
 * are closed either way; the model is disposed on failure.
 */
export function loadPretrained<F extends Fields, P extends string, M extends HasNamedWeights & { dispose(): unknown }>(
  dirOrFile: string,
  family: ComponentFamily,
  schema: ConfigSchema<F, P>,
  build: (config: ConfigOf<F>) => M,
  options: PretrainedOptions<ConfigOf<F>, P> = {},
): M {
  const component = openComponent(dirOrFile, family);
  let model: M | undefined;
  try {
    const config = resolveConfig(component, family, schema, options.config);
    model = build(config);
    const readAhead = startReadAhead(filesOf(component.source));
    try {
      const source = component.source;
      loadWeights(model, source, {
        rename: component.layout.rename(source, schema.toJSON(config)),
        onProgress: (loaded, total, key) => {
          const info = source.info(key);
          readAhead?.consumed(info.end - info.begin);
          options.onProgress?.(loaded, total, key);
        },
      });
    } finally {
      readAhead?.stop();
    }
    return model;
  } catch (e) {
    model?.dispose();
    throw e;
  } finally {
    component.close();
  }
}
