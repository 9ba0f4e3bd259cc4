/**
 * A reproducible fuzz target for the safetensors reader, shared by the CI test
 * (test/safetensors-fuzz.test.ts) and the long run (`npm run fuzz`).
 *
 * Case `index` of run `seed` is built from its own PRNG stream, so any case can be replayed alone.
 * A case is a valid file (random tensors of every dtype, names, metadata, header order, padding)
 * with one mutation of a class chosen round-robin (so every class gets the same share) and up to
 * two more of any class. Each outcome is judged against an independent reference validator
 * (`judge`: its own JSON parser that keeps duplicate keys, BigInt arithmetic): a file the reader
 * opens must be valid and read back exactly as the reference reads it; a file it refuses must be
 * invalid and refused with a CheckpointError. Anything else — another error, a valid file refused,
 * an invalid one opened — is a finding.
 */
import * as fs from 'node:fs';
import { CheckpointError } from '../../src/errors.js';
import { SAFETENSORS_DTYPES, type SafetensorsDtype } from '../../weights/dtypes.js';
import { SafetensorsFile, parseHeader } from '../../weights/safetensors.js';

/** The format's limits, stated here apart from the reader's constants: the reference's 100 MB header and serde_json's 128 levels. */
const HEADER_LIMIT = 100_000_000;
const DEPTH_LIMIT = 128;

/* ------------------------------------------------------------------ PRNG */

/** mulberry32: a small deterministic 32-bit generator. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** A uniform uint32. */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.next() / 2 ** 32) * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  chance(p: number): boolean {
    return this.next() / 2 ** 32 < p;
  }
}

/** The PRNG of case `index` in run `seed` (a hash of both, so neighbouring cases are unrelated). */
export function caseRng(seed: number, index: number): Rng {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  return new Rng(h ^ (h >>> 15));
}

/* ------------------------------------------------------------ case plans */

/** One tensor entry of a draft header; values are raw JSON text so that they can be anything. */
interface EntryDraft {
  /** The key as raw JSON text (a quoted string, possibly spelled with escapes). */
  key: string;
  dtype: string;
  shape: string;
  offsets: [number, number];
  /** Raw `data_offsets` text replacing `offsets`. */
  offsetsRaw?: string;
  /** Further fields, raw JSON values; may repeat a field. */
  extra: Array<[string, string]>;
  /** Replaces the whole entry value. */
  raw?: string;
  /** Bytes the tensor occupies (numel · dtype size) in the valid file. */
  size: number;
}

/** A file under construction: a header draft, then edits of the header bytes, the length field and the whole file. */
interface Plan {
  /** `__metadata__` pairs as raw JSON (key text, value text); undefined: no __metadata__. */
  metadata: Array<[string, string]> | undefined;
  metadataRaw?: string;
  entries: EntryDraft[];
  /** More top-level pairs, raw (key text, value text). */
  topExtra: Array<[string, string]>;
  data: Uint8Array;
  pad: number;
  headerEdits: Array<(h: Uint8Array) => Uint8Array>;
  /** The header length field: header bytes + lengthAdd, unless lengthSet. */
  lengthAdd: bigint;
  lengthSet?: bigint;
  fileEdits: Array<(f: Uint8Array) => Uint8Array>;
}

const DTYPES = Object.keys(SAFETENSORS_DTYPES) as SafetensorsDtype[];
const NAMES = ['w', 'blocks.0.attn1.to_q.weight', 'ß-ü', '😀', 'a b', 'x"y', 'back\\slash', 'tab\there', '0', 'constructor', '__proto__x'];

function q(s: string): string {
  return JSON.stringify(s);
}

/** A valid file: 0–4 tensors of random dtypes and shapes (rank 0–3, dims 0–3), laid out in a random order, listed in another. */
function basePlan(rng: Rng): Plan {
  const n = rng.int(5);
  const entries: EntryDraft[] = [];
  for (let i = 0; i < n; i++) {
    const dtype = rng.pick(DTYPES);
    const shape = Array.from({ length: rng.int(4) }, () => rng.int(4));
    const size = shape.reduce((a, d) => a * d, 1) * SAFETENSORS_DTYPES[dtype];
    entries.push({ key: q(`${rng.pick(NAMES)}${i}`), dtype: q(dtype), shape: `[${shape.join(',')}]`, offsets: [0, 0], extra: [], size });
  }
  const layout = shuffle(rng, entries.slice());
  let offset = 0;
  for (const e of layout) {
    e.offsets = [offset, offset + e.size];
    offset += e.size;
  }
  const data = new Uint8Array(offset);
  for (let i = 0; i < data.length; i++) data[i] = rng.int(256);
  const metadata: Array<[string, string]> | undefined = rng.chance(0.6)
    ? Array.from({ length: 1 + rng.int(2) }, (_, i) => [q(rng.pick(['format', 'note', '__proto__', 'k']) + (i ? i : '')), q(rng.pick(['pt', '', 'ünï', 'x'.repeat(rng.int(40))]))])
    : undefined;
  return { metadata, entries: shuffle(rng, entries), topExtra: [], data, pad: rng.int(8), headerEdits: [], lengthAdd: 0n, fileEdits: [] };
}

function shuffle<T>(rng: Rng, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

function headerJson(p: Plan): string {
  const pairs: string[] = [];
  if (p.metadataRaw !== undefined) pairs.push(`"__metadata__":${p.metadataRaw}`);
  else if (p.metadata) pairs.push(`"__metadata__":{${p.metadata.map(([k, v]) => `${k}:${v}`).join(',')}}`);
  for (const e of p.entries) {
    const fields = [`"dtype":${e.dtype}`, `"shape":${e.shape}`, `"data_offsets":${e.offsetsRaw ?? `[${e.offsets[0]},${e.offsets[1]}]`}`, ...e.extra.map(([k, v]) => `${q(k)}:${v}`)];
    pairs.push(`${e.key}:${e.raw ?? `{${fields.join(',')}}`}`);
  }
  for (const [k, v] of p.topExtra) pairs.push(`${k}:${v}`);
  return `{${pairs.join(',')}}${' '.repeat(p.pad)}`;
}

/** The file's bytes: [u64 length][header][data], after every edit. */
export function planBytes(p: Plan): Uint8Array {
  let header: Uint8Array = Buffer.from(headerJson(p), 'utf-8');
  for (const edit of p.headerEdits) header = edit(header);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt.asUintN(64, p.lengthSet ?? BigInt(header.length) + p.lengthAdd));
  let file: Uint8Array = Buffer.concat([len, header, p.data]);
  for (const edit of p.fileEdits) file = edit(file);
  return file;
}

function insertAt(bytes: Uint8Array, at: number, ins: readonly number[]): Uint8Array {
  return Buffer.concat([bytes.subarray(0, at), Uint8Array.from(ins), bytes.subarray(at)]);
}

/** Index just past a random `"` of the header (inside a key or string value when it opens one). */
function afterQuote(rng: Rng, h: Uint8Array): number {
  const quotes: number[] = [];
  for (let i = 0; i < h.length; i++) if (h[i] === 0x22) quotes.push(i + 1);
  return quotes.length ? rng.pick(quotes) : rng.int(h.length + 1);
}

/** Nesting `depth` containers deep: arrays, or objects `{"a": …}`. */
function nested(rng: Rng, depth: number): string {
  return rng.chance(0.5) ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth - 1) + '{}' + '}'.repeat(depth - 1);
}

/* --------------------------------------------------------- the mutations */

const INVALID_UTF8: ReadonlyArray<readonly number[]> = [
  [0x80], [0xbf], [0xc0, 0xaf], [0xc1, 0xbf], [0xc3], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xfe], [0xff], [0xe2, 0x82],
];
/** Valid but unusual UTF-8: must not be refused. */
const VALID_UTF8: ReadonlyArray<readonly number[]> = [[0xf0, 0x9f, 0x98, 0x80], [0xc2, 0xa0], [0xef, 0xbb, 0xbf], [0xf4, 0x8f, 0xbf, 0xbf], [0xe2, 0x80, 0xae]];
const TOKENS = ['9', '-', '"', '}', '[', ' ', '0', '1e3', 'null', '999999999999', 'F16', 'BF16', ',', ':', '\\', '{}', '[]', '1.5', '-0', '\u0000', '\n'];
const BIG_NUMBERS = [-1, 1.5, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 2 ** 64, 1e300, -0];

type Mutator = (p: Plan, rng: Rng) => void;

/** Mutation classes, each a way the issue's audit or the format's rules break a file. */
export const MUTATIONS: Readonly<Record<string, Mutator>> = {
  /** No change: a valid file must open. */
  none: () => undefined,
  /** One tensor's span moved by one byte: an overlap or a gap of exactly one byte (the data area kept tiled at the end or not). */
  overlap: (p, rng) => {
    const e = p.entries.length ? rng.pick(p.entries) : undefined;
    if (!e) return;
    const d = rng.pick([-1, 1]);
    e.offsets = [e.offsets[0] + d, e.offsets[1] + d];
    if (rng.chance(0.5)) p.data = d > 0 ? Buffer.concat([p.data, new Uint8Array(1)]) : p.data.subarray(0, Math.max(0, p.data.length - 1));
  },
  /** One offset changed: by one, to a huge or non-integer value, or the pair made malformed. */
  span: (p, rng) => {
    const e = p.entries.length ? rng.pick(p.entries) : undefined;
    if (!e) return;
    const i = rng.int(2);
    const v = rng.chance(0.5) ? e.offsets[i] + rng.pick([-1, 1]) : rng.pick(BIG_NUMBERS);
    if (rng.chance(0.8)) e.offsetsRaw = i === 0 ? `[${v},${e.offsets[1]}]` : `[${e.offsets[0]},${v}]`;
    else e.offsetsRaw = rng.pick(['[]', `[${e.offsets[0]}]`, `[${e.offsets[0]},${e.offsets[1]},0]`, '"0,4"', 'null', '{}', `["${e.offsets[0]}",${e.offsets[1]}]`]);
  },
  /** The header length field: its high 32 bits set, just over the limit, past the file, or off by a few bytes. */
  length: (p, rng) => {
    const r = rng.int(6);
    if (r === 0) p.lengthAdd = BigInt(1 + rng.int(2 ** 32 - 1)) << 32n;
    else if (r === 1) p.lengthAdd = 1n << BigInt(32 + rng.int(32));
    else if (r === 2) p.lengthSet = BigInt(HEADER_LIMIT + 1 + rng.int(3));
    else if (r === 3) p.lengthSet = 2n ** 64n - 1n;
    else if (r === 4) p.lengthAdd = BigInt(rng.pick([-9, -8, -2, -1, 1, 2, 8, 1000]));
    else p.lengthSet = BigInt(rng.int(8));
  },
  /** Invalid UTF-8 (or valid but unusual UTF-8) inserted into a string of the header. */
  utf8: (p, rng) => {
    const bytes = rng.chance(0.8) ? rng.pick(INVALID_UTF8) : rng.pick(VALID_UTF8);
    p.headerEdits.push((h) => insertAt(h, afterQuote(rng, h), bytes));
  },
  /** A key repeated: a tensor name (plainly or spelled with an escape), a metadata key, __metadata__, a field of an entry. */
  duplicate: (p, rng) => {
    const e = p.entries.length ? rng.pick(p.entries) : undefined;
    const r = rng.int(5);
    if (r === 0 && e) p.entries.push({ ...e, extra: [...e.extra] });
    else if (r === 1 && e && e.key !== '""') {
      const name = JSON.parse(e.key) as string;
      const c = name.charCodeAt(0);
      p.topExtra.push([`"\\u${c.toString(16).padStart(4, '0')}${JSON.stringify(name.slice(1)).slice(1)}`, '{"dtype":"F32","shape":[0],"data_offsets":[0,0]}']);
    } else if (r === 2 && p.metadata?.length) p.metadata.push([p.metadata[0][0], q('again')]);
    else if (r === 3) p.topExtra.push(['"__metadata__"', '{}']);
    else if (e) e.extra.push([rng.pick(['dtype', 'shape', 'data_offsets']), rng.pick([e.dtype, e.shape, `[${e.offsets[0]},${e.offsets[1]}]`])]);
  },
  /** Nesting around the reader's depth limit and far past it, in a shape, dtype, offsets, an ignored field, metadata or the top level. */
  deep: (p, rng) => {
    const depth = rng.pick([2, 64, DEPTH_LIMIT - 3, DEPTH_LIMIT - 2, DEPTH_LIMIT - 1, DEPTH_LIMIT, DEPTH_LIMIT + 1, 500, 3000]);
    const v = nested(rng, depth);
    const e = p.entries.length ? rng.pick(p.entries) : undefined;
    const r = rng.int(6);
    if (r === 0 && e) e.shape = v;
    else if (r === 1 && e) e.dtype = v;
    else if (r === 2 && e) e.offsetsRaw = v;
    else if (r === 3 && e) e.extra.push(['extra', v]);
    else if (r === 4) p.metadataRaw = `{"k":${v}}`;
    else p.topExtra.push(['"deep"', v]);
  },
  /** Shapes of thousands of dimensions, with one bad entry, or whose element count passes 2^53. */
  shape: (p, rng) => {
    const e = p.entries.length ? rng.pick(p.entries) : undefined;
    if (!e) return;
    const r = rng.int(4);
    if (r === 0) {
      const dims: string[] = Array(rng.pick([9, 100, 5000])).fill('1');
      // all ones: as many bytes as one element, so the file stays valid only if the span was one element
      if (rng.chance(0.5)) dims[rng.int(dims.length)] = rng.pick(['-1', '1.5', '"1"', 'null', 'true', '[1]', '{}', '1e400', String(2 ** 53)]);
      e.shape = `[${dims.join(',')}]`;
    } else if (r === 1) e.shape = rng.pick(['[4294967296,4294967296,4294967296]', '[1152921504606846976,1152921504606846976,0]', '[9007199254740991,2]', '[0,9007199254740993]']);
    else if (r === 2) e.shape = rng.pick(['"[1]"', 'null', '{}', '1', '[[1]]']);
    else e.dtype = rng.pick(['"F17"', '"f32"', '""', '1', 'null', '["F32"]', q('F'.repeat(5000))]);
  },
  /** A UTF-8 byte order mark before the header (with the length counting it or not). */
  bom: (p, rng) => {
    p.headerEdits.push((h) => insertAt(h, 0, [0xef, 0xbb, 0xbf]));
    if (rng.chance(0.3)) p.lengthAdd -= 3n;
  },
  /** The file cut short: anywhere, or within the last bytes. */
  truncate: (p, rng) => {
    const near = rng.chance(0.5);
    p.fileEdits.push((f) => f.subarray(0, near ? Math.max(0, f.length - 1 - rng.int(16)) : rng.int(f.length + 1)));
  },
  /** One to four bytes set to random values, half of the time within the length field and header. */
  flip: (p, rng) => {
    const k = 1 + rng.int(4);
    const inHeader = rng.chance(0.5);
    p.fileEdits.push((f) => {
      const b = Buffer.from(f);
      const headerEnd = Math.min(b.length, 8 + Number(b.length >= 8 ? b.readBigUInt64LE(0) & 0xffffffn : 0n));
      for (let i = 0; i < k && b.length; i++) b[inHeader && headerEnd > 0 ? rng.int(headerEnd) : rng.int(b.length)] = rng.int(256);
      return b;
    });
  },
  /** One character of the header text replaced by a JSON token (length field kept right). */
  token: (p, rng) => {
    const t = rng.pick(TOKENS);
    p.headerEdits.push((h) => {
      const at = rng.int(h.length);
      return Buffer.concat([h.subarray(0, at), Buffer.from(t, 'utf-8'), h.subarray(at + 1)]);
    });
  },
  /** Keys JavaScript objects treat specially: __proto__ and friends as tensor or metadata keys, a tensor named __metadata__. */
  proto: (p, rng) => {
    const key = q(rng.pick(['__proto__', 'constructor', 'toString', 'hasOwnProperty', '__metadata__', '']));
    const e = p.entries.length ? rng.pick(p.entries) : undefined;
    if (e && rng.chance(0.6)) e.key = key;
    else (p.metadata ??= []).push([key, q('v')]);
  },
  /** __metadata__ of the wrong type, or holding values of the wrong type. */
  metadata: (p, rng) => {
    p.metadataRaw = rng.pick(['[]', '"x"', 'null', '1', '{"k":1}', '{"k":["a"]}', '{"k":null}', '{"k":{}}', '{}', '{"__proto__":"x"}', '{"":""}']);
  },
};

export const MUTATION_CLASSES = Object.keys(MUTATIONS);

/** Case `index` of run `seed`: its primary mutation class (round-robin) and the file's bytes. */
export function makeCase(seed: number, index: number): { mutation: string; bytes: Uint8Array } {
  const rng = caseRng(seed, index);
  const p = basePlan(rng);
  const mutation = MUTATION_CLASSES[index % MUTATION_CLASSES.length];
  MUTATIONS[mutation](p, rng);
  if (mutation !== 'none') {
    for (let extra = rng.int(3); extra > 0; extra--) MUTATIONS[rng.pick(MUTATION_CLASSES)](p, rng);
  }
  return { mutation, bytes: planBytes(p) };
}

/* -------------------------------------------------- the reference judge */

type JValue = null | boolean | number | string | JValue[] | JObject;

/** A JSON object with its pairs in order, duplicates kept. */
class JObject {
  constructor(readonly pairs: Array<[string, JValue]>) {}
}

class Invalid extends Error {}

/** A JSON number, matched where the parser stands (sticky). */
const NUMBER = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

/**
 * A recursive-descent JSON parser (RFC 8259) written apart from the reader: it keeps every pair,
 * refuses a repeated key in any object and any container nested deeper than `maxDepth`.
 */
class JsonParser {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly maxDepth: number,
  ) {}

  parseDocument(): JValue {
    const v = this.value(1);
    this.ws();
    if (this.i !== this.s.length) throw new Invalid('text after the value');
    return v;
  }

  private ws(): void {
    while (this.i < this.s.length && ' \t\n\r'.includes(this.s[this.i])) this.i++;
  }

  private value(depth: number): JValue {
    this.ws();
    const c = this.s[this.i];
    if (c === '{' || c === '[') {
      if (depth > this.maxDepth) throw new Invalid('too deep');
      return c === '{' ? this.object(depth) : this.array(depth);
    }
    if (c === '"') return this.string();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.s);
    if (!m) throw new Invalid(`unexpected character at ${this.i}`);
    this.i += m[0].length;
    return Number(m[0]);
  }

  private object(depth: number): JObject {
    this.i++;
    const pairs: Array<[string, JValue]> = [];
    const seen = new Set<string>();
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return new JObject(pairs);
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') throw new Invalid('expected a key');
      const k = this.string();
      if (seen.has(k)) throw new Invalid(`duplicate key ${k}`);
      seen.add(k);
      this.ws();
      if (this.s[this.i++] !== ':') throw new Invalid('expected :');
      pairs.push([k, this.value(depth + 1)]);
      this.ws();
      const c = this.s[this.i++];
      if (c === '}') return new JObject(pairs);
      if (c !== ',') throw new Invalid('expected , or }');
    }
  }

  private array(depth: number): JValue[] {
    this.i++;
    const items: JValue[] = [];
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return items;
    }
    for (;;) {
      items.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === ']') return items;
      if (c !== ',') throw new Invalid('expected , or ]');
    }
  }

  private string(): string {
    this.i++;
    let out = '';
    for (;;) {
      if (this.i >= this.s.length) throw new Invalid('unterminated string');
      const c = this.s.charCodeAt(this.i++);
      if (c === 0x22) return out;
      if (c < 0x20) throw new Invalid('control character in a string');
      if (c !== 0x5c) {
        out += String.fromCharCode(c);
        continue;
      }
      const e = this.s[this.i++];
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e in simple) out += simple[e];
      else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(this.s.slice(this.i, this.i + 4))) {
        out += String.fromCharCode(parseInt(this.s.slice(this.i, this.i + 4), 16));
        this.i += 4;
      } else throw new Invalid('bad escape');
    }
  }
}

/** What the reference makes of a file: its tensors (absolute byte spans) and metadata, or why it is invalid. */
export type Verdict =
  | { readonly valid: true; readonly tensors: Map<string, { dtype: string; shape: number[]; begin: number; end: number }>; readonly metadata: Map<string, string> }
  | { readonly valid: false; readonly reason: string };

function isDim(v: JValue | undefined): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** The reference validator: the format's rules, checked in BigInt where sizes are concerned. */
export function judge(file: Uint8Array): Verdict {
  const no = (reason: string): Verdict => ({ valid: false, reason });
  if (file.length < 8) return no('shorter than 8 bytes');
  const n = new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(HEADER_LIMIT)) return no('header length over the limit');
  if (8n + n > BigInt(file.length)) return no('header past the end');
  const hb = file.subarray(8, 8 + Number(n));
  if (hb[0] === 0xef && hb[1] === 0xbb && hb[2] === 0xbf) return no('byte order mark');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(hb);
  } catch {
    return no('invalid UTF-8');
  }
  let top: JValue;
  try {
    top = new JsonParser(text, DEPTH_LIMIT).parseDocument();
  } catch (e) {
    if (e instanceof Invalid) return no(`JSON: ${e.message}`);
    throw e;
  }
  if (!(top instanceof JObject)) return no('header not an object');
  const dataStart = 8n + n;
  const dataSize = BigInt(file.length) - dataStart;
  const tensors = new Map<string, { dtype: string; shape: number[]; begin: number; end: number }>();
  const metadata = new Map<string, string>();
  for (const [name, v] of top.pairs) {
    if (name === '__metadata__') {
      if (!(v instanceof JObject)) return no('__metadata__ not an object');
      for (const [k, s] of v.pairs) {
        if (typeof s !== 'string') return no('metadata value not a string');
        metadata.set(k, s);
      }
      continue;
    }
    if (!(v instanceof JObject)) return no('entry not an object');
    const field = new Map(v.pairs);
    const dtype = field.get('dtype');
    const shape = field.get('shape');
    const offsets = field.get('data_offsets');
    if (typeof dtype !== 'string' || !Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPES, dtype)) return no('dtype');
    if (!Array.isArray(shape) || !shape.every(isDim)) return no('shape');
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isDim)) return no('data_offsets');
    let numel = 1n;
    for (const d of shape as number[]) {
      numel *= BigInt(d);
      if (numel > BigInt(Number.MAX_SAFE_INTEGER)) return no('element count over 2^53');
    }
    const bytes = numel * BigInt(SAFETENSORS_DTYPES[dtype as SafetensorsDtype]);
    if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) return no('byte count over 2^53');
    const [b, e] = (offsets as number[]).map(BigInt);
    if (e < b || e - b !== bytes) return no('span does not match the shape');
    if (e > dataSize) return no('span past the data');
    tensors.set(name, { dtype, shape: shape as number[], begin: Number(dataStart + b), end: Number(dataStart + e) });
  }
  const spans = [...tensors.values()].sort((x, y) => x.begin - y.begin || x.end - y.end);
  let cursor = Number(dataStart);
  for (const t of spans) {
    if (t.begin !== cursor) return no(t.begin < cursor ? 'overlap' : 'gap');
    cursor = t.end;
  }
  if (cursor !== file.length) return no('data area not covered exactly');
  return { valid: true, tensors, metadata };
}

/* ------------------------------------------------------------ the target */

/** How one case ended. `finding` is set for anything the target counts as a bug. */
export interface Outcome {
  /** 'loaded': opened and read back equal to the reference; 'refused': a typed error on an invalid file. */
  readonly result: 'loaded' | 'refused' | 'finding';
  /** The error's class name for 'refused' (and for an untyped error). */
  readonly errorClass?: string;
  readonly finding?: string;
  /** Bytes the reader allocated for file content (header buffer + raw tensor buffers), for the allocation ≤ file size check. */
  readonly allocated: number;
  readonly size: number;
  readonly ms: number;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Opens `bytes` (written to `file`) with the reader, reads every tensor, and judges the outcome against the reference. */
export function runCase(file: string, bytes: Uint8Array): Outcome {
  const t0 = performance.now();
  fs.writeFileSync(file, bytes);
  const verdict = judge(bytes);
  const size = bytes.length;
  // the header buffer parseHeader asks for, before it can know whether the file is valid
  let allocated = Math.min(8, size);
  try {
    parseHeader(file, bytes.subarray(0, Math.min(8, size)), size, (n) => {
      allocated += n;
      return bytes.slice(8, 8 + n);
    });
  } catch {
    // the outcome is judged below, through the real open()
  }
  const done = (result: Outcome['result'], extra: { errorClass?: string; finding?: string } = {}): Outcome => ({ result, allocated, size, ms: performance.now() - t0, ...extra });
  let r: SafetensorsFile;
  try {
    r = SafetensorsFile.open(file);
  } catch (e) {
    const errorClass = e instanceof Error ? e.constructor.name : typeof e;
    if (!(e instanceof CheckpointError)) return done('finding', { errorClass, finding: `untyped error ${errorClass}: ${e instanceof Error ? e.message.slice(0, 200) : String(e)}` });
    if (verdict.valid) return done('finding', { errorClass, finding: `valid file refused: ${e.message.slice(0, 300)}` });
    return done('refused', { errorClass });
  }
  try {
    if (!verdict.valid) return done('finding', { finding: `invalid file opened (reference: ${verdict.reason})` });
    const keys = r.keys();
    if (keys.length !== verdict.tensors.size || keys.some((k) => !verdict.tensors.has(k))) return done('finding', { finding: 'tensor names differ from the reference' });
    const meta = Object.entries(r.metadata);
    if (meta.length !== verdict.metadata.size || meta.some(([k, v]) => verdict.metadata.get(k) !== v)) return done('finding', { finding: 'metadata differs from the reference' });
    for (const k of keys) {
      const want = verdict.tensors.get(k)!;
      const info = r.info(k);
      if (info.dtype !== want.dtype || !sameShape(info.shape, want.shape) || info.begin !== want.begin || info.end !== want.end) {
        return done('finding', { finding: `tensor '${k}' described differently from the reference` });
      }
      const raw = r.readRaw(k);
      allocated += raw.byteLength;
      if (Buffer.compare(raw, bytes.subarray(want.begin, want.end)) !== 0) return done('finding', { finding: `tensor '${k}' read other bytes than its span` });
      try {
        const t = r.read(k);
        if (t.data.length !== want.shape.reduce((a, d) => a * d, 1)) return done('finding', { finding: `tensor '${k}' decoded to the wrong length` });
      } catch (e) {
        // the one refusal a valid file may give on reading: an I64 value outside int32
        if (!(e instanceof CheckpointError && want.dtype === 'I64' && /does not fit in int32/.test(e.message))) {
          return done('finding', { errorClass: e instanceof Error ? e.constructor.name : typeof e, finding: `reading '${k}' failed: ${e instanceof Error ? e.message.slice(0, 200) : String(e)}` });
        }
      }
    }
    return done('loaded');
  } finally {
    r.close();
  }
}
