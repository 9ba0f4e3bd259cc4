/**
 * Key conventions of published Wan LoRA files, and the mapping between them. Two forms exist:
 *
 * - Diffusers / PEFT (what `WanPipeline.save_lora_weights` writes):
 *   `transformer.blocks.0.attn1.to_q.lora_A.weight` [r, in], `….lora_B.weight` [out, r]; the alpha,
 *   when known, is in the file's `lora_adapter_metadata` JSON (`transformer.lora_alpha`, `transformer.r`),
 *   else alpha = r (scale 1).
 * - Original Wan / ComfyUI / DiffSynth (what Diffusers' `_convert_non_diffusers_wan_lora_to_diffusers`
 *   reads): `diffusion_model.blocks.0.self_attn.q.lora_down.weight` [r, in], `….lora_up.weight`
 *   [out, r], optional `….alpha` (a scalar; scale = alpha / r, else 1). Some files use lora_A/lora_B
 *   with the original module names; both are accepted.
 *
 * Module names map with the same table as the base checkpoints (weights/layouts/wan-transformer-original.ts).
 */
import { diffusersToOriginalKey, originalToDiffusersKey } from './layouts/wan-transformer-original.js';

export type LoraKeyFormat = 'diffusers' | 'wan';

/** Which tensor of an adapter a key holds. `diff_b` is a bias delta some Wan LoRAs carry. */
export type LoraPart = 'A' | 'B' | 'alpha' | 'diff_b';

export interface ParsedLoraKey {
  /** Diffusers module path inside the transformer, e.g. `blocks.0.attn1.to_q`. */
  module: string;
  part: LoraPart;
  format: LoraKeyFormat;
}

const DIFFUSERS_PREFIXES = ['transformer.', 'base_model.model.'];
const WAN_PREFIXES = ['model.diffusion_model.', 'diffusion_model.'];

function splitPart(key: string): { path: string; part: LoraPart; named: 'AB' | 'downup' | 'none' } | undefined {
  const m = /^(.*)\.(lora_A|lora_B|lora_down|lora_up)(?:\.default)?\.weight$/.exec(key);
  if (m) {
    const part: LoraPart = m[2] === 'lora_A' || m[2] === 'lora_down' ? 'A' : 'B';
    return { path: m[1], part, named: m[2] === 'lora_A' || m[2] === 'lora_B' ? 'AB' : 'downup' };
  }
  const a = /^(.*)\.(alpha|diff_b)$/.exec(key);
  if (a) return { path: a[1], part: a[2] === 'alpha' ? 'alpha' : 'diff_b', named: 'none' };
  return undefined;
}

/** Whether a module path (no prefix) uses the original Wan names (`self_attn`, `ffn.0`, `head.head`, …). */
function isOriginalPath(path: string): boolean {
  return /(^|\.)(self_attn|cross_attn)\.|(^|\.)ffn\.[02]$|^head\.head$|^(time|text)_embedding\.|^time_projection\./.test(path);
}

/**
 * Reads one LoRA key in either form; returns the Diffusers module path it adapts, or undefined for
 * a key that is not a LoRA tensor.
 */
export function parseLoraKey(key: string): ParsedLoraKey | undefined {
  let k = key;
  let prefixed: LoraKeyFormat | undefined;
  for (const p of WAN_PREFIXES) if (k.startsWith(p)) { k = k.slice(p.length); prefixed = 'wan'; break; }
  if (!prefixed) for (const p of DIFFUSERS_PREFIXES) if (k.startsWith(p)) { k = k.slice(p.length); prefixed = 'diffusers'; break; }
  const s = splitPart(k);
  if (!s) return undefined;
  const original = isOriginalPath(s.path);
  const format: LoraKeyFormat = original || s.named === 'downup' || prefixed === 'wan' ? 'wan' : 'diffusers';
  const module = original ? originalToDiffusersKey(s.path) : s.path;
  if (module === undefined) return undefined;
  return { module, part: s.part, format };
}

/** The key of one adapter tensor in the given form. module: a Diffusers module path. */
export function loraKey(module: string, part: Exclude<LoraPart, 'diff_b'>, format: LoraKeyFormat): string {
  if (format === 'diffusers') {
    if (part === 'alpha') return `transformer.${module}.alpha`;
    return `transformer.${module}.lora_${part}.weight`;
  }
  const original = diffusersToOriginalKey(module) ?? module;
  if (part === 'alpha') return `diffusion_model.${original}.alpha`;
  return `diffusion_model.${original}.${part === 'A' ? 'lora_down' : 'lora_up'}.weight`;
}

/** The form most keys of a file use. */
export function detectLoraFormat(keys: Iterable<string>): LoraKeyFormat {
  let wan = 0;
  let diffusers = 0;
  for (const key of keys) {
    const p = parseLoraKey(key);
    if (p?.format === 'wan') wan++;
    else if (p) diffusers++;
  }
  return wan > diffusers ? 'wan' : 'diffusers';
}

/** The safetensors metadata key Diffusers stores the adapter config under (JSON). */
export const LORA_ADAPTER_METADATA_KEY = 'lora_adapter_metadata';
