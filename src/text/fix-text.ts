// Hand-written: ftfy is Python only, and no npm package applies its fixers with its rules.
import { decodeHTMLStrict, replaceCodePoint } from 'entities/decode';
import { htmlUnescape } from './html-unescape.js';

/**
 * ftfy's `fix_text` with its default settings (ftfy 6.x), except the encoding repair: the
 * deterministic fixers, applied per line until nothing changes. `fix_encoding` (undoing
 * mojibake such as "â€™" → "’" by guessing which codec garbled the text) is heuristic and has no
 * JavaScript port; text without mojibake is unaffected by it, text with mojibake is kept as is.
 */

/**
 * The value of a named reference `&name;` in ftfy's HTML entity table, or undefined: every `&name;`
 * of HTML 5, plus the upper-cased form of each lower-case name where that form is not a reference
 * itself (`&NTILDE;` → 'Ñ').
 */
function ftfyEntity(ref: string): string | undefined {
  const exact = decodeHTMLStrict(ref);
  if (exact !== ref) return exact;
  const lower = ref.toLowerCase();
  if (lower === ref || ref !== ref.toUpperCase() || htmlUnescape(ref) !== ref) return undefined;
  const value = decodeHTMLStrict(lower);
  return value === lower ? undefined : value.toUpperCase();
}

const ENTITY = /&#?[0-9A-Za-z]{1,24};/g;

function unescapeEntities(text: string): string {
  return text.replace(ENTITY, (ref) => {
    if (!ref.startsWith('&#')) return ftfyEntity(ref) ?? ref;
    const decoded = htmlUnescape(ref);
    return decoded.includes(';') ? ref : decoded;
  });
}

/** C1 controls read as the Windows-1252 characters they stand for (as browsers do). */
function fixC1Controls(text: string): string {
  return text.replace(/[\x80-\x9f]/g, (c) => String.fromCharCode(replaceCodePoint(c.charCodeAt(0))));
}

const LIGATURES: ReadonlyMap<string, string> = new Map([
  ['\u0132', 'IJ'], ['\u0133', 'ij'], ['\u0149', '\u02bcn'], ['\u01f1', 'DZ'], ['\u01f2', 'Dz'], ['\u01f3', 'dz'],
  ['\u01c4', 'D\u017d'], ['\u01c5', 'D\u017e'], ['\u01c6', 'd\u017e'], ['\u01c7', 'LJ'], ['\u01c8', 'Lj'], ['\u01c9', 'lj'],
  ['\u01ca', 'NJ'], ['\u01cb', 'Nj'], ['\u01cc', 'nj'], ['\ufb00', 'ff'], ['\ufb01', 'fi'], ['\ufb02', 'fl'],
  ['\ufb03', 'ffi'], ['\ufb04', 'ffl'], ['\ufb05', '\u017ft'], ['\ufb06', 'st'],
]);
const LIGATURE = new RegExp(`[${[...LIGATURES.keys()].join('')}]`, 'g');

/** Full-width and half-width forms (U+FF01–U+FFEF) to their NFKC forms; U+3000 to a space. */
function fixCharacterWidth(text: string): string {
  return text.replace(/[\u3000\uff01-\uffef]/g, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')));
}

function uncurlQuotes(text: string): string {
  return text.replace(/[\u201c-\u201f]/g, '"').replace(/[\u02bc\u2018-\u201b]/g, "'");
}

function fixLineBreaks(text: string): string {
  return text.replace(/\r\n/g, '\n').replace(/[\r\u2028\u2029\u0085]/g, '\n');
}

/** Lone UTF-16 surrogates to U+FFFD (pairs are already one code point in a JS string). */
function fixSurrogates(text: string): string {
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

/** ANSI terminal escapes (ESC [ digits/semicolons letter); Python's `\d` is any decimal digit. */
function removeTerminalEscapes(text: string): string {
  return text.replace(/\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu, '');
}

/** Control and format characters ftfy deems unintended (tab, LF, FF, CR are kept). */
function removeControlChars(text: string): string {
  return text.replace(/[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, '');
}

function fixSegment(segment: string, unescape: boolean): string {
  let text = segment;
  for (;;) {
    const before = text;
    if (unescape) text = unescapeEntities(text);
    text = fixC1Controls(text);
    text = text.replace(LIGATURE, (c) => LIGATURES.get(c) ?? c);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = fixSurrogates(text);
    text = removeTerminalEscapes(text);
    text = removeControlChars(text);
    text = text.normalize('NFC');
    if (text === before) return text;
  }
}

/**
 * ftfy.fix_text without `fix_encoding` (see above): HTML entities decoded unless the text has a
 * '<' (from the first line that has one on), C1 controls as Windows-1252, Latin ligatures split,
 * full-width forms narrowed, curly quotes straightened, line breaks to '\n', control characters
 * and terminal escapes removed, NFC.
 */
export function fixText(text: string): string {
  let unescape = true;
  const out: string[] = [];
  let pos = 0;
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos);
    const end = nl < 0 ? text.length : nl + 1;
    const segment = text.slice(pos, end);
    if (segment.includes('<')) unescape = false;
    out.push(fixSegment(segment, unescape));
    pos = end;
  }
  return out.join('');
}
