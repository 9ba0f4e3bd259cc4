import * as tf from '@tensorflow/tfjs-core';
import { CudaBackend, registerCudaBackendWith } from '../../src/cuda/index.js';
import { createMockNative, type MockNative } from '../cuda/mock-native.js';

/** Registers backend 'cuda' over a fresh host stand-in of the addon and makes it the active backend. */
export async function registerMockCuda(): Promise<{ native: MockNative; backend: CudaBackend }> {
  const native = createMockNative();
  registerCudaBackendWith(native, native.init(), []);
  await tf.setBackend('cuda');
  return { native, backend: tf.backend() as CudaBackend };
}
