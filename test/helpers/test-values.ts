/** A deterministic float32 array in [−2, 2) with one in 97 scaled by 20 (outliers up to ±40; never all zeros). */
export function valuesWithOutliers(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a * 1664525 + 1013904223) >>> 0;
    out[i] = (a / 2 ** 32) * 4 - 2;
    if (i % 97 === 13) out[i] *= 20;
  }
  return out;
}
