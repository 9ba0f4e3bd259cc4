// The memory-mode planner (issue 17, item 4) as a pure function: what it picks for stated device
// and host budgets, checked against planDeviceBytes / planHostBytes (their formulas) and against
// every cheaper mode, for random budgets and model sizes.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ExpertResidency } from '../src/pipeline/expert-slot.js';
import { planDeviceBytes, planHostBytes, planMemory, type MemoryPlanInput } from '../src/pipeline/memory-plan.js';

const GIB = 2 ** 30;

/** Wan2.2-T2V-A14B in bf16: two experts of 14.3 B parameters (28.6 GB), 40 blocks of 0.70 GB each. */
const A14B: Omit<MemoryPlanInput, 'freeBytes' | 'hostFreeBytes' | 'otherBytes'> = { expertBytes: [28.6e9, 28.6e9], blockBytes: 0.7e9, numBlocks: 40 };

const input = fc
  .record({
    experts: fc.integer({ min: 1, max: 2 }),
    numBlocks: fc.integer({ min: 1, max: 48 }),
    blockBytes: fc.integer({ min: 1, max: 2 ** 30 }),
    rest: fc.integer({ min: 0, max: 2 ** 32 }),
    skew: fc.double({ min: 0.5, max: 1, noNaN: true }),
    otherBytes: fc.integer({ min: 0, max: 2 ** 34 }),
    freeBytes: fc.integer({ min: 0, max: 2 ** 37 }),
    hostFreeBytes: fc.integer({ min: 0, max: 2 ** 38 }),
  })
  .map((r): MemoryPlanInput => {
    const expert = r.numBlocks * r.blockBytes + r.rest;
    return { expertBytes: r.experts === 1 ? [expert] : [expert, Math.max(r.numBlocks * r.blockBytes, Math.floor(expert * r.skew))], blockBytes: r.blockBytes, numBlocks: r.numBlocks, otherBytes: r.otherBytes, freeBytes: r.freeBytes, hostFreeBytes: r.hostFreeBytes };
  });

const RANK: Record<ExpertResidency, number> = { both: 0, swap: 1, active: 2 };
const fitsIn = (i: MemoryPlanInput, r: ExpertResidency, n: number) => planDeviceBytes(i, r, n) <= i.freeBytes && planHostBytes(i, r, n) <= i.hostFreeBytes;

describe('planMemory', () => {
  it('for stated budgets of the A14B (bf16, 12 GiB for the call, 200 GiB of host memory)', () => {
    const at = (free: number) => planMemory({ ...A14B, freeBytes: free * GIB, hostFreeBytes: 200 * GIB, otherBytes: 12 * GIB });
    // both: 57.2e9 + 12 GiB = 65.27 GiB
    expect(at(79)).toMatchObject({ residency: 'both', offloadBlocks: 0, fits: true });
    // one expert: 28.6e9 + 12 GiB = 38.64 GiB
    expect(at(40)).toMatchObject({ residency: 'swap', offloadBlocks: 0, fits: true });
    // 24 GiB: 38.64 GiB − (n − 2)·0.7e9 ≤ 24 GiB → n − 2 ≥ 22.47 → n = 25
    expect(at(24)).toMatchObject({ residency: 'swap', offloadBlocks: 25, fits: true });
    // 12 GiB: nothing but activations fits; every block streamed, and it says so
    const none = at(12);
    expect(none).toMatchObject({ offloadBlocks: 40, fits: false });
    expect(none.reason).toMatch(/expect an out-of-memory error/);
    expect(at(24).reason).toMatch(/^memory: residency 'swap', offloadBlocks 25 of 40: /);
    // a host that cannot pin an expert: the idle one is read from disk again
    expect(planMemory({ ...A14B, freeBytes: 40 * GIB, hostFreeBytes: 16 * GIB, otherBytes: 12 * GIB })).toMatchObject({ residency: 'active', offloadBlocks: 0 });
  });

  it('picks a mode that fits, and no cheaper one fits', () => {
    fc.assert(
      fc.property(input, (i) => {
        const p = planMemory(i);
        expect(p.deviceBytes).toBe(planDeviceBytes(i, p.residency, p.offloadBlocks));
        expect(p.fits).toBe(fitsIn(i, p.residency, p.offloadBlocks));
        if (i.expertBytes.length === 1) expect(p.residency).toBe('both');
        const residencies: ExpertResidency[] = i.expertBytes.length === 1 ? ['both'] : ['both', 'swap', 'active'];
        for (let n = 0; n <= p.offloadBlocks; n++) {
          for (const r of residencies) {
            const cheaper = n < p.offloadBlocks || RANK[r] < RANK[p.residency];
            if (cheaper && (n === 0 || r !== 'both' || residencies.length === 1)) expect(fitsIn(i, r, n)).toBe(false);
          }
        }
        if (!p.fits) expect(p.offloadBlocks).toBe(i.numBlocks);
        expect(p.reason).toMatch(/^memory: /);
      }),
      { numRuns: 500 },
    );
  });

  it('never streams more, nor holds less resident, with more device memory', () => {
    fc.assert(
      fc.property(input, fc.integer({ min: 0, max: 2 ** 36 }), (i, more) => {
        const a = planMemory(i);
        const b = planMemory({ ...i, freeBytes: i.freeBytes + more });
        expect(b.offloadBlocks).toBeLessThanOrEqual(a.offloadBlocks);
        if (b.offloadBlocks === a.offloadBlocks) expect(RANK[b.residency]).toBeLessThanOrEqual(RANK[a.residency]);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps what the user fixed and plans the rest', () => {
    fc.assert(
      fc.property(input, fc.constantFrom<ExpertResidency>('both', 'swap', 'active'), (i, residency) => {
        const p = planMemory(i, { residency });
        if (i.expertBytes.length === 2) expect(p.residency).toBe(residency);
        const q = planMemory(i, { offloadBlocks: Math.min(3, i.numBlocks) });
        expect(q.offloadBlocks).toBe(Math.min(3, i.numBlocks));
      }),
      { numRuns: 200 },
    );
  });
});
