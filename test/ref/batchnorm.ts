/** float64 reference for batch normalisation over [..., C] (tests only), after PyTorch's BatchNorm2d. */

export interface RefBatchNormResult {
  y: Float64Array;
  /** Batch mean and biased variance per channel (training), or the running ones (inference). */
  mean: Float64Array;
  variance: Float64Array;
  /** Running statistics after the call (updated in training, unchanged in inference). */
  runningMean: Float64Array;
  runningVar: Float64Array;
}

/**
 * y = (x - mean) / sqrt(var + eps) * gamma + beta per channel (the last axis of x, C channels).
 * Training: batch mean and biased variance (two-pass, so the reference is accurate whatever the
 * offset), running = (1 - momentum) running + momentum batch with the unbiased variance
 * (n / (n - 1); for n = 1 the biased one, as the engine documents).
 */
export function refBatchNorm(
  x: Float64Array,
  c: number,
  gamma: Float64Array,
  beta: Float64Array,
  runningMean: Float64Array,
  runningVar: Float64Array,
  opts: { training: boolean; momentum?: number; eps?: number },
): RefBatchNormResult {
  const momentum = opts.momentum ?? 0.1;
  const eps = opts.eps ?? 1e-5;
  const rows = x.length / c;
  let mean: Float64Array;
  let variance: Float64Array;
  let newMean = Float64Array.from(runningMean);
  let newVar = Float64Array.from(runningVar);
  if (opts.training) {
    mean = new Float64Array(c);
    variance = new Float64Array(c);
    for (let i = 0; i < x.length; i++) mean[i % c] += x[i]!;
    for (let k = 0; k < c; k++) mean[k] /= rows;
    for (let i = 0; i < x.length; i++) variance[i % c] += (x[i]! - mean[i % c]!) ** 2;
    const unbiased = variance.map((v) => v / Math.max(rows - 1, 1));
    for (let k = 0; k < c; k++) variance[k] /= rows;
    newMean = newMean.map((r, k) => (1 - momentum) * r + momentum * mean[k]!);
    newVar = newVar.map((r, k) => (1 - momentum) * r + momentum * unbiased[k]!);
  } else {
    mean = Float64Array.from(runningMean);
    variance = Float64Array.from(runningVar);
  }
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const k = i % c;
    y[i] = ((x[i]! - mean[k]!) / Math.sqrt(variance[k]! + eps)) * gamma[k]! + beta[k]!;
  }
  return { y, mean, variance, runningMean: newMean, runningVar: newVar };
}
