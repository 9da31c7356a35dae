/**
 * Softmax cross-entropy for segmentation, fused: one kernel per call computes each pixel's loss
 * term and its gradient, a column reduction (sumColumns) adds the terms up, and a one-thread
 * kernel divides. Backward is one elementwise scale of the saved gradient.
 *
 * Invalid labels (outside [0, K) and not the ignore index) cannot throw on the GPU, and a
 * readback per step would stall the pipeline, so they are counted on the GPU, left out of the
 * loss like ignored pixels, and reported by `checkLossFinite` together with a NaN/Inf check in
 * one readback whenever the training loop chooses to look (e.g. each logging step). The count lives
 * in the loss tensor's own buffer (element 1, in the pool bucket's slack beyond the one element of
 * data), so it needs no companion tensor whose lifetime could diverge from the loss's: a loss
 * returned from `engine.scope` still carries its count.
 */
import loss from '../../shaders/loss.wgsl';
import { recordOp } from '../autograd.js';
import { check, checkFits, fmtShape } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { fill } from './basic.js';
import { sumColumns } from './reduce.js';
import { type Interface, WG, generatedSpec, main1d, range, sectionSpec } from './shader.js';

const OP = 'softmaxCrossEntropy';
/**
 * Up to this many classes the forward kernel is generated with K unrolled (ce_forward_unrolled):
 * a 256-byte private row per invocation, far under the ~4 KB that stays fast on SwiftShader.
 */
const MAX_UNROLLED_CLASSES = 64;

// Declared interfaces (the forward kernels are generated here, ce_finish and ce_backward are
// sections of shaders/loss.wgsl). Labels are read as u32 bits; `ignore_bits` is the
// ignore index as u32 bits.
const CE_FORWARD_BINDINGS = {
  logits: read('f32'),
  labels: read('u32'),
  /** Per pixel (w[y] * loss, w[y]), summed by sumColumns. */
  terms: readWrite('vec2<f32>'),
  /**
   * The loss tensor's buffer: element 0 receives the loss later (ce_finish); element 1, in the
   * pool bucket's slack, counts invalid labels. Atomics are touched only by invalid pixels, so the
   * usual (all-valid) case has no contention.
   */
  stats: readWrite('atomic<u32>'),
} as const;
/** ce_forward (K a uniform) or ce_forward_unrolled (K compiled in); `grad` when the gradient is kept, `class_weights` when given. */
const ceForwardDecl = (unrolled: boolean, grad: boolean, weights: boolean): Interface => ({
  uniforms: unrolled ? { pixels: 'u32', ignore_bits: 'u32' } : { pixels: 'u32', classes: 'u32', ignore_bits: 'u32' },
  bindings: { ...CE_FORWARD_BINDINGS, ...(grad ? { grad: readWrite('f32') } : {}), ...(weights ? { class_weights: read('f32') } : {}) },
});
/** sums = (sum of w * l, sum of w); out is the loss tensor (element 0 only). */
const CE_FINISH = { bindings: { sums: read('f32'), out: readWrite('f32') } } as const;
const CE_BACKWARD = {
  uniforms: { n4: 'u32' },
  bindings: { grad: read('vec4<f32>'), sums: read('f32'), upstream: read('f32'), dx: readWrite('vec4<f32>') },
} as const;

/**
 * ce_forward and ce_forward_unrolled (generated here). Logits are [pixels, K] with the class axis
 * innermost (NHWC), so one invocation owns one pixel's contiguous row of K logits. Per pixel:
 * (w[y] * (logsumexp(x) - x[y]), w[y]) into `terms` (summed by sumColumns afterwards), and, with
 * `grad`, the unnormalised gradient w[y] * (softmax(x) - onehot(y)): backward is then a single
 * scale by (upstream / sum of weights), known only after the reduction, with no second pass over
 * the logits. Ignored and invalid pixels contribute (0, 0) and a zero gradient row. Labels are read
 * as u32 bits: an i32 label below zero has its top bit set, so one `y < classes` test rejects both
 * negative i32 and too-large labels. store_grad and class_weight use the optional grad and
 * class_weights bindings when the call has them, else do nothing and weigh 1.
 *
 * `classes` given: K is fixed at compile time and the row code unrolled, each logit loaded once
 * into a private array indexed by constants (registers), instead of three times through per-lane
 * gathers. On SwiftShader this made the kernel ~2.5x faster at K = 19, as fast as an elementwise
 * add over the logits. One pipeline per class count, which a model fixes. Else K is the uniform
 * `classes`. Subtracting the row max keeps every exp() argument <= 0: logits of +-1e4 give
 * exp(-2e4) = 0 instead of inf, and the sum is at least 1, so log() never sees 0; (m - x[y]) first:
 * both are large for big logits and their difference is exact-ish in f32.
 */
function ceForwardWgsl(classes: number | null, grad: boolean, weights: boolean): string {
  const k = classes === null ? 'p.classes' : `${classes}u`;
  const each = (f: (c: number) => string, from = 0): string => range(classes! - from).map((j) => f(j + from)).join('\n  ');
  const zeroRow = classes === null ? 'for (var c = 0u; c < p.classes; c = c + 1u) { store_grad(base + c, 0.0); }' : each((c) => `store_grad(base + ${c}u, 0.0);`);
  const row =
    classes === null
      ? `var m = logits[base];
  for (var c = 1u; c < p.classes; c = c + 1u) { m = max(m, logits[base + c]); }
  var s = 0.0;
  for (var c = 0u; c < p.classes; c = c + 1u) { s = s + exp(logits[base + c] - m); }`
      : `var v: array<f32, ${classes}>;
  ${each((c) => `v[${c}] = logits[base + ${c}u];`)}
  var m = v[0];
  ${each((c) => `m = max(m, v[${c}]);`, 1)}
  var s = 0.0;
  ${each((c) => `v[${c}] = exp(v[${c}] - m); s = s + v[${c}];`)}`;
  const storeGrad =
    classes === null
      ? `for (var c = 0u; c < p.classes; c = c + 1u) {
      store_grad(base + c, exp(logits[base + c] - m) * ws - select(0.0, w, c == y));
    }`
      : each((c) => `store_grad(base + ${c}u, v[${c}] * ws - select(0.0, w, y == ${c}u));`);
  return `${grad ? 'fn store_grad(i: u32, v: f32) { grad[i] = v; }' : 'fn store_grad(i: u32, v: f32) {}'}
${weights ? 'fn class_weight(c: u32) -> f32 { return class_weights[c]; }' : 'fn class_weight(c: u32) -> f32 { return 1.0; }'}
const WRITE_GRAD: bool = ${grad};

${main1d(`let y = labels[i];
  let base = i * ${k};
  let ignored = y == p.ignore_bits;
  let valid = (y < ${k}) & !ignored;
  if (!valid) {
    if (!ignored) { atomicAdd(&stats[1], 1u); }
    terms[i] = vec2<f32>(0.0);
    if (WRITE_GRAD) {
      ${zeroRow}
    }
    return;
  }
  ${row}
  let w = class_weight(y);
  let loss = (m - logits[base + y]) + log(s);
  terms[i] = vec2<f32>(w * loss, w);
  if (WRITE_GRAD) {
    let ws = w / s;
    ${storeGrad}
  }`, { count: 'pixels' })}`;
}

export interface CrossEntropyOptions {
  /** Label value whose pixels are left out of the loss and the mean (default 255, Cityscapes). */
  ignoreIndex?: number;
  /** Per-class weights [K] (f32); the mean becomes sum(w[y] * loss) / sum(w[y]). No gradient flows to them. */
  classWeights?: Tensor | null;
}

/** What a loss tensor made by softmaxCrossEntropy needs for its error messages. */
interface LossMeta {
  classes: number;
  ignoreIndex: number;
}
const lossMeta = new WeakMap<Tensor, LossMeta>();

/**
 * Softmax cross-entropy per pixel, averaged over non-ignored pixels, as PyTorch's
 * `F.cross_entropy(logits, labels, weight=w, ignore_index=i)`: with class weights the mean is
 * sum(w[y] * loss) / sum(w[y]). If every pixel is ignored the loss is 0 with a zero gradient.
 *
 * @param logits f32 `[..., K]` (NHWC `[N, H, W, K]` in CANet).
 * @param labels i32 or u32 of shape `logits.shape[:-1]`. Labels outside [0, K) other than the
 *   ignore index are counted on the GPU and treated as ignored; see {@link checkLossFinite}.
 * @returns a one-element tensor `[1]`. Its gradient w.r.t. logits is computed in the same pass
 *   (saved, one tensor the size of `logits`, only when logits require grad and grad mode is on).
 * @throws ShapeError on wrong dtypes or shapes, empty logits, or an ignore index the label dtype
 *   cannot hold; nothing is dispatched then.
 */
export function softmaxCrossEntropy(logits: Tensor, labels: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? 255;
  const weights = opts.classWeights ?? null;

  check(logits.dtype === 'f32', OP, () => `logits ${logits.name} must be f32, got ${logits.dtype}`);
  check(logits.rank >= 1, OP, () => `logits ${logits.name} must have a class axis, got shape ${fmtShape(logits.shape)}`);
  const classes = logits.shape[logits.rank - 1]!;
  check(logits.size > 0, OP, () => `logits ${logits.name} ${fmtShape(logits.shape)} is empty (expected at least one pixel and one class)`);
  check(labels.dtype === 'i32' || labels.dtype === 'u32', OP, () => `labels ${labels.name} must be i32 or u32, got ${labels.dtype}`);
  const pixelShape = logits.shape.slice(0, -1);
  check(labels.rank === pixelShape.length && labels.shape.every((d, i) => d === pixelShape[i]), OP, () =>
    `labels ${labels.name} must have shape ${fmtShape(pixelShape)} (logits ${fmtShape(logits.shape)} without the class axis), got ${fmtShape(labels.shape)}`);
  const lo = labels.dtype === 'i32' ? -(2 ** 31) : 0;
  const hi = labels.dtype === 'i32' ? 2 ** 31 : 2 ** 32;
  check(Number.isInteger(ignoreIndex) && ignoreIndex >= lo && ignoreIndex < hi, OP, () =>
    `ignoreIndex must be an integer a ${labels.dtype} label can hold ([${lo}, ${hi})), got ${ignoreIndex}`);
  if (weights) {
    check(weights.dtype === 'f32', OP, () => `classWeights ${weights.name} must be f32, got ${weights.dtype}`);
    check(weights.rank === 1 && weights.shape[0] === classes, OP, () =>
      `classWeights ${weights.name} must have shape [${classes}] (one per class of logits ${fmtShape(logits.shape)}), got ${fmtShape(weights.shape)}`);
  }
  for (const t of weights ? [logits, labels, weights] : [logits, labels]) {
    check(!t.disposed, OP, () => `${t.name} was disposed`);
    check(t.engine === logits.engine, OP, () => `${t.name} belongs to another engine than logits ${logits.name}`);
  }

  const engine = logits.engine;
  const pixels = logits.size / classes;
  checkFits(OP, engine.limits, [pixels, 2], 'per-pixel loss terms');
  const needGrad = engine.gradEnabled && logits.requiresGrad;
  const out = fill(engine.empty([1], 'f32'), 0); // zeroes the invalid-label counter in the slack too
  const terms = engine.empty([pixels, 2], 'f32');
  const grad = needGrad ? engine.empty(logits.shape, 'f32') : null;

  const bindings: Record<string, Tensor> = { logits, labels, terms, stats: out };
  if (grad) bindings.grad = grad;
  if (weights) bindings.class_weights = weights;
  const unrolled = classes <= MAX_UNROLLED_CLASSES;
  const kernel = unrolled ? 'ce_forward_unrolled' : 'ce_forward';
  const variant = `${unrolled ? `k${classes}` : 'k'}${grad ? '-grad' : ''}${weights ? '-w' : ''}`;
  engine.run({
    name: kernel,
    variant,
    shader: () => generatedSpec(ceForwardDecl(unrolled, grad !== null, weights !== null), ceForwardWgsl(unrolled ? classes : null, grad !== null, weights !== null)),
    uniforms: unrolled ? { pixels, ignore_bits: ignoreIndex >>> 0 } : { pixels, classes, ignore_bits: ignoreIndex >>> 0 },
    bindings,
    dispatch: grid1d(pixels, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 6 * logits.size,
    bytes: (grad ? 2 : 1) * logits.byteLength + labels.byteLength + terms.byteLength,
  });
  const sums = sumColumns(terms, 2);
  terms.dispose(); // recorded work still reads it; the buffer's next user records after that
  engine.run({
    name: 'ce_finish',
    shader: () => sectionSpec(CE_FINISH, loss, 'ce_finish'),
    bindings: { sums, out },
    dispatch: [1],
  });
  lossMeta.set(out, { classes, ignoreIndex });
  if (!grad) {
    sums.dispose();
    return out;
  }
  return recordOp(out, OP, [logits], (g) => {
    if (grad.disposed || sums.disposed)
      throw new Error(`${OP} backward: the saved gradient was disposed; call backward inside the scope that computed the loss`);
    return [crossEntropyBackward(grad, sums, g)];
  });
}

function crossEntropyBackward(grad: Tensor, sums: Tensor, upstream: Tensor): Tensor {
  check(upstream.size === 1, `${OP} backward`, () => `upstream gradient must have one element, got ${fmtShape(upstream.shape)}`);
  const engine = grad.engine;
  const dx = engine.empty(grad.shape, 'f32');
  const n4 = Math.ceil(grad.size / 4);
  engine.run({
    name: 'ce_backward',
    shader: () => sectionSpec(CE_BACKWARD, loss, 'ce_backward', { WG }),
    uniforms: { n4 },
    bindings: { grad, sums, upstream, dx },
    dispatch: grid1d(n4, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: grad.size,
    bytes: 2 * grad.byteLength,
  });
  return dx;
}

/** The loss value and the invalid-label count behind it. */
export interface LossStats {
  loss: number;
  /** Labels outside [0, K) that were not the ignore index (0 for losses not made by softmaxCrossEntropy). */
  invalidLabels: number;
}

/**
 * Reads a loss and, for a loss made by {@link softmaxCrossEntropy}, its invalid-label count, in one
 * readback (flushes pending work). For any other one-element tensor `invalidLabels` is 0: a loss
 * derived from a cross-entropy (scaled, summed with another term) does not carry the count, so
 * check the cross-entropy tensor itself.
 */
export async function readLossStats(loss: Tensor): Promise<LossStats> {
  check(loss.size === 1, 'readLossStats', () => `${loss.name} must have one element, got shape ${fmtShape(loss.shape)}`);
  check(!loss.disposed, 'readLossStats', () => `${loss.name} was disposed`);
  if (!lossMeta.has(loss)) return { loss: (await loss.read())[0]!, invalidLabels: 0 };
  const engine = loss.engine;
  const both = engine.empty([2], 'u32');
  try {
    engine.copyBuffer(loss, 0, both, 0, 8);
    const bits = (await both.read()) as Uint32Array;
    return { loss: new Float32Array(bits.buffer, bits.byteOffset, 1)[0]!, invalidLabels: bits[1]! };
  } finally {
    both.dispose();
  }
}

/** Thrown by {@link checkLossFinite}; carries what was read so a caller can log or decide. */
export class LossCheckError extends Error {
  override name = 'LossCheckError';
  constructor(message: string, readonly step: number, readonly loss: number, readonly invalidLabels: number) {
    super(message);
  }
}

function invalidLabelsMessage(count: number, classes: number, ignoreIndex: number): string {
  return `${count} label${count === 1 ? '' : 's'} outside [0, ${classes}) and not the ignore index ${ignoreIndex}`;
}

/**
 * Reads the loss (and its invalid-label count) in one readback and throws a
 * {@link LossCheckError} naming `step` when the loss is NaN/Inf ("non-finite loss at step 17") or
 * labels were invalid ("3 labels outside [0, 19) and not the ignore index 255 at step 17").
 * Returns the loss value, so logging it costs no second readback.
 */
export async function checkLossFinite(loss: Tensor, step: number): Promise<number> {
  const stats = await readLossStats(loss);
  const meta = lossMeta.get(loss);
  const problems: string[] = [];
  if (stats.invalidLabels > 0 && meta)
    problems.push(`${invalidLabelsMessage(stats.invalidLabels, meta.classes, meta.ignoreIndex)} at step ${step} (their pixels were left out of the loss)`);
  if (!Number.isFinite(stats.loss)) problems.push(`non-finite loss at step ${step} (${stats.loss})`);
  if (problems.length) throw new LossCheckError(problems.join('; '), step, stats.loss, stats.invalidLabels);
  return stats.loss;
}

/**
 * Checks labels on the CPU before upload: every value must be in [0, classes) or equal
 * `ignoreIndex`. Throws a RangeError with the count and the first offending value and index.
 */
export function validateLabels(labels: Int32Array | Uint32Array | Uint8Array, classes: number, ignoreIndex = 255): void {
  if (!Number.isInteger(classes) || classes < 1) throw new RangeError(`validateLabels: classes must be an integer >= 1, got ${classes}`);
  let count = 0;
  let first = -1;
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i]!;
    if ((y < 0 || y >= classes) && y !== ignoreIndex) {
      if (count++ === 0) first = i;
    }
  }
  if (count)
    throw new RangeError(`validateLabels: ${invalidLabelsMessage(count, classes, ignoreIndex)} (first: ${labels[first]} at index ${first})`);
}
