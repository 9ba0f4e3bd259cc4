// wan-tfjs/weights: safetensors I/O, sharded checkpoints, loading into any module, key maps.
export { SAFETENSORS_DTYPES, decodeTensorBytes, dtypeSize, isFloatDtype, type SafetensorsDtype } from './dtypes.js';
export {
  MAX_HEADER_BYTES,
  SafetensorsFile,
  writeSafetensors,
  type HostTensor,
  type TensorInfo,
  type TensorSource,
  type TensorToWrite,
} from './safetensors.js';
export { ShardedCheckpoint, openCheckpoint } from './sharded.js';
export { loadWeights, hostToTensor, type HasNamedWeights, type LoadOptions, type WeightSlot } from './load.js';
export {
  CHECKPOINT_KEY_PREFIXES,
  detectTransformerLayout,
  diffusersToOriginalKey,
  originalToDiffusersKey,
  stripCheckpointPrefix,
  type TransformerKeyLayout,
} from './wan-transformer-keys.js';
export { isOriginalWanVaeLayout, wanVaeOriginalToDiffusers, type WanVaeKeyLayout } from './wan-vae-keys.js';
export {
  detectUMT5Layout,
  umt5CheckpointRename,
  umt5OriginalToTransformersKey,
  umt5TransformersToOriginalKey,
  type UMT5KeyLayout,
} from './umt5-keys.js';
export { detectLoraFormat, loraKey, parseLoraKey, type LoraKeyFormat, type ParsedLoraKey } from './lora-keys.js';
export { CheckpointError } from '../src/errors.js';
