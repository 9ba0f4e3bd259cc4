/**
 * Fixes for tfjs-backend-wasm kernels: its Slice and SplitV run rank > 4 tensors in plain JS,
 * element by element (the VAE's [B, T, H, W, C] time slices at B > 1, and the gradient of its
 * causal-cache concat). Axes a slice leaves whole are merged first, so the native kernels of
 * rank ≤ 4 run; results are identical.
 */
import * as tf from '@tensorflow/tfjs-core';

let registered = false;

/** Wraps the wasm Slice and SplitV kernels (idempotent; does nothing until the wasm backend is loaded). */
export function registerWasmKernels(): void {
  if (registered || !tf.getKernel('Slice', 'wasm')) return;
  registered = true;
  registerWasmSlice();
  registerWasmSplitV();
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

/** Replaces the wasm backend's kernel `name` by `wrap(its own kernel function)`, if wasm is loaded. */
function wrapWasmKernel(name: string, wrap: (original: tf.KernelFunc) => tf.KernelFunc): void {
  const original = tf.getKernel(name, 'wasm');
  if (!original) return;
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: wrap(original.kernelFunc) });
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
