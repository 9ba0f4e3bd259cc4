import * as tf from '@tensorflow/tfjs-core';
import { BackendError, OutOfMemoryError } from '../errors.js';
import { decodeTensorBytes } from '../../weights/dtypes.js';
import { scaleFp8 } from '../../weights/fp8.js';
import { inFp32Island, type AttentionKernel, type Fp8Format, type Precision, type StoredFormat } from '../kernels/registry.js';
import { CopyDirection, DeviceType, type DeviceInfo, type NativeCuda } from './native.js';
import { memorySizeBytes } from '../memory-size.js';

/** One tensor buffer: device memory for numeric dtypes, host bytes for strings. */
interface DeviceData {
  /** Device address, 0 for an empty buffer, a string tensor, or a buffer offloaded to `host`. */
  ptr: number;
  /**
   * The pinned host copy (`offload`), kept while the buffer is back on the device too: a DataId's
   * bytes never change, so dropping the device copy again needs no copy back.
   */
  host?: number;
  /** The copy (event id) that fills `ptr` from `host`; the compute stream waits for it before the first kernel reads `ptr`. */
  filling?: number;
  /** Elements. */
  size: number;
  dtype: tf.DataType;
  /**
   * How the elements are stored: F32, I32 (int32 and bool), BF16 (a float32 tensor stored in 2
   * bytes), or F8_E4M3 / F8_E5M2 (an fp8 checkpoint weight: 1-byte codes q, the values decode(q) · scale).
   */
  storage: DeviceType;
  /** The per-tensor scale of fp8 storage (float32); absent for the other storage types. */
  scale?: number;
  refCount: number;
  strings?: Uint8Array[];
}

/** The addon's code for each attention kernel choice (attentionBf16's mode). */
export const ATTENTION_MODES: Readonly<Record<AttentionKernel, number>> = { auto: 0, cudnn: 1, flash: 2 };

/**
 * The fp8 Linear GEMM option (WAN_FP8_GEMM, issue 17): 'off' (default) dequantizes an fp8 weight per call
 * into a bf16 scratch buffer for the bf16 GEMM; 'on' ("1") runs a Linear whose weight is stored
 * float8_e4m3fn as a cuBLASLt FP8 GEMM with the activation quantized per tensor on the GPU
 * (src/cuda/kernels/fp8-gemm.ts, src/cuda/native/gemm-fp8.cu), falling back to the dequantize path where it
 * cannot run (`fp8GemmNote` says why); 'fast' ("fast") is 'on' with Hopper's fast fp8 accumulation.
 */
export type Fp8GemmMode = 'off' | 'on' | 'fast';

/** The fp8 GEMM option named by $WAN_FP8_GEMM: unset, "" or "0" off, "1" on, "fast" on with fast accumulation. */
export function fp8GemmFromEnv(env: NodeJS.ProcessEnv = process.env): Fp8GemmMode {
  const v = env.WAN_FP8_GEMM;
  if (v === undefined || v === '' || v === '0') return 'off';
  if (v === '1') return 'on';
  if (v === 'fast') return 'fast';
  throw new BackendError(`WAN_FP8_GEMM must be 0, 1 or fast, got '${v.slice(0, 40)}'`);
}

/** Device element type of a tfjs dtype stored at full width (bool lives as int32 0/1). */
export function deviceType(dtype: tf.DataType): DeviceType {
  if (dtype === 'float32') return DeviceType.F32;
  if (dtype === 'int32' || dtype === 'bool') return DeviceType.I32;
  throw new BackendError(`backend 'cuda' does not support ${dtype} tensors (float32, int32 and bool only)`);
}

/** Whether a storage type holds float8 codes (an fp8 checkpoint weight). */
export function isFp8Storage(storage: DeviceType): boolean {
  return storage === DeviceType.F8_E4M3 || storage === DeviceType.F8_E5M2;
}

/** Bytes per element of a storage type. */
export function widthOf(storage: DeviceType): 1 | 2 | 4 {
  return isFp8Storage(storage) ? 1 : storage === DeviceType.BF16 || storage === DeviceType.F16 ? 2 : 4;
}

/** The storage type of fp8 codes in each format. */
const FP8_STORAGE: Readonly<Record<Fp8Format, DeviceType>> = { e4m3fn: DeviceType.F8_E4M3, e5m2: DeviceType.F8_E5M2 };

/**
 * Bytes of a memory size as `WAN_CUDA_MEMORY_LIMIT` gives it (memorySizeBytes: `24g` = 24 GiB,
 * `512m`, `1.5g`, a number of bytes). Anything else is a BackendError naming `variable`.
 */
export function parseMemorySize(text: string, variable: string): number {
  const bytes = memorySizeBytes(text);
  if (bytes === undefined) throw new BackendError(`${variable} must be a memory size such as 24g, 40g, 512m or a number of bytes, got '${text.slice(0, 40)}'`);
  return bytes;
}

/** A byte count for messages, in MiB or GiB. */
function bytesText(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** The per-tensor scale of an fp8 buffer. */
function fp8Scale(d: DeviceData): number {
  if (d.scale === undefined) throw new BackendError(`an fp8 buffer of ${d.size} elements has no scale`);
  return d.scale;
}

/** bfloat16 bits → float32 values (exact). */
export function bf16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

/**
 * A tfjs KernelBackend whose tensors live in GPU memory, allocated from CUDA's stream-ordered pool
 * through the wan_cuda addon. Kernels (registered separately) queue work on the addon's stream;
 * reads wait for it. `tf.memory()` reports the GPU bytes held by tensors (numBytesInGPU), the
 * pool's reservation and the peak since `resetPeak()`.
 *
 * Precision: every tensor keeps tfjs dtype float32, int32 or bool. Under precision 'bf16' the
 * kernels that the policy names store their float32 results as bfloat16 (`storageOf`), except
 * inside fp32 islands; reads upcast. Under 'fp32' nothing is stored in bfloat16 unless it was
 * uploaded so (`writeStored`). fp8 checkpoint weights stay fp8 under either policy (`writeFp8`):
 * 1 byte an element and a per-tensor scale; a kernel reads a dequantized copy (see `cudaKernel`'s
 * `fp8` option), the Linear GEMM one made for the call and freed right after it.
 *
 * Memory: every device buffer goes through `deviceAlloc`, which counts the bytes this backend holds
 * (`heldBytes`) against `memoryLimit` (WAN_CUDA_MEMORY_LIMIT, to simulate a smaller card). A failed
 * allocation (over the limit, or the addon's "out of GPU memory") is an OutOfMemoryError naming
 * the kernel; the buffers that kernel had made are freed, so nothing leaks.
 *
 * Offloading: `offload` moves buffers to pinned host memory under the same DataId (tensors and
 * tf.Variables keep working), `prefetch` starts their copy back on the addon's copy stream; the
 * compute stream waits for that copy when a kernel first takes the buffer's address (`ptr`). A
 * kernel that reads an offloaded buffer nobody prefetched brings it back then (counted in
 * `offloadStats().demandLoads`) and it stays on the device until offloaded again.
 */
export class CudaBackend extends tf.KernelBackend {
  readonly data: tf.DataStorage<DeviceData>;
  readonly unaryOps: ReadonlyMap<string, number>;
  readonly binaryOps: ReadonlyMap<string, number>;
  readonly reduceOps: ReadonlyMap<string, number>;
  /** The storage policy for float32 results (see the class comment). */
  precision: Precision = 'bf16';
  /** Which bf16 attention kernel may run. */
  attentionKernel: AttentionKernel = 'auto';
  /** Whether a Linear with a float8_e4m3fn weight runs as an fp8 GEMM (WAN_FP8_GEMM, read when the backend is made). */
  fp8Gemm: Fp8GemmMode = fp8GemmFromEnv();
  /** Why the last fp8-weight Linear did not run the fp8 GEMM ("" when it did, or while fp8Gemm is 'off'). */
  fp8GemmNote = '';
  /** Buffers derived from a tensor (a filter in cuDNN's layout), freed with it. */
  private readonly derived = new Map<tf.DataId, Map<string, tf.TensorInfo>>();
  private readonly warned = new Set<string>();
  /** Most device bytes this backend may hold (undefined: what the device has). */
  memoryLimit: number | undefined;
  private held = 0;
  /** The kernels running now (innermost last), for naming one in an OutOfMemoryError. */
  private readonly ops: string[] = [];
  /** The buffers each running kernel has made so far, freed if it throws. */
  private readonly made: tf.DataId[][] = [];
  /** Pinned host bytes held by offloaded buffers' host copies. */
  private hostHeld = 0;
  /** Offloaded buffers brought back by a kernel that read them without a prefetch. */
  private demandLoads = 0;

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

  /** Device bytes held by this backend's buffers (tensors, derived buffers and staging). */
  get heldBytes(): number {
    return this.held;
  }

  /**
   * Runs kernel `op`: an allocation failure inside it names `op`, and if it throws, the buffers it
   * made (outputs and intermediates not yet freed) are freed before the error goes on.
   */
  runKernel<T>(op: string, f: () => T): T {
    const made: tf.DataId[] = [];
    this.ops.push(op);
    this.made.push(made);
    try {
      return f();
    } catch (e) {
      for (const dataId of made) this.disposeData(dataId, true);
      throw e;
    } finally {
      this.ops.pop();
      this.made.pop();
    }
  }

  /** Stores `d` under `dataId`, recorded as made by the running kernel. */
  private keep(dataId: tf.DataId, d: DeviceData): void {
    this.data.set(dataId, d);
    this.made.at(-1)?.push(dataId);
  }

  /** `bytes` of device memory, counted against `memoryLimit`; failing is an OutOfMemoryError. */
  private deviceAlloc(bytes: number): number {
    const op = this.ops.at(-1) ?? 'a tensor upload';
    if (this.memoryLimit !== undefined && this.held + bytes > this.memoryLimit) {
      const free = this.memoryLimit - this.held;
      throw this.outOfMemory(op, bytes, free, `WAN_CUDA_MEMORY_LIMIT is ${bytesText(this.memoryLimit)}: ${bytesText(this.held)} in use, ${bytesText(free)} free`);
    }
    let ptr: number;
    try {
      ptr = this.native.alloc(bytes);
    } catch (e) {
      const message = (e as Error).message;
      if (!message.startsWith('out of GPU memory')) throw e;
      const m = this.native.memory();
      throw this.outOfMemory(op, bytes, m.deviceFree, `${bytesText(m.inUse)} in use, ${bytesText(m.deviceFree)} free of ${bytesText(m.deviceTotal)} (${message})`);
    }
    this.held += bytes;
    return ptr;
  }

  private deviceFree(ptr: number, bytes: number): void {
    this.native.free(ptr);
    this.held -= bytes;
  }

  /** The error for `bytes` that did not fit in kernel `op`, with the options that make a call smaller. */
  private outOfMemory(op: string, bytes: number, free: number, state: string): OutOfMemoryError {
    const fixes = [
      'a smaller width×height or fewer numFrames',
      this.precision === 'fp32' ? "precision: 'bf16' (half the bytes of weights and activations)" : undefined,
      "the VAE's tiled decoding (tileSize, tileOverlap)",
    ].filter((s) => s !== undefined);
    // under fp32 the cheapest fix is the precision; otherwise the size of the call
    const argument = this.precision === 'fp32' ? 'precision' : 'width×height';
    return new OutOfMemoryError(argument, bytes, free, `backend 'cuda': ${op} needs ${bytesText(bytes)} more, which does not fit (${state}); to fit, use ${fixes.join(', or ')}`, {
      op,
      inUseBytes: this.held,
    });
  }

  private allocate(size: number, dtype: tf.DataType, storage: DeviceType, refCount: number): DeviceData {
    if (dtype === 'string') return { ptr: 0, size, dtype, storage: DeviceType.I32, refCount, strings: [] };
    return { ptr: size > 0 ? this.deviceAlloc(size * widthOf(storage)) : 0, size, dtype, storage, refCount };
  }

  private upload(values: tf.BackendValues | null, size: number, dtype: tf.DataType, refCount: number): DeviceData {
    if (dtype === 'string') {
      return { ptr: 0, size, dtype, storage: DeviceType.I32, refCount, strings: (values ?? []) as Uint8Array[] };
    }
    const type = deviceType(dtype);
    const d = this.allocate(size, dtype, type, refCount);
    if (values !== null && size > 0) {
      let host: Float32Array | Int32Array;
      if (type === DeviceType.F32) host = values instanceof Float32Array ? values : Float32Array.from(values as ArrayLike<number>);
      else host = values instanceof Int32Array ? values : Int32Array.from(values as ArrayLike<number>);
      this.native.upload(d.ptr, host);
    }
    return d;
  }

  override write(values: tf.BackendValues | null, shape: number[], dtype: tf.DataType): tf.DataId {
    const dataId = {};
    this.keep(dataId, this.upload(values, tf.util.sizeFromShape(shape), dtype, 1));
    return dataId;
  }

  override move(dataId: tf.DataId, values: tf.BackendValues, shape: number[], dtype: tf.DataType, refCount: number): void {
    this.keep(dataId, this.upload(values, tf.util.sizeFromShape(shape), dtype, refCount));
  }

  /**
   * A float32 tensor from raw 16-bit floats as a checkpoint stores them, with no float32 copy on
   * the host: bfloat16 stays bfloat16 under precision 'bf16'; float16 is converted on the device
   * (to bfloat16 under 'bf16', to float32 under 'fp32'), as is bfloat16 under 'fp32'.
   */
  writeStored(bits: Uint16Array, shape: number[], format: StoredFormat): tf.DataId {
    const size = tf.util.sizeFromShape(shape);
    if (bits.length !== size) throw new BackendError(`writeStored: ${bits.length} values for shape [${shape}] (${size} elements)`);
    const target = this.precision === 'bf16' ? DeviceType.BF16 : DeviceType.F32;
    const source = format === 'bf16' ? DeviceType.BF16 : DeviceType.F16;
    const dataId = {};
    const d = this.allocate(size, 'float32', target, 1);
    if (size > 0) {
      if (source === target) {
        this.native.upload(d.ptr, bits);
      } else {
        let staging: number;
        try {
          staging = this.deviceAlloc(size * 2);
        } catch (e) {
          this.deviceFree(d.ptr, size * widthOf(target));
          throw e;
        }
        try {
          this.native.upload(staging, bits);
          this.native.cast(staging, d.ptr, size, source, target);
        } finally {
          this.deviceFree(staging, size * 2);
        }
      }
    }
    this.keep(dataId, d);
    return dataId;
  }

  /** Whether fp8 codes can stay fp8 here: the addon has the dequantization kernel (an addon built before it has not). */
  get keepsFp8(): boolean {
    return typeof (this.native as Partial<NativeCuda>).dequantFp8 === 'function';
  }

  /** Whether the addon has the fp8 GEMM (an addon built before it has not). */
  get hasFp8Gemm(): boolean {
    return typeof (this.native as Partial<NativeCuda>).gemmFp8 === 'function';
  }

  /** The per-tensor scale s of an fp8-stored tensor (w = decode(q) · s). */
  fp8ScaleOf(t: tf.TensorInfo): number {
    return fp8Scale(this.data.get(t.dataId));
  }

  /**
   * A float32 tensor of value decode(q) · scale held as its float8 codes q (1 byte an element) and
   * the per-tensor float32 scale, under either precision policy: reads (`dataSync`) dequantize on
   * the host, kernels read a dequantized copy.
   */
  writeFp8(codes: Uint8Array, shape: number[], format: Fp8Format, scale: number): tf.DataId {
    const size = tf.util.sizeFromShape(shape);
    if (codes.length !== size) throw new BackendError(`writeFp8: ${codes.length} codes for shape [${shape}] (${size} elements)`);
    if (!Number.isFinite(scale)) throw new BackendError(`writeFp8: the scale of a [${shape}] weight is ${scale}`);
    if (!this.keepsFp8) throw new BackendError(`writeFp8: the addon has no dequantFp8 (built before fp8 storage): rebuild it with \`npm run build:cuda\``);
    const d: DeviceData = { ...this.allocate(size, 'float32', FP8_STORAGE[format], 1), scale: Math.fround(scale) };
    if (size > 0) this.native.upload(d.ptr, codes);
    const dataId = {};
    this.keep(dataId, d);
    return dataId;
  }

  /** A fresh, uninitialised output buffer (float32 results stored as `storage`, F32 by default). */
  makeOutput(shape: number[], dtype: tf.DataType, storage: DeviceType = deviceType(dtype)): tf.TensorInfo {
    const dataId = {};
    const type = dtype === 'float32' ? storage : deviceType(dtype);
    this.keep(dataId, this.allocate(tf.util.sizeFromShape(shape), dtype, type, 1));
    return { dataId, shape, dtype };
  }

  /** An output holding `values` (uploaded from the host). */
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: tf.BackendValues): tf.TensorInfo {
    return { dataId: this.write(values, shape, dtype), shape, dtype };
  }

  /**
   * The device address of a tensor's buffer (moving it here from another backend if needed), for a
   * kernel about to read or write it: an offloaded buffer is brought back first (a demand load), and
   * the compute stream waits for the copy that fills a prefetched one.
   */
  ptr(t: tf.TensorInfo): number {
    return this.resident(this.data.get(t.dataId));
  }

  /** d's device address, d on the device and its filling copy waited for (see `ptr`). */
  private resident(d: DeviceData): number {
    if (d.ptr === 0 && d.host !== undefined) {
      this.demandLoads++;
      this.fill(d);
    }
    if (d.filling !== undefined) {
      this.native.waitEvent(d.filling);
      d.filling = undefined;
    }
    return d.ptr;
  }

  /** Allocates d's device buffer and queues its copy from the host copy on the copy stream (d.filling). */
  private fill(d: DeviceData): void {
    const bytes = d.size * widthOf(d.storage);
    d.ptr = this.deviceAlloc(bytes);
    d.filling = this.native.copyAsync(d.ptr, d.host ?? 0, bytes, CopyDirection.HOST_TO_DEVICE);
  }

  /** Frees d's device buffer (stream-ordered: after the kernels queued so far and, first, the copy filling it). */
  private dropDevice(d: DeviceData): void {
    if (d.ptr === 0) return;
    if (d.filling !== undefined) this.native.waitEvent(d.filling);
    d.filling = undefined;
    this.deviceFree(d.ptr, d.size * widthOf(d.storage));
    d.ptr = 0;
  }

  /**
   * Moves the buffers of `dataIds` to pinned host memory, keeping their DataIds, storage (F32, BF16,
   * fp8 with its scale) and contents: a device → host copy on the copy stream the first time (after
   * the kernels queued so far), then the device memory is freed once that copy is done
   * (stream-ordered, the host does not wait); a buffer whose host copy exists already (offloaded
   * before, then prefetched) just frees its device copy. Buffers derived from one (a filter in
   * cuDNN's layout) are freed and made again when next needed. Empty buffers, strings and buffers
   * offloaded already are left as they are. Returns the device bytes freed.
   */
  offload(dataIds: Iterable<tf.DataId>): number {
    let freed = 0;
    for (const dataId of dataIds) {
      const d = this.data.has(dataId) ? this.data.get(dataId) : undefined;
      if (d === undefined || d.ptr === 0) continue;
      const bytes = d.size * widthOf(d.storage);
      if (d.host === undefined) {
        const host = this.hostAlloc(bytes);
        // the compute stream frees the device buffer after the copy has read it
        this.native.waitEvent(this.native.copyAsync(host, this.resident(d), bytes, CopyDirection.DEVICE_TO_HOST));
        d.host = host;
        this.hostHeld += bytes;
      }
      this.dropDerived(dataId);
      this.dropDevice(d);
      freed += bytes;
    }
    return freed;
  }

  /**
   * Starts bringing the offloaded buffers of `dataIds` back to the device: allocates each (an
   * OutOfMemoryError names "prefetch" and leaves those it could not bring back offloaded) and queues
   * its host → device copy on the copy stream, overlapping the kernels queued meanwhile; the first
   * kernel that reads one waits for its copy. Buffers on the device already are left as they are.
   */
  prefetch(dataIds: Iterable<tf.DataId>): void {
    this.ops.push('prefetch');
    try {
      for (const dataId of dataIds) {
        const d = this.data.has(dataId) ? this.data.get(dataId) : undefined;
        if (d !== undefined && d.ptr === 0 && d.host !== undefined) this.fill(d);
      }
    } finally {
      this.ops.pop();
    }
  }

  /** Whether a tensor's buffer is in pinned host memory only (offloaded and not brought back). */
  isOffloaded(dataId: tf.DataId): boolean {
    const d = this.data.has(dataId) ? this.data.get(dataId) : undefined;
    return d !== undefined && d.ptr === 0 && d.host !== undefined;
  }

  /** Bytes the buffers of `dataIds` take on the device when there (elements × stored width). */
  bytesOf(dataIds: Iterable<tf.DataId>): number {
    let bytes = 0;
    for (const dataId of dataIds) {
      const d = this.data.has(dataId) ? this.data.get(dataId) : undefined;
      if (d !== undefined && d.dtype !== 'string') bytes += d.size * widthOf(d.storage);
    }
    return bytes;
  }

  /** Pinned host bytes held by host copies of offloaded buffers, and how many buffers kernels brought back unprefetched. */
  offloadStats(): { hostBytes: number; demandLoads: number } {
    return { hostBytes: this.hostHeld, demandLoads: this.demandLoads };
  }

  /**
   * Device bytes a call may still take: the device's free memory plus what the pool holds unused
   * (or, under `memoryLimit`, what is left of it, whichever is less).
   */
  freeDeviceBytes(): number {
    const m = this.native.memory();
    const device = m.deviceFree + Math.max(0, m.reserved - m.inUse);
    return this.memoryLimit === undefined ? device : Math.min(device, Math.max(0, this.memoryLimit - this.held));
  }

  /** `bytes` of pinned host memory; the addon refusing them is an OutOfMemoryError naming the host's memory. */
  private hostAlloc(bytes: number): number {
    try {
      return this.native.hostAlloc(bytes);
    } catch (e) {
      const message = (e as Error).message;
      if (!message.startsWith('out of pinned host memory')) throw e;
      throw new OutOfMemoryError('offload', bytes, 0, `backend 'cuda': offloading ${bytesText(bytes)} to pinned host memory failed (${message}, ${bytesText(this.hostHeld)} offloaded already); to fit, offload fewer blocks (offloadBlocks), or use residency 'active' (the idle expert freed and read from disk again)`, {
        op: 'offload',
        inUseBytes: this.held,
      });
    }
  }

  /** Frees the buffers derived from `dataId` (made again when next needed). */
  private dropDerived(dataId: tf.DataId): void {
    const derived = this.derived.get(dataId);
    if (!derived) return;
    this.derived.delete(dataId);
    for (const t of derived.values()) this.disposeData(t.dataId, true);
  }

  /** How a tensor's elements are stored (F32, I32, BF16, or F8_E4M3 / F8_E5M2 for an fp8 weight). */
  storage(t: tf.TensorInfo): DeviceType {
    return this.data.get(t.dataId).storage;
  }

  /** Bytes per element of a tensor's buffer. */
  width(t: tf.TensorInfo): 1 | 2 | 4 {
    return widthOf(this.storage(t));
  }

  /** Whether float32 results of the bf16 kernels (matmul, attention, convolution, norms) are stored as bfloat16 here and now. */
  bf16Mode(): boolean {
    return this.precision === 'bf16' && !inFp32Island();
  }

  /** Storage of a float32 result that the policy stores in bf16 (matmul, attention, conv, norms). */
  producedStorage(): DeviceType {
    return this.bf16Mode() ? DeviceType.BF16 : DeviceType.F32;
  }

  /**
   * Storage of a float32 parameter under the precision policy (WanStoreAs 'policy'): BF16 under
   * precision 'bf16', F32 under 'fp32'. The dequantized copy of an fp8 weight that a bf16-reading
   * kernel gets is stored so: the weight it would read had the checkpoint been dequantized up front.
   */
  policyStorage(): DeviceType {
    return this.precision === 'bf16' ? DeviceType.BF16 : DeviceType.F32;
  }

  /** Storage of an elementwise float32 result: bf16 when the policy allows it and every float input is bf16. */
  followStorage(inputs: readonly tf.TensorInfo[]): DeviceType {
    const floats = inputs.filter((t) => t.dtype === 'float32');
    return this.bf16Mode() && floats.length > 0 && floats.every((t) => this.storage(t) === DeviceType.BF16) ? DeviceType.BF16 : DeviceType.F32;
  }

  /**
   * x stored as `storage` (x itself with one more reference when it already is; else a converted
   * copy). An fp8 x converts to F32 or BF16: w = decode(q) · scale in float32, rounded once more
   * for BF16 (the dequantization kernel).
   */
  convert(x: tf.TensorInfo, storage: DeviceType): tf.TensorInfo {
    const d = this.data.get(x.dataId);
    if (x.dtype !== 'float32' || d.storage === storage) {
      this.incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    }
    if (isFp8Storage(storage)) throw new BackendError(`convert: a [${x.shape}] tensor cannot be stored as fp8 (fp8 comes only from a checkpoint)`);
    const out = this.makeOutput(x.shape, 'float32', storage);
    const n = tf.util.sizeFromShape(x.shape);
    if (n > 0 && isFp8Storage(d.storage)) this.native.dequantFp8(this.resident(d), this.ptr(out), n, d.storage, fp8Scale(d), storage);
    else if (n > 0) this.native.cast(this.resident(d), this.ptr(out), n, d.storage, storage);
    return out;
  }

  /**
   * A buffer derived from tensor `x` under `key` (built by `make` once, freed when x's buffer is
   * freed): e.g. a convolution filter in cuDNN's layout.
   */
  derivedOf(x: tf.TensorInfo, key: string, make: () => tf.TensorInfo): tf.TensorInfo {
    let byKey = this.derived.get(x.dataId);
    if (!byKey) this.derived.set(x.dataId, (byKey = new Map()));
    let t = byKey.get(key);
    if (!t) {
      t = make();
      byKey.set(key, t);
      // owned by x from now on: not freed with a kernel that fails later
      const made = this.made.at(-1);
      const i = made?.indexOf(t.dataId) ?? -1;
      if (i >= 0) made?.splice(i, 1);
    }
    return t;
  }

  /** Prints `message` on stderr the first time `key` is seen. */
  warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    console.warn(`wan-tfjs: backend 'cuda': ${message}`);
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
    if (d.ptr === 0 && d.host !== undefined) {
      // an offloaded buffer is read through a device copy made for the read, then dropped again
      this.fill(d);
      try {
        return this.download(d);
      } finally {
        this.dropDevice(d);
      }
    }
    return this.download(d);
  }

  /** d's values, read back from the device. */
  private download(d: DeviceData): tf.BackendValues {
    this.resident(d);
    if (isFp8Storage(d.storage)) {
      // w = decode(q) · s on the host, as the loader dequantizes a checkpoint on a backend without fp8
      const codes = new Uint8Array(d.size);
      if (d.size > 0) this.native.download(d.ptr, codes);
      return scaleFp8(decodeTensorBytes(d.storage === DeviceType.F8_E4M3 ? 'F8_E4M3' : 'F8_E5M2', codes) as Float32Array, fp8Scale(d));
    }
    if (d.storage === DeviceType.BF16) {
      const bits = new Uint16Array(d.size);
      if (d.size > 0) this.native.download(d.ptr, bits);
      return bf16ToFloat32(bits);
    }
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
    this.dropDevice(d);
    if (d.host !== undefined) {
      this.native.hostFree(d.host);
      this.hostHeld -= d.size * widthOf(d.storage);
    }
    this.data.delete(dataId);
    this.dropDerived(dataId);
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
