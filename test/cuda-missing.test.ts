// Backend 'cuda' without a built addon (the normal CI machine): asking for it raises a BackendError
// that says what is missing, and the library keeps working on cpu.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend/select.js';
import { checkKernels, kernelsUsedBy, missingKernels, registerCudaBackend } from '../src/cuda/index.js';
import { addonPath } from '../src/cuda/native.js';
import { BackendError } from '../src/errors.js';

const saved = process.env.WAN_CUDA_ADDON;

afterEach(() => {
  if (saved === undefined) delete process.env.WAN_CUDA_ADDON;
  else process.env.WAN_CUDA_ADDON = saved;
});

describe("backend 'cuda' without the addon", () => {
  it('looks for build/Release/wan_cuda.node in the package root by default', () => {
    delete process.env.WAN_CUDA_ADDON;
    expect(addonPath()).toBe(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'build', 'Release', 'wan_cuda.node'));
  });

  it('registerCudaBackend names the missing .node file and how to build it', () => {
    const missing = path.join(os.tmpdir(), `wan-cuda-missing-${process.pid}`, 'wan_cuda.node');
    process.env.WAN_CUDA_ADDON = missing;
    expect(() => registerCudaBackend()).toThrow(BackendError);
    expect(() => registerCudaBackend()).toThrow(missing);
    expect(() => registerCudaBackend()).toThrow(/npm run build:cuda/);
  });

  it('selectBackend("cuda") rejects with the same BackendError and cpu still works', async () => {
    process.env.WAN_CUDA_ADDON = path.join(os.tmpdir(), 'no-such-dir', 'wan_cuda.node');
    await expect(selectBackend('cuda')).rejects.toThrow(/not built: .*wan_cuda\.node does not exist/);
    await expect(selectBackend('cuda')).rejects.toBeInstanceOf(BackendError);
    expect(tf.findBackendFactory('cuda')).toBeFalsy();
    await selectBackend('cpu');
    const y = tf.add(tf.tensor([1, 2]), 1);
    expect(Array.from(y.dataSync())).toEqual([2, 3]);
    y.dispose();
  });

  it('a file that is not a loadable addon gives a BackendError naming the file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-cuda-'));
    const bogus = path.join(dir, 'wan_cuda.node');
    fs.writeFileSync(bogus, 'not an ELF file');
    process.env.WAN_CUDA_ADDON = bogus;
    expect(() => registerCudaBackend()).toThrow(BackendError);
    expect(() => registerCudaBackend()).toThrow(new RegExp(`${bogus.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} failed to load`));
    fs.rmSync(dir, { recursive: true });
  });
});

describe('kernel checks', () => {
  it('missingKernels / checkKernels name the kernels a backend lacks', () => {
    expect(missingKernels(['Add', 'WanAttention', 'BatchMatMul', 'WanRmsNorm'], 'cpu')).toEqual(['WanAttention', 'WanRmsNorm']);
    expect(() => checkKernels(['Add', 'WanAttention'], 'cpu')).toThrow(/backend 'cpu' lacks 1 kernel\(s\) this model needs: WanAttention/);
    expect(() => checkKernels(['Add', 'Conv3D'], 'cpu')).not.toThrow();
  });

  it('kernelsUsedBy lists what a function runs and leaks nothing', async () => {
    await tf.setBackend('cpu');
    const before = tf.memory().numTensors;
    const names = await kernelsUsedBy(() => tf.tidy(() => tf.mean(tf.conv3d(tf.ones([1, 2, 3, 3, 2]) as tf.Tensor5D, tf.ones([1, 2, 2, 2, 4]) as tf.Tensor5D, 1, 'valid'))));
    expect(names).toEqual(expect.arrayContaining(['Conv3D', 'Mean']));
    expect(names).not.toContain('BatchMatMul');
    expect(tf.memory().numTensors).toBe(before);
  });
});
