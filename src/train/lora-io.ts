/**
 * Saving and loading LoRA adapters of a WanTransformer3DModel as safetensors, in the two key forms
 * Wan LoRAs are published in (weights/lora-keys.ts): Diffusers/PEFT (`transformer.….lora_A.weight`,
 * alpha in the `lora_adapter_metadata` JSON) and original Wan/ComfyUI (`diffusion_model.….lora_down.weight`,
 * `….lora_up.weight`, `….alpha`). Loading detects the form per key, so a LoRA trained elsewhere loads too.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CheckpointError, ConfigError } from '../errors.js';
import { applyLora, loraModules, type LoraConfig, type LoraLinear } from '../../layers/lora-linear.js';
import type { WanModule } from '../../layers/module.js';
import { hostToTensor } from '../../weights/load.js';
import { LORA_ADAPTER_METADATA_KEY, detectLoraFormat, loraKey, parseLoraKey, type LoraKeyFormat } from '../../weights/lora-keys.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../weights/safetensors.js';

export interface SaveLoraOptions {
  /** Default 'diffusers'. */
  format?: LoraKeyFormat;
  /** Extra safetensors metadata. */
  metadata?: Readonly<Record<string, string>>;
}

function hostOf(t: tf.Tensor): TensorToWrite {
  return { shape: [...t.shape], data: Float32Array.from(t.dataSync()) };
}

/**
 * Writes every adapter of `model` to `file` (atomically). Diffusers form: alpha and rank go into the
 * `lora_adapter_metadata` JSON (`transformer.r`, `transformer.lora_alpha`, plus PEFT's
 * `rank_pattern`/`alpha_pattern` when modules differ). Wan form: a scalar `.alpha` per module.
 */
export function saveLora(model: WanModule, file: string, options: SaveLoraOptions = {}): number {
  const format = options.format ?? 'diffusers';
  const modules = loraModules(model);
  if (modules.size === 0) throw new ConfigError('saveLora: the model has no LoRA adapters (call applyLora first)');
  const tensors: Record<string, TensorToWrite> = {};
  for (const [path, m] of modules) {
    if (m.merged) throw new ConfigError(`saveLora: adapter '${path}' is merged into its base weight; unmerge it first`);
    const a = m.loraA.weight.value;
    const b = m.loraB.weight.value;
    tensors[loraKey(path, 'A', format)] = hostOf(a);
    tensors[loraKey(path, 'B', format)] = hostOf(b);
    if (format === 'wan') tensors[loraKey(path, 'alpha', format)] = { shape: [], data: Float32Array.of(m.alpha) };
  }
  const metadata: Record<string, string> = { format: 'pt', ...options.metadata };
  if (format === 'diffusers') metadata[LORA_ADAPTER_METADATA_KEY] = JSON.stringify(adapterMetadata(modules), null, 2);
  writeSafetensors(file, tensors, metadata);
  return modules.size;
}

function adapterMetadata(modules: Map<string, LoraLinear>): Record<string, unknown> {
  const first = modules.values().next().value as LoraLinear;
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const [path, m] of modules) {
    if (m.rank !== first.rank) rankPattern[path] = m.rank;
    if (m.alpha !== first.alpha) alphaPattern[path] = m.alpha;
  }
  const targets = [...new Set([...modules.keys()].map((p) => p.replace(/^blocks\.\d+\./, '')))].sort();
  return {
    'transformer.r': first.rank,
    'transformer.lora_alpha': first.alpha,
    'transformer.target_modules': targets,
    'transformer.rank_pattern': rankPattern,
    'transformer.alpha_pattern': alphaPattern,
  };
}

export interface LoadLoraOptions {
  /** Make every non-LoRA parameter non-trainable (default true, as for fine-tuning). */
  freezeBase?: boolean;
}

export interface LoadedLora {
  format: LoraKeyFormat;
  /** Adapted module paths with their rank and alpha. */
  modules: Map<string, Required<LoraConfig>>;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** alpha per module from Diffusers' adapter metadata, if the file has it. */
function metadataAlpha(metadata: Readonly<Record<string, string>>, file: string): (path: string) => number | undefined {
  const raw = metadata[LORA_ADAPTER_METADATA_KEY];
  if (!raw) return () => undefined;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(raw) as Record<string, unknown>;
  } catch (e) {
    throw new CheckpointError(`metadata '${LORA_ADAPTER_METADATA_KEY}' is not JSON (${(e as Error).message})`, file);
  }
  const get = (k: string) => json[`transformer.${k}`] ?? json[k];
  const alpha = num(get('lora_alpha'));
  const pattern = get('alpha_pattern');
  const byModule = pattern && typeof pattern === 'object' ? (pattern as Record<string, unknown>) : {};
  return (path) => {
    for (const [k, v] of Object.entries(byModule)) if ((path === k || path.endsWith(`.${k}`)) && num(v) !== undefined) return num(v);
    return alpha;
  };
}

/**
 * Loads a LoRA file into `model`: modules that are not adapted yet are wrapped (rank from the file,
 * alpha from the file or = rank), adapters already present must have the same rank and alpha.
 * Every tensor of the file must fit the model; problems are reported together in one CheckpointError.
 */
export function loadLora(model: WanModule, file: string, options: LoadLoraOptions = {}): LoadedLora {
  const src = SafetensorsFile.open(file);
  try {
    const format = detectLoraFormat(src.keys());
    const groups = new Map<string, { A?: string; B?: string; alpha?: string }>();
    const problems: string[] = [];
    for (const key of src.keys()) {
      const p = parseLoraKey(key);
      if (!p) {
        problems.push(`'${key}' is not a LoRA tensor (expected ….lora_A/lora_B/lora_down/lora_up.weight or ….alpha)`);
        continue;
      }
      if (p.part === 'diff_b') {
        problems.push(`'${key}': bias deltas (diff_b) are not supported`);
        continue;
      }
      const g = groups.get(p.module) ?? {};
      g[p.part] = key;
      groups.set(p.module, g);
    }
    const named = model.namedParams();
    const alphaFromMetadata = metadataAlpha(src.metadata, file);
    const configs = new Map<string, Required<LoraConfig>>();
    for (const [module, g] of groups) {
      if (!g.A || !g.B) {
        problems.push(`module '${module}' lacks its ${g.A ? 'up (lora_B / lora_up)' : 'down (lora_A / lora_down)'} matrix`);
        continue;
      }
      const base = named.get(`${module}.weight`);
      if (!base) {
        problems.push(`module '${module}' does not exist in the model`);
        continue;
      }
      const [r, inA] = src.info(g.A).shape;
      const [outB, rB] = src.info(g.B).shape;
      if (inA !== base.shape[1] || outB !== base.shape[0] || rB !== r) {
        problems.push(`module '${module}': A [${src.info(g.A).shape}] and B [${src.info(g.B).shape}] do not fit weight [${base.shape}]`);
        continue;
      }
      const alpha = g.alpha ? src.read(g.alpha).data[0] : (alphaFromMetadata(module) ?? r);
      configs.set(module, { rank: r, alpha });
    }
    const existing = loraModules(model);
    for (const [module, cfg] of configs) {
      const m = existing.get(module);
      if (m && (m.rank !== cfg.rank || m.alpha !== cfg.alpha)) {
        problems.push(`module '${module}' already has an adapter of rank ${m.rank}, alpha ${m.alpha}; the file has rank ${cfg.rank}, alpha ${cfg.alpha}`);
      }
    }
    if (problems.length) {
      const list = problems.slice(0, 20).join('; ') + (problems.length > 20 ? `; … (${problems.length} in all)` : '');
      throw new CheckpointError(`LoRA does not fit the model: ${list}`, file);
    }
    const fresh = [...configs.keys()].filter((p) => !existing.has(p));
    if (fresh.length) {
      applyLora(model, { rank: 1, targets: fresh, freezeBase: options.freezeBase ?? true, perModule: (p) => configs.get(p) });
    }
    const adapters = loraModules(model);
    for (const [module, g] of groups) {
      const m = adapters.get(module)!;
      m.loraA.weight.assign(hostToTensor(src.read(g.A!)));
      m.loraB.weight.assign(hostToTensor(src.read(g.B!)));
    }
    return { format, modules: configs };
  } finally {
    src.close();
  }
}
