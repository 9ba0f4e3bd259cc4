import { safeText } from '../src/describe.js';
import { CheckpointError } from '../src/errors.js';
import { fileSystem } from './file-system.js';
import { MAX_HEADER_BYTES } from './safetensors.js';

/** Hex of a SHA-256 digest (Web Crypto: Node 20 and browsers, no Node built-in import). */
async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The SHA-256 (hex) of a safetensors file's header: its first 8 + N bytes, the little-endian u64
 * length N and the N bytes of JSON. The header names every tensor with its dtype, shape and byte
 * range, so it identifies a checkpoint without reading its weights. A file shorter than its stated
 * header, or a header over MAX_HEADER_BYTES, is a CheckpointError naming the file.
 */
export async function safetensorsHeaderSha256(file: string): Promise<string> {
  const fs = fileSystem();
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new CheckpointError(`cannot open (${(e as NodeJS.ErrnoException).code ?? safeText((e as Error).message)})`, file);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const prefix = new Uint8Array(8);
    if (size < 8 || fs.readSync(fd, prefix, 0, 8, 0) !== 8) throw new CheckpointError(`${size} bytes: shorter than the 8-byte header length`, file);
    const n = new DataView(prefix.buffer).getBigUint64(0, true);
    if (n > BigInt(MAX_HEADER_BYTES)) throw new CheckpointError(`header length ${n} bytes is over the limit of ${MAX_HEADER_BYTES}`, file);
    const total = 8 + Number(n);
    if (total > size) throw new CheckpointError(`header of ${n} bytes runs past the end of the file (${size} bytes; truncated?)`, file);
    const bytes = new Uint8Array(total);
    for (let done = 0; done < total; ) {
      const got = fs.readSync(fd, bytes, done, total - done, done);
      if (got === 0) throw new CheckpointError(`read ${done} of the header's ${total} bytes`, file);
      done += got;
    }
    return await sha256Hex(bytes);
  } finally {
    fs.closeSync(fd);
  }
}
