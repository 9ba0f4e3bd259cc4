/**
 * Gradient checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost"; the
 * `gradient_checkpointing` of Diffusers' WanTransformer3DModel, one checkpoint per block): the
 * forward pass of a block keeps only its inputs; its activations are recomputed in the backward
 * pass. In tfjs this is a tf.customGrad whose gradient re-runs the block under the tape.
 *
 * Ops inside a customGrad forward are not taped, so every tensor the block reads must be an input
 * of the custom op: the tensors found in the call's arguments (nested in arrays or plain objects)
 * and the block's trainable variables. Frozen variables are read directly (they outlive the step).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import type { WanModule } from '../../layers/module.js';

type Leaf = { tensorIndex: number };

/** Replaces every tensor in a nested value with a placeholder, collecting the tensors in order. */
function flatten(value: unknown, out: tf.Tensor[]): unknown {
  if (value instanceof tf.Tensor) {
    out.push(value);
    return { tensorIndex: out.length - 1 } satisfies Leaf;
  }
  if (Array.isArray(value)) return value.map((v) => flatten(v, out));
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, flatten(v, out)]));
  }
  return value;
}

function isLeaf(v: unknown): v is Leaf {
  return v !== null && typeof v === 'object' && Object.keys(v).length === 1 && typeof (v as Leaf).tensorIndex === 'number';
}

/** Puts tensors back where flatten found them. */
function unflatten(value: unknown, tensors: readonly tf.Tensor[]): unknown {
  if (isLeaf(value)) return tensors[value.tensorIndex];
  if (Array.isArray(value)) return value.map((v) => unflatten(v, tensors));
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unflatten(v, tensors)]));
  }
  return value;
}

/** The tf.Variables behind a module's trainable weights. */
export function trainableVariables(module: WanModule): tf.Variable[] {
  return module.trainableWeights.map((w) => {
    const v = w.read();
    if (!(v instanceof tf.Variable)) throw new ConfigError(`weight '${w.name}' is not backed by a tf.Variable`);
    return v;
  });
}

/**
 * Wraps `fn` so that a backward pass through it recomputes its activations instead of storing them.
 * `variables()` lists the trainable variables `fn` reads (asked at each call, so freezing or adding
 * LoRA weights later is seen). Gradients equal those of `fn` itself.
 * fn: (...args) → one tensor; args may nest tensors in arrays and plain objects.
 */
export function checkpoint<A extends unknown[]>(
  fn: (...args: A) => tf.Tensor,
  variables: () => tf.Variable[],
): (...args: A) => tf.Tensor {
  return (...args: A) => {
    const inputs: tf.Tensor[] = [];
    const skeleton = flatten(args, inputs);
    const vars = variables();
    const { gradientDepth, kernelDepth } = tf.engine().state;
    if (gradientDepth === 0 || kernelDepth > 0) return fn(...args);
    const nIn = inputs.length;
    const run = (ins: readonly tf.Tensor[]) => fn(...(unflatten(skeleton, ins) as A));
    const op = tf.customGrad((...opArgs: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const save = opArgs[opArgs.length - 1] as tf.GradSaveFunc;
      const ins = opArgs.slice(0, nIn) as tf.Tensor[];
      save(ins);
      return {
        value: run(ins),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const xs = [...saved, ...vars];
          // The outer backward runs at gradient depth 0, where a nested engine.gradients starts a
          // fresh tape and clears it when done; keep the outer tape aside so its cleanup still runs.
          const state = tf.engine().state;
          const outerTape = state.activeTape;
          const { value, grads } = tf.engine().gradients(() => run(saved), xs, dy, true);
          state.activeTape = outerTape;
          value.dispose();
          return grads.map((g, i) => g ?? tf.zerosLike(xs[i]));
        },
      };
    });
    return op(...inputs, ...vars);
  };
}

/** A module with a forward method (a transformer block). */
export interface HasForward {
  forward(...args: never[]): tf.Tensor;
}

/**
 * Turns on gradient checkpointing for each block: its `forward` is replaced on the instance by a
 * checkpointed one reading the block's trainable variables. Returns a function that turns it off.
 * Outside a gradient computation the wrapped forward is the plain one.
 */
export function enableGradientCheckpointing(blocks: ReadonlyArray<WanModule & HasForward>): () => void {
  const restore: Array<() => void> = [];
  for (const block of blocks) {
    const plain = block.forward;
    const wrapped = checkpoint((...args: never[]) => plain.apply(block, args), () => trainableVariables(block));
    Object.defineProperty(block, 'forward', { value: wrapped, configurable: true, writable: true });
    restore.push(() => {
      delete (block as { forward?: unknown }).forward;
    });
  }
  return () => restore.forEach((r) => r());
}
