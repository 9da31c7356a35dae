/**
 * `canet train --class-weights`: per-class loss weights, so that thin, rare classes (poles, signs,
 * riders) are not drowned by road and sky. `enet` is the scheme of ENet (Paszke et al. 2016),
 * w_c = 1 / ln(1.02 + p_c), with the pixel frequencies p_c counted on a fixed, evenly spaced sample
 * of the training set (deterministic, so a resumed run uses the same weights: they are stored in the
 * run's config). A comma-separated list gives the weights by hand.
 */
import type { Dataset } from './data.js';
import { UsageError } from './args.js';

export type ClassWeightSpec = { kind: 'none' } | { kind: 'enet' } | { kind: 'list'; weights: number[] };

export function parseClassWeights(value: string, classes: number): ClassWeightSpec {
  if (value === 'none') return { kind: 'none' };
  if (value === 'enet') return { kind: 'enet' };
  const parts = value.split(',').map((s) => s.trim());
  const weights = parts.map(Number);
  if (parts.some((s) => s === '') || weights.some((w) => !Number.isFinite(w) || w < 0))
    throw new UsageError(`--class-weights must be none, enet or ${classes} comma-separated non-negative numbers; got '${value}'`);
  if (weights.length !== classes)
    throw new UsageError(`--class-weights has ${weights.length} numbers, expected one per class (${classes})`);
  if (!weights.some((w) => w > 0)) throw new UsageError('--class-weights are all zero: no pixel would count in the loss');
  return { kind: 'list', weights };
}

/** Pixel counts per class over `samples` evenly spaced images of `data` (ignoreIndex and ids >= classes skipped). */
export async function classPixelCounts(data: Dataset, classes: number, samples: number, ignoreIndex = 255): Promise<Float64Array> {
  const counts = new Float64Array(classes);
  const n = Math.min(data.size, Math.max(1, samples));
  for (let k = 0; k < n; k++) {
    const { labels } = await data.get(Math.floor((k * data.size) / n));
    for (let i = 0; i < labels.length; i++) {
      const c = labels[i]!;
      if (c !== ignoreIndex && c < classes) counts[c]!++;
    }
  }
  return counts;
}

/** ENet's weights from pixel counts: 1 / ln(1.02 + p); bounded by ~50.5 for classes never seen. */
export function enetWeights(counts: Float64Array): number[] {
  let total = 0;
  for (const c of counts) total += c;
  return Array.from(counts, (c) => 1 / Math.log(1.02 + (total > 0 ? c / total : 0)));
}

/** The weights a spec means for `data`, or null for none. */
export async function resolveClassWeights(spec: ClassWeightSpec, data: Dataset, classes: number, samples = 64): Promise<number[] | null> {
  if (spec.kind === 'none') return null;
  if (spec.kind === 'list') return spec.weights;
  return enetWeights(await classPixelCounts(data, classes, samples));
}
