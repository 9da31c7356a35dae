/**
 * The subgroup reductions (engine/ops/subgroup.ts) against float64 references, each test run
 * twice: with `engine.prefer.subgroups = 'on'` (must dispatch a subgroup kernel, `_sg`, or it
 * fails) and 'off' (the fallback, which must dispatch none). Shapes are awkward on purpose: sizes
 * that are no multiple of any subgroup size, one element, counts above 2^16. Where the adapter has
 * no `subgroups` feature the 'on' runs count as skipped, with the reason. SwiftShader's subgroups
 * are 4 wide, lavapipe's 8 (CANET_SOFTWARE_GPU=lavapipe); the kernels assume neither.
 * The BatchNorm variants are tested in batchnorm.test.ts (its lane modes).
 * Tolerance: f32 relative error < 1e-5 of the largest value (sums of positive values, no
 * cancellation), 1e-4 for the 70,001-term sum, 1e-5 for the loss and its gradient.
 */
import * as assert from 'uvu/assert';
import type { Engine, Tensor } from '../entry/node.js';
import { backward } from '../entry/node.js';
import { sumMiddleAxis } from '../engine/ops/broadcast.js';
import { channelAttentionInference } from '../engine/ops/fca.js';
import { softmaxCrossEntropy } from '../engine/ops/loss.js';
import { globalAvgPool } from '../engine/ops/pool.js';
import { sumColumns } from '../engine/ops/reduce.js';
import { suite } from './harness.js';
import { expectClose, randn, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { refLinear } from './ref/linear.js';
import { refCrossEntropy } from './ref/loss.js';
import { refGlobalAvgPool, refGlobalMaxPool } from './ref/pool.js';

const t = suite('subgroups');

const engine0 = await testEngine();
const noSubgroups = engine0.features.has('subgroups') ? '' : `the adapter (${engine0.adapter.description}) has no subgroups feature`;
if (noSubgroups) console.log(`subgroups: the subgroup variants are skipped: ${noSubgroups}`);

const f32 = (a: Float64Array): Float64Array => Float64Array.from(Float32Array.from(a));
const up = (e: Engine, d: Float64Array, shape: number[]): Tensor => e.tensor(Float32Array.from(d), shape);

/** Registers `body` with each candidate of the subgroups variant (on, off); checks which kernels ran. */
function bothVariants(name: string, body: (e: Engine) => Promise<void>): void {
  for (const mode of engine0.variants.candidates('subgroups')) {
    const title = `${name} [subgroups ${mode}]`;
    if (mode === 'on' && noSubgroups) {
      t.skip(`${title} (skipped: ${noSubgroups})`);
      continue;
    }
    t(title, async () => {
      const e = await testEngine();
      e.prefer.subgroups = mode;
      const run = e.run;
      const sgKernels = new Set<string>();
      e.run = (p) => {
        if (p.name.endsWith('_sg')) sgKernels.add(p.name);
        return run.call(e, p);
      };
      try {
        await body(e);
      } finally {
        e.run = run;
        delete e.prefer.subgroups;
      }
      if (mode === 'on') assert.ok(sgKernels.size > 0, 'no subgroup kernel ran');
      else assert.is(sgKernels.size, 0, `subgroup kernels ran with subgroups off: ${[...sgKernels].join(', ')}`);
    });
  }
}

/** float64 sums of x viewed as [outer, r, inner] over r. */
function refSumMiddle(x: Float64Array, outer: number, r: number, inner: number): Float64Array {
  const out = new Float64Array(outer * inner);
  for (let k = 0; k < outer; k++) for (let i = 0; i < r; i++) for (let c = 0; c < inner; c++) out[k * inner + c] += x[(k * r + i) * inner + c]!;
  return out;
}

bothVariants('column and row sums match float64 (1 element, odd sizes, vec4 and scalar, 70,001 rows)', async (e) => {
  // [outer, r, inner]: inner 1 are row sums (sum_rows), others column sums (sum_middle).
  const cases: [number, number, number, number][] = [
    [1, 1, 1, 1e-5], [1, 3, 1, 1e-5], [1, 70001, 2, 1e-4], [1, 1517, 19, 1e-5], [1, 4099, 4, 1e-5], [1, 300, 8, 1e-5],
    [3, 1001, 1, 1e-5], [2, 12288, 1, 1e-5], [3, 517, 5, 1e-5], [1, 255, 3, 1e-5], [5, 257, 1, 1e-5],
  ];
  for (const [k, [outer, r, inner, tol]] of cases.entries()) {
    const x = f32(randn(outer * r * inner, 10 + k, 0.5, 1.5));
    await e.scope(async () => {
      const got = outer === 1 && inner > 1 ? sumColumns(up(e, x, [r, inner])) : sumMiddleAxis(up(e, x, [outer * r * inner]), outer, r, inner, [outer * inner]);
      expectClose(await got.read(), refSumMiddle(x, outer, r, inner), tol, `sum over r of [${outer}, ${r}, ${inner}]`);
    });
  }
});

bothVariants('softmax cross-entropy (its sums of terms): loss and gradient match float64 (rel err < 1e-5)', async (e) => {
  for (const [k, [n, h, w, classes]] of [[1, 37, 41, 19], [2, 9, 17, 3], [1, 1, 1, 5]].entries()) {
    const pixels = n * h * w;
    const logits = f32(randn(pixels * classes, 30 + k, -3, 3));
    const labels = Int32Array.from(randn(pixels, 40 + k, 0, classes + 0.999), (v) => (v >= classes ? 255 : Math.floor(v)));
    const want = refCrossEntropy(logits, labels, classes, 255);
    await e.scope(async () => {
      const lt = up(e, logits, [n, h, w, classes]);
      lt.requiresGrad = true;
      const loss = softmaxCrossEntropy(lt, e.tensor(labels, [n, h, w], 'i32'));
      expectClose(await loss.read(), [want.loss], 1e-5, `loss [${n}, ${h}, ${w}, ${classes}]`);
      backward(loss);
      expectClose(await lt.grad!.read(), want.grad, 1e-5, `dlogits [${n}, ${h}, ${w}, ${classes}]`);
    });
  }
});

bothVariants('global average pooling matches float64 (rel err < 1e-5); backward vs finite differences (< 2e-3)', async (e) => {
  for (const [k, shape] of [[2, 17, 19, 8], [1, 9, 9, 5], [3, 1, 1, 4], [1, 64, 65, 3], [1, 1, 64, 1]].entries()) {
    const x = f32(randn(shape.reduce((a, b) => a * b, 1), 50 + k, 0.5, 1.5));
    await e.scope(async () => {
      expectClose(await globalAvgPool(up(e, x, shape)).read(), refGlobalAvgPool(x, shape), 1e-5, `globalAvgPool ${shape}`);
    });
  }
  const shape = [1, 8, 9, 4];
  await gradCheck(e, {
    gpu: ([x]) => globalAvgPool(x!),
    ref: ([x]) => refGlobalAvgPool(x!, shape),
    inputs: [{ name: 'x', shape, data: f32(randn(288, 60)) }],
    tol: 2e-3,
    maxElements: 20,
  });
});

bothVariants('FCA channel pooling (fused channel attention) matches float64 (rel err < 1e-5)', async (e) => {
  // [n, h, w, c, channels of the tensor, offset of the pooled channels]; the last has 9 pixels.
  for (const [n, h, w, c, total, off] of [[2, 9, 8, 8, 20, 12], [1, 11, 7, 5, 9, 1], [1, 3, 3, 4, 4, 0], [1, 13, 11, 1, 3, 2]] as const) {
    const xd = f32(randn(n * h * w * total, 70 + c, -2, 2));
    const xs = new Float64Array(n * h * w * c);
    for (let r = 0; r < n * h * w; r++) for (let ch = 0; ch < c; ch++) xs[r * c + ch] = xd[r * total + off + ch]!;
    const wd = f32(randn(c * c, 80 + c));
    const bd = f32(randn(c, 90 + c));
    const fa = refLinear(refGlobalMaxPool(xs, [n, h, w, c]), wd, bd, n, c, c);
    const fb = refLinear(refGlobalAvgPool(xs, [n, h, w, c]), wd, bd, n, c, c);
    const want = fa.map((v, i) => 1 / (1 + Math.exp(-(v + fb[i]!))));
    await e.noGrad(() =>
      e.scope(async () => {
        const ac = channelAttentionInference(up(e, xd, [n, h, w, total]), off, up(e, wd, [c, c]), up(e, bd, [c]));
        expectClose(await ac.read(), want, 1e-5, `channel attention ${[n, h, w, c, total, off]}`);
      }),
    );
  }
});

t.run();
