import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CheckpointError } from '../src/errors.js';
import { decodeTensorBytes, float32ToBf16Bits, float32ToF16Bits } from '../weights/dtypes.js';
import { SafetensorsFile, writeSafetensors } from '../weights/safetensors.js';
import { openCheckpoint } from '../weights/component.js';
import { ShardedCheckpoint } from '../weights/sharded.js';
import { fixtureDir } from './helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-st-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function rawFile(name: string, header: unknown, data: Uint8Array): string {
  return rawTextFile(name, JSON.stringify(header), data);
}

/** A file of [u64 length][header bytes][data]; `extraLength` is added to the stored length (its high 32 bits). */
function rawTextFile(name: string, header: string | Uint8Array, data: Uint8Array | number, extraLength = 0n): string {
  const bytes = typeof header === 'string' ? Buffer.from(header, 'utf-8') : Buffer.from(header);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(bytes.length) + extraLength);
  const f = path.join(tmp, name);
  fs.writeFileSync(f, Buffer.concat([len, bytes, typeof data === 'number' ? new Uint8Array(data) : data]));
  return f;
}

/** The CheckpointError that opening `file` throws. */
function openError(file: string): CheckpointError {
  try {
    SafetensorsFile.open(file).close();
  } catch (e) {
    if (e instanceof CheckpointError) return e;
    throw e;
  }
  throw new Error(`${file} opened without an error`);
}

const F32 = (b: number, e: number) => ({ dtype: 'F32', shape: [(e - b) / 4], data_offsets: [b, e] });

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
    expect(() => openCheckpoint(dir)).toThrow(/Wan2\.1_VAE\.pth is a PyTorch pickle; convert it to safetensors first/);
  });
});

describe('safetensors conformance', () => {
  it('rejects duplicate keys: tensor names, __metadata__ keys, entry fields, also when spelled with escapes', () => {
    const t = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
    const cases: Array<[string, string, RegExp]> = [
      [`{"a":${t},"a":${t}}`, 'two tensors named a', /duplicate key 'a' at the top level of the header/],
      [`{"a":${t},"\\u0061":${t}}`, 'a and \\u0061', /duplicate key 'a' at the top level/],
      [`{"__metadata__":{"k":"1","k":"2"},"a":${t}}`, 'metadata key twice', /duplicate key 'k' in '__metadata__'/],
      [`{"__metadata__":{},"__metadata__":{"k":"v"},"a":${t}}`, '__metadata__ twice', /duplicate key '__metadata__'/],
      [`{"a":{"dtype":"F16","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 'dtype twice', /duplicate key 'dtype' in 'a'/],
    ];
    for (const [header, what, re] of cases) {
      const e = openError(rawTextFile('dup.safetensors', header, 4));
      expect(e.message, what).toMatch(re);
      expect(e.message).toMatch(/dup\.safetensors/);
    }
  });

  it('rejects a UTF-8 byte order mark before the header', () => {
    const header = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}')]);
    expect(openError(rawTextFile('bom.safetensors', header, 4)).message).toMatch(/byte order mark/);
  });

  it('keeps a __metadata__ key named __proto__ (and a tensor named __proto__) without touching any prototype', () => {
    const f = rawTextFile('proto.safetensors', '{"__metadata__":{"__proto__":"x","format":"pt"},"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(new Float32Array([2.5]).buffer));
    const r = SafetensorsFile.open(f);
    expect(Object.keys(r.metadata).sort()).toEqual(['__proto__', 'format']);
    expect(Object.getOwnPropertyDescriptor(r.metadata, '__proto__')?.value).toBe('x');
    expect(r.keys()).toEqual(['__proto__']);
    expect(Array.from(r.read('__proto__').data)).toEqual([2.5]);
    r.close();
  });

  it('honours the header length as a u64: a length of 2^32 + n is refused, not read as n', () => {
    const header = JSON.stringify({ a: F32(0, 4) });
    expect(() => SafetensorsFile.open(rawTextFile('hl-ok.safetensors', header, 4)).close()).not.toThrow();
    expect(openError(rawTextFile('hl-hi.safetensors', header, 4, 2n ** 32n)).message).toMatch(/header length 4294967\d+ exceeds the limit of 100000000 bytes/);
    expect(openError(rawTextFile('hl-top.safetensors', header, 4, 2n ** 63n)).message).toMatch(/exceeds the limit/);
    // n within the limit but one byte past the file
    expect(openError(rawTextFile('hl-past.safetensors', header, 0, 1n)).message).toMatch(/runs past the end/);
  });

  it.each([
    ['a lone continuation byte', [0x80]],
    ['a truncated 2-byte sequence', [0xc3, 0x28]],
    ['an overlong encoding of /', [0xc0, 0xaf]],
    ['an encoded surrogate', [0xed, 0xa0, 0x80]],
    ['a code point past U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ['0xFF', [0xff]],
  ])('rejects invalid UTF-8 in the header: %s', (_what, bad) => {
    const before = Buffer.from('{"__metadata__":{"k":"');
    const after = Buffer.from('"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}');
    const e = openError(rawTextFile('utf8.safetensors', Buffer.concat([before, Buffer.from(bad), after]), 4));
    expect(e.message).toMatch(/header is not valid UTF-8/);
  });

  it('accepts tensors that tile the data area exactly: adjacent, empty ones anywhere, any header order', () => {
    const header = { z: F32(8, 12), e0: F32(0, 0), a: F32(0, 4), e1: F32(4, 4), b: F32(4, 8), e2: F32(12, 12) };
    const r = SafetensorsFile.open(rawFile('tile.safetensors', header, new Uint8Array(new Float32Array([1, 2, 3]).buffer)));
    expect([r.read('a').data[0], r.read('b').data[0], r.read('z').data[0]]).toEqual([1, 2, 3]);
    expect(r.read('e1').shape).toEqual([0]);
    r.close();
  });

  it.each([
    ['an overlap of one byte', { a: F32(0, 4), b: F32(3, 7) }, 7, /overlaps the previous tensor \(starts at 3, expected 4\)/],
    ['a tensor inside another', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: F32(4, 8) }, 8, /overlaps/],
    ['the same span twice', { a: F32(0, 4), b: F32(0, 4) }, 4, /overlaps/],
    ['a gap of one byte', { a: F32(0, 4), b: F32(5, 9) }, 9, /gap in the data area before this tensor \(starts at 5, expected 4\)/],
    ['a gap of one byte at the start', { a: F32(1, 5) }, 5, /gap/],
    ['one trailing byte', { a: F32(0, 4) }, 5, /data area is 5 bytes but the tensors cover 4/],
    ['one byte missing at the end', { a: F32(0, 4), b: F32(4, 8) }, 7, /past the 7-byte data area/],
    ['data but no tensors', {}, 1, /data area is 1 bytes but the tensors cover 0/],
  ])('rejects %s', (_what, header, n, re) => {
    expect(openError(rawFile('tiling.safetensors', header, new Uint8Array(n))).message).toMatch(re);
  });

  it('describes a bad value by its type and size, never prints it whole, and keeps every message on one line', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const long = 'n'.repeat(100_000);
    const big = `[${Array(200_000).fill(1).join(',')}]`;
    const cases: Array<[string, number, RegExp]> = [
      [`{"a":{"dtype":"F32","shape":${deep},"data_offsets":[0,4]}}`, 4, /header nests deeper than 128 levels/],
      [`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":${deep}}}`, 4, /header nests deeper than 128 levels/],
      [`{"a":{"dtype":{"x":${'['.repeat(100)}${']'.repeat(100)}},"shape":[1],"data_offsets":[0,4]}}`, 4, /unknown dtype \(an object\)/],
      [`{"a":{"dtype":"${long}","shape":[1],"data_offsets":[0,4]}}`, 4, /unknown dtype \(a string of 100,000 characters\)/],
      [`{"a":{"dtype":"F32","shape":${big},"data_offsets":[0,8]}}`, 8, /shape \[1, 1, 1, 1, 1, 1, 1, 1, … 200,000 dimensions\] of F32 needs 4/],
      [`{"a":{"dtype":"F32","shape":[${Array(200_000).fill(1).join(',')},-1],"data_offsets":[0,4]}}`, 4, /shape\[200000\] is the number -1, not a non-negative integer/],
      [`{"a":{"dtype":"F32","shape":"${long}","data_offsets":[0,4]}}`, 4, /shape is a string of 100,000 characters, not a list/],
      [`{"a":{"dtype":"F32","shape":[1],"data_offsets":${big}}}`, 4, /data_offsets is an array of 200,000 entries, not a pair/],
      [`{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}`, 4, /shape \[4294967296, 4294967296, 4294967296\] holds more than 2\^53 elements/],
      [`{"${long}":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}}`, 4, /tensor 'n{120}… \(100,000 characters\)': unknown dtype \("F17"\)/],
      [`{"a\\nb\\u001b[31m":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}}`, 4, /tensor 'a\\nb\\u001b\[31m': unknown dtype \("F17"\)/],
      [`{"__metadata__":{"k":${deep}}}`, 0, /header nests deeper than 128 levels/],
      [`{"__metadata__":{"k":[1,2]}}`, 0, /__metadata__ value of 'k' is an array of 2 entries, not a string/],
      [`{"a":${big}}`, 0, /entry is an array of 200,000 entries, not an object/],
      [`{"a":{"dtype":"F32",,}}`, 0, /header is not valid JSON/],
    ];
    for (const [header, n, re] of cases) {
      const e = openError(rawTextFile('msg.safetensors', header, n));
      expect(e.message).toMatch(re);
      expect(e.message.length).toBeLessThan(400);
      expect(e.message).not.toMatch(/\n/);
    }
  });

  it('writeSafetensors refuses the names __proto__ and __metadata__ instead of writing a file it cannot read', () => {
    const f = path.join(tmp, 'reserved.safetensors');
    for (const name of ['__metadata__', '__proto__']) {
      const tensors = Object.create(null) as Record<string, { shape: number[]; data: Float32Array }>;
      tensors.ok = { shape: [1], data: new Float32Array([1]) };
      Object.defineProperty(tensors, name, { value: { shape: [1], data: new Float32Array([2]) }, enumerable: true });
      expect(() => writeSafetensors(f, tensors)).toThrow(CheckpointError);
      expect(() => writeSafetensors(f, tensors)).toThrow(new RegExp(`tensor '${name}': .*reserved`));
      expect(fs.existsSync(f)).toBe(false);
    }
    expect(fs.readdirSync(tmp).filter((x) => x.includes('.tmp-'))).toEqual([]);
  });

  it('writeSafetensors keeps a metadata key named __proto__ and reads it back', () => {
    const f = path.join(tmp, 'meta-proto.safetensors');
    const metadata = Object.create(null) as Record<string, string>;
    Object.defineProperty(metadata, '__proto__', { value: 'kept', enumerable: true });
    metadata.format = 'pt';
    writeSafetensors(f, { a: { shape: [1], data: new Float32Array([1]) } }, metadata);
    const r = SafetensorsFile.open(f);
    expect(Object.getOwnPropertyDescriptor(r.metadata, '__proto__')?.value).toBe('kept');
    expect(r.metadata.format).toBe('pt');
    r.close();
  });

  it('turns file-system errors while opening into CheckpointErrors (a folder, a missing file)', () => {
    const dir = path.join(tmp, 'a-folder.safetensors');
    fs.mkdirSync(dir, { recursive: true });
    expect(openError(dir).message).toMatch(/a-folder\.safetensors: not a regular file/);
    expect(openError(path.join(tmp, 'absent.safetensors')).message).toMatch(/cannot open \(ENOENT\)/);
  });
});
