import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = path.dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  resolve: {
    // The README's snippets import the package by name; in the repo that is the source.
    alias: [
      { find: /^wan-tfjs$/, replacement: path.join(root, 'src/index.ts') },
      { find: /^wan-tfjs\/(layers|schedulers|weights)$/, replacement: path.join(root, '$1/index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    // ffmpeg from the devDependency @ffmpeg-installer/linux-x64 on PATH, so the ffmpeg tests run in CI;
    // tfjs's Node.js banner and other console notices silenced.
    setupFiles: ['test/helpers/ffmpeg-on-path.ts', 'test/helpers/tfjs-quiet-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
