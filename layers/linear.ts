import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { linear, type LinearActivation } from '../src/backend/ops.js';
import { WanModule, type Param } from './module.js';

export interface LinearConfig {
  inFeatures: number;
  outFeatures: number;
  bias?: boolean;
  name?: string;
}

/**
 * torch.nn.Linear: y = x · Wᵀ + b with W kept in PyTorch layout [out, in] (keys `weight`, `bias`).
 * Initialised as PyTorch does: U(±1/√in).
 */
export class Linear extends WanModule {
  static readonly className: string = 'Linear';
  readonly weight: Param;
  readonly bias: Param | undefined;

  constructor(readonly config: LinearConfig) {
    super({ name: config.name });
    const bound = 1 / Math.sqrt(config.inFeatures);
    this.weight = this.addParam('weight', [config.outFeatures, config.inFeatures], { init: { uniform: bound } });
    this.bias = config.bias === false ? undefined : this.addParam('bias', [config.outFeatures], { init: { uniform: bound } });
  }

  // x: [..., in] → [..., out]; activation(x · Wᵀ + b), the activation fused where the backend can
  forward(x: tf.Tensor, activation: LinearActivation = 'none'): tf.Tensor {
    return linear(x, this.weight.value, this.bias?.value, activation);
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return this.forward(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override computeOutputShape(inputShape: tfl.Shape): tfl.Shape {
    return [...inputShape.slice(0, -1), this.config.outFeatures];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), inFeatures: this.config.inFeatures, outFeatures: this.config.outFeatures, bias: this.config.bias !== false };
  }
}

tf.serialization.registerClass(Linear);
