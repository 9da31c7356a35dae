/**
 * A compact set of kernel checks against the float64 references, run both in Node (Dawn) and in
 * headless Chromium (the browser bundle), with the tolerances of the full Node tests in
 * test/<family>.test.ts (see the reasons there). Platform-neutral: it imports the engine's
 * neutral index, which the page bundle maps to dist/browser/canet-gpu.js. Comparisons happen
 * where the GPU is, so only a summary leaves the page.
 */
import { backward, ops, Adam, SGD, softmaxCrossEntropy, type Engine, type Tensor } from '../../entry/index.js';
import { expectClose, randn } from '../check.js';
import { gradCheck } from '../gradcheck.js';
import { refConv2d } from '../ref/conv.js';
import { depthwiseOutShape, refDepthwise, refDepthwiseBackward, type DepthwiseGeometry } from '../ref/depthwise.js';
import { convTransposeOutShape, refConvTranspose, refConvTransposeBackward, type ConvTransposeGeometry } from '../ref/conv-transpose.js';
import { refBatchNorm } from '../ref/batchnorm.js';
import { refFcaFuse, refFcaGrads } from '../ref/fca.js';
import { refCrossEntropy } from '../ref/loss.js';
import { RefAdam, RefSGD } from '../ref/optim.js';

export interface CheckResult {
  name: string;
  /** The tolerance, as the Node test states it. */
  tol: string;
  /** Largest relative error seen (NaN if the check threw before measuring). */
  maxErr: number;
  ok: boolean;
  ms: number;
  error?: string;
}

interface Check {
  name: string;
  tol: string;
  run(e: Engine): Promise<number>;
}

const sizeOf = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
const f32r = (a: Float64Array): Float64Array => Float64Array.from(Float32Array.from(a));
const maxAbs = (a: ArrayLike<number>): number => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const up = (e: Engine, d: Float64Array, shape: number[], grad = false): Tensor => {
  const t = e.tensor(Float32Array.from(d), shape);
  t.requiresGrad = grad;
  return t;
};

const CHECKS: Check[] = [
  {
    name: 'conv2d forward: 3x3 pad 1 +bias, 3x3 stride 2 on 17 channels, groups 2 (batch 3)',
    tol: 'rel 1e-4, floor 1e-2 max|y|',
    async run(e) {
      let worst = 0;
      const cases: [number[], number[], { stride?: number; padding?: number; groups?: number }, boolean][] = [
        [[1, 7, 9, 3], [5, 3, 3, 3], { padding: 1 }, true],
        [[1, 33, 17, 17], [17, 3, 3, 17], { stride: 2, padding: 1 }, true],
        [[3, 7, 9, 6], [10, 3, 3, 3], { groups: 2, padding: 1 }, false],
      ];
      for (const [k, [xs, ws, opts, bias]] of cases.entries()) {
        const x = f32r(randn(sizeOf(xs), 10 + k));
        const w = f32r(randn(sizeOf(ws), 20 + k));
        const b = bias ? f32r(randn(ws[0]!, 30 + k)) : null;
        const ref = refConv2d(x, xs, w, ws, b, opts);
        worst = Math.max(worst, await e.scope(async () => {
          const y = ops.conv2d(up(e, x, xs), up(e, w, ws), b ? up(e, b, [ws[0]!]) : null, opts);
          return expectClose(await y.read(), ref.data, 1e-4, `conv2d ${xs} ${ws}`, 1e-2 * maxAbs(ref.data));
        }));
      }
      return worst;
    },
  },
  {
    name: 'conv2d backward: x, w, bias vs finite differences of float64 (batch 2, 3x3 stride 2 pad 1)',
    tol: 'rel 1e-3',
    run: (e) =>
      gradCheck(e, {
        gpu: ([x, w, b]) => ops.conv2d(x!, w!, b!, { stride: 2, padding: 1 }),
        ref: ([x, w, b]) => refConv2d(x!, [2, 7, 9, 3], w!, [4, 3, 3, 3], b!, { stride: 2, padding: 1 }).data,
        inputs: [
          { name: 'x', shape: [2, 7, 9, 3], data: randn(2 * 7 * 9 * 3, 40) },
          { name: 'w', shape: [4, 3, 3, 3], data: randn(4 * 27, 41) },
          { name: 'bias', shape: [4], data: randn(4, 42) },
        ],
        tol: 1e-3,
        maxElements: 48,
        seed: 43,
      }),
  },
  {
    name: 'depthwise forward + backward: 3x3 stride 2 pad 1, 5 (scalar) and 8 (vec4) channels, batch 3',
    tol: 'y, dx rel 1e-4; dw, db rel 2e-4',
    async run(e) {
      let worst = 0;
      for (const [k, ch] of [5, 8].entries()) {
        const g: DepthwiseGeometry = { x: [3, 7, 9, ch], k: [3, 3], stride: [2, 2], padding: [1, 1], dilation: [1, 1] };
        const x = f32r(randn(sizeOf(g.x), 50 + k));
        const w = f32r(randn(9 * ch, 51 + k));
        const b = f32r(randn(ch, 52 + k));
        const outShape = depthwiseOutShape(g);
        const gy = f32r(randn(sizeOf(outShape), 53 + k));
        const want = refDepthwiseBackward(g, x, w, gy);
        worst = Math.max(worst, await e.scope(async () => {
          const [tx, tw, tb] = [up(e, x, [...g.x], true), up(e, w, [3, 3, ch], true), up(e, b, [ch], true)];
          const y = ops.depthwiseConv2d(tx, tw, tb, { stride: 2, padding: 1 });
          let m = expectClose(await y.read(), refDepthwise(g, x, w, b), 1e-4, `depthwise y C=${ch}`);
          backward(y, { gradOutput: up(e, gy, outShape) });
          m = Math.max(m, expectClose(await tx.grad!.read(), want.dx, 1e-4, `depthwise dx C=${ch}`));
          m = Math.max(m, expectClose(await tw.grad!.read(), want.dw, 2e-4, `depthwise dw C=${ch}`));
          return Math.max(m, expectClose(await tb.grad!.read(), want.db, 2e-4, `depthwise db C=${ch}`));
        }));
      }
      return worst;
    },
  },
  {
    name: 'conv-transpose forward + backward: k3 s2 p1 op1 (CANet up), 5 -> 3 channels, batch 3',
    tol: 'y, dx rel 1e-4; dw, db rel 2e-4',
    async run(e) {
      const g: ConvTransposeGeometry = { x: [3, 7, 9, 5], k: [3, 3, 3], stride: [2, 2], padding: [1, 1], outputPadding: [1, 1] };
      const x = f32r(randn(sizeOf(g.x), 60));
      const w = f32r(randn(3 * 9 * 5, 61));
      const b = f32r(randn(3, 62));
      const outShape = convTransposeOutShape(g);
      const gy = f32r(randn(sizeOf(outShape), 63));
      const want = refConvTransposeBackward(g, x, w, gy);
      return e.scope(async () => {
        const [tx, tw, tb] = [up(e, x, [...g.x], true), up(e, w, [3, 3, 3, 5], true), up(e, b, [3], true)];
        const y = ops.convTranspose2d(tx, tw, tb, { stride: [2, 2], padding: [1, 1], outputPadding: [1, 1] });
        let m = expectClose(await y.read(), refConvTranspose(g, x, w, b), 1e-4, 'convTranspose y');
        backward(y, { gradOutput: up(e, gy, outShape) });
        m = Math.max(m, expectClose(await tx.grad!.read(), want.dx, 1e-4, 'convTranspose dx'));
        m = Math.max(m, expectClose(await tw.grad!.read(), want.dw, 2e-4, 'convTranspose dw'));
        return Math.max(m, expectClose(await tb.grad!.read(), want.db, 2e-4, 'convTranspose db'));
      });
    },
  },
  {
    name: 'batch norm training forward: y and running statistics after 2 calls ([3,7,9,5], [3,64,65,8] needs the chunk merge)',
    tol: 'rel 1e-4',
    async run(e) {
      let worst = 0;
      // The data of test/batchnorm.test.ts for these shapes (its SHAPES[1] and SHAPES[8]).
      for (const [k, shape] of [[1, [3, 7, 9, 5]], [8, [3, 64, 65, 8]]] as const) {
        const c = shape[3];
        const gamma = f32r(randn(c, 100 + k, 0.5, 1.5));
        const beta = f32r(randn(c, 101 + k));
        const rm = f32r(randn(c, 102 + k, -0.5, 0.5));
        const rv = f32r(randn(c, 103 + k, 0.5, 2));
        const x1 = f32r(randn(sizeOf(shape), 200 + k, -2, 3));
        const x2 = f32r(randn(sizeOf(shape), 300 + k, -1, 1));
        const opts = { training: true, momentum: 0.3, eps: 1e-5 };
        const r1 = refBatchNorm(x1, c, gamma, beta, rm, rv, opts);
        const r2 = refBatchNorm(x2, c, gamma, beta, r1.runningMean, r1.runningVar, opts);
        worst = Math.max(worst, await e.scope(async () => {
          const [tg, tb, trm, trv] = [up(e, gamma, [c]), up(e, beta, [c]), up(e, rm, [c]), up(e, rv, [c])];
          const y1 = ops.batchNorm2d(up(e, x1, [...shape]), tg, tb, trm, trv, opts);
          let m = expectClose(await y1.read(), r1.y, 1e-4, `bn y1 ${shape}`);
          const y2 = ops.batchNorm2d(up(e, x2, [...shape]), tg, tb, trm, trv, opts);
          m = Math.max(m, expectClose(await y2.read(), r2.y, 1e-4, `bn y2 ${shape}`));
          m = Math.max(m, expectClose(await trm.read(), r2.runningMean, 1e-4, `bn runningMean ${shape}`));
          return Math.max(m, expectClose(await trv.read(), r2.runningVar, 1e-4, `bn runningVar ${shape}`));
        }));
      }
      return worst;
    },
  },
  {
    name: 'batch norm training backward: x, gamma, beta vs finite differences of float64 ([2,5,3,4])',
    tol: 'rel 2e-3',
    async run(e) {
      const shape = [2, 5, 3, 4];
      const c = 4;
      const rm = f32r(randn(c, 80, -0.5, 0.5));
      const rv = f32r(randn(c, 81, 0.5, 2));
      const opts = { training: true, momentum: 0.1, eps: 1e-5 };
      return gradCheck(e, {
        gpu: ([x, gamma, beta]) => ops.batchNorm2d(x!, gamma!, beta!, up(e, rm, [c]), up(e, rv, [c]), opts),
        ref: ([x, gamma, beta]) => refBatchNorm(x!, c, gamma!, beta!, rm, rv, opts).y,
        inputs: [
          { name: 'x', shape, data: randn(sizeOf(shape), 82, -2, 2) },
          { name: 'gamma', shape: [c], data: f32r(randn(c, 83, 0.5, 1.5)) },
          { name: 'beta', shape: [c], data: f32r(randn(c, 84)) },
        ],
        tol: 2e-3,
        maxElements: 40,
        seed: 85,
      });
    },
  },
  {
    name: 'FCA fuse forward + exact gradients ([2,5,7,17])',
    tol: 'y, dF rel 1e-6; dAs, dAc rel 1e-5',
    async run(e) {
      const [n, h, w, c] = [2, 5, 7, 17];
      const F = f32r(randn(n * h * w * c, 90));
      const As = f32r(randn(n * h * w, 91, 0, 1));
      const Ac = f32r(randn(n * c, 92, 0, 1));
      const g = f32r(randn(n * h * w * c, 93));
      const [dF, dAs, dAc] = refFcaGrads(g, F, As, Ac, n, h * w, c);
      return e.scope(async () => {
        const [tf, ts, tc] = [up(e, F, [n, h, w, c], true), up(e, As, [n, h, w, 1], true), up(e, Ac, [n, c], true)];
        const y = ops.fcaFuse(tf, ts, tc);
        let m = expectClose(await y.read(), refFcaFuse(F, As, Ac, n, h * w, c), 1e-6, 'fca y');
        backward(y, { gradOutput: up(e, g, [n, h, w, c]) });
        m = Math.max(m, expectClose(await tf.grad!.read(), dF, 1e-6, 'fca dF'));
        m = Math.max(m, expectClose(await ts.grad!.read(), dAs, 1e-5, 'fca dAs'));
        return Math.max(m, expectClose(await tc.grad!.read(), dAc, 1e-5, 'fca dAc'));
      });
    },
  },
  {
    name: 'softmax cross-entropy: loss and dlogits, ignore index, class weights ([2,7,9,5], K=19 [3,4,6,19])',
    tol: 'rel 1e-5',
    async run(e) {
      let worst = 0;
      for (const [k, [shape, weighted]] of ([[[2, 7, 9, 5], false], [[3, 4, 6, 19], true]] as const).entries()) {
        const classes = shape[3];
        const logits = f32r(randn(sizeOf(shape), 100 + k, -3, 3));
        const r = randn(sizeOf(shape) / classes, 101 + k, 0, 1);
        const labels = Int32Array.from(r, (v) => (v < 0.15 ? 255 : Math.floor(v * classes) % classes));
        const weights = weighted ? f32r(randn(classes, 102 + k, 0.5, 2)) : null;
        const ref = refCrossEntropy(logits, labels, classes, 255, weights);
        worst = Math.max(worst, await e.scope(async () => {
          const x = up(e, logits, [...shape], true);
          const loss = softmaxCrossEntropy(x, e.tensor(labels, shape.slice(0, 3)), { ignoreIndex: 255, classWeights: weights ? up(e, weights, [classes]) : null });
          backward(loss);
          const m = expectClose([(await loss.read())[0]!], [ref.loss], 1e-5, `loss ${shape}`);
          return Math.max(m, expectClose(await x.grad!.read(), ref.grad, 1e-5, `dlogits ${shape}`));
        }));
      }
      return worst;
    },
  },
  {
    name: 'optimizer steps: SGD (momentum 0.9, nesterov, weight decay) and Adam, 3 steps on 1001 elements',
    tol: 'rel 1e-5, floor 5% of max',
    async run(e) {
      let worst = 0;
      for (const kind of ['SGD', 'Adam'] as const) {
        const init = f32r(randn(1001, 110));
        const ref = kind === 'SGD' ? new RefSGD(Float64Array.from(init), { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-2 }) : new RefAdam(Float64Array.from(init), { lr: 0.01 });
        worst = Math.max(worst, await e.scope(async () => {
          const p = up(e, init, [1001]);
          const opt = kind === 'SGD' ? new SGD([p], { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-2 }) : new Adam([p], { lr: 0.01 });
          try {
            for (let step = 0; step < 3; step++) {
              const g = Float32Array.from(randn(1001, 111 + step));
              p.grad?.dispose();
              p.grad = e.tensor(g, [1001]).keep();
              ref.step(g);
              opt.step();
              opt.zeroGrad();
            }
            return expectClose(await p.read(), ref.p, 1e-5, `${kind} parameter`, 0.05 * maxAbs(ref.p));
          } finally {
            opt.dispose();
          }
        }));
      }
      return worst;
    },
  },
];

/** Runs every check (or those whose name contains `filter`) and reports each; never throws. */
export async function runKernelChecks(e: Engine, filter = ''): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const c of CHECKS.filter((c) => c.name.includes(filter))) {
    const t0 = performance.now();
    try {
      const maxErr = await c.run(e);
      out.push({ name: c.name, tol: c.tol, maxErr, ok: true, ms: performance.now() - t0 });
    } catch (err) {
      out.push({ name: c.name, tol: c.tol, maxErr: NaN, ok: false, ms: performance.now() - t0, error: String((err as Error)?.message ?? err) });
    }
  }
  return out;
}
