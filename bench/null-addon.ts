// npx tsx bench/null-addon.ts bench/vae-cuda.ts [its args]
// Runs a cuda bench on a machine without a GPU, against an addon that computes nothing: device
// pointers are fake, every kernel returns at once, cuDNN "takes" every attention and convolution.
// What it measures is the host side of backend 'cuda' for that workload: the bytes the backend
// allocates (the bench's peak_gib: the peak held by tensors, exact, cuDNN's workspace excluded), the
// time the JavaScript takes to queue the work (its issue_ms), and the addon calls by function (one
// more JSON line, printed at exit).
import { registerCudaBackendWith } from '../src/cuda/index.js';
import type { CudnnInfo, DeviceMemory, NativeCuda } from '../src/cuda/native.js';
import { createMockNative } from '../test/cuda/mock-native.js';

const mock = createMockNative();
const sizes = new Map<number, number>();
const calls = new Map<string, number>();
let next = 4096;
let inUse = 0;
let peak = 0;
let copies = 0;
/** What the null addon reports as the device's memory (an 80 GiB card; WAN_CUDA_MEMORY_LIMIT caps it as on a GPU). */
const DEVICE_BYTES = 80 * 2 ** 30;

const cudnn: CudnnInfo = { available: true, version: 91900, library: 'null addon', error: '' };
const overrides: Partial<Record<keyof NativeCuda, unknown>> = {
  alloc: (bytes: number) => {
    const p = next;
    next += Math.ceil(bytes / 256) * 256 + 256;
    sizes.set(p, bytes);
    inUse += bytes;
    peak = Math.max(peak, inUse);
    return p;
  },
  free: (p: number) => {
    inUse -= sizes.get(p) ?? 0;
    sizes.delete(p);
  },
  resetPeak: () => {
    peak = inUse;
  },
  memory: (): DeviceMemory => ({ inUse, peak, reserved: 0, deviceFree: DEVICE_BYTES - inUse, deviceTotal: DEVICE_BYTES }),
  // pinned host buffers get fake addresses of their own; copies are events that are always done
  hostAlloc: (bytes: number) => {
    const p = next;
    next += Math.ceil(bytes / 256) * 256 + 256;
    return p;
  },
  copyAsync: () => ++copies,
  eventDone: () => true,
  cudnnLoad: () => cudnn,
  timerStop: () => 0,
  attentionBf16: () => 1,
  attentionNote: () => '',
  convCudnn: () => '',
};

const native = Object.fromEntries(
  Object.entries(mock).map(([name, v]) => {
    if (typeof v !== 'function' || name === 'init') return [name, v];
    const f = (overrides[name as keyof NativeCuda] ?? (() => undefined)) as (...args: unknown[]) => unknown;
    return [name, (...args: unknown[]) => (calls.set(name, (calls.get(name) ?? 0) + 1), f(...args))];
  }),
) as unknown as NativeCuda;
registerCudaBackendWith(native, native.init(), []);

process.on('exit', () => {
  const byFunction = Object.fromEntries([...calls].sort((a, b) => b[1] - a[1]));
  console.log(JSON.stringify({ bench: 'null-addon', addon_calls: byFunction }));
});

const script = process.argv[2];
if (!script) {
  console.error('usage: npx tsx bench/null-addon.ts bench/<cuda bench>.ts [its args]');
  process.exit(2);
}
process.argv.splice(2, 1);
await import(`../${script}`);
