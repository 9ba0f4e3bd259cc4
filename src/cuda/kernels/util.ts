import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../../errors.js';
import { float32ToBf16Bits } from '../../../weights/dtypes.js';
import { CudaBackend, isFp8Storage } from '../backend.js';
import { DeviceType } from '../native.js';

export interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: CudaBackend;
  attrs: tf.NamedAttrMap;
}

export type CudaKernelFunc = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

export interface CudaKernelOptions {
  /**
   * The kernel reads inputs stored as bfloat16 itself. Without it, such inputs are converted to
   * float32 copies before the kernel runs (and freed after), so a kernel written for float32
   * storage is always right.
   */
  bf16?: boolean;
  /**
   * Inputs (by name) that the kernel reads stored as fp8 itself. Any other fp8-stored input (a
   * checkpoint weight kept in fp8) is dequantized into a copy before the kernel runs (freed
   * after): stored as the policy stores parameters (backend.policyStorage) for a kernel that reads
   * bfloat16, so that it sees the weight it would have read had the checkpoint been dequantized up
   * front, and as float32 for the others.
   */
  fp8?: readonly string[];
}

/**
 * A kernel registration for backend 'cuda'. The kernel runs inside the backend's runKernel: an
 * allocation failure names it, and what it made is freed if it throws.
 */
export function cudaKernel(kernelName: string, fn: CudaKernelFunc, options: CudaKernelOptions = {}): tf.KernelConfig {
  const run = ({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: CudaBackend; attrs?: tf.NamedAttrMap }) => {
    // the storage of the copy input `name` needs before the kernel runs, undefined when it reads it as stored
    const copyAs = (name: string, t: tf.TensorInfo | undefined): DeviceType | undefined => {
      if (t === undefined || t.dtype !== 'float32') return undefined;
      const storage = backend.storage(t);
      if (isFp8Storage(storage)) return options.fp8?.includes(name) ? undefined : options.bf16 ? backend.policyStorage() : DeviceType.F32;
      return storage === DeviceType.BF16 && !options.bf16 ? DeviceType.F32 : undefined;
    };
    if (Object.entries(inputs).every(([name, t]) => copyAs(name, t) === undefined)) return fn({ inputs, backend, attrs: attrs ?? {} });
    const temps: tf.TensorInfo[] = [];
    const converted: tf.NamedTensorInfoMap = {};
    for (const [name, t] of Object.entries(inputs)) {
      const storage = copyAs(name, t);
      if (t && storage !== undefined) {
        const c = backend.convert(t, storage);
        temps.push(c);
        converted[name] = c;
      } else if (t) {
        converted[name] = t;
      }
    }
    try {
      return fn({ inputs: converted, backend, attrs: attrs ?? {} });
    } finally {
      for (const t of temps) backend.disposeIntermediate(t);
    }
  };
  return {
    kernelName,
    backendName: 'cuda',
    kernelFunc: ({ inputs, backend, attrs }) => {
      if (!(backend instanceof CudaBackend)) throw new BackendError(`kernel ${kernelName} for 'cuda' ran on another backend`);
      return backend.runKernel(kernelName, () => run({ inputs, backend, attrs }));
    },
  };
}

/** A named input tensor; throws naming the kernel and input when absent. */
export function input(inputs: tf.NamedTensorInfoMap, name: string, kernel: string): tf.TensorInfo {
  const t = inputs[name];
  if (!t) throw new BackendError(`${kernel}: missing input '${name}'`);
  return t;
}

/** The inputs of list kernels (Concat, Pack, AddN), in order. */
export function inputList(inputs: tf.NamedTensorInfoMap): tf.TensorInfo[] {
  return Object.values(inputs).filter((t): t is tf.TensorInfo => t !== undefined);
}

function attr(attrs: tf.NamedAttrMap, name: string, kernel: string): unknown {
  const v: unknown = attrs[name];
  if (v === undefined || v === null) throw new BackendError(`${kernel}: missing attribute '${name}'`);
  return v;
}

export function numAttr(attrs: tf.NamedAttrMap, name: string, kernel: string, fallback?: number): number {
  if (fallback !== undefined && (attrs[name] === undefined || attrs[name] === null)) return fallback;
  const v = attr(attrs, name, kernel);
  if (typeof v !== 'number') throw new BackendError(`${kernel}: attribute '${name}' must be a number, got ${JSON.stringify(v)}`);
  return v;
}

export function boolAttr(attrs: tf.NamedAttrMap, name: string, fallback: boolean): boolean {
  const v: unknown = attrs[name];
  return typeof v === 'boolean' ? v : fallback;
}

export function strAttr(attrs: tf.NamedAttrMap, name: string, fallback?: string): string | undefined {
  const v: unknown = attrs[name];
  return typeof v === 'string' ? v : fallback;
}

/** A number-list attribute; a single number becomes a one-element list. */
export function numsAttr(attrs: tf.NamedAttrMap, name: string, kernel: string): number[] {
  const v = attr(attrs, name, kernel);
  if (typeof v === 'number') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'number')) return v as number[];
  throw new BackendError(`${kernel}: attribute '${name}' must be a list of numbers, got ${JSON.stringify(v)}`);
}

/** A list of [before, after] pairs (paddings). */
export function pairsAttr(attrs: tf.NamedAttrMap, name: string, kernel: string): Array<[number, number]> {
  const v = attr(attrs, name, kernel);
  if (Array.isArray(v) && v.every((p) => Array.isArray(p) && p.length === 2 && p.every((x) => typeof x === 'number'))) {
    return (v as number[][]).map((p) => [p[0], p[1]]);
  }
  throw new BackendError(`${kernel}: attribute '${name}' must be a list of [before, after] pairs, got ${JSON.stringify(v)}`);
}

/** Any attribute, for options passed through to tfjs helpers (numbers, strings, lists). */
export function rawAttr<T>(attrs: tf.NamedAttrMap, name: string, check: (v: unknown) => v is T, fallback: T): T {
  const v: unknown = attrs[name];
  return check(v) ? v : fallback;
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major element strides. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Strides of `shape` read as broadcast to `outShape` (numpy rules, aligned right; 0 on broadcast axes). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const own = stridesOf(shape);
  const off = outShape.length - shape.length;
  return outShape.map((d, i) => {
    const j = i - off;
    if (j < 0 || shape[j] === 1) return 0;
    if (shape[j] !== d) throw new BackendError(`cannot broadcast [${shape}] to [${outShape}]`);
    return own[j];
  });
}

/**
 * Merges dimensions that every view walks contiguously and drops size-1 dimensions, so the
 * kernels do as little index arithmetic as possible. Returns at least one dimension.
 */
export function coalesce(shape: readonly number[], strides: readonly number[][]): { shape: number[]; strides: number[][] } {
  const dims: number[] = [];
  const out: number[][] = strides.map(() => []);
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && strides.every((s, k) => out[k][last] === s[i] * shape[i])) {
      dims[last] *= shape[i];
      strides.forEach((s, k) => (out[k][last] = s[i]));
    } else {
      dims.push(shape[i]);
      strides.forEach((s, k) => out[k].push(s[i]));
    }
  }
  if (dims.length === 0) return { shape: [1], strides: strides.map(() => [0]) };
  return { shape: dims, strides: out };
}

/** The raw 32-bit pattern of a value stored as `dtype` on the device. */
export function bitsOf(value: number, dtype: tf.DataType): number {
  if (dtype === 'float32') return new Uint32Array(new Float32Array([value]).buffer)[0];
  if (dtype === 'bool') return value ? 1 : 0;
  return (value | 0) >>> 0;
}

/** The bit pattern of `value` in a buffer of storage type `storage` (the low 16 bits for bfloat16). */
export function storedBits(value: number, dtype: tf.DataType, storage: DeviceType): number {
  return storage === DeviceType.BF16 ? float32ToBf16Bits(value) : bitsOf(value, dtype);
}

/** A numeric dtype attribute (float32, int32 or bool), undefined when absent or another dtype. */
export function dtypeAttr(attrs: tf.NamedAttrMap, name: string): 'float32' | 'int32' | 'bool' | undefined {
  const v: unknown = attrs[name];
  return v === 'float32' || v === 'int32' || v === 'bool' ? v : undefined;
}
