/**
 * Fixes for tfjs-backend-wasm kernels, each a wrapper of the backend's own kernel with identical results:
 * - Slice and SplitV run rank > 4 tensors in plain JS, element by element (the VAE's
 *   [B, T, H, W, C] time slices at B > 1, and the gradient of its causal-cache concat). Axes a
 *   slice leaves whole are merged first, so the native kernels of rank ≤ 4 run.
 * - BatchMatMul runs XNNPACK's GEMM, which is fast on row-major 2-D operands only: transposed
 *   operands are copied transposed first, and equal batch dims are split into 2-D products.
 */
import * as tf from '@tensorflow/tfjs-core';

let registered = false;

/** Wraps the wasm Slice, SplitV and BatchMatMul kernels (idempotent; does nothing until the wasm backend is loaded). */
export function registerWasmKernels(): void {
  if (registered || !tf.getKernel('Slice', 'wasm')) return;
  registered = true;
  registerWasmSlice();
  registerWasmSplitV();
  registerWasmBatchMatMul();
}

/**
 * Merges runs of axes a slice keeps whole into the axis before them:
 * shape [2, 3, 4, 5] sliced at begin [0, 1, 0, 0] size [2, 1, 4, 5] → shape [2, 60], begin [0, 20], size [2, 20].
 */
export function collapseSlice(shape: readonly number[], begin: readonly number[], size: readonly number[]): { shape: number[]; begin: number[]; size: number[] } {
  const s = [shape[0]];
  const b = [begin[0]];
  const z = [size[0]];
  for (let a = 1; a < shape.length; a++) {
    const whole = begin[a] === 0 && size[a] === shape[a];
    const last = s.length - 1;
    // A whole axis folds into the previous one: rows [b, b + z) of it × all of a are one run [b·d, (b + z)·d).
    if (whole) {
      b[last] *= shape[a];
      z[last] *= shape[a];
      s[last] *= shape[a];
    } else {
      s.push(shape[a]);
      b.push(begin[a]);
      z.push(size[a]);
    }
  }
  return { shape: s, begin: b, size: z };
}

/**
 * Replaces the wasm backend's kernel `name` by `wrap(its own kernel function)`, if wasm is loaded.
 * The setup and dispose functions stay (BatchMatMul and Transpose bind their native functions in
 * setup, which tfjs runs on every setBackend('wasm')).
 */
function wrapWasmKernel(name: string, wrap: (original: tf.KernelFunc) => tf.KernelFunc): void {
  const original = tf.getKernel(name, 'wasm');
  if (!original) return;
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ ...original, kernelFunc: wrap(original.kernelFunc) });
}

/** Runs the wasm backend's kernel `name` (its registered function, wrapped or not) on TensorInfos. */
function wasmKernel(name: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap, backend: object): tf.TensorInfo {
  return tf.getKernel(name, 'wasm')!.kernelFunc({ inputs, attrs, backend }) as tf.TensorInfo;
}

function registerWasmSlice(): void {
  wrapWasmKernel('Slice', (original) => ({ inputs, attrs, backend }) => {
    const x = inputs.x as tf.TensorInfo;
    if (x.shape.length <= 4) return original({ inputs, attrs, backend });
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs!.begin as number[], attrs!.size as number[]);
    const c = collapseSlice(x.shape, begin, size);
    if (c.shape.length > 4) return original({ inputs, attrs, backend });
    const out = original({ inputs: { x: { ...x, shape: c.shape } }, attrs: { begin: c.begin, size: c.size }, backend }) as tf.TensorInfo;
    return { ...out, shape: size };
  });
}

function registerWasmSplitV(): void {
  wrapWasmKernel('SplitV', (original) => ({ inputs, attrs, backend }) => {
    const x = inputs.x as tf.TensorInfo;
    if (x.shape.length <= 3) return original({ inputs, attrs, backend });
    // [..pre, d, ..post] → [Π pre, d, Π post], split on axis 1
    const axis = tf.util.parseAxisParam(attrs!.axis as number, x.shape)[0];
    const pre = x.shape.slice(0, axis).reduce((a, d) => a * d, 1);
    const post = x.shape.slice(axis + 1).reduce((a, d) => a * d, 1);
    const outs = original({ inputs: { x: { ...x, shape: [pre, x.shape[axis], post] } }, attrs: { ...attrs, axis: 1 }, backend }) as tf.TensorInfo[];
    return outs.map((o) => ({ ...o, shape: x.shape.map((d, a) => (a === axis ? o.shape[1] : d)) }));
  });
}

/**
 * a: [...batch, m, k] (or [..., k, m] with transposeA), b: [...batch, k, n] (or [..., n, k] with
 * transposeB) → [...batch, m, n], as products of row-major operands:
 * - a flagged operand is transposed first ([4096, 32] · [64, 32]ᵀ: 13 ms flagged, 2.3 ms copied);
 * - equal batch dims of Π batch = N > 1 run as N 2-D products [m, k] · [k, n] of slices of the
 *   operands viewed as [N, m·k] and [N, k·n], concatenated as [N, m·n]
 *   ([8, 320, 32] · [8, 32, 320]: 44 ms batched, 13 ms as eight 2-D products).
 * Broadcast batch dims run the original kernel (after the transposes). Every intermediate is freed.
 */
function registerWasmBatchMatMul(): void {
  wrapWasmKernel('BatchMatMul', (original) => ({ inputs, attrs, backend }) => {
    const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
    const a0 = inputs.a as tf.TensorInfo;
    const b0 = inputs.b as tf.TensorInfo;
    const rank = a0.shape.length;
    const batch = a0.shape.slice(0, -2);
    const N = batch.reduce((p, d) => p * d, 1);
    const split = rank >= 3 && N > 1 && b0.shape.length === rank && b0.shape.slice(0, -2).join() === batch.join();
    if (!transposeA && !transposeB && !split) return original({ inputs, attrs, backend });
    const temps: tf.TensorInfo[] = [];
    const temp = (t: tf.TensorInfo): tf.TensorInfo => {
      temps.push(t);
      return t;
    };
    // x with its last two axes swapped
    const swapLast = (x: tf.TensorInfo): tf.TensorInfo => {
      const perm = x.shape.map((_, i) => i);
      [perm[perm.length - 2], perm[perm.length - 1]] = [perm[perm.length - 1], perm[perm.length - 2]];
      return temp(wasmKernel('Transpose', { x }, { perm }, backend));
    };
    try {
      const a = transposeA ? swapLast(a0) : a0;
      const b = transposeB ? swapLast(b0) : b0;
      const plain = { transposeA: false, transposeB: false };
      if (!split) return original({ inputs: { a, b }, attrs: plain, backend });
      const [m, k] = a.shape.slice(-2);
      const n = b.shape[rank - 1];
      const aRows = { ...a, shape: [N, m * k] };
      const bRows = { ...b, shape: [N, k * n] };
      const products: tf.TensorInfo[] = [];
      for (let i = 0; i < N; i++) {
        const ai = temp(wasmKernel('Slice', { x: aRows }, { begin: [i, 0], size: [1, m * k] }, backend));
        const bi = temp(wasmKernel('Slice', { x: bRows }, { begin: [i, 0], size: [1, k * n] }, backend));
        const ci = temp(original({ inputs: { a: { ...ai, shape: [m, k] }, b: { ...bi, shape: [k, n] } }, attrs: plain, backend }) as tf.TensorInfo);
        products.push({ ...ci, shape: [1, m * n] });
      }
      // wasm's Concat reads its inputs as an array, as tf.concat passes them
      const out = wasmKernel('Concat', products as unknown as tf.NamedTensorInfoMap, { axis: 0 }, backend);
      return { ...out, shape: [...batch, m, n] };
    } finally {
      for (const t of temps) (backend as tf.KernelBackend).disposeData(t.dataId);
    }
  });
}
