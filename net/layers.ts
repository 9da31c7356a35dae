/**
 * Layers with PyTorch names and shapes: Conv2d, DepthwiseConv2d (a Conv2d with groups == channels
 * at the file boundary), ConvTranspose2d, BatchNorm2d, Linear, activations, and the composites
 * ConvBNAct / DeConvBNAct of the reference CANet. All take and return NHWC tensors.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { conv2d } from '../engine/ops/conv2d.js';
import { depthwiseConv2d } from '../engine/ops/depthwise.js';
import { convTranspose2d } from '../engine/ops/conv-transpose.js';
import { batchNorm2d } from '../engine/ops/batchnorm.js';
import { linear } from '../engine/ops/linear.js';
import { relu, relu6, sigmoid } from '../engine/ops/unary.js';
import { Module, Sequential } from './module.js';
import { SeededRandom, constant, kaimingNormal, uniform } from './init.js';

export type ActivationName = 'relu' | 'relu6' | 'sigmoid' | 'none';

export function activate(x: Tensor, act: ActivationName): Tensor {
  switch (act) {
    case 'relu':
      return relu(x);
    case 'relu6':
      return relu6(x);
    case 'sigmoid':
      return sigmoid(x);
    case 'none':
      return x;
  }
}

export interface Conv2dConfig {
  inChannels: number;
  outChannels: number;
  kernel: number;
  stride?: number;
  /** Default (kernel - 1) / 2 * dilation: "same" for odd kernels. */
  padding?: number;
  dilation?: number;
  groups?: number;
  bias?: boolean;
}

/** nn.Conv2d (weight [out, in/groups, k, k] in files; OHWI on the GPU). */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly config: Required<Conv2dConfig>;
  constructor(engine: Engine, cfg: Conv2dConfig, rng: SeededRandom) {
    super(engine);
    const dilation = cfg.dilation ?? 1;
    this.config = { stride: 1, padding: ((cfg.kernel - 1) / 2) * dilation, dilation, groups: 1, bias: false, ...cfg };
    const { inChannels: ci, outChannels: co, kernel: k, groups, bias } = this.config;
    const shape = [co, ci / groups, k, k];
    this.weight = this.param('weight', shape, 'conv', kaimingNormal(rng.fork('weight'), co * (ci / groups) * k * k, (co * k * k) / groups));
    this.bias = bias ? this.param('bias', [co], 'plain', constant(co, 0)) : null;
  }
  forward(x: Tensor): Tensor {
    const { stride, padding, dilation, groups } = this.config;
    return conv2d(x, this.weight, this.bias, { stride, padding, dilation, groups });
  }
}

/** A depthwise nn.Conv2d (groups == channels): weight [C, 1, k, k] in files, [k, k, C] on the GPU. */
export class DepthwiseConv2d extends Module {
  readonly weight: Tensor;
  constructor(engine: Engine, readonly channels: number, readonly kernel: number, readonly stride: number, rng: SeededRandom) {
    super(engine);
    this.weight = this.param('weight', [channels, 1, kernel, kernel], 'depthwise', kaimingNormal(rng.fork('weight'), channels * kernel * kernel, kernel * kernel));
  }
  forward(x: Tensor): Tensor {
    return depthwiseConv2d(x, this.weight, null, { stride: this.stride, padding: (this.kernel - 1) / 2 });
  }
}

/** nn.ConvTranspose2d with bias: weight [in, out, k, k] in files, [out, k, k, in] on the GPU. */
export class ConvTranspose2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(
    engine: Engine,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    readonly stride: number,
    readonly padding: number,
    readonly outputPadding: number,
    rng: SeededRandom,
  ) {
    super(engine);
    // fan_out of a transposed conv's weight [in, out, k, k] as PyTorch computes it: in * k * k.
    this.weight = this.param('weight', [inChannels, outChannels, kernel, kernel], 'convTranspose', kaimingNormal(rng.fork('weight'), inChannels * outChannels * kernel * kernel, inChannels * kernel * kernel));
    this.bias = this.param('bias', [outChannels], 'plain', constant(outChannels, 0));
  }
  forward(x: Tensor): Tensor {
    return convTranspose2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, outputPadding: this.outputPadding });
  }
}

/** nn.BatchNorm2d (eps 1e-5, momentum 0.1) over the channel axis of NHWC tensors. */
export class BatchNorm2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  numBatchesTracked = 0;
  constructor(engine: Engine, readonly channels: number, readonly eps = 1e-5, readonly momentum = 0.1) {
    super(engine);
    this.weight = this.param('weight', [channels], 'plain', constant(channels, 1));
    this.bias = this.param('bias', [channels], 'plain', constant(channels, 0));
    this.runningMean = this.buffer('running_mean', [channels], constant(channels, 0));
    this.runningVar = this.buffer('running_var', [channels], constant(channels, 1));
    this.counter('num_batches_tracked', () => this.numBatchesTracked, (v) => (this.numBatchesTracked = v));
  }
  forward(x: Tensor): Tensor {
    if (this.training) this.numBatchesTracked++;
    return batchNorm2d(x, this.weight, this.bias, this.runningMean, this.runningVar, { training: this.training, momentum: this.momentum, eps: this.eps });
  }
}

/** nn.Linear (weight [out, in], PyTorch's default uniform init). */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(engine: Engine, readonly inFeatures: number, readonly outFeatures: number, rng: SeededRandom) {
    super(engine);
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.param('weight', [outFeatures, inFeatures], 'plain', uniform(rng.fork('weight'), outFeatures * inFeatures, bound));
    this.bias = this.param('bias', [outFeatures], 'plain', uniform(rng.fork('bias'), outFeatures, bound));
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** An activation as a module (no parameters; occupies an index in a Sequential, as in PyTorch). */
export class Activation extends Module {
  constructor(engine: Engine, readonly act: ActivationName) {
    super(engine);
  }
  forward(x: Tensor): Tensor {
    return activate(x, this.act);
  }
}

/** Conv2d (no bias) -> BatchNorm2d -> activation, named .0 / .1 as the reference's ConvBNAct. */
export class ConvBNAct extends Sequential {
  constructor(engine: Engine, cfg: Omit<Conv2dConfig, 'bias'>, act: ActivationName, rng: SeededRandom) {
    const conv = cfg.groups !== undefined && cfg.groups === cfg.inChannels && cfg.groups === cfg.outChannels && cfg.groups > 1
      ? new DepthwiseConv2d(engine, cfg.inChannels, cfg.kernel, cfg.stride ?? 1, rng.fork('0'))
      : new Conv2d(engine, { ...cfg, bias: false }, rng.fork('0'));
    super(engine, [conv, new BatchNorm2d(engine, cfg.outChannels), new Activation(engine, act)]);
  }
}

/** ConvTranspose2d(k = 2s-1, stride s, pad s-1, output_padding s-1, bias) -> BN -> activation: exactly s times larger. */
export class DeConvBNAct extends Module {
  readonly upConv: Sequential;
  constructor(engine: Engine, inChannels: number, outChannels: number, scale: number, act: ActivationName, rng: SeededRandom) {
    super(engine);
    const k = 2 * scale - 1;
    this.upConv = this.add(
      'up_conv',
      new Sequential(engine, [
        new ConvTranspose2d(engine, inChannels, outChannels, k, scale, (k - 1) / 2, scale - 1, rng.fork('up_conv.0')),
        new BatchNorm2d(engine, outChannels),
        new Activation(engine, act),
      ]),
    );
  }
  forward(x: Tensor): Tensor {
    return this.upConv.forward(x);
  }
}
