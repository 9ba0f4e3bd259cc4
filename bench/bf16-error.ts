import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { WanTransformer3DModel } from '../layers/wan-transformer-3d-model.js';
import { attention, fp32, linear } from '../src/backend/ops.js';
import { selectBackend } from '../src/backend/select.js';
import { CudaBackend, configureCudaBackend, cudnnInfo } from '../src/cuda/index.js';
import { hostToTensor } from '../weights/load.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { flag } from './gpu-weights.js';
import { runMain } from './harness.js';

// npx tsx bench/bf16-error.ts DIR [--json FILE]
// The bf16 error budget, judged against PyTorch: DIR is what bench/torch/bf16_error_ref.py wrote
// (inputs, the fp32 reference and PyTorch bf16's outputs per case, on the same GPU). This runs
// the library at precision bf16 on the same inputs and weights and prints, per output,
// ‖out − ref‖₂ / ‖ref‖₂ for the library and for PyTorch bf16, their ratio, and PASS when the
// ratio is ≤ 1.5 (FAIL otherwise). Cases: attention (self with outliers, cross; cuDNN and the
// flash kernel), gemm (the 1.3B's Linear shapes, bias and GELU), block (one 1.3B block at
// 32,760 tokens), forward (the whole 1.3B), sampling (4 flow-matching Euler steps; PSNR too).
// On a DIR written with --fp8 (block weights stored as ComfyUI fp8_scaled) the model cases load the
// weights in fp8 and run them as $WAN_FP8_GEMM says: unset, each weight dequantized per layer into
// bf16; 1 or fast, the cuBLASLt fp8 GEMM (its rows are named '… (fp8 GEMM)').

const BUDGET = 1.5;

interface Row {
  case: string;
  output: string;
  ours_rel_l2: number;
  torch_rel_l2: number;
  ratio: number;
  ours_psnr_db?: number;
  torch_psnr_db?: number;
  pass: boolean;
}

/** ‖a − ref‖₂ / ‖ref‖₂ in float64, and PSNR = 20·log10(max|ref| / RMSE). */
function errors(a: ArrayLike<number>, ref: ArrayLike<number>): { rel: number; psnr: number } {
  let num = 0;
  let den = 0;
  let peak = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = a[i] - ref[i];
    num += Number.isFinite(d) ? d * d : Infinity;
    den += ref[i] * ref[i];
    peak = Math.max(peak, Math.abs(ref[i]));
  }
  return { rel: Math.sqrt(num / den), psnr: 20 * Math.log10(peak / Math.sqrt(num / ref.length)) };
}

runMain(async () => {
  const dir = process.argv[2];
  if (!dir || dir.startsWith('--')) throw new Error('usage: npx tsx bench/bf16-error.ts DIR [--json FILE] (DIR from bench/torch/bf16_error_ref.py)');
  await selectBackend('cuda', { precision: 'bf16' });
  const backend = tf.backend() as CudaBackend;
  const info = cudnnInfo();
  const fp8Gemm = backend.fp8Gemm === 'off' ? '' : ` (fp8 GEMM${backend.fp8Gemm === 'fast' ? ', fast' : ''})`;
  console.log(`device ${backend.device.name}; cuDNN ${info.available ? info.version : `unavailable (${info.error})`}; WAN_FP8_GEMM ${backend.fp8Gemm}`);
  const rows: Row[] = [];
  const judge = (name: string, output: string, ours: tf.Tensor | ArrayLike<number>, io: SafetensorsFile, refName: string, torchName: string, psnr = false) => {
    const ref = io.read(refName).data;
    const torch = io.read(torchName).data;
    const got = ours instanceof tf.Tensor ? ours.dataSync() : ours;
    const o = errors(got, ref);
    const t = errors(torch, ref);
    const row: Row = { case: name, output, ours_rel_l2: o.rel, torch_rel_l2: t.rel, ratio: o.rel / t.rel, pass: o.rel <= BUDGET * t.rel };
    if (psnr) Object.assign(row, { ours_psnr_db: o.psnr, torch_psnr_db: t.psnr });
    rows.push(row);
    const extra = psnr ? `, PSNR ${o.psnr.toFixed(1)} dB vs ${t.psnr.toFixed(1)} dB` : '';
    console.log(`${row.pass ? 'PASS' : 'FAIL'} ${name} ${output}: rel_l2 ${o.rel.toExponential(2)} vs PyTorch bf16 ${t.rel.toExponential(2)} (ratio ${row.ratio.toFixed(2)} ≤ ${BUDGET})${extra}`);
  };
  const open = (c: string) => {
    const file = path.join(dir, c, 'io.safetensors');
    return fs.existsSync(file) ? SafetensorsFile.open(file) : undefined;
  };
  const input = (io: SafetensorsFile, n: string) => hostToTensor(io.read(n));

  const att = open('attention');
  if (att) {
    const [q, k, v, kc, vc] = ['input.q', 'input.k', 'input.v', 'input.k_cross', 'input.v_cross'].map((n) => input(att, n));
    for (const kernel of info.available ? (['cudnn', 'flash'] as const) : (['flash'] as const)) {
      configureCudaBackend(backend, { attention: kernel });
      for (const [out, kk, vv] of [['self_attn', k, v], ['cross_attn', kc, vc]] as const) {
        const o = attention(q, kk, vv);
        judge(`attention (${kernel})`, out, o, att, `ref.${out}`, `torch_bf16.${out}`);
        o.dispose();
      }
    }
    configureCudaBackend(backend, { attention: 'auto' });
    tf.dispose([q, k, v, kc, vc]);
    att.close();
  }

  const gemm = open('gemm');
  if (gemm) {
    const [x, w, b] = ['input.x', 'input.w', 'input.b'].map((n) => input(gemm, n));
    for (const [out, act] of [['y1', 'none'], ['y2', 'gelu_tanh']] as const) {
      const y = linear(x, w, b, act);
      judge('gemm', out, y, gemm, `ref.${out}`, `torch_bf16.${out}`);
      y.dispose();
    }
    tf.dispose([x, w, b]);
    const [x2, w2, b2] = ['input.x2', 'input.w2', 'input.b2'].map((n) => input(gemm, n));
    const y3 = linear(x2, w2, b2);
    judge('gemm', 'y3', y3, gemm, 'ref.y3', 'torch_bf16.y3');
    tf.dispose([x2, w2, b2, y3]);
    gemm.close();
  }

  for (const c of ['block', 'forward']) {
    const io = open(c);
    if (!io) continue;
    const model = await WanTransformer3DModel.fromPretrained(path.join(dir, c, 'transformer'));
    const [x, t, ctx] = ['input.hidden_states', 'input.timestep', 'input.encoder_hidden_states'].map((n) => input(io, n));
    const out = model.forward(x, t, ctx);
    judge(`${c}${fp8Gemm}`, 'sample', out, io, 'ref.sample', 'torch_bf16.sample');
    tf.dispose([out, x, t, ctx]);
    model.dispose();
    io.close();
  }

  const sampling = open('sampling');
  if (sampling) {
    const model = await WanTransformer3DModel.fromPretrained(path.join(dir, 'forward', 'transformer'));
    const sigmas = sampling.read('input.sigmas').data;
    const timesteps = sampling.read('input.timesteps').data;
    const ctx = input(sampling, 'input.encoder_hidden_states');
    let x = input(sampling, 'input.hidden_states');
    for (let i = 0; i < timesteps.length; i++) {
      const t = tf.tensor1d([timesteps[i]]);
      const v = model.forward(x, t, ctx);
      // x ← x + (σᵢ₊₁ − σᵢ)·v, in float32 between steps as the pipelines keep the latents
      const next = fp32(() => tf.add(x, tf.mul(v, Math.fround(sigmas[i + 1] - sigmas[i]))));
      tf.dispose([t, v, x]);
      x = next;
    }
    judge(`sampling (4 Euler steps)${fp8Gemm}`, 'latents', x, sampling, 'ref.latents', 'torch_bf16.latents', true);
    tf.dispose([x, ctx]);
    model.dispose();
    sampling.close();
  }

  if (fp8Gemm && backend.fp8GemmNote) console.log(`the last fp8-weight Linear ran the dequantize + bf16 path: ${backend.fp8GemmNote}`);
  const failed = rows.filter((r) => !r.pass).length;
  console.log(`${rows.length - failed} passed, ${failed} failed`);
  const json = process.argv.includes('--json') ? flag('json', '') : '';
  if (json) fs.writeFileSync(json, JSON.stringify({ device: backend.device.name, cudnn: info.version, fp8_gemm: backend.fp8Gemm, rows }) + '\n');
});
