/**
 * What tfjs lacks for training the Wan layers, registered on demand:
 * - a Tile gradient for any rank (tfjs-core's stops at rank 4; the VAE's nearest-neighbour
 *   upsample tiles a rank-6 tensor): tiling repeats the whole tensor along each axis, so
 *   dy reshaped to [r₀, x₀, r₁, x₁, …] summed over the r axes is dx;
 * - Conv2DBackpropFilter on the wasm backend (the VAE's resample convs), computed by the cpu
 *   backend's kernel on copies of the two inputs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../errors.js';

let registered = false;

/** Registers the kernels and gradients above (idempotent). Needs @tensorflow/tfjs-backend-cpu loaded. */
export function registerTrainingKernels(): void {
  if (registered) return;
  registered = true;
  tf.registerGradient({
    kernelName: tf.Tile,
    inputsToSave: ['x'],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const [x] = saved;
      const reps = attrs.reps as number[];
      const g = Array.isArray(dy) ? dy[0] : dy;
      return {
        x: () => {
          const interleaved = x.shape.flatMap((d, i) => [reps[i], d]);
          const axes = reps.map((_, i) => 2 * i);
          return tf.reshape(tf.sum(tf.reshape(g, interleaved), axes), x.shape);
        },
      };
    },
  });
  const cpuKernel = tf.getKernel('Conv2DBackpropFilter', 'cpu');
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm') === undefined && cpuKernel) {
    tf.registerKernel({
      kernelName: 'Conv2DBackpropFilter',
      backendName: 'wasm',
      kernelFunc: ({ inputs, attrs, backend: wasm }) => {
        const cpu = tf.findBackend('cpu');
        const backend = wasm as tf.KernelBackend;
        if (!cpu) throw new BackendError('Conv2DBackpropFilter on wasm needs the cpu backend: import @tensorflow/tfjs-backend-cpu');
        const toCpu = (t: tf.TensorInfo): tf.TensorInfo => ({ dataId: cpu.write(backend.readSync(t.dataId) as Float32Array, t.shape, t.dtype), shape: t.shape, dtype: t.dtype });
        const x = toCpu(inputs.x as tf.TensorInfo);
        const dy = toCpu(inputs.dy as tf.TensorInfo);
        const out = cpuKernel.kernelFunc({ inputs: { x, dy }, attrs, backend: cpu }) as tf.TensorInfo;
        const values = cpu.readSync(out.dataId) as Float32Array;
        for (const t of [x, dy, out]) cpu.disposeData(t.dataId);
        return { dataId: backend.write(values, out.shape, out.dtype), shape: out.shape, dtype: out.dtype };
      },
    });
  }
}
