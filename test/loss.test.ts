/**
 * softmaxCrossEntropy against a float64 reference (the main shapes, the runner and the helpers are
 * in test/cases/loss.ts, shared with the browser page); invalid-label reporting; bad input.
 */
import * as assert from 'uvu/assert';
import { ShapeError, type Tensor } from '../entry/node.js';
import { LossCheckError, checkLossFinite, readLossStats, softmaxCrossEntropy, validateLabels } from '../engine/ops/loss.js';
import { suite } from './harness.js';
import { expectClose, randn, rng, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { refCrossEntropy } from './ref/loss.js';
import { checkLoss, lossAndGrad, makeLabels, LOSS_SHAPES } from './cases/loss.js';

const t = suite('loss');

const f32round = (x: ArrayLike<number>): Float64Array => Float64Array.from(Float32Array.from(x));

t('reference is right on a hand-computed case', () => {
  // Row 0: logits [0, 0], label 1: loss ln 2, softmax [1/2, 1/2]. Row 1: [ln 3, 0], label 0:
  // softmax [3/4, 1/4], loss ln(4/3). Row 2 ignored. Row 3 label 7 with K = 2: invalid.
  const logits = [0, 0, Math.log(3), 0, 5, -5, 1, 2];
  const labels = [1, 0, 255, 7];
  const r = refCrossEntropy(logits, labels, 2);
  assert.ok(Math.abs(r.loss - (Math.LN2 + Math.log(4 / 3)) / 2) < 1e-15);
  const want = [0.25, -0.25, -0.125, 0.125, 0, 0, 0, 0];
  want.forEach((v, i) => assert.ok(Math.abs(r.grad[i]! - v) < 1e-15, `grad ${i}`));
  assert.is(r.invalid, 1);
  // Weights [2, 1]: row 0 counts once, row 1 twice: (ln 2 + 2 ln(4/3)) / 3.
  const rw = refCrossEntropy(logits, labels, 2, 255, [2, 1]);
  assert.ok(Math.abs(rw.loss - (Math.LN2 + 2 * Math.log(4 / 3)) / 3) < 1e-15);
  assert.ok(Math.abs(rw.grad[2]! - (2 * -0.25) / 3) < 1e-15);
  // Nothing counts: 0 and a zero gradient, not NaN.
  const none = refCrossEntropy(logits, [255, 255, 255, 255], 2);
  assert.is(none.loss, 0);
  assert.ok(none.grad.every((v) => v === 0));
});

// [1,3,5,70]: more classes than the unrolled kernel takes (64), so the looping kernel runs.
t('loss and gradient match float64 on [2,7,9,5], [3,4,6,19] and [1,3,5,70], i32/u32 labels, with and without class weights (rel err < 1e-5)', async () => {
  const e = await testEngine();
  for (const k of LOSS_SHAPES.keys())
    for (const weighted of [false, true]) for (const Labels of [Int32Array, Uint32Array]) await checkLoss(e, k, weighted, Labels);
});

t('a non-default ignore index (-100, i32) and one inside [0, K) are honoured', async () => {
  const e = await testEngine();
  const shape = [1, 5, 3, 4];
  const logits = randn(60, 7, -2, 2);
  for (const ignore of [-100, 2]) {
    const labels = makeLabels(15, 4, 8, 0.3, ignore);
    labels[3] = ignore; // the ignore value in [0, K) must be ignored even though it is a valid class
    const got = await lossAndGrad(e, logits, shape, Int32Array.from(labels), { ignoreIndex: ignore });
    const ref = refCrossEntropy(f32round(logits), labels, 4, ignore);
    expectClose([got.loss], [ref.loss], 1e-5, `loss, ignore ${ignore}`);
    expectClose(got.grad, ref.grad, 1e-5, `grad, ignore ${ignore}`);
  }
});

t('logits of +-1e4 give a finite loss and gradient equal to float64, K = 19 and 70 (rel err < 1e-5)', async () => {
  const e = await testEngine();
  for (const K of [19, 70]) {
    const r = rng(11 + K);
    const logits = Float64Array.from({ length: 30 * K }, () => {
      const u = r();
      return u < 0.3 ? 1e4 : u < 0.6 ? -1e4 : 8 * r() - 4;
    });
    const labels = makeLabels(30, K, 12);
    const got = await lossAndGrad(e, logits, [2, 3, 5, K], Int32Array.from(labels));
    assert.ok(Number.isFinite(got.loss), `loss ${got.loss}`);
    assert.ok(got.grad.every(Number.isFinite), 'gradient finite');
    const ref = refCrossEntropy(f32round(logits), labels, K);
    expectClose([got.loss], [ref.loss], 1e-5, `loss K=${K}`);
    expectClose(got.grad, ref.grad, 1e-5, `grad K=${K}`);
  }
});

t('all pixels ignored: loss 0 and a zero gradient, not NaN', async () => {
  const e = await testEngine();
  const got = await lossAndGrad(e, randn(2 * 3 * 4 * 5, 13), [2, 3, 4, 5], new Int32Array(24).fill(255), { weights: [1, 2, 3, 4, 5] });
  assert.is(got.loss, 0);
  assert.ok(got.grad.every((v) => v === 0), 'zero gradient');
});

t('one class (K = 1) and a rank-1 logits row: loss 0 or log-softmax of one row, matching float64', async () => {
  const e = await testEngine();
  const one = await lossAndGrad(e, randn(6, 14), [2, 3, 1], Int32Array.of(0, 0, 255, 0, 0, 0));
  assert.is(one.loss, 0);
  assert.ok(one.grad.every((v) => v === 0));
  const row = randn(7, 15, -3, 3);
  const got = await lossAndGrad(e, row, [7], Int32Array.of(4));
  const ref = refCrossEntropy(f32round(row), [4], 7);
  expectClose([got.loss], [ref.loss], 1e-5, 'rank-1 loss');
  expectClose(got.grad, ref.grad, 1e-5, 'rank-1 grad');
});

t('gradCheck through the loss (labels fixed, with ignored pixels; plain and weighted; tol 1e-4)', async () => {
  const e = await testEngine();
  const shape = [2, 3, 5];
  const labels = [0, 4, 255, 2, 1, 3];
  const weights = [0.5, 2, 1, 3, 0.25];
  for (const weighted of [false, true]) {
    await e.scope(async () => {
      const y = e.tensor(Int32Array.from(labels), [2, 3]);
      const w = weighted ? e.tensor(Float32Array.from(weights), [5]) : null;
      await gradCheck(e, {
        gpu: ([x]) => softmaxCrossEntropy(x!, y, { classWeights: w }),
        ref: ([x]) => Float64Array.of(refCrossEntropy(x!, labels, 5, 255, weighted ? weights : null).loss),
        inputs: [{ name: 'logits', shape, data: randn(30, 21 + Number(weighted), -3, 3) }],
        tol: 1e-4,
        seed: 5,
      });
    });
  }
});

t('grad mode off or logits without grad: same loss, no graph, no saved gradient', async () => {
  const e = await testEngine();
  const shape = [1, 4, 4, 3];
  const logits = randn(48, 31);
  const labels = Int32Array.from(makeLabels(16, 3, 32));
  const ref = refCrossEntropy(f32round(logits), labels, 3);
  await e.scope(async () => {
    const x = e.tensor(Float32Array.from(logits), shape);
    const y = e.tensor(labels, [1, 4, 4]);
    x.requiresGrad = true;
    const live = e.stats().liveTensors;
    const loss = e.noGrad(() => softmaxCrossEntropy(x, y));
    assert.is(loss.requiresGrad, false);
    assert.is(loss.node, null);
    assert.is(e.stats().liveTensors, live + 1, 'only the loss is left alive');
    expectClose(await loss.read(), [ref.loss], 1e-5, 'noGrad loss');
    x.requiresGrad = false;
    expectClose(await softmaxCrossEntropy(x, y).read(), [ref.loss], 1e-5, 'loss without grad');
  });
});

t('invalid labels are counted on the GPU, left out of the loss, and reported with the step', async () => {
  const e = await testEngine();
  const shape = [2, 3, 4, 19];
  const logits = randn(24 * 19, 41, -3, 3);
  const labels = makeLabels(24, 19, 42);
  // Three bad labels: K itself, a negative one (i32) and one far above, besides ignored 255s.
  labels[1] = 19;
  labels[5] = -1;
  labels[17] = 300;
  for (const K of [19, 70]) {
    // K = 70 (looping kernel): 300 is still out of range; 19 is valid there, so make it 70.
    const lab = labels.map((v) => (K === 70 && v === 19 ? 70 : v));
    const lg = K === 19 ? logits : randn(24 * K, 44, -3, 3);
    const got = await lossAndGrad(e, lg, [2, 3, 4, K], Int32Array.from(lab));
    assert.is(got.stats.invalidLabels, 3, `count K=${K}`);
    const ref = refCrossEntropy(f32round(lg), lab, K);
    assert.is(ref.invalid, 3);
    expectClose([got.loss], [ref.loss], 1e-5, `loss without the invalid pixels, K=${K}`);
    expectClose(got.grad, ref.grad, 1e-5, `grad without the invalid pixels, K=${K}`);
  }

  await e.scope(async () => {
    const x = e.tensor(Float32Array.from(logits), shape);
    // Computed in an inner scope and returned: the count travels inside the loss tensor.
    const loss = e.scope(() => softmaxCrossEntropy(x, e.tensor(Int32Array.from(labels), [2, 3, 4])));
    const err = await checkLossFinite(loss, 17).then(() => null, (x: unknown) => x);
    assert.instance(err, LossCheckError);
    assert.match((err as Error).message, /^3 labels outside \[0, 19\) and not the ignore index 255 at step 17/);
    assert.is((err as LossCheckError).invalidLabels, 3);
    assert.is((err as LossCheckError).step, 17);

    // u32 labels: values >= K are invalid; 255 is ignored.
    const u = Uint32Array.from(labels.map((v) => (v < 0 ? 4000000000 : v)));
    const lossU = softmaxCrossEntropy(x, e.tensor(u, [2, 3, 4]));
    assert.is((await readLossStats(lossU)).invalidLabels, 3);

    // Valid labels: no error, the value comes back.
    const ok = makeLabels(24, 19, 43);
    const good = softmaxCrossEntropy(x, e.tensor(Int32Array.from(ok), [2, 3, 4]));
    expectClose([await checkLossFinite(good, 3)], [refCrossEntropy(f32round(logits), ok, 19).loss], 1e-5, 'returned loss');

    // One bad label: singular wording.
    ok[0] = 19;
    const one = softmaxCrossEntropy(x, e.tensor(Int32Array.from(ok), [2, 3, 4]));
    await checkLossFinite(one, 4).then(
      () => assert.unreachable('should throw'),
      (err: Error) => assert.match(err.message, /^1 label outside \[0, 19\) and not the ignore index 255 at step 4/),
    );
  });
});

t('NaN or Inf in the logits: checkLossFinite throws "non-finite loss at step N"', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    for (const bad of [NaN, Infinity]) {
      const logits = Float32Array.from(randn(20, 51));
      logits[7] = bad;
      const loss = softmaxCrossEntropy(e.tensor(logits, [4, 5]), e.tensor(Int32Array.of(0, 1, 2, 3), [4]));
      await checkLossFinite(loss, 17).then(
        () => assert.unreachable('should throw'),
        (err: Error) => {
          assert.instance(err, LossCheckError);
          assert.match(err.message, /^non-finite loss at step 17 \((NaN|-?Infinity)\)$/, err.message);
        },
      );
    }
    // Any one-element tensor can be checked; it simply carries no label count.
    assert.is(await checkLossFinite(e.tensor([2.5], [1]), 1), 2.5);
  });
});

t('validateLabels checks CPU labels before upload', () => {
  validateLabels(Uint8Array.of(0, 18, 255, 3), 19);
  validateLabels(Int32Array.of(0, -100, 4), 5, -100);
  assert.throws(() => validateLabels(Uint8Array.of(0, 19, 255, 20), 19), /validateLabels: 2 labels outside \[0, 19\) and not the ignore index 255 \(first: 19 at index 1\)/);
  assert.throws(() => validateLabels(Int32Array.of(-1), 19, 255), /1 label outside \[0, 19\)/);
  assert.throws(() => validateLabels(Uint32Array.of(0), 0), /classes must be an integer >= 1/);
});

t('bad input throws a ShapeError naming op, tensor and shapes, and dispatches nothing', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const x = e.tensor(Float32Array.from(randn(2 * 3 * 4, 61)), [2, 3, 4]);
    x.name = 'logits';
    const y = e.tensor(new Int32Array(6), [2, 3]);
    y.name = 'labels';
    const cases: [() => Tensor, RegExp][] = [
      [() => softmaxCrossEntropy(x, e.tensor(new Int32Array(6), [3, 2])), /softmaxCrossEntropy: labels .* must have shape \[2, 3\] .*got \[3, 2\]/],
      [() => softmaxCrossEntropy(x, e.tensor(new Int32Array(24), [2, 3, 4])), /must have shape \[2, 3\]/],
      [() => softmaxCrossEntropy(x, e.tensor(new Float32Array(6), [2, 3])), /labels .* must be i32 or u32, got f32/],
      [() => softmaxCrossEntropy(e.tensor(new Int32Array(24), [2, 3, 4]), y), /logits .* must be f32, got i32/],
      [() => softmaxCrossEntropy(e.tensor(new Float32Array(0), [2, 0, 4]), e.tensor(new Int32Array(0), [2, 0])), /is empty/],
      [() => softmaxCrossEntropy(e.tensor(new Float32Array(0), [2, 3, 0]), y), /is empty/],
      [() => softmaxCrossEntropy(x, y, { classWeights: e.tensor(new Float32Array(5), [5]) }), /classWeights .* must have shape \[4\] .*got \[5\]/],
      [() => softmaxCrossEntropy(x, y, { classWeights: e.tensor(new Int32Array(4), [4]) }), /classWeights .* must be f32/],
      [() => softmaxCrossEntropy(x, y, { ignoreIndex: 2.5 }), /ignoreIndex must be an integer/],
      [() => softmaxCrossEntropy(x, e.tensor(new Uint32Array(6), [2, 3]), { ignoreIndex: -100 }), /ignoreIndex must be an integer a u32 label can hold/],
    ];
    for (const [fn, re] of cases) {
      const before = e.stats().dispatches;
      assert.throws(fn, (err: Error) => err instanceof ShapeError && re.test(err.message), String(re));
      assert.is(e.stats().dispatches, before, `nothing dispatched for ${re}`);
    }
    const d = e.tensor(new Float32Array(24), [2, 3, 4]);
    d.dispose();
    assert.throws(() => softmaxCrossEntropy(d, y), /was disposed/);
  });
});

t.run();
