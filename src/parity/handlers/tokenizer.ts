import * as fs from 'node:fs';
import * as path from 'node:path';
import { WanTokenizer } from '../../text/tokenizer.js';
import type { ParityHandler } from '../types.js';
import { ConfigError, WanError } from '../../errors.js';

/** One prompt of a tokenizer case's expected.json (HF tokenizers' output). */
interface ExpectedPrompt {
  prompt: string;
  ids: number[];
  tokens: string[];
  ids_16: number[];
  attention_mask_16: number[];
}

function isExpected(v: unknown): v is ExpectedPrompt {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  const nums = (x: unknown) => Array.isArray(x) && x.every((n) => Number.isInteger(n));
  return typeof e.prompt === 'string' && nums(e.ids) && Array.isArray(e.tokens) && nums(e.ids_16) && nums(e.attention_mask_16);
}

function firstDifference(got: readonly (number | string)[], expected: readonly (number | string)[]): string | undefined {
  const n = Math.max(got.length, expected.length);
  for (let i = 0; i < n; i++) {
    if (got[i] !== expected[i]) {
      return `at ${i}: got ${JSON.stringify(got[i])}, expected ${JSON.stringify(expected[i])} (lengths ${got.length} vs ${expected.length})`;
    }
  }
  return undefined;
}

/**
 * Tokenizer cases: tokenizer.json + expected.json, no io.safetensors. Every prompt is checked for
 * its ids and pieces unpadded, and its ids and mask with padding and truncation to 16; the first
 * mismatch throws (the runner reports it as FAIL); the count of sequences checked is reported.
 */
const handler: ParityHandler = {
  components: ['tokenizer'],
  async run(c) {
    const expected: unknown = JSON.parse(fs.readFileSync(path.join(c.dir, 'expected.json'), 'utf-8'));
    if (!Array.isArray(expected) || expected.length === 0 || !expected.every(isExpected)) {
      throw new ConfigError(`${path.join(c.dir, 'expected.json')} must be a non-empty array of {prompt, ids, tokens, ids_16, attention_mask_16}`);
    }
    const tokenizer = await WanTokenizer.fromPretrained(c.dir);
    for (const [i, e] of expected.entries()) {
      const plain = tokenizer.tokenize(e.prompt);
      const padded = tokenizer.encode([e.prompt], { maxLength: 16, padding: 'max_length', truncation: true });
      const checks: Array<[string, readonly (number | string)[], readonly (number | string)[]]> = [
        ['ids', plain.ids, e.ids],
        ['tokens', plain.tokens, e.tokens],
        ['ids_16', Array.from(padded.ids[0]), e.ids_16],
        ['attention_mask_16', Array.from(padded.attentionMask[0]), e.attention_mask_16],
      ];
      for (const [what, got, want] of checks) {
        const diff = firstDifference(got, want);
        if (diff) throw new WanError(`prompt ${i} ${JSON.stringify(e.prompt)} ${what} ${diff}`);
      }
    }
    return [{ tensors: [], checked: { count: expected.length * 4, what: 'token sequences' } }];
  },
};

export default handler;
