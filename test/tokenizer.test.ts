import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { runCase, loadHandlers } from '../src/parity/runner.js';
import { CheckpointError, ConfigError, ShapeError } from '../src/errors.js';
import { DEFAULT_NEGATIVE_PROMPT } from '../src/text/default-negative-prompt.js';
import { htmlUnescape } from '../src/text/html-unescape.js';
import { promptClean } from '../src/text/prompt-clean.js';
import { WanTokenizer } from '../src/text/tokenizer.js';
import { fixtureDir, parityCase } from './helpers/fixtures.js';

const CASE = fixtureDir('tokenizer-unigram');
const tokenizerJson = JSON.parse(fs.readFileSync(path.join(CASE, 'tokenizer.json'), 'utf-8'));
const expected: Array<{ prompt: string; ids: number[]; ids_16: number[] }> = JSON.parse(fs.readFileSync(path.join(CASE, 'expected.json'), 'utf-8'));
const tok = new WanTokenizer(tokenizerJson);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-tok-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('WanTokenizer', () => {
  it('matches HF tokenizers on every fixture prompt, with and without padding/truncation', async () => {
    expect(expected.length).toBeGreaterThanOrEqual(9);
    const r = await parityCase('tokenizer-unigram');
    expect(r.status).toBe('PASS');
  });

  it('turns a wrong expectation into a FAIL naming the prompt', async () => {
    const dir = path.join(tmp, 'tampered');
    fs.mkdirSync(dir);
    for (const f of ['case.json', 'tokenizer.json']) fs.copyFileSync(path.join(CASE, f), path.join(dir, f));
    const tampered = structuredClone(expected);
    tampered[3].ids_16[2] += 1;
    fs.writeFileSync(path.join(dir, 'expected.json'), JSON.stringify(tampered));
    const r = await runCase(dir, await loadHandlers());
    expect(r.status).toBe('FAIL');
    expect(r.line).toContain(`prompt 3 ${JSON.stringify(expected[3].prompt)} ids_16 at 2`);
  });

  it('falls back to UTF-8 byte pieces, all or nothing', () => {
    expect(tok.tokenize('x')).toEqual({ ids: [3, tok.tokenToId('<0x78>')!, 1], tokens: ['▁', '<0x78>', '</s>'] });
    // Drop one byte piece from the vocabulary: the emoji's four bytes can no longer all be had → one <unk>.
    const json = structuredClone(tokenizerJson);
    const entry = json.model.vocab.find((v: [string, number]) => v[0] === '<0x9F>');
    entry[0] = '<0x9F>-gone';
    const partial = new WanTokenizer(json);
    expect(partial.tokenize('🎉')).toEqual({ ids: [3, partial.unkTokenId, 1], tokens: ['▁', '🎉', '</s>'] });
    // Without byte_fallback every unknown run is one <unk>.
    const plain = new WanTokenizer({ ...tokenizerJson, model: { ...tokenizerJson.model, byte_fallback: false } });
    expect(plain.tokenize('x 🌸🌊').ids).toEqual([3, 2, 3, 2, 1]);
  });

  it('pads and truncates as HF does, keeping </s>', () => {
    const long = expected[0];
    const b = tok.encode([long.prompt, ''], { maxLength: 5 });
    expect(Array.from(b.ids[0])).toEqual([...long.ids.slice(0, 4), 1]);
    expect(Array.from(b.ids[1])).toEqual([1, 0, 0, 0, 0]);
    expect(Array.from(b.attentionMask[1])).toEqual([1, 0, 0, 0, 0]);
    expect(b.lengths).toEqual([5, 1]);
    expect(Array.from(tok.encode(long.prompt, { maxLength: 1 }).ids[0])).toEqual([1]);
    const longest = tok.encode(['x', ''], { padding: 'longest' });
    expect(longest.ids.map((r) => Array.from(r))).toEqual([[3, tok.tokenToId('<0x78>')!, 1], [1, 0, 0]]);
    const none = tok.encode(['x', ''], { padding: 'none' });
    expect(none.ids.map((r) => r.length)).toEqual([3, 1]);
    const untruncated = tok.encode([long.prompt], { maxLength: 8, truncation: false });
    expect(Array.from(untruncated.ids[0])).toEqual(long.ids);
    expect(() => tok.encodeToTensors(['x', ''], { padding: 'none' })).toThrow(ShapeError);
    expect(() => tok.encode('x', { maxLength: 0 })).toThrow(ConfigError);
    expect(tok.decode(tok.tokenize('the park').ids, true)).toBe('the park');
  });

  it('makes int32 tensors [B, maxLength] and leaks none', () => {
    const before = tf.memory().numTensors;
    const { inputIds, attentionMask } = tok.encodeToTensors(expected.map((e) => e.prompt), { maxLength: 16 });
    expect(inputIds.shape).toEqual([expected.length, 16]);
    expect(inputIds.dtype).toBe('int32');
    expect(Array.from(inputIds.dataSync().slice(0, 16))).toEqual(expected[0].ids_16);
    tf.dispose([inputIds, attentionMask]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('finds tokenizer.json in Diffusers and original Wan folders, and says where it looked', async () => {
    for (const sub of ['tokenizer', path.join('google', 'umt5-xxl')]) {
      const dir = path.join(tmp, sub.replace(/\W/g, '_'));
      fs.mkdirSync(path.join(dir, sub), { recursive: true });
      fs.copyFileSync(path.join(CASE, 'tokenizer.json'), path.join(dir, sub, 'tokenizer.json'));
      const t = await WanTokenizer.fromPretrained(dir);
      expect(t.tokenize(expected[1].prompt).ids).toEqual(expected[1].ids);
    }
    await expect(WanTokenizer.fromPretrained(tmp)).rejects.toThrow(CheckpointError);
    await expect(WanTokenizer.fromPretrained(tmp)).rejects.toThrow(/tokenizer\/tokenizer\.json/);
    expect(() => new WanTokenizer({ version: '1.0' })).toThrow(ConfigError);
  });
});

describe('promptClean', () => {
  // Outputs of Diffusers' prompt_clean (ftfy 6.3.1, Python 3.11 html.unescape).
  const reference: Array<[string, string]> = [
    ['  A cat\tsleeps\n\non the   sofa  ', 'A cat sleeps on the sofa'],
    ['it\u2019s a \u201cquoted\u201d word', 'it\'s a "quoted" word'],
    ['Tom &amp; Jerry &lt;3', 'Tom & Jerry <3'],
    ['&amp;amp;lt;', '<'],
    ['&amp;amp;amp;', '&'],
    ['\ufb01ne \ufb02owers', 'fine flowers'],
    ['\uff26\uff35\uff2c\uff2c\u3000\uff57\uff49\uff44\uff54\uff48\uff01', 'FULL width!'],
    ['caf&eacute; na&iuml;ve &EACUTE;', 'caf\u00e9 na\u00efve \u00c9'],
    ['line1\r\nline2\u2028line3', 'line1 line2 line3'],
    ['\u001b[31mred\u001b[0m text', 'red text'],
    ['zero\u200bwidth\ufeffbom', 'zero\u200bwidthbom'],
    ['&#128;&#x93;quote&#x94;', '\u20ac"quote"'],
    ['&nbsp;nbsp&nbsp', 'nbsp'],
    ['\u8272\u8c03\u8273\u4e3d\uff0c\u8fc7\u66dd\uff0c\u9759\u6001', '\u8272\u8c03\u8273\u4e3d,\u8fc7\u66dd,\u9759\u6001'],
    ['a\u00a0b\u3000c\u0085d', 'a b c\u2026d'],
    ['<b>&amp;</b> stays', '<b>&</b> stays'],
    ['e\u0301 combining', '\u00e9 combining'],
    ['&frac12; cup & &notin; &notit;', '\u00bd cup & \u2209 \u00acit;'],
  ];
  it.each(reference)('%j → %j', (input, output) => {
    expect(promptClean(input)).toBe(output);
  });

  it('unescapes numeric references by the HTML 5 rules', () => {
    expect(htmlUnescape('&#0;|&#13;|&#x80;|&#xD800;|&#1114112;|&#1;|&#65;&#x1F600;|&#;|&amp')).toBe('\ufffd|\r|\u20ac|\ufffd|\ufffd||A\u{1F600}|&#;|&');
  });

  // Outputs of Python 3.11's html.unescape on each input.
  const unescaped: Array<[string, string]> = [
    // Numeric: control codes and noncharacters dropped, 0x80–0x9F through Windows-1252 (0x81, 0x8D kept), surrogates and past U+10FFFF → U+FFFD.
    ['&#x7f;|&#x80;|&#x81;|&#x8d;|&#x9f;|&#11;|&#12;|&#31;|&#xfdd0;|&#xfdef;|&#xfdf0;|&#xfffe;|&#x1ffff;|&#1114111;|&#xdfff;|&#x110000;|&#99999999999999999999;', '|\u20ac|\u0081|\u008d|\u0178||\f||||\ufdf0||||\ufffd|\ufffd|\ufffd'],
    ['&#65x|&#x41g|&#X41;|&#0000065;|&#x;|&#|&', 'Ax|Ag|A|A|&#x;|&#|&'],
    // Named without ';': only the legacy names, also as the longest prefix of an unknown name.
    ['&amp|&ampx|&AMP;|&notit;|&not|&notin;|&ampamp;|&lt&gt|&copy2|&sup23|&frac12x|&aeligx', '&|&x|&|\u00acit;|\u00ac|\u2209|&amp;|<>|\u00a92|\u00b23|\u00bdx|\u00e6x'],
    // Unknown names that start like a known one stay as they are.
    ['&acy1;|&alpha1;|&Yumlx;|&bepsix;|&backepsilonx;|&nosuch;|&am;|&\u00e9;|&eacute|&Eacute', '&acy1;|&alpha1;|&Yumlx;|&bepsix;|&backepsilonx;|&nosuch;|&am;|&\u00e9;|\u00e9|\u00c9'],
    ['&CounterClockwiseContourIntegral;|&ThisNameIsLongerThanThirtyTwoCharactersX;|&NotEqualTilde;|&fjlig;', '\u2233|&ThisNameIsLongerThanThirtyTwoCharactersX;|\u2242\u0338|fj'],
  ];
  it.each(unescaped)('htmlUnescape(%j) is Python\'s %j', (input, output) => {
    expect(htmlUnescape(input)).toBe(output);
  });

  it("upper-cases ftfy's lower-case entity names only where the upper-case form is no reference itself", () => {
    expect(promptClean('&NTILDE; &FRAC12; &IN; &AMP; &Ntilde; &NTilde;')).toBe('\u00d1 \u00bd \u2208 & \u00d1 &NTilde;');
  });
});

describe('DEFAULT_NEGATIVE_PROMPT', () => {
  it('is the Wan sample_neg_prompt the fixture prompt was cut from', () => {
    const cut = expected.find((e) => e.prompt.startsWith('色调艳丽'))!.prompt;
    expect(DEFAULT_NEGATIVE_PROMPT.normalize('NFKC').startsWith(cut)).toBe(true);
    expect(promptClean(DEFAULT_NEGATIVE_PROMPT).startsWith(cut)).toBe(true);
    expect([...DEFAULT_NEGATIVE_PROMPT].length).toBe(137);
    expect(DEFAULT_NEGATIVE_PROMPT.split('\uff0c')).toHaveLength(28);
    expect(DEFAULT_NEGATIVE_PROMPT.endsWith('背景人很多，倒着走')).toBe(true);
  });
});
