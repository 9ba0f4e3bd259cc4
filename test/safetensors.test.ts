import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { CheckpointError } from '../src/errors.js';
import { decodeTensorBytes, float32ToBf16Bits, float32ToF16Bits } from '../weights/dtypes.js';
import { SafetensorsFile, writeSafetensors } from '../weights/safetensors.js';
import { ShardedCheckpoint, openCheckpoint } from '../weights/sharded.js';
import { fixtureDir } from './helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-st-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function rawFile(name: string, header: unknown, data: Uint8Array): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const f = path.join(tmp, name);
  fs.writeFileSync(f, Buffer.concat([len, json, data]));
  return f;
}

describe('safetensors reader', () => {
  it('reads a fixture checkpoint written by the reference (shapes, dtypes, values)', () => {
    const f = SafetensorsFile.open(path.join(fixtureDir('wan-transformer-t2v'), 'transformer', 'diffusion_pytorch_model.safetensors'));
    expect(f.info('patch_embedding.weight').shape).toEqual([32, 16, 1, 2, 2]);
    expect(f.info('patch_embedding.weight').dtype).toBe('F32');
    const t = f.read('blocks.0.scale_shift_table');
    expect(t.shape).toEqual([1, 6, 32]);
    expect(t.data.length).toBe(192);
    f.close();
  });

  it('reads int64 token ids as int32', () => {
    const f = SafetensorsFile.open(path.join(fixtureDir('umt5-encoder'), 'io.safetensors'));
    expect(f.info('input.input_ids').dtype).toBe('I64');
    const ids = f.read('input.input_ids');
    expect(ids.dtype).toBe('int32');
    expect(ids.shape).toEqual([2, 12]);
    f.close();
  });

  it('decodes every dtype (bit patterns from the IEEE/OCP definitions)', () => {
    const bytes = (xs: number[]) => new Uint8Array(xs);
    // F16: 0x3c00 = 1, 0xc000 = -2, 0x7bff = 65504, 0x0001 = 2^-24
    expect(Array.from(decodeTensorBytes('F16', bytes([0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00])))).toEqual([1, -2, 65504, 2 ** -24]);
    // BF16: 0x3f80 = 1, 0xc040 = -3
    expect(Array.from(decodeTensorBytes('BF16', bytes([0x80, 0x3f, 0x40, 0xc0])))).toEqual([1, -3]);
    // F8 E4M3FN: 0x38 = 1, 0x7e = 448, 0x7f = NaN, 0x01 = 2^-9
    const e4 = decodeTensorBytes('F8_E4M3', bytes([0x38, 0x7e, 0x7f, 0x01]));
    expect([e4[0], e4[1], e4[3]]).toEqual([1, 448, 2 ** -9]);
    expect(Number.isNaN(e4[2])).toBe(true);
    // F8 E5M2: 0x3c = 1, 0x7b = 57344, 0x7c = inf
    expect(Array.from(decodeTensorBytes('F8_E5M2', bytes([0x3c, 0x7b, 0x7c])))).toEqual([1, 57344, Infinity]);
    expect(Array.from(decodeTensorBytes('I16', bytes([0xff, 0xff, 0x02, 0x00])))).toEqual([-1, 2]);
    expect(Array.from(decodeTensorBytes('I8', bytes([0xfe])))).toEqual([-2]);
    expect(Array.from(decodeTensorBytes('U8', bytes([0xfe])))).toEqual([254]);
    expect(Array.from(decodeTensorBytes('BOOL', bytes([1, 0])))).toEqual([1, 0]);
    expect(Array.from(decodeTensorBytes('F64', new Uint8Array(new Float64Array([0.5, -1.25]).buffer)))).toEqual([0.5, -1.25]);
    expect(Array.from(decodeTensorBytes('I32', new Uint8Array(new Int32Array([-7, 9]).buffer)))).toEqual([-7, 9]);
    expect(() => decodeTensorBytes('I64', new Uint8Array(new BigInt64Array([2n ** 40n]).buffer))).toThrow(CheckpointError);
  });

  it('rounds float32 to bf16 / f16 to nearest even', () => {
    expect(float32ToBf16Bits(1)).toBe(0x3f80);
    expect(float32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(float32ToBf16Bits(1 + 3 * 2 ** -9)).toBe(0x3f81);
    expect(float32ToF16Bits(65504)).toBe(0x7bff);
    expect(float32ToF16Bits(1e6)).toBe(0x7c00);
    expect(float32ToF16Bits(2 ** -24)).toBe(0x0001);
  });

  it('writes and reads back (F32, F16, BF16, I32, I64) with metadata', () => {
    const f = path.join(tmp, 'rt.safetensors');
    writeSafetensors(
      f,
      {
        a: { shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
        b: { shape: [3], data: new Float32Array([0.5, -1, 2]), dtype: 'F16' },
        c: { shape: [1], data: new Float32Array([3]), dtype: 'BF16' },
        d: { shape: [2], data: new Int32Array([-5, 6]) },
        e: { shape: [0], data: new Float32Array([]) },
        g: { shape: [2], data: new Int32Array([7, -8]), dtype: 'I64' },
      },
      { format: 'pt' },
    );
    const r = SafetensorsFile.open(f);
    expect(r.metadata).toEqual({ format: 'pt' });
    expect(Array.from(r.read('a').data)).toEqual([1, 2, 3, 4]);
    expect(Array.from(r.read('b').data)).toEqual([0.5, -1, 2]);
    expect(Array.from(r.read('c').data)).toEqual([3]);
    expect(Array.from(r.read('d').data)).toEqual([-5, 6]);
    expect(r.read('e').shape).toEqual([0]);
    expect(Array.from(r.read('g').data)).toEqual([7, -8]);
    r.close();
    expect(fs.readdirSync(tmp).filter((x) => x.includes('.tmp-'))).toEqual([]);
  });

  it.each([
    ['an unknown dtype', { t: { dtype: 'F17', shape: [1], data_offsets: [0, 4] } }, 4, /unknown dtype/],
    ['a negative dimension', { t: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4, /non-negative/],
    ['a span that does not match the shape', { t: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4, /needs 8/],
    ['overlapping tensors', { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [2, 6] } }, 6, /overlaps/],
    ['a gap', { a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8, /gap/],
    ['trailing bytes', { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 8, /trailing/],
    ['a span past the end', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 4, /past the/],
    ['non-string metadata', { __metadata__: { k: 1 } }, 0, /not a string/],
    ['a header that is an array', [1, 2], 0, /not a JSON object/],
  ])('rejects %s with a CheckpointError naming the file and tensor', (_what, header, n, re) => {
    const f = rawFile('bad.safetensors', header, new Uint8Array(n));
    expect(() => SafetensorsFile.open(f)).toThrow(CheckpointError);
    expect(() => SafetensorsFile.open(f)).toThrow(re);
    expect(() => SafetensorsFile.open(f)).toThrow(/bad\.safetensors/);
  });

  it('rejects a header length past the file or over 100 MB', () => {
    const f = path.join(tmp, 'hl.safetensors');
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(1000n);
    fs.writeFileSync(f, b);
    expect(() => SafetensorsFile.open(f)).toThrow(/runs past the end/);
    b.writeBigUInt64LE(200_000_000n);
    fs.writeFileSync(f, b);
    expect(() => SafetensorsFile.open(f)).toThrow(/exceeds the limit/);
    expect(() => SafetensorsFile.open(path.join(tmp, 'nope.safetensors'))).toThrow(/cannot open \(ENOENT\)/);
  });

  it('opens sharded checkpoints through the index and reports a shard that lacks a tensor', () => {
    const dir = path.join(tmp, 'sharded');
    writeSafetensors(path.join(dir, 'm-00001-of-00002.safetensors'), { a: { shape: [1], data: new Float32Array([1]) } });
    writeSafetensors(path.join(dir, 'm-00002-of-00002.safetensors'), { b: { shape: [1], data: new Float32Array([2]) } });
    const index = { metadata: { total_size: 8 }, weight_map: { a: 'm-00001-of-00002.safetensors', b: 'm-00002-of-00002.safetensors' } };
    fs.writeFileSync(path.join(dir, 'm.safetensors.index.json'), JSON.stringify(index));
    const c = openCheckpoint(dir, 'm');
    expect(c).toBeInstanceOf(ShardedCheckpoint);
    expect(c.keys().sort()).toEqual(['a', 'b']);
    expect(Array.from(c.read('b').data)).toEqual([2]);
    c.close();
    fs.writeFileSync(path.join(dir, 'm.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'm-00002-of-00002.safetensors' } }));
    expect(() => openCheckpoint(dir, 'm')).toThrow(/does not hold it/);
  });

  it('says a .pth checkpoint must be converted first', () => {
    const dir = path.join(tmp, 'pth');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'Wan2.1_VAE.pth'), 'x');
    expect(() => openCheckpoint(dir)).toThrow(/convert them to safetensors first/);
  });
});

describe('safetensors reader fuzz', () => {
  const base = path.join(tmp, 'base.safetensors');
  writeSafetensors(
    base,
    {
      w: { shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i / 7) },
      h: { shape: [5], data: new Float32Array([1, 2, 3, 4, 5]), dtype: 'F16' },
      ids: { shape: [2, 2], data: new Int32Array([1, 2, 3, 4]), dtype: 'I64' },
    },
    { format: 'pt' },
  );
  const good = fs.readFileSync(base);

  type Mutation = { kind: 'flip'; at: number; value: number } | { kind: 'truncate'; at: number } | { kind: 'header'; text: string };
  const headerLen = Number(good.readBigUInt64LE(0));
  const headerText = good.subarray(8, 8 + headerLen).toString();
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(good.length - 1), value: fc.nat(255) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(good.length) }),
    fc
      .tuple(fc.nat(headerText.length - 1), fc.constantFrom('9', '-', '"', '}', '[', ' ', '0', '1e3', 'null', '999999999999', 'F16', 'BF16'))
      .map(([i, s]) => ({ kind: 'header' as const, text: headerText.slice(0, i) + s + headerText.slice(i + 1) })),
  );

  // Header edits apply to the intact file; flips and truncation compose on whatever came before.
  function apply(m: Mutation, src: Buffer): Buffer {
    if (m.kind === 'flip') {
      if (m.at >= src.length) return src;
      const b = Buffer.from(src);
      b[m.at] = m.value;
      return b;
    }
    if (m.kind === 'truncate') return src.subarray(0, m.at);
    const h = Buffer.from(m.text);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    return Buffer.concat([len, h, good.subarray(8 + headerLen)]);
  }

  it('2,000 corrupted or truncated files each load correctly or throw CheckpointError', () => {
    const f = path.join(tmp, 'fuzz.safetensors');
    let loaded = 0;
    let rejected = 0;
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (ms) => {
        let buf: Buffer = good;
        for (const m of ms) buf = m.kind === 'header' && buf !== good ? buf : apply(m, buf);
        fs.writeFileSync(f, buf);
        try {
          const r = SafetensorsFile.open(f);
          let bytes = 0;
          for (const k of r.keys()) {
            const t = r.read(k);
            expect(t.data.length).toBe(t.shape.reduce((a, d) => a * d, 1));
            bytes += r.info(k).end - r.info(k).begin;
          }
          expect(bytes).toBeLessThanOrEqual(buf.length);
          r.close();
          loaded++;
        } catch (e) {
          if (!(e instanceof CheckpointError)) throw e;
          rejected++;
        }
      }),
      { numRuns: 2000, seed: Date.now() % 100000 },
    );
    expect(loaded + rejected).toBe(2000);
    expect(rejected).toBeGreaterThan(0);
  });
});
