import * as tf from '@tensorflow/tfjs-core';
import { KERNELS } from '../../backend/ops.js';
import { BackendError } from '../../errors.js';
import { asDtype, disposeAll } from './elementwise.js';
import { cudaKernel, input, numAttr, sizeOf } from './util.js';

/** The library's fused kernels (src/backend/ops.ts holds the composite definitions they must match). */
export const fusedKernels: tf.KernelConfig[] = [
  // q: [B, Lq, H, D], k: [B, Lk, H, D], v: [B, Lk, H, Dv] → [B, Lq, H, Dv]; softmax(scale·q·kᵀ)·v per head.
  cudaKernel(KERNELS.attention, ({ inputs, backend, attrs }) => {
    const q = input(inputs, 'q', KERNELS.attention);
    const k = input(inputs, 'k', KERNELS.attention);
    const v = input(inputs, 'v', KERNELS.attention);
    if (q.shape.length !== 4 || k.shape.length !== 4 || v.shape.length !== 4) {
      throw new BackendError(`${KERNELS.attention}: q, k, v must be [B, L, H, D], got [${q.shape}], [${k.shape}], [${v.shape}]`);
    }
    const [B, Lq, H, D] = q.shape;
    const [Bk, Lk, Hk, Dk] = k.shape;
    const [Bv, Lv, Hv, Dv] = v.shape;
    if (Bk !== B || Bv !== B || Hk !== H || Hv !== H || Dk !== D || Lv !== Lk) {
      throw new BackendError(`${KERNELS.attention}: q [${q.shape}], k [${k.shape}] and v [${v.shape}] do not agree on batch, heads, key length or head size`);
    }
    if (Lk === 0) throw new BackendError(`${KERNELS.attention}: k and v have no positions (Lk = 0)`);
    const scale = numAttr(attrs, 'scale', KERNELS.attention, 1 / Math.sqrt(D));
    const temps: tf.TensorInfo[] = [];
    const [qf, kf, vf] = [q, k, v].map((t) => asDtype(backend, t, 'float32', temps));
    const out = backend.makeOutput([B, Lq, H, Dv], 'float32');
    backend.native.attention(backend.ptr(qf), backend.ptr(kf), backend.ptr(vf), backend.ptr(out), B, Lq, Lk, H, D, Dv, scale);
    disposeAll(backend, temps);
    return out;
  }),
  // x: [..., C], weight: [C] → x · rsqrt(mean(x², last axis) + eps) · weight.
  cudaKernel(KERNELS.rmsNorm, ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', KERNELS.rmsNorm);
    const weight = input(inputs, 'weight', KERNELS.rmsNorm);
    const cols = x.shape[x.shape.length - 1] ?? 1;
    if (sizeOf(weight.shape) !== cols) throw new BackendError(`${KERNELS.rmsNorm}: weight [${weight.shape}] does not match the last axis of x [${x.shape}]`);
    const temps: tf.TensorInfo[] = [];
    const xf = asDtype(backend, x, 'float32', temps);
    const wf = asDtype(backend, weight, 'float32', temps);
    const out = backend.makeOutput(x.shape, 'float32');
    backend.native.rmsNorm(backend.ptr(xf), backend.ptr(wf), backend.ptr(out), cols === 0 ? 0 : sizeOf(x.shape) / cols, cols, numAttr(attrs, 'eps', KERNELS.rmsNorm));
    disposeAll(backend, temps);
    return out;
  }),
  // x: [..., C], weight?, bias?: [C] → (x − mean) · rsqrt(var + eps) · weight + bias over the last axis.
  cudaKernel(KERNELS.layerNorm, ({ inputs, backend, attrs }) => {
    const x = input(inputs, 'x', KERNELS.layerNorm);
    const cols = x.shape[x.shape.length - 1] ?? 1;
    for (const name of ['weight', 'bias']) {
      const t = inputs[name];
      if (t && sizeOf(t.shape) !== cols) throw new BackendError(`${KERNELS.layerNorm}: ${name} [${t.shape}] does not match the last axis of x [${x.shape}]`);
    }
    const temps: tf.TensorInfo[] = [];
    const xf = asDtype(backend, x, 'float32', temps);
    const w = inputs.weight ? backend.ptr(asDtype(backend, inputs.weight, 'float32', temps)) : 0;
    const b = inputs.bias ? backend.ptr(asDtype(backend, inputs.bias, 'float32', temps)) : 0;
    const out = backend.makeOutput(x.shape, 'float32');
    backend.native.layerNorm(backend.ptr(xf), w, b, backend.ptr(out), cols === 0 ? 0 : sizeOf(x.shape) / cols, cols, numAttr(attrs, 'eps', KERNELS.layerNorm));
    disposeAll(backend, temps);
    return out;
  }),
  // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
  cudaKernel(KERNELS.geluTanh, ({ inputs, backend }) => {
    const x = input(inputs, 'x', KERNELS.geluTanh);
    const temps: tf.TensorInfo[] = [];
    const xf = asDtype(backend, x, 'float32', temps);
    const out = backend.makeOutput(x.shape, 'float32');
    backend.native.geluTanh(backend.ptr(xf), backend.ptr(out), sizeOf(x.shape));
    disposeAll(backend, temps);
    return out;
  }),
];
