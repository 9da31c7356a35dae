/**
 * fcaFuse (Y = F * As * Ac + F) cases, run by test/fca.test.ts (every shape) and by the browser
 * page (FCA_BROWSER). Tolerances: forward and dF are two f32 roundings (1e-6); dAs and dAc are
 * sums (1e-5).
 */
import { backward, ops, type Engine } from '../../entry/index.js';
import { expectClose, randn } from '../check.js';
import { refFcaFuse, refFcaGrads } from '../ref/fca.js';
import { expectEqual } from './common.js';

/** [N, H, W, C] */
export type FcaShape = [number, number, number, number];

// Channels: scalar blocks (1, 3, 5, 17) and vec4 blocks of one, two and four vec4s (4, 24, 16, 256).
export const FCA_SHAPES: FcaShape[] = [
  [1, 7, 9, 5],
  [3, 7, 9, 17],
  [3, 33, 17, 3],
  [1, 7, 9, 1],
  [3, 7, 9, 4],
  [1, 33, 17, 24],
  [3, 7, 9, 16],
  [1, 7, 9, 256],
];

/** What the browser page runs, forward and backward (index into FCA_SHAPES: [3,7,9,17]). */
export const FCA_BROWSER = [1];

const f32s = (n: number, seed: number, lo = -1, hi = 1) => Float64Array.from(Float32Array.from(randn(n, seed, lo, hi)));

/** Forward of FCA_SHAPES[k] vs float64 (rel err < 1e-6); returns the largest error. */
export async function checkFcaForward(e: Engine, k: number): Promise<number> {
  const [n, h, w, c] = FCA_SHAPES[k]!;
  const F = f32s(n * h * w * c, 10 + k);
  const As = f32s(n * h * w, 20 + k, 0, 1);
  const Ac = f32s(n * c, 30 + k, 0, 1);
  return e.scope(async () => {
    const y = ops.fcaFuse(e.tensor(Float32Array.from(F), [n, h, w, c]), e.tensor(Float32Array.from(As), [n, h, w, 1]), e.tensor(Float32Array.from(Ac), [n, c]));
    expectEqual(y.shape, [n, h, w, c], 'fcaFuse shape');
    return expectClose(await y.read(), refFcaFuse(F, As, Ac, n, h * w, c), 1e-6, `fcaFuse [${n},${h},${w},${c}]`);
  });
}

/** Backward of FCA_SHAPES[k] vs the exact float64 gradients (dF < 1e-6; dAs, dAc sums < 1e-5); returns the largest error. */
export async function checkFcaBackward(e: Engine, k: number): Promise<number> {
  const [n, h, w, c] = FCA_SHAPES[k]!;
  const size = n * h * w * c;
  const F = f32s(size, 40 + k);
  const As = f32s(n * h * w, 50 + k, 0, 1);
  const Ac = f32s(n * c, 60 + k, 0, 1);
  // g > 0 and F > 0 here: the reductions then have no cancellation, so relative error is meaningful.
  const g = f32s(size, 70 + k, 0, 1);
  const Fp = F.map(Math.abs);
  const [dF, dAs, dAc] = refFcaGrads(g, Fp, As, Ac, n, h * w, c);
  return e.scope(async () => {
    const tf = e.tensor(Float32Array.from(Fp), [n, h, w, c]);
    const ts = e.tensor(Float32Array.from(As), [n, h, w, 1]);
    const tc = e.tensor(Float32Array.from(Ac), [n, c]);
    for (const x of [tf, ts, tc]) x.requiresGrad = true;
    backward(ops.fcaFuse(tf, ts, tc), { gradOutput: e.tensor(Float32Array.from(g), [n, h, w, c]) });
    const what = `[${n},${h},${w},${c}]`;
    let worst = expectClose(await tf.grad!.read(), dF, 1e-6, `dF ${what}`);
    worst = Math.max(worst, expectClose(await ts.grad!.read(), dAs, 1e-5, `dAs ${what}`));
    return Math.max(worst, expectClose(await tc.grad!.read(), dAc, 1e-5, `dAc ${what}`));
  });
}
