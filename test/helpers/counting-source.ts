import type { HostTensor, TensorInfo, TensorSource } from '../../weights/safetensors.js';

/** A TensorSource that records the distinct host buffers its reads fill or return. */
export class CountingSource implements TensorSource {
  readonly buffers = new Set<ArrayBufferLike>();
  constructor(private readonly inner: TensorSource) {}
  /** Host bytes of the buffers read into, each counted once. */
  get bytes(): number {
    return [...this.buffers].reduce((a, b) => a + b.byteLength, 0);
  }
  get label(): string {
    return this.inner.label;
  }
  keys(): string[] {
    return this.inner.keys();
  }
  has(name: string): boolean {
    return this.inner.has(name);
  }
  info(name: string): TensorInfo & { readonly file: string } {
    return this.inner.info(name);
  }
  read(name: string): HostTensor {
    const t = this.inner.read(name);
    this.buffers.add(t.data.buffer);
    return t;
  }
  readRaw(name: string): Uint8Array {
    const raw = this.inner.readRaw(name);
    this.buffers.add(raw.buffer);
    return raw;
  }
  readRawInto(name: string, dest: Uint8Array, offset?: number): void {
    this.buffers.add(dest.buffer);
    this.inner.readRawInto(name, dest, offset);
  }
  close(): void {
    this.inner.close();
  }
}
