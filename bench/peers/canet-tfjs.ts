/**
 * CANet-MobileNetV2 (compatible head) written a second time, in TensorFlow.js, as the benchmark's
 * peer: the same layers, channels, strides, paddings and parameter names as net/canet.ts,
 * net/mobilenetv2.ts and net/layers.ts (see ../../shared/NETWORK.md), so the timings compare one
 * network on two engines. Benchmark code only: the library never imports TF.js.
 *
 * The definition is split from the variables: building a PeerCANet only records the tensors it
 * needs (PyTorch names and shapes), which a test can compare with ours without TF.js; `materialize`
 * then creates the variables, from our state dict when one is given.
 *
 * Padding, exactly as PyTorch's: convolutions pass the symmetric pad (k-1)/2 as a number (TF.js's
 * 'same' pads 0 before and 1 after at stride 2, which is a different function). PyTorch's
 * ConvTranspose2d(k = 2s-1, stride s, padding s-1, output_padding s-1) is the input-gradient of a
 * stride-s convolution over the s-times-larger output with explicit padding (top/left s-1,
 * bottom/right 0): tf.conv2dTranspose with that explicit padding gives exactly s x the input size,
 * the same taps and the same FLOPs, with no crop.
 */
import type * as tfjs from '@tensorflow/tfjs-core';
import { permute } from '../../engine/layout.js';

export type TF = typeof tfjs;
type T4 = tfjs.Tensor4D;

/** How a tensor's TF.js layout relates to PyTorch's. */
export type PeerLayout = 'plain' | 'conv' | 'depthwise' | 'convTranspose';

export interface PeerTensorSpec {
  /** PyTorch state_dict name, as ours. */
  name: string;
  torchShape: number[];
  layout: PeerLayout;
  /** Trainable parameter (true) or batch-norm running statistic (false). */
  trainable: boolean;
  init: { kind: 'normal'; std: number } | { kind: 'uniform'; bound: number } | { kind: 'const'; value: number };
}

export interface PeerOptions {
  /** Number of classes K (19 for Cityscapes). */
  classes?: number;
  /** Width multiplier (1 = the reference), as ours. */
  width?: number;
}

/** PyTorch permutation into TF.js's layout: conv OIHW -> HWIO, depthwise [C,1,kh,kw] -> [kh,kw,C,1], transposed (in,out,kh,kw) -> [kh,kw,out,in]. */
const TO_TFJS: Record<PeerLayout, number[] | null> = { plain: null, conv: [2, 3, 1, 0], depthwise: [2, 3, 0, 1], convTranspose: [2, 3, 1, 0] };

export function tfjsShape(spec: Pick<PeerTensorSpec, 'torchShape' | 'layout'>): number[] {
  const perm = TO_TFJS[spec.layout];
  return perm ? perm.map((p) => spec.torchShape[p]!) : [...spec.torchShape];
}

/** Row-major permutation (out axis i = input axis perm[i]); load-time only: the engine's own. */
export function permuteData(data: Float32Array, shape: readonly number[], perm: readonly number[]): Float32Array {
  return permute(data, shape, perm).data;
}

/** PyTorch-layout data -> TF.js-layout data for a spec. */
export function torchToTfjs(spec: Pick<PeerTensorSpec, 'torchShape' | 'layout'>, data: Float32Array): Float32Array {
  const perm = TO_TFJS[spec.layout];
  return perm ? permuteData(data, spec.torchShape, perm) : data;
}

/** TF.js-layout data -> PyTorch-layout data (the inverse permutation). */
export function tfjsToTorch(spec: Pick<PeerTensorSpec, 'torchShape' | 'layout'>, data: Float32Array): Float32Array {
  const perm = TO_TFJS[spec.layout];
  if (!perm) return data;
  const inverse: number[] = [];
  perm.forEach((p, i) => (inverse[p] = i));
  return permuteData(data, tfjsShape(spec), inverse);
}

/** torchvision's _make_divisible, as net/mobilenetv2.ts. */
export function makeDivisible(v: number, divisor = 8): number {
  let out = Math.max(divisor, Math.floor(v + divisor / 2) - (Math.floor(v + divisor / 2) % divisor));
  if (out < 0.9 * v) out += divisor;
  return out;
}

type Act = 'relu' | 'relu6' | 'sigmoid' | 'none';

/** What a forward pass needs: the variables, the mode, and where batch statistics go. */
interface Ctx {
  tf: TF;
  v: (name: string) => tfjs.Tensor;
  training: boolean;
  /** Batch statistics of each BN in training mode, for the running-statistics update. */
  stats: { prefix: string; mean: tfjs.Tensor; variance: tfjs.Tensor; count: number }[];
  /** Multiply-adds of the pass, from the actual shapes. */
  macs: number;
}
type Layer = (c: Ctx, x: T4) => T4;

/** Records specs while the network is defined. */
class Definer {
  readonly specs: PeerTensorSpec[] = [];
  private add(name: string, torchShape: number[], layout: PeerLayout, trainable: boolean, init: PeerTensorSpec['init']): void {
    this.specs.push({ name, torchShape, layout, trainable, init });
  }

  /** Conv2d without bias, Kaiming normal fan_out as ours (std sqrt(2 / (co k k))). */
  conv(prefix: string, cin: number, cout: number, k: number, stride: number): Layer {
    const name = `${prefix}.weight`;
    this.add(name, [cout, cin, k, k], 'conv', true, { kind: 'normal', std: Math.sqrt(2 / (cout * k * k)) });
    const pad = (k - 1) / 2;
    return (c, x) => {
      const y = c.tf.conv2d(x, c.v(name) as T4, stride, pad);
      c.macs += y.size * cin * k * k;
      return y;
    };
  }

  depthwise(prefix: string, ch: number, k: number, stride: number): Layer {
    const name = `${prefix}.weight`;
    this.add(name, [ch, 1, k, k], 'depthwise', true, { kind: 'normal', std: Math.sqrt(2 / (k * k)) });
    const pad = (k - 1) / 2;
    return (c, x) => {
      const y = c.tf.depthwiseConv2d(x, c.v(name) as T4, stride, pad);
      c.macs += y.size * k * k;
      return y;
    };
  }

  /** ConvTranspose2d(k = 2s-1, stride s, pad s-1, output_padding s-1) with bias: exactly s x larger. */
  deconv(prefix: string, cin: number, cout: number, s: number): Layer {
    const k = 2 * s - 1;
    const w = `${prefix}.weight`;
    const b = `${prefix}.bias`;
    this.add(w, [cin, cout, k, k], 'convTranspose', true, { kind: 'normal', std: Math.sqrt(2 / (cin * k * k)) });
    this.add(b, [cout], 'plain', true, { kind: 'const', value: 0 });
    const pad: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [s - 1, 0], [s - 1, 0], [0, 0]];
    return (c, x) => {
      const [n, h, wd] = x.shape;
      const y = c.tf.add(c.tf.conv2dTranspose(x, c.v(w) as T4, [n, h * s, wd * s, cout], s, pad), c.v(b)) as T4;
      // Useful multiply-adds: taps that land inside the output (padding s-1 drops the others).
      const inRange = (len: number) => {
        let taps = 0;
        for (let t = 0; t < k; t++) for (let i = 0; i < len; i++) if (i * s + t - (s - 1) >= 0 && i * s + t - (s - 1) < len * s) taps++;
        return taps;
      };
      c.macs += n * inRange(h) * inRange(wd) * cin * cout;
      return y;
    };
  }

  /** BatchNorm2d (eps 1e-5, momentum 0.1): batch statistics in training, running ones otherwise. */
  batchNorm(prefix: string, ch: number): Layer {
    this.add(`${prefix}.weight`, [ch], 'plain', true, { kind: 'const', value: 1 });
    this.add(`${prefix}.bias`, [ch], 'plain', true, { kind: 'const', value: 0 });
    this.add(`${prefix}.running_mean`, [ch], 'plain', false, { kind: 'const', value: 0 });
    this.add(`${prefix}.running_var`, [ch], 'plain', false, { kind: 'const', value: 1 });
    return (c, x) => {
      const gamma = c.v(`${prefix}.weight`) as tfjs.Tensor1D;
      const beta = c.v(`${prefix}.bias`) as tfjs.Tensor1D;
      if (!c.training)
        return c.tf.batchNorm(x, c.v(`${prefix}.running_mean`) as tfjs.Tensor1D, c.v(`${prefix}.running_var`) as tfjs.Tensor1D, beta, gamma, 1e-5);
      const { mean, variance } = c.tf.moments(x, [0, 1, 2]);
      c.stats.push({ prefix, mean, variance, count: x.size / ch });
      return c.tf.batchNorm(x, mean as tfjs.Tensor1D, variance as tfjs.Tensor1D, beta, gamma, 1e-5);
    };
  }

  linear(prefix: string, inF: number, outF: number): (c: Ctx, x: tfjs.Tensor2D) => tfjs.Tensor2D {
    const bound = 1 / Math.sqrt(inF);
    this.add(`${prefix}.weight`, [outF, inF], 'plain', true, { kind: 'uniform', bound });
    this.add(`${prefix}.bias`, [outF], 'plain', true, { kind: 'uniform', bound });
    return (c, x) => {
      c.macs += x.shape[0] * inF * outF;
      return c.tf.add(c.tf.matMul(x, c.v(`${prefix}.weight`) as tfjs.Tensor2D, false, true), c.v(`${prefix}.bias`)) as tfjs.Tensor2D;
    };
  }

  /** ConvBNAct (the reference's CBR): `prefix.0` conv, `prefix.1` BN. */
  cbr(prefix: string, cin: number, cout: number, k: number, stride: number, act: Act, depthwise = false): Layer {
    const conv = depthwise ? this.depthwise(`${prefix}.0`, cout, k, stride) : this.conv(`${prefix}.0`, cin, cout, k, stride);
    const bn = this.batchNorm(`${prefix}.1`, cout);
    return (c, x) => activate(c, bn(c, conv(c, x)), act);
  }

  /** DeConvBNAct: `prefix.up_conv.0` transposed conv, `prefix.up_conv.1` BN, ReLU. */
  dbr(prefix: string, cin: number, cout: number, s: number): Layer {
    const up = this.deconv(`${prefix}.up_conv.0`, cin, cout, s);
    const bn = this.batchNorm(`${prefix}.up_conv.1`, cout);
    return (c, x) => activate(c, bn(c, up(c, x)), 'relu');
  }
}

function activate(c: Ctx, x: T4, act: Act): T4 {
  switch (act) {
    case 'relu':
      return c.tf.relu(x);
    case 'relu6':
      return c.tf.relu6(x);
    case 'sigmoid':
      return c.tf.sigmoid(x);
    case 'none':
      return x;
  }
}

const chain = (...layers: Layer[]): Layer => (c, x) => layers.reduce((y, l) => l(c, y), x);

/** torchvision's inverted residual: expand 1x1 (t != 1) -> depthwise 3x3 -> project 1x1 + BN, residual when shapes allow. */
function invertedResidual(d: Definer, prefix: string, inp: number, oup: number, stride: number, t: number): Layer {
  const hidden = Math.round(inp * t);
  const layers: Layer[] = [];
  let i = 0;
  if (t !== 1) layers.push(d.cbr(`${prefix}.conv.${i++}`, inp, hidden, 1, 1, 'relu6'));
  layers.push(d.cbr(`${prefix}.conv.${i++}`, hidden, hidden, 3, stride, 'relu6', true));
  layers.push(d.conv(`${prefix}.conv.${i++}`, hidden, oup, 1, 1));
  layers.push(d.batchNorm(`${prefix}.conv.${i++}`, oup));
  const body = chain(...layers);
  const residual = stride === 1 && inp === oup;
  return (c, x) => (residual ? (c.tf.add(x, body(c, x)) as T4) : body(c, x));
}

const MOBILENETV2: [number, number, number, number][] = [
  [1, 16, 1, 1],
  [6, 24, 2, 2],
  [6, 32, 3, 2],
  [6, 64, 4, 2],
  [6, 96, 3, 1],
  [6, 160, 3, 2],
  [6, 320, 1, 1],
];

export class PeerCANet {
  readonly specs: PeerTensorSpec[];
  readonly classes: number;
  readonly width: number;
  private readonly run: (c: Ctx, x: T4) => T4;
  private vars: Map<string, tfjs.Variable> | null = null;
  private tf: TF | null = null;
  /** Multiply-adds of the last forward (from the shapes it ran). */
  lastMacs = 0;

  constructor(opts: PeerOptions = {}) {
    this.classes = opts.classes ?? 19;
    this.width = opts.width ?? 1;
    const K = this.classes;
    const d = new Definer();
    const spatialCh = makeDivisible(64 * this.width);
    const fused = 4 * spatialCh;

    const spatial = chain(
      d.cbr('spatial_branch.0', 3, spatialCh, 3, 2, 'relu'),
      d.cbr('spatial_branch.1', spatialCh, spatialCh * 2, 3, 2, 'relu'),
      d.cbr('spatial_branch.2', spatialCh * 2, spatialCh * 4, 3, 2, 'relu'),
    );

    // MobileNetV2 features[0:18], named by the reference's split layer1..layer4 = [0:4] [4:7] [7:14] [14:18].
    const cuts = [0, 4, 7, 14, 18];
    const layerOf = (j: number) => cuts.findIndex((cut, i) => j >= cut && j < cuts[i + 1]!) + 1;
    const features: Layer[] = [];
    const channels: number[] = [];
    let inp = makeDivisible(32 * this.width);
    features.push(d.cbr('context_branch.backbone.layer1.0', 3, inp, 3, 2, 'relu6'));
    channels.push(inp);
    for (const [t, ch, n, s] of MOBILENETV2) {
      const oup = makeDivisible(ch * this.width);
      for (let i = 0; i < n; i++) {
        const j = features.length;
        features.push(invertedResidual(d, `context_branch.backbone.layer${layerOf(j)}.${j}`, inp, oup, i === 0 ? s : 1, t));
        channels.push(oup);
        inp = oup;
      }
    }
    const stage = (from: number, to: number) => chain(...features.slice(from, to));
    const layers = [0, 1, 2, 3].map((i) => stage(cuts[i]!, cuts[i + 1]!));
    const c16 = channels[13]!;
    const c32 = channels[17]!;
    const hid = makeDivisible(192 * this.width);
    const up1 = d.dbr('context_branch.up1', c32, hid, 2);
    const up2 = d.dbr('context_branch.up2', hid + c16, fused, 2);

    const convInit = d.cbr('fca.conv_init', 2 * fused, fused, 3, 1, 'relu');
    const sa = d.cbr('fca.sa.0', fused, 1, 3, 1, 'sigmoid');
    const fc = d.linear('fca.ca.fc', fused, fused);
    const convLast = d.cbr('fca.conv_last', fused, K, 3, 1, 'relu');
    const up = d.dbr('up', K, K, 8);

    this.specs = d.specs;
    this.run = (c, x) => {
      const tf = c.tf;
      const s = spatial(c, x);
      const x8 = layers[1]!(c, layers[0]!(c, x));
      const x16 = layers[2]!(c, x8);
      const x32 = layers[3]!(c, x16);
      const ctx = up2(c, tf.concat([up1(c, x32), x16], 3));
      const f = convInit(c, tf.concat([s, ctx], 3));
      const as = sa(c, s);
      const ac = tf.sigmoid(tf.add(fc(c, tf.max(ctx, [1, 2]) as tfjs.Tensor2D), fc(c, tf.mean(ctx, [1, 2]) as tfjs.Tensor2D)));
      const y = tf.add(tf.mul(tf.mul(f, as), tf.reshape(ac, [ac.shape[0]!, 1, 1, fused])), f) as T4;
      return up(c, convLast(c, y));
    };
  }

  /** Parameters as PyTorch counts them (running statistics excluded). */
  numParameters(): number {
    return this.specs.filter((s) => s.trainable).reduce((n, s) => n + s.torchShape.reduce((a, b) => a * b, 1), 0);
  }

  /**
   * Creates the variables. `values(spec)` may return PyTorch-layout data (e.g. from our state dict);
   * otherwise the spec's initialiser fills it from a seeded generator.
   */
  materialize(tf: TF, opts: { seed?: number; values?: (spec: PeerTensorSpec) => Float32Array | undefined } = {}): void {
    if (this.vars) throw new Error('PeerCANet.materialize: variables exist already');
    this.tf = tf;
    let state = (opts.seed ?? 1) >>> 0;
    const uniform = () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
    this.vars = new Map();
    for (const spec of this.specs) {
      const size = spec.torchShape.reduce((a, b) => a * b, 1);
      let data = opts.values?.(spec);
      if (data && data.length !== size) throw new Error(`PeerCANet.materialize: ${spec.name} has ${data.length} values, expected ${size}`);
      if (!data) {
        const init = spec.init;
        data = new Float32Array(size);
        for (let i = 0; i < size; i++) data[i] = init.kind === 'const' ? init.value : init.kind === 'normal' ? normal() * init.std : (2 * uniform() - 1) * init.bound;
      }
      this.vars.set(spec.name, tf.variable(tf.tensor(torchToTfjs(spec, data), tfjsShape(spec), 'float32'), spec.trainable, `peer/${spec.name}`));
    }
  }

  private variable(name: string): tfjs.Variable {
    const v = this.vars?.get(name);
    if (!v) throw new Error(`PeerCANet: no variable ${name}${this.vars ? '' : ' (call materialize first)'}`);
    return v;
  }

  trainableVariables(): tfjs.Variable[] {
    return this.specs.filter((s) => s.trainable).map((s) => this.variable(s.name));
  }

  /**
   * Logits [N, H, W, K] (NHWC) for images [N, H, W, 3]. In training mode the batch statistics also
   * update the running ones (momentum 0.1, unbiased variance, as PyTorch and ours; those updates
   * do not reach the loss, so no gradient flows through them). Call inside tf.tidy (or a gradient
   * function).
   */
  forward(x: T4, training: boolean): T4 {
    const tf = this.tf;
    if (!tf) throw new Error('PeerCANet.forward: call materialize first');
    const [, h, w, ch] = x.shape;
    if (ch !== 3 || h % 32 !== 0 || w % 32 !== 0) throw new Error(`PeerCANet.forward: input must be [N, H, W, 3] with H, W multiples of 32, got [${x.shape.join(', ')}]`);
    const c: Ctx = { tf, v: (name) => this.variable(name), training, stats: [], macs: 0 };
    const out = this.run(c, x);
    this.lastMacs = c.macs;
    for (const { prefix, mean, variance, count } of c.stats) {
      const rm = this.variable(`${prefix}.running_mean`);
      const rv = this.variable(`${prefix}.running_var`);
      const unbiased = tf.mul(variance, count / Math.max(1, count - 1));
      rm.assign(tf.add(tf.mul(rm, 0.9), tf.mul(mean, 0.1)) as tfjs.Tensor1D);
      rv.assign(tf.add(tf.mul(rv, 0.9), tf.mul(unbiased, 0.1)) as tfjs.Tensor1D);
    }
    return out;
  }

  /** Every tensor's current value in PyTorch's layout, by name (for comparisons). */
  async stateDict(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const spec of this.specs) out.set(spec.name, tfjsToTorch(spec, (await this.variable(spec.name).data()) as Float32Array));
    return out;
  }

  dispose(): void {
    for (const v of this.vars?.values() ?? []) v.dispose();
    this.vars = null;
  }
}
