/**
 * Column sums: x viewed as [rows, cols] with cols the last axis, summed over rows. For NHWC
 * tensors this is the per-channel sum over N, H, W that bias gradients, batch-norm statistics and
 * broadcast backward all need; one implementation serves them all.
 */
import reduce from '../../shaders/reduce.wgsl';
import { check } from '../errors.js';
import { grid1d, kernelSection } from '../program.js';
import type { Tensor } from '../tensor.js';

const WG = 64;
const ROWS_PER_CHUNK = 64;

/** Sums `x` over every axis but the last: [..., C] -> [C]. No autograd (a building block). */
export function sumColumns(x: Tensor, cols = x.shape[x.shape.length - 1] ?? 1): Tensor {
  check(x.dtype === 'f32', 'sumColumns', () => `${x.name} must be f32, got ${x.dtype}`);
  check(cols > 0 && x.size % cols === 0, 'sumColumns', () => `${x.name} has ${x.size} elements, not a multiple of ${cols} columns`);
  const engine = x.engine;
  let cur = x;
  let rows = x.size / cols;
  for (;;) {
    const chunks = Math.max(1, Math.ceil(rows / ROWS_PER_CHUNK));
    const next = engine.empty(chunks === 1 ? [cols] : [chunks, cols], 'f32');
    engine.run({
      name: 'sum_columns_partial',
      source: kernelSection(reduce, 'sum_columns_partial'),
      defines: { WG },
      uniforms: [rows, cols, ROWS_PER_CHUNK, chunks],
      bindings: [cur, next],
      dispatch: grid1d(cols * chunks, WG, engine.limits.maxComputeWorkgroupsPerDimension),
      flops: rows * cols,
      bytes: rows * cols * 4,
    });
    if (cur !== x) cur.dispose();
    cur = next;
    rows = chunks;
    if (chunks === 1) return cur;
  }
}
