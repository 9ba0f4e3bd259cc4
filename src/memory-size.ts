const UNITS: Readonly<Record<string, number>> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/**
 * Bytes of a memory size written as a whole number of bytes, or a number with a binary unit k, m, g
 * or t (optionally followed by b or ib, any case): `24g` = 24 GiB, `512m`, `1.5g`. Undefined for
 * anything else or a size under one byte (the caller's error names its variable or flag).
 */
export function memorySizeBytes(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  const bytes = m ? Math.floor(Number(m[1]) * UNITS[m[2].toLowerCase()]) : NaN;
  return Number.isSafeInteger(bytes) && bytes >= 1 ? bytes : undefined;
}
