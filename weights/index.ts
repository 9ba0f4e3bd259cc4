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
export { CheckpointError } from '../src/errors.js';
