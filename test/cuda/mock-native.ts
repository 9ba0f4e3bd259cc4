/**
 * A host-memory stand-in for the wan_cuda addon with the same functions and semantics, written
 * plainly. It lets the op suite exercise the TypeScript half of backend 'cuda' (shape logic,
 * strides, dtype handling, attribute parsing) on a machine without a GPU:
 *   WAN_CUDA_MOCK=1 npx vitest run --config vitest.cuda.config.ts test/cuda/ops.cuda.ts
 */
import type { DeviceInfo, DeviceMemory, NativeCuda } from '../../src/cuda/native.js';

const SLOT = 2 ** 32;
const F32 = 0;

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

  function buf(ptr: number): { buffer: ArrayBuffer; byteOffset: number } {
    const id = Math.floor(ptr / SLOT);
    const buffer = buffers.get(id);
    if (!buffer) throw new Error(`mock: ${ptr} is not an allocated pointer`);
    return { buffer, byteOffset: ptr - id * SLOT };
  }
  const f32 = (ptr: number) => {
    const { buffer, byteOffset } = buf(ptr);
    return new Float32Array(buffer, byteOffset);
  };
  const i32 = (ptr: number) => {
    const { buffer, byteOffset } = buf(ptr);
    return new Int32Array(buffer, byteOffset);
  };
  const u32 = (ptr: number) => {
    const { buffer, byteOffset } = buf(ptr);
    return new Uint32Array(buffer, byteOffset);
  };
  const typed = (ptr: number, t: number) => (t === F32 ? f32(ptr) : i32(ptr));
  const toInt32 = (x: number) => (Number.isFinite(x) ? Math.trunc(x) | 0 : 0);
  const store = (t: number) => (t === F32 ? Math.fround : toInt32);

  function gemm(a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number, ta: boolean, tb: boolean, oa: number, ob: number, oc: number): void {
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a[oa + (ta ? p * m + i : i * k + p)] * b[ob + (tb ? j * k + p : p * n + j)];
        c[oc + i * n + j] = s;
      }
  }

  const info: DeviceInfo = { name: 'mock', totalMemory: 2 ** 34, multiprocessors: 1, computeCapability: 0, runtimeVersion: 0, driverVersion: 0 };

  return {
    unaryOps,
    binaryOps,
    reduceOps,
    get liveBuffers() {
      return buffers.size;
    },
    init: () => info,
    alloc(bytes) {
      if (bytes === 0) return 0;
      const id = nextId++;
      buffers.set(id, new ArrayBuffer(bytes));
      sizes.set(id, bytes);
      inUse += bytes;
      peak = Math.max(peak, inUse);
      return id * SLOT;
    },
    free(ptr) {
      const id = Math.floor(ptr / SLOT);
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
    synchronize() {},
    memory: (): DeviceMemory => ({ inUse, peak, reserved: inUse, deviceFree: 0, deviceTotal: info.totalMemory }),
    resetPeak() {
      peak = inUse;
    },
    timerStart() {
      timer = performance.now();
    },
    timerStop: () => performance.now() - timer,
    fill(dst, n, bits) {
      u32(dst).fill(bits, 0, n);
    },
    cast(src, dst, n, from, to) {
      const x = typed(src, from);
      const y = to === F32 ? f32(dst) : i32(dst);
      for (let i = 0; i < n; i++) y[i] = to === 2 ? Number(x[i] !== 0) : to === F32 ? x[i] : toInt32(x[i]);
    },
    unary(op, tin, tout, x, y, n, a, b) {
      const f = UNARY[unaryOps[op]];
      const xs = typed(x, tin);
      const ys = typed(y, tout);
      for (let i = 0; i < n; i++) ys[i] = f(xs[i], a, b);
    },
    binary(op, tin, tout, a, b, y, shape, sa, sb) {
      const f = BINARY[binaryOps[op]];
      const as = typed(a, tin);
      const bs = typed(b, tin);
      const ys = typed(y, tout);
      const cast = store(tin);
      for (let i = 0; i < size(shape); i++) {
        const [oa, ob] = offsets(shape, [sa, sb], i);
        ys[i] = cast(f(as[oa], bs[ob], tin !== F32));
      }
    },
    select(c, a, b, y, shape, sc, sa, sb) {
      const cs = i32(c);
      const as = u32(a);
      const bs = u32(b);
      const ys = u32(y);
      for (let i = 0; i < size(shape); i++) {
        const [oc, oa, ob] = offsets(shape, [sc, sa, sb], i);
        ys[i] = cs[oc] !== 0 ? as[oa] : bs[ob];
      }
    },
    reduce(op, tin, tout, x, y, outer, inner) {
      const name = reduceOps[op];
      const r = REDUCE[name];
      const xs = typed(x, tin);
      const ys = typed(y, tout);
      for (let o = 0; o < outer; o++) {
        let acc = r.init;
        for (let j = 0; j < inner; j++) acc = r.step(acc, xs[o * inner + j]);
        ys[o] = name === 'Mean' ? acc / inner : acc;
      }
    },
    argReduce(op, tin, x, y, outer, inner) {
      const isMax = reduceOps[op] === 'Max';
      const xs = typed(x, tin);
      const ys = i32(y);
      for (let o = 0; o < outer; o++) {
        let best = 0;
        for (let j = 1; j < inner; j++) {
          const v = xs[o * inner + j];
          const w = xs[o * inner + best];
          if (isMax ? v > w : v < w) best = j;
        }
        ys[o] = best;
      }
    },
    softmax(x, y, rows, cols, log) {
      const xs = f32(x);
      const ys = f32(y);
      for (let r = 0; r < rows; r++) {
        let m = -Infinity;
        for (let j = 0; j < cols; j++) m = Math.max(m, xs[r * cols + j]);
        let s = 0;
        for (let j = 0; j < cols; j++) s += Math.exp(xs[r * cols + j] - m);
        for (let j = 0; j < cols; j++) ys[r * cols + j] = log ? xs[r * cols + j] - m - Math.log(s) : Math.exp(xs[r * cols + j] - m) / s;
      }
    },
    cumsum(t, x, y, outer, len, inner, exclusive, reverse) {
      const xs = typed(x, t);
      const ys = typed(y, t);
      for (let o = 0; o < outer; o++)
        for (let i = 0; i < inner; i++) {
          let acc = 0;
          for (let s = 0; s < len; s++) {
            const j = reverse ? len - 1 - s : s;
            const at = (o * len + j) * inner + i;
            if (exclusive) {
              ys[at] = acc;
              acc += xs[at];
            } else {
              acc += xs[at];
              ys[at] = acc;
            }
          }
        }
    },
    copyStrided(src, dst, shape, strides, srcOffset) {
      const s = u32(src);
      const d = u32(dst);
      for (let i = 0; i < size(shape); i++) d[i] = s[srcOffset + offsets(shape, [strides], i)[0]];
    },
    copyBlock(src, dst, rows, cols, srcStride, dstStride, srcOffset, dstOffset) {
      const s = u32(src);
      const d = u32(dst);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) d[dstOffset + r * dstStride + c] = s[srcOffset + r * srcStride + c];
    },
    pad(src, dst, inShape, outShape, before, mode, bits) {
      const s = u32(src);
      const d = u32(dst);
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
    gather(src, idx, dst, batch, outer, numIdx, axisSize, inner) {
      const s = u32(src);
      const ix = i32(idx);
      const d = u32(dst);
      let i = 0;
      for (let b = 0; b < batch; b++)
        for (let o = 0; o < outer; o++)
          for (let k = 0; k < numIdx; k++)
            for (let j = 0; j < inner; j++, i++) {
              const at = ix[b * numIdx + k];
              d[i] = at >= 0 && at < axisSize ? s[((b * outer + o) * axisSize + at) * inner + j] : 0;
            }
    },
    resizeNearest(src, dst, batch, inH, inW, ch, outH, outW, scaleH, scaleW, alignCorners, halfPixel) {
      const s = u32(src);
      const d = u32(dst);
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
    rmsNorm(x, w, y, rows, cols, eps) {
      const xs = f32(x);
      const ws = f32(w);
      const ys = f32(y);
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let j = 0; j < cols; j++) s += xs[r * cols + j] ** 2;
        const inv = 1 / Math.sqrt(s / cols + eps);
        for (let j = 0; j < cols; j++) ys[r * cols + j] = xs[r * cols + j] * inv * ws[j];
      }
    },
    layerNorm(x, w, b, y, rows, cols, eps) {
      const xs = f32(x);
      const ws = w ? f32(w) : undefined;
      const bs = b ? f32(b) : undefined;
      const ys = f32(y);
      for (let r = 0; r < rows; r++) {
        let m = 0;
        for (let j = 0; j < cols; j++) m += xs[r * cols + j];
        m /= cols;
        let v = 0;
        for (let j = 0; j < cols; j++) v += (xs[r * cols + j] - m) ** 2;
        const inv = 1 / Math.sqrt(v / cols + eps);
        for (let j = 0; j < cols; j++) ys[r * cols + j] = (xs[r * cols + j] - m) * inv * (ws ? ws[j] : 1) + (bs ? bs[j] : 0);
      }
    },
    geluTanh(x, y, n) {
      const xs = f32(x);
      const ys = f32(y);
      for (let i = 0; i < n; i++) {
        const v = xs[i];
        ys[i] = 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
      }
    },
    attention(q, k, v, out, B, Lq, Lk, H, D, Dv, scale) {
      const qs = f32(q);
      const ks = f32(k);
      const vs = f32(v);
      const os = f32(out);
      const sc = new Float64Array(Lk);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++)
          for (let i = 0; i < Lq; i++) {
            let m = -Infinity;
            for (let j = 0; j < Lk; j++) {
              let s = 0;
              for (let d = 0; d < D; d++) s += qs[((b * Lq + i) * H + h) * D + d] * ks[((b * Lk + j) * H + h) * D + d];
              sc[j] = s * scale;
              m = Math.max(m, sc[j]);
            }
            let sum = 0;
            for (let j = 0; j < Lk; j++) sum += (sc[j] = Math.exp(sc[j] - m));
            for (let c = 0; c < Dv; c++) {
              let acc = 0;
              for (let j = 0; j < Lk; j++) acc += sc[j] * vs[((b * Lk + j) * H + h) * Dv + c];
              os[((b * Lq + i) * H + h) * Dv + c] = acc / sum;
            }
          }
    },
    matmul(a, b, c, batch, m, n, k, ta, tb, sa, sb, sc, oa, ob, oc) {
      const as = f32(a);
      const bs = f32(b);
      const cs = f32(c);
      for (let i = 0; i < batch; i++) gemm(as, bs, cs, m, n, k, ta, tb, oa + i * sa, ob + i * sb, oc + i * sc);
    },
    conv(x, w, y, g) {
      const [N, D, H, W, C, KD, KH, KW, O, OD, OH, OW, SD, SH, SW, PD, PH, PW, DD, DH, DW] = g;
      const xs = f32(x);
      const ws = f32(w);
      const ys = f32(y);
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
                      for (let c = 0; c < C; c++) s += xs[(((n * D + id) * H + ih) * W + iw) * C + c] * ws[(((kd * KH + kh) * KW + kw) * C + c) * O + o];
                    }
                ys[i] = s;
              }
    },
  };
}
