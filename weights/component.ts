import type { ConfigJson } from '../src/config/config-schema.js';
import { describeValue } from '../src/describe.js';
import { CheckpointError } from '../src/errors.js';
import type { CheckpointConfig, ComponentFamily, ComponentFiles, ComponentLayout } from './component-layout.js';
import { filePaths, fileSystem, listFolder, pathKind } from './file-system.js';
import { readJsonFile } from './read-json.js';
import { SafetensorsFile, type TensorSource } from './safetensors.js';
import { ShardedCheckpoint } from './sharded.js';

/** PyTorch pickle files: the library reads safetensors only. */
const PICKLE = /\.(pth|pt|bin|ckpt)$/i;

/** Whether a file name is a PyTorch pickle (.pth, .pt, .bin, .ckpt), which must be converted to safetensors first. */
export function isPytorchPickle(file: string): boolean {
  return PICKLE.test(file);
}

/** The one refusal of PyTorch pickles: names them and says how to convert them. */
function pickleError(files: readonly string[], where: string): CheckpointError {
  const [first] = files;
  const target = files.length === 1 ? first.replace(PICKLE, '.safetensors') : 'model.safetensors';
  return new CheckpointError(
    `${files.length === 1 ? `${first} is a PyTorch pickle` : `only PyTorch pickle files found (${files.join(', ')})`}; ` +
      `convert ${files.length === 1 ? 'it' : 'them'} to safetensors first ` +
      `(python: safetensors.torch.save_file(torch.load(f, map_location="cpu"), "${target}"))`,
    where,
  );
}

/** Where a component is on disk. */
export interface ComponentLocation {
  /** The component's folder: where its config file is looked for. */
  readonly folder: string;
  /** Its config file, when there is one. */
  readonly configFile: string | undefined;
  /** Its checkpoint: a .safetensors file or a .safetensors.index.json; undefined for a folder without one. */
  readonly checkpoint: string | undefined;
}

/** The checkpoint in `folder`: `stem.safetensors.index.json`, `stem.safetensors`, else the folder's only index or .safetensors file. */
function checkpointIn(folder: string, files: readonly string[], stem: string | undefined): string | undefined {
  const path = filePaths();
  const stems = stem ? [stem] : [...new Set(files.filter((f) => f.endsWith('.safetensors.index.json')).map((f) => f.slice(0, -'.safetensors.index.json'.length)))];
  for (const s of stems) {
    if (files.includes(`${s}.safetensors.index.json`)) return path.join(folder, `${s}.safetensors.index.json`);
    if (files.includes(`${s}.safetensors`)) return path.join(folder, `${s}.safetensors`);
  }
  const single = files.filter((f) => f.endsWith('.safetensors'));
  if (single.length === 1) return path.join(folder, single[0]);
  if (single.length > 1) throw new CheckpointError(`several .safetensors files (${single.join(', ')}) and no index naming ${stem ?? 'them'}`, folder);
  return undefined;
}

/**
 * Finds a component from a file or folder: a checkpoint file (`.safetensors`, `.safetensors.index.json`)
 * with the config file beside it; a model root holding one of `files.subfolders`; an original
 * release root holding one of `files.releaseFiles`; or the component's own folder. PyTorch pickles
 * are refused here, with how to convert them. Without `files`: a folder's config.json and only checkpoint.
 */
export function locateComponent(dirOrFile: string, files?: ComponentFiles): ComponentLocation {
  const path = filePaths();
  const configName = files?.configFile ?? 'config.json';
  const configIn = (folder: string) => (pathKind(path.join(folder, configName)) === 'file' ? path.join(folder, configName) : undefined);
  const kind = pathKind(dirOrFile);
  if (kind === undefined) {
    if (!fileSystem().existsSync(dirOrFile)) throw new CheckpointError('no such file or folder', dirOrFile);
    throw new CheckpointError('neither a file nor a folder', dirOrFile);
  }
  if (kind === 'file') {
    const name = path.basename(dirOrFile);
    if (PICKLE.test(name)) throw pickleError([name], dirOrFile);
    const folder = path.dirname(dirOrFile);
    if (name.endsWith('.safetensors') || name.endsWith('.safetensors.index.json')) return { folder, configFile: configIn(folder), checkpoint: dirOrFile };
    if (name === configName) return { folder, configFile: dirOrFile, checkpoint: undefined };
    throw new CheckpointError(`not a checkpoint (.safetensors or .safetensors.index.json)${files ? ` or ${configName}` : ''}`, dirOrFile);
  }
  const sub = files?.subfolders.map((s) => path.join(dirOrFile, s)).find((folder) => pathKind(folder) === 'folder');
  if (files && sub) return locateComponent(sub, { ...files, subfolders: [], releaseFiles: undefined });
  const names = listFolder(dirOrFile);
  const releaseFiles = files?.releaseFiles;
  const release = releaseFiles ? names.filter((f) => releaseFiles.test(f)).sort() : [];
  const releaseSafetensors = release.find((f) => f.endsWith('.safetensors'));
  if (releaseSafetensors) return { folder: dirOrFile, configFile: undefined, checkpoint: path.join(dirOrFile, releaseSafetensors) };
  if (release.some((f) => PICKLE.test(f))) throw pickleError(release.filter((f) => PICKLE.test(f)), dirOrFile);
  const configFile = configIn(dirOrFile);
  const checkpoint = checkpointIn(dirOrFile, names, files?.stem);
  const pickles = names.filter((f) => PICKLE.test(f));
  if (!checkpoint && pickles.length > 0) throw pickleError(pickles, dirOrFile);
  return { folder: dirOrFile, configFile, checkpoint };
}

/** Opens a checkpoint file or shard index (headers only; shards stay open for reading). */
function openCheckpointFile(file: string): TensorSource {
  return file.endsWith('.index.json') ? ShardedCheckpoint.open(file) : SafetensorsFile.open(file);
}

/**
 * Opens the checkpoint of a file or folder: a path named `.safetensors.index.json` (sharded) or
 * `.safetensors` is opened as such; in a folder, `stem.safetensors[.index.json]` when `stem` is
 * given, else its only index or `.safetensors` file. PyTorch pickles are refused with how to convert them.
 */
export function openCheckpoint(dirOrFile: string, stem?: string): TensorSource {
  if (/\.safetensors(\.index\.json)?$/.test(dirOrFile)) return openCheckpointFile(dirOrFile);
  const found = locateComponent(dirOrFile, stem === undefined ? undefined : { name: 'checkpoint', subfolders: [], configFile: 'config.json', stem });
  if (found.checkpoint === undefined) {
    throw new CheckpointError(`no ${stem ? `${stem}.safetensors[.index.json]` : '.safetensors file'} found`, found.folder);
  }
  return openCheckpointFile(found.checkpoint);
}

/** The layout of a family whose tensors `source` holds: the first that matches (the last is the fallback). */
export function detectComponentLayout(family: ComponentFamily, source: TensorSource): ComponentLayout {
  return family.layouts.find((l) => l.matches(source)) ?? family.layouts[family.layouts.length - 1];
}

/** A component opened for loading: its checkpoint, the layout it is in, and its config as the layout reads it. */
export interface OpenedComponent extends ComponentLocation {
  readonly checkpoint: string;
  readonly source: TensorSource;
  readonly layout: ComponentLayout;
  /** The config file the layout read, if any. */
  readonly configRead: string | undefined;
  readonly config: CheckpointConfig | undefined;
  close(): void;
}

/**
 * Opens a component of `family` from a file or folder (see locateComponent): opens its checkpoint,
 * detects the layout from the tensors, and reads the config the layout takes (the config file's
 * JSON, else the tensor shapes). The caller closes it.
 */
export function openComponent(dirOrFile: string, family: ComponentFamily): OpenedComponent {
  const found = locateComponent(dirOrFile, family);
  if (found.checkpoint === undefined) {
    throw new CheckpointError(`no ${family.name} checkpoint (${family.stem ? `${family.stem}.safetensors[.index.json]` : '.safetensors'}) found${family.hint ? `; ${family.hint}` : ''}`, found.folder);
  }
  const checkpoint = found.checkpoint;
  const source = openCheckpointFile(checkpoint);
  try {
    const layout = detectComponentLayout(family, source);
    const configRead = layout.readsConfigFile ? found.configFile : undefined;
    const config = layout.config(configRead === undefined ? undefined : readConfigObject(configRead), source);
    return { ...found, checkpoint, source, layout, configRead, config, close: () => source.close() };
  } catch (e) {
    source.close();
    throw e;
  }
}

/** Reads a JSON file that must hold an object (a config); a CheckpointError naming the file otherwise. */
export function readConfigObject(file: string): ConfigJson {
  const parsed = readJsonFile(file);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new CheckpointError(`is ${describeValue(parsed)}, not a JSON object`, file);
  return parsed as ConfigJson;
}

/**
 * The config file of a component that has no checkpoint (scheduler, tokenizer): the file itself,
 * or found in a model root's subfolder or the component's folder.
 */
export function findComponentConfig(dirOrFile: string, files: ComponentFiles): string {
  const path = filePaths();
  if (pathKind(dirOrFile) === 'file') return dirOrFile;
  const candidates = [...files.subfolders.map((s) => path.join(dirOrFile, s, files.configFile)), path.join(dirOrFile, files.configFile)];
  const found = candidates.find((f) => pathKind(f) === 'file');
  if (found) return found;
  throw new CheckpointError(
    `no ${files.configFile} found (looked for ${candidates.map((f) => path.relative(dirOrFile, f) || f).join(', ')})${files.hint ? `; ${files.hint}` : ''}`,
    dirOrFile,
  );
}
