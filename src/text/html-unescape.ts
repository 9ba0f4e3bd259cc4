import { HTML5_NAMED_REFERENCES, INVALID_CHARREFS, INVALID_CODEPOINT_RANGES } from './html-entities.js';

/** Python's `html._charref`: a numeric (decimal or hex) or named reference, the ';' optional. */
const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function isInvalidCodepoint(cp: number): boolean {
  return INVALID_CODEPOINT_RANGES.some(([lo, hi]) => cp >= lo && cp <= hi);
}

function replaceNumeric(ref: string): string {
  const digits = ref.endsWith(';') ? ref.slice(0, -1) : ref;
  const cp = digits[1] === 'x' || digits[1] === 'X' ? parseInt(digits.slice(2), 16) : parseInt(digits.slice(1), 10);
  const fixed = INVALID_CHARREFS.get(cp);
  if (fixed !== undefined) return fixed;
  if ((cp >= 0xd800 && cp <= 0xdfff) || !(cp <= 0x10ffff)) return '\ufffd';
  if (isInvalidCodepoint(cp)) return '';
  return String.fromCodePoint(cp);
}

function replaceNamed(ref: string): string {
  const exact = HTML5_NAMED_REFERENCES[ref];
  if (exact !== undefined) return exact;
  // The longest known name that prefixes the reference (names without ';' are the legacy ones).
  const chars = Array.from(ref);
  for (let n = chars.length - 1; n > 1; n--) {
    const head = chars.slice(0, n).join('');
    const value = HTML5_NAMED_REFERENCES[head];
    if (value !== undefined) return value + chars.slice(n).join('');
  }
  return `&${ref}`;
}

/**
 * Python's `html.unescape`: replaces named and numeric character references (`&amp;`, `&#62;`,
 * `&#x3e;`, legacy `&amp` without ';') by the HTML 5 rules, including its handling of invalid
 * numeric references (NUL → U+FFFD, Windows-1252 remapping of 0x80–0x9F, control codes dropped).
 */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, (_match, ref: string) => (ref[0] === '#' ? replaceNumeric(ref) : replaceNamed(ref)));
}
