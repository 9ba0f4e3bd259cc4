import * as tf from '@tensorflow/tfjs-core';
import { fp32, KERNELS, type LinearActivation, type NormActivation } from '../kernels/registry.js';

/**
 * The op layer between the layers and the backends. Each op uses a fused kernel when the active
 * backend registers one under the op's kernel name (src/kernels/registry.ts), and a composite of
 * tfjs-core ops otherwise. Layers declare their fp32 islands with `fp32(() => …)`.
 */
export { fp32, KERNELS, type LinearActivation, type NormActivation, type Precision } from '../kernels/registry.js';

let fusedEnabled = true;

/**
 * Turns the fused kernels on or off (they are on by default) and returns the previous setting.
 * The fused kernels have no gradients, so the Trainer turns them off while it records a step and
 * every op of the forward runs as differentiable tfjs-core ops.
 */
export function setFusedKernels(enabled: boolean): boolean {
  const previous = fusedEnabled;
  fusedEnabled = enabled;
  return previous;
}

function fused(name: string): boolean {
  return fusedEnabled && tf.getKernel(name, tf.getBackend()) !== undefined;
}

/** Most score elements one composite-attention chunk may hold (64 MiB of float32). */
export const ATTENTION_CHUNK_ELEMENTS = 1 << 24;

/** The additive mask value for dropped keys (float32 min, as the reference uses). */
export const MASK_VALUE = -3.4028234663852886e38;

export interface AttentionOptions {
  /** Multiplies q·kᵀ; default 1/√D. umT5 uses 1. */
  scale?: number;
  /** Added to the scores; broadcastable to [B, H, Lq, Lk] (e.g. a relative position bias [1, H, Lq, Lk]). */
  bias?: tf.Tensor;
  /** [B, Lk] with 1 for keys to attend to and 0 for keys to drop. */
  keyMask?: tf.Tensor;
  /** Query rows per chunk of the composite; default keeps a chunk's scores under ATTENTION_CHUNK_ELEMENTS. */
  chunkSize?: number;
}

/**
 * Multi-head scaled dot-product attention without an [Lq, Lk] matrix for the whole sequence.
 * q: [B, Lq, H, D], k: [B, Lk, H, D], v: [B, Lk, H, Dv] → [B, Lq, H, Dv].
 * out = softmax(scale · q·kᵀ + bias + mask) · v, computed in query chunks (memory O(chunk × Lk)).
 */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: AttentionOptions = {}): tf.Tensor {
  const [B, Lq, H, D] = q.shape as [number, number, number, number];
  const Lk = k.shape[1] as number;
  const scale = options.scale ?? 1 / Math.sqrt(D);
  if (options.bias === undefined && options.keyMask === undefined && fused(KERNELS.attention)) {
    return tf.engine().runKernel(KERNELS.attention, { q, k, v }, { scale }) as tf.Tensor;
  }
  return tf.tidy(() => {
    const qt = tf.transpose(q, [0, 2, 1, 3]);
    const kt = tf.transpose(k, [0, 2, 1, 3]);
    const vt = tf.transpose(v, [0, 2, 1, 3]);
    const mask = options.keyMask
      ? tf.reshape(tf.mul(tf.sub(1, tf.cast(options.keyMask, 'float32')), MASK_VALUE), [B, 1, 1, Lk])
      : undefined;
    const chunk = Math.max(1, Math.min(Lq, options.chunkSize ?? Math.floor(ATTENTION_CHUNK_ELEMENTS / Math.max(1, B * H * Lk))));
    const outs: tf.Tensor[] = [];
    for (let s = 0; s < Lq; s += chunk) {
      const n = Math.min(chunk, Lq - s);
      const qc = n === Lq ? qt : tf.slice(qt, [0, 0, s, 0], [B, H, n, D]);
      let scores = tf.matMul(qc, kt, false, true);
      if (scale !== 1) scores = tf.mul(scores, scale);
      if (options.bias) {
        const b = options.bias;
        const rows = b.rank < 4 || b.shape[2] === 1 || n === Lq ? b : tf.slice(b, [0, 0, s, 0], [-1, -1, n, -1]);
        scores = tf.add(scores, rows);
      }
      if (mask) scores = tf.add(scores, mask);
      outs.push(tf.matMul(tf.softmax(scores, -1), vt));
    }
    const o = outs.length === 1 ? outs[0] : tf.concat(outs, 2);
    return tf.transpose(o, [0, 2, 1, 3]);
  });
}

/**
 * x · rsqrt(mean(x², last axis) + eps) · weight, then `activation` ('silu': y · sigmoid(y)).
 * x: [..., C], weight: [C].
 */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor | undefined, eps: number, activation: NormActivation = 'none'): tf.Tensor {
  if (weight && fused(KERNELS.rmsNorm)) return tf.engine().runKernel(KERNELS.rmsNorm, { x, weight }, { eps, activation }) as tf.Tensor;
  return tf.tidy(() => {
    const n = tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps)));
    const y = weight ? tf.mul(n, weight) : n;
    return activation === 'silu' ? silu(y) : y;
  });
}

/** (x − mean) · rsqrt(var + eps) over the last axis (biased variance), then optional affine. */
export function layerNorm(x: tf.Tensor, eps: number, weight?: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  if (fused(KERNELS.layerNorm)) {
    const inputs: tf.NamedTensorMap = { x };
    if (weight) inputs.weight = weight;
    if (bias) inputs.bias = bias;
    return tf.engine().runKernel(KERNELS.layerNorm, inputs, { eps }) as tf.Tensor;
  }
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
    if (weight) y = tf.mul(y, weight);
    if (bias) y = tf.add(y, bias);
    return y;
  });
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  if (fused(KERNELS.geluTanh)) return tf.engine().runKernel(KERNELS.geluTanh, { x }) as tf.Tensor;
  return tf.tidy(() => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), SQRT_2_OVER_PI);
    return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)));
  });
}

/** Whether x is [B, L, C] and t [1 or B, 1 or L, C]: the shapes the fused modulated kernels take (else the composite broadcasts). */
function modulates(x: tf.Tensor, t: tf.Tensor): boolean {
  const [B, L, C] = x.shape;
  return x.rank === 3 && t.rank === 3 && (t.shape[0] === 1 || t.shape[0] === B) && (t.shape[1] === 1 || t.shape[1] === L) && t.shape[2] === C;
}

/**
 * layerNorm(x) · (1 + scale) + shift without affine weights (the modulated norms of a Wan block).
 * x: [B, L, C], scale and shift: [1 or B, 1 or L, C].
 */
export function layerNormModulate(x: tf.Tensor, eps: number, scale: tf.Tensor, shift: tf.Tensor): tf.Tensor {
  if (modulates(x, scale) && scale.shape.join() === shift.shape.join() && fused(KERNELS.layerNormModulate)) {
    return tf.engine().runKernel(KERNELS.layerNormModulate, { x, scale, shift }, { eps }) as tf.Tensor;
  }
  return tf.tidy(() => tf.add(tf.mul(layerNorm(x, eps), tf.add(scale, 1)), shift));
}

/**
 * x + y · gate, an fp32 island (the gated residual of a Wan block; without a gate, x + y).
 * x and y: [B, L, C], gate: [1 or B, 1 or L, C].
 */
export function gatedResidual(x: tf.Tensor, y: tf.Tensor, gate?: tf.Tensor): tf.Tensor {
  if (x.rank === 3 && x.shape.join() === y.shape.join() && (!gate || modulates(x, gate)) && fused(KERNELS.gatedResidual)) {
    return tf.engine().runKernel(KERNELS.gatedResidual, gate ? { x, y, gate } : { x, y }) as tf.Tensor;
  }
  return fp32(() => tf.tidy(() => tf.add(x, gate ? tf.mul(y, gate) : y)));
}

/** A [d, d] matrix with `value` at (i, j) for each entry of `entries(i)`, zeros elsewhere (a signed pair permutation). */
function pairMatrix(d: number, entries: (i: number) => Array<[number, number]>): tf.Tensor2D {
  const m = new Float32Array(d * d);
  for (let i = 0; i < d; i++) for (const [j, v] of entries(i)) m[i * d + j] = v;
  return tf.tensor2d(m, [d, d]);
}

/**
 * Rotates adjacent pairs of each head vector: for pair j,
 * (x₂ⱼ, x₂ⱼ₊₁) → (x₂ⱼ·cos₂ⱼ − x₂ⱼ₊₁·sin₂ⱼ₊₁, x₂ⱼ·sin₂ⱼ₊₁ + x₂ⱼ₊₁·cos₂ⱼ)
 * (the reference reads cos at even and sin at odd columns). x: [B, L, H, d], cos/sin: [1, L, 1, d].
 * The composite is x ⊙ C + (x·P) ⊙ S with P the pair swap, C = cos₂ⱼ in both columns of a pair and
 * S = (−sin₂ⱼ₊₁, sin₂ⱼ₊₁): the same products and sums, bit for bit, with 2-D matmuls by 0/±1
 * matrices in place of strided slices.
 */
export function rope(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  if (fused(KERNELS.rope)) return tf.engine().runKernel(KERNELS.rope, { x, cos, sin }) as tf.Tensor;
  return tf.tidy(() => {
    const [B, L, H, d] = x.shape as [number, number, number, number];
    const even = (i: number) => i - (i % 2);
    const odd = (i: number) => i - (i % 2) + 1;
    // cos·E puts column 2j in columns 2j and 2j+1; sin·F puts (−sin₂ⱼ₊₁, sin₂ⱼ₊₁); x·P swaps each pair.
    const E = pairMatrix(d, (i) => (i % 2 === 0 ? [[i, 1], [i + 1, 1]] : []));
    const F = pairMatrix(d, (i) => (i % 2 === 1 ? [[i - 1, -1], [i, 1]] : []));
    const P = pairMatrix(d, (i) => [[i % 2 === 0 ? odd(i) : even(i), 1]]);
    const c = tf.reshape(tf.matMul(tf.reshape(cos, [L, d]), E), [1, L, 1, d]);
    const s = tf.reshape(tf.matMul(tf.reshape(sin, [L, d]), F), [1, L, 1, d]);
    const swapped = tf.reshape(tf.matMul(tf.reshape(x, [B * L * H, d]), P), [B, L, H, d]);
    return tf.add(tf.mul(x, c), tf.mul(swapped, s));
  });
}

/**
 * A parameter's value as the backend should keep it: in float32 when `keepFp32` (norm weights,
 * modulation tables, the timestep embedding: the reference's fp32 modules), else as the backend's
 * precision policy stores float32 tensors (bfloat16 on 'cuda' by default). Backends without a
 * precision policy return `value` itself. Consumes `value`.
 */
export function storeParam(value: tf.Tensor, keepFp32: boolean): tf.Tensor {
  if (value.dtype !== 'float32' || tf.getKernel(KERNELS.storeAs, tf.getBackend()) === undefined) return value;
  const stored = tf.engine().runKernel(KERNELS.storeAs, { x: value }, { storage: keepFp32 ? 'fp32' : 'policy' }) as tf.Tensor;
  value.dispose();
  return stored;
}

/** x · sigmoid(x). */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

/**
 * y = act(x · wᵀ + b) with a PyTorch-layout weight w: [out, in]. x: [..., in] → [..., out].
 * activation 'gelu_tanh' is geluTanh; a backend's fused linear may apply bias and activation as
 * epilogues of the product.
 */
export function linear(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor, activation: LinearActivation = 'none'): tf.Tensor {
  if (fused(KERNELS.linear)) {
    const inputs: tf.NamedTensorMap = b ? { x, weight: w, bias: b } : { x, weight: w };
    return tf.engine().runKernel(KERNELS.linear, inputs, { activation }) as tf.Tensor;
  }
  return tf.tidy(() => {
    const inDim = x.shape[x.rank - 1];
    const outDim = w.shape[0];
    const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, inDim]);
    let y = tf.matMul(x2, w, false, true);
    if (b) y = tf.add(y, b);
    if (activation === 'gelu_tanh') y = geluTanh(y);
    return x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), outDim]);
  });
}

/**
 * 3D convolution, channels-last, with `pads` = [ph, pw] zeros on both sides of H and W (none in time),
 * plus an optional bias [Cout] and residual (the output's shape): conv(x, w) + bias + residual.
 * x: [B, T, H, W, Cin], w: [kt, kh, kw, Cin, Cout] → [B, To, Ho, Wo, Cout], To = ⌊(T − kt)/st⌋ + 1,
 * Ho = ⌊(H + 2ph − kh)/sh⌋ + 1. A backend's fused kernel takes the padding inside the convolution
 * and the sums as its epilogue; otherwise the input is padded first, convolved by conv3dValid's
 * per-tap conv2d composite, and the sums are added after.
 */
export function conv3d(
  x: tf.Tensor,
  w: tf.Tensor,
  strides: readonly [number, number, number],
  pads: readonly [number, number] = [0, 0],
  bias?: tf.Tensor,
  residual?: tf.Tensor,
): tf.Tensor {
  if (fused(KERNELS.conv3d)) {
    const inputs: tf.NamedTensorMap = { x, filter: w };
    if (bias) inputs.bias = bias;
    if (residual) inputs.residual = residual;
    return tf.engine().runKernel(KERNELS.conv3d, inputs, { strides: [...strides], pads: [...pads] }) as tf.Tensor;
  }
  return tf.tidy(() => {
    const padded = pads[0] > 0 || pads[1] > 0 ? tf.pad(x, [[0, 0], [0, 0], [pads[0], pads[0]], [pads[1], pads[1]], [0, 0]]) : x;
    let y = conv3dValid(padded, w, strides);
    if (bias) y = tf.add(y, bias);
    return residual ? tf.add(y, residual) : y;
  });
}

/**
 * conv3d without padding, x: [B, T, H, W, C], w: [kt, kh, kw, C, Cout] → [B, To, Ho, Wo, Cout],
 * To = ⌊(T − kt)/st⌋ + 1, Ho = ⌊(H − kh)/sh⌋ + 1, Wo = ⌊(W − kw)/sw⌋ + 1. A 1×1×1 kernel of
 * stride 1 is a matMul over channels, [B·T·H·W, C] · [C, Cout]. Otherwise
 * y[:, t] = Σ_i conv2d(x[:, i + st·t], w[i], [sh, sw]) over the kt time taps, t < To, each tap one
 * conv2d of the frames it reads folded into the batch, [B·To, H, W, C] ⊛ [kh, kw, C, Cout].
 */
function conv3dValid(x: tf.Tensor, w: tf.Tensor, strides: readonly [number, number, number]): tf.Tensor {
  const [B, T, H, W, C] = x.shape as [number, number, number, number, number];
  const [kt, kh, kw, , Cout] = w.shape as [number, number, number, number, number];
  const [st, sh, sw] = strides;
  if (kt === 1 && kh === 1 && kw === 1 && st === 1 && sh === 1 && sw === 1) {
    return tf.reshape(tf.matMul(tf.reshape(x, [-1, C]), tf.reshape(w, [C, Cout])), [B, T, H, W, Cout]);
  }
  const To = Math.floor((T - kt) / st) + 1;
  let acc: tf.Tensor | undefined;
  for (let i = 0; i < kt; i++) {
    let frames: tf.Tensor;
    if (st === 1) {
      frames = kt === 1 ? x : tf.slice(x, [0, i, 0, 0, 0], [B, To, H, W, C]);
    } else {
      // frames i, i + st, …: st·To frames (zero-padded past the end) viewed as [B, To, st, …], first
      // of each group. Slice, Pad and Reshape have gradients; tfjs' StridedSlice has none.
      const n = Math.min(st * To, T - i);
      let run = tf.slice(x, [0, i, 0, 0, 0], [B, n, H, W, C]);
      if (n < st * To) run = tf.pad(run, [[0, 0], [0, st * To - n], [0, 0], [0, 0], [0, 0]]);
      frames = tf.reshape(tf.slice(tf.reshape(run, [B, To, st, H * W * C]), [0, 0, 0, 0], [B, To, 1, H * W * C]), [B, To, H, W, C]);
    }
    const tap = tf.reshape(tf.slice(w, [i, 0, 0, 0, 0], [1, kh, kw, C, Cout]), [kh, kw, C, Cout]);
    const y = tf.conv2d(tf.reshape(frames, [B * To, H, W, C]) as tf.Tensor4D, tap as tf.Tensor4D, [sh, sw], 'valid');
    acc = acc ? tf.add(acc, y) : y;
  }
  const [, Ho, Wo] = acc!.shape;
  return tf.reshape(acc!, [B, To, Ho, Wo, Cout]);
}
