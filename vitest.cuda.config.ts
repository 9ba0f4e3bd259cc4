import { defineConfig } from 'vitest/config';

// The GPU suite (npm run test:cuda): the op suite against tfjs-backend-cpu, then every parity
// fixture on backend 'cuda'. CI never runs it; `vitest run` (vitest.config.ts) never picks it up.
// WAN_CUDA_MOCK=1 runs the op suite against a host stand-in of the addon, without a GPU.
export default defineConfig({
  test: {
    include: ['test/cuda/**/*.cuda.ts'],
    testTimeout: 900_000,
    hookTimeout: 300_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default'],
  },
});
