// src/cuda/NOTES.md tells a newcomer which file registers each tfjs kernel of backend 'cuda'; this
// keeps that table equal to what the kernel files register.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CUDA_KERNEL_NAMES } from '../src/cuda/index.js';
import { convKernels } from '../src/cuda/kernels/conv.js';
import { elementwiseKernels } from '../src/cuda/kernels/elementwise.js';
import { fusedKernels } from '../src/cuda/kernels/fused.js';
import { matmulKernels } from '../src/cuda/kernels/matmul.js';
import { reduceKernels } from '../src/cuda/kernels/reduce.js';
import { shapeKernels } from '../src/cuda/kernels/shape.js';

const notes = fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cuda', 'NOTES.md'), 'utf-8');

/** file → kernel names, as the NOTES.md table lists them. */
function table(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const m of notes.matchAll(/^\| `kernels\/([\w.-]+)` \| ([^|]+) \|$/gm)) out.set(m[1], m[2].split(',').map((s) => s.trim()));
  return out;
}

describe('the kernel index in src/cuda/NOTES.md', () => {
  it('lists every registered kernel under the file that registers it, and nothing else', () => {
    const files: Array<[string, { kernelName: string }[]]> = [
      ['elementwise.ts', elementwiseKernels],
      ['shape.ts', shapeKernels],
      ['reduce.ts', reduceKernels],
      ['matmul.ts', matmulKernels],
      ['conv.ts', convKernels],
      ['fused.ts', fusedKernels],
    ];
    const listed = table();
    expect([...listed.keys()].sort()).toEqual(files.map(([f]) => f).sort());
    for (const [file, kernels] of files) expect(listed.get(file)).toEqual(kernels.map((k) => k.kernelName).sort());
    expect([...listed.values()].flat().sort()).toEqual([...CUDA_KERNEL_NAMES]);
  });
});
