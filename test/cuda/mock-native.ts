/**
 * A host-memory stand-in for the wan_cuda addon with the same functions and semantics, written
 * plainly. It lets the op suite exercise the TypeScript half of backend 'cuda' (shape logic,
 * strides, dtype handling, storage types, attribute parsing) on a machine without a GPU:
 *   WAN_CUDA_MOCK=1 npx vitest run --config vitest.cuda.config.ts test/cuda/ops.cuda.ts
 * bfloat16 buffers hold real bfloat16 bits (round to nearest even on store), so precision tests
 * see the rounding the device does; the bf16 matmul, attention and convolution compute in float64
 * from the rounded operands (the device accumulates in float32) and round the result.
 */
import { FP8_SCRATCH_HEAD, type CudnnInfo, type DeviceInfo, type DeviceMemory, type NativeCuda } from '../../src/cuda/native.js';
import { decodeTensorBytes, float32ToBf16Bits } from '../../weights/dtypes.js';

const SLOT = 2 ** 32;
const F32 = 0;
const I32 = 1;
const BOOL = 2;
const BF16 = 3;
const F16 = 4;
const F8_E4M3 = 5;
const F8_E5M2 = 6;

/** bfloat16 bits → value. */
export function fromBf16Bits(b: number): number {
  return new Float32Array(new Uint32Array([b << 16]).buffer)[0];
}

/** The value bfloat16 storage keeps of v. */
export function roundBf16(v: number): number {
  return fromBf16Bits(float32ToBf16Bits(v));
}

/** IEEE half bits → value. */
function fromF16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

const F32_BITS = new Float32Array(1);
const U32_BITS = new Uint32Array(F32_BITS.buffer);

/** x rounded to the nearest integer, ties to even (rintf). */
function rint(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d < 0.5 ? f : d > 0.5 ? f + 1 : f % 2 === 0 ? f : f + 1;
}

/**
 * float32 → float8_e4m3fn code as the addon's encodeE4m3 (src/cuda/native/gemm-fp8.h): round to nearest even,
 * saturate to ±448 (±∞ too), NaN → 0x7f; |v| < 2⁻⁶ → rne(|v|·2⁹) (subnormals; 8 is 2⁻⁶), else the exponent and
 * the top 3 mantissa bits rounded on the 20 dropped ones (a carry moves to the next exponent, 0x7f clamped to 0x7e).
 */
export function encodeE4m3(v: number): number {
  F32_BITS[0] = v;
  const u = U32_BITS[0];
  const sign = (u >>> 24) & 0x80;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return 0x7f;
  if (a >= 0x43e00000) return sign | 0x7e;
  const e = (a >>> 23) - 127;
  if (e < -6) return sign | rint(Math.abs(Math.fround(v)) * 512);
  let t = ((e + 7) << 3) | ((a >>> 20) & 7);
  const rest = a & 0xfffff;
  if (rest > 0x80000 || (rest === 0x80000 && (t & 1) === 1)) t++;
  return sign | Math.min(t, 0x7e);
}

/** Element access to a buffer of one storage type, in values (reads widen, writes round). */
interface Elements {
  get(i: number): number;
  set(i: number, v: number): void;
}

const UNARY: Record<string, (x: number, a: number, b: number) => number> = {
  Abs: Math.abs,
  Neg: (x) => -x,
  Exp: Math.exp,
  Expm1: Math.expm1,
  Log: Math.log,
  Log1p: Math.log1p,
  Sqrt: Math.sqrt,
  Rsqrt: (x) => 1 / Math.sqrt(x),
  Square: (x) => x * x,
  Reciprocal: (x) => 1 / x,
  Sin: Math.sin,
  Cos: Math.cos,
  Tan: Math.tan,
  Asin: Math.asin,
  Acos: Math.acos,
  Atan: Math.atan,
  Sinh: Math.sinh,
  Cosh: Math.cosh,
  Tanh: Math.tanh,
  Asinh: Math.asinh,
  Acosh: Math.acosh,
  Atanh: Math.atanh,
  Sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  Softplus: (x) => (x < -15.942385152878742 ? Math.exp(x) : x > 15.942385152878742 ? x : Math.log1p(Math.exp(x))),
  Relu: (x) => (Number.isNaN(x) ? x : Math.max(x, 0)),
  Relu6: (x) => (Number.isNaN(x) ? x : Math.min(Math.max(x, 0), 6)),
  Elu: (x) => (x >= 0 ? x : Math.expm1(x)),
  Selu: (x) => (x >= 0 ? 1.0507009873554805 * x : 1.7580993408473768 * Math.expm1(x)),
  Erf: erf,
  Floor: Math.floor,
  Ceil: Math.ceil,
  Round: (x) => {
    const f = Math.floor(x);
    const d = x - f;
    return d < 0.5 ? f : d > 0.5 ? f + 1 : f % 2 === 0 ? f : f + 1;
  },
  Sign: (x) => (Number.isNaN(x) ? 0 : Math.sign(x)),
  IsNan: (x) => Number(Number.isNaN(x)),
  IsInf: (x) => Number(!Number.isFinite(x) && !Number.isNaN(x)),
  IsFinite: (x) => Number(Number.isFinite(x)),
  LogicalNot: (x) => Number(x === 0),
  Step: (x, a) => (Number.isNaN(x) ? NaN : x > 0 ? 1 : a),
  LeakyRelu: (x, a) => (x < 0 ? a * x : x),
  ClipByValue: (x, a, b) => (Number.isNaN(x) ? x : Math.min(Math.max(x, a), b)),
  Identity: (x) => x,
};

function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is too coarse for tests; use a series / continued fraction split.
  const t = Math.abs(x);
  if (t < 2.5) {
    let sum = t;
    let term = t;
    for (let n = 1; n < 60; n++) {
      term *= (-t * t) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * sum);
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (t + f);
  return Math.sign(x) * (1 - Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f));
}

const BINARY: Record<string, (a: number, b: number, int: boolean) => number> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Multiply: (a, b) => a * b,
  RealDiv: (a, b) => a / b,
  FloorDiv: (a, b) => Math.floor(a / b),
  Mod: (a, b) => {
    const r = a % b;
    return (a < 0 && b < 0) || (a >= 0 && b >= 0) ? r : (r + b) % b;
  },
  Maximum: (a, b) => Math.max(a, b),
  Minimum: (a, b) => Math.min(a, b),
  Pow: (a, b) => Math.pow(a, b),
  SquaredDifference: (a, b) => (a - b) * (a - b),
  Atan2: Math.atan2,
  Equal: (a, b) => Number(a === b),
  NotEqual: (a, b) => Number(a !== b),
  Less: (a, b) => Number(a < b),
  LessEqual: (a, b) => Number(a <= b),
  Greater: (a, b) => Number(a > b),
  GreaterEqual: (a, b) => Number(a >= b),
  LogicalAnd: (a, b) => Number(a !== 0 && b !== 0),
  LogicalOr: (a, b) => Number(a !== 0 || b !== 0),
  LogicalXor: (a, b) => Number(a !== 0 !== (b !== 0)),
  Prelu: (a, b) => (a < 0 ? b * a : a),
};

const REDUCE: Record<string, { init: number; step: (acc: number, x: number) => number }> = {
  Sum: { init: 0, step: (a, x) => a + x },
  Mean: { init: 0, step: (a, x) => a + x },
  Prod: { init: 1, step: (a, x) => a * x },
  Max: { init: -Infinity, step: (a, x) => (Number.isNaN(a) || Number.isNaN(x) ? NaN : Math.max(a, x)) },
  Min: { init: Infinity, step: (a, x) => (Number.isNaN(a) || Number.isNaN(x) ? NaN : Math.min(a, x)) },
  All: { init: 1, step: (a, x) => Number(a !== 0 && x !== 0) },
  Any: { init: 0, step: (a, x) => Number(a !== 0 || x !== 0) },
};

/** Offsets of element i (row-major over shape) in each strided view. */
function offsets(shape: number[], strides: number[][], i: number): number[] {
  const off = strides.map(() => 0);
  for (let d = shape.length - 1; d >= 0; d--) {
    const c = i % shape[d];
    i = Math.floor(i / shape[d]);
    for (let k = 0; k < strides.length; k++) off[k] += c * strides[k][d];
  }
  return off;
}

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

export interface MockNative extends NativeCuda {
  /** Buffers currently allocated. */
  readonly liveBuffers: number;
  /** What cudnnLoad reports (set before registering the backend to mimic a machine with cuDNN). */
  cudnn: CudnnInfo;
  /** How the last bf16 attention ran (1 "cuDNN", 2 flash) and each call's count. */
  readonly attentionPaths: number[];
  /** Device bytes the stand-in has (undefined: unlimited): alloc beyond it throws the addon's "out of GPU memory" error. */
  capacity: number | undefined;
  /** What gemmFp8 returns instead of running ("" runs it): stands in for the addon's refusals (no cuBLASLt algorithm, …). */
  fp8GemmRefusal: string;
  /** gemmFp8 calls that ran. */
  readonly fp8GemmRuns: number;
  /** Pinned host buffers currently allocated, and their bytes. */
  readonly liveHostBuffers: number;
  readonly hostBytes: number;
  /** Bytes copied by copyAsync so far, each way. */
  readonly copied: { deviceToHost: number; hostToDevice: number };
}

export function createMockNative(): MockNative {
  const buffers = new Map<number, ArrayBuffer>();
  let nextId = 1;
  let inUse = 0;
  let peak = 0;
  let timer = 0;
  const sizes = new Map<number, number>();
  const unaryOps = Object.keys(UNARY);
  const binaryOps = Object.keys(BINARY);
  const reduceOps = Object.keys(REDUCE);
  const attentionPaths: number[] = [];
  let fp8GemmRuns = 0;
  const hostBuffers = new Map<number, ArrayBuffer>();
  let hostBytes = 0;
  const copied = { deviceToHost: 0, hostToDevice: 0 };
  /**
   * Copies queued on the "copy stream", in order: each runs when something waits for it (waitEvent,
   * eventDone, synchronize, hostFree), so a kernel that reads a prefetched buffer before the compute
   * stream waited for its copy sees stale bytes, as it could on the device.
   */
  const queued: Array<{ id: number; buffers: number[]; run: () => void }> = [];
  let nextEvent = 1;
  const runCopies = (upTo: number) => {
    while (queued.length > 0 && queued[0].id <= upTo) queued.shift()!.run();
  };

  function buf(ptr: number): { buffer: ArrayBuffer; byteOffset: number } {
    const id = Math.floor(ptr / SLOT);
    const buffer = buffers.get(id);
    if (!buffer) throw new Error(`mock: ${ptr} is not an allocated pointer`);
    return { buffer, byteOffset: ptr - id * SLOT };
  }
  const view = <T>(ptr: number, make: (b: ArrayBuffer, o: number) => T): T => {
    const { buffer, byteOffset } = buf(ptr);
    return make(buffer, byteOffset);
  };
  const f32 = (ptr: number) => view(ptr, (b, o) => new Float32Array(b, o));
  const i32 = (ptr: number) => view(ptr, (b, o) => new Int32Array(b, o));
  const u32 = (ptr: number) => view(ptr, (b, o) => new Uint32Array(b, o));
  const u16 = (ptr: number) => view(ptr, (b, o) => new Uint16Array(b, o));
  const toInt32 = (x: number) => (Number.isFinite(x) ? Math.trunc(x) | 0 : 0);
  const words = (ptr: number, width: number) => (width === 2 ? u16(ptr) : u32(ptr));

  /** Elements of a buffer as values of its storage type t. */
  function elements(ptr: number, t: number): Elements {
    if (t === F32) {
      const a = f32(ptr);
      return { get: (i) => a[i], set: (i, v) => (a[i] = v) };
    }
    if (t === BF16) {
      const a = u16(ptr);
      return { get: (i) => fromBf16Bits(a[i]), set: (i, v) => (a[i] = float32ToBf16Bits(v)) };
    }
    if (t === F16) {
      const a = u16(ptr);
      return { get: (i) => fromF16Bits(a[i]), set: () => { throw new Error('mock: float16 is not a store type'); } };
    }
    if (t !== I32) throw new Error(`mock: unknown storage type ${t}`);
    const a = i32(ptr);
    return { get: (i) => a[i], set: (i, v) => (a[i] = toInt32(v)) };
  }
  const isFloat = (t: number) => t === F32 || t === BF16;

  function gemm(a: Elements, b: Elements, c: Elements, m: number, n: number, k: number, ta: boolean, tb: boolean, oa: number, ob: number, oc: number, post: (j: number, s: number) => number): void {
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a.get(oa + (ta ? p * m + i : i * k + p)) * b.get(ob + (tb ? j * k + p : p * n + j));
        c.set(oc + i * n + j, post(j, s));
      }
  }

  const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

  function attend(q: Elements, k: Elements, v: Elements, o: Elements, B: number, Lq: number, Lk: number, H: number, D: number, Dv: number, scale: number): void {
    const sc = new Float64Array(Lk);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < Lq; i++) {
          let m = -Infinity;
          for (let j = 0; j < Lk; j++) {
            let s = 0;
            for (let d = 0; d < D; d++) s += q.get(((b * Lq + i) * H + h) * D + d) * k.get(((b * Lk + j) * H + h) * D + d);
            sc[j] = s * scale;
            m = Math.max(m, sc[j]);
          }
          let sum = 0;
          for (let j = 0; j < Lk; j++) sum += (sc[j] = Math.exp(sc[j] - m));
          for (let c = 0; c < Dv; c++) {
            let acc = 0;
            for (let j = 0; j < Lk; j++) acc += sc[j] * v.get(((b * Lk + j) * H + h) * Dv + c);
            o.set(((b * Lq + i) * H + h) * Dv + c, acc / sum);
          }
        }
  }

  /** Channels-last direct convolution; `wAt(o, kd, kh, kw, c)` reads the filter in either layout. */
  function convolve(x: Elements, wAt: (o: number, kd: number, kh: number, kw: number, c: number) => number, y: Elements, g: number[]): void {
    const [N, D, H, W, C, KD, KH, KW, O, OD, OH, OW, SD, SH, SW, PD, PH, PW, DD, DH, DW] = g;
    let i = 0;
    for (let n = 0; n < N; n++)
      for (let od = 0; od < OD; od++)
        for (let oh = 0; oh < OH; oh++)
          for (let ow = 0; ow < OW; ow++)
            for (let o = 0; o < O; o++, i++) {
              let s = 0;
              for (let kd = 0; kd < KD; kd++)
                for (let kh = 0; kh < KH; kh++)
                  for (let kw = 0; kw < KW; kw++) {
                    const id = od * SD - PD + kd * DD;
                    const ih = oh * SH - PH + kh * DH;
                    const iw = ow * SW - PW + kw * DW;
                    if (id < 0 || id >= D || ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                    for (let c = 0; c < C; c++) s += x.get((((n * D + id) * H + ih) * W + iw) * C + c) * wAt(o, kd, kh, kw, c);
                  }
              y.set(i, s);
            }
  }

  function rowNorm(x: Elements, y: Elements, rows: number, cols: number, f: (r: number, row: number[]) => number[]): void {
    for (let r = 0; r < rows; r++) {
      const row = Array.from({ length: cols }, (_, j) => x.get(r * cols + j));
      f(r, row).forEach((v, j) => y.set(r * cols + j, v));
    }
  }

  function moments(row: number[], eps: number): [number, number] {
    const m = row.reduce((a, b) => a + b, 0) / row.length;
    const v = row.reduce((a, b) => a + (b - m) ** 2, 0) / row.length;
    return [m, 1 / Math.sqrt(v + eps)];
  }

  const info: DeviceInfo = { name: 'mock', totalMemory: 2 ** 34, multiprocessors: 1, computeCapability: 0, runtimeVersion: 0, driverVersion: 0 };

  const mock: MockNative = {
    unaryOps,
    binaryOps,
    reduceOps,
    cudnn: { available: false, version: 0, library: '', error: 'mock: no cuDNN' },
    attentionPaths,
    capacity: undefined,
    fp8GemmRefusal: '',
    get fp8GemmRuns() {
      return fp8GemmRuns;
    },
    get liveBuffers() {
      return buffers.size;
    },
    get liveHostBuffers() {
      return hostBuffers.size;
    },
    get hostBytes() {
      return hostBytes;
    },
    copied,
    init: () => info,
    alloc(bytes) {
      if (bytes === 0) return 0;
      if (mock.capacity !== undefined && inUse + bytes > mock.capacity) {
        // the addon's message (src/cuda/native/addon.cpp)
        throw new Error(`out of GPU memory: could not allocate ${bytes >> 20} MiB (${inUse >> 20} MiB held by tensors, ${(mock.capacity - inUse) >> 20} MiB free of ${mock.capacity >> 20} MiB): out of memory`);
      }
      const id = nextId++;
      buffers.set(id, new ArrayBuffer(bytes));
      sizes.set(id, bytes);
      inUse += bytes;
      peak = Math.max(peak, inUse);
      return id * SLOT;
    },
    free(ptr) {
      const id = Math.floor(ptr / SLOT);
      // a free is ordered on the compute stream: a copy it has not waited for may still use the buffer
      if (queued.some((c) => c.buffers.includes(id))) throw new Error(`mock: free of ${ptr} while a copy the compute stream did not wait for still uses it`);
      if (!buffers.delete(id)) throw new Error(`mock: double free of ${ptr}`);
      inUse -= sizes.get(id) ?? 0;
      sizes.delete(id);
    },
    upload(ptr, data) {
      new Uint8Array(buf(ptr).buffer, buf(ptr).byteOffset, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    },
    download(ptr, out) {
      new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(new Uint8Array(buf(ptr).buffer, buf(ptr).byteOffset, out.byteLength));
    },
    synchronize() {
      runCopies(Infinity);
    },
    hostAlloc(bytes) {
      if (bytes === 0) return 0;
      const id = nextId++;
      hostBuffers.set(id, new ArrayBuffer(bytes));
      hostBytes += bytes;
      return id * SLOT;
    },
    hostFree(ptr) {
      if (ptr === 0) return;
      runCopies(Infinity);
      const buffer = hostBuffers.get(ptr / SLOT);
      if (!buffer) throw new Error(`mock: hostFree of ${ptr}, not a pinned host buffer`);
      hostBuffers.delete(ptr / SLOT);
      hostBytes -= buffer.byteLength;
    },
    copyAsync(dst, src, bytes, direction) {
      const toHost = direction === 0;
      const [deviceId, hostId] = toHost ? [Math.floor(src / SLOT), dst / SLOT] : [Math.floor(dst / SLOT), src / SLOT];
      if (!buffers.has(deviceId)) throw new Error(`mock: copyAsync: ${toHost ? src : dst} is not a device buffer`);
      const host = hostBuffers.get(hostId);
      if (!host || host.byteLength < bytes) throw new Error(`mock: copyAsync: ${toHost ? dst : src} is not a pinned host buffer of ${bytes} bytes`);
      const id = nextEvent++;
      queued.push({
        id,
        buffers: [deviceId],
        run: () => {
          const device = buf(toHost ? src : dst);
          const d = new Uint8Array(device.buffer, device.byteOffset, bytes);
          const h = new Uint8Array(host, 0, bytes);
          if (toHost) h.set(d);
          else d.set(h);
        },
      });
      if (toHost) copied.deviceToHost += bytes;
      else copied.hostToDevice += bytes;
      return id;
    },
    waitEvent(id) {
      if (!(id >= 1 && id < nextEvent)) throw new Error(`mock: waitEvent: ${id} is not a copy id`);
      runCopies(id);
    },
    eventDone(id) {
      if (!(id >= 1 && id < nextEvent)) throw new Error(`mock: eventDone: ${id} is not a copy id`);
      runCopies(id);
      return true;
    },
    memory: (): DeviceMemory => ({
      inUse,
      peak,
      reserved: inUse,
      deviceFree: (mock.capacity ?? info.totalMemory) - inUse,
      deviceTotal: mock.capacity ?? info.totalMemory,
    }),
    resetPeak() {
      peak = inUse;
    },
    timerStart() {
      timer = performance.now();
    },
    timerStop: () => performance.now() - timer,
    fill(dst, n, bits, width) {
      words(dst, width).fill(bits, 0, n);
    },
    cast(src, dst, n, from, to) {
      const x = elements(src, from);
      const y = elements(dst, to === BOOL ? I32 : to);
      for (let i = 0; i < n; i++) y.set(i, to === BOOL ? Number(x.get(i) !== 0) : x.get(i));
    },
    dequantFp8(src, dst, n, format, scale, tout) {
      if (format !== F8_E4M3 && format !== F8_E5M2) throw new Error(`dequantFp8: format must be F8_E4M3 or F8_E5M2, got type code ${format}`);
      if (!isFloat(tout)) throw new Error(`expected a float32 or bfloat16 buffer, got type code ${tout}`);
      const codes = view(src, (b, o) => new Uint8Array(b, o, n));
      const w = decodeTensorBytes(format === F8_E4M3 ? 'F8_E4M3' : 'F8_E5M2', codes);
      const s = Math.fround(scale);
      const y = elements(dst, tout);
      // the float32 product (one rounding), then the output's rounding
      for (let i = 0; i < n; i++) y.set(i, Math.fround(w[i] * s));
    },
    unary(op, tin, tout, x, y, n, a, b) {
      const f = UNARY[unaryOps[op]];
      const xs = elements(x, tin);
      const ys = elements(y, tout);
      for (let i = 0; i < n; i++) ys.set(i, f(xs.get(i), a, b));
    },
    binary(op, ta, tb, tout, a, b, y, shape, sa, sb) {
      const f = BINARY[binaryOps[op]];
      const as = elements(a, ta);
      const bs = elements(b, tb);
      const ys = elements(y, tout);
      const float = isFloat(ta);
      if (float !== isFloat(tb)) throw new Error('mock: binary mixes int and float operands');
      for (let i = 0; i < size(shape); i++) {
        const [oa, ob] = offsets(shape, [sa, sb], i);
        const r = f(as.get(oa), bs.get(ob), !float);
        ys.set(i, float ? Math.fround(r) : toInt32(r));
      }
    },
    select(c, a, b, y, shape, sc, sa, sb, width) {
      const cs = i32(c);
      const as = words(a, width);
      const bs = words(b, width);
      const ys = words(y, width);
      for (let i = 0; i < size(shape); i++) {
        const [oc, oa, ob] = offsets(shape, [sc, sa, sb], i);
        ys[i] = cs[oc] !== 0 ? as[oa] : bs[ob];
      }
    },
    reduce(op, tin, tout, x, y, outer, inner) {
      const name = reduceOps[op];
      const r = REDUCE[name];
      const xs = elements(x, tin);
      const ys = elements(y, tout);
      for (let o = 0; o < outer; o++) {
        let acc = r.init;
        for (let j = 0; j < inner; j++) acc = r.step(acc, xs.get(o * inner + j));
        ys.set(o, name === 'Mean' ? acc / inner : acc);
      }
    },
    argReduce(op, tin, x, y, outer, inner) {
      const isMax = reduceOps[op] === 'Max';
      const xs = elements(x, tin);
      const ys = i32(y);
      for (let o = 0; o < outer; o++) {
        let best = 0;
        for (let j = 1; j < inner; j++) {
          const v = xs.get(o * inner + j);
          const w = xs.get(o * inner + best);
          if (isMax ? v > w : v < w) best = j;
        }
        ys[o] = best;
      }
    },
    softmax(x, y, rows, cols, log, tin, tout) {
      rowNorm(elements(x, tin), elements(y, tout), rows, cols, (_, row) => {
        const m = Math.max(...row);
        const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
        return row.map((v) => (log ? v - m - Math.log(s) : Math.exp(v - m) / s));
      });
    },
    cumsum(t, x, y, outer, len, inner, exclusive, reverse) {
      const xs = elements(x, t);
      const ys = elements(y, t);
      for (let o = 0; o < outer; o++)
        for (let i = 0; i < inner; i++) {
          let acc = 0;
          for (let s = 0; s < len; s++) {
            const j = reverse ? len - 1 - s : s;
            const at = (o * len + j) * inner + i;
            if (exclusive) {
              ys.set(at, acc);
              acc += xs.get(at);
            } else {
              acc += xs.get(at);
              ys.set(at, acc);
            }
          }
        }
    },
    copyStrided(src, dst, shape, strides, srcOffset, width) {
      const s = words(src, width);
      const d = words(dst, width);
      for (let i = 0; i < size(shape); i++) d[i] = s[srcOffset + offsets(shape, [strides], i)[0]];
    },
    copyBlock(src, dst, rows, cols, srcStride, dstStride, srcOffset, dstOffset, width) {
      const s = words(src, width);
      const d = words(dst, width);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) d[dstOffset + r * dstStride + c] = s[srcOffset + r * srcStride + c];
    },
    pad(src, dst, inShape, outShape, before, mode, bits, width) {
      const s = words(src, width);
      const d = words(dst, width);
      const inStrides = inShape.map((_, i) => size(inShape.slice(i + 1)));
      for (let i = 0; i < size(outShape); i++) {
        let rest = i;
        let off = 0;
        let inside = true;
        for (let k = outShape.length - 1; k >= 0; k--) {
          let c = (rest % outShape[k]) - before[k];
          rest = Math.floor(rest / outShape[k]);
          const len = inShape[k];
          if (c < 0 || c >= len) {
            if (mode === 0) inside = false;
            const shift = mode === 1 ? 0 : 1;
            c = c < 0 ? -c - shift : 2 * (len - 1) - c + shift;
          }
          off += c * inStrides[k];
        }
        d[i] = inside ? s[off] : bits;
      }
    },
    gather(src, idx, dst, batch, outer, numIdx, axisSize, inner, width) {
      const s = words(src, width);
      const ix = i32(idx);
      const d = words(dst, width);
      let i = 0;
      for (let b = 0; b < batch; b++)
        for (let o = 0; o < outer; o++)
          for (let k = 0; k < numIdx; k++)
            for (let j = 0; j < inner; j++, i++) {
              const at = ix[b * numIdx + k];
              d[i] = at >= 0 && at < axisSize ? s[((b * outer + o) * axisSize + at) * inner + j] : 0;
            }
    },
    resizeNearest(src, dst, batch, inH, inW, ch, outH, outW, scaleH, scaleW, alignCorners, halfPixel, width) {
      const s = words(src, width);
      const d = words(dst, width);
      let i = 0;
      const near = (f: number, n: number) => {
        let v = Math.min(n - 1, alignCorners ? Math.round(f) : Math.floor(f));
        if (halfPixel) v = Math.max(0, v);
        return v;
      };
      for (let b = 0; b < batch; b++)
        for (let y = 0; y < outH; y++)
          for (let x = 0; x < outW; x++)
            for (let c = 0; c < ch; c++, i++) {
              const sy = near(halfPixel ? scaleH * (y + 0.5) : scaleH * y, inH);
              const sx = near(halfPixel ? scaleW * (x + 0.5) : scaleW * x, inW);
              d[i] = s[((b * inH + sy) * inW + sx) * ch + c];
            }
    },
    resizeBilinear(src, dst, batch, inH, inW, ch, outH, outW, scaleH, scaleW, halfPixel) {
      const s = f32(src);
      const d = f32(dst);
      let i = 0;
      for (let b = 0; b < batch; b++)
        for (let y = 0; y < outH; y++)
          for (let x = 0; x < outW; x++)
            for (let c = 0; c < ch; c++, i++) {
              const fy = halfPixel ? scaleH * (y + 0.5) - 0.5 : scaleH * y;
              const fx = halfPixel ? scaleW * (x + 0.5) - 0.5 : scaleW * x;
              const y0 = Math.max(0, Math.floor(fy));
              const x0 = Math.max(0, Math.floor(fx));
              const y1 = Math.min(inH - 1, Math.ceil(fy));
              const x1 = Math.min(inW - 1, Math.ceil(fx));
              const at = (yy: number, xx: number) => s[((b * inH + yy) * inW + xx) * ch + c];
              const top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * (fx - x0);
              const bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * (fx - x0);
              d[i] = top + (bottom - top) * (fy - y0);
            }
    },
    rmsNorm(x, w, y, rows, cols, eps, tin, tout, silu) {
      const ws = f32(w);
      rowNorm(elements(x, tin), elements(y, tout), rows, cols, (_, row) => {
        const inv = 1 / Math.sqrt(row.reduce((a, v) => a + v * v, 0) / cols + eps);
        return row.map((v, j) => {
          const n = Math.fround(v * inv * ws[j]);
          return silu ? n / (1 + Math.exp(-n)) : n;
        });
      });
    },
    layerNorm(x, w, b, y, rows, cols, eps, tin, tout) {
      const ws = w ? f32(w) : undefined;
      const bs = b ? f32(b) : undefined;
      rowNorm(elements(x, tin), elements(y, tout), rows, cols, (_, row) => {
        const [m, inv] = moments(row, eps);
        return row.map((v, j) => (v - m) * inv * (ws ? ws[j] : 1) + (bs ? bs[j] : 0));
      });
    },
    layerNormModulate(x, scale, shift, y, rows, cols, eps, rowsPerMod, modCount, tin, tout) {
      const sc = f32(scale);
      const sh = f32(shift);
      rowNorm(elements(x, tin), elements(y, tout), rows, cols, (r, row) => {
        const [m, inv] = moments(row, eps);
        const at = (Math.floor(r / rowsPerMod) % modCount) * cols;
        return row.map((v, j) => Math.fround(Math.fround((v - m) * inv) * Math.fround(sc[at + j] + 1)) + sh[at + j]);
      });
    },
    rope(x, cos, sin, y, rows, L, H, D, tin, tout) {
      const xs = elements(x, tin);
      const ys = elements(y, tout);
      const cs = f32(cos);
      const ss = f32(sin);
      for (let r = 0; r < rows; r++)
        for (let h = 0; h < H; h++)
          for (let j = 0; j < D / 2; j++) {
            const at = (r * H + h) * D + 2 * j;
            const l = r % L;
            const c = cs[l * D + 2 * j];
            const s = ss[l * D + 2 * j + 1];
            const x0 = xs.get(at);
            const x1 = xs.get(at + 1);
            ys.set(at, Math.fround(x0 * c) + Math.fround(x1 * -s));
            ys.set(at + 1, Math.fround(x1 * c) + Math.fround(x0 * s));
          }
    },
    gatedResidual(x, y, gate, out, rows, cols, rowsPerMod, modCount, tx, ty) {
      const xs = elements(x, tx);
      const ys = elements(y, ty);
      const gs = gate ? f32(gate) : undefined;
      const os = elements(out, F32);
      for (let r = 0; r < rows; r++) {
        const at = (Math.floor(r / rowsPerMod) % modCount) * cols;
        for (let j = 0; j < cols; j++) {
          const i = r * cols + j;
          os.set(i, Math.fround(xs.get(i) + (gs ? Math.fround(ys.get(i) * gs[at + j]) : ys.get(i))));
        }
      }
    },
    biasResidual(y, bias, res, out, rows, cols, ty, tb, tr, tout) {
      const ys = elements(y, ty);
      const bs = bias ? elements(bias, tb) : undefined;
      const rs = res ? elements(res, tr) : undefined;
      const os = elements(out, tout);
      for (let i = 0; i < rows * cols; i++) os.set(i, Math.fround(Math.fround(ys.get(i) + (bs ? bs.get(i % cols) : 0)) + (rs ? rs.get(i) : 0)));
    },
    geluTanh(x, y, n, tin, tout) {
      const xs = elements(x, tin);
      const ys = elements(y, tout);
      for (let i = 0; i < n; i++) ys.set(i, gelu(xs.get(i)));
    },
    attention(q, k, v, out, B, Lq, Lk, H, D, Dv, scale) {
      attend(elements(q, F32), elements(k, F32), elements(v, F32), elements(out, F32), B, Lq, Lk, H, D, Dv, scale);
    },
    attentionBf16(q, k, v, out, B, Lq, Lk, H, D, Dv, scale, tout, mode) {
      // "cuDNN" when the mock says it is loaded (bf16 output only), else "flash" for D ∈ {32, 64, 128}, as the addon decides.
      const cudnn = mock.cudnn.available && tout === BF16 && D <= 256 && D % 8 === 0 && mode !== 2;
      if (mode === 1 && !cudnn) throw new Error('attention: cuDNN did not run: mock');
      const flash = [32, 64, 128].includes(D) && D === Dv;
      const path = cudnn ? 1 : flash ? 2 : 0;
      if (path !== 0) attend(elements(q, BF16), elements(k, BF16), elements(v, BF16), elements(out, tout), B, Lq, Lk, H, D, Dv, scale);
      attentionPaths.push(path);
      return path;
    },
    attentionNote: () => (mock.cudnn.available ? '' : mock.cudnn.error),
    matmul(a, b, c, batch, m, n, k, ta, tb, sa, sb, sc, oa, ob, oc, tab, tc, bias, tbias, epilogue) {
      if (tab === F32 && (tc !== F32 || epilogue !== 0)) throw new Error('matmul: float32 operands take a float32 result and no epilogue');
      const as = elements(a, tab);
      const bs = elements(b, tab);
      const cs = elements(c, tc);
      const bv = bias ? elements(bias, tbias) : undefined;
      const post = (j: number, s: number) => {
        let v = (epilogue & 1) && bv ? s + bv.get(j) : s;
        if (epilogue & 2) v = gelu(v);
        return v;
      };
      for (let i = 0; i < batch; i++) gemm(as, bs, cs, m, n, k, ta, tb, oa + i * sa, ob + i * sb, oc + i * sc, post);
    },
    gemmFp8(x, tx, w, wScale, d, m, n, k, bias, epilogue, fastAccum, scratch) {
      // The addon's definition (gemm-fp8.h), its checks first (the device's compute capability is the backend's to check here).
      if (tx !== BF16 && tx !== F32) throw new Error('gemmFp8: x must be bf16 or f32');
      if (((epilogue & 1) === 1) !== (bias !== 0)) throw new Error('gemmFp8: the epilogue and the bias disagree');
      if (mock.fp8GemmRefusal) return mock.fp8GemmRefusal;
      if (m === 0 || n === 0 || k === 0) return 'an empty product (m, n or k is 0)';
      if (k % 16 !== 0 || n % 16 !== 0) return `k = ${k} and n = ${n} must both be multiples of 16 (cuBLASLt's fp8 TN layout)`;
      void fastAccum;
      const xs = elements(x, tx);
      // amax = max|x| (NaN propagates), s_x = amax / 448 in float32 (1 when 0), q_x = e4m3(x / s_x) in float32
      let amax = 0;
      for (let i = 0; i < m * k; i++) amax = Number.isNaN(amax) ? amax : Math.max(amax, Math.abs(xs.get(i)));
      let sx = Math.fround(amax / 448);
      if (sx === 0) sx = 1;
      // the head: amax at byte 0, s_x at byte 16, s_w at byte 32 (gemm-fp8.h: FP8_HEAD_SX, FP8_HEAD_SW)
      const head = view(scratch, (b, o) => new Float32Array(b, o, 9));
      head[0] = amax;
      head[4] = sx;
      head[8] = Math.fround(wScale);
      const qx = view(scratch, (b, o) => new Uint8Array(b, o + FP8_SCRATCH_HEAD, m * k));
      for (let i = 0; i < m * k; i++) qx[i] = encodeE4m3(Math.fround(xs.get(i) / sx));
      const vx = decodeTensorBytes('F8_E4M3', qx);
      const vw = decodeTensorBytes('F8_E4M3', view(w, (b, o) => new Uint8Array(b, o, n * k)));
      const ds = elements(d, BF16);
      const bs = bias ? elements(bias, BF16) : undefined;
      const scale = Math.fround(sx * Math.fround(wScale));
      // products of e4m3 values are exact; the sum in float64 (the device accumulates in float32), then α·s_w·s_x, + bias, GELU, bf16
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let l = 0; l < k; l++) s += vx[i * k + l] * vw[j * k + l];
          let v = scale * s + (bs ? bs.get(j) : 0);
          if (epilogue & 2) v = gelu(v);
          ds.set(i * n + j, v);
        }
      fp8GemmRuns++;
      return '';
    },
    conv(x, w, y, g) {
      const [, , , , C, , KH, KW, O] = g;
      const ws = f32(w);
      convolve(elements(x, F32), (o, kd, kh, kw, c) => ws[(((kd * KH + kh) * KW + kw) * C + c) * O + o], elements(y, F32), g);
    },
    convCudnn(x, w, y, g, type, bias, typeBias, residual) {
      if (!mock.cudnn.available) return mock.cudnn.error;
      const [N, , , , C, KD, KH, KW, O, OD, OH, OW] = g;
      const ws = elements(w, type);
      if (!bias && !residual) {
        convolve(elements(x, type), (o, kd, kh, kw, c) => ws.get((((o * KD + kd) * KH + kh) * KW + kw) * C + c), elements(y, type), g);
        return '';
      }
      // The fp32 convolution, then + bias + residual in fp32, rounded to y's type once (as cuDNN's fused epilogue).
      const rows = N * OD * OH * OW;
      const sum = new Float32Array(rows * O);
      convolve(elements(x, type), (o, kd, kh, kw, c) => ws.get((((o * KD + kd) * KH + kh) * KW + kw) * C + c), { get: (i) => sum[i], set: (i, v) => (sum[i] = v) }, g);
      const bs = bias ? elements(bias, typeBias) : undefined;
      const rs = residual ? elements(residual, type) : undefined;
      const ys = elements(y, type);
      for (let i = 0; i < rows * O; i++) ys.set(i, Math.fround(Math.fround(sum[i] + (bs ? bs.get(i % O) : 0)) + (rs ? rs.get(i) : 0)));
      return '';
    },
    convPlans: () => '',
    cudnnLoad: () => mock.cudnn,
  };
  return mock;
}
