/**
 * Using one pretrained piece of Wan on its own: the self-attention of the DiT's first block,
 * loaded straight from the checkpoint into a standalone WanAttention layer, applied to your own
 * tokens, and fine-tuned a few steps with a tfjs optimizer.
 *
 *   npx tsx examples/reuse-attention.ts [model folder]
 *
 * The model folder holds a Diffusers transformer/ (default: the model `wan-tfjs generate` uses
 * without --model: $WAN_MODEL, else the toy model the package ships).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { defaultModelDir } from 'wan-tfjs';
import { WanAttention, WanTransformer3DModel, WanTransformerConfig } from 'wan-tfjs/layers';
import { loadWeights, openCheckpoint } from 'wan-tfjs/weights';

const modelDir = process.argv[2] ?? defaultModelDir();
const dir = path.join(modelDir, 'transformer');
const config = WanTransformerConfig.fromJSON(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf-8')));
const dim = config.numAttentionHeads * config.attentionHeadDim;

// A standalone layer named like the checkpoint's blocks.0.attn1: its keys are to_q.weight, norm_q.weight, …
const attn = new WanAttention({ dim, heads: config.numAttentionHeads, dimHead: config.attentionHeadDim, eps: config.eps });
const prefix = 'blocks.0.attn1.';
const source = openCheckpoint(dir);
loadWeights(attn, source, { rename: (key) => (key.startsWith(prefix) ? key.slice(prefix.length) : undefined) });
source.close();
console.log(`loaded ${[...attn.namedWeights().keys()].join(', ')} (${attn.countParams()} parameters)`);

// Your own tokens [B, L, D] through the pretrained attention.
const tokens = tf.randomNormal([2, 10, dim], 0, 1, 'float32', 7);
const y = attn.forward(tokens);
console.log(`attention: [${tokens.shape}] -> [${y.shape}]`);

// The same weights inside the whole DiT give the same numbers.
const dit = await WanTransformer3DModel.fromPretrained(dir);
const inside = dit.blocks[0].attn1.forward(tokens);
console.log(`max |standalone − inside the DiT| = ${tf.tidy(() => tf.max(tf.abs(tf.sub(y, inside))).dataSync()[0])}`);
inside.dispose();
dit.dispose();

// Fine-tune it towards a target with Adam; the layer's variables are ordinary tfjs variables.
const target = tf.zerosLike(y);
const optimizer = tf.train.adam(1e-2);
const vars = attn.trainableWeights.map((w) => w.read()).filter((v): v is tf.Variable => v instanceof tf.Variable);
const loss = () => tf.mean(tf.square(tf.sub(attn.forward(tokens), target))) as tf.Scalar;
const first = tf.tidy(() => loss().dataSync()[0]);
for (let i = 0; i < 20; i++) optimizer.minimize(loss, true, vars)?.dispose();
const last = tf.tidy(() => loss().dataSync()[0]);
console.log(`fine-tuning loss: ${first.toFixed(4)} -> ${last.toFixed(4)}`);

tf.dispose([tokens, y, target]);
optimizer.dispose();
attn.dispose();
