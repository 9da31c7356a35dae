/** float64 reference for softmax cross-entropy with ignore index and class weights (tests only). */
import { refSum } from './elementwise.js';

export interface RefCrossEntropy {
  loss: number;
  /** dloss/dlogits, same layout as the logits. */
  grad: Float64Array;
  /** Labels outside [0, K) that are not the ignore index (left out of the loss). */
  invalid: number;
}

/**
 * PyTorch's F.cross_entropy(weight=w, ignore_index=i, reduction='mean') over rows of K logits:
 * sum(w[y] * (logsumexp(x) - x[y])) / sum(w[y]) over non-ignored rows; 0 when none count.
 */
export function refCrossEntropy(logits: ArrayLike<number>, labels: ArrayLike<number>, classes: number, ignoreIndex = 255, weights: ArrayLike<number> | null = null): RefCrossEntropy {
  const pixels = labels.length;
  const terms: number[] = [];
  const ws: number[] = [];
  const grad = new Float64Array(pixels * classes);
  const soft = new Float64Array(classes);
  let invalid = 0;
  for (let i = 0; i < pixels; i++) {
    const y = labels[i]!;
    if (y === ignoreIndex) continue;
    if (!(Number.isInteger(y) && y >= 0 && y < classes)) {
      invalid++;
      continue;
    }
    let m = -Infinity;
    for (let c = 0; c < classes; c++) m = Math.max(m, logits[i * classes + c]!);
    for (let c = 0; c < classes; c++) soft[c] = Math.exp(logits[i * classes + c]! - m);
    const s = refSum(soft);
    const w = weights ? weights[y]! : 1;
    terms.push(w * (m - logits[i * classes + y]! + Math.log(s)));
    ws.push(w);
    for (let c = 0; c < classes; c++) grad[i * classes + c] = w * (soft[c]! / s - (c === y ? 1 : 0));
  }
  const sw = refSum(ws);
  if (sw === 0) return { loss: 0, grad: grad.fill(0), invalid };
  for (let k = 0; k < grad.length; k++) grad[k]! /= sw;
  return { loss: refSum(terms) / sw, grad, invalid };
}
