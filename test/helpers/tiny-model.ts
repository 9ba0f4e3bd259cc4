import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixtureDir } from './fixtures.js';

/**
 * A complete tiny Diffusers Wan model folder under `dir`: the pipeline-t2v fixture (transformer,
 * VAE, scheduler) plus the umt5-encoder fixture's text encoder (d_model 32 = the DiT's text_dim)
 * and the tokenizer-unigram fixture's tokenizer (506 tokens < the encoder's 512), with
 * wan_tfjs.json setting 48×32, 5 frames, 2 steps. With `expandTimesteps` the model_index says
 * expand_timesteps, as Wan2.2-TI2V-5B's does (per-token timesteps, image-to-video). Returns the folder.
 */
export function assembleTinyModel(dir: string, options: { expandTimesteps?: boolean } = {}): string {
  if (fs.existsSync(path.join(dir, 'model_index.json'))) return dir;
  fs.mkdirSync(dir, { recursive: true });
  const copy = (from: string, to: string) => {
    fs.cpSync(from, path.join(dir, to), { recursive: true });
    for (const f of [path.join(dir, to), ...fs.readdirSync(path.join(dir, to), { recursive: true }).map((f) => path.join(dir, to, String(f)))]) {
      fs.chmodSync(f, fs.statSync(f).isDirectory() ? 0o755 : 0o644);
    }
  };
  for (const c of ['transformer', 'vae', 'scheduler']) copy(path.join(fixtureDir('pipeline-t2v'), c), c);
  copy(path.join(fixtureDir('umt5-encoder'), 'text_encoder'), 'text_encoder');
  fs.mkdirSync(path.join(dir, 'tokenizer'));
  fs.copyFileSync(path.join(fixtureDir('tokenizer-unigram'), 'tokenizer.json'), path.join(dir, 'tokenizer', 'tokenizer.json'));
  const index = JSON.parse(fs.readFileSync(path.join(fixtureDir('pipeline-t2v'), 'model_index.json'), 'utf-8')) as Record<string, unknown>;
  index.text_encoder = ['transformers', 'UMT5EncoderModel'];
  index.tokenizer = ['transformers', 'T5TokenizerFast'];
  if (options.expandTimesteps) index.expand_timesteps = true;
  fs.writeFileSync(path.join(dir, 'model_index.json'), JSON.stringify(index, null, 2));
  fs.writeFileSync(path.join(dir, 'wan_tfjs.json'), JSON.stringify({ height: 32, width: 48, num_frames: 5, num_inference_steps: 2, fps: 8 }));
  return dir;
}
