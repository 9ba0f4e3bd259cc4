import * as fs from 'node:fs';

/** One tensor of a header-only file: its name, shape and stored dtype. */
export type HeaderEntry = readonly [name: string, shape: readonly number[], dtype?: 'BF16' | 'F16' | 'F32' | 'F8_E4M3'];

const BYTES = { BF16: 2, F16: 2, F32: 4, F8_E4M3: 1 } as const;

/**
 * Writes a safetensors file whose header names `entries` with their real shapes and whose data area
 * is a hole (`fs.truncateSync` extends the file sparsely), so a 14B checkpoint's header costs no disk.
 * Returns the data area's size in bytes.
 */
export function writeHeaderOnlySafetensors(file: string, entries: readonly HeaderEntry[]): number {
  const header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> = {};
  let offset = 0;
  for (const [name, shape, dtype = 'BF16'] of entries) {
    // bytes = ∏ shape · element size
    const bytes = shape.reduce((a, d) => a * d, 1) * BYTES[dtype];
    header[name] = { dtype, shape: [...shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json, 'utf8')]));
  fs.truncateSync(file, 8 + json.length + offset);
  return offset;
}

/** A header-only file `name` in a new folder of its own under `parent` (no config.json beside it). */
export function headerOnlyFileInOwnFolder(parent: string, name: string, entries: readonly HeaderEntry[]): string {
  const file = `${fs.mkdtempSync(`${parent}/f-`)}/${name}`;
  writeHeaderOnlySafetensors(file, entries);
  return file;
}

/** ComfyUI's fp8_scaled repack: the blocks' matrices F8_E4M3 with a per-tensor F32 `scale_weight`, the rest F32, and the `scaled_fp8` marker. */
export function fp8Scaled(entries: readonly HeaderEntry[]): HeaderEntry[] {
  const out: HeaderEntry[] = [['scaled_fp8', [0], 'F8_E4M3']];
  for (const [name, shape] of entries) {
    if (shape.length === 2 && /(^|\.)blocks?\.\d+\..*\.weight$/.test(name)) out.push([name, shape, 'F8_E4M3'], [name.replace(/weight$/, 'scale_weight'), [1], 'F32']);
    else out.push([name, shape, 'F32']);
  }
  return out;
}
