/**
 * Layers with PyTorch names and shapes: Conv2d, DepthwiseConv2d (a Conv2d with groups == channels
 * at the file boundary), ConvTranspose2d, BatchNorm2d, Linear, activations, and the composites
 * ConvBNAct / DeConvBNAct of the reference CANet. All take and return NHWC tensors.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { conv2d } from '../engine/ops/conv2d.js';
import { depthwiseConv2d } from '../engine/ops/depthwise.js';
import { convTranspose2d, convTranspose2dArgmax } from '../engine/ops/conv-transpose.js';
import { batchNorm2d, bnFold } from '../engine/ops/batchnorm.js';
import type { Epilogue } from '../engine/ops/epilogue.js';
import type { ActivationName } from '../engine/ops/activation.js';
import { linear } from '../engine/ops/linear.js';
import { unary } from '../engine/ops/unary.js';
import { foldHalf } from '../engine/ops/half.js';
import { Module, Sequential, derivedKey, guardDerived, release } from './module.js';
import { SeededRandom, constant, kaimingNormal, uniform } from './init.js';

/** 'none' or an activation of the table in engine/ops/activation.ts. */
export type { ActivationName };

/**
 * Whether `m` may run its fused inference kernels on `x`: eval mode (BatchNorm on running
 * statistics, so it folds into the conv) and no graph being recorded (fused kernels have no
 * backward). Otherwise modules run the separate ops, whose autograd is exact.
 */
export function canFuse(m: Module, x: Tensor): boolean {
  if (m.training) return false;
  return !(m.engine.gradEnabled && (x.requiresGrad || m.parameters().some((p) => p.requiresGrad)));
}

/** What a fused producer may add to its own folded BatchNorm and activation. */
export type FusedExtras = Pick<Epilogue, 'residual' | 'fca' | 'into'>;

/*
 * A producer (a convolution) -> BatchNorm2d -> activation layer has two paths, both derived here
 * from its three parts, so ConvBNAct and DeConvBNAct declare only their parts and naming:
 * - training, or anything recording a graph: the producer's op, then BatchNorm with the
 *   activation in its own kernels (bnActForward);
 * - inference (canFuse): one dispatch, the producer's kernel with the BatchNorm folded into its
 *   epilogue with the activation and what the caller adds (bnActEpilogue).
 */

/** The unfused path: the producer's op, then BatchNorm and the activation in the same kernels. */
function bnActForward(producer: { forward(x: Tensor): Tensor }, bn: BatchNorm2d, act: ActivationName, x: Tensor): Tensor {
  const h = producer.forward(x);
  return release(bn.forward(h, act), h);
}

/** The epilogue of the fused path: the BatchNorm folded with the producer's bias, the activation, `extras`. */
function bnActEpilogue(bias: Tensor | null, bn: BatchNorm2d, act: ActivationName, extras: FusedExtras = {}): Epilogue {
  return { affine: bn.folded(bias), act, ...extras };
}

/**
 * The f16 form of one convolution layer for the f16 inference path: its weight with the folded
 * BatchNorm's scale multiplied in (in f32, then rounded to f16) and the shift (or the conv's own
 * bias) as an f32 bias for the epilogue. Derived on first use and cached until the weight or the
 * folded affine changes (their versions); the f32 parameters stay the model's master copy, so a
 * model that runs f16 inference still trains and saves in f32.
 */
class HalfWeights {
  private cached: { key: string; weight: Tensor; bias: Tensor | null; ownsBias: boolean } | null = null;

  /** `weight`: the layer's f32 weight (read when first used: parameters are named after construction). */
  constructor(private readonly layerWeight: () => Tensor) {}

  private get name(): string {
    return this.layerWeight().name.replace(/\.weight$/, '');
  }

  /**
   * f16 weight and f32 bias for `weight` [channels * inner elements, channel (i / inner) % channels]
   * under `affine` (a folded BatchNorm, [2, channels]) or with the conv's `bias` (null: none).
   */
  /**
   * What a producer's fused kernel takes for input `x`, the one rule of the three convolution
   * layers: in f32 the layer's `weight`, its `bias` unless the epilogue's folded BatchNorm (affine)
   * absorbs it, and the epilogue as given; in f16 the f16 weight with the BatchNorm's scale in it,
   * the shift (or the bias) as the f32 bias, and no affine left in the epilogue.
   */
  operands(x: Tensor, weight: Tensor, bias: Tensor | null, epilogue: Epilogue, channels: number, inner: number): { weight: Tensor; bias: Tensor | null; epilogue: Epilogue } {
    if (x.dtype !== 'f16') return { weight, bias: epilogue.affine ? null : bias, epilogue };
    const h = this.get(weight, epilogue.affine ?? null, bias, channels, inner);
    return { ...h, epilogue: { ...epilogue, affine: null } };
  }

  get(weight: Tensor, affine: Tensor | null, bias: Tensor | null, channels: number, inner: number): { weight: Tensor; bias: Tensor | null } {
    const from = [weight, affine, bias];
    const key = derivedKey(from);
    if (this.cached?.key !== key) {
      this.release();
      const engine = weight.engine;
      const made = engine.noGrad(() => {
        const w16 = foldHalf(weight, affine, channels, inner).keep();
        w16.name = `${this.name}.f16`;
        if (!affine) return { weight: w16, bias, ownsBias: false };
        // The shift row of the affine, as the epilogue's f32 bias.
        const shift = engine.empty([channels], 'f32', `${this.name}.f16.shift`).keep();
        engine.copyBuffer(affine, channels * 4, shift, 0, channels * 4);
        return { weight: w16, bias: shift, ownsBias: true };
      });
      this.cached = { key, ...made };
    }
    // A captured plan binds the f16 copy: it must not replay once the weights changed.
    const cached = this.cached;
    guardDerived(weight.engine, from, () => this.cached === cached, () => `${this.name} changed since capture, so its f16 copy is stale`);
    return { weight: cached.weight, bias: cached.bias };
  }

  release(): void {
    if (!this.cached) return;
    this.cached.weight.dispose();
    if (this.cached.ownsBias) this.cached.bias!.dispose();
    this.cached = null;
  }
}

export function activate(x: Tensor, act: ActivationName): Tensor {
  return act === 'none' ? x : unary(act, x);
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
    // An f16 input (the f16 inference path, e.g. the plain head's classifier) takes the f16 weight.
    if (x.dtype === 'f16') return this.fused(x, {});
    const { stride, padding, dilation, groups } = this.config;
    return conv2d(x, this.weight, this.bias, { stride, padding, dilation, groups });
  }
  /**
   * Inference: the convolution with an epilogue (a folded BatchNorm replaces the bias), on
   * channels [offset, offset + count) of x if `inputChannels` is given, computing only output
   * channels [offset, offset + count) if `outputChannels` is.
   */
  fused(x: Tensor, epilogue: Epilogue, inputChannels?: [number, number], outputChannels?: [number, number]): Tensor {
    const { stride, padding, dilation, groups, outChannels, inChannels, kernel } = this.config;
    const o = this.half.operands(x, this.weight, this.bias, epilogue, outChannels, (kernel * kernel * inChannels) / groups);
    return conv2d(x, o.weight, o.bias, { stride, padding, dilation, groups, inputChannels, outputChannels }, o.epilogue);
  }
  private readonly half = new HalfWeights(() => this.weight);
  protected override releaseDerived(): void {
    this.half.release();
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
  /** Inference: the convolution with an epilogue; on channels [offset, offset + count) of the layer if `channels` is given (x holds just those). */
  fused(x: Tensor, epilogue: Epilogue, channels?: [number, number]): Tensor {
    // Depthwise weights [KH, KW, C] have the channel innermost (inner 1).
    const o = this.half.operands(x, this.weight, null, epilogue, this.channels, 1);
    return depthwiseConv2d(x, o.weight, o.bias, { stride: this.stride, padding: (this.kernel - 1) / 2, channels }, o.epilogue);
  }
  private readonly half = new HalfWeights(() => this.weight);
  protected override releaseDerived(): void {
    this.half.release();
  }
  /** There is no bias (MobileNetV2's depthwise layers are followed by BatchNorm). */
  get bias(): null {
    return null;
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
    return convTranspose2d(x, this.weight, this.bias, this.options);
  }
  /** Inference: the transposed convolution with an epilogue (a folded BatchNorm absorbs the bias). */
  fused(x: Tensor, epilogue: Epilogue): Tensor {
    const o = this.operands(x, epilogue);
    return convTranspose2d(x, o.weight, o.bias, this.options, o.epilogue);
  }
  /** What its fused kernels take for `x` under `epilogue` (HalfWeights.operands; weight [out, k, k, in] on the GPU). */
  operands(x: Tensor, epilogue: Epilogue): { weight: Tensor; bias: Tensor | null; epilogue: Epilogue } {
    return this.half.operands(x, this.weight, this.bias, epilogue, this.outChannels, this.kernel * this.kernel * this.inChannels);
  }
  get options(): { stride: number; padding: number; outputPadding: number } {
    return { stride: this.stride, padding: this.padding, outputPadding: this.outputPadding };
  }
  private readonly half = new HalfWeights(() => this.weight);
  protected override releaseDerived(): void {
    this.half.release();
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
  /** BatchNorm (+ `residual`), then `act`, in the same kernels (ConvBNAct's activation and MobileNetV2's skip connection, fused in training too). */
  forward(x: Tensor, act: ActivationName = 'none', residual: Tensor | null = null): Tensor {
    if (this.training) {
      this.numBatchesTracked++;
      this.engine.onReplay(() => this.numBatchesTracked++);
    }
    return batchNorm2d(x, this.weight, this.bias, this.runningMean, this.runningVar, { training: this.training, momentum: this.momentum, eps: this.eps, act, residual });
  }

  private fold: { affine: Tensor; key: string } | null = null;

  /**
   * This layer with the running statistics, and the bias of the convolution before it, folded
   * into a per-channel affine [2, C] for that convolution's epilogue. Cached until one of the
   * tensors it came from is written (loading weights, a training step), so steady-state
   * inference folds nothing.
   */
  folded(convBias: Tensor | null): Tensor {
    const from = [this.weight, this.bias, this.runningMean, this.runningVar, convBias];
    const key = derivedKey(from);
    if (this.fold?.key !== key) {
      const affine = bnFold(this.weight, this.bias, this.runningMean, this.runningVar, this.eps, convBias, this.fold?.affine).keep();
      affine.name = `${this.weight.name.replace(/\.weight$/, '')}.folded`;
      this.fold = { affine, key };
    }
    // A captured plan binds the folded values: it must not replay once the weights changed.
    const fold = this.fold;
    guardDerived(this.engine, from, () => this.fold === fold, () => `${this.weight.name.replace(/\.weight$/, '')} changed since capture (weights loaded or trained), so its folded BatchNorm is stale`);
    return fold.affine;
  }

  protected override releaseDerived(): void {
    this.fold?.affine.dispose();
    this.fold = null;
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

/**
 * Conv2d (no bias) -> BatchNorm2d -> activation, named .0 / .1 as the reference's ConvBNAct. In
 * inference it is one dispatch: the BatchNorm folds into the convolution's epilogue.
 */
export class ConvBNAct extends Sequential {
  readonly conv: Conv2d | DepthwiseConv2d;
  readonly bn: BatchNorm2d;
  readonly act: ActivationName;
  constructor(engine: Engine, cfg: Omit<Conv2dConfig, 'bias'>, act: ActivationName, rng: SeededRandom) {
    const conv = cfg.groups !== undefined && cfg.groups === cfg.inChannels && cfg.groups === cfg.outChannels && cfg.groups > 1
      ? new DepthwiseConv2d(engine, cfg.inChannels, cfg.kernel, cfg.stride ?? 1, rng.fork('0'))
      : new Conv2d(engine, { ...cfg, bias: false }, rng.fork('0'));
    const bn = new BatchNorm2d(engine, cfg.outChannels);
    super(engine, [conv, bn, new Activation(engine, act)]);
    this.conv = conv;
    this.bn = bn;
    this.act = act;
  }
  override forward(x: Tensor): Tensor {
    return canFuse(this, x) ? this.fused(x) : bnActForward(this.conv, this.bn, this.act, x);
  }
  /**
   * Inference: conv + BN + activation (+ extras) in one dispatch. `inputChannels` as Conv2d.fused;
   * `slice` computes only channels [offset, offset + count) of this layer (a conv's output rows; a
   * depthwise conv's channels, whose input then holds just those).
   */
  fused(x: Tensor, extras: FusedExtras = {}, inputChannels?: [number, number], slice?: [number, number]): Tensor {
    const epilogue = { ...bnActEpilogue(this.conv.bias, this.bn, this.act, extras), paramOffset: slice?.[0] };
    return this.conv instanceof Conv2d ? this.conv.fused(x, epilogue, inputChannels, slice) : this.conv.fused(x, epilogue, slice);
  }
}

/** ConvTranspose2d(k = 2s-1, stride s, pad s-1, output_padding s-1, bias) -> BN -> activation: exactly s times larger. */
export class DeConvBNAct extends Module {
  readonly upConv: Sequential;
  private readonly deconv: ConvTranspose2d;
  private readonly bn: BatchNorm2d;
  constructor(engine: Engine, inChannels: number, readonly outChannels: number, scale: number, readonly act: ActivationName, rng: SeededRandom) {
    super(engine);
    const k = 2 * scale - 1;
    this.deconv = new ConvTranspose2d(engine, inChannels, outChannels, k, scale, (k - 1) / 2, scale - 1, rng.fork('up_conv.0'));
    this.bn = new BatchNorm2d(engine, outChannels);
    this.upConv = this.add('up_conv', new Sequential(engine, [this.deconv, this.bn, new Activation(engine, act)]));
  }
  forward(x: Tensor): Tensor {
    return canFuse(this, x) ? this.fused(x) : bnActForward(this.deconv, this.bn, this.act, x);
  }
  /** Inference: deconv + BN + activation in one dispatch, optionally into a channel slice. */
  fused(x: Tensor, extras: FusedExtras = {}): Tensor {
    return this.deconv.fused(x, bnActEpilogue(this.deconv.bias, this.bn, this.act, extras));
  }
  /** Inference: class ids, the argmax over channels of fused(x), without storing the outputs (at most 20 channels). */
  fusedArgmax(x: Tensor): Tensor {
    const o = this.deconv.operands(x, bnActEpilogue(this.deconv.bias, this.bn, this.act));
    return convTranspose2dArgmax(x, o.weight, o.bias, this.deconv.options, o.epilogue);
  }
}
