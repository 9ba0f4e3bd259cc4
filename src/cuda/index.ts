import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../errors.js';
import { checkPrecision, type Precision, type PrecisionOptions } from '../kernels/registry.js';
import { ATTENTION_MODES, CudaBackend, parseMemorySize } from './backend.js';
import { convKernels } from './kernels/conv.js';
import { elementwiseKernels } from './kernels/elementwise.js';
import { fusedKernels } from './kernels/fused.js';
import { matmulKernels } from './kernels/matmul.js';
import { reduceKernels } from './kernels/reduce.js';
import { shapeKernels } from './kernels/shape.js';
import { loadNative, type CudnnInfo, type DeviceInfo, type NativeCuda } from './native.js';

export { CudaBackend } from './backend.js';
export type { AttentionKernel, StoredFormat } from '../kernels/registry.js';
export { checkKernels, kernelsUsedBy, missingKernels } from './check.js';
export { addonPath, loadNative, type CudnnInfo, type DeviceInfo, type DeviceMemory, type NativeCuda } from './native.js';

const KERNELS: tf.KernelConfig[] = [...elementwiseKernels, ...shapeKernels, ...reduceKernels, ...matmulKernels, ...convKernels, ...fusedKernels];

/** Every kernel name backend 'cuda' implements. */
export const CUDA_KERNEL_NAMES: readonly string[] = KERNELS.map((k) => k.kernelName).sort();

let kernelsRegistered = false;
let cudnn: CudnnInfo = { available: false, version: 0, library: '', error: 'not loaded' };

/** What loading cuDNN reported when the backend was registered. */
export function cudnnInfo(): CudnnInfo {
  return cudnn;
}

/** The precision named by $WAN_CUDA_PRECISION, else bf16 (as Wan users run the model). */
export function defaultPrecision(): Precision {
  const env = process.env.WAN_CUDA_PRECISION;
  return env === undefined || env === '' ? 'bf16' : checkPrecision(env, 'WAN_CUDA_PRECISION');
}

/** The device bytes named by $WAN_CUDA_MEMORY_LIMIT (e.g. 24g, 512m, bytes), else no limit. */
export function memoryLimitFromEnv(): number | undefined {
  const env = process.env.WAN_CUDA_MEMORY_LIMIT;
  return env === undefined || env === '' ? undefined : parseMemorySize(env, 'WAN_CUDA_MEMORY_LIMIT');
}

/**
 * Where cuDNN may be: $WAN_CUDNN_LIB, the loader's search path (libcudnn.so.9), then the
 * nvidia/cudnn/lib folder of the Python environment on PATH (pip install nvidia-cudnn-cu13).
 */
export function cudnnCandidates(): string[] {
  const out: string[] = [];
  if (process.env.WAN_CUDNN_LIB) out.push(process.env.WAN_CUDNN_LIB);
  out.push('libcudnn.so.9');
  try {
    const pkg = execFileSync('python3', ['-c', 'import nvidia.cudnn as m; print(list(m.__path__)[0])'], {
      encoding: 'utf-8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 10_000,
    }).trim();
    if (pkg) out.push(path.join(pkg, 'lib', 'libcudnn.so.9'));
  } catch {
    // no Python or no nvidia-cudnn package: the other candidates only
  }
  return out;
}

/**
 * Registers backend 'cuda' over an already loaded addon (tests pass a stand-in here) and its
 * kernels, and loads cuDNN through it. Does nothing if 'cuda' is registered already.
 */
export function registerCudaBackendWith(native: NativeCuda, device: DeviceInfo, cudnnPaths: string[] = cudnnCandidates()): void {
  if (tf.findBackendFactory('cuda')) return;
  const precision = defaultPrecision();
  const memoryLimit = memoryLimitFromEnv();
  cudnn = native.cudnnLoad(cudnnPaths);
  tf.registerBackend(
    'cuda',
    () => {
      const b = new CudaBackend(native, device);
      b.precision = precision;
      b.memoryLimit = memoryLimit;
      return b;
    },
    3,
  );
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
    throw new BackendError(
      `backend 'cuda': the addon loaded but CUDA could not start: ${(e as Error).message} ` +
        '(needs an NVIDIA GPU of compute capability 8.0 or newer and a driver at least as new as the CUDA toolkit the addon was built with; check nvidia-smi)',
    );
  }
  registerCudaBackendWith(native, device);
}

/** Applies `options` to the active 'cuda' backend. */
export function configureCudaBackend(backend: tf.KernelBackend, options: PrecisionOptions): void {
  if (!(backend instanceof CudaBackend)) throw new BackendError("configureCudaBackend: the active backend is not 'cuda'");
  if (options.precision !== undefined) backend.precision = checkPrecision(options.precision, 'precision');
  if (options.attention !== undefined) {
    if (!(options.attention in ATTENTION_MODES)) {
      throw new BackendError(`attention must be one of ${Object.keys(ATTENTION_MODES).join(', ')}, got '${String(options.attention).slice(0, 40)}'`);
    }
    backend.attentionKernel = options.attention;
  }
}
