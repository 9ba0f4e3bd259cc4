import { BackendError } from '../errors.js';

/** Registers the native CUDA backend as 'cuda'. */
export function registerCudaBackend(): void {
  throw new BackendError("backend 'cuda' is not built: run `npm run build:cuda` on a machine with the CUDA toolkit and cuBLAS");
}
