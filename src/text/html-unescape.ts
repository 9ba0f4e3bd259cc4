import { decodeHTML } from 'entities/decode';

/** Python's `html._charref`: a numeric (decimal or hex) or named reference, the ';' optional. */
const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

/**
 * Whether Python's `html.unescape` decodes a numeric reference to `cp` as nothing: its
 * `_invalid_codepoints` less those `_invalid_charrefs` remaps (NUL, CR, 0x80–0x9F). Every other
 * reference decodes as the HTML 5 standard says, which `entities`' decodeHTML implements.
 */
function decodesToNothing(cp: number): boolean {
  return (cp >= 0x1 && cp <= 0x8) || cp === 0xb || (cp >= 0xe && cp <= 0x1f) || cp === 0x7f || (cp >= 0xfdd0 && cp <= 0xfdef) || (cp <= 0x10ffff && (cp & 0xfffe) === 0xfffe);
}

/** The code point of a numeric reference without its '&': `#65`, `#x41;`. */
function codePoint(ref: string): number {
  return ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
}

/**
 * Python's `html.unescape`: replaces named and numeric character references (`&amp;`, `&#62;`,
 * `&#x3e;`, legacy `&amp` without ';', the longest legacy name that prefixes an unknown one) by the
 * HTML 5 rules, including its handling of invalid numeric references (NUL, surrogates and code
 * points past U+10FFFF → U+FFFD, Windows-1252 remapping of 0x80–0x9F, other control codes and
 * noncharacters dropped).
 */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, (match: string, ref: string) => (ref[0] === '#' && decodesToNothing(codePoint(ref)) ? '' : decodeHTML(match)));
}
