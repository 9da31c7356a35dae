/**
 * Softmax cross-entropy cases, run by test/loss.test.ts (every shape, weighted and not, i32 and
 * u32 labels) and by the browser page (LOSS_BROWSER), with the helpers both use. Tolerance: loss
 * and dlogits relative error < 1e-5 against float64.
 */
import { backward, readLossStats, softmaxCrossEntropy, type Engine } from '../../entry/index.js';
import { expectClose, randn, rng } from '../check.js';
import { refCrossEntropy } from '../ref/loss.js';
import { f32Round } from './common.js';

/** Labels in [0, K) with about `ignoreFrac` of them set to `ignore`. */
export function makeLabels(pixels: number, classes: number, seed: number, ignoreFrac = 0.2, ignore = 255): number[] {
  const r = rng(seed);
  return Array.from({ length: pixels }, () => (r() < ignoreFrac ? ignore : Math.floor(r() * classes)));
}

/** Runs forward and backward on the GPU; returns the loss and dloss/dlogits. */
export async function lossAndGrad(e: Engine, logits: Float64Array, shape: number[], labels: Int32Array | Uint32Array, opts: { ignoreIndex?: number; weights?: number[] } = {}) {
  return e.scope(async () => {
    const x = e.tensor(Float32Array.from(logits), shape);
    x.requiresGrad = true;
    const y = e.tensor(labels, shape.slice(0, -1));
    const w = opts.weights ? e.tensor(Float32Array.from(opts.weights), [opts.weights.length]) : null;
    const loss = softmaxCrossEntropy(x, y, { ignoreIndex: opts.ignoreIndex, classWeights: w });
    backward(loss);
    return { loss: (await loss.read())[0]!, grad: (await x.grad!.read()) as Float32Array, stats: await readLossStats(loss) };
  });
}

// [1,3,5,70]: more classes than the unrolled kernel takes (64), so the looping kernel runs.
export const LOSS_SHAPES: [number, number, number, number][] = [[2, 7, 9, 5], [3, 4, 6, 19], [1, 3, 5, 70]];

/** What the browser page runs (index into LOSS_SHAPES, class weights, labels type). */
export const LOSS_BROWSER: [number, boolean, Int32ArrayConstructor | Uint32ArrayConstructor][] = [[0, false, Int32Array], [1, true, Int32Array]];

/**
 * Loss and gradient of LOSS_SHAPES[k] (labels with ignored pixels, optional class weights) vs
 * float64 (rel err < 1e-5), and no invalid label counted; returns the largest error.
 */
export async function checkLoss(e: Engine, k: number, weighted: boolean, Labels: Int32ArrayConstructor | Uint32ArrayConstructor): Promise<number> {
  const shape = LOSS_SHAPES[k]!;
  const classes = shape[3]!;
  const pixels = shape[0]! * shape[1]! * shape[2]!;
  const logits = randn(pixels * classes, 100 + k, -4, 4);
  const labels = makeLabels(pixels, classes, 200 + k);
  const weights = Array.from(randn(classes, 300 + k, 0.2, 3));
  const got = await lossAndGrad(e, logits, shape, Labels.from(labels), { weights: weighted ? weights : undefined });
  const ref = refCrossEntropy(f32Round(logits), labels, classes, 255, weighted ? f32Round(weights) : null);
  const what = `${shape} ${Labels.name}${weighted ? ' weighted' : ''}`;
  const worst = Math.max(expectClose([got.loss], [ref.loss], 1e-5, `loss ${what}`), expectClose(got.grad, ref.grad, 1e-5, `grad ${what}`));
  if (got.stats.invalidLabels !== 0) throw new Error(`no invalid labels ${what}: got ${got.stats.invalidLabels}`);
  return worst;
}
