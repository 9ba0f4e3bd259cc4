import * as tf from '@tensorflow/tfjs-core';
import { AbortError } from '../src/errors.js';
import { WanModule } from './module.js';
import { CausalCache, WanCausalConv3d, withCache } from './wan-causal-conv3d.js';
import { WanMidBlock } from './wan-mid-block.js';
import { WanResidualUpBlock } from './wan-residual-up-block.js';
import { WanRMS_norm } from './wan-rms-norm.js';
import { WanUpBlock } from './wan-up-block.js';

export interface WanDecoder3dConfig {
  /** Base width; level i has dim · reversed(dimMult)[i] channels. */
  dim: number;
  zDim: number;
  dimMult: readonly number[];
  numResBlocks: number;
  /** Per upsampling level, whether it also doubles time (the reverse of the encoder's temperalDownsample). */
  temperalUpsample: readonly boolean[];
  outChannels: number;
  /** Wan2.2: levels are WanResidualUpBlocks with DupUp3D shortcuts and channel-keeping upsamplers. */
  isResidual?: boolean;
  name?: string;
}

/** Runs `stages` to its result without pausing. */
export function runStages<T>(stages: Generator<void, T, void>): T {
  let r = stages.next();
  while (!r.done) r = stages.next();
  return r.value;
}

/**
 * Runs `stages` to its result, awaiting a macrotask at each pause, so pending timers and I/O
 * callbacks (a signal handler's abort among them) run between stages.
 */
export async function runStagesAsync<T>(stages: Generator<void, T, void>): Promise<T> {
  let r = stages.next();
  while (!r.done) {
    await new Promise<void>((resolve) => setTimeout(resolve, 0));
    r = stages.next();
  }
  return r.value;
}

/**
 * WanDecoder3d: conv_in → mid_block → up_blocks → norm_out, SiLU, conv_out. Meant to be run one latent
 * frame at a time with one CausalCache for the whole clip: latent frame 0 gives 1 frame, every later
 * one 2^(temporal upsamplings) frames.
 */
export class WanDecoder3d extends WanModule {
  static readonly className = 'WanDecoder3d';
  readonly convIn: WanCausalConv3d;
  readonly midBlock: WanMidBlock;
  readonly upBlocks: Array<WanUpBlock | WanResidualUpBlock> = [];
  readonly normOut: WanRMS_norm;
  readonly convOut: WanCausalConv3d;

  constructor(readonly config: WanDecoder3dConfig) {
    super({ name: config.name });
    const { dim, dimMult, numResBlocks, temperalUpsample } = config;
    const rev = [...dimMult].reverse();
    const dims = [dim * dimMult[dimMult.length - 1], ...rev.map((u) => dim * u)];
    const last = dimMult.length - 1;
    this.convIn = this.addModule('conv_in', new WanCausalConv3d({ inChannels: config.zDim, outChannels: dims[0], kernelSize: 3, padding: 1 }));
    this.midBlock = this.addModule('mid_block', new WanMidBlock({ dim: dims[0], numLayers: 1 }));
    for (let i = 0; i <= last; i++) {
      const upFlag = i !== last;
      const outDim = dims[i + 1];
      const name = `up_blocks.${i}`;
      if (config.isResidual) {
        this.upBlocks.push(
          this.addModule(name, new WanResidualUpBlock({ inDim: dims[i], outDim, numResBlocks, temperalUpsample: upFlag && temperalUpsample[i], upFlag })),
        );
      } else {
        const inDim = i > 0 ? Math.floor(dims[i] / 2) : dims[i];
        const upsampleMode = upFlag ? (temperalUpsample[i] ? 'upsample3d' : 'upsample2d') : undefined;
        this.upBlocks.push(this.addModule(name, new WanUpBlock({ inDim, outDim, numResBlocks, upsampleMode })));
      }
    }
    const outDim = dims[dims.length - 1];
    this.normOut = this.addModule('norm_out', new WanRMS_norm({ dim: outDim, images: false }));
    this.convOut = this.addModule('conv_out', new WanCausalConv3d({ inChannels: outDim, outChannels: config.outChannels, kernelSize: 3, padding: 1 }));
  }

  // x: [B, F, h, w, zDim] (one chunk) → [B, T, h·2^L, w·2^L, outChannels]; advances the cache by one chunk
  forward(x: tf.Tensor, cache?: CausalCache): tf.Tensor {
    return withCache(cache, (c) => runStages(this.stages(x, c)));
  }

  /**
   * forward as stages: conv_in, mid_block, each up block, then norm_out, SiLU and conv_out, with a
   * pause (a yield) before each, after which `signal` is checked (AbortError once aborted). Each
   * stage runs in its own tidy scope and its input is freed once it has run, so a caller may run
   * other tf code during a pause; on return or throw only the result (or nothing) is left, and the
   * cache, which the caller owns, has advanced by one chunk only on return.
   */
  *stages(x: tf.Tensor, cache: CausalCache, signal?: AbortSignal): Generator<void, tf.Tensor, void> {
    const steps: Array<(h: tf.Tensor) => tf.Tensor> = [
      (h) => this.convIn.forward(h, cache),
      (h) => this.midBlock.forward(h, cache),
      ...this.upBlocks.map((b) => (h: tf.Tensor) => b.forward(h, cache)),
      (h) => this.convOut.forward(this.normOut.forward(h, 'silu'), cache),
    ];
    let h = x;
    try {
      for (const step of steps) {
        yield;
        if (signal?.aborted) throw new AbortError('decoding was aborted');
        const input = h;
        h = tf.tidy(() => step(input));
        if (input !== x) input.dispose();
      }
    } catch (e) {
      if (h !== x) h.dispose();
      throw e;
    }
    cache.advance();
    return h;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig(): tf.serialization.ConfigDict {
    const c = this.config;
    return {
      ...super.getConfig(),
      dim: c.dim,
      zDim: c.zDim,
      dimMult: [...c.dimMult],
      numResBlocks: c.numResBlocks,
      temperalUpsample: [...c.temperalUpsample],
      outChannels: c.outChannels,
      isResidual: c.isResidual === true,
    };
  }
}

tf.serialization.registerClass(WanDecoder3d);
