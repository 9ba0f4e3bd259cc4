import { fixText } from './fix-text.js';
import { htmlUnescape } from './html-unescape.js';

/**
 * The characters Python's `str.isspace()` and its regex `\s` accept (JavaScript's `\s` differs:
 * it adds U+FEFF and lacks U+001C–U+001F and U+0085).
 */
const PY_WHITESPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WHITESPACE_RUN = new RegExp(`[${PY_WHITESPACE}]+`, 'g');
const LEADING = new RegExp(`^[${PY_WHITESPACE}]+`);
const TRAILING = new RegExp(`[${PY_WHITESPACE}]+$`);

/** Python's `str.strip()` with no argument. */
function pyStrip(text: string): string {
  return text.replace(LEADING, '').replace(TRAILING, '');
}

/**
 * The reference's `prompt_clean` (Diffusers `pipelines/wan/pipeline_wan.py`; Wan's
 * `HuggingfaceTokenizer(clean='whitespace')`): `ftfy.fix_text`, `html.unescape` twice, strip,
 * every whitespace run to one space, strip.
 *
 * Gap: ftfy's encoding repair (`fix_encoding`, undoing mojibake such as "â€™" → "’") is not
 * ported (see fixText); every other ftfy step is. Prompts without mojibake clean identically.
 */
export function promptClean(text: string): string {
  const basic = pyStrip(htmlUnescape(htmlUnescape(fixText(text))));
  return pyStrip(basic.replace(WHITESPACE_RUN, ' '));
}
