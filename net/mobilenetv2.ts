/**
 * torchvision's MobileNetV2 feature extractor (features[0:18]), split as the reference CANet
 * splits it: layer1 = features[0:4] (1/4), layer2 = [4:7] (1/8), layer3 = [7:14] (1/16),
 * layer4 = [14:18] (1/32). PyTorch's Sequential slicing keeps the original indices, so the
 * block names are layer2.4, layer2.5, ... exactly as in torchvision.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { Module, Sequential, release } from './module.js';
import { BatchNorm2d, Conv2d, ConvBNAct, canFuse, type FusedExtras } from './layers.js';
import type { SeededRandom } from './init.js';

/** torchvision's _make_divisible: round to a multiple of 8, never below 90% of the value. */
export function makeDivisible(v: number, divisor = 8): number {
  let out = Math.max(divisor, Math.floor(v + divisor / 2) - ((Math.floor(v + divisor / 2)) % divisor));
  if (out < 0.9 * v) out += divisor;
  return out;
}

/** Expand 1x1 (if t != 1) -> depthwise 3x3 -> project 1x1 (linear), with a residual when shapes allow. */
export class InvertedResidual extends Module {
  readonly conv: Sequential;
  readonly useResidual: boolean;
  private readonly expand: ConvBNAct | null;
  private readonly depthwise: ConvBNAct;
  private readonly project: Conv2d;
  private readonly projectBn: BatchNorm2d;
  constructor(engine: Engine, inp: number, oup: number, readonly stride: number, expand: number, rng: SeededRandom) {
    super(engine);
    const hidden = Math.round(inp * expand);
    this.useResidual = stride === 1 && inp === oup;
    const layers: Module[] = [];
    this.expand = expand !== 1 ? new ConvBNAct(engine, { inChannels: inp, outChannels: hidden, kernel: 1 }, 'relu6', rng.fork(`conv.${layers.length}`)) : null;
    if (this.expand) layers.push(this.expand);
    this.depthwise = new ConvBNAct(engine, { inChannels: hidden, outChannels: hidden, kernel: 3, stride, groups: hidden }, 'relu6', rng.fork(`conv.${layers.length}`));
    layers.push(this.depthwise);
    this.project = new Conv2d(engine, { inChannels: hidden, outChannels: oup, kernel: 1, bias: false }, rng.fork(`conv.${layers.length}`));
    this.projectBn = new BatchNorm2d(engine, oup);
    layers.push(this.project, this.projectBn);
    this.conv = this.add('conv', new Sequential(engine, layers as (Module & { forward(x: Tensor): Tensor })[]));
  }
  /**
   * Inference: three dispatches (expand, depthwise, project with BN and the residual in its
   * epilogue). When the expanded tensor would not fit one storage binding (features.2 at
   * 2048x1024: 192 MiB against WebGPU's default 128 MiB) the expand and depthwise run in channel
   * slices, each depthwise slice writing its channels of the (4x smaller, strided) output.
   */
  fused(x: Tensor, extras: Pick<FusedExtras, 'into'> = {}): Tensor {
    const d = this.expand ? this.expandDepthwise(x) : this.depthwise.fused(x);
    const y = this.project.fused(d, { affine: this.projectBn.folded(null), residual: this.useResidual ? x : null, ...extras });
    d.dispose();
    return y;
  }

  private expandDepthwise(x: Tensor): Tensor {
    const expand = this.expand!;
    const [n, h, w] = x.shape as [number, number, number, number];
    const hidden = expand.bn.channels;
    const limits = this.engine.limits;
    const maxBytes = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    const parts = Math.ceil((n * h * w * hidden * 4) / maxBytes);
    if (parts <= 1) {
      const e = expand.fused(x);
      const d = this.depthwise.fused(e);
      e.dispose();
      return d;
    }
    // Slices of a multiple of 4 channels keep the vec4 paths.
    const step = Math.ceil(hidden / parts / 4) * 4;
    const [ho, wo] = [Math.ceil(h / this.stride), Math.ceil(w / this.stride)];
    const d = this.engine.empty([n, ho, wo, hidden], x.dtype);
    for (let c0 = 0; c0 < hidden; c0 += step) {
      const slice: [number, number] = [c0, Math.min(step, hidden - c0)];
      const e = expand.fused(x, {}, undefined, slice);
      this.depthwise.fused(e, { into: { tensor: d, channelOffset: c0 } }, undefined, slice);
      e.dispose();
    }
    return d;
  }
  forward(x: Tensor): Tensor {
    if (canFuse(this, x)) return this.fused(x);
    if (!this.useResidual) return this.conv.forward(x);
    // Training: the skip connection joins the projection's BatchNorm pass.
    const h = this.expand ? this.expand.forward(x) : x;
    const d = this.depthwise.forward(h);
    if (h !== x) release(d, h);
    const p = release(this.project.forward(d), d);
    return release(this.projectBn.forward(p, 'none', x), p);
  }
}

/** (expansion t, channels c, repeats n, first stride s) per stage, as in the paper and torchvision. */
export const SETTINGS: [number, number, number, number][] = [
  [1, 16, 1, 1],
  [6, 24, 2, 2],
  [6, 32, 3, 2],
  [6, 64, 4, 2],
  [6, 96, 3, 1],
  [6, 160, 3, 2],
  [6, 320, 1, 1],
];

export class MobileNetV2 extends Module {
  readonly layers: Sequential[];
  /** Channels of layer1..layer4 outputs (24, 32, 96, 320 at width 1). */
  readonly channels: [number, number, number, number];
  constructor(engine: Engine, rng: SeededRandom, width = 1) {
    super(engine);
    const features: (Module & { forward(x: Tensor): Tensor })[] = [];
    let inp = makeDivisible(32 * width);
    features.push(new ConvBNAct(engine, { inChannels: 3, outChannels: inp, kernel: 3, stride: 2 }, 'relu6', rng.fork('features.0')));
    const outChannels: number[] = [inp];
    for (const [t, c, n, s] of SETTINGS) {
      const oup = makeDivisible(c * width);
      for (let i = 0; i < n; i++) {
        features.push(new InvertedResidual(engine, inp, oup, i === 0 ? s : 1, t, rng.fork(`features.${features.length}`)));
        outChannels.push(oup);
        inp = oup;
      }
    }
    const cuts = [0, 4, 7, 14, 18];
    this.layers = [0, 1, 2, 3].map((i) => this.add(`layer${i + 1}`, new Sequential(engine, features.slice(cuts[i], cuts[i + 1]), cuts[i])));
    this.channels = [outChannels[3]!, outChannels[6]!, outChannels[13]!, outChannels[17]!];
  }
  /** Returns the four stage outputs (1/4, 1/8, 1/16, 1/32). */
  forward(x: Tensor): [Tensor, Tensor, Tensor, Tensor] {
    const x1 = this.layers[0]!.forward(x);
    const x2 = this.layers[1]!.forward(x1);
    const x3 = this.layers[2]!.forward(x2);
    const x4 = this.layers[3]!.forward(x3);
    return [x1, x2, x3, x4];
  }
}
