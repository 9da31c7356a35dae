/** CPU layout conversions at the PyTorch boundary. */
import * as assert from 'uvu/assert';
import { permute, nchwToNhwc, nhwcToNchw, oihwToOhwi, ohwiToOihw, depthwiseToHwc, depthwiseFromHwc, convTransposeToInternal, convTransposeFromInternal } from '../engine/layout.js';
import { suite } from './harness.js';

const t = suite('layout');
const iota = (n: number) => Float32Array.from({ length: n }, (_, i) => i);

t('permute on a hand-computed case', () => {
  // [[0,1,2],[3,4,5]] transposed
  const r = permute(iota(6), [2, 3], [1, 0]);
  assert.equal(r.shape, [3, 2]);
  assert.equal(Array.from(r.data), [0, 3, 1, 4, 2, 5]);
  assert.throws(() => permute(iota(6), [2, 3], [0, 0]), /not a permutation/);
});

t('NCHW <-> NHWC: element (n,c,h,w) lands at (n,h,w,c), and back', () => {
  const s = [2, 3, 5, 7];
  const r = nchwToNhwc(iota(210), s);
  assert.equal(r.shape, [2, 5, 7, 3]);
  const at = (n: number, h: number, w: number, c: number) => r.data[((n * 5 + h) * 7 + w) * 3 + c];
  assert.is(at(1, 4, 6, 2), ((1 * 3 + 2) * 5 + 4) * 7 + 6);
  assert.equal(Array.from(nhwcToNchw(r.data, r.shape).data), Array.from(iota(210)));
});

t('weight layouts round-trip', () => {
  const w = iota(4 * 3 * 3 * 5);
  assert.equal(Array.from(ohwiToOihw(oihwToOhwi(w, [4, 5, 3, 3]).data, [4, 3, 3, 5]).data), Array.from(w));
  const d = depthwiseToHwc(iota(6 * 9), [6, 1, 3, 3]);
  assert.equal(d.shape, [3, 3, 6]);
  const back = depthwiseFromHwc(d.data, d.shape);
  assert.equal(back.shape, [6, 1, 3, 3]);
  assert.equal(Array.from(back.data), Array.from(iota(54)));
  const ct = convTransposeToInternal(iota(2 * 3 * 5 * 5), [2, 3, 5, 5]);
  assert.equal(ct.shape, [3, 5, 5, 2]);
  assert.equal(Array.from(convTransposeFromInternal(ct.data, ct.shape).data), Array.from(iota(150)));
});

t.run();
