import * as fs from 'node:fs';
import * as path from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UMT5EncoderModel } from '../layers/umt5-encoder-model.js';
import { ConfigError } from '../src/errors.js';
import { PromptEmbeddingCache } from '../src/text/embedding-cache.js';
import { htmlUnescape } from '../src/text/html-unescape.js';
import { promptClean } from '../src/text/prompt-clean.js';
import { WanTextEncoder } from '../src/text/text-encoder.js';
import { WanTokenizer } from '../src/text/tokenizer.js';
import { fixtureDir } from './helpers/fixtures.js';

// The fixture tokenizer (506 pieces) feeds the fixture umT5 (vocab 512, d_model 32).
const tok = new WanTokenizer(JSON.parse(fs.readFileSync(path.join(fixtureDir('tokenizer-unigram'), 'tokenizer.json'), 'utf-8')));
let model: UMT5EncoderModel;
beforeAll(async () => {
  model = await UMT5EncoderModel.fromPretrained(path.join(fixtureDir('umt5-encoder'), 'text_encoder'));
});
afterAll(() => model.dispose());

const PY_SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;

/** Prompts mixing words, CJK, emoji, whitespace runs, entities and unknown characters. */
const prompt = fc
  .array(
    fc.oneof(
      fc.constantFrom('a', 'the', 'park', 'girl', '猫', '夏日海滩', '🎉', '  ', '\t', '\n', '&amp;', '&lt;', '’', 'ＡＢ', 'é', 'x', '12'),
      fc.string({ unit: 'grapheme', maxLength: 4 }),
    ),
    { maxLength: 12 },
  )
  .map((parts) => parts.join(' '));

describe('tokenizer properties', () => {
  it('rows fit maxLength, end in </s>, and the mask marks exactly the real tokens', () => {
    fc.assert(
      fc.property(fc.array(prompt, { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 40 }), (prompts, maxLength) => {
        const batch = tok.encode(prompts, { maxLength });
        batch.ids.forEach((row, i) => {
          const full = tok.tokenize(prompts[i]).ids;
          const n = batch.lengths[i];
          expect(row.length).toBe(maxLength);
          expect(n).toBe(Math.min(full.length, maxLength));
          expect(row[n - 1]).toBe(1);
          expect(Array.from(row.slice(0, n - 1))).toEqual(full.slice(0, n - 1));
          const mask = batch.attentionMask[i];
          for (let j = 0; j < maxLength; j++) {
            expect(mask[j]).toBe(j < n ? 1 : 0);
            if (j >= n) expect(row[j]).toBe(tok.padTokenId);
          }
        });
      }),
      { numRuns: 60 },
    );
  });

  it('byte fallback spells out exactly the UTF-8 of the text it replaces', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 6 }), (text) => {
        const { tokens } = tok.tokenize(text, false);
        const bytes: number[] = [];
        let chars = '';
        for (const t of tokens) {
          const m = /^<0x([0-9A-F]{2})>$/.exec(t);
          if (m) bytes.push(parseInt(m[1], 16));
          else {
            chars += new TextDecoder().decode(new Uint8Array(bytes.splice(0))) + t;
          }
        }
        chars += new TextDecoder().decode(new Uint8Array(bytes));
        expect(chars.replace(/▁/g, ' ').trim()).toBe(text.normalize('NFKC').replace(/ {2,}/g, ' ').trim());
      }),
      { numRuns: 100 },
    );
  });
});

describe('WanTextEncoder properties', () => {
  it('zeroes every row past a prompt\'s tokens, is deterministic, and leaks no tensor', async () => {
    const enc = new WanTextEncoder(tok, model, { cache: null });
    await fc.assert(
      fc.asyncProperty(fc.array(prompt, { minLength: 1, maxLength: 3 }), fc.integer({ min: 1, max: 20 }), async (prompts, maxLength) => {
        const before = tf.memory().numTensors;
        const a = await enc.encode(prompts, { maxLength });
        const b = await enc.encode(prompts, { maxLength });
        expect(a.shape).toEqual([prompts.length, maxLength, 32]);
        const da = a.dataSync();
        expect(Array.from(b.dataSync())).toEqual(Array.from(da));
        const lengths = tok.encode(prompts.map(promptClean), { maxLength }).lengths;
        lengths.forEach((n, i) => {
          for (let r = 0; r < maxLength; r++) {
            const row = da.subarray((i * maxLength + r) * 32, (i * maxLength + r + 1) * 32);
            if (r < n) expect(row.some((v) => v !== 0)).toBe(true);
            else expect(row.every((v) => v === 0)).toBe(true);
          }
        });
        tf.dispose([a, b]);
        expect(tf.memory().numTensors).toBe(before);
      }),
      { numRuns: 25 },
    );
  });

  it('gives each prompt the encoder output of its own padded row, alone or in a batch', async () => {
    const enc = new WanTextEncoder(tok, model, { cache: null });
    await fc.assert(
      fc.asyncProperty(prompt, prompt, async (p, q) => {
        const maxLength = 16;
        const batch = await enc.encode([q, p], { maxLength });
        const { inputIds, attentionMask } = tok.encodeToTensors([promptClean(p)], { maxLength });
        const direct = model.forward(inputIds, attentionMask);
        const n = tok.encode([promptClean(p)], { maxLength }).lengths[0];
        const got = batch.dataSync().subarray(maxLength * 32, (maxLength + n) * 32);
        const want = direct.dataSync().subarray(0, n * 32);
        for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(1e-5);
        tf.dispose([batch, inputIds, attentionMask, direct]);
      }),
      { numRuns: 15 },
    );
  });

  it('serves cached prompts after release() and names the ones it cannot', async () => {
    const weights = await UMT5EncoderModel.fromPretrained(path.join(fixtureDir('umt5-encoder'), 'text_encoder'));
    const before = tf.memory().numTensors;
    const cache = new PromptEmbeddingCache();
    const enc = new WanTextEncoder(tok, weights, { cache, modelId: 'fixture' });
    const first = await enc.encode(['a girl in a park', 'a girl in a park', ' a  girl in a park '], { maxLength: 12 });
    expect(cache.size).toBe(1);
    enc.release();
    expect(enc.released).toBe(true);
    // the result, and the cached prompt's rows
    expect(tf.memory().numTensors).toBe(before - weights.namedWeights().size + 2);
    const again = await enc.encode('a girl in a park', { maxLength: 12 });
    expect(Array.from(again.dataSync())).toEqual(Array.from(first.dataSync().subarray(0, 12 * 32)));
    await expect(enc.encode('a cat', { maxLength: 12 })).rejects.toThrow(ConfigError);
    await expect(enc.encode('a cat', { maxLength: 12 })).rejects.toThrow(/released.*"a cat"/);
    await expect(enc.encode('a girl in a park', { maxLength: 13 })).rejects.toThrow(/not in the embedding cache/);
    tf.dispose([first, again]);
    cache.clear();
  });
});

describe('PromptEmbeddingCache properties', () => {
  it('stays within its bounds, keeps the most recent entry that fits, and holds one tensor per entry', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 16, max: 400 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 1, max: 30 })), { maxLength: 40 }),
        (maxEntries, maxBytes, ops) => {
          const before = tf.memory().numTensors;
          const cache = new PromptEmbeddingCache({ maxEntries, maxBytes });
          for (const [k, floats] of ops) {
            const key = PromptEmbeddingCache.key('m', `p${k}`, 8);
            const rows = tf.fill([1, floats], k) as tf.Tensor2D;
            cache.set(key, rows);
            rows.dispose();
            expect(cache.size).toBeLessThanOrEqual(maxEntries);
            expect(cache.bytes).toBeLessThanOrEqual(maxBytes);
            expect(cache.has(key)).toBe(floats * 4 <= maxBytes);
            expect(tf.memory().numTensors).toBe(before + cache.size);
          }
          cache.clear();
          expect(tf.memory().numTensors).toBe(before);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('keeps tensors, and makes host copies only when asked (toHost), which setHost uploads back', async () => {
    const cache = new PromptEmbeddingCache();
    const rows = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
    cache.set('a', rows);
    rows.dispose();
    const saved = await cache.toHost();
    expect(saved).toEqual([['a', { length: 3, dim: 2, data: Float32Array.of(1, 2, 3, 4, 5, 6) }]]);
    const other = new PromptEmbeddingCache();
    other.setHost('a', saved[0][1]);
    const back = other.get('a')!;
    expect(back.arraySync()).toEqual([[1, 2], [3, 4], [5, 6]]);
    back.dispose();
    cache.clear();
    other.clear();
  });
});

describe('promptClean properties', () => {
  it('leaves no edge whitespace and no whitespace but single spaces', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 30 }), (s) => {
        const out = promptClean(s);
        expect(PY_SPACE.test(out.charAt(0)) || PY_SPACE.test(out.charAt(out.length - 1))).toBe(false);
        expect(/[\t\n\v\f\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]|  /.test(out)).toBe(false);
      }),
      { numRuns: 150 },
    );
  });

  it('leaves text without references alone in htmlUnescape', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 30 }).filter((s) => !s.includes('&')), (s) => {
        expect(htmlUnescape(s)).toBe(s);
      }),
    );
  });
});
