/**
 * A compact set of kernel checks against the float64 references, run both in Node (Dawn) and in
 * headless Chromium (the browser bundle). Depthwise, conv-transpose, batch-norm, FCA, loss and
 * optimizer checks run cases of the Node tests' own tables (test/cases/<family>.ts: same data,
 * runner and tolerances as test/<family>.test.ts); so do the conv2d checks. Platform-neutral: it imports the engine's neutral index, which the page bundle maps
 * to dist/browser/canet-gpu.js. Comparisons happen where the GPU is, so only a summary leaves the page.
 */
import type { Engine } from '../../entry/index.js';
import { CONV2D_BROWSER_FORWARD, CONV2D_BROWSER_GRADS, checkConv2dForward, checkConv2dGrads } from '../cases/conv2d.js';
import { checkDepthwise, DEPTHWISE_BROWSER } from '../cases/depthwise.js';
import { checkConvTranspose, CONV_TRANSPOSE_BROWSER } from '../cases/conv-transpose.js';
import { BATCHNORM_BROWSER_BACKWARD, BATCHNORM_BROWSER_INFERENCE, BATCHNORM_BROWSER_TRAINING, BN_TOL, checkBnGrad, checkBnInferenceForward, checkBnTrainingForward } from '../cases/batchnorm.js';
import { checkFcaBackward, checkFcaForward, FCA_BROWSER } from '../cases/fca.js';
import { checkLoss, LOSS_BROWSER } from '../cases/loss.js';
import { checkOptimConfig, OPTIM_BROWSER } from '../cases/optim.js';

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

/** Runs `check` on each case in turn; the largest error. */
async function worstOf<C>(cases: readonly C[], check: (c: C) => Promise<number>): Promise<number> {
  let worst = 0;
  for (const c of cases) worst = Math.max(worst, await check(c));
  return worst;
}

const CHECKS: Check[] = [
  {
    name: 'conv2d forward: 3x3 pad 1 +bias, 3x3 stride 2 on 17 channels, groups 2 (batch 3; test/cases/conv2d.ts)',
    tol: 'rel 1e-4, floor 1e-2 max|y|',
    run: (e) => worstOf(CONV2D_BROWSER_FORWARD, ({ c, seed }) => checkConv2dForward(e, c, seed)),
  },
  {
    name: 'conv2d backward: x, w, bias vs finite differences of float64 (batch 2, 3x3 stride 2 pad 1; test/cases/conv2d.ts)',
    tol: 'rel 1e-3',
    run: (e) => worstOf(CONV2D_BROWSER_GRADS, ({ c, seed }) => checkConv2dGrads(e, c, seed)),
  },
  {
    name: 'depthwise forward + backward: 3x3 stride 2 pad 1 +bias, 5 (scalar, batch 3) and 96 (vec4) channels (test/cases/depthwise.ts)',
    tol: 'y, dx rel 1e-4; dw, db rel 2e-4',
    run: (e) => worstOf(DEPTHWISE_BROWSER, ({ c, seed }) => checkDepthwise(e, c, seed, true)),
  },
  {
    name: 'conv-transpose forward + backward: k3 s2 p1 op1 (CANet up), 5 -> 3 channels, batch 3 (test/cases/conv-transpose.ts)',
    tol: 'y, dx rel 1e-4; dw, db rel 2e-4',
    run: (e) => worstOf(CONV_TRANSPOSE_BROWSER, ({ c, seed }) => checkConvTranspose(e, c, seed, true)),
  },

  {
    name: 'batch norm training forward: y and running statistics after 1 and 2 calls ([3,7,9,5], [3,64,65,8] needs the chunk merge; test/cases/batchnorm.ts)',
    tol: `y rel ${BN_TOL.trainY.toExponential()}; running statistics rel ${BN_TOL.stats.toExponential()}`,
    run: (e) => worstOf(BATCHNORM_BROWSER_TRAINING, ({ c, seed }) => checkBnTrainingForward(e, c, seed)),
  },
  {
    name: 'batch norm inference forward: y, running statistics unchanged ([3,7,9,5], [3,64,65,8]; test/cases/batchnorm.ts)',
    tol: `y rel ${BN_TOL.inferY.toExponential()}; running statistics exact`,
    run: (e) => worstOf(BATCHNORM_BROWSER_INFERENCE, ({ c, seed }) => checkBnInferenceForward(e, c, seed)),
  },
  {
    name: 'batch norm training backward: x, gamma, beta vs finite differences of float64 ([2,3,3,8]; test/cases/batchnorm.ts)',
    tol: `rel ${BN_TOL.grad.toExponential()}`,
    run: (e) => worstOf(BATCHNORM_BROWSER_BACKWARD, ({ c, seed }) => checkBnGrad(e, c, seed)),
  },
  {
    name: 'FCA fuse forward + exact gradients ([3,7,9,17], test/cases/fca.ts)',
    tol: 'y, dF rel 1e-6; dAs, dAc rel 1e-5',
    run: (e) => worstOf(FCA_BROWSER, async (k) => Math.max(await checkFcaForward(e, k), await checkFcaBackward(e, k))),
  },
  {
    name: 'softmax cross-entropy: loss and dlogits, ignore index, class weights ([2,7,9,5], K=19 [3,4,6,19], test/cases/loss.ts)',
    tol: 'rel 1e-5',
    run: (e) => worstOf(LOSS_BROWSER, ([k, weighted, Labels]) => checkLoss(e, k, weighted, Labels)),
  },
  {
    name: 'optimizer steps: SGD (momentum 0.9, nesterov, weight decay) and Adam, 6 steps on 1, 5 and 1001 elements (test/cases/optim.ts)',
    tol: 'rel 1e-5, floor 5% of max',
    run: (e) => worstOf(OPTIM_BROWSER, (c) => checkOptimConfig(e, c)),
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
