// wan-tfjs: the whole library — pipeline, text, video, backends, and the layer/scheduler/weights APIs.
export * from '../layers/index.js';
export * from '../schedulers/index.js';
export * from '../weights/index.js';

export { AbortError, BackendError, CheckpointError, ConfigError, NonFiniteError, OutOfMemoryError, ShapeError, WanError } from './errors.js';
export { BACKENDS, selectBackend, type BackendName } from './backend/select.js';

export { WanPipeline, type WanPipelineComponents, type WanPipelineLoadOptions } from './pipeline/wan-pipeline.js';
export type { ExpertResidency } from './pipeline/expert-slot.js';
export type { GenerateOptions, ResolvedSettings, StepInfo, TaskName, TextToVideoResult } from './pipeline/generate-options.js';
export type { PipelineTextEncoder, PipelineTransformer, PipelineVae } from './pipeline/pipeline-components.js';
export { removeLora, type LoraExpert, type PipelineLoraOptions } from './pipeline/pipeline-lora.js';
export { readPipelineSpec, type PipelineSpec } from './pipeline/pipeline-spec.js';
export { ResolvedCall, resolveSettings, type ResolveOptions } from './pipeline/resolve-settings.js';
export { memoryBudget, type MemoryBudget } from './pipeline/memory-budget.js';
export { randn, randnHost } from './random.js';
export { detectLayout, readModelIndex, type ModelIndex, type ModelLayout, type ModelSource } from './pipeline/model-index.js';
export { withModelFiles, type ModelFiles } from './pipeline/model-files.js';
export { defaultModelDir } from './pipeline/default-model.js';
export { inspectCheckpoint, type InspectReport } from './pipeline/inspect.js';

export { WanTokenizer, type PaddingStrategy, type TokenizeOptions, type TokenizedBatch } from './text/tokenizer.js';
export { WanTextEncoder, type WanTextEncoderLoadOptions, type WanTextEncoderOptions } from './text/text-encoder.js';
export { PromptEmbeddingCache, type HostEmbedding, type PromptEmbeddingCacheOptions } from './text/embedding-cache.js';
export { promptClean } from './text/prompt-clean.js';
export { DEFAULT_NEGATIVE_PROMPT } from './text/default-negative-prompt.js';

export { MP4_ENCODERS, VIDEO_FORMATS, saveVideo, type Mp4Encoder, type SaveVideoOptions, type SavedVideo, type VideoFormat, type VideoFrames, type VideoMetadata } from './video/save-video.js';
export { OutputFileError, VideoEncoderError, VideoFormatError } from './video/video-error.js';
export { contentSha256, embeddedProvenance, readSidecar, sidecarPath, verifyClip, type CheckpointIdentity, type ModelIdentity, type Provenance, type ProvenanceInput, type ProvenanceSidecar, type VerifyResult } from './video/provenance.js';
export { blockedTerms, promptBlocklist, promptVerdict, SafetyError, type BlocklistOptions, type SafetyChecker, type SafetyFrames, type SafetyInput, type SafetyVerdict } from './video/safety.js';
export { DEFAULT_BLOCKLIST } from './video/blocklist.js';
export { modelIdentity } from './pipeline/model-identity.js';
export { probeMp4, type VideoInfo } from './video/mp4-probe.js';
export { decodeGif, type DecodedGif, type GifFrame } from './video/gif-decoder.js';
export { decodePng, MAX_PNG_PIXELS, pngToImage, type DecodePngOptions, type DecodedPng } from './video/png-decoder.js';
export { applyWatermark, checkWatermark, WATERMARK_POSITIONS, watermarkPlacement, type OptionName as WatermarkOptionName, type Watermark, type WatermarkImage, type WatermarkPlacement, type WatermarkPosition } from './video/watermark.js';

export { CUDA_KERNEL_NAMES, CudaBackend, checkKernels, kernelsUsedBy, missingKernels, registerCudaBackend, type DeviceInfo } from './cuda/index.js';

export { AdamW, clipGradNorm, type AdamWConfig } from './train/adamw.js';
export { checkpoint, enableGradientCheckpointing, trainableVariables } from './train/checkpointing.js';
export { FlowMatchingSampler, flowMatchingBatch, flowMatchingLoss, sampleSigmas, shiftSigma, type FlowMatchingBatch, type FlowMatchingConfig, type TimestepSampling } from './train/flow-matching.js';
export { Trainer, trainableParams, type TrainLog, type TrainerConfig } from './train/trainer.js';
export { loadLora, saveLora, type LoadLoraOptions, type LoadedLora, type SaveLoraOptions } from './train/lora-io.js';
export { registerTrainingKernels } from './train/kernels.js';
export { ShapesDataset, captionEn, captionZh, type Clip, type ClipSpec, type DatasetConfig } from './train/dataset.js';
export { measureClip, type ClipMeasurement } from './train/measure.js';
