/**
 * A structural pass over JSON text that JSON.parse cannot do: it finds keys repeated within one
 * object (JSON.parse silently keeps the last) and nesting deeper than a limit, before anything is
 * allocated for the parsed value. It reads only brackets, strings and colons; on malformed text it
 * gives no verdict and leaves the syntax error to JSON.parse.
 */

/** A problem found by findJsonStructureProblem. `parent` is the key of the object holding `key` (undefined at the top level or under an array without one). */
export type JsonStructureProblem =
  | { readonly kind: 'duplicate'; readonly key: string; readonly depth: number; readonly parent: string | undefined }
  | { readonly kind: 'depth'; readonly limit: number };

interface Frame {
  /** Keys seen so far in an object; undefined for an array. */
  readonly keys: Set<string> | undefined;
  /** The key this container is the value of (an array's element inherits the array's). */
  readonly name: string | undefined;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/** Index of the quote closing the string that opens at `start`, or -1 when it is unterminated. */
function stringEnd(text: string, start: number): number {
  let from = start + 1;
  for (;;) {
    const q = text.indexOf('"', from);
    if (q < 0) return -1;
    let b = q - 1;
    while (text.charCodeAt(b) === BACKSLASH) b--;
    // an even number of backslashes before the quote: it is not escaped
    if ((q - 1 - b) % 2 === 0) return q;
    from = q + 1;
  }
}

/** The key spelled by the string token text[start..end] (escapes decoded, so "a" and "\u0061" are one key). */
function decodeKey(text: string, start: number, end: number): string {
  const raw = text.slice(start, end + 1);
  if (!raw.includes('\\')) return raw.slice(1, -1);
  try {
    const v: unknown = JSON.parse(raw);
    return typeof v === 'string' ? v : raw;
  } catch {
    return raw;
  }
}

/**
 * The first duplicate key or the first container nested deeper than `maxDepth` (the top-level
 * value is depth 1) in `text`, or undefined. Time O(text length); memory O(keys of the open objects).
 */
export function findJsonStructureProblem(text: string, maxDepth: number): JsonStructureProblem | undefined {
  const stack: Frame[] = [];
  let lastKey: string | undefined;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (end < 0) return undefined;
      const top = stack[stack.length - 1];
      if (top?.keys !== undefined) {
        let k = end + 1;
        while (k < text.length && isJsonSpace(text.charCodeAt(k))) k++;
        if (text.charCodeAt(k) === COLON) {
          const key = decodeKey(text, i, end);
          if (top.keys.has(key)) return { kind: 'duplicate', key, depth: stack.length, parent: top.name };
          top.keys.add(key);
          lastKey = key;
        }
      }
      i = end + 1;
      continue;
    }
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (stack.length >= maxDepth) return { kind: 'depth', limit: maxDepth };
      const top = stack[stack.length - 1];
      const name = top === undefined ? undefined : top.keys !== undefined ? lastKey : top.name;
      stack.push({ keys: c === OPEN_OBJECT ? new Set() : undefined, name });
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      stack.pop();
    }
    i++;
  }
  return undefined;
}

/** True when a container in `text` nests deeper than `maxDepth` (the top-level value is depth 1). Time O(text length), memory O(1). */
export function jsonNestsDeeperThan(text: string, maxDepth: number): boolean {
  let depth = 0;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (end < 0) return false;
      i = end + 1;
      continue;
    }
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++depth > maxDepth) return true;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth--;
    }
    i++;
  }
  return false;
}
