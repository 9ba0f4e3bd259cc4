// Issue 18 item 10: the repository's housekeeping as a user meets it — the licence file that
// package.json promises (and that the tarball ships), the quick start's outputs kept out of git,
// and no tfjs "Hi, looks like you are running TensorFlow.js in Node.js" banner in the test output.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it, vi } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('LICENSE', () => {
  it('is the Apache License 2.0 that package.json names, with the project copyright line', () => {
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { license: string };
    expect(pkg.license).toBe('Apache-2.0');
    const text = readFileSync(path.join(root, 'LICENSE'), 'utf8');
    expect(text.trimStart().startsWith('Apache License')).toBe(true);
    expect(text).toContain('Version 2.0, January 2004');
    expect(text).toContain('TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION');
    expect(text).toContain('END OF TERMS AND CONDITIONS');
    expect(text).toMatch(/Copyright \d{4} The wan-tfjs Authors/);
    expect(text).not.toContain('[yyyy]');
  });

  it('is in the packed tarball', () => {
    // --ignore-scripts: no `prepare` build; the file list does not depend on it.
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const [pack] = JSON.parse(out) as { files: { path: string }[] }[];
    expect(pack!.files.map((f) => f.path)).toContain('LICENSE');
  }, 60_000);
});

describe('.gitignore', () => {
  it("ignores the quick start's clip.mp4 and examples/generate.ts's wan-example.gif", () => {
    const out = execFileSync('git', ['check-ignore', 'clip.mp4', 'wan-example.gif'], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(out.trim().split('\n').sort()).toEqual(['clip.mp4', 'wan-example.gif']);
  });
});

describe('tfjs Node.js banner', () => {
  it('is not printed when a CPU backend first holds data in the tests', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      // A fresh backend instance: the banner is printed on its first write under IS_NODE.
      const backend = new MathBackendCPU();
      expect(tf.env().getBool('IS_NODE')).toBe(true);
      backend.write(new Float32Array([1]), [1], 'float32');
      const banners = warn.mock.calls.filter((args) => args.join(' ').includes('running TensorFlow.js in'));
      expect(banners).toEqual([]);
    } finally {
      warn.mockRestore();
    }
  });
});
