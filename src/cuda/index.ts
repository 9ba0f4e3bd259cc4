import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../errors.js';
import { CudaBackend } from './backend.js';
import { convKernels } from './kernels/conv.js';
import { elementwiseKernels } from './kernels/elementwise.js';
import { fusedKernels } from './kernels/fused.js';
import { matmulKernels } from './kernels/matmul.js';
import { reduceKernels } from './kernels/reduce.js';
import { shapeKernels } from './kernels/shape.js';
import { loadNative, type DeviceInfo, type NativeCuda } from './native.js';

export { CudaBackend } from './backend.js';
export { checkKernels, kernelsUsedBy, missingKernels } from './check.js';
export { addonPath, loadNative, type DeviceInfo, type DeviceMemory, type NativeCuda } from './native.js';

const KERNELS: tf.KernelConfig[] = [...elementwiseKernels, ...shapeKernels, ...reduceKernels, ...matmulKernels, ...convKernels, ...fusedKernels];

/** Every kernel name backend 'cuda' implements. */
export const CUDA_KERNEL_NAMES: readonly string[] = KERNELS.map((k) => k.kernelName).sort();

let kernelsRegistered = false;

/**
 * Registers backend 'cuda' over an already loaded addon (tests pass a stand-in here) and its
 * kernels. Does nothing if 'cuda' is registered already.
 */
export function registerCudaBackendWith(native: NativeCuda, device: DeviceInfo): void {
  if (tf.findBackendFactory('cuda')) return;
  tf.registerBackend('cuda', () => new CudaBackend(native, device), 3);
  if (!kernelsRegistered) {
    for (const k of KERNELS) tf.registerKernel(k);
    kernelsRegistered = true;
  }
}

/**
 * Registers the native CUDA backend as 'cuda': loads build/Release/wan_cuda.node (or
 * $WAN_CUDA_ADDON) and starts CUDA on GPU 0. Throws a BackendError that says what is missing:
 * the addon file, a shared library (libcudart / libcublas), or a usable GPU.
 */
export function registerCudaBackend(): void {
  if (tf.findBackendFactory('cuda')) return;
  const native = loadNative();
  let device: DeviceInfo;
  try {
    device = native.init();
  } catch (e) {
    throw new BackendError(`backend 'cuda': the addon loaded but CUDA could not start: ${(e as Error).message}`);
  }
  registerCudaBackendWith(native, device);
}
