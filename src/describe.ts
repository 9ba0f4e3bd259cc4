/**
 * Text for messages about untrusted data (checkpoint headers, configs): a value is described by
 * its type and size, never printed whole, so a deeply nested or huge value can neither overflow
 * the stack (JSON.stringify, Array.prototype.join recurse) nor make a megabyte-long message.
 */

/** Longest string shown as itself by describeValue. */
const SHOWN_STRING = 40;

/** Characters escaped in messages: control codes (incl. newline, ESC), line separators, bidi controls, lone surrogates. */
const UNSAFE_CHARS = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]/gu;

/** n with thousands separators: 5000000 → "5,000,000". */
function count(n: number): string {
  return n.toLocaleString('en-US');
}

/**
 * `s` safe to print on one line: unsafe characters as escapes (\n, \u001b, …) and, past `max`
 * characters, cut to its first `max` followed by "… (N characters)".
 */
export function safeText(s: string, max = 200): string {
  let head = s.length > max ? s.slice(0, max) : s;
  // do not cut a surrogate pair in half
  if (head.length < s.length && /[\ud800-\udbff]$/.test(head)) head = head.slice(0, -1);
  const escaped = head.replace(UNSAFE_CHARS, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
  return head.length < s.length ? `${escaped}… (${count(s.length)} characters)` : escaped;
}

/**
 * A value from untrusted JSON by its type and size: `"F17"` (strings up to 40 characters),
 * `a string of 100,000 characters`, `the number -1`, `true`, `null`, `an array of 5,000,000
 * entries`, `an object`, `missing` (undefined).
 */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (typeof v === 'string') return v.length <= SHOWN_STRING ? `"${safeText(v)}"` : `a string of ${count(v.length)} characters`;
  if (typeof v === 'number') return `the number ${v}`;
  if (typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `an array of ${count(v.length)} ${v.length === 1 ? 'entry' : 'entries'}`;
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** Longest shape printed in full by shapeText. */
const SHOWN_DIMS = 8;

/** A shape for messages: `[2, 3]`, or its first 8 dimensions and the rank past that. */
export function shapeText(shape: readonly number[]): string {
  if (shape.length <= SHOWN_DIMS) return `[${shape.join(', ')}]`;
  return `[${shape.slice(0, SHOWN_DIMS).join(', ')}, … ${count(shape.length)} dimensions]`;
}
