import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, describe, expect, it } from 'vitest';
import { Linear } from '../layers/linear.js';
import { WanModule } from '../layers/module.js';
import { RMSNorm } from '../layers/rms-norm.js';
import { CheckpointError } from '../src/errors.js';
import { loadWeights } from '../weights/load.js';
import { SafetensorsFile, writeSafetensors } from '../weights/safetensors.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-load-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

class Tiny extends WanModule {
  readonly proj = this.addModule('proj', new Linear({ inFeatures: 2, outFeatures: 3 }));
  readonly norm = this.addModule('norm', new RMSNorm({ dim: 3 }));
}

describe('loadWeights', () => {
  it('fills every weight from a checkpoint, in checkpoint layout, one tensor at a time', () => {
    const f = path.join(tmp, 'ok.safetensors');
    writeSafetensors(f, {
      'proj.weight': { shape: [3, 2], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
      'proj.bias': { shape: [3], data: new Float32Array([0, 0, 1]) },
      'norm.weight': { shape: [3], data: new Float32Array([1, 1, 1]), dtype: 'BF16' },
    });
    const m = new Tiny();
    const src = SafetensorsFile.open(f);
    const seen: string[] = [];
    loadWeights(m, src, { onProgress: (_i, _n, k) => seen.push(k) });
    src.close();
    expect(seen.sort()).toEqual(['norm.weight', 'proj.bias', 'proj.weight']);
    const y = m.proj.forward(tf.tensor2d([[1, 1]]));
    expect(Array.from(y.dataSync())).toEqual([3, 7, 12]);
    m.dispose();
  });

  it('reports missing, unexpected and mis-shaped tensors together, before loading anything', () => {
    const f = path.join(tmp, 'bad.safetensors');
    writeSafetensors(f, {
      'proj.weight': { shape: [2, 3], data: new Float32Array(6) },
      'extra.weight': { shape: [1], data: new Float32Array(1) },
    });
    const m = new Tiny();
    const src = SafetensorsFile.open(f);
    let err: unknown;
    try {
      loadWeights(m, src);
    } catch (e) {
      err = e;
    }
    src.close();
    expect(err).toBeInstanceOf(CheckpointError);
    const msg = (err as Error).message;
    expect(msg).toContain('bad.safetensors');
    expect(msg).toMatch(/missing 2: proj\.bias, norm\.weight/);
    expect(msg).toMatch(/unexpected 1: extra\.weight/);
    expect(msg).toMatch(/mis-shaped 1: proj\.weight: file \[2, 3\] vs model \[3, 2\]/);
    expect(m.proj.weight.isSet).toBe(false);
  });

  it('maps keys through a rename function and ignores what it drops', () => {
    const f = path.join(tmp, 'renamed.safetensors');
    writeSafetensors(f, {
      'model.proj.weight': { shape: [3, 2], data: new Float32Array(6) },
      'model.proj.bias': { shape: [3], data: new Float32Array(3) },
      'model.norm.weight': { shape: [3], data: new Float32Array(3) },
      'model.rope.freqs': { shape: [4], data: new Float32Array(4) },
    });
    const m = new Tiny();
    const src = SafetensorsFile.open(f);
    loadWeights(m, src, { rename: (k) => (k.includes('rope') ? undefined : k.replace(/^model\./, '')) });
    src.close();
    expect([...m.namedParams().values()].every((p) => p.isSet)).toBe(true);
    m.dispose();
  });
});
