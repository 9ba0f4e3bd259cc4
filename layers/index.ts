// wan-tfjs/layers: the network layers and models, without pipeline, CLI or video I/O.
export { WanModule, Param, conv2dLayout, conv3dLayout, type Init, type ParamOptions } from './module.js';
export { Linear, type LinearConfig } from './linear.js';
export { RMSNorm, type RMSNormConfig } from './rms-norm.js';
export { FP32LayerNorm, type FP32LayerNormConfig } from './fp32-layer-norm.js';
export { FeedForward, type FeedForwardConfig } from './feed-forward.js';

// Diffusion transformer (DiT)
export { WanRotaryPosEmbed, applyRotaryEmb, ropeAxisDims, ropeTables, type RopeTables, type RotaryEmbedding, type WanRotaryPosEmbedConfig } from './wan-rotary-pos-embed.js';
export { WanAttention, type WanAttentionConfig } from './wan-attention.js';
export { WanTimeTextImageEmbedding, timestepSinusoid, type ConditionEmbeddings, type WanTimeTextImageEmbeddingConfig } from './wan-time-text-image-embedding.js';
export { WanTransformerBlock, type WanTransformerBlockConfig } from './wan-transformer-block.js';
export { WanPatchEmbedding, patchGrid, patchify, unpatchify, type PatchSize, type TokenGrid, type WanPatchEmbeddingConfig } from './wan-patch.js';
export { PRESETS as WAN_TRANSFORMER_PRESETS, WanTransformerConfig, type WanTransformerPreset } from './wan-transformer-config.js';
export { WanTransformer3DModel, type WanTransformerForwardOptions, type WanTransformerLoadOptions } from './wan-transformer-3d-model.js';

// VAE
export { WanCausalConv3d, CausalCache, type WanCausalConv3dConfig } from './wan-causal-conv3d.js';
export { WanRMS_norm, type WanRMSNormConfig } from './wan-rms-norm.js';
export { WanResidualBlock, type WanResidualBlockConfig } from './wan-residual-block.js';
export { WanAttentionBlock, type WanAttentionBlockConfig } from './wan-attention-block.js';
export { WanResample, type WanResampleConfig, type WanResampleMode } from './wan-resample.js';
export { AvgDown3D, type AvgDown3DConfig } from './wan-avg-down.js';
export { DupUp3D, type DupUp3DConfig } from './wan-dup-up.js';
export { WanMidBlock, type WanMidBlockConfig } from './wan-mid-block.js';
export { WanResidualDownBlock, type WanResidualDownBlockConfig } from './wan-residual-down-block.js';
export { WanResidualUpBlock, type WanResidualUpBlockConfig } from './wan-residual-up-block.js';
export { WanUpBlock, type WanUpBlockConfig } from './wan-up-block.js';
export { WanEncoder3d, type WanEncoder3dConfig } from './wan-encoder3d.js';
export { WanDecoder3d, type WanDecoder3dConfig } from './wan-decoder3d.js';
export { AutoencoderKLWanConfig, WAN_VAE_PRESETS, type AutoencoderKLWanPreset } from './autoencoder-kl-wan-config.js';
export {
  AutoencoderKLWan,
  vaePatchify,
  vaeUnpatchify,
  type WanVaeDecodeOptions,
  type WanVaeEncodeOptions,
  type WanVaeLoadOptions,
  type WanVaePosterior,
} from './autoencoder-kl-wan.js';

// umT5 text encoder
export { T5Embedding, type T5EmbeddingConfig } from './t5-embedding.js';
export { UMT5Attention, relativePositionBucket, type UMT5AttentionConfig } from './umt5-attention.js';
export { UMT5DenseGatedActDense, UMT5LayerFF, type UMT5LayerFFConfig } from './umt5-layer-ff.js';
export { UMT5Block, UMT5LayerSelfAttention, type UMT5BlockConfig } from './umt5-block.js';
export { UMT5Config, UMT5_PRESETS, type UMT5Preset } from './umt5-config.js';
export { UMT5EncoderModel, type UMT5EncoderOutput, type UMT5LoadOptions } from './umt5-encoder-model.js';

// Fine-tuning
export { LoraLinear, WAN_LORA_TARGETS, applyLora, loraModules, mergeLora, setBaseTrainable, unmergeLora, type ApplyLoraOptions, type LoraConfig } from './lora-linear.js';

// The op layer the layers call (a backend may register fused kernels for these)
export { attention, geluTanh, layerNorm, linear, rmsNorm, silu, type AttentionOptions } from '../src/backend/ops.js';
