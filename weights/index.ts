// wan-tfjs/weights: all checkpoint and config file I/O — safetensors, sharded checkpoints, finding a
// component's files, the layouts of each model family (key renames, configs) and loading into any module.
export { SAFETENSORS_DTYPES, decodeTensorBytes, dtypeSize, isFloatDtype, type SafetensorsDtype } from './dtypes.js';
export {
  MAX_HEADER_BYTES,
  SafetensorsFile,
  writeSafetensors,
  type HostTensor,
  type TensorInfo,
  type TensorSource,
  type RawTensorToWrite,
  type TensorToWrite,
} from './safetensors.js';
export { describeFp8, findFp8Scales, isFp8Dtype, type Fp8Description, type Fp8Scales } from './fp8.js';
export { ShardedCheckpoint } from './sharded.js';
export { safetensorsHeaderSha256 } from './header-hash.js';
export { readJsonFile } from './read-json.js';
export {
  detectComponentLayout,
  findComponentConfig,
  locateComponent,
  openCheckpoint,
  openComponent,
  readConfigObject,
  type ComponentLocation,
  type OpenedComponent,
} from './component.js';
export type { CheckpointConfig, ComponentFamily, ComponentFiles, ComponentLayout } from './component-layout.js';
export { COMPONENT_FAMILIES, SCHEDULER_FILES, TOKENIZER_FILES, UMT5_FAMILY, WAN_TRANSFORMER_FAMILY, WAN_VAE_FAMILY } from './families.js';
export { loadPretrained, type PretrainedOptions } from './load-pretrained.js';
export { savePretrained } from './save-pretrained.js';
export { loadWeights, hostToTensor, type HasNamedWeights, type LoadOptions, type WeightSlot } from './load.js';
export { CHECKPOINT_KEY_PREFIXES, stripCheckpointPrefix } from './layouts/checkpoint-prefix.js';
export {
  WAN_TRANSFORMER_ORIGINAL,
  detectTransformerLayout,
  diffusersToOriginalKey,
  diffusersTransformerConfig,
  originalToDiffusersKey,
  type TransformerKeyLayout,
} from './layouts/wan-transformer-original.js';
export { WAN_TRANSFORMER_DIFFUSERS } from './layouts/wan-transformer-diffusers.js';
export { WAN_VAE_ORIGINAL, isOriginalWanVaeLayout, wanVaeOriginalToDiffusers, type WanVaeKeyLayout } from './layouts/wan-vae-original.js';
export { WAN_VAE_DIFFUSERS } from './layouts/wan-vae-diffusers.js';
export {
  UMT5_ORIGINAL,
  detectUMT5Layout,
  umt5OriginalToTransformersKey,
  umt5TransformersToOriginalKey,
  type UMT5KeyLayout,
} from './layouts/umt5-original.js';
export { UMT5_TRANSFORMERS } from './layouts/umt5-transformers.js';
export { detectLoraFormat, loraKey, parseLoraKey, type LoraKeyFormat, type ParsedLoraKey } from './lora-keys.js';
export { CheckpointError } from '../src/errors.js';
export { readTokenizerFiles, type TokenizerFiles } from './tokenizer-files.js';
