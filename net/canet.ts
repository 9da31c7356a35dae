/**
 * CANet (Liu & Yin 2019) exactly as ../shared/NETWORK.md fixes it, with the PyTorch names of the
 * public re-implementation (zh320/realtime-semantic-segmentation-pytorch, models/canet.py):
 * a shallow spatial branch (1/8), a deep context branch (backbone + two x2 deconvs, 1/8), and the
 * Feature Cross Attention module fusing them with a spatial map from the shallow branch and a
 * channel vector from the deep one. All tensors are NHWC.
 */
import type { Engine } from '../engine/engine.js';
import { ShapeError, fmtShape } from '../engine/errors.js';
import type { Tensor } from '../engine/tensor.js';
import { concat, copyChannelsInto, slice } from '../engine/ops/concat.js';
import { channelAttentionInference, fcaFuse } from '../engine/ops/fca.js';
import { globalAvgPool, globalMaxPool } from '../engine/ops/pool.js';
import { add } from '../engine/ops/basic.js';
import { sigmoid } from '../engine/ops/unary.js';
import { argmax } from '../engine/ops/softmax.js';
import { resizeBilinear, resizeBilinearArgmax } from '../engine/ops/upsample.js';
import { full } from '../engine/ops/basic.js';
import { Module, Sequential, release } from './module.js';
import { Conv2d, ConvBNAct, DeConvBNAct, Linear, canFuse, type FusedExtras } from './layers.js';
import { MobileNetV2, makeDivisible } from './mobilenetv2.js';
import { ResNet } from './resnet.js';
import { SeededRandom } from './init.js';
import { checkCANetOptions } from './spec.js';
import { buildAtomically } from './module.js';
import { cast } from '../engine/ops/half.js';

export type BackboneName = 'mobilenetv2' | 'resnet18' | 'resnet101';
/** Storage precision of inference: 'f32' (default), or 'f16' where the adapter has shader-f16 (see CANet.half). */
export type Precision = 'f32' | 'f16';

/** Per-call options of CANet.segment. */
export interface SegmentOptions {
  /** Overrides the model's inference precision (see CANet.half) for this call. */
  precision?: Precision;
}
export type HeadName = 'compatible' | 'plain';

export interface CANetOptions {
  backbone?: BackboneName;
  /** Number of classes K (19 for Cityscapes). */
  classes?: number;
  /**
   * 'compatible' (default): the reference's head, conv3x3 -> BN -> ReLU then a x8 deconv -> BN -> ReLU
   * (so logits are non-negative); loads the reference's checkpoints. 'plain': conv3x3 with bias and a
   * parameter-free bilinear x8 upsampling, logits unconstrained: better for training from scratch.
   */
  head?: HeadName;
  /** Width multiplier for every layer (1 = the reference; 0.5 halves channels, ~4x fewer FLOPs). */
  width?: number;
  /** Seed of the deterministic initialisation. */
  seed?: number;
  /** Pad inputs whose sides are not multiples of 32 (zeros at the bottom/right) and crop the output back, instead of throwing. */
  padInput?: boolean;
}

/** Three stride-2 ConvBNAct(3x3, ReLU): 3 -> 64 -> 128 -> 256 channels at 1/8 resolution. */
export class SpatialBranch extends Sequential {
  private readonly stages: ConvBNAct[];
  constructor(engine: Engine, channels: number, rng: SeededRandom) {
    const stages = [
      new ConvBNAct(engine, { inChannels: 3, outChannels: channels, kernel: 3, stride: 2 }, 'relu', rng.fork('0')),
      new ConvBNAct(engine, { inChannels: channels, outChannels: channels * 2, kernel: 3, stride: 2 }, 'relu', rng.fork('1')),
      new ConvBNAct(engine, { inChannels: channels * 2, outChannels: channels * 4, kernel: 3, stride: 2 }, 'relu', rng.fork('2')),
    ];
    super(engine, stages);
    this.stages = stages;
  }
  /** Inference: three dispatches, the last writing into `extras.into` (the FCA's concatenation). */
  fused(x: Tensor, extras: Pick<FusedExtras, 'into'>): Tensor {
    const a = this.stages[0]!.fused(x);
    const b = this.stages[1]!.fused(a);
    a.dispose();
    const s = this.stages[2]!.fused(b, extras);
    b.dispose();
    return s;
  }
}

/** Backbone, then up1 = DBR(C32 -> hid, x2) and up2 = DBR(concat(up1, C16) -> out, x2): 1/8 resolution. */
export class ContextBranch extends Module {
  readonly backbone: MobileNetV2 | ResNet;
  readonly up1: DeConvBNAct;
  readonly up2: DeConvBNAct;
  constructor(engine: Engine, backbone: BackboneName, outChannels: number, hidChannels: number, width: number, rng: SeededRandom) {
    super(engine);
    const r = rng.fork('backbone');
    this.backbone = this.add('backbone', backbone === 'mobilenetv2' ? new MobileNetV2(engine, r, width) : new ResNet(engine, backbone === 'resnet18' ? 18 : 101, r, width));
    const [, , c16, c32] = this.backbone.channels;
    this.up1 = this.add('up1', new DeConvBNAct(engine, c32, hidChannels, 2, 'relu', rng.fork('up1')));
    this.up2 = this.add('up2', new DeConvBNAct(engine, hidChannels + c16, outChannels, 2, 'relu', rng.fork('up2')));
  }
  /**
   * Inference: the backbone, up1 written straight into its concatenation with C16 (C16 copied
   * beside it), and up2 written into `extras.into` (the FCA's concatenation).
   */
  fused(x: Tensor, extras: Pick<FusedExtras, 'into'>): Tensor {
    const [x4, x8, x16, x32] = this.backbone.forward(x);
    x4.dispose();
    x8.dispose();
    const [n, h, w, c16] = x16.shape as [number, number, number, number];
    const hid = this.up1.outChannels;
    const cat = this.engine.empty([n, h, w, hid + c16], x16.dtype, 'context_branch.cat');
    this.up1.fused(x32, { into: { tensor: cat, channelOffset: 0 } });
    x32.dispose();
    copyChannelsInto(x16, cat, hid);
    x16.dispose();
    const out = this.up2.fused(cat, extras);
    cat.dispose();
    return out;
  }
  forward(x: Tensor): Tensor {
    const [x4, x8, x16, x32] = this.backbone.forward(x);
    // Tensors are freed early only where no graph node holds them: the backbone's side outputs
    // when the backbone recorded no graph, up1's input and output and C16 when the concatenation
    // recorded none, up2's input when up2 recorded none. A frozen backbone (fine-tuning) records
    // no graph while up1 and up2 still train, so those must stay.
    if (!x32.requiresGrad) {
      x4.dispose();
      x8.dispose();
    }
    const u1 = this.up1.forward(x32);
    const cat = concat([u1, x16], -1);
    if (!cat.requiresGrad) [u1, x16, x32].forEach((t) => t.dispose());
    const out = this.up2.forward(cat);
    if (!out.requiresGrad) cat.dispose();
    return out;
  }
}

/** A_s = sigmoid(BN(conv3x3(S) -> 1 channel)): where to look, from the detail branch. */
export class SpatialAttention extends Sequential {
  readonly cba: ConvBNAct;
  constructor(engine: Engine, channels: number, rng: SeededRandom) {
    const cba = new ConvBNAct(engine, { inChannels: channels, outChannels: 1, kernel: 3 }, 'sigmoid', rng.fork('0'));
    super(engine, [cba]);
    this.cba = cba;
  }
}

/** A_c = sigmoid(FC(maxpool(X)) + FC(avgpool(X))), one shared Linear: which channels matter, from the context branch. */
export class ChannelAttention extends Module {
  readonly fc: Linear;
  constructor(engine: Engine, channels: number, rng: SeededRandom) {
    super(engine);
    this.fc = this.add('fc', new Linear(engine, channels, channels, rng.fork('fc')));
  }
  forward(x: Tensor): Tensor {
    const mx = globalMaxPool(x);
    const av = globalAvgPool(x);
    const fm = release(this.fc.forward(mx), mx);
    const fa = release(this.fc.forward(av), av);
    const sum = release(add(fm, fa), fm, fa);
    return release(sigmoid(sum), sum);
  }
}

/** Feature Cross Attention: F = CBR(concat(S, X)); Y = F * A_s * A_c + F; then the classifier conv. */
export class FCA extends Module {
  readonly convInit: ConvBNAct;
  readonly sa: SpatialAttention;
  readonly ca: ChannelAttention;
  readonly convLast: ConvBNAct | Conv2d;
  constructor(engine: Engine, channels: number, classes: number, head: HeadName, rng: SeededRandom) {
    super(engine);
    this.convInit = this.add('conv_init', new ConvBNAct(engine, { inChannels: 2 * channels, outChannels: channels, kernel: 3 }, 'relu', rng.fork('conv_init')));
    this.sa = this.add('sa', new SpatialAttention(engine, channels, rng.fork('sa')));
    this.ca = this.add('ca', new ChannelAttention(engine, channels, rng.fork('ca')));
    this.convLast = this.add(
      'conv_last',
      head === 'compatible'
        ? new ConvBNAct(engine, { inChannels: channels, outChannels: classes, kernel: 3 }, 'relu', rng.fork('conv_last'))
        : new Conv2d(engine, { inChannels: channels, outChannels: classes, kernel: 3, bias: true }, rng.fork('conv_last')),
    );
  }
  /**
   * Inference on cat = concat(S, X) as the branches wrote it: A_s from S's channels, A_c from X's
   * (two dispatches), then conv_init with BN, ReLU and the FCA product in its epilogue, then the
   * classifier conv: five dispatches.
   */
  fused(cat: Tensor): Tensor {
    const c = this.ca.fc.inFeatures;
    const as = this.sa.cba.fused(cat, {}, [0, c]);
    const ac = channelAttentionInference(cat, c, this.ca.fc.weight, this.ca.fc.bias);
    const y = this.convInit.fused(cat, { fca: { as, ac } });
    as.dispose();
    ac.dispose();
    const z = this.convLast.forward(y);
    y.dispose();
    return z;
  }
  forward(s: Tensor, x: Tensor): Tensor {
    const cat = concat([s, x], -1);
    const f = this.convInit.forward(cat);
    const as = this.sa.forward(s);
    const ac = this.ca.forward(x);
    const y = fcaFuse(f, as, ac);
    if (!y.requiresGrad) [cat, f, as, ac].forEach((t) => t.dispose());
    const z = this.convLast.forward(y);
    if (!z.requiresGrad) y.dispose();
    return z;
  }
}

export class CANet extends Module {
  readonly spatialBranch: SpatialBranch;
  readonly contextBranch: ContextBranch;
  readonly fca: FCA;
  readonly up: DeConvBNAct | null;
  readonly options: Required<CANetOptions>;
  private inferencePrecision: Precision = 'f32';

  constructor(engine: Engine, opts: CANetOptions = {}) {
    super(engine);
    this.options = { backbone: 'mobilenetv2', classes: 19, head: 'compatible', width: 1, seed: 0, padInput: false, ...opts };
    const { backbone, classes, head, width, seed } = this.options;
    // Every option is checked before anything is allocated (an unknown backbone or head used to
    // build ResNet-101 or the plain head silently).
    const problem = checkCANetOptions({ backbone, classes, head, width });
    if (problem) throw new ShapeError(`canet: ${problem}`);
    const rng = new SeededRandom(seed);
    const spatial = makeDivisible(64 * width);
    const fused = 4 * spatial; // the FCA works on the spatial branch's 4x width (256 at width 1)
    // If building fails part way (out of memory, a buffer over the device's limits), every tensor
    // made so far is released: a refused construction leaves nothing allocated.
    const built = buildAtomically(() => {
      const spatialBranch = this.add('spatial_branch', new SpatialBranch(engine, spatial, rng.fork('spatial_branch')));
      const contextBranch = this.add('context_branch', new ContextBranch(engine, backbone, fused, makeDivisible(192 * width), width, rng.fork('context_branch')));
      const fca = this.add('fca', new FCA(engine, fused, classes, head, rng.fork('fca')));
      const up = head === 'compatible' ? this.add('up', new DeConvBNAct(engine, classes, classes, 8, 'relu', rng.fork('up'))) : null;
      return { spatialBranch, contextBranch, fca, up };
    });
    this.spatialBranch = built.spatialBranch;
    this.contextBranch = built.contextBranch;
    this.fca = built.fca;
    this.up = built.up;
    this.nameTensors();
  }

  /** Logits [N, H, W, K] at input resolution for an NHWC image batch [N, H, W, 3] (ImageNet-normalised). */
  forward(x: Tensor): Tensor {
    const [n, h, w] = this.checkInput(x, 'forward');
    if (h % 32 !== 0 || w % 32 !== 0) return this.padded(x, n, h, w, (p) => this.forward(p));
    const z = this.trunk(x);
    const out = this.up ? this.up.forward(z) : resizeBilinear(z, h, w);
    if (!out.requiresGrad) z.dispose();
    return out;
  }

  /**
   * Runs `segment` in half precision from now on (where the adapter has `shader-f16`): weights
   * and activations stored in f16, halving the memory traffic, with every product accumulated in
   * f32 and each BatchNorm folded into its conv's weight in f32 before the weight is rounded to f16
   * (see engine/ops/storage.ts). Returns the model. Class ids agree with f32 inference on >= 99.5%
   * of pixels (demo weights, sample image; measured in bench/RESULTS.md).
   *
   * A per-model switch rather than an engine-wide one, and not a conversion of the parameters as
   * PyTorch's `half()` is: the f32 parameters stay the master copy (training, `forward`,
   * `stateDict` and saving are unchanged), the f16 weights are derived from them on the first f16
   * call and re-derived when they change, so one engine can hold an f32 model being trained and
   * an f16 one serving, or switch one model back with `float()`.
   *
   * Only eval-mode `segment` uses it (in train mode, or with more than 20 classes on the compatible
   * head, segment runs in f32); `forward` always returns f32 logits.
   * @throws FeatureError naming the adapter when the device has no `shader-f16` (SwiftShader).
   */
  half(): this {
    this.engine.requireF16('canet.half');
    this.inferencePrecision = 'f16';
    return this;
  }

  /** Back to f32 inference (the default; see half). Returns the model. */
  float(): this {
    this.inferencePrecision = 'f32';
    return this;
  }

  /** The storage precision `segment` runs in: 'f32', or 'f16' after half(). */
  get precision(): Precision {
    return this.inferencePrecision;
  }

  /**
   * Class ids [N, H, W] (i32), inference only. In eval mode the head's argmax is fused into its
   * last kernel (the x8 transposed conv, or the bilinear x8 of the plain head), so the full-size
   * logits, the largest tensor of the network, are never stored: a 2048x1024 image segments on
   * an adapter with WebGPU's default 128 MiB binding limit. `opts.precision` overrides the
   * model's precision (see half) for this call.
   */
  segment(x: Tensor, opts: SegmentOptions = {}): Tensor {
    const [n, h, w] = this.checkInput(x, 'segment');
    const precision = opts.precision ?? this.inferencePrecision;
    if (precision !== 'f32') {
      if (precision !== 'f16') throw new ShapeError(`canet.segment: precision must be 'f32' or 'f16', got ${JSON.stringify(precision)}`);
      this.engine.requireF16('canet.segment');
    }
    return this.engine.noGrad(() =>
      this.engine.scope(() => {
        if (h % 32 !== 0 || w % 32 !== 0) return this.padded(x, n, h, w, (p) => this.segment(p, opts));
        if (!canFuse(this, x) || (this.up && this.options.classes > 20)) return argmax(this.forward(x));
        // f16: the image is converted once, and every fused layer follows its input's dtype
        // (layers.ts: f16 input -> f16 weights); the x8 head reads f16 and stores class ids.
        const z = this.trunk(precision === 'f16' ? cast(x, 'f16') : x);
        return this.up ? this.up.fusedArgmax(z) : resizeBilinearArgmax(cast(z, 'f32'), h, w);
      }),
    );
  }

  /** Validates an image batch; returns [N, H, W]. */
  private checkInput(x: Tensor, what: string): [number, number, number] {
    // Checked before anything runs: the first op would refuse these too, but only after the
    // model had allocated its concatenation buffers or folded its BatchNorms.
    if (x.engine !== this.engine) throw new ShapeError(`canet.${what}: input ${x.name} belongs to another engine than the model`);
    if (x.disposed) throw new ShapeError(`canet.${what}: input ${x.name} ${fmtShape(x.shape)} was disposed`);
    if (x.dtype !== 'f32') throw new ShapeError(`canet.${what}: input ${x.name} must be f32 (an ImageNet-normalised image), got ${x.dtype}`);
    const [n, h, w, c] = x.shape as [number, number, number, number];
    if (x.rank !== 4 || c !== 3)
      throw new ShapeError(`canet.${what}: input ${x.name} must be NHWC [N, H, W, 3], got ${fmtShape(x.shape)}`);
    if ((h % 32 !== 0 || w % 32 !== 0) && !this.options.padInput)
      throw new ShapeError(
        `canet.${what}: input height and width must be multiples of 32 (the backbone downsamples 32x), got ${h}x${w}; resize the image or create the model with { padInput: true }`,
      );
    return [n, h, w];
  }

  /** Everything before the head: Z [N, H/8, W/8, K], the FCA's classifier output. */
  private trunk(x: Tensor): Tensor {
    const [n, h, w] = x.shape as [number, number, number, number];
    if (canFuse(this, x)) {
      // Inference: both branches write their 1/8 outputs into one tensor, the FCA's concatenation.
      const c = this.fca.ca.fc.inFeatures;
      const cat = this.engine.empty([n, h / 8, w / 8, 2 * c], x.dtype, 'fca.cat');
      this.spatialBranch.fused(x, { into: { tensor: cat, channelOffset: 0 } });
      this.contextBranch.fused(x, { into: { tensor: cat, channelOffset: c } });
      const z = this.fca.fused(cat);
      cat.dispose();
      return z;
    }
    const s = this.spatialBranch.forward(x);
    const ctx = this.contextBranch.forward(x);
    const z = this.fca.forward(s, ctx);
    if (!z.requiresGrad) {
      s.dispose();
      ctx.dispose();
    }
    return z;
  }

  /** Zero-pads the bottom and right to multiples of 32, runs `fn`, and crops its output back to h x w. */
  private padded(x: Tensor, n: number, h: number, w: number, fn: (p: Tensor) => Tensor): Tensor {
    const H = Math.ceil(h / 32) * 32;
    const W = Math.ceil(w / 32) * 32;
    return this.engine.scope(() => {
      let p = x;
      if (H > h) p = concat([p, full(this.engine, [n, H - h, w, 3], 0)], 1);
      if (W > w) p = concat([p, full(this.engine, [n, H, W - w, 3], 0)], 2);
      const y = fn(p);
      return slice(slice(y, 1, 0, h), 2, 0, w);
    });
  }
}

/** Builds CANet; `canet(engine, { backbone: 'mobilenetv2', classes: 19 })` is the reference model (4,774,186 parameters). */
export function canet(engine: Engine, opts: CANetOptions = {}): CANet {
  return new CANet(engine, opts);
}
