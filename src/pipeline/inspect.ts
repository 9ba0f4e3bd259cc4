import * as path from 'node:path';
import { describeValue, safeText, shapeText } from '../describe.js';
import { CheckpointError, WanError } from '../errors.js';
import type { CheckpointConfig, ComponentFamily, ComponentFiles, ComponentLayout } from '../../weights/component-layout.js';
import { detectComponentLayout, isPytorchPickle, locateComponent, openCheckpoint, readConfigObject } from '../../weights/component.js';
import { dtypeSize } from '../../weights/dtypes.js';
import { COMPONENT_FAMILIES, SCHEDULER_FILES, UMT5_FAMILY, WAN_TRANSFORMER_FAMILY, WAN_VAE_FAMILY } from '../../weights/families.js';
import { listFolder, pathKind } from '../../weights/file-system.js';
import { describeFp8 } from '../../weights/fp8.js';
import { SafetensorsFile, type TensorSource } from '../../weights/safetensors.js';
import { detectLayout, readModelIndex, type ModelIndex } from './model-index.js';

/** One tensor of a checkpoint, as its header describes it. */
export interface TensorEntry {
  name: string;
  dtype: string;
  shape: number[];
}

/** A checkpoint's tensors, summarised from the headers (no data is read). */
export interface CheckpointSummary {
  /** The file or index the tensors come from. */
  source: string;
  tensorCount: number;
  parameters: number;
  bytes: number;
  /** Tensors per dtype. */
  dtypes: Record<string, number>;
  /** The key names' layout ("Diffusers keys", "original Wan keys", …) for a checkpoint of a known family. */
  keyLayout?: string;
  /** What model the header is, for a known family: "Wan DiT, config inferred: Wan2.2-TI2V-5B-like, 30 layers, dim 3072, in 48". */
  model?: string;
  /** Stored precision: tensors per dtype and the fp8 scales (describeFp8), e.g. "F8_E4M3 400, F32 420; 400 fp8 weights scaled (scale_weight)". */
  precision?: string;
  metadata?: Record<string, string>;
  tensors: TensorEntry[];
}

export interface ComponentReport {
  name: string;
  path: string;
  /** `_class_name` of its config, when it has one. */
  className?: string;
  config?: Record<string, unknown>;
  checkpoint?: CheckpointSummary;
  /** Other files (tokenizer, …). */
  files?: string[];
}

export interface InspectReport {
  path: string;
  /** 'diffusers' or 'wan' for a model folder; 'component' for one config + checkpoint folder; 'checkpoint' for a file. */
  kind: 'diffusers' | 'wan' | 'component' | 'checkpoint';
  index?: Pick<ModelIndex, 'className' | 'boundaryRatio' | 'expandTimesteps' | 'defaults'>;
  components: ComponentReport[];
  parameters: number;
}

function summarise(source: TensorSource): CheckpointSummary {
  const tensors: TensorEntry[] = [];
  const dtypes: Record<string, number> = {};
  let parameters = 0;
  let bytes = 0;
  for (const name of source.keys().sort()) {
    const info = source.info(name);
    const n = info.shape.reduce((a, d) => a * d, 1);
    tensors.push({ name, dtype: info.dtype, shape: [...info.shape] });
    dtypes[info.dtype] = (dtypes[info.dtype] ?? 0) + 1;
    parameters += n;
    bytes += n * dtypeSize(info.dtype);
  }
  const family = COMPONENT_FAMILIES.find((f) => f.recognizes(source.keys()));
  const layout = family && detectComponentLayout(family, source);
  const metadata = source instanceof SafetensorsFile && Object.keys(source.metadata).length ? { ...source.metadata } : undefined;
  const model = family && layout ? modelOf(family, layout, source) : undefined;
  return { source: source.label, tensorCount: tensors.length, parameters, bytes, dtypes, keyLayout: layout?.name, model, precision: describeFp8(source).text, metadata, tensors };
}

/** The published DiTs by [width, layers, in_channels]: one file cannot tell an A14B expert from the Wan2.1 14B of the same shapes. */
const PUBLISHED_DITS: ReadonlyArray<readonly [number, number, number, string]> = [
  [1536, 30, 16, 'Wan2.1-T2V-1.3B'],
  [3072, 30, 48, 'Wan2.2-TI2V-5B'],
  [5120, 40, 16, 'Wan2.2-T2V-A14B'],
  [5120, 40, 36, 'Wan2.2-I2V-A14B'],
];

/**
 * The model a header holds, from the config its shapes give (layout.config without a config file):
 * the DiT's width, layers and input channels and the published model of that size; the VAE's
 * published config; the umT5's size. A header whose shapes give no config says so.
 */
function modelOf(family: ComponentFamily, layout: ComponentLayout, source: TensorSource): string {
  let c: CheckpointConfig | undefined;
  try {
    c = layout.config(undefined, source);
  } catch (e) {
    if (!(e instanceof WanError)) throw e;
    return `${family.name}, config not readable from the shapes (${e.message})`;
  }
  if (c === undefined) return `${family.name}, config not readable from the header (a config.json gives it)`;
  if ('preset' in c) return `${family.name}, published config ${c.preset}`;
  const j = c.json;
  if (family === WAN_TRANSFORMER_FAMILY) {
    // width D = heads · head dim; in_channels 16 T2V, 36 I2V (16 noise + 4 mask + 16 image latent), 48 TI2V-5B
    const dim = Number(j.num_attention_heads) * Number(j.attention_head_dim);
    const width = Number.isFinite(dim) ? dim : undefined;
    const known = PUBLISHED_DITS.find(([d, l, i]) => d === width && l === j.num_layers && i === j.in_channels && j.image_dim === null);
    const like = known ? `${known[3]}-like` : 'no published size';
    return `Wan DiT, config inferred: ${like}, ${String(j.num_layers)} layers, dim ${width ?? '? (no multiple of 128)'}, in ${String(j.in_channels)}`;
  }
  return `${family.name}, config inferred: ${String(j.num_layers)} layers, d_model ${String(j.d_model)}, vocabulary ${String(j.vocab_size)}`;
}

/** Summarises the checkpoint at a file or folder (header only); a PyTorch pickle is refused with how to convert it. */
export function summariseCheckpoint(target: string, stem?: string): CheckpointSummary {
  const source = openCheckpoint(target, stem);
  try {
    return summarise(source);
  } finally {
    source.close();
  }
}

/** Diffusers' `_class_name`, or transformers' `architectures[0]`. */
function classNameOf(config: Record<string, unknown> | undefined): string | undefined {
  if (typeof config?._class_name === 'string') return config._class_name;
  const arch = config?.architectures;
  return Array.isArray(arch) && typeof arch[0] === 'string' ? arch[0] : undefined;
}

/** A component folder (its config and checkpoint, found as `files` says, or config.json / scheduler_config.json and its only checkpoint) or file. */
function component(name: string, p: string, files?: ComponentFiles): ComponentReport {
  const found = locateComponent(p, files);
  const isFile = pathKind(p) === 'file';
  const schedulerConfig = path.join(p, SCHEDULER_FILES.configFile);
  const configFile = isFile ? undefined : (found.configFile ?? (pathKind(schedulerConfig) === 'file' ? schedulerConfig : undefined));
  const config = configFile === undefined ? undefined : readConfigObject(configFile);
  const report: ComponentReport = { name, path: p, config, className: classNameOf(config) };
  if (found.checkpoint) report.checkpoint = summariseCheckpoint(found.checkpoint);
  else if (!config) report.files = listFolder(p).sort();
  return report;
}

/**
 * Describes a checkpoint file or folder from headers and configs only: the layout (Diffusers
 * model folder, original Wan folder, one component, one file), each component's config, tensors,
 * dtypes and parameter count. Every failure is a WanError; a file-system error (a folder that
 * cannot be listed, a file that cannot be read) becomes a CheckpointError naming the path.
 */
export function inspectCheckpoint(target: string): InspectReport {
  try {
    return inspectPath(target);
  } catch (e) {
    if (!isFileSystemError(e)) throw e;
    throw new CheckpointError(`cannot read (${e.code})`, e.path ?? path.resolve(target));
  }
}

/** A Node file-system error (EACCES, EISDIR, ENOTDIR, …). */
function isFileSystemError(e: unknown): e is NodeJS.ErrnoException & { code: string } {
  return e instanceof Error && 'code' in e && typeof e.code === 'string' && e.code.startsWith('E') && 'syscall' in e;
}

function inspectPath(target: string): InspectReport {
  const p = path.resolve(target);
  const kind = pathKind(p);
  if (kind === undefined) throw new CheckpointError('no such file or folder', p);
  const total = (cs: ComponentReport[]) => cs.reduce((n, c) => n + (c.checkpoint?.parameters ?? 0), 0);
  if (kind === 'file') {
    const c = component(path.basename(p), p);
    return { path: p, kind: 'checkpoint', components: [c], parameters: total([c]) };
  }
  const layout = detectLayout(p);
  if (!layout) {
    if (locateComponent(p).checkpoint === undefined) throw new CheckpointError('neither a Wan model folder (model_index.json, high_noise_model/) nor a folder with .safetensors files', p);
    const c = component(path.basename(p), p);
    return { path: p, kind: 'component', components: [c], parameters: total([c]) };
  }
  const m = readModelIndex(p);
  const components: ComponentReport[] = [];
  const add = (name: string, where: string | undefined, files?: ComponentFiles) => {
    if (where && isPytorchPickle(where)) components.push({ name, path: where, files: [`${path.basename(where)} (PyTorch pickle: convert to safetensors to use it)`] });
    else if (where) components.push(component(name, where, files));
  };
  add(m.layout === 'wan' && m.transformer2 ? 'high_noise_model' : 'transformer', m.transformer, WAN_TRANSFORMER_FAMILY);
  add(m.layout === 'wan' ? 'low_noise_model' : 'transformer_2', m.transformer2, WAN_TRANSFORMER_FAMILY);
  add('vae', m.vae, WAN_VAE_FAMILY);
  add('text_encoder', m.textEncoder, UMT5_FAMILY);
  add('tokenizer', m.tokenizer);
  if (typeof m.scheduler === 'string') add('scheduler', m.scheduler, SCHEDULER_FILES);
  else components.push({ name: 'scheduler', path: '(built in)', className: String(m.scheduler._class_name), config: m.scheduler });
  return {
    path: p,
    kind: m.layout,
    index: { className: m.className, boundaryRatio: m.boundaryRatio, expandTimesteps: m.expandTimesteps, defaults: m.defaults },
    components,
    parameters: total(components),
  };
}

function bytesText(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let u = 0;
  while (n >= 1000 && u < units.length - 1) {
    n /= 1000;
    u++;
  }
  return `${u === 0 ? n : n.toFixed(1)} ${units[u]}`;
}

/** Longest config value shown as JSON in the one-line config summary. */
const SHOWN_JSON = 80;

/** A config value for the summary: its JSON up to 80 characters, the first 4 entries of a longer array, else its type and size. */
function valueText(v: unknown): string {
  if (Array.isArray(v) && v.length > 8) return `[${v.slice(0, 4).map(valueText).join(', ')}, … ${v.length} values]`;
  // readJsonFile (weights/read-json.ts) refuses configs nested past 128 levels, so JSON.stringify cannot overflow the stack
  const json = JSON.stringify(v);
  return json.length <= SHOWN_JSON ? safeText(json) : describeValue(v);
}

/** What a model folder does: from its per-token timesteps, or its transformer taking more channels than it returns. */
function taskOf(r: InspectReport): string {
  if (r.index?.expandTimesteps) return 'text-to-video, and image-to-video from a first frame (per-token timesteps; image)';
  const t = r.components.find((c) => c.name === 'transformer' || c.name === 'high_noise_model')?.config;
  const inCh = t?.in_channels ?? t?.in_dim;
  const outCh = t?.out_channels ?? t?.out_dim;
  if (typeof inCh === 'number' && typeof outCh === 'number' && inCh > outCh) return `image-to-video (image-condition channels ${inCh} = ${outCh} + ${inCh - outCh}; image required, lastImage optional)`;
  return 'text-to-video';
}

/** The report as text lines; tensors are listed (up to `maxTensors` per checkpoint) when `tensors` is set. */
export function formatInspect(r: InspectReport, o: { tensors: boolean; maxTensors: number }): string[] {
  const out: string[] = [r.path];
  const kind = { diffusers: 'Diffusers model folder', wan: 'original Wan model folder', component: 'component folder', checkpoint: 'checkpoint file' }[r.kind];
  if (r.index) {
    const experts = r.index.boundaryRatio !== null ? `two experts, boundary_ratio ${r.index.boundaryRatio}` : 'one transformer';
    out.push(`  layout: ${kind} (${r.index.className}), ${experts}${r.index.expandTimesteps ? ', per-token timesteps' : ''}`);
    out.push(`  task: ${taskOf(r)}`);
    const d = r.index.defaults;
    out.push(`  defaults: ${d.numInferenceSteps} steps, guidance ${d.guidanceScale}${d.guidanceScale2 !== undefined ? ` / ${d.guidanceScale2}` : ''}, ${d.numFrames} frames at ${d.fps} fps, ${d.width}×${d.height}${d.shift !== undefined ? `, shift ${d.shift}` : ''}`);
  } else {
    out.push(`  layout: ${kind}`);
  }
  out.push(`  parameters: ${r.parameters.toLocaleString('en-US')}`);
  for (const c of r.components) {
    out.push('', `${c.name}${c.className ? `  ${safeText(c.className, 120)}` : ''}  (${c.path})`);
    if (c.config) {
      const fields = Object.entries(c.config).filter(([k]) => !k.startsWith('_')).map(([k, v]) => `${safeText(k, 60)}=${valueText(v)}`);
      if (fields.length) out.push(`  config: ${fields.join(' ')}`);
    }
    if (c.files) out.push(`  files: ${c.files.map((f) => safeText(f)).join(', ')}`);
    const k = c.checkpoint;
    if (!k) continue;
    const dtypes = Object.entries(k.dtypes).map(([d, n]) => `${d} ×${n}`).join(', ');
    out.push(`  checkpoint: ${path.basename(k.source)}, ${k.tensorCount} tensors (${dtypes}), ${k.parameters.toLocaleString('en-US')} parameters, ${bytesText(k.bytes)}${k.keyLayout ? `, ${k.keyLayout}` : ''}`);
    if (k.model) out.push(`  model: ${k.model}`);
    if (k.precision) out.push(`  precision: ${k.precision}`);
    if (k.metadata) out.push(`  metadata: ${Object.entries(k.metadata).map(([a, b]) => `${safeText(a, 60)}=${safeText(b)}`).join(' ')}`);
    if (o.tensors) {
      const shown = k.tensors.slice(0, o.maxTensors).map((t) => ({ name: safeText(t.name), dtype: t.dtype, shape: t.shape }));
      let width = 0;
      for (const t of shown) width = Math.max(width, t.name.length);
      width = Math.min(60, width);
      for (const t of shown) out.push(`    ${t.name.padEnd(width)}  ${t.dtype.padEnd(4)}  ${shapeText(t.shape)}`);
      if (k.tensors.length > o.maxTensors) out.push(`    … ${k.tensors.length - o.maxTensors} more (--all lists every tensor)`);
    }
  }
  return out;
}
