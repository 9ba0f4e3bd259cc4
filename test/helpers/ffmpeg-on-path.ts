// vitest setup file: puts the ffmpeg of the devDependency @ffmpeg-installer/linux-x64 first on PATH,
// so the ffmpeg tests run wherever `npm ci` ran (CI included) against one pinned build. Only the
// tests see it: the library finds ffmpeg as on a user's machine (WAN_FFMPEG, PATH, then the optional
// @ffmpeg-installer/ffmpeg), never through this devDependency.
import { createRequire } from 'node:module';
import * as path from 'node:path';

if (process.platform === 'linux' && process.arch === 'x64') {
  const require = createRequire(import.meta.url);
  const dir = path.dirname(require.resolve('@ffmpeg-installer/linux-x64/package.json'));
  process.env.PATH = [dir, process.env.PATH].filter(Boolean).join(path.delimiter);
}
