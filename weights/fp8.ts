import type { Fp8Format } from '../src/kernels/registry.js';
import { safeText, shapeText } from '../src/describe.js';
import { CheckpointError } from '../src/errors.js';
import { decodeTensorBytes, isFloatDtype, type SafetensorsDtype } from './dtypes.js';
import type { TensorSource } from './safetensors.js';

/**
 * ComfyUI's scaled fp8 checkpoints. A quantized layer stores `<layer>.weight` as float8 codes q
 * and a per-tensor float32 scale s; the weight is w = decode(q) · s. Two generations of key names:
 *
 * - older `fp8_scaled` files: `<layer>.scale_weight` (s) and `<layer>.scale_input` (the scale of
 *   the GEMM's input for fp8 matmuls), plus one marker tensor `scaled_fp8` or
 *   `<model prefix>.scaled_fp8` (e.g. `model.diffusion_model.scaled_fp8`);
 * - newer files: `<layer>.weight_scale` (s), `<layer>.input_scale`, and the layer's quantization
 *   config as JSON, either in a uint8 tensor `<layer>.comfy_quant` (`{"format": "float8_e4m3fn"}`)
 *   or in the header metadata `_quantization_metadata` (`{"layers": {"<layer>": {"format": …}}}`).
 *
 * Plain `fp8_e4m3fn` files store float8 weights with no scales (s = 1). Input scales only matter
 * to fp8 GEMMs; a weight dequantized up front ignores them.
 */

/** Suffixes of the per-tensor weight scale: `<layer>.scale_weight` (older files), `<layer>.weight_scale` (newer). */
const WEIGHT_SCALE_SUFFIXES = ['.scale_weight', '.weight_scale'] as const;
/** Suffixes of the GEMM input's scale (older, newer). */
const INPUT_SCALE_SUFFIXES = ['.scale_input', '.input_scale'] as const;
const COMFY_QUANT_SUFFIX = '.comfy_quant';
const MARKER = 'scaled_fp8';
const QUANTIZATION_METADATA = '_quantization_metadata';

/** The ComfyUI quantization formats this loader dequantizes, with the storage type of their weights. */
const FP8_FORMATS: Readonly<Record<string, SafetensorsDtype>> = { float8_e4m3fn: 'F8_E4M3', float8_e5m2: 'F8_E5M2' };

export function isFp8Dtype(dtype: SafetensorsDtype): dtype is 'F8_E4M3' | 'F8_E5M2' {
  return dtype === 'F8_E4M3' || dtype === 'F8_E5M2';
}

/** What the loader needs to know about a checkpoint's fp8 scales. */
export interface Fp8Scales {
  /** Weight key → the key of its per-tensor scale s (w = decode(q) · s). */
  readonly scaleOf: ReadonlyMap<string, string>;
  /** Keys that describe the quantization, not a model tensor (scales, input scales, comfy_quant, the scaled_fp8 marker). */
  readonly auxiliary: ReadonlySet<string>;
  /** Scale-like keys whose `<layer>.weight` is not in the checkpoint (the loader reports them as unexpected). */
  readonly orphans: readonly string[];
  /** Scales that are not one element, as 'key: file [shape] vs a per-tensor scale (1 element)'. */
  readonly misShaped: readonly string[];
}

function layerOf(key: string, suffixes: readonly string[]): string | undefined {
  const suffix = suffixes.find((s) => key.endsWith(s));
  return suffix === undefined ? undefined : key.slice(0, -suffix.length);
}

function isMarker(key: string): boolean {
  return key === MARKER || key.endsWith(`.${MARKER}`);
}

/** The `format` of a ComfyUI layer config; an unsupported or malformed one is a CheckpointError. */
function checkFormat(conf: unknown, file: string, where: string, weightDtype?: SafetensorsDtype): void {
  const format = typeof conf === 'object' && conf !== null && !Array.isArray(conf) ? (conf as { format?: unknown }).format : undefined;
  if (typeof format !== 'string') throw new CheckpointError('quantization config has no "format" string', file, where);
  const storage = FP8_FORMATS[format];
  if (storage === undefined) {
    throw new CheckpointError(`quantization format '${safeText(format, 60)}' is not supported (supported: ${Object.keys(FP8_FORMATS).join(', ')})`, file, where);
  }
  if (weightDtype !== undefined && weightDtype !== storage) {
    throw new CheckpointError(`quantization format '${format}' stores ${storage} weights, but the weight is ${weightDtype}`, file, where);
  }
}

/**
 * Finds the fp8 scales of a checkpoint and checks them: every scaled weight is float8, a layer
 * has at most one weight scale, comfy_quant configs and `_quantization_metadata` name fp8 formats
 * that match their weights. Inconsistencies are CheckpointErrors naming the file and key; scales
 * without a weight and scales of more than one element are returned for the loader's report.
 */
export function findFp8Scales(source: TensorSource): Fp8Scales {
  const file = source.label;
  const scaleOf = new Map<string, string>();
  const auxiliary = new Set<string>();
  const orphans: string[] = [];
  const misShaped: string[] = [];
  for (const key of source.keys()) {
    if (isMarker(key)) {
      auxiliary.add(key);
      continue;
    }
    const scaled = layerOf(key, WEIGHT_SCALE_SUFFIXES);
    const layer = scaled ?? layerOf(key, INPUT_SCALE_SUFFIXES) ?? layerOf(key, [COMFY_QUANT_SUFFIX]);
    if (layer === undefined) continue;
    const weightKey = `${layer}.weight`;
    if (!source.has(weightKey)) {
      orphans.push(key);
      continue;
    }
    auxiliary.add(key);
    const weightDtype = source.info(weightKey).dtype;
    const info = source.info(key);
    if (key.endsWith(COMFY_QUANT_SUFFIX)) {
      if (info.dtype !== 'U8') throw new CheckpointError(`a comfy_quant config is stored as U8 JSON bytes, not ${info.dtype}`, file, key);
      let conf: unknown;
      try {
        conf = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(source.readRaw(key)));
      } catch (e) {
        throw new CheckpointError(`comfy_quant is not UTF-8 JSON (${safeText((e as Error).message, 120)})`, file, key);
      }
      checkFormat(conf, file, key, weightDtype);
      continue;
    }
    if (!isFloatDtype(info.dtype)) throw new CheckpointError(`a scale must be a float tensor, not ${info.dtype}`, file, key);
    if (info.shape.reduce((a, d) => a * d, 1) !== 1) {
      misShaped.push(`${safeText(key, 120)}: file ${shapeText(info.shape)} vs a per-tensor scale (1 element)`);
      continue;
    }
    if (scaled === undefined) continue;
    if (!isFp8Dtype(weightDtype)) throw new CheckpointError(`has a weight scale, but the weight is ${weightDtype}, not float8`, file, weightKey);
    const other = scaleOf.get(weightKey);
    if (other !== undefined) throw new CheckpointError(`has two weight scales, '${safeText(other, 120)}' and '${safeText(key, 120)}'`, file, weightKey);
    scaleOf.set(weightKey, key);
  }
  const quantMeta = source.metadata?.[QUANTIZATION_METADATA];
  if (quantMeta !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(quantMeta);
    } catch (e) {
      throw new CheckpointError(`__metadata__.${QUANTIZATION_METADATA} is not JSON (${safeText((e as Error).message, 120)})`, file);
    }
    const layers = typeof parsed === 'object' && parsed !== null ? (parsed as { layers?: unknown }).layers : undefined;
    if (typeof layers !== 'object' || layers === null || Array.isArray(layers)) {
      throw new CheckpointError(`__metadata__.${QUANTIZATION_METADATA} has no "layers" object`, file);
    }
    // Layer names may lack the model prefix the tensors carry, so only the formats are checked here.
    for (const [layer, conf] of Object.entries(layers)) checkFormat(conf, file, `${QUANTIZATION_METADATA} layer '${safeText(layer, 120)}'`);
  }
  return { scaleOf, auxiliary, orphans, misShaped };
}

/** The value of a one-element scale tensor as float32; a non-finite scale is a CheckpointError. */
export function readScale(source: TensorSource, key: string): number {
  const info = source.info(key);
  const value = decodeTensorBytes(info.dtype, source.readRaw(key), key)[0];
  if (!Number.isFinite(value)) throw new CheckpointError(`scale is ${value}`, source.label, key);
  return value;
}

/** The fp8 format of a float8 storage type (F8_E4M3 or F8_E5M2). */
export function fp8FormatOf(dtype: 'F8_E4M3' | 'F8_E5M2'): Fp8Format {
  return dtype === 'F8_E4M3' ? 'e4m3fn' : 'e5m2';
}

/**
 * w = decode(q) · s in place, from the decoded codes `w` and the per-tensor scale s (a float32
 * value). Each element is the float32 product of two float32 values: JavaScript's double product
 * of two 24-bit significands is exact (48 bits ≤ 53), so the Float32Array store rounds once, as a
 * float32 multiply does (the device's dequantization kernel).
 */
export function scaleFp8(w: Float32Array, s: number): Float32Array {
  for (let i = 0; i < w.length; i++) w[i] *= s;
  return w;
}

/** What a checkpoint holds in fp8, for `inspect`. */
export interface Fp8Description {
  /** Number of tensors of each stored type. */
  readonly dtypeCounts: Readonly<Partial<Record<SafetensorsDtype, number>>>;
  /** Tensors stored as F8_E4M3 or F8_E5M2. */
  readonly fp8Tensors: number;
  /** fp8 weights that have a per-tensor weight scale. */
  readonly scaledWeights: number;
  /** Which key names carry the weight scales ('none' without scales, 'both' when the file mixes them). */
  readonly scaleKeys: 'scale_weight' | 'weight_scale' | 'both' | 'none';
  /** Whether the older files' `scaled_fp8` marker tensor is present. */
  readonly marker: boolean;
  /** One line, e.g. 'F8_E4M3 400, F32 600; 400 fp8 weights scaled (scale_weight)'. */
  readonly text: string;
}

/**
 * Counts the stored types of a checkpoint's tensors and its fp8 weight scales, from the header
 * alone (no tensor data is read, nothing is validated).
 */
export function describeFp8(source: TensorSource): Fp8Description {
  const counts: Partial<Record<SafetensorsDtype, number>> = {};
  let fp8Tensors = 0;
  let scaledWeights = 0;
  const kinds = new Set<string>();
  let marker = false;
  for (const key of source.keys()) {
    const { dtype } = source.info(key);
    counts[dtype] = (counts[dtype] ?? 0) + 1;
    if (isFp8Dtype(dtype) && !isMarker(key)) fp8Tensors++;
    if (isMarker(key)) marker = true;
    const suffix = WEIGHT_SCALE_SUFFIXES.find((s) => key.endsWith(s));
    if (suffix === undefined) continue;
    const weightKey = `${key.slice(0, -suffix.length)}.weight`;
    if (source.has(weightKey) && isFp8Dtype(source.info(weightKey).dtype)) {
      scaledWeights++;
      kinds.add(suffix.slice(1));
    }
  }
  const scaleKeys = kinds.size === 2 ? 'both' : kinds.size === 0 ? 'none' : (([...kinds][0]) as 'scale_weight' | 'weight_scale');
  const types = Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([d, n]) => `${d} ${n}`)
    .join(', ');
  const scales = fp8Tensors === 0 ? 'no fp8' : scaledWeights === 0 ? 'fp8 without scales' : `${scaledWeights} fp8 weights scaled (${scaleKeys === 'both' ? 'scale_weight and weight_scale' : scaleKeys})`;
  return { dtypeCounts: counts, fp8Tensors, scaledWeights, scaleKeys, marker, text: `${types || 'no tensors'}; ${scales}` };
}
