import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../errors.js';
import { DeviceType, type DeviceInfo, type NativeCuda } from './native.js';

/** One tensor buffer: device memory for numeric dtypes, host bytes for strings. */
interface DeviceData {
  /** Device address, 0 for an empty buffer or a string tensor. */
  ptr: number;
  /** Elements (4 bytes each on the device). */
  size: number;
  dtype: tf.DataType;
  refCount: number;
  strings?: Uint8Array[];
}

/** Device element type of a tfjs dtype (bool lives as int32 0/1). */
export function deviceType(dtype: tf.DataType): DeviceType {
  if (dtype === 'float32') return DeviceType.F32;
  if (dtype === 'int32' || dtype === 'bool') return DeviceType.I32;
  throw new BackendError(`backend 'cuda' does not support ${dtype} tensors (float32, int32 and bool only)`);
}

/**
 * A tfjs KernelBackend whose tensors live in GPU memory, allocated from CUDA's stream-ordered pool
 * through the wan_cuda addon. Kernels (registered separately) queue work on the addon's stream;
 * reads wait for it. `tf.memory()` reports the GPU bytes held by tensors (numBytesInGPU), the
 * pool's reservation and the peak since `resetPeak()`.
 */
export class CudaBackend extends tf.KernelBackend {
  readonly data: tf.DataStorage<DeviceData>;
  readonly unaryOps: ReadonlyMap<string, number>;
  readonly binaryOps: ReadonlyMap<string, number>;
  readonly reduceOps: ReadonlyMap<string, number>;

  constructor(
    readonly native: NativeCuda,
    readonly device: DeviceInfo,
  ) {
    super();
    this.data = new tf.DataStorage(this, tf.engine());
    const index = (names: readonly string[]) => new Map(names.map((n, i) => [n, i]));
    this.unaryOps = index(native.unaryOps);
    this.binaryOps = index(native.binaryOps);
    this.reduceOps = index(native.reduceOps);
  }

  private upload(values: tf.BackendValues | null, size: number, dtype: tf.DataType, refCount: number): DeviceData {
    if (dtype === 'string') {
      return { ptr: 0, size, dtype, refCount, strings: (values ?? []) as Uint8Array[] };
    }
    const type = deviceType(dtype);
    const ptr = this.native.alloc(size * 4);
    if (values !== null && size > 0) {
      let host: Float32Array | Int32Array;
      if (type === DeviceType.F32) host = values instanceof Float32Array ? values : Float32Array.from(values as ArrayLike<number>);
      else host = values instanceof Int32Array ? values : Int32Array.from(values as ArrayLike<number>);
      this.native.upload(ptr, host);
    }
    return { ptr, size, dtype, refCount };
  }

  override write(values: tf.BackendValues | null, shape: number[], dtype: tf.DataType): tf.DataId {
    const dataId = {};
    this.data.set(dataId, this.upload(values, tf.util.sizeFromShape(shape), dtype, 1));
    return dataId;
  }

  override move(dataId: tf.DataId, values: tf.BackendValues, shape: number[], dtype: tf.DataType, refCount: number): void {
    this.data.set(dataId, this.upload(values, tf.util.sizeFromShape(shape), dtype, refCount));
  }

  /** A fresh, uninitialised output buffer. */
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo {
    return { dataId: this.write(null, shape, dtype), shape, dtype };
  }

  /** An output holding `values` (uploaded from the host). */
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: tf.BackendValues): tf.TensorInfo {
    return { dataId: this.write(values, shape, dtype), shape, dtype };
  }

  /** The device address of a tensor's buffer (moving it here from another backend if needed). */
  ptr(t: tf.TensorInfo): number {
    return this.data.get(t.dataId).ptr;
  }

  /** Releases a kernel's intermediate buffer. */
  disposeIntermediate(t: tf.TensorInfo): void {
    this.disposeData(t.dataId);
  }

  override refCount(dataId: tf.DataId): number {
    return this.data.has(dataId) ? this.data.get(dataId).refCount : 0;
  }

  override incRef(dataId: tf.DataId): void {
    this.data.get(dataId).refCount++;
  }

  override numDataIds(): number {
    return this.data.numDataIds();
  }

  override readSync(dataId: tf.DataId): tf.BackendValues {
    const d = this.data.get(dataId);
    if (d.dtype === 'string') return d.strings ?? [];
    if (d.dtype === 'float32') {
      const out = new Float32Array(d.size);
      if (d.size > 0) this.native.download(d.ptr, out);
      return out;
    }
    const out = new Int32Array(d.size);
    if (d.size > 0) this.native.download(d.ptr, out);
    return d.dtype === 'bool' ? Uint8Array.from(out) : out;
  }

  override async read(dataId: tf.DataId): Promise<tf.BackendValues> {
    return this.readSync(dataId);
  }

  override disposeData(dataId: tf.DataId, force = false): boolean {
    if (!this.data.has(dataId)) return true;
    const d = this.data.get(dataId);
    d.refCount--;
    if (!force && d.refCount > 0) return false;
    if (d.ptr !== 0) this.native.free(d.ptr);
    this.data.delete(dataId);
    return true;
  }

  override memory(): { unreliable: boolean; numBytesInGPU: number; numBytesInGPUAllocated: number; peakBytesInGPU: number } {
    const m = this.native.memory();
    return { unreliable: false, numBytesInGPU: m.inUse, numBytesInGPUAllocated: m.reserved, peakBytesInGPU: m.peak };
  }

  /** Starts a new peak-memory window (peakBytesInGPU restarts from what is held now). */
  resetPeak(): void {
    this.native.resetPeak();
  }

  /** Waits for all queued GPU work. */
  synchronize(): void {
    this.native.synchronize();
  }

  override timerAvailable(): boolean {
    return true;
  }

  override async time(f: () => void): Promise<tf.BackendTimingInfo> {
    this.native.timerStart();
    f();
    return { kernelMs: this.native.timerStop() };
  }

  override floatPrecision(): 16 | 32 {
    return 32;
  }

  override epsilon(): number {
    return super.epsilon();
  }

  override dispose(): void {
    this.native.synchronize();
  }
}
