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
