import type * as tf from '@tensorflow/tfjs-core';
import type { SafetensorsFile } from '../../weights/safetensors.js';

/** A fixture's case.json (../shared/fixtures/README.md). */
export interface CaseSpec {
  case: string;
  component: string;
  description?: string;
  inputs?: string[];
  outputs?: string[];
  debug?: string[];
  shapes?: Record<string, number[]>;
  tolerance?: { atol: number; rtol: number };
  config?: Record<string, unknown>;
  layouts?: string[];
  grid?: Array<[number, number]>;
  trajectory?: { steps: number; shift: number };
  call?: Record<string, unknown>;
  [key: string]: unknown;
}

/** One fixture case, opened. */
export interface ParityCase {
  readonly name: string;
  readonly dir: string;
  readonly spec: CaseSpec;
  /** The case's io.safetensors, if it has one. */
  readonly io: SafetensorsFile | undefined;
  /** An io tensor as a tfjs tensor (caller disposes). */
  tensor(name: string): tf.Tensor;
}

/** What one run of a component produced: tensors by fixture name, in the order of the stages. */
export interface ParityVariant {
  /** e.g. the key layout ("transformer", "original"); omitted for single-variant cases. */
  label?: string;
  tensors: Array<[name: string, value: tf.Tensor | { shape: number[]; data: ArrayLike<number> }]>;
  /** Checks the handler made itself (e.g. token ids against expected.json); a failed one throws. */
  checked?: { count: number; what: string };
}

/** Runs one component on a case. Files under src/parity/handlers/ export one as default. */
export interface ParityHandler {
  readonly components: readonly string[];
  run(c: ParityCase): Promise<ParityVariant[]>;
}
