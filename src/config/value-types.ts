/**
 * The kinds of value a config field holds. Each is a check that also copies, so a config never
 * shares an array with what it was read from, and says what a valid value is for messages.
 */

/** A kind of config value. */
export interface ValueType<T> {
  /** What a valid value is, for messages: "a positive integer". */
  readonly expected: string;
  /** `v` as a config keeps it, or undefined when it is not valid. */
  parse(v: unknown): T | undefined;
}

/** An integer in [min, max]. */
export function integer(min: number, max = Infinity): ValueType<number> {
  const expected = max === Infinity ? (min === 1 ? 'a positive integer' : `an integer ≥ ${min}`) : `an integer in [${min}, ${max}]`;
  return { expected, parse: (v) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : undefined) };
}

/** An integer ≥ 1 (widths, counts, sizes). */
export const positiveInt = integer(1);

/** A finite number ≥ min (or > above) and ≤ max. */
export function finiteNumber(range: { readonly min?: number; readonly above?: number; readonly max?: number } = {}): ValueType<number> {
  const { min = -Infinity, above = -Infinity, max = Infinity } = range;
  return { expected: rangeText(min, above, max), parse: (v) => (typeof v === 'number' && Number.isFinite(v) && v >= min && v > above && v <= max ? v : undefined) };
}

function rangeText(min: number, above: number, max: number): string {
  if (above === 0 && max === Infinity) return 'a positive number';
  if (min > -Infinity && max < Infinity) return `a number in [${min}, ${max}]`;
  const parts = ['a number'];
  if (above > -Infinity) parts.push(`> ${above}`);
  else if (min > -Infinity) parts.push(`≥ ${min}`);
  if (max < Infinity) parts.push(`≤ ${max}`);
  return parts.join(' ');
}

/** A finite number > 0 (epsilons, shifts, standard deviations). */
export const positiveNumber = finiteNumber({ above: 0 });

/** true or false. */
export const boolean: ValueType<boolean> = { expected: 'true or false', parse: (v) => (typeof v === 'boolean' ? v : undefined) };

/** One of `values`; an alias (a name the reference maps onto one of them) reads as its value. */
export function oneOf<const V extends string>(values: readonly V[], aliases: Readonly<Record<string, V>> = {}): ValueType<V> {
  const names = values.map((v) => `"${v}"`);
  return {
    expected: names.length === 1 ? names[0] : `one of ${names.join(', ')}`,
    parse: (v) => {
      if (typeof v !== 'string') return undefined;
      const own = values.find((x) => x === v);
      return own ?? (Object.hasOwn(aliases, v) ? aliases[v] : undefined);
    },
  };
}

/** `type` or null (Python's None). */
export function nullable<T>(type: ValueType<T>): ValueType<T | null> {
  return { expected: `${type.expected} or null`, parse: (v) => (v === null ? null : type.parse(v)) };
}

/** A list of `item`s, `items` naming them in the plural for messages ("positive integers"). */
export function listOf<T>(item: ValueType<T>, items: string, options: { readonly nonEmpty?: boolean } = {}): ValueType<T[]> {
  return {
    expected: options.nonEmpty ? `a non-empty list of ${items}` : `a list of ${items}`,
    parse: (v) => {
      if (!Array.isArray(v) || (options.nonEmpty && v.length === 0)) return undefined;
      const out: T[] = [];
      for (const x of v) {
        const p = item.parse(x);
        if (p === undefined) return undefined;
        out.push(p);
      }
      return out;
    },
  };
}

/** Exactly three `item`s (a 3D size). */
export function triple<T>(item: ValueType<T>, items: string): ValueType<[T, T, T]> {
  const list = listOf(item, items);
  return {
    expected: `three ${items}`,
    parse: (v) => {
      const xs = list.parse(v);
      return xs && xs.length === 3 ? [xs[0], xs[1], xs[2]] : undefined;
    },
  };
}
