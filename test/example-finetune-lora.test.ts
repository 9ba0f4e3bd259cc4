import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { BACKGROUND_RGB } from '../src/train/dataset.js';
import { loadLora } from '../src/train/lora-io.js';
import { decodeGif } from '../src/video/gif-decoder.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const TOY = path.join(ROOT, 'models', 'toy');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-example-lora-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const listing = (d: string): string[] => fs.readdirSync(d, { recursive: true, encoding: 'utf-8' }).sort();

/** The numbers `pattern` captures in the example's output. */
function printed(stdout: string, pattern: RegExp): number[] {
  const m = pattern.exec(stdout);
  expect(m, `${pattern} in:\n${stdout}`).not.toBeNull();
  return m!.slice(1).map(Number);
}

/**
 * Per-channel median colour in [0, 1] of each 32×32 panel of a GIF whose frames put `panels` clips
 * side by side: the clip's background, measured here from the written file.
 */
function panelBackgrounds(file: string, panels: number): number[][] {
  const gif = decodeGif(fs.readFileSync(file));
  expect([gif.width, gif.height]).toEqual([32 * panels, 32]);
  return Array.from({ length: panels }, (_, p) =>
    [0, 1, 2].map((c) => {
      const xs: number[] = [];
      for (const f of gif.frames) for (let y = 0; y < 32; y++) for (let x = 32 * p; x < 32 * (p + 1); x++) xs.push(f.rgb[(y * gif.width + x) * 3 + c] / 255);
      return xs.sort((a, b) => a - b)[xs.length >> 1];
    }),
  );
}

const black = BACKGROUND_RGB.black;
const distanceToBlack = (c: readonly number[]) => Math.hypot(c[0] - black[0], c[1] - black[1], c[2] - black[2]);

describe('examples/finetune-lora.ts with its defaults', () => {
  it.runIf(fs.existsSync(path.join(TOY, 'model_index.json')))(
    'teaches the toy model "sable" = a black background: the loss falls, the generated backgrounds turn black, files go to a temporary folder',
    async () => {
      const toyBefore = listing(TOY);
      const cwd = path.join(tmp, 'work');
      const tmpdir = path.join(tmp, 'tmpdir');
      fs.mkdirSync(cwd);
      fs.mkdirSync(tmpdir);
      const started = Date.now();
      const r = spawnSync(process.execPath, ['--import', TSX, path.join(ROOT, 'examples', 'finetune-lora.ts')], {
        cwd,
        encoding: 'utf-8',
        timeout: 240_000,
        env: { ...process.env, TMPDIR: tmpdir, TSX_TSCONFIG_PATH: path.join(ROOT, 'test', 'tsconfig.examples.json') },
      });
      expect(r.status, r.stderr.slice(-2000)).toBe(0);
      const seconds = (Date.now() - started) / 1000;

      // The loss falls: the training loss's last 10 steps average at least 1.25× below its first 10,
      // and the held-out loss (fixed σ and noise) at least 1.5× below its value before training.
      const [trainFirst, trainLast] = printed(r.stdout, /training loss, mean of the first and of the last 10 steps: ([\d.]+) → ([\d.]+)/);
      expect(trainLast * 1.25).toBeLessThan(trainFirst);
      const [heldFirst, heldLast] = printed(r.stdout, /held-out loss, before and after training: ([\d.]+) → ([\d.]+)/);
      expect(heldLast * 1.5).toBeLessThan(heldFirst);
      const logged = [...r.stdout.matchAll(/^step (\d+): training loss [\d.]+, held-out loss ([\d.]+)$/gm)].map((m) => [Number(m[1]), Number(m[2])]);
      expect(logged.map(([s]) => s)).toEqual([5, 10, 15, 20, 25, 30, 35, 40]);
      expect(logged.at(-1)![1]).toBe(heldLast);

      // Everything went to a new temporary folder: none into the working directory or the model.
      const out = /to (\S+) in [\d.]+ s$/m.exec(r.stdout)?.[1];
      expect(out && path.dirname(out)).toBe(tmpdir);
      expect(listing(out!)).toEqual(['after.gif', 'before-after.gif', 'before.gif', 'sable-lora.safetensors']);
      expect(listing(cwd)).toEqual([]);
      expect(listing(TOY)).toEqual(toyBefore);

      // The clips as written: before, the unknown word gives other backgrounds (at least two of the
      // four clips are not black); after, every background is within 0.1 of the toy's black, and the
      // mean distance falls at least 4×. The example's own figures agree with the files.
      const before = panelBackgrounds(path.join(out!, 'before.gif'), 4).map(distanceToBlack);
      const after = panelBackgrounds(path.join(out!, 'after.gif'), 4).map(distanceToBlack);
      expect(before.filter((d) => d > 0.3).length).toBeGreaterThanOrEqual(2);
      for (const d of after) expect(d).toBeLessThan(0.1);
      const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
      expect(mean(after) * 4).toBeLessThan(mean(before));
      const [saidBefore, saidAfter] = printed(r.stdout, /mean of 4 clips: before ([\d.]+), after ([\d.]+)/);
      expect(Math.abs(saidBefore - mean(before))).toBeLessThan(0.02);
      expect(Math.abs(saidAfter - mean(after))).toBeLessThan(0.02);
      const pair = decodeGif(fs.readFileSync(path.join(out!, 'before-after.gif')));
      expect([pair.width, pair.height, pair.frames.length]).toEqual([192, 384, 5]);
      expect(fs.statSync(path.join(out!, 'before-after.gif')).size).toBeLessThan(200_000);

      // The adapter is a Diffusers/PEFT LoRA on every attention and feed-forward linear of the toy DiT.
      const layers = (JSON.parse(fs.readFileSync(path.join(TOY, 'transformer', 'config.json'), 'utf8')) as { num_layers: number }).num_layers;
      const dit = await WanTransformer3DModel.fromPretrained(path.join(TOY, 'transformer'));
      const loaded = loadLora(dit, path.join(out!, 'sable-lora.safetensors'));
      expect([loaded.format, loaded.modules.size]).toEqual(['diffusers', 10 * layers]);
      dit.dispose();
      console.log(`finetune-lora.ts ran in ${seconds.toFixed(1)} s`);
    },
    300_000,
  );
});
