import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../../errors.js';
import { KERNELS } from '../../kernels/registry.js';
import { ATTENTION_MODES, isFp8Storage, type CudaBackend } from '../backend.js';
import { DeviceType } from '../native.js';
import { asStorage, disposeAll } from './elementwise.js';
import { linearOp } from './matmul.js';
import { cudaKernel, input, numAttr, sizeOf, strAttr } from './util.js';

/** The fused kernels read bfloat16-stored inputs themselves. */
const BF16 = { bf16: true };

/**
 * softmax(scale·q·kᵀ)·v. In bf16 mode: bfloat16 operands through cuDNN's fused SDPA or the flash
 * kernel (backend.attentionKernel chooses), a bfloat16 result; otherwise, or when neither takes the
 * head size, the float32 kernel.
 */
function attentionOp(backend: CudaBackend, q: tf.TensorInfo, k: tf.TensorInfo, v: tf.TensorInfo, scale: number): tf.TensorInfo {
  const [B, Lq, H, D] = q.shape;
  const Lk = k.shape[1];
  const Dv = v.shape[3];
  const temps: tf.TensorInfo[] = [];
  if (backend.bf16Mode()) {
    const [qb, kb, vb] = [q, k, v].map((t) => asStorage(backend, t, DeviceType.BF16, temps));
    const out = backend.makeOutput([B, Lq, H, Dv], 'float32', DeviceType.BF16);
    const mode = ATTENTION_MODES[backend.attentionKernel];
    const path = backend.native.attentionBf16(backend.ptr(qb), backend.ptr(kb), backend.ptr(vb), backend.ptr(out), B, Lq, Lk, H, D, Dv, scale, DeviceType.BF16, mode);
    disposeAll(backend, temps);
    if (path !== 0) {
      const note = path === 2 ? backend.native.attentionNote() : '';
      if (note) backend.warnOnce('attention-flash', `cuDNN attention did not run (${note}); using the built-in bf16 flash-attention kernel`);
      return out;
    }
    backend.disposeIntermediate(out);
    backend.warnOnce(`attention-f32-${D}`, `no bf16 attention kernel takes head size ${D}; that attention runs in float32`);
  }
  const [qf, kf, vf] = [q, k, v].map((t) => asStorage(backend, t, DeviceType.F32, temps));
  const out = backend.makeOutput([B, Lq, H, Dv], 'float32');
  backend.native.attention(backend.ptr(qf), backend.ptr(kf), backend.ptr(vf), backend.ptr(out), B, Lq, Lk, H, D, Dv, scale);
  disposeAll(backend, temps);
  return out;
}

/** rows × cols of the last axis. */
function rowsOf(x: tf.TensorInfo): { rows: number; cols: number } {
  const cols = x.shape[x.shape.length - 1] ?? 1;
  return { rows: cols === 0 ? 0 : sizeOf(x.shape) / cols, cols };
}

/** A per-channel vector as float32 (the fp32 island of every norm's weights). */
function channels(backend: CudaBackend, t: tf.TensorInfo | undefined, cols: number, name: string, kernel: string, temps: tf.TensorInfo[]): number {
  if (!t) return 0;
  if (sizeOf(t.shape) !== cols) throw new BackendError(`${kernel}: ${name} [${t.shape}] does not match the last axis (${cols})`);
  return backend.ptr(asStorage(backend, t, DeviceType.F32, temps));
}

/**
 * (row of the modulation for token row r) = ⌊r / rowsPerMod⌋ mod modCount, for x [B, L, C] and
 * a modulation input (scale/shift, gate; `name` in the error) [tb, Ls, C] with tb ∈ {1, B}, Ls ∈ {1, L}.
 */
function modulationRows(x: tf.TensorInfo, mod: tf.TensorInfo, kernel: string, name: string): { rowsPerMod: number; modCount: number } {
  const [B, L, C] = x.shape;
  const [tb, Ls, Cm] = mod.shape;
  if (x.shape.length !== 3 || mod.shape.length !== 3 || Cm !== C || (tb !== 1 && tb !== B) || (Ls !== 1 && Ls !== L)) {
    throw new BackendError(`${kernel}: ${name} [${mod.shape}] must be [1 or ${B}, 1 or ${L}, ${C}] for x [${x.shape}]`);
  }
  if (Ls === 1) return tb === 1 ? { rowsPerMod: Math.max(1, B * L), modCount: 1 } : { rowsPerMod: Math.max(1, L), modCount: B };
  return { rowsPerMod: 1, modCount: tb * L };
}

/** The library's fused kernels (src/backend/ops.ts holds the composite definitions they must match). */
export const fusedKernels: tf.KernelConfig[] = [
  // q: [B, Lq, H, D], k: [B, Lk, H, D], v: [B, Lk, H, Dv] → [B, Lq, H, Dv]; softmax(scale·q·kᵀ)·v per head.
  cudaKernel(
    KERNELS.attention,
    ({ inputs, backend, attrs }) => {
      const q = input(inputs, 'q', KERNELS.attention);
      const k = input(inputs, 'k', KERNELS.attention);
      const v = input(inputs, 'v', KERNELS.attention);
      if (q.shape.length !== 4 || k.shape.length !== 4 || v.shape.length !== 4) {
        throw new BackendError(`${KERNELS.attention}: q, k, v must be [B, L, H, D], got [${q.shape}], [${k.shape}], [${v.shape}]`);
      }
      const [B, , H, D] = q.shape;
      const [Bk, Lk, Hk, Dk] = k.shape;
      const [Bv, Lv, Hv] = v.shape;
      if (Bk !== B || Bv !== B || Hk !== H || Hv !== H || Dk !== D || Lv !== Lk) {
        throw new BackendError(`${KERNELS.attention}: q [${q.shape}], k [${k.shape}] and v [${v.shape}] do not agree on batch, heads, key length or head size`);
      }
      if (Lk === 0) throw new BackendError(`${KERNELS.attention}: k and v have no positions (Lk = 0)`);
      return attentionOp(backend, q, k, v, numAttr(attrs, 'scale', KERNELS.attention, 1 / Math.sqrt(D)));
    },
    BF16,
  ),
  // x: [..., C], weight: [C] → x · rsqrt(mean(x², last axis) + eps) · weight, then SiLU when activation is 'silu'.
  cudaKernel(
    KERNELS.rmsNorm,
    ({ inputs, backend, attrs }) => {
      const x = input(inputs, 'x', KERNELS.rmsNorm);
      const { rows, cols } = rowsOf(x);
      const activation = strAttr(attrs, 'activation', 'none');
      if (activation !== 'none' && activation !== 'silu') throw new BackendError(`${KERNELS.rmsNorm}: unknown activation '${activation}' (none, silu)`);
      const temps: tf.TensorInfo[] = [];
      const w = channels(backend, input(inputs, 'weight', KERNELS.rmsNorm), cols, 'weight', KERNELS.rmsNorm, temps);
      const out = backend.makeOutput(x.shape, 'float32', backend.producedStorage());
      const eps = numAttr(attrs, 'eps', KERNELS.rmsNorm);
      backend.native.rmsNorm(backend.ptr(x), w, backend.ptr(out), rows, cols, eps, backend.storage(x), backend.storage(out), activation === 'silu' ? 1 : 0);
      disposeAll(backend, temps);
      return out;
    },
    BF16,
  ),
  // x: [..., C], weight?, bias?: [C] → (x − mean) · rsqrt(var + eps) · weight + bias over the last axis.
  cudaKernel(
    KERNELS.layerNorm,
    ({ inputs, backend, attrs }) => {
      const x = input(inputs, 'x', KERNELS.layerNorm);
      const { rows, cols } = rowsOf(x);
      const temps: tf.TensorInfo[] = [];
      const w = channels(backend, inputs.weight, cols, 'weight', KERNELS.layerNorm, temps);
      const b = channels(backend, inputs.bias, cols, 'bias', KERNELS.layerNorm, temps);
      const out = backend.makeOutput(x.shape, 'float32', backend.producedStorage());
      backend.native.layerNorm(backend.ptr(x), w, b, backend.ptr(out), rows, cols, numAttr(attrs, 'eps', KERNELS.layerNorm), backend.storage(x), backend.storage(out));
      disposeAll(backend, temps);
      return out;
    },
    BF16,
  ),
  // x: [B, L, C], scale, shift: [1 or B, 1 or L, C] → layerNorm(x) · (1 + scale) + shift.
  cudaKernel(
    KERNELS.layerNormModulate,
    ({ inputs, backend, attrs }) => {
      const x = input(inputs, 'x', KERNELS.layerNormModulate);
      const scale = input(inputs, 'scale', KERNELS.layerNormModulate);
      const shift = input(inputs, 'shift', KERNELS.layerNormModulate);
      if (scale.shape.join() !== shift.shape.join()) {
        throw new BackendError(`${KERNELS.layerNormModulate}: scale [${scale.shape}] and shift [${shift.shape}] differ in shape`);
      }
      const { rowsPerMod, modCount } = modulationRows(x, scale, KERNELS.layerNormModulate, 'scale/shift');
      const { rows, cols } = rowsOf(x);
      const temps: tf.TensorInfo[] = [];
      const sc = backend.ptr(asStorage(backend, scale, DeviceType.F32, temps));
      const sh = backend.ptr(asStorage(backend, shift, DeviceType.F32, temps));
      const out = backend.makeOutput(x.shape, 'float32', backend.producedStorage());
      const eps = numAttr(attrs, 'eps', KERNELS.layerNormModulate);
      backend.native.layerNormModulate(backend.ptr(x), sc, sh, backend.ptr(out), rows, cols, eps, rowsPerMod, modCount, backend.storage(x), backend.storage(out));
      disposeAll(backend, temps);
      return out;
    },
    BF16,
  ),
  // x, y: [B, L, C], gate?: [1 or B, 1 or L, C] → x + y · gate, stored float32 (the residual stream).
  cudaKernel(
    KERNELS.gatedResidual,
    ({ inputs, backend }) => {
      const x = input(inputs, 'x', KERNELS.gatedResidual);
      const y = input(inputs, 'y', KERNELS.gatedResidual);
      if (x.shape.join() !== y.shape.join()) throw new BackendError(`${KERNELS.gatedResidual}: x [${x.shape}] and y [${y.shape}] differ in shape`);
      const gate = inputs.gate;
      const { rowsPerMod, modCount } = gate ? modulationRows(x, gate, KERNELS.gatedResidual, 'gate') : { rowsPerMod: 1, modCount: 1 };
      const { rows, cols } = rowsOf(x);
      const temps: tf.TensorInfo[] = [];
      const g = gate ? backend.ptr(asStorage(backend, gate, DeviceType.F32, temps)) : 0;
      const out = backend.makeOutput(x.shape, 'float32', DeviceType.F32);
      backend.native.gatedResidual(backend.ptr(x), backend.ptr(y), g, backend.ptr(out), rows, cols, rowsPerMod, modCount, backend.storage(x), backend.storage(y));
      disposeAll(backend, temps);
      return out;
    },
    BF16,
  ),
  // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
  cudaKernel(
    KERNELS.geluTanh,
    ({ inputs, backend }) => {
      const x = input(inputs, 'x', KERNELS.geluTanh);
      const out = backend.makeOutput(x.shape, 'float32', backend.followStorage([x]));
      backend.native.geluTanh(backend.ptr(x), backend.ptr(out), sizeOf(x.shape), backend.storage(x), backend.storage(out));
      return out;
    },
    BF16,
  ),
  // x: [B, L, H, D], cos, sin: [1, L, 1, D] → pairs (2j, 2j+1) rotated by (cos₂ⱼ, sin₂ⱼ₊₁).
  cudaKernel(
    KERNELS.rope,
    ({ inputs, backend }) => {
      const x = input(inputs, 'x', KERNELS.rope);
      const cos = input(inputs, 'cos', KERNELS.rope);
      const sin = input(inputs, 'sin', KERNELS.rope);
      if (x.shape.length !== 4) throw new BackendError(`${KERNELS.rope}: x must be [B, L, H, D], got [${x.shape}]`);
      const [B, L, H, D] = x.shape;
      for (const [name, t] of [['cos', cos], ['sin', sin]] as const) {
        if (sizeOf(t.shape) !== L * D || t.shape[t.shape.length - 1] !== D) {
          throw new BackendError(`${KERNELS.rope}: ${name} [${t.shape}] must be [1, ${L}, 1, ${D}] for x [${x.shape}]`);
        }
      }
      const temps: tf.TensorInfo[] = [];
      const c = backend.ptr(asStorage(backend, cos, DeviceType.F32, temps));
      const s = backend.ptr(asStorage(backend, sin, DeviceType.F32, temps));
      const out = backend.makeOutput(x.shape, 'float32', backend.followStorage([x]));
      backend.native.rope(backend.ptr(x), c, s, backend.ptr(out), B * L, L, H, D, backend.storage(x), backend.storage(out));
      disposeAll(backend, temps);
      return out;
    },
    BF16,
  ),
  // x: [..., in], weight: [out, in] (fp8-stored weights dequantized per call by linearOp), bias?: [out] → x · weightᵀ + bias, then the activation.
  cudaKernel(
    KERNELS.linear,
    ({ inputs, backend, attrs }) => {
      const activation = strAttr(attrs, 'activation', 'none');
      if (activation !== 'none' && activation !== 'gelu_tanh') throw new BackendError(`${KERNELS.linear}: unknown activation '${activation}'`);
      return linearOp(backend, input(inputs, 'x', KERNELS.linear), input(inputs, 'weight', KERNELS.linear), inputs.bias, activation === 'gelu_tanh');
    },
    { ...BF16, fp8: ['weight'] },
  ),
  // The same values stored in float32 ('fp32') or as the precision policy stores parameters ('policy'); 'policy' keeps an fp8 weight in fp8.
  cudaKernel(
    KERNELS.storeAs,
    ({ inputs, backend, attrs }) => {
      const x = input(inputs, 'x', KERNELS.storeAs);
      const storage = strAttr(attrs, 'storage', 'policy');
      if (storage !== 'fp32' && storage !== 'policy') throw new BackendError(`${KERNELS.storeAs}: storage must be 'fp32' or 'policy', got '${storage}'`);
      if (storage === 'fp32') return backend.convert(x, DeviceType.F32);
      return backend.convert(x, isFp8Storage(backend.storage(x)) ? backend.storage(x) : backend.policyStorage());
    },
    { ...BF16, fp8: ['x'] },
  ),
];
