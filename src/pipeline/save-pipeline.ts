/**
 * Saving a WanPipeline as a Diffusers pipeline folder (Diffusers' `DiffusionPipeline.save_pretrained`),
 * which WanPipeline.fromPretrained reads back to the same outputs:
 *
 *   model_index.json          `_class_name`, `boundary_ratio` (two experts), `expand_timesteps` and each component's [library, class]
 *   wan_tfjs.json             the sampling defaults (SAMPLING_DEFAULTS_FILE), so the folder generates as the pipeline does
 *   scheduler/scheduler_config.json   the scheduler's config (its schema's toJSON)
 *   transformer/, transformer_2/      each expert's config.json + diffusion_pytorch_model.safetensors (float32)
 *   vae/                      config.json + diffusion_pytorch_model.safetensors
 *   text_encoder/, tokenizer/ config.json + model.safetensors; tokenizer.json (+ tokenizer_config.json) — when the pipeline has a text encoder
 *
 * The weights written are those of the models in memory (a trained or merged expert is saved as it
 * is), except the text encoder's: WanTextEncoder keeps its umT5 and tokenizer to itself, and no call
 * changes them, so they are read again from the files the pipeline was loaded from (any layout)
 * and written in the Diffusers/transformers one. The folder is written atomically
 * (weights/save-pretrained.ts: FolderReplacement); an existing folder holding anything but these
 * names is refused.
 */
import { AutoencoderKLWan } from '../../layers/autoencoder-kl-wan.js';
import { loraModules } from '../../layers/lora-linear.js';
import { UMT5EncoderModel } from '../../layers/umt5-encoder-model.js';
import { WanTransformer3DModel } from '../../layers/wan-transformer-3d-model.js';
import { FlowDPMSolverConfig, FlowDPMSolverMultistepScheduler } from '../../schedulers/flow-dpmsolver.js';
import { FlowMatchEulerConfig, FlowMatchEulerDiscreteScheduler } from '../../schedulers/flow-match-euler.js';
import { FlowUniPCConfig, FlowUniPCMultistepScheduler } from '../../schedulers/flow-unipc.js';
import type { FlowScheduler } from '../../schedulers/scheduler.js';
import { abandonFolderReplacement, finishFolderReplacement, planFolderReplacement, startFolderReplacement } from '../../weights/save-pretrained.js';
import { fileSystem, filePaths } from '../../weights/file-system.js';
import { readTokenizerFiles } from '../../weights/tokenizer-files.js';
import type { ConfigJson } from '../config/config-schema.js';
import { ConfigError } from '../errors.js';
import { SAMPLING_DEFAULTS_FILE, type ModelIndex, type SamplingDefaults } from './model-index.js';
import type { PipelineTextEncoder, PipelineTransformer, PipelineVae } from './pipeline-components.js';

/** The names a saved pipeline folder holds (an existing folder with others is not replaced). */
export const PIPELINE_FOLDER_NAMES: ReadonlySet<string> = new Set([
  'model_index.json', SAMPLING_DEFAULTS_FILE, 'scheduler', 'text_encoder', 'tokenizer', 'transformer', 'transformer_2', 'vae',
]);

/** The version written as `_diffusers_version`: the Diffusers release whose WanPipeline layout this is. */
const DIFFUSERS_VERSION = '0.35.0';

/** What savePipeline needs of a WanPipeline. */
export interface SavablePipeline {
  readonly expertCount: number;
  /** Expert i, loaded if it is not resident (as a generate call would load it). */
  expert(i: 0 | 1): Promise<PipelineTransformer>;
  readonly vae: PipelineVae | undefined;
  readonly textEncoder: PipelineTextEncoder | undefined;
  readonly scheduler: FlowScheduler;
  readonly boundaryRatio: number | null;
  readonly expandTimesteps: boolean;
  /** Image-condition channels of the DiT (> 0: Wan2.2-I2V-A14B, a WanImageToVideoPipeline). */
  readonly conditionChannels: number;
  readonly defaults: SamplingDefaults;
  /** The folder or files the pipeline was loaded from (fromPretrained), if it was. */
  readonly source: ModelIndex | undefined;
  /** The file of the LoRA loaded with loadLora, if any. */
  readonly loraFile: string | undefined;
}

/** The scheduler's scheduler_config.json, as the reference would write it. */
export function schedulerJson(s: FlowScheduler): ConfigJson {
  const json = s instanceof FlowUniPCMultistepScheduler
    ? FlowUniPCConfig.toJSON(s.config)
    : s instanceof FlowMatchEulerDiscreteScheduler
      ? FlowMatchEulerConfig.toJSON(s.config)
      : s instanceof FlowDPMSolverMultistepScheduler
        ? FlowDPMSolverConfig.toJSON(s.config)
        : undefined;
  if (!json) throw new ConfigError(`savePretrained: cannot write the config of scheduler ${s.className} (${s.constructor.name}); the library's flow schedulers can be saved`);
  return { ...json, _diffusers_version: DIFFUSERS_VERSION };
}

/** wan_tfjs.json: every sampling default (snake_case keys, as withOverrides reads them). */
function samplingDefaultsJson(d: SamplingDefaults): Record<string, number> {
  const out: Record<string, number> = {
    height: d.height, width: d.width, num_frames: d.numFrames, fps: d.fps,
    num_inference_steps: d.numInferenceSteps, guidance_scale: d.guidanceScale, max_sequence_length: d.maxSequenceLength,
  };
  if (d.guidanceScale2 !== undefined) out.guidance_scale_2 = d.guidanceScale2;
  if (d.shift !== undefined) out.flow_shift = d.shift;
  return out;
}

function expertModel(model: PipelineTransformer, name: string): WanTransformer3DModel {
  if (!(model instanceof WanTransformer3DModel)) throw new ConfigError(`savePretrained: ${name} is a ${model.constructor.name}, not a WanTransformer3DModel; only the library's models can be saved`);
  if (loraModules(model).size > 0) {
    throw new ConfigError(`savePretrained: ${name} has LoRA adapters (applyLora); remove them first (removeLora): a pipeline folder holds the base weights, the LoRA is saved on its own (saveLora)`);
  }
  return model;
}

/**
 * Writes `pipe` to `dir` as a Diffusers pipeline folder (see the module comment). Refused with a
 * ConfigError: a loaded LoRA (unloadLora first: its file is the LoRA's saved form), an expert with
 * adapters, a missing VAE, components that are not the library's models, a text encoder whose
 * files are unknown; with a CheckpointError: a `dir` that is a file or holds other files. A failure
 * while writing leaves nothing behind and an existing `dir` as it was.
 */
export async function savePipeline(pipe: SavablePipeline, dir: string): Promise<void> {
  if (pipe.loraFile !== undefined) {
    throw new ConfigError(`savePretrained: the LoRA '${pipe.loraFile}' is loaded; call unloadLora() first (the LoRA file is its saved form)`);
  }
  const vae = pipe.vae;
  if (!(vae instanceof AutoencoderKLWan)) {
    throw new ConfigError(vae ? `savePretrained: the VAE is a ${vae.constructor.name}, not an AutoencoderKLWan; only the library's models can be saved` : 'savePretrained: the pipeline has no VAE (loaded with loadVae: false); load it with its VAE to save it');
  }
  const text = pipe.textEncoder !== undefined ? pipe.source : undefined;
  if (pipe.textEncoder !== undefined && (text?.textEncoder === undefined || text.tokenizer === undefined)) {
    throw new ConfigError('savePretrained: the text encoder was not loaded by WanPipeline.fromPretrained, so the files of its weights and tokenizer are unknown; build the pipeline with fromPretrained, or without a text encoder (embeddings only)');
  }
  const scheduler = schedulerJson(pipe.scheduler);
  const experts = ([['transformer', 0], ['transformer_2', 1]] as const).slice(0, pipe.expertCount);
  const replacement = planFolderReplacement(dir, (n) => PIPELINE_FOLDER_NAMES.has(n), 'a saved pipeline');

  const entry = (present: boolean, library: string, className: string) => (present ? [library, className] : [null, null]);
  const fs = fileSystem();
  const path = filePaths();
  let encoder: UMT5EncoderModel | undefined;
  try {
    startFolderReplacement(replacement);
    const at = (...p: string[]) => path.join(replacement.tmp, ...p);
    for (const [name, i] of experts) expertModel(await pipe.expert(i), name).savePretrained(at(name));
    vae.savePretrained(at('vae'));
    if (text?.textEncoder !== undefined && text.tokenizer !== undefined) {
      encoder = await UMT5EncoderModel.fromPretrained(text.textEncoder);
      encoder.savePretrained(at('text_encoder'));
      encoder.dispose();
      encoder = undefined;
      const tokenizer = readTokenizerFiles(text.tokenizer);
      fs.mkdirSync(at('tokenizer'));
      fs.copyFileSync(tokenizer.file, at('tokenizer', 'tokenizer.json'));
      const config = path.join(path.dirname(tokenizer.file), 'tokenizer_config.json');
      if (fs.existsSync(config)) fs.copyFileSync(config, at('tokenizer', 'tokenizer_config.json'));
    }
    fs.mkdirSync(at('scheduler'));
    fs.writeFileSync(at('scheduler', 'scheduler_config.json'), `${JSON.stringify(scheduler, null, 2)}\n`);
    fs.writeFileSync(at(SAMPLING_DEFAULTS_FILE), `${JSON.stringify(samplingDefaultsJson(pipe.defaults), null, 2)}\n`);
    const modelIndex: ConfigJson = {
      _class_name: pipe.conditionChannels > 0 ? 'WanImageToVideoPipeline' : 'WanPipeline',
      _diffusers_version: DIFFUSERS_VERSION,
      ...(pipe.boundaryRatio !== null ? { boundary_ratio: pipe.boundaryRatio } : {}),
      expand_timesteps: pipe.expandTimesteps,
      scheduler: ['diffusers', pipe.scheduler.className],
      text_encoder: entry(text !== undefined, 'transformers', 'UMT5EncoderModel'),
      tokenizer: entry(text !== undefined, 'transformers', 'T5TokenizerFast'),
      transformer: ['diffusers', 'WanTransformer3DModel'],
      transformer_2: entry(experts.length === 2, 'diffusers', 'WanTransformer3DModel'),
      vae: ['diffusers', 'AutoencoderKLWan'],
    };
    fs.writeFileSync(at('model_index.json'), `${JSON.stringify(modelIndex, null, 2)}\n`);
    finishFolderReplacement(replacement);
  } catch (e) {
    encoder?.dispose();
    throw abandonFolderReplacement(replacement, e);
  }
}
