import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filesOf, startReadAhead } from '../weights/read-ahead.js';
import { SafetensorsFile, writeSafetensors } from '../weights/safetensors.js';

const MiB = 2 ** 20;
let dir: string;
let file: string;
const size = 40 * MiB;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-read-ahead-'));
  file = path.join(dir, 'big.bin');
  fs.writeFileSync(file, Buffer.alloc(size, 7));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function until(f: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return f();
}

describe('checkpoint read-ahead', () => {
  it('lists the files a source reads its tensors from, each once', () => {
    const st = path.join(dir, 'two.safetensors');
    writeSafetensors(st, { a: { shape: [2], data: new Float32Array([1, 2]) }, b: { shape: [1], data: new Float32Array([3]) } });
    const source = SafetensorsFile.open(st);
    try {
      expect(source.info('b').file).toBe(source.info('a').file);
      expect(filesOf(source)).toEqual([source.info('a').file]);
    } finally {
      source.close();
    }
  });

  it('starts no thread for files under the threshold', () => {
    expect(startReadAhead([file], { minBytes: size + 1 })).toBeUndefined();
    expect(startReadAhead([path.join(dir, 'missing.bin')], { minBytes: 0 })).toBeUndefined();
  });

  it('stays at most the lead (+ one 16 MiB read) ahead of the loader, and reads the rest as the loader consumes', async () => {
    const lead = MiB;
    const r = startReadAhead([file], { minBytes: 0, leadBytes: lead })!;
    try {
      expect(await until(() => r.readBytes() > 0, 5000)).toBe(true);
      await new Promise((res) => setTimeout(res, 200));
      expect(r.readBytes()).toBeLessThanOrEqual(lead + 16 * MiB);
      r.consumed(size);
      expect(await until(() => r.readBytes() === size, 5000)).toBe(true);
    } finally {
      r.stop();
    }
  });
});
