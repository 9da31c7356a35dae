/**
 * torchvision ResNet-18 (basic blocks) and ResNet-101 (bottlenecks, stride on the 3x3 as in
 * torchvision's "v1.5"), with torchvision's names: conv1, bn1, layer1..4 (.N.conv1, .bn1, ...,
 * .downsample.0/.1). Returns the four stage outputs like the MobileNetV2 backbone.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { add } from '../engine/ops/basic.js';
import { relu } from '../engine/ops/unary.js';
import { maxPool2d } from '../engine/ops/pool.js';
import { cast } from '../engine/ops/half.js';
import { Module, Sequential, release } from './module.js';
import { BatchNorm2d, Conv2d, canFuse } from './layers.js';
import type { SeededRandom } from './init.js';

type Forward = Module & { forward(x: Tensor): Tensor };

/** relu(y + identity); frees y (and a downsampled identity) when no graph is recorded. */
function residualJoin(identity: Tensor, y: Tensor, ownsIdentity: boolean): Tensor {
  const sum = release(add(y, identity), y, ...(ownsIdentity ? [identity] : []));
  return release(relu(sum), sum);
}

/** Applies `fns` in order, freeing each intermediate when no graph is recorded. */
function chain(x: Tensor, ...fns: ((t: Tensor) => Tensor)[]): Tensor {
  let y = x;
  for (const f of fns) {
    const next = f(y);
    if (y !== x) release(next, y);
    y = next;
  }
  return y;
}

class Downsample extends Sequential {
  private readonly conv: Conv2d;
  private readonly bn: BatchNorm2d;
  constructor(engine: Engine, inp: number, oup: number, stride: number, rng: SeededRandom) {
    const conv = new Conv2d(engine, { inChannels: inp, outChannels: oup, kernel: 1, stride, padding: 0 }, rng.fork('0'));
    const bn = new BatchNorm2d(engine, oup);
    super(engine, [conv, bn]);
    this.conv = conv;
    this.bn = bn;
  }
  /** Inference: conv + folded BN in one dispatch. */
  fused(x: Tensor): Tensor {
    return this.conv.fused(x, { affine: this.bn.folded(null) });
  }
}

/** Inference: conv + folded BN (+ residual) + ReLU in one dispatch. */
function convBn(conv: Conv2d, bn: BatchNorm2d, x: Tensor, act: 'relu' | 'none', residual: Tensor | null = null): Tensor {
  return conv.fused(x, { affine: bn.folded(conv.bias), act, residual });
}

/** The identity path of a block in inference, and whether the block owns (must free) it. */
function fusedIdentity(downsample: Downsample | null, x: Tensor): [Tensor, boolean] {
  return downsample ? [downsample.fused(x), true] : [x, false];
}

export class BasicBlock extends Module {
  static expansion = 1;
  private readonly conv1: Conv2d;
  private readonly bn1: BatchNorm2d;
  private readonly conv2: Conv2d;
  private readonly bn2: BatchNorm2d;
  private readonly downsample: Downsample | null;
  constructor(engine: Engine, inp: number, planes: number, stride: number, rng: SeededRandom) {
    super(engine);
    this.conv1 = this.add('conv1', new Conv2d(engine, { inChannels: inp, outChannels: planes, kernel: 3, stride }, rng.fork('conv1')));
    this.bn1 = this.add('bn1', new BatchNorm2d(engine, planes));
    this.conv2 = this.add('conv2', new Conv2d(engine, { inChannels: planes, outChannels: planes, kernel: 3 }, rng.fork('conv2')));
    this.bn2 = this.add('bn2', new BatchNorm2d(engine, planes));
    this.downsample = stride !== 1 || inp !== planes ? this.add('downsample', new Downsample(engine, inp, planes, stride, rng.fork('downsample'))) : null;
  }
  forward(x: Tensor): Tensor {
    if (canFuse(this, x)) {
      const h = convBn(this.conv1, this.bn1, x, 'relu');
      const [id, owned] = fusedIdentity(this.downsample, x);
      const y = convBn(this.conv2, this.bn2, h, 'relu', id);
      h.dispose();
      if (owned) id.dispose();
      return y;
    }
    const y = chain(x, (t) => this.conv1.forward(t), (t) => this.bn1.forward(t), relu, (t) => this.conv2.forward(t), (t) => this.bn2.forward(t));
    return residualJoin(this.downsample ? this.downsample.forward(x) : x, y, this.downsample !== null);
  }
}

export class Bottleneck extends Module {
  static expansion = 4;
  private readonly conv1: Conv2d;
  private readonly bn1: BatchNorm2d;
  private readonly conv2: Conv2d;
  private readonly bn2: BatchNorm2d;
  private readonly conv3: Conv2d;
  private readonly bn3: BatchNorm2d;
  private readonly downsample: Downsample | null;
  constructor(engine: Engine, inp: number, planes: number, stride: number, rng: SeededRandom) {
    super(engine);
    const out = planes * 4;
    this.conv1 = this.add('conv1', new Conv2d(engine, { inChannels: inp, outChannels: planes, kernel: 1 }, rng.fork('conv1')));
    this.bn1 = this.add('bn1', new BatchNorm2d(engine, planes));
    this.conv2 = this.add('conv2', new Conv2d(engine, { inChannels: planes, outChannels: planes, kernel: 3, stride }, rng.fork('conv2')));
    this.bn2 = this.add('bn2', new BatchNorm2d(engine, planes));
    this.conv3 = this.add('conv3', new Conv2d(engine, { inChannels: planes, outChannels: out, kernel: 1 }, rng.fork('conv3')));
    this.bn3 = this.add('bn3', new BatchNorm2d(engine, out));
    this.downsample = stride !== 1 || inp !== out ? this.add('downsample', new Downsample(engine, inp, out, stride, rng.fork('downsample'))) : null;
  }
  forward(x: Tensor): Tensor {
    if (canFuse(this, x)) {
      const h1 = convBn(this.conv1, this.bn1, x, 'relu');
      const h2 = convBn(this.conv2, this.bn2, h1, 'relu');
      h1.dispose();
      const [id, owned] = fusedIdentity(this.downsample, x);
      const y = convBn(this.conv3, this.bn3, h2, 'relu', id);
      h2.dispose();
      if (owned) id.dispose();
      return y;
    }
    const y = chain(
      x,
      (t) => this.conv1.forward(t), (t) => this.bn1.forward(t), relu,
      (t) => this.conv2.forward(t), (t) => this.bn2.forward(t), relu,
      (t) => this.conv3.forward(t), (t) => this.bn3.forward(t),
    );
    return residualJoin(this.downsample ? this.downsample.forward(x) : x, y, this.downsample !== null);
  }
}

export type ResNetDepth = 18 | 101;
const CONFIGS: Record<ResNetDepth, { block: 'basic' | 'bottleneck'; blocks: [number, number, number, number] }> = {
  18: { block: 'basic', blocks: [2, 2, 2, 2] },
  101: { block: 'bottleneck', blocks: [3, 4, 23, 3] },
};

export class ResNet extends Module {
  private readonly conv1: Conv2d;
  private readonly bn1: BatchNorm2d;
  private readonly layers: Sequential[] = [];
  readonly channels: [number, number, number, number];
  constructor(engine: Engine, depth: ResNetDepth, rng: SeededRandom, width = 1) {
    super(engine);
    const cfg = CONFIGS[depth];
    const expansion = cfg.block === 'basic' ? 1 : 4;
    const w = (c: number) => Math.max(8, Math.round(c * width));
    this.conv1 = this.add('conv1', new Conv2d(engine, { inChannels: 3, outChannels: w(64), kernel: 7, stride: 2, padding: 3 }, rng.fork('conv1')));
    this.bn1 = this.add('bn1', new BatchNorm2d(engine, w(64)));
    let inp = w(64);
    const chans: number[] = [];
    cfg.blocks.forEach((n, i) => {
      const planes = w(64 * 2 ** i);
      const blocks: Forward[] = [];
      for (let j = 0; j < n; j++) {
        const stride = j === 0 && i > 0 ? 2 : 1;
        const r = rng.fork(`layer${i + 1}.${j}`);
        blocks.push(cfg.block === 'basic' ? new BasicBlock(engine, inp, planes, stride, r) : new Bottleneck(engine, inp, planes, stride, r));
        inp = planes * expansion;
      }
      this.layers.push(this.add(`layer${i + 1}`, new Sequential(engine, blocks)));
      chans.push(inp);
    });
    this.channels = chans as [number, number, number, number];
  }
  forward(x: Tensor): [Tensor, Tensor, Tensor, Tensor] {
    const stemPool = (t: Tensor): Tensor => {
      if (t.dtype !== 'f16') return maxPool2d(t, { kernel: 3, stride: 2, padding: 1 });
      // The f16 inference path (CANet.half()): max-pool has no f16 variant, so the stem's output is
      // pooled in f32 (max is exact, the two casts round nothing that f16 had not rounded already).
      const wide = cast(t, 'f32');
      const pooled = release(maxPool2d(wide, { kernel: 3, stride: 2, padding: 1 }), wide);
      return release(cast(pooled, 'f16'), pooled);
    };
    const stem = canFuse(this, x)
      ? chain(x, (t) => convBn(this.conv1, this.bn1, t, 'relu'), stemPool)
      : chain(x, (t) => this.conv1.forward(t), (t) => this.bn1.forward(t), relu, (t) => maxPool2d(t, { kernel: 3, stride: 2, padding: 1 }));
    const x1 = this.layers[0]!.forward(stem);
    const x2 = this.layers[1]!.forward(x1);
    const x3 = this.layers[2]!.forward(x2);
    const x4 = this.layers[3]!.forward(x3);
    return [x1, x2, x3, x4];
  }
}
