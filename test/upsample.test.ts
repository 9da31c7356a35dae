/** resizeBilinear (PyTorch's bilinear, both align_corners settings) and its backward, against float64. */
import * as assert from 'uvu/assert';
import { backward, ShapeError, type Engine } from '../entry/node.js';
import { resizeBilinear } from '../engine/ops/upsample.js';
import { suite } from './harness.js';
import { expectClose, randn, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { sizeOf } from './ref/broadcast.js';
import { refResizeBilinear, refResizeBilinearBackward } from './ref/upsample.js';

const t = suite('upsample');

// Tolerances are absolute (floor 1 against data in [-1, 1)): the source coordinate carries the f32
// rounding of scale * (dst + 0.5), ~2e-6 at 33 pixels, which moves the output by that much times
// the local difference of the input; near-zero outputs make a relative bound meaningless.
const FLOOR = 1;

t('reference matches PyTorch on hand-computed cases', () => {
  // F.interpolate(torch.tensor([[[[1., 2.]]]]), size=(1, 4), mode='bilinear'): [1, 1.25, 1.75, 2].
  assert.equal(Array.from(refResizeBilinear([1, 2], [1, 1, 2, 1], 1, 4, false)), [1, 1.25, 1.75, 2]);
  // align_corners=True: [1, 4/3, 5/3, 2]; down 4 -> 2 (align_corners=False): [1.5, 3.5].
  expectClose(refResizeBilinear([1, 2], [1, 1, 2, 1], 1, 4, true), [1, 4 / 3, 5 / 3, 2], 1e-7);
  assert.equal(Array.from(refResizeBilinear([1, 2, 3, 4], [1, 4, 1, 1], 2, 1, false)), [1.5, 3.5]);
  // The adjoint: <resize(x), g> == <x, resize^T(g)>.
  const x = randn(2 * 3 * 5 * 2, 1);
  const g = randn(2 * 7 * 4 * 2, 2);
  const y = refResizeBilinear(x, [2, 3, 5, 2], 7, 4, false);
  const dx = refResizeBilinearBackward(g, [2, 3, 5, 2], 7, 4, false);
  const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, v, i) => s + v * b[i]!, 0);
  assert.ok(Math.abs(dot(y, g) - dot(x, dx)) < 1e-12);
});

const CASES: [number[], number, number][] = [
  [[1, 7, 9, 3], 33, 17],
  [[3, 33, 17, 5], 7, 9],
  [[1, 3, 5, 17], 24, 40], // x8, the plain head's upsample
  [[3, 7, 9, 8], 33, 17], // vec4 channels
  [[1, 7, 9, 16], 33, 17], // runs of four vec4s per invocation
  [[1, 33, 17, 4], 7, 9],
  [[3, 3, 5, 1], 24, 40],
  [[3, 7, 9, 5], 33, 9], // the y axis only
  [[1, 7, 9, 19], 7, 20], // the x axis only
  [[1, 7, 9, 3], 7, 9], // same size: the identity
  [[1, 1, 1, 3], 5, 4], // one input pixel
  [[1, 7, 9, 3], 1, 1], // one output pixel (align_corners: scale 0)
];

async function forwardCase(e: Engine, shape: number[], oh: number, ow: number, align: boolean, seed: number): Promise<void> {
  const x = Float32Array.from(randn(sizeOf(shape), seed));
  await e.scope(async () => {
    const y = resizeBilinear(e.tensor(x, shape), oh, ow, { alignCorners: align });
    assert.equal(y.shape, [shape[0]!, oh, ow, shape[3]!]);
    expectClose(await y.read(), refResizeBilinear(x, shape, oh, ow, align), 1e-5, `resize ${shape} -> ${oh}x${ow} align ${align}`, FLOOR);
  });
}

t('forward matches float64 for both align_corners settings (abs err < 1e-5)', async () => {
  const e = await testEngine();
  for (const [k, [shape, oh, ow]] of CASES.entries()) {
    await forwardCase(e, shape, oh, ow, false, 10 + k);
    await forwardCase(e, shape, oh, ow, true, 30 + k);
  }
});

t('backward equals the float64 adjoint on the forward cases (abs err < 1e-5 of the weight an input receives)', async () => {
  const e = await testEngine();
  for (const [k, [shape, oh, ow]] of CASES.entries()) {
    for (const align of [false, true]) {
      const n = sizeOf(shape);
      const gShape = [shape[0]!, oh, ow, shape[3]!];
      const g = Float32Array.from(randn(sizeOf(gShape), 50 + k));
      await e.scope(async () => {
        const x = e.tensor(Float32Array.from(randn(n, k)), shape);
        x.requiresGrad = true;
        backward(resizeBilinear(x, oh, ow, { alignCorners: align }), { gradOutput: e.tensor(g, gShape) });
        // An input receives total weight ~(oh / h) * (ow / w) from gradient terms of size < 1: the scale of dx.
        const weight = Math.max(1, (oh / shape[1]!) * (ow / shape[2]!));
        expectClose(await x.grad!.read(), refResizeBilinearBackward(g, shape, oh, ow, align), 1e-5, `backward ${shape} -> ${oh}x${ow} align ${align}`, weight);
      });
    }
  }
});

t('gradient vs finite differences of the float64 reference (< 1e-3)', async () => {
  const e = await testEngine();
  for (const [shape, oh, ow] of [[[2, 3, 5, 3], 7, 9], [[1, 7, 9, 4], 3, 5], [[2, 5, 3, 2], 5, 7]] as [number[], number, number][]) {
    for (const align of [false, true]) {
      await gradCheck(e, {
        gpu: ([x]) => resizeBilinear(x!, oh, ow, { alignCorners: align }),
        ref: ([x]) => refResizeBilinear(x!, shape, oh, ow, align),
        inputs: [{ name: `x${shape}`, shape, data: randn(sizeOf(shape), 70) }],
        tol: 1e-3,
        maxElements: 48,
      });
    }
  }
});

t('bad input throws a ShapeError naming op, tensor and shapes, before any dispatch', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const x = e.empty([1, 7, 9, 3]);
    x.name = 'feat';
    const before = e.stats().dispatches;
    assert.throws(() => resizeBilinear(x, 0, 5), (err: Error) => err instanceof ShapeError && /^resizeBilinear: output size must be positive integers, got 0 x 5 for feat \[1, 7, 9, 3\]/.test(err.message));
    assert.throws(() => resizeBilinear(x, 5, -2), /resizeBilinear: output size must be positive integers, got 5 x -2/);
    assert.throws(() => resizeBilinear(x, 5.5, 2), /resizeBilinear: output size must be positive integers/);
    assert.throws(() => resizeBilinear(e.empty([7, 9, 3]), 5, 5), /resizeBilinear: .* must be \[N, H, W, C\], got \[7, 9, 3\]/);
    assert.throws(() => resizeBilinear(e.empty([1, 0, 9, 3]), 5, 5), /resizeBilinear: .* \[1, 0, 9, 3\] has no pixels to interpolate from/);
    assert.throws(() => resizeBilinear(e.empty([1, 7, 9, 3], 'i32'), 5, 5), /resizeBilinear: .* must be f32, got i32/);
    assert.is(e.stats().dispatches, before, 'nothing dispatched');
  });
});

t.run();
