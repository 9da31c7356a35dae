/**
 * `canet train --class-weights`: parsing (with one clear message per kind of bad value), ENet's
 * 1/ln(1.02 + p) weights against a hand computation, and pixel counts over a dataset's evenly
 * spaced sample (ignore index and out-of-range ids skipped). That a resumed run keeps the weights
 * is shown by cli.test's kill-and-resume test, which trains with `--class-weights enet`.
 */
import * as assert from 'uvu/assert';
import { suite } from './harness.js';
import { classPixelCounts, enetWeights, parseClassWeights, resolveClassWeights } from '../cli/class-weights.js';
import type { Dataset } from '../cli/data.js';

const t = suite('class-weights');

/** A dataset of 10 one-row label images; image i holds the labels `rows[i]`. */
function fake(rows: number[][]): Dataset & { reads: number[] } {
  const reads: number[] = [];
  return {
    name: 'fake',
    size: rows.length,
    reads,
    async get(i) {
      reads.push(i);
      const labels = Uint8Array.from(rows[i]!);
      return { image: new Uint8Array(labels.length * 3), labels, width: labels.length, height: 1 };
    },
  };
}

t('parse: none, enet, a list of K numbers; bad values refused by name', () => {
  assert.equal(parseClassWeights('none', 3), { kind: 'none' });
  assert.equal(parseClassWeights('enet', 3), { kind: 'enet' });
  assert.equal(parseClassWeights('1, 2.5,0', 3), { kind: 'list', weights: [1, 2.5, 0] });
  assert.throws(() => parseClassWeights('1,2', 3), /--class-weights has 2 numbers, expected one per class \(3\)/);
  assert.throws(() => parseClassWeights('1,-2,3', 3), /non-negative numbers; got '1,-2,3'/);
  assert.throws(() => parseClassWeights('1,,3', 3), /non-negative numbers/);
  assert.throws(() => parseClassWeights('median', 3), /none, enet or 3 comma-separated/);
  assert.throws(() => parseClassWeights('0,0,0', 3), /all zero/);
});

t('pixel counts skip the ignore index and ids past the class count; sample is evenly spaced', async () => {
  const rows = Array.from({ length: 10 }, (_, i) => [i % 3, 255, 7, 0]);
  const d = fake(rows);
  const counts = await classPixelCounts(d, 3, 5);
  assert.equal(d.reads, [0, 2, 4, 6, 8]);
  // images 0,2,4,6,8 hold class i%3 = 0,2,1,0,2 plus one 0 each
  assert.equal(Array.from(counts), [5 + 2, 1, 2]);
  const all = fake(rows);
  await classPixelCounts(all, 3, 100);
  assert.is(all.reads.length, 10, 'never more samples than images');
});

t('ENet weights: 1 / ln(1.02 + p), rare classes weigh more, unseen classes get the cap', async () => {
  const w = enetWeights(Float64Array.from([6, 3, 1, 0]));
  const expected = [0.6, 0.3, 0.1, 0].map((p) => 1 / Math.log(1.02 + p));
  w.forEach((x, i) => assert.ok(Math.abs(x - expected[i]!) < 1e-12, `class ${i}: ${x} vs ${expected[i]}`));
  assert.ok(w[0]! < w[1]! && w[1]! < w[2]! && w[2]! < w[3]!);
  assert.ok(Math.abs(w[3]! - 50.5) < 0.1);
  const d = fake([[0, 0, 1, 2]]);
  assert.equal(await resolveClassWeights({ kind: 'enet' }, d, 3), enetWeights(Float64Array.from([2, 1, 1])));
  assert.is(await resolveClassWeights({ kind: 'none' }, d, 3), null);
  assert.equal(await resolveClassWeights({ kind: 'list', weights: [1, 2, 3] }, d, 3), [1, 2, 3]);
});

t.run();
