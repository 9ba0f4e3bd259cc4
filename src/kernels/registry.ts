/**
 * What the op layer (src/backend/ops.ts) and the backends that implement its fused kernels
 * (src/cuda) share, so neither imports the other: the fused kernels' names, and the precision
 * vocabulary (the storage precisions, the options that set them, and the fp32 islands the layers
 * declare).
 */
import { BackendError } from '../errors.js';

/** The library's fused kernels, by the name a backend registers them under. */
export const KERNELS = {
  /** softmax(scale·q·kᵀ)·v; inputs q, k, v [B, L, H, D]; attr scale. */
  attention: 'WanAttention',
  /** x · rsqrt(mean(x²) + eps) · weight, then an activation; inputs x, weight; attrs eps, activation ('none' | 'silu'). */
  rmsNorm: 'WanRmsNorm',
  /** (x − mean) · rsqrt(var + eps) [· weight] [+ bias]; inputs x, weight?, bias?; attr eps. */
  layerNorm: 'WanLayerNorm',
  /** layerNorm(x) · (1 + scale) + shift; inputs x [B, L, C], scale and shift [B or 1, 1 or L, C]; attr eps. */
  layerNormModulate: 'WanLayerNormModulate',
  /**
   * x + y · gate in float32 (the residual stream of a Wan block); inputs x and y [B, L, C], gate?
   * [B or 1, 1 or L, C]; the product and the sum each rounded to float32, as two ops would.
   */
  gatedResidual: 'WanGatedResidual',
  /** 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))); input x. */
  geluTanh: 'WanGeluTanh',
  /** Rotary embedding of head pairs; inputs x [B, L, H, D], cos and sin [1, L, 1, D]. */
  rope: 'WanRope',
  /** x · wᵀ + b, then an activation; inputs x [.., in], weight [out, in], bias? [out]; attr activation. */
  linear: 'WanLinear',
  /**
   * Channels-last 3D convolution with symmetric spatial zero padding, plus a bias and a residual;
   * inputs x [B, T, H, W, C], filter [kt, kh, kw, C, O], bias? [O], residual? (the output's shape);
   * attrs strides [st, sh, sw], pads [ph, pw].
   */
  conv3d: 'WanConv3d',
  /** The same values in another storage precision; input x; attr storage ('fp32' | 'policy'). */
  storeAs: 'WanStoreAs',
} as const;

export type KernelName = (typeof KERNELS)[keyof typeof KERNELS];

/** Activations a fused linear applies after the bias. */
export type LinearActivation = 'none' | 'gelu_tanh';

/** Activations a fused norm applies to its result. */
export type NormActivation = 'none' | 'silu';

/**
 * How a backend stores float32 tensors: all in float32, or in bfloat16 where the arithmetic is
 * not inside an fp32 island (tensors keep tfjs dtype float32 either way; reads upcast).
 */
export type Precision = 'bf16' | 'fp32';

export const PRECISIONS: readonly Precision[] = ['bf16', 'fp32'];

/** `value` as a Precision; a BackendError naming `what` (an option or variable) otherwise. */
export function checkPrecision(value: unknown, what: string): Precision {
  if (PRECISIONS.includes(value as Precision)) return value as Precision;
  throw new BackendError(`${what} must be one of ${PRECISIONS.join(', ')}, got '${String(value).slice(0, 40)}'`);
}

/** Which bf16 attention kernel may run: cuDNN's fused SDPA, else the built-in flash kernel ('auto'), or one of them only. */
export type AttentionKernel = 'auto' | 'cudnn' | 'flash';

/** Raw 16-bit float formats a checkpoint stores: bfloat16 and IEEE half. */
export type StoredFormat = 'bf16' | 'f16';

/** The float8 formats of checkpoint weights: float8_e4m3fn (safetensors F8_E4M3) and float8_e5m2 (F8_E5M2). */
export type Fp8Format = 'e4m3fn' | 'e5m2';

/** How a backend with a precision policy (backend 'cuda') computes; selectBackend takes these. */
export interface PrecisionOptions {
  /**
   * How float32 tensors are stored: 'bf16' (backend 'cuda''s default, as Wan users run the model;
   * $WAN_CUDA_PRECISION overrides the default) or 'fp32' (the reference's numbers). Backends that
   * compute in float32 refuse 'bf16'.
   */
  precision?: Precision;
  /** Which bf16 attention kernel may run (backend 'cuda' only). */
  attention?: AttentionKernel;
}

let islandDepth = 0;

/**
 * Runs `f` as an fp32 island: every tensor a kernel makes inside it is stored in float32, whatever
 * the backend's precision, as the reference keeps parts of the model in float32 (the timestep
 * embedding, the modulation, the residual stream of a Wan block). Islands nest; on backends that
 * compute in float32 anyway this changes nothing.
 */
export function fp32<T>(f: () => T): T {
  islandDepth++;
  try {
    return f();
  } finally {
    islandDepth--;
  }
}

/** Whether the current code runs inside an fp32 island. */
export function inFp32Island(): boolean {
  return islandDepth > 0;
}
