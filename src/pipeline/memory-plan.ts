import * as os from 'node:os';
import type { ComponentFamily } from '../../weights/component-layout.js';
import { openComponent } from '../../weights/component.js';
import { UMT5_FAMILY, WAN_TRANSFORMER_FAMILY, WAN_VAE_FAMILY } from '../../weights/families.js';
import type { OffloadingBackend } from '../backend/offload.js';
import { ConfigError } from '../errors.js';
import type { ExpertResidency } from './expert-slot.js';
import { memoryBudget } from './memory-budget.js';
import { estimateMemory, formatBytes } from './memory-estimate.js';
import type { ModelIndex } from './model-index.js';
import type { PipelineSpec } from './pipeline-spec.js';

/** What the memory planner decides from: device and host bytes, the experts' weights, and the rest of a call. */
export interface MemoryPlanInput {
  /** Device bytes free before the experts load (free memory, capped by WAN_CUDA_MEMORY_LIMIT). */
  freeBytes: number;
  /** Host bytes free for pinned copies (the idle expert under 'swap', streamed blocks). */
  hostFreeBytes: number;
  /** Device bytes of each expert's weights (one expert, or the two of an A14B model). */
  expertBytes: readonly number[];
  /** Device bytes of one transformer block, and the blocks of an expert. */
  blockBytes: number;
  numBlocks: number;
  /** Device bytes the rest of a call needs at its peak beside the experts: activations, the VAE, the text encoder. */
  otherBytes: number;
}

/** Which memory mode to load a pipeline in, and the one-line reason. */
export interface MemoryPlan {
  residency: ExpertResidency;
  offloadBlocks: number;
  /** Device bytes at the call's peak in this mode (planDeviceBytes). */
  deviceBytes: number;
  /** Whether deviceBytes ≤ freeBytes. */
  fits: boolean;
  reason: string;
}

/** A mode the user fixed: the planner chooses only what is left undefined. */
export interface MemoryPlanChoice {
  residency?: ExpertResidency;
  offloadBlocks?: number;
}

/**
 * Device bytes at a call's peak: the experts on the device (both, or the one in use under 'swap' and
 * 'active'), less the n streamed blocks of the expert in use but the two of them a forward holds at a
 * time (the running block and the one being prefetched), plus the rest of the call:
 * E_dev − (n − min(n, 2))·b + other.
 */
export function planDeviceBytes(input: MemoryPlanInput, residency: ExpertResidency, offloadBlocks: number): number {
  const e = input.expertBytes;
  const experts = residency === 'both' ? e.reduce((a, b) => a + b, 0) : Math.max(...e);
  return experts - (offloadBlocks - Math.min(offloadBlocks, 2)) * input.blockBytes + input.otherBytes;
}

/** Pinned host bytes of a mode: the idle expert under 'swap' (the larger, to be safe), and the streamed blocks of each expert on the device. */
export function planHostBytes(input: MemoryPlanInput, residency: ExpertResidency, offloadBlocks: number): number {
  const streamed = offloadBlocks * input.blockBytes;
  return residency === 'swap' ? Math.max(...input.expertBytes) + streamed : (residency === 'both' ? input.expertBytes.length : 1) * streamed;
}

const gib = formatBytes;

/**
 * The memory mode for a pipeline on a device with `input.freeBytes` free and a host with
 * `input.hostFreeBytes`: the first that fits both of (n streamed blocks, residency), ordered by n
 * (streaming costs every step) then residency (a swap costs once per video): 'both' experts
 * resident, 'swap' (the idle expert in pinned host memory, copied back at the boundary), 'active'
 * (the idle expert freed and read from disk again). Fields of `fixed` are kept as given. When
 * nothing fits, the plan is the last tried (every block streamed) with `fits` false: the call will
 * raise an OutOfMemoryError naming what to reduce.
 */
export function planMemory(input: MemoryPlanInput, fixed: MemoryPlanChoice = {}): MemoryPlan {
  if (input.expertBytes.length < 1 || input.expertBytes.length > 2) throw new ConfigError(`planMemory: ${input.expertBytes.length} experts, expected 1 or 2`);
  const two = input.expertBytes.length === 2;
  // cheapest first: fewer streamed blocks (a cost every step) before another residency (a cost per video)
  const residencies: ExpertResidency[] = !two ? ['both'] : fixed.residency !== undefined ? [fixed.residency] : ['both', 'swap', 'active'];
  const counts = fixed.offloadBlocks !== undefined ? [fixed.offloadBlocks] : Array.from({ length: input.numBlocks + 1 }, (_, n) => n);
  const order = counts.flatMap((n) => residencies.filter((r) => n === 0 || r !== 'both' || residencies.length === 1).map((r): [ExpertResidency, number] => [r, n]));
  const fitting = order.find(([r, n]) => planDeviceBytes(input, r, n) <= input.freeBytes && planHostBytes(input, r, n) <= input.hostFreeBytes);
  const [residency, offloadBlocks] = fitting ?? order[order.length - 1];
  const deviceBytes = planDeviceBytes(input, residency, offloadBlocks);
  const fits = fitting !== undefined;
  const free = `${gib(input.freeBytes)} free`;
  const mode = `${two ? `residency '${residency}'` : 'one expert resident'}${offloadBlocks > 0 ? `, offloadBlocks ${offloadBlocks} of ${input.numBlocks}` : ''}`;
  const why = !fits
    ? `even this needs ${gib(deviceBytes)} of the device's ${free}: expect an out-of-memory error; use a smaller size or fewer frames`
    : offloadBlocks > 0
      ? `${gib(planDeviceBytes(input, residency, 0))} with every block resident does not fit the ${free}; streaming ${offloadBlocks} blocks of ${gib(input.blockBytes)} from pinned host memory needs ${gib(deviceBytes)}`
      : residency === 'both'
        ? `${gib(deviceBytes)} (weights ${gib(input.expertBytes.reduce((a, b) => a + b, 0))} + ${gib(input.otherBytes)} for the call) fits the ${free}`
        : `both experts (${gib(planDeviceBytes(input, 'both', 0))}) do not fit the ${free}; one does (${gib(deviceBytes)}), the other ${residency === 'swap' ? 'waits in pinned host memory' : 'is read from disk again'}, swapped at the boundary`;
  return { residency, offloadBlocks, deviceBytes, fits, reason: `memory: ${mode}: ${why}` };
}

/** Device bytes of a checkpoint as backend 'cuda' stores it, one block's share, and its blocks. */
export interface CheckpointBytes {
  total: number;
  /** Bytes of the tensors under `blocks.0.` (either key layout), and the number of blocks (highest index + 1). */
  block: number;
  blocks: number;
}

/**
 * Device bytes of the tensors of the component at `location` (from the header: no data read): an
 * fp8 tensor 1 byte an element, any other `width` (the precision policy's: 2 under 'bf16', 4 under
 * 'fp32'; the few parameters kept in fp32 are counted at that width too).
 */
export function checkpointDeviceBytes(location: string, family: ComponentFamily, width: number): CheckpointBytes {
  const opened = openComponent(location, family);
  try {
    const out: CheckpointBytes = { total: 0, block: 0, blocks: 0 };
    for (const key of opened.source.keys()) {
      const info = opened.source.info(key);
      const bytes = info.shape.reduce((a, d) => a * d, 1) * (info.dtype.startsWith('F8') ? 1 : width);
      out.total += bytes;
      const block = /(?:^|\.)blocks\.(\d+)\./.exec(key);
      if (block) out.blocks = Math.max(out.blocks, Number(block[1]) + 1);
      if (block?.[1] === '0') out.block += bytes;
    }
    return out;
  } finally {
    opened.close();
  }
}

/**
 * The planner's input for loading the model `index` now: the backend's free device bytes, the
 * host's free memory, the experts' and a block's bytes (checkpointDeviceBytes at the policy's
 * width), and beside them the VAE and text encoder that load (their bytes) and the model's default
 * call's activations (estimateMemory, decoding included).
 */
export function modelMemoryInput(index: ModelIndex, spec: PipelineSpec, load: { vae: boolean; textEncoder: boolean }, backend: OffloadingBackend): MemoryPlanInput {
  const budget = memoryBudget();
  const width = budget.bytesPerElement;
  const experts = [index.transformer, index.transformer2].filter((p): p is string => p !== undefined).map((p) => checkpointDeviceBytes(p, WAN_TRANSFORMER_FAMILY, width));
  const d = spec.defaults;
  const activations = estimateMemory(spec, { batch: 1, numFrames: d.numFrames, height: d.height, width: d.width }, { decode: spec.vae !== 'none', task: 'text-to-video' }, budget).bytes;
  const vae = load.vae && index.vae ? checkpointDeviceBytes(index.vae, WAN_VAE_FAMILY, width).total : 0;
  const text = load.textEncoder && index.textEncoder ? checkpointDeviceBytes(index.textEncoder, UMT5_FAMILY, width).total : 0;
  return {
    freeBytes: backend.freeDeviceBytes(),
    hostFreeBytes: os.freemem(),
    expertBytes: experts.map((e) => e.total),
    blockBytes: Math.max(...experts.map((e) => e.block)),
    numBlocks: Math.min(...experts.map((e) => e.blocks)),
    otherBytes: activations + vae + text,
  };
}
