import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeValue, safeText } from '../describe.js';
import { CheckpointError, ConfigError } from '../errors.js';
import { readJsonFile } from '../../weights/read-json.js';

/** How a model folder is laid out: Diffusers (`model_index.json` + one folder per component) or the original Wan release. */
export type ModelLayout = 'diffusers' | 'wan';

/** Where a ModelIndex comes from: a model folder in one of the layouts, or components given one by one (`files`: ComfyUI single files). */
export type ModelSource = ModelLayout | 'files';

/** Generation settings a model is meant to be run with (overridable per call). */
export interface SamplingDefaults {
  numInferenceSteps: number;
  guidanceScale: number;
  /** Low-noise expert's guidance (two-expert models only). */
  guidanceScale2: number | undefined;
  numFrames: number;
  fps: number;
  height: number;
  width: number;
  /** Flow shift passed to the scheduler; undefined keeps the scheduler config's. */
  shift: number | undefined;
  /** Text rows the prompt embedding is padded to (Diffusers' max_sequence_length, 512). */
  maxSequenceLength: number;
}

/** A model folder, resolved: where each component lives and how the pipeline is configured. */
export interface ModelIndex {
  layout: ModelSource;
  root: string;
  /** `_class_name` of model_index.json ('WanPipeline', 'WanImageToVideoPipeline'), or 'WanModel' for the original layout. */
  className: string;
  /** Two experts: `transformer` while t ≥ boundaryRatio·numTrainTimesteps, `transformer2` after. */
  boundaryRatio: number | null;
  /** Per-token timesteps [B, L] (Wan2.2-TI2V-5B). */
  expandTimesteps: boolean;
  /** Folder or file of the (high-noise) transformer. */
  transformer: string;
  /** Folder or file of the low-noise transformer (two-expert models). */
  transformer2: string | undefined;
  vae: string | undefined;
  textEncoder: string | undefined;
  tokenizer: string | undefined;
  /** The scheduler folder, or a config to build one from (original layout). */
  scheduler: string | Record<string, unknown>;
  numTrainTimesteps: number;
  defaults: SamplingDefaults;
}

/** The index of a model folder. */
export type FolderIndex = ModelIndex & { layout: ModelLayout };

/** Diffusers' WanPipeline.__call__ defaults (Wan2.1 T2V). */
const WAN21_DEFAULTS: SamplingDefaults = { numInferenceSteps: 50, guidanceScale: 5.0, guidanceScale2: undefined, numFrames: 81, fps: 16, height: 480, width: 832, shift: undefined, maxSequenceLength: 512 };
/** Wan2.2-T2V-A14B (wan/configs/wan_t2v_A14B.py): 40 steps, guidance 4.0 high-noise / 3.0 low-noise. */
const A14B_DEFAULTS: SamplingDefaults = { ...WAN21_DEFAULTS, numInferenceSteps: 40, guidanceScale: 4.0, guidanceScale2: 3.0, height: 720, width: 1280 };
/** Wan2.2-I2V-A14B (wan/configs/wan_i2v_A14B.py): 40 steps, guidance 3.5 for both experts, 81 frames at 16 fps. */
const I2V_A14B_DEFAULTS: SamplingDefaults = { ...A14B_DEFAULTS, guidanceScale: 3.5, guidanceScale2: 3.5 };
/** Wan2.2-TI2V-5B (wan/configs/wan_ti2v_5B.py): 121 frames at 24 fps, 704×1280, 50 steps, guidance 5.0. */
const TI2V_DEFAULTS: SamplingDefaults = { ...WAN21_DEFAULTS, numFrames: 121, fps: 24, height: 704, width: 1280 };

/** The optional file beside model_index.json that overrides the sampling defaults (snake_case keys). */
export const SAMPLING_DEFAULTS_FILE = 'wan_tfjs.json';

type Json = Record<string, unknown>;

/** Reads a JSON file that must hold an object (a config); a CheckpointError naming the file otherwise. */
export function readJson(file: string): Json {
  const parsed = readJsonFile(file);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new CheckpointError(`is ${describeValue(parsed)}, not a JSON object`, file);
  return parsed as Json;
}

function isDir(p: string): boolean {
  return fs.existsSync(p) && fs.statSync(p).isDirectory();
}

function optionalNumber(json: Json, key: string, file: string): number | undefined {
  const v = json[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${file}: "${key}" must be a number, got ${describeValue(v)}`);
  return v;
}

/** Applies `wan_tfjs.json` (height, width, num_frames, fps, num_inference_steps, guidance_scale, guidance_scale_2, flow_shift, max_sequence_length). */
function withOverrides(root: string, d: SamplingDefaults): SamplingDefaults {
  const file = path.join(root, SAMPLING_DEFAULTS_FILE);
  if (!fs.existsSync(file)) return d;
  const j = readJson(file);
  const n = (k: string) => optionalNumber(j, k, file);
  return {
    numInferenceSteps: n('num_inference_steps') ?? d.numInferenceSteps,
    guidanceScale: n('guidance_scale') ?? d.guidanceScale,
    guidanceScale2: n('guidance_scale_2') ?? d.guidanceScale2,
    numFrames: n('num_frames') ?? d.numFrames,
    fps: n('fps') ?? d.fps,
    height: n('height') ?? d.height,
    width: n('width') ?? d.width,
    shift: n('flow_shift') ?? d.shift,
    maxSequenceLength: n('max_sequence_length') ?? d.maxSequenceLength,
  };
}

/** A Diffusers component entry ["diffusers", "WanTransformer3DModel"] → its folder; [null, null] → undefined. */
function component(root: string, index: Json, name: string, required: boolean): string | undefined {
  const entry = index[name];
  const present = Array.isArray(entry) && entry.length === 2 && entry[0] !== null && entry[1] !== null;
  if (!present) {
    if (required) throw new CheckpointError(`model_index.json lists no "${name}" component; a Wan pipeline needs one`, path.join(root, 'model_index.json'));
    return undefined;
  }
  const dir = path.join(root, name);
  if (!isDir(dir)) throw new CheckpointError(`model_index.json lists "${name}" (${describeValue(entry[1])}) but the folder is missing`, dir);
  return dir;
}

function readDiffusers(root: string): FolderIndex {
  const file = path.join(root, 'model_index.json');
  const index = readJson(file);
  const className = index._class_name ?? 'WanPipeline';
  if (className !== 'WanPipeline' && className !== 'WanImageToVideoPipeline') {
    const got = typeof className === 'string' ? `"${safeText(className, 120)}"` : `${describeValue(className)}, not a string`;
    throw new ConfigError(`${file}: _class_name is ${got}; supported are WanPipeline and WanImageToVideoPipeline models`);
  }
  const imageEncoder = index.image_encoder;
  if (Array.isArray(imageEncoder) && imageEncoder.some((v) => v !== null)) {
    throw new ConfigError(`${file}: this model conditions on a CLIP image encoder (image_encoder/, Wan2.1-I2V), which wan-tfjs does not implement; Wan2.2-I2V-A14B and TI2V-5B need none`);
  }
  const boundaryRatio = optionalNumber(index, 'boundary_ratio', file) ?? null;
  if (boundaryRatio !== null && !(boundaryRatio > 0 && boundaryRatio < 1)) throw new ConfigError(`${file}: boundary_ratio must lie in (0, 1), got ${boundaryRatio}`);
  const expandTimesteps = index.expand_timesteps === true;
  const transformer = component(root, index, 'transformer', true)!;
  const transformer2 = component(root, index, 'transformer_2', false);
  if (boundaryRatio !== null && !transformer2) throw new CheckpointError('boundary_ratio is set (two experts) but there is no transformer_2', file);
  const schedulerDir = component(root, index, 'scheduler', true)!;
  const schedulerFile = path.join(schedulerDir, 'scheduler_config.json');
  if (!fs.existsSync(schedulerFile)) throw new CheckpointError('scheduler_config.json is missing', schedulerFile);
  const sched = readJson(schedulerFile);
  const i2v = className === 'WanImageToVideoPipeline';
  const defaults = boundaryRatio !== null ? (i2v ? I2V_A14B_DEFAULTS : A14B_DEFAULTS) : expandTimesteps ? TI2V_DEFAULTS : WAN21_DEFAULTS;
  return {
    layout: 'diffusers',
    root,
    className,
    boundaryRatio,
    expandTimesteps,
    transformer,
    transformer2: boundaryRatio !== null ? transformer2 : undefined,
    vae: component(root, index, 'vae', false),
    textEncoder: component(root, index, 'text_encoder', false),
    tokenizer: component(root, index, 'tokenizer', false),
    scheduler: schedulerDir,
    numTrainTimesteps: optionalNumber(sched, 'num_train_timesteps', schedulerFile) ?? 1000,
    defaults: withOverrides(root, defaults),
  };
}

/** The first file in `root` whose name matches, preferring safetensors over PyTorch pickles. */
function findFile(root: string, pattern: RegExp): string | undefined {
  const files = fs.readdirSync(root).filter((f) => pattern.test(f));
  const st = files.find((f) => f.endsWith('.safetensors'));
  const any = st ?? files.find((f) => /\.(pth|pt|bin)$/.test(f));
  return any ? path.join(root, any) : undefined;
}

/** The DiT checkpoint of a single-model original folder (which also holds the VAE and T5 files). */
function transformerFile(root: string): string {
  for (const f of ['diffusion_pytorch_model.safetensors.index.json', 'diffusion_pytorch_model.safetensors']) {
    if (fs.existsSync(path.join(root, f))) return path.join(root, f);
  }
  throw new CheckpointError('no diffusion_pytorch_model.safetensors[.index.json] beside the WanModel config.json', root);
}

/** The Wan repo's FlowUniPCMultistepScheduler with the config's sample_shift. */
function wanScheduler(shift: number): Record<string, unknown> {
  return { _class_name: 'FlowUniPCMultistepScheduler', num_train_timesteps: 1000, shift, solver_order: 2, prediction_type: 'flow_prediction', predict_x0: true, solver_type: 'bh2', lower_order_final: true, disable_corrector: [], final_sigmas_type: 'zero' };
}

function readWan(root: string): FolderIndex {
  const high = path.join(root, 'high_noise_model');
  const low = path.join(root, 'low_noise_model');
  const twoExperts = isDir(high) || isDir(low);
  if (twoExperts && !(isDir(high) && isDir(low))) {
    throw new CheckpointError(`an original Wan2.2 A14B folder needs both high_noise_model/ and low_noise_model/; ${isDir(high) ? 'low' : 'high'}_noise_model/ is missing`, root);
  }
  const configFile = path.join(twoExperts ? high : root, 'config.json');
  const cfg = fs.existsSync(configFile) || !twoExperts ? readJson(configFile) : {};
  // model_type, else the channels: a DiT taking more channels than it returns is image-conditioned
  const inDim = typeof cfg.in_dim === 'number' ? cfg.in_dim : undefined;
  const outDim = typeof cfg.out_dim === 'number' ? cfg.out_dim : undefined;
  const modelType = cfg.model_type ?? (inDim !== undefined && outDim !== undefined && inDim > outDim ? 'i2v' : 't2v');
  if (typeof modelType !== 'string') throw new ConfigError(`${configFile}: model_type is ${describeValue(modelType)}, not a string`);
  if (!twoExperts && modelType === 'i2v') {
    throw new ConfigError(`${configFile}: a single i2v model (Wan2.1-I2V) conditions on a CLIP image encoder, which wan-tfjs does not implement; Wan2.2-I2V-A14B and TI2V-5B need none`);
  }
  const supported = twoExperts ? ['t2v', 'i2v'] : ['t2v', 'ti2v'];
  if (!supported.includes(modelType)) throw new ConfigError(`${configFile}: model_type "${safeText(modelType, 120)}" is not supported here (${supported.join(', ')})`);
  const release = wanReleaseSettings(twoExperts, modelType === 'i2v', modelType === 'ti2v');
  const tokenizer = path.join(root, 'google', 'umt5-xxl');
  return {
    layout: 'wan',
    root,
    className: 'WanModel',
    ...release,
    transformer: twoExperts ? high : transformerFile(root),
    transformer2: twoExperts ? low : undefined,
    vae: findFile(root, /^Wan2\.[12]_VAE\.(safetensors|pth)$/i) ?? findFile(root, /vae.*\.(safetensors|pth)$/i),
    textEncoder: findFile(root, /^models_t5_.*\.(safetensors|pth)$/i) ?? findFile(root, /t5.*\.(safetensors|pth)$/i),
    tokenizer: isDir(tokenizer) ? tokenizer : undefined,
    defaults: withOverrides(root, release.defaults),
  };
}

/** What the original Wan release sets for a model kind: the experts' boundary, the scheduler and the sampling defaults. */
export type WanReleaseSettings = Pick<ModelIndex, 'boundaryRatio' | 'expandTimesteps' | 'scheduler' | 'numTrainTimesteps' | 'defaults'>;

/**
 * The original Wan repo's settings (wan/configs) for two experts (A14B) or one model, image-to-video
 * (in_dim > out_dim) or TI2V-5B: t2v-A14B shift 12, boundary 0.875; i2v-A14B shift 5, boundary 0.900;
 * single models shift 5; the scheduler its FlowUniPCMultistepScheduler with that shift.
 */
export function wanReleaseSettings(twoExperts: boolean, i2v: boolean, ti2v: boolean): WanReleaseSettings {
  const defaults = twoExperts ? (i2v ? { ...I2V_A14B_DEFAULTS, shift: 5.0 } : { ...A14B_DEFAULTS, shift: 12.0 }) : { ...(ti2v ? TI2V_DEFAULTS : WAN21_DEFAULTS), shift: 5.0 };
  return { boundaryRatio: twoExperts ? (i2v ? 0.9 : 0.875) : null, expandTimesteps: ti2v, scheduler: wanScheduler(defaults.shift), numTrainTimesteps: 1000, defaults };
}

/** Which layout a folder has, or undefined when it is not a Wan model folder. */
export function detectLayout(dir: string): ModelLayout | undefined {
  if (!isDir(dir)) return undefined;
  if (fs.existsSync(path.join(dir, 'model_index.json'))) return 'diffusers';
  if (isDir(path.join(dir, 'high_noise_model')) || isDir(path.join(dir, 'low_noise_model'))) return 'wan';
  const cfg = path.join(dir, 'config.json');
  if (fs.existsSync(cfg)) {
    try {
      const j = JSON.parse(fs.readFileSync(cfg, 'utf-8')) as Json;
      if (j._class_name === 'WanModel' || ('dim' in j && 'num_heads' in j && 'in_dim' in j)) return 'wan';
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * Reads a model folder in either layout: Diffusers (`model_index.json`; `transformer/`,
 * `transformer_2/` with `boundary_ratio` for A14B, `vae/`, `text_encoder/`, `tokenizer/`,
 * `scheduler/`) or original Wan (`high_noise_model/` + `low_noise_model/`, or one `config.json`
 * of a WanModel; `Wan2.x_VAE.safetensors`, `models_t5_*.safetensors`, `google/umt5-xxl/`).
 */
export function readModelIndex(dir: string): FolderIndex {
  const root = path.resolve(dir);
  if (!fs.existsSync(root)) throw new CheckpointError('model folder does not exist', root);
  if (!isDir(root)) throw new CheckpointError('expected a model folder (with model_index.json, or an original Wan release)', root);
  const layout = detectLayout(root);
  if (layout === 'diffusers') return readDiffusers(root);
  if (layout === 'wan') return readWan(root);
  throw new CheckpointError(
    'not a Wan model folder: expected model_index.json (Diffusers layout) or high_noise_model/ + low_noise_model/ or a WanModel config.json (original Wan layout)',
    root,
  );
}
