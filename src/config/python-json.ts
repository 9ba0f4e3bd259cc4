/**
 * JSON as Python's json module writes it: standard JSON plus the bare tokens NaN, Infinity and
 * -Infinity (Diffusers writes `"lambda_min_clipped": -Infinity` into scheduler configs).
 */

/** The three tokens outside strings (a string literal is matched whole, so tokens inside it stay text). */
const PYTHON_TOKENS = /"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g;

/**
 * Parses JSON text, accepting NaN, Infinity and -Infinity outside strings. Standard JSON goes
 * straight to JSON.parse. Otherwise ±Infinity become 1e999 / -1e999 (which JSON.parse reads as
 * ±Infinity, as Python does) and NaN a marker string that the reviver turns into NaN; a marker that
 * the text itself also holds as a string is detected by counting, and another marker is tried.
 * Throws JSON.parse's SyntaxError for text that is neither.
 */
export function parsePythonJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (standardError) {
    if (!/NaN|Infinity/.test(text)) throw standardError;
    for (let attempt = 0; ; attempt++) {
      const marker = `\u0000NaN${attempt}`;
      let marked = 0;
      const replaced = text.replace(PYTHON_TOKENS, (token) => {
        if (token.startsWith('"')) return token;
        if (token === 'NaN') {
          marked++;
          return JSON.stringify(marker);
        }
        return token === 'Infinity' ? '1e999' : '-1e999';
      });
      let found = 0;
      let value: unknown;
      try {
        value = JSON.parse(replaced, (_key, v: unknown) => {
          if (v !== marker) return v;
          found++;
          return NaN;
        });
      } catch {
        throw standardError;
      }
      if (found === marked) return value;
    }
  }
}
