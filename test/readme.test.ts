import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePng } from '../src/video/png-encoder.js';
import { assembleTinyModel } from './helpers/tiny-model.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf-8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
const dir = path.join(root, 'test', '.readme-snippets');

// Every example but image-to-video runs with its stated default, defaultModelDir(): the bundled toy
// model (WAN_MODEL unset, as a user who copies them has it). The image-to-video example's default is a
// published checkpoint, so it reads WAN_I2V_MODEL and WAN_FIRST_FRAME: the tiny fixture model marked
// expand_timesteps (as TI2V-5B), and a 48×32 PNG, its default size.
const savedModel = process.env.WAN_MODEL;
beforeAll(() => {
  delete process.env.WAN_MODEL;
  process.env.WAN_I2V_MODEL = assembleTinyModel(path.join(dir, 'tiny-ti2v'), { expandTimesteps: true });
  const frame = path.join(dir, 'first.png');
  fs.writeFileSync(frame, encodePng(Uint8Array.from({ length: 32 * 48 * 3 }, (_, i) => (i * 13) % 256), 48, 32));
  process.env.WAN_FIRST_FRAME = frame;
});
afterAll(() => {
  if (savedModel !== undefined) process.env.WAN_MODEL = savedModel;
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('README', () => {
  it('has TypeScript examples', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(4);
  });

  it.each(blocks.map((code, i) => [i + 1, code.split('\n')[0], code] as const))('example %i (%s) runs from the repo root and leaks no tensor', async (i, _first, code) => {
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `example-${i}.ts`);
    fs.writeFileSync(file, code);
    const cwd = process.cwd();
    process.chdir(root);
    try {
      await import(pathToFileURL(file).href);
    } finally {
      process.chdir(cwd);
    }
    // Each example disposes what it made; the backend's own bookkeeping tensors aside, none remain.
    expect(tf.memory().numTensors).toBe(0);
  });
});
