import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackendError } from '../errors.js';

/** Device element types: float32, and int32 (which also stores bool as 0/1). BOOL is a cast target only. */
export const DeviceType = { F32: 0, I32: 1, BOOL: 2 } as const;
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

/**
 * The addon's functions (src/cuda/native/addon.cpp). Pointers are device addresses as numbers;
 * counts, shapes and strides are in 4-byte elements. Every call is queued on one CUDA stream;
 * download, synchronize and timerStop wait for it.
 */
export interface NativeCuda {
  readonly unaryOps: readonly string[];
  readonly binaryOps: readonly string[];
  readonly reduceOps: readonly string[];
  init(): DeviceInfo;
  alloc(bytes: number): number;
  free(ptr: number): void;
  upload(ptr: number, data: Float32Array | Int32Array): void;
  download(ptr: number, out: Float32Array | Int32Array): void;
  synchronize(): void;
  memory(): DeviceMemory;
  resetPeak(): void;
  timerStart(): void;
  timerStop(): number;
  fill(dst: number, n: number, bits: number): void;
  cast(src: number, dst: number, n: number, from: DeviceType, to: DeviceType): void;
  unary(op: number, dtypeIn: DeviceType, dtypeOut: DeviceType, x: number, y: number, n: number, a: number, b: number): void;
  binary(op: number, dtypeIn: DeviceType, dtypeOut: DeviceType, a: number, b: number, y: number, shape: number[], stridesA: number[], stridesB: number[]): void;
  select(cond: number, a: number, b: number, y: number, shape: number[], stridesC: number[], stridesA: number[], stridesB: number[]): void;
  reduce(op: number, dtypeIn: DeviceType, dtypeOut: DeviceType, x: number, y: number, outer: number, inner: number): void;
  argReduce(op: number, dtypeIn: DeviceType, x: number, y: number, outer: number, inner: number): void;
  softmax(x: number, y: number, rows: number, cols: number, log: boolean): void;
  cumsum(dtype: DeviceType, x: number, y: number, outer: number, len: number, inner: number, exclusive: boolean, reverse: boolean): void;
  copyStrided(src: number, dst: number, shape: number[], strides: number[], srcOffset: number): void;
  copyBlock(src: number, dst: number, rows: number, cols: number, srcStride: number, dstStride: number, srcOffset: number, dstOffset: number): void;
  /** mode 0 constant (value as raw 32-bit pattern), 1 reflect, 2 symmetric. */
  pad(src: number, dst: number, inShape: number[], outShape: number[], before: number[], mode: number, bits: number): void;
  gather(src: number, indices: number, dst: number, batch: number, outer: number, numIndices: number, axisSize: number, inner: number): void;
  resizeNearest(src: number, dst: number, batch: number, inH: number, inW: number, ch: number, outH: number, outW: number, scaleH: number, scaleW: number, alignCorners: boolean, halfPixel: boolean): void;
  resizeBilinear(src: number, dst: number, batch: number, inH: number, inW: number, ch: number, outH: number, outW: number, scaleH: number, scaleW: number, halfPixel: boolean): void;
  rmsNorm(x: number, w: number, y: number, rows: number, cols: number, eps: number): void;
  /** w and b may be 0 (absent). */
  layerNorm(x: number, w: number, b: number, y: number, rows: number, cols: number, eps: number): void;
  geluTanh(x: number, y: number, n: number): void;
  attention(q: number, k: number, v: number, out: number, B: number, Lq: number, Lk: number, H: number, D: number, Dv: number, scale: number): void;
  matmul(a: number, b: number, c: number, batch: number, m: number, n: number, k: number, transA: boolean, transB: boolean, strideA: number, strideB: number, strideC: number, offsetA: number, offsetB: number, offsetC: number): void;
  /** geometry: [n,d,h,w,c, kd,kh,kw,o, od,oh,ow, sd,sh,sw, pd,ph,pw, dd,dh,dw]; filter [kd,kh,kw,c,o]. */
  conv(x: number, w: number, y: number, geometry: number[]): void;
}

/** The package root: the nearest folder above this module (or the working directory) with our package.json. */
function packageRoot(): string {
  const here = typeof import.meta.url === 'string' ? path.dirname(fileURLToPath(import.meta.url)) : process.cwd();
  for (const start of [here, process.cwd()]) {
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

/** Where the addon is looked for: $WAN_CUDA_ADDON, else build/Release/wan_cuda.node in the package root. */
export function addonPath(): string {
  return process.env.WAN_CUDA_ADDON ?? path.join(packageRoot(), 'build', 'Release', 'wan_cuda.node');
}

/** Loads the addon; a BackendError says which file is missing or which library failed to load. */
export function loadNative(file = addonPath()): NativeCuda {
  if (!fs.existsSync(file)) {
    throw new BackendError(
      `backend 'cuda' is not built: ${file} does not exist. Run \`npm run build:cuda\` on a machine with the CUDA toolkit (nvcc) and cuBLAS, ` +
        'or set WAN_CUDA_ADDON to a built wan_cuda.node',
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
