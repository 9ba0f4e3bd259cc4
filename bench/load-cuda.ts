import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { PRESETS, WanTransformer3DModel, type WanTransformerPreset } from '../layers/wan-transformer-3d-model.js';
import { WanTransformerConfig } from '../layers/wan-transformer-config.js';
import { selectBackend } from '../src/backend/select.js';
import { CudaBackend } from '../src/cuda/index.js';
import { float32ToBf16Bits } from '../weights/dtypes.js';
import { runMain } from './harness.js';
import { flag } from './gpu-weights.js';

// npx tsx bench/load-cuda.ts [--preset wan2.2-t2v-a14b] [--layers N] [--dtype bf16|fp8] [--dir DIR] [--keep]
// Issue 17, item 1: a load of one expert against the disk's sequential read bandwidth.
// Writes a Diffusers transformer folder in DIR (default a new folder under the OS temp dir):
// config.json and diffusion_pytorch_model.safetensors with every tensor of the preset's published
// shapes (--layers N keeps N blocks) in BF16, values N(0, 0.02); with --dtype fp8 the blocks' 2-D
// weights as ComfyUI's fp8_scaled files store them (F8_E4M3 codes, a float32 `<layer>.scale_weight`
// and the `scaled_fp8` marker), the rest BF16. Then, with the file's pages dropped
// from the page cache before each read (`dd iflag=nocache count=0`, GNU dd):
//   dd   — `dd if=FILE of=/dev/null bs=64M`: the disk's sequential read bandwidth;
//   load — WanTransformer3DModel.fromPretrained(DIR) on backend 'cuda' at precision bf16 (tensors
//          uploaded as stored), until every weight is on the GPU.
// Prints one JSON line: bytes, both times and bandwidths, load/dd, whether the cache drop took
// (a warm dd far faster than the cold one says it did), and how far the load raised the process's
// peak RSS (0 when it stayed under the peak the file writing had already reached).
// The folder is removed at the end unless --keep.

const CHUNK_ELEMENTS = 1 << 23; // 16 MiB of bf16 written per call

/** A buffer of bf16 N(0, 0.02) values (Box–Muller), written over and over. */
function bf16Pool(): Uint16Array {
  const pool = new Uint16Array(CHUNK_ELEMENTS);
  let seed = 12345;
  const uniform = () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return (seed + 0.5) / 2 ** 32;
  };
  for (let i = 0; i < pool.length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform())) * 0.02;
    const a = 2 * Math.PI * uniform();
    pool[i] = float32ToBf16Bits(r * Math.cos(a));
    if (i + 1 < pool.length) pool[i + 1] = float32ToBf16Bits(r * Math.sin(a));
  }
  return pool;
}

/** e4m3fn codes of N(0, 1)-like magnitudes (exponent field 4–8), the NaN codes 0x7f/0xff never drawn. */
function fp8Pool(): Uint8Array {
  const pool = new Uint8Array(CHUNK_ELEMENTS);
  let seed = 67890;
  for (let i = 0; i < pool.length; i++) {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    const sign = (seed >>> 31) << 7;
    const exponent = 4 + ((seed >>> 24) % 5);
    pool[i] = sign | (exponent << 3) | ((seed >>> 16) & 7);
  }
  return pool;
}

type StoredTensor = { name: string; shape: number[]; dtype: 'BF16' | 'F8_E4M3' | 'F32' };

/** The checkpoint's tensors: every weight in BF16, or with fp8 the blocks' 2-D weights as F8_E4M3 with a float32 scale_weight each, and the scaled_fp8 marker. */
function storedTensors(weights: Array<[string, number[]]>, fp8: boolean): StoredTensor[] {
  const out: StoredTensor[] = [];
  for (const [name, shape] of weights) {
    const quantized = fp8 && name.startsWith('blocks.') && name.endsWith('.weight') && shape.length === 2;
    out.push({ name, shape, dtype: quantized ? 'F8_E4M3' : 'BF16' });
    if (quantized) out.push({ name: `${name.slice(0, -'.weight'.length)}.scale_weight`, shape: [], dtype: 'F32' });
  }
  if (fp8) out.push({ name: 'scaled_fp8', shape: [0], dtype: 'F8_E4M3' });
  return out;
}

const BYTES: Record<StoredTensor['dtype'], number> = { BF16: 2, F8_E4M3: 1, F32: 4 };

/** Writes the safetensors file tensor by tensor (never the whole file in memory); returns its size. */
function writeCheckpoint(file: string, tensors: StoredTensor[]): number {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const { name, shape, dtype } of tensors) {
    const bytes = shape.reduce((a, d) => a * d, 1) * BYTES[dtype];
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const pools = { BF16: bf16Pool(), F8_E4M3: fp8Pool(), F32: new Float32Array([0.02]) };
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, json);
    for (const { shape, dtype } of tensors) {
      const pool = pools[dtype];
      let left = shape.reduce((a, d) => a * d, 1);
      while (left > 0) {
        const n = Math.min(left, pool.length);
        fs.writeSync(fd, pool.subarray(0, n));
        left -= n;
      }
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return 8 + Buffer.byteLength(json) + offset;
}

/** Asks the kernel to drop the file's cached pages (GNU dd's nocache flag with no data copied). */
function dropCache(file: string): void {
  execFileSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0'], { stdio: 'ignore' });
}

/** Wall time of one sequential read of the file with dd (64 MiB blocks). */
function ddReadMs(file: string): number {
  const start = performance.now();
  execFileSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=64M'], { stdio: 'ignore' });
  return performance.now() - start;
}

runMain(async () => {
  const presetName = flag('preset', 'wan2.2-t2v-a14b') as WanTransformerPreset;
  const preset = PRESETS[presetName];
  if (!preset) throw new Error(`unknown preset ${presetName}; one of ${Object.keys(PRESETS).join(', ')}`);
  const layers = process.argv.includes('--layers') ? Number(flag('layers', '0')) : preset.numLayers;
  const config = { ...preset, numLayers: layers };
  const dtype = flag('dtype', 'bf16');
  if (dtype !== 'bf16' && dtype !== 'fp8') throw new Error(`--dtype: '${dtype}' is not bf16 or fp8`);
  const dir = process.argv.includes('--dir') ? flag('dir', '') : fs.mkdtempSync(path.join(os.tmpdir(), 'wan-load-'));
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'diffusion_pytorch_model.safetensors');
  await selectBackend('cuda', { precision: 'bf16' });
  const backend = tf.backend();
  if (!(backend instanceof CudaBackend)) throw new Error("backend 'cuda' is not the CudaBackend");

  const shapes = new WanTransformer3DModel(config);
  const tensors = storedTensors(
    [...shapes.namedWeights()].map(([k, slot]): [string, number[]] => [k, [...slot.shape]]),
    dtype === 'fp8',
  );
  shapes.dispose();
  fs.writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(WanTransformerConfig.toJSON(config), null, 2)}\n`);
  const t0 = performance.now();
  const bytes = writeCheckpoint(file, tensors);
  const writeMs = performance.now() - t0;

  dropCache(file);
  const ddMs = ddReadMs(file);
  const warmDdMs = ddReadMs(file);
  dropCache(file);

  // The load runs synchronously between its awaits, so the host peak is the process's high-water mark (maxRSS, KiB).
  const maxRssBefore = process.resourceUsage().maxRSS;
  const start = performance.now();
  const model = await WanTransformer3DModel.fromPretrained(dir);
  backend.synchronize();
  const loadMs = performance.now() - start;
  const maxRssGrowth = (process.resourceUsage().maxRSS - maxRssBefore) * 1024;
  const gpuBytes = backend.memory().numBytesInGPU;
  model.dispose();
  if (!process.argv.includes('--keep')) fs.rmSync(dir, { recursive: true, force: true });

  const gbps = (ms: number) => Number((bytes / 1e9 / (ms / 1e3)).toFixed(2));
  console.log(
    JSON.stringify({
      bench: 'load-cuda',
      preset: presetName,
      layers,
      dtype,
      tensors: tensors.length,
      file_gb: Number((bytes / 1e9).toFixed(2)),
      write_ms: Math.round(writeMs),
      dd_ms: Math.round(ddMs),
      dd_gbps: gbps(ddMs),
      dd_warm_gbps: gbps(warmDdMs),
      load_ms: Math.round(loadMs),
      load_gbps: gbps(loadMs),
      load_vs_dd: Number((ddMs / loadMs).toFixed(3)),
      gpu_gib: Number((gpuBytes / 2 ** 30).toFixed(2)),
      host_max_rss_growth_gib: Number((maxRssGrowth / 2 ** 30).toFixed(2)),
      device: backend.device.name,
    }),
  );
});
