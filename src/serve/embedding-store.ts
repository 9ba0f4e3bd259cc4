import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../errors.js';
import type { PromptEmbeddingCache } from '../text/embedding-cache.js';

/**
 * A folder persisting a PromptEmbeddingCache: one file per entry, named by the SHA-256 of its key
 * (model id, length, prompt), holding a 4-byte little-endian header length, the JSON header
 * `{ key, length, dim }` and the rows as float32. Files are written atomically; one that cannot be
 * read is skipped on load.
 */
export class EmbeddingStore {
  private readonly saved = new Set<string>();

  constructor(readonly dir: string) {
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new ConfigError(`--embedding-cache ${dir}: cannot create the folder (${e instanceof Error ? e.message : String(e)})`);
    }
  }

  private fileFor(key: string): string {
    return path.join(this.dir, `${createHash('sha256').update(key).digest('hex')}.emb`);
  }

  /** Uploads every stored entry into `cache` (which keeps its own bound); returns how many were read. */
  load(cache: PromptEmbeddingCache): number {
    let n = 0;
    for (const name of fs.readdirSync(this.dir)) {
      if (!name.endsWith('.emb')) continue;
      try {
        const buf = fs.readFileSync(path.join(this.dir, name));
        const headerBytes = buf.readUInt32LE(0);
        const header = JSON.parse(buf.subarray(4, 4 + headerBytes).toString('utf-8')) as { key: string; length: number; dim: number };
        const body = buf.subarray(4 + headerBytes);
        const data = new Float32Array(body.byteLength / 4);
        new Uint8Array(data.buffer).set(body);
        cache.setHost(header.key, { length: header.length, dim: header.dim, data });
        this.saved.add(header.key);
        n++;
      } catch {
        // a file cut short or foreign is left out; its prompt is encoded again and rewritten
      }
    }
    return n;
  }

  /** Writes the entries of `cache` not stored yet; returns how many were written. */
  async save(cache: PromptEmbeddingCache): Promise<number> {
    let n = 0;
    for (const [key, e] of await cache.toHost()) {
      if (this.saved.has(key)) continue;
      const header = Buffer.from(JSON.stringify({ key, length: e.length, dim: e.dim }), 'utf-8');
      const size = Buffer.alloc(4);
      size.writeUInt32LE(header.byteLength, 0);
      const file = this.fileFor(key);
      const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
      try {
        fs.writeFileSync(tmp, Buffer.concat([size, header, Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength)]));
        fs.renameSync(tmp, file);
      } catch (err) {
        fs.rmSync(tmp, { force: true });
        throw err;
      }
      this.saved.add(key);
      n++;
    }
    return n;
  }
}
