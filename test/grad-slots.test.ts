/**
 * Gradients written straight into the optimizer's slots (engine/autograd.ts `into`, split-K filter
 * sums into dw) instead of computed elsewhere and copied: the same kernels compute the same
 * values, so training must be bit-identical to the copying path (backwardCopyElision off), with
 * far fewer copies per step; and a parameter used twice still gets the sum of both gradients.
 */
import * as assert from 'uvu/assert';
import type { Engine, Tensor } from '../entry/index.js';
import { backward, backwardCopyElision } from '../engine/autograd.js';
import { add, mul } from '../engine/ops/basic.js';
import { conv2d } from '../engine/ops/conv2d.js';
import { AdamW, SGD, type Optimizer } from '../engine/optim.js';
import { canet } from '../net/canet.js';
import { trainStep } from '../net/train.js';
import { suite } from './harness.js';
import { expectClose, randn, testEngine } from './gpu.js';
import { refConv2dBackward } from './ref/conv.js';

const t = suite('grad-slots');

/** Runs fn with copy elision on or off, restoring the default after. */
function withElision<T>(on: boolean, fn: () => T): T {
  const before = backwardCopyElision.enabled;
  backwardCopyElision.enabled = on;
  try {
    return fn();
  } finally {
    backwardCopyElision.enabled = before;
  }
}

/** copyBuffer calls made by fn (the engine's own method, wrapped for the call). */
function countCopies<T>(e: Engine, fn: () => T): { result: T; copies: number } {
  const orig = e.copyBuffer;
  let copies = 0;
  e.copyBuffer = function (this: Engine, ...args: Parameters<Engine['copyBuffer']>) {
    copies++;
    return orig.apply(this, args);
  };
  try {
    return { result: fn(), copies };
  } finally {
    e.copyBuffer = orig;
  }
}

function bitsEqual(a: Float32Array, b: Float32Array): number {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (ua.length !== ub.length) return 0;
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

interface Run {
  losses: Float32Array[];
  params: Float32Array[];
  /** copyBuffer calls of the last (steady-state) step. */
  copies: number;
}

async function train(e: Engine, elide: boolean, makeOpt: (p: Tensor[]) => Optimizer, images: Tensor, labels: Tensor, steps: number): Promise<Run> {
  const model = canet(e, { classes: 4, width: 0.125, seed: 3 });
  const opt = makeOpt(model.parameters());
  const losses: Float32Array[] = [];
  let copies = 0;
  for (let s = 0; s < steps; s++) {
    const counted = countCopies(e, () => withElision(elide, () => trainStep(model, opt, images, labels)));
    copies = counted.copies;
    losses.push((await counted.result.read()) as Float32Array);
    counted.result.dispose();
  }
  const params: Float32Array[] = [];
  for (const p of model.parameters()) params.push((await p.read()) as Float32Array);
  opt.dispose();
  model.dispose();
  return { losses, params, copies };
}

const OPTIMIZERS: [string, (p: Tensor[]) => Optimizer][] = [
  ['SGD + momentum', (p) => new SGD(p, { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 })],
  ['AdamW', (p) => new AdamW(p, { lr: 1e-3, weightDecay: 0.01 })],
];

for (const [name, makeOpt] of OPTIMIZERS)
  t(`3 CANet training steps with ${name}: losses and parameters bit-identical with and without copy elision; fewer copies per step`, async () => {
    const e = await testEngine();
    const images = e.tensor(Float32Array.from(randn(2 * 32 * 64 * 3, 21)), [2, 32, 64, 3]).keep();
    const labels = e.tensor(Int32Array.from({ length: 2 * 32 * 64 }, (_, i) => (i % 7 === 0 ? 255 : (i >> 3) % 4)), [2, 32, 64]).keep();
    const copying = await train(e, false, makeOpt, images, labels, 3);
    const direct = await train(e, true, makeOpt, images, labels, 3);
    images.dispose();
    labels.dispose();
    for (let s = 0; s < 3; s++) assert.is(bitsEqual(direct.losses[s]!, copying.losses[s]!), -1, `step ${s} loss ${direct.losses[s]![0]} vs ${copying.losses[s]![0]}`);
    assert.is(direct.params.length, copying.params.length);
    direct.params.forEach((p, i) => assert.is(bitsEqual(p, copying.params[i]!), -1, `parameter ${i} differs at the index shown`));
    // The parameters moved (the comparison is not of two untouched models).
    assert.ok(copying.losses[2]![0] !== copying.losses[0]![0], 'the loss changed over 3 steps');
    console.log(`    ${name}: ${copying.copies} -> ${direct.copies} copyBuffer calls per step`);
    // The copying path copies every parameter's gradient into its slot; what is left is a gradient
    // passed through to two inputs (the add of the channel attention's two FC branches).
    assert.ok(copying.copies >= copying.params.length, `copying path: ${copying.copies} copies for ${copying.params.length} parameters`);
    assert.ok(direct.copies <= 2, `${direct.copies} copies per step with elision`);
  }, { timeoutMs: 300_000 });

const S = 24; // 576 output pixels: the filter gradient is split over pixel chunks and summed (into the slot)

/** One conv weight in two convolutions whose outputs are summed, with an optimizer slot; returns w.grad. */
async function twiceUsed(e: Engine, elide: boolean, x1: Float64Array, x2: Float64Array, wData: Float64Array, r: Float64Array): Promise<Float32Array> {
  return withElision(elide, () =>
    e.scope(async () => {
      const w = e.tensor(Float32Array.from(wData), [4, 3, 3, 4]).keep();
      w.requiresGrad = true;
      const opt = new SGD([w], { lr: 0.1 }); // gives w a gradient slot
      const out = add(conv2d(e.tensor(Float32Array.from(x1), [1, S, S, 4]), w, null, { padding: 1 }), conv2d(e.tensor(Float32Array.from(x2), [1, S, S, 4]), w, null, { padding: 1 }));
      backward(out, { gradOutput: e.tensor(Float32Array.from(r), out.shape) });
      assert.ok(w.grad === w.gradSlot, 'the gradient ends in the slot');
      const g = (await w.grad!.read()) as Float32Array;
      opt.dispose();
      w.dispose();
      return g;
    }),
  );
}

t('a parameter used twice (one conv weight in two convolutions, summed) gets both gradients, in its slot; same bits with and without elision', async () => {
  const e = await testEngine();
  const n = S * S * 4;
  const x1 = randn(n, 31), x2 = randn(n, 32), wData = randn(4 * 3 * 3 * 4, 33), r = randn(n, 34);
  const direct = await twiceUsed(e, true, x1, x2, wData, r);
  const copying = await twiceUsed(e, false, x1, x2, wData, r);
  assert.is(bitsEqual(direct, copying), -1, 'same bits');
  const d1 = refConv2dBackward(x1, [1, S, S, 4], wData, [4, 3, 3, 4], r, { padding: [1, 1] }).dw;
  const d2 = refConv2dBackward(x2, [1, S, S, 4], wData, [4, 3, 3, 4], r, { padding: [1, 1] }).dw;
  expectClose(direct, d1.map((v, i) => v + d2[i]!), 1e-4, 'dw');
});

t('a parameter appearing twice in one op (w * w) and a gradient passed through to two inputs (w + w) get no slot aliasing', async () => {
  const e = await testEngine();
  const data = randn(8, 41);
  const rr = randn(8, 42);
  for (const op of ['mul', 'add'] as const) {
    const got = await e.scope(async () => {
      const w = e.tensor(Float32Array.from(data), [8]).keep();
      w.requiresGrad = true;
      const opt = new SGD([w], { lr: 0.1 });
      const out = op === 'mul' ? mul(w, w) : add(w, w);
      backward(out, { gradOutput: e.tensor(Float32Array.from(rr), [8]) });
      const g = (await w.grad!.read()) as Float32Array;
      opt.dispose();
      w.dispose();
      return g;
    });
    const want = Float64Array.from(data, (v, i) => (op === 'mul' ? 2 * v : 2) * rr[i]!);
    expectClose(got, want, 1e-6, op);
  }
});

t.run();
