/**
 * The original Wan DiT layout (`wan/modules/model.py` WanModel: `blocks.0.self_attn.q.weight`,
 * `head.head.weight`, …, with a WanModel config.json: `dim`, `num_heads`, `in_dim`, …) and its
 * mapping onto Diffusers' WanTransformer3DModel, following Diffusers'
 * `scripts/convert_wan_to_diffusers.py`: a pure key rename (no transposes) and a config translation.
 */
import type { ConfigJson } from '../../src/config/config-schema.js';
import { positiveInt } from '../../src/config/value-types.js';
import { describeValue } from '../../src/describe.js';
import { ConfigError } from '../../src/errors.js';
import type { ComponentLayout } from '../component-layout.js';
import { stripCheckpointPrefix } from './checkpoint-prefix.js';
import { checkWanTransformerHeads, wanTransformerConfigFromShapes } from './wan-transformer-shapes.js';

/** Which naming a transformer checkpoint uses. */
export type TransformerKeyLayout = 'diffusers' | 'original';

/** [original, Diffusers] module or parameter paths outside the blocks. */
export const TRANSFORMER_TOP_LEVEL_RENAMES: ReadonlyArray<readonly [string, string]> = [
  ['patch_embedding', 'patch_embedding'],
  ['text_embedding.0', 'condition_embedder.text_embedder.linear_1'],
  ['text_embedding.2', 'condition_embedder.text_embedder.linear_2'],
  ['time_embedding.0', 'condition_embedder.time_embedder.linear_1'],
  ['time_embedding.2', 'condition_embedder.time_embedder.linear_2'],
  ['time_projection.1', 'condition_embedder.time_proj'],
  ['head.modulation', 'scale_shift_table'],
  ['head.head', 'proj_out'],
];

/**
 * [original, Diffusers] paths inside `blocks.<i>.`. The original calls the norms norm1, norm3, norm2
 * in execution order: its norm3 (the affine cross-attention norm) is Diffusers' norm2, and its
 * parameter-free norm2 (before the FFN) is Diffusers' norm3.
 */
export const TRANSFORMER_BLOCK_RENAMES: ReadonlyArray<readonly [string, string]> = [
  ['self_attn.q', 'attn1.to_q'],
  ['self_attn.k', 'attn1.to_k'],
  ['self_attn.v', 'attn1.to_v'],
  ['self_attn.o', 'attn1.to_out.0'],
  ['self_attn.norm_q', 'attn1.norm_q'],
  ['self_attn.norm_k', 'attn1.norm_k'],
  ['cross_attn.q', 'attn2.to_q'],
  ['cross_attn.k', 'attn2.to_k'],
  ['cross_attn.v', 'attn2.to_v'],
  ['cross_attn.o', 'attn2.to_out.0'],
  ['cross_attn.norm_q', 'attn2.norm_q'],
  ['cross_attn.norm_k', 'attn2.norm_k'],
  ['norm1', 'norm1'],
  ['norm2', 'norm3'],
  ['norm3', 'norm2'],
  ['ffn.0', 'ffn.net.0.proj'],
  ['ffn.2', 'ffn.net.2'],
  ['modulation', 'scale_shift_table'],
];

const LEAVES = new Set(['weight', 'bias']);

function renameWith(path: string, table: ReadonlyArray<readonly [string, string]>, from: 0 | 1): string | undefined {
  const to = from === 0 ? 1 : 0;
  for (const entry of table) {
    const src = entry[from];
    if (path === src) return entry[to];
    if (path.startsWith(`${src}.`) && LEAVES.has(path.slice(src.length + 1))) return `${entry[to]}${path.slice(src.length)}`;
  }
  return undefined;
}

function renameKey(key: string, from: 0 | 1): string | undefined {
  const block = /^blocks\.(\d+)\.(.+)$/.exec(key);
  if (block) {
    const inner = renameWith(block[2], TRANSFORMER_BLOCK_RENAMES, from);
    return inner === undefined ? undefined : `blocks.${block[1]}.${inner}`;
  }
  return renameWith(key, TRANSFORMER_TOP_LEVEL_RENAMES, from);
}

/** The Diffusers name of an original Wan DiT key (prefix already stripped); undefined if it has none. */
export function originalToDiffusersKey(key: string): string | undefined {
  return renameKey(key, 0);
}

/** The original Wan name of a Diffusers DiT key; undefined if it has none. */
export function diffusersToOriginalKey(key: string): string | undefined {
  return renameKey(key, 1);
}

/**
 * Guesses the layout of a DiT checkpoint from its keys (prefixes allowed): counts keys that only
 * the original names (`head.*`, `time_embedding.*`, `*.self_attn.*`, `*.modulation`, …) against
 * keys only Diffusers names (`condition_embedder.*`, `proj_out.*`, `*.attn1.*`, …).
 */
export function detectTransformerLayout(keys: Iterable<string>): TransformerKeyLayout {
  let original = 0;
  let diffusers = 0;
  for (const raw of keys) {
    const key = stripCheckpointPrefix(raw);
    if (/^(head|time_embedding|text_embedding|time_projection)\.|\.(self_attn|cross_attn)\.|\.modulation$|\.ffn\.[02]\./.test(key)) original++;
    else if (/^(condition_embedder|proj_out)\.|^scale_shift_table$|\.(attn1|attn2)\.|\.scale_shift_table$|\.ffn\.net\./.test(key)) diffusers++;
  }
  return original > diffusers ? 'original' : 'diffusers';
}

/** The WanModel constructor's defaults, for keys a config.json leaves out. */
const WAN_MODEL_DEFAULTS = { dim: 2048, num_heads: 16, in_dim: 16, out_dim: 16, ffn_dim: 8192, num_layers: 32 } as const;

/** Whether a DiT config.json is the original WanModel's (`dim`, `num_heads`) rather than Diffusers'. */
export function isWanModelConfig(json: ConfigJson): boolean {
  return json._class_name === 'WanModel' || (json._class_name === undefined && 'dim' in json && 'num_heads' in json);
}

/**
 * A DiT config.json as Diffusers' WanTransformer3DModel config: a WanModel config translated
 * (num_attention_heads = num_heads, attention_head_dim = dim / num_heads, in/out_channels =
 * in/out_dim, qk_norm true → "rms_norm_across_heads"), a Diffusers config unchanged.
 */
export function diffusersTransformerConfig(json: ConfigJson): ConfigJson {
  if (!isWanModelConfig(json)) return json;
  const int = (key: keyof typeof WAN_MODEL_DEFAULTS): number => {
    const v = json[key] ?? WAN_MODEL_DEFAULTS[key];
    const n = positiveInt.parse(v);
    if (n === undefined) throw new ConfigError(`WanModel config: "${key}" must be ${positiveInt.expected}, got ${describeValue(v)}`);
    return n;
  };
  const dim = int('dim');
  const heads = int('num_heads');
  if (dim % heads !== 0) throw new ConfigError(`WanModel config: "dim" ${dim} is not divisible by "num_heads" ${heads}`);
  const window = json.window_size;
  if (window !== undefined && !(Array.isArray(window) && window.every((w) => w === -1))) {
    throw new ConfigError(`WanModel config: "window_size" ${describeValue(window)}: only global attention (-1, -1) is supported`);
  }
  const qk = json.qk_norm ?? true;
  if (typeof qk !== 'boolean') throw new ConfigError(`WanModel config: "qk_norm" must be true or false, got ${describeValue(qk)}`);
  const translated: ConfigJson = {
    _class_name: 'WanTransformer3DModel',
    patch_size: json.patch_size,
    num_attention_heads: heads,
    attention_head_dim: dim / heads,
    in_channels: int('in_dim'),
    out_channels: int('out_dim'),
    text_dim: json.text_dim,
    freq_dim: json.freq_dim,
    ffn_dim: int('ffn_dim'),
    num_layers: int('num_layers'),
    cross_attn_norm: json.cross_attn_norm,
    qk_norm: qk ? 'rms_norm_across_heads' : null,
    eps: json.eps,
  };
  return Object.fromEntries(Object.entries(translated).filter(([, v]) => v !== undefined));
}

/**
 * Original Wan key names (a `model.diffusion_model.` repack prefix allowed), config.json in either
 * spelling; without one (ComfyUI single files), the config read from the tensor shapes.
 */
export const WAN_TRANSFORMER_ORIGINAL: ComponentLayout = {
  name: 'original Wan keys',
  matches: (source) => detectTransformerLayout(source.keys()) === 'original',
  readsConfigFile: true,
  config: (file, source) => (file === undefined ? wanTransformerConfigFromShapes(source) : { json: diffusersTransformerConfig(file) }),
  rename: (source, config) => {
    checkWanTransformerHeads(source, config);
    return (key) => {
      const k = stripCheckpointPrefix(key);
      return originalToDiffusersKey(k) ?? k;
    };
  },
};
