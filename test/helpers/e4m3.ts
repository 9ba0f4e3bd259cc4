import { decodeTensorBytes } from '../../weights/dtypes.js';

/** decode(code) for the 256 float8_e4m3fn codes (weights/dtypes.ts). */
export const E4M3 = decodeTensorBytes('F8_E4M3', Uint8Array.from({ length: 256 }, (_, i) => i));

/**
 * The e4m3fn code of v by definition: the finite code nearest to v (codes 0x00..0x7e are the non-negative values,
 * increasing), a tie going to the code with an even mantissa; |v| beyond 448 saturates to ±448; NaN → 0x7f.
 */
export function nearestE4m3(v: number): number {
  if (Number.isNaN(v)) return 0x7f;
  const sign = v < 0 || Object.is(v, -0) ? 0x80 : 0;
  const a = Math.abs(v);
  if (a >= 448) return sign | 0x7e;
  let lo = 0;
  let hi = 0x7e;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (E4M3[mid] <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - E4M3[lo];
  const dh = E4M3[hi] - a;
  return sign | (dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi);
}
