import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    'src/index': 'src/index.ts',
    'src/cli': 'src/cli.ts',
    'layers/index': 'layers/index.ts',
    'schedulers/index': 'schedulers/index.ts',
    'weights/index': 'weights/index.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  splitting: false,
  target: 'node20',
  external: [/^@tensorflow\//, /^@huggingface\//, /^@ffmpeg-installer\//],
});
