/** GPU confusion matrix and IoU against a CPU count. */
import * as assert from 'uvu/assert';
import { ConfusionMatrix } from '../engine/ops/metrics.js';
import { suite } from './harness.js';
import { rng, testEngine } from './gpu.js';

const t = suite('metrics');

t('hand-computed IoU: 2 classes', async () => {
  const e = await testEngine();
  const cm = new ConfusionMatrix(e, 2);
  // labels 0 0 1 1 255, preds 0 1 1 1 0: class 0 TP1 FN1 FP0 -> 1/2; class 1 TP2 FP1 -> 2/3.
  await e.scope(async () => cm.add(e.tensor(Int32Array.of(0, 1, 1, 1, 0), [5]), e.tensor(Int32Array.of(0, 0, 1, 1, 255), [5])));
  const s = await cm.scores();
  assert.equal(s.confusion, [[1, 1], [0, 2]]);
  assert.ok(Math.abs(s.iou[0]! - 0.5) < 1e-12 && Math.abs(s.iou[1]! - 2 / 3) < 1e-12);
  assert.ok(Math.abs(s.miou - (0.5 + 2 / 3) / 2) < 1e-12);
  assert.is(s.pixels, 4);
  assert.is(s.pixelAccuracy, 0.75);
  cm.dispose();
});

t('random batches accumulate exactly as a CPU count; invalid labels are counted', async () => {
  const e = await testEngine();
  const K = 19;
  const cm = new ConfusionMatrix(e, K);
  const want = Array.from({ length: K }, () => new Array<number>(K).fill(0));
  const r = rng(3);
  let invalid = 0;
  for (let b = 0; b < 3; b++) {
    const n = 2 * 33 * 17;
    const pred = Int32Array.from({ length: n }, () => Math.floor(r() * K));
    const lab = Int32Array.from({ length: n }, () => (r() < 0.1 ? 255 : r() < 0.01 ? 40 : Math.floor(r() * K)));
    lab.forEach((y, i) => {
      if (y === 255) return;
      if (y >= K) invalid++;
      else want[y]![pred[i]!]!++;
    });
    await e.scope(async () => cm.add(e.tensor(pred, [2, 33, 17]), e.tensor(lab, [2, 33, 17])));
  }
  const s = await cm.scores();
  assert.equal(s.confusion, want);
  assert.is(s.invalidLabels, invalid);
  assert.throws(() => cm.add(e.empty([2, 3], 'i32'), e.empty([3, 2], 'i32')), /\[2, 3\] and labels \[3, 2\]/);
  cm.dispose();
});

t.run();
