import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackendError } from '../errors.js';

/**
 * Device element types: float32, int32 (which also stores bool as 0/1), bfloat16 (a float32 tensor
 * the precision policy stores in 2 bytes), float16 (an upload format), and the float8 codes of a
 * checkpoint's fp8 weights (1 byte, float8_e4m3fn or float8_e5m2, read through `dequantFp8` with
 * the buffer's per-tensor scale). BOOL is a cast target only.
 */
export const DeviceType = { F32: 0, I32: 1, BOOL: 2, BF16: 3, F16: 4, F8_E4M3: 5, F8_E5M2: 6 } as const;
export type DeviceType = (typeof DeviceType)[keyof typeof DeviceType];

/** What init() reports about the GPU. */
export interface DeviceInfo {
  name: string;
  totalMemory: number;
  multiprocessors: number;
  /** major·10 + minor, e.g. 90 for an H100. */
  computeCapability: number;
  runtimeVersion: number;
  driverVersion: number;
}

/** Bytes held by tensors (and scratch), the most held since the last resetPeak, and the pool's reservation. */
export interface DeviceMemory {
  inUse: number;
  peak: number;
  reserved: number;
  deviceFree: number;
  deviceTotal: number;
}

/** What loading cuDNN reported: usable or not, its version (91900 for 9.19.0), the file, and why not. */
export interface CudnnInfo {
  available: boolean;
  version: number;
  library: string;
  error: string;
}

/** Direction of NativeCuda.copyAsync. */
export const CopyDirection = { DEVICE_TO_HOST: 0, HOST_TO_DEVICE: 1 } as const;
export type CopyDirection = (typeof CopyDirection)[keyof typeof CopyDirection];

/** Bytes before the activation's e4m3 codes in gemmFp8's scratch (amax, s_x, s_w, padding): its size is FP8_SCRATCH_HEAD + m·k. */
export const FP8_SCRATCH_HEAD = 256;

/** What a fused linear applies after the product (cuBLASLt epilogues): 0 none, 1 + bias, 2 GELU-tanh, 3 GELU-tanh(· + bias). */
export const Epilogue = { NONE: 0, BIAS: 1, GELU: 2, GELU_BIAS: 3 } as const;

/**
 * The addon's functions (src/cuda/native/addon.cpp). Pointers are device addresses as numbers;
 * counts, shapes, strides and offsets are in elements of the buffer's stored type (`width` is its
 * byte size where a function only moves elements). Every call is queued on one CUDA stream (the
 * compute stream), but copyAsync, which runs on a second one; download, synchronize and timerStop
 * wait for the compute stream, synchronize for both.
 */
export interface NativeCuda {
  readonly unaryOps: readonly string[];
  readonly binaryOps: readonly string[];
  readonly reduceOps: readonly string[];
  init(): DeviceInfo;
  alloc(bytes: number): number;
  free(ptr: number): void;
  upload(ptr: number, data: Float32Array | Int32Array | Uint16Array | Uint8Array): void;
  download(ptr: number, out: Float32Array | Int32Array | Uint16Array | Uint8Array): void;
  synchronize(): void;
  /** `bytes` of page-locked host memory (cudaHostAlloc): its address, or 0 for 0 bytes. */
  hostAlloc(bytes: number): number;
  /** Frees a hostAlloc buffer once the copies queued so far have finished. */
  hostFree(ptr: number): void;
  /**
   * Queues a copy of `bytes` between a device buffer and a hostAlloc buffer on the copy stream,
   * after the work queued on the compute stream so far; returns its event id (ids increase).
   */
  copyAsync(dst: number, src: number, bytes: number, direction: CopyDirection): number;
  /** The compute stream waits for copy `id` before the work queued after this call. */
  waitEvent(id: number): void;
  /** Whether copy `id` has finished (never blocks). */
  eventDone(id: number): boolean;
  memory(): DeviceMemory;
  resetPeak(): void;
  timerStart(): void;
  timerStop(): number;
  fill(dst: number, n: number, bits: number, width: number): void;
  /** to BOOL converts to bool; F16 is a source only. */
  cast(src: number, dst: number, n: number, from: DeviceType, to: DeviceType): void;
  /**
   * dst[i] = decode(src[i]) · scale for n float8 codes: `format` F8_E4M3 (float8_e4m3fn: no
   * infinities, S.1111.111 NaN) or F8_E5M2 (IEEE-like); the float32 product rounded once, then
   * stored as `outType` (F32, or BF16 rounded to nearest even).
   */
  dequantFp8(src: number, dst: number, n: number, format: DeviceType, scale: number, outType: DeviceType): void;
  unary(op: number, dtypeIn: DeviceType, dtypeOut: DeviceType, x: number, y: number, n: number, a: number, b: number): void;
  binary(op: number, typeA: DeviceType, typeB: DeviceType, typeOut: DeviceType, a: number, b: number, y: number, shape: number[], stridesA: number[], stridesB: number[]): void;
  select(cond: number, a: number, b: number, y: number, shape: number[], stridesC: number[], stridesA: number[], stridesB: number[], width: number): void;
  reduce(op: number, dtypeIn: DeviceType, dtypeOut: DeviceType, x: number, y: number, outer: number, inner: number): void;
  argReduce(op: number, dtypeIn: DeviceType, x: number, y: number, outer: number, inner: number): void;
  softmax(x: number, y: number, rows: number, cols: number, log: boolean, typeIn: DeviceType, typeOut: DeviceType): void;
  cumsum(dtype: DeviceType, x: number, y: number, outer: number, len: number, inner: number, exclusive: boolean, reverse: boolean): void;
  copyStrided(src: number, dst: number, shape: number[], strides: number[], srcOffset: number, width: number): void;
  copyBlock(src: number, dst: number, rows: number, cols: number, srcStride: number, dstStride: number, srcOffset: number, dstOffset: number, width: number): void;
  /** mode 0 constant (value as the raw bit pattern of the element width), 1 reflect, 2 symmetric. */
  pad(src: number, dst: number, inShape: number[], outShape: number[], before: number[], mode: number, bits: number, width: number): void;
  gather(src: number, indices: number, dst: number, batch: number, outer: number, numIndices: number, axisSize: number, inner: number, width: number): void;
  resizeNearest(src: number, dst: number, batch: number, inH: number, inW: number, ch: number, outH: number, outW: number, scaleH: number, scaleW: number, alignCorners: boolean, halfPixel: boolean, width: number): void;
  resizeBilinear(src: number, dst: number, batch: number, inH: number, inW: number, ch: number, outH: number, outW: number, scaleH: number, scaleW: number, halfPixel: boolean): void;
  /** x, y F32 or BF16; w float32; silu 1 applies SiLU to the result. */
  rmsNorm(x: number, w: number, y: number, rows: number, cols: number, eps: number, typeIn: DeviceType, typeOut: DeviceType, silu: number): void;
  /** w and b float32, or 0 (absent). */
  layerNorm(x: number, w: number, b: number, y: number, rows: number, cols: number, eps: number, typeIn: DeviceType, typeOut: DeviceType): void;
  /** scale, shift float32 [modCount, cols]; row r takes modulation row ⌊r / rowsPerMod⌋ mod modCount. */
  layerNormModulate(x: number, scale: number, shift: number, y: number, rows: number, cols: number, eps: number, rowsPerMod: number, modCount: number, typeIn: DeviceType, typeOut: DeviceType): void;
  /** x, y [rows, H, D] with rows = B·L (position = row mod L); cos, sin float32 [L, D]. */
  rope(x: number, cos: number, sin: number, y: number, rows: number, L: number, H: number, D: number, typeIn: DeviceType, typeOut: DeviceType): void;
  geluTanh(x: number, y: number, n: number, typeIn: DeviceType, typeOut: DeviceType): void;
  /** out (float32) = x + y · gate[m] (x + y without a gate), m = ⌊r / rowsPerMod⌋ mod modCount for row r; each op rounded to float32. */
  gatedResidual(x: number, y: number, gate: number, out: number, rows: number, cols: number, rowsPerMod: number, modCount: number, typeX: DeviceType, typeY: DeviceType): void;
  /** out [rows, cols] = y + bias[col] + res (out may be y); bias [cols] and res [rows, cols] may be 0 (absent); each F32 or BF16. */
  biasResidual(y: number, bias: number, res: number, out: number, rows: number, cols: number, typeY: DeviceType, typeBias: DeviceType, typeRes: DeviceType, typeOut: DeviceType): void;
  /** float32 q, k, v, out. */
  attention(q: number, k: number, v: number, out: number, B: number, Lq: number, Lk: number, H: number, D: number, Dv: number, scale: number): void;
  /**
   * bfloat16 q, k, v; out stored as typeOut; mode 0 cuDNN then flash, 1 cuDNN only, 2 flash only.
   * Returns the kernel that ran: 1 cuDNN, 2 flash, 0 none (the head size fits neither).
   */
  attentionBf16(q: number, k: number, v: number, out: number, B: number, Lq: number, Lk: number, H: number, D: number, Dv: number, scale: number, typeOut: DeviceType, mode: number): number;
  /** Why the last attentionBf16 call did not use cuDNN ("" when it did). */
  attentionNote(): string;
  /**
   * C = op(A)·op(B) batched; typeAB F32 (cuBLAS, typeC F32, no epilogue) or BF16 (cuBLASLt, typeC F32 or BF16,
   * an Epilogue with bias [n] of typeBias, bias 0 when absent).
   */
  matmul(a: number, b: number, c: number, batch: number, m: number, n: number, k: number, transA: boolean, transB: boolean, strideA: number, strideB: number, strideC: number, offsetA: number, offsetB: number, offsetC: number, typeAB: DeviceType, typeC: DeviceType, bias: number, typeBias: DeviceType, epilogue: number): void;
  /**
   * The fp8 Linear GEMM (src/cuda/native/gemm-fp8.h; opt-in, WAN_FP8_GEMM): d [m, n] bf16 =
   * epilogue(s_x·s_w·(q_x·q_wᵀ)) with x [m, k] stored as xType (BF16 or F32), s_x = amax(|x|)/448 in float32
   * (1 when amax is 0) computed on the GPU, q_x = e4m3(x / s_x) rounded to nearest even and saturated to ±448,
   * w [n, k] float8_e4m3fn codes of per-tensor scale wScale, an Epilogue with a bf16 bias [n] (0 when absent);
   * fastAccum: Hopper's fp8 accumulation without periodic promotion. scratch: FP8_SCRATCH_HEAD + m·k bytes
   * (16-byte aligned; amax at byte 0, s_x at 16, s_w at 32, then the codes q_x), freed by the caller after the call
   * (stream-ordered). Returns "" when the GEMM was queued, else why not (d untouched): GPU older than sm_89, k or n
   * not a multiple of 16, a misaligned pointer, no cuBLASLt algorithm, cublasLtMatmul refusing the algorithm. An
   * addon built before it lacks it.
   */
  gemmFp8(x: number, xType: DeviceType, w: number, wScale: number, d: number, m: number, n: number, k: number, bias: number, epilogue: number, fastAccum: boolean, scratch: number): string;
  /** float32; geometry: [n,d,h,w,c, kd,kh,kw,o, od,oh,ow, sd,sh,sw, pd,ph,pw, dd,dh,dw]; filter [kd,kh,kw,c,o]. */
  conv(x: number, w: number, y: number, geometry: number[]): void;
  /**
   * y = conv(x, w) + bias + residual through cuDNN, filter [o,kd,kh,kw,c], type F32 or BF16, bias [o] of typeBias and a
   * residual like y (of y's type; BF16 only), each 0 when absent: "" when it ran (epilogue included), else why cuDNN did not take it.
   */
  convCudnn(x: number, w: number, y: number, geometry: number[], type: DeviceType, bias: number, typeBias: DeviceType, residual: number): string;
  /** The cuDNN convolution plans made so far, one line each ("<geometry> <api>: <plan or refusal>"). */
  convPlans(): string;
  /** Loads cuDNN from the first candidate that opens (once; later calls return the first outcome). */
  cudnnLoad(candidates: string[]): CudnnInfo;
}

/**
 * The package root: the nearest folder above `from` (default this module, then the working
 * directory) with our package.json. From an installed package (node_modules/wan-tfjs/dist/src)
 * this is node_modules/wan-tfjs.
 */
export function packageRoot(from?: string): string {
  const here = typeof import.meta.url === 'string' && import.meta.url ? path.dirname(fileURLToPath(import.meta.url)) : process.cwd();
  for (const start of from === undefined ? [here, process.cwd()] : [from]) {
    let dir = start;
    for (;;) {
      const pkg = path.join(dir, 'package.json');
      if (fs.existsSync(pkg) && /"name"\s*:\s*"wan-tfjs"/.test(fs.readFileSync(pkg, 'utf-8'))) return dir;
      const up = path.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  return process.cwd();
}

/** True when `root` is a source checkout (not a package installed under node_modules). */
export function isSourceCheckout(root = packageRoot()): boolean {
  return !path.resolve(root).split(path.sep).includes('node_modules') && fs.existsSync(path.join(root, 'src', 'cuda', 'build.mjs'));
}

/** The command that builds the addon: `npm run build:cuda` in a checkout, `npx wan-tfjs build-cuda` in an installed package. */
export function buildCommand(root = packageRoot()): string {
  return isSourceCheckout(root) ? 'npm run build:cuda' : 'npx wan-tfjs build-cuda';
}

/** Where the addon is looked for: $WAN_CUDA_ADDON, else build/Release/wan_cuda.node in the package root. */
export function addonPath(): string {
  return process.env.WAN_CUDA_ADDON ?? path.join(packageRoot(), 'build', 'Release', 'wan_cuda.node');
}

/** What the build would use: nvcc (or why none), its CUDA version, and the cuDNN headers. */
export interface CudaToolchain {
  nvcc?: string;
  /** e.g. "13.0", from `nvcc --version`; undefined when nvcc is absent or does not answer. */
  cudaVersion?: string;
  /** Why nvcc was not found (one phrase). */
  nvccError?: string;
  /** The folder holding cudnn.h, or undefined. */
  cudnnInclude?: string;
}

/**
 * Finds nvcc as src/cuda/build.mjs does: $CUDA_HOME/bin (an explicit CUDA_HOME without nvcc is an
 * error), $CUDA_PATH/bin, /usr/local/cuda/bin (`defaultHomes`), then PATH.
 */
export function findCudaToolchain(env: NodeJS.ProcessEnv = process.env, defaultHomes: readonly string[] = ['/usr/local/cuda']): CudaToolchain {
  const out: CudaToolchain = {};
  const inHome = (h: string): string | undefined => {
    const p = path.join(h, 'bin', 'nvcc');
    return fs.existsSync(p) ? p : undefined;
  };
  if (env.CUDA_HOME) {
    out.nvcc = inHome(env.CUDA_HOME);
    if (!out.nvcc) out.nvccError = `CUDA_HOME=${env.CUDA_HOME} has no bin/nvcc`;
  } else {
    out.nvcc =
      (env.CUDA_PATH ? inHome(env.CUDA_PATH) : undefined) ??
      defaultHomes.map(inHome).find((p) => p !== undefined) ??
      (env.PATH ?? '')
        .split(path.delimiter)
        .filter(Boolean)
        .map((d) => path.join(d, 'nvcc'))
        .find((p) => fs.existsSync(p));
    if (!out.nvcc) out.nvccError = `nvcc is not on PATH nor in ${[env.CUDA_PATH, ...defaultHomes].filter(Boolean).join(', ')}`;
  }
  if (out.nvcc) {
    try {
      const text = execFileSync(out.nvcc, ['--version'], { encoding: 'utf-8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
      out.cudaVersion = /release (\d+\.\d+)/.exec(text)?.[1];
    } catch {
      // an nvcc that does not run: reported as version unknown
    }
  }
  out.cudnnInclude = [env.WAN_CUDNN_INCLUDE, '/usr/include', '/usr/include/x86_64-linux-gnu']
    .filter((d): d is string => !!d)
    .find((d) => fs.existsSync(path.join(d, 'cudnn.h')));
  return out;
}

/** One line on what building needs here: nvcc and its CUDA version, and cuDNN's headers. */
export function describeToolchain(t: CudaToolchain): string {
  const nvcc = t.nvcc
    ? t.cudaVersion
      ? Number(t.cudaVersion.split('.')[0]) >= 12
        ? `nvcc ${t.nvcc} (CUDA ${t.cudaVersion})`
        : `nvcc ${t.nvcc} is CUDA ${t.cudaVersion}, which is too old (CUDA 12 or 13 is needed)`
      : `nvcc ${t.nvcc} (CUDA version unknown: \`nvcc --version\` failed)`
    : `nvcc is missing (${t.nvccError}): install the CUDA toolkit 12 or 13 with cuBLAS, or set CUDA_HOME`;
  const cudnn = t.cudnnInclude
    ? `cuDNN headers in ${t.cudnnInclude}`
    : 'cuDNN headers absent (optional: set WAN_CUDNN_INCLUDE or pip install nvidia-cudnn-cu13 for the cuDNN attention/convolution path)';
  return `${nvcc}; ${cudnn}`;
}

/** Loads the addon; a BackendError says which file is missing or which library failed to load. */
export function loadNative(file = addonPath()): NativeCuda {
  if (!fs.existsSync(file)) {
    throw new BackendError(
      `backend 'cuda' is not built: ${file} does not exist. Run \`${buildCommand()}\` on a machine with the CUDA toolkit (nvcc) and cuBLAS, ` +
        `or set WAN_CUDA_ADDON to a built wan_cuda.node. Here: ${describeToolchain(findCudaToolchain())}`,
    );
  }
  const mod: { exports: unknown } = { exports: {} };
  try {
    process.dlopen(mod, file);
  } catch (e) {
    const msg = (e as Error).message;
    const lib = /(lib[\w.+-]+\.so[\w.]*)/.exec(msg)?.[1];
    throw new BackendError(
      `backend 'cuda': ${file} failed to load: ${msg}` +
        (lib ? ` (${lib} is missing: install the CUDA runtime / cuBLAS libraries or add their folder to LD_LIBRARY_PATH)` : ''),
    );
  }
  return mod.exports as NativeCuda;
}
