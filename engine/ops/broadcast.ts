/**
 * NumPy broadcasting: binary ops on broadcast shapes, broadcastTo, and its reverse sumToShape (the
 * gradient of every broadcast). Shapes are collapsed before launch (size-1 output axes dropped,
 * neighbouring axes with the same broadcast pattern merged), so any rank whose collapsed form has at
 * most six axes runs on one kernel, and the common NHWC cases ([N,H,W,C] with [C], [N,1,1,C] or
 * [N,H,W,1]) collapse to rank 2 or 3 and read their contiguous operands as vec4s.
 */
import { recordOp } from '../autograd.js';
import { check, checkOperands, fmtShape } from '../errors.js';
import { grid1d, read, readWrite, type ScalarType } from '../program.js';
import type { Tensor } from '../tensor.js';
import { fill } from './accumulate.js';
import { type Interface, WG, generatedSpec, main1d, range } from './shader.js';
import { SG_WG, subgroupMain, useSubgroups, workgroupSumWgsl } from './subgroup.js';

/** Most axes a broadcast may have after collapsing (see the module comment). */
export const MAX_COLLAPSED_RANK = 6;

const prod = (xs: readonly number[]): number => xs.reduce((a, b) => a * b, 1);

/**
 * The NumPy broadcast of two shapes (aligned at the right; a size-1 axis stretches). Throws a
 * ShapeError naming `op`, both tensors and the first axis that disagrees.
 */
export function broadcastShapes(op: string, a: Tensor, b: Tensor): number[] {
  const r = Math.max(a.rank, b.rank);
  const out: number[] = [];
  for (let k = 0; k < r; k++) {
    const da = a.shape[a.rank - r + k] ?? 1;
    const db = b.shape[b.rank - r + k] ?? 1;
    check(da === db || da === 1 || db === 1, op, () =>
      `${a.name} ${fmtShape(a.shape)} and ${b.name} ${fmtShape(b.shape)} do not broadcast: axis ${k - r} is ${da} vs ${db} (sizes must match or one be 1)`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** A broadcast in collapsed form: dims[0] is innermost; strides[j][k] is operand j's stride of axis k (0: broadcast). */
interface Collapsed {
  dims: number[];
  strides: number[][];
}

/** Collapses `out` and operands broadcasting to it (each right-aligned to `out`). */
function collapse(out: readonly number[], operands: readonly (readonly number[])[]): Collapsed {
  const r = out.length;
  const full = operands.map((s) => [...Array<number>(r - s.length).fill(1), ...s]);
  // Contiguous strides of each operand in its own layout, 0 where it is broadcast.
  const strides = full.map((s) => {
    const st = new Array<number>(r);
    for (let k = r - 1, acc = 1; k >= 0; k--) {
      st[k] = s[k] === 1 ? 0 : acc;
      acc *= s[k]!;
    }
    return st;
  });
  const dims: number[] = [];
  const cs: number[][] = operands.map(() => []);
  for (let k = r - 1; k >= 0; k--) {
    const d = out[k]!;
    if (d === 1) continue;
    const last = dims.length - 1;
    // Axis k merges into the inner group when every operand walks both with one stride.
    const merges = last >= 0 && strides.every((st, j) => (st[k] === 0 && cs[j]![last] === 0) || st[k] === cs[j]![last]! * dims[last]!);
    if (merges) dims[last]! *= d;
    else {
      dims.push(d);
      strides.forEach((st, j) => cs[j]!.push(st[k]!));
    }
  }
  if (!dims.length) return { dims: [1], strides: operands.map(() => [0]) };
  return { dims, strides: cs };
}

/**
 * WGSL computing i0..i{rank-1} (axis 0 innermost) from the linear index expression `v`, with the
 * sizes in uniforms p.d0..p.d{rank-2} (see indexUniformDecl). Shared by the kernels that walk
 * collapsed shapes. `mutable` declares them with var, for stepping with `stepIndex`.
 */
export function decompose(rank: number, v: string, mutable = false): string {
  const decl = mutable ? 'var' : 'let';
  const lines = [`var r = ${v};`];
  for (let k = 0; k < rank - 1; k++) lines.push(`${decl} i${k} = r % p.d${k}; r = r / p.d${k};`);
  lines.push(`${decl} i${rank - 1} = r;`);
  return lines.join(' ');
}

/**
 * WGSL advancing the multi-index i0..i{rank-1} by one element, carrying with selects: kernels that
 * do several consecutive elements decompose once, since integer division is emulated lane by lane
 * on CPU adapters (measured ~5 ns per div or mod on SwiftShader). The outermost index is not
 * wrapped: it runs past the end only for tail lanes, whose reads the caller clamps.
 */
export function stepIndex(rank: number): string {
  const lines = ['i0 = i0 + 1u;'];
  for (let k = 0; k < rank - 1; k++)
    lines.push(`{ let w = i${k} == p.d${k}; i${k} = select(i${k}, 0u, w); i${k + 1} = select(i${k + 1}, i${k + 1} + 1u, w); }`);
  return lines.join(' ');
}

/** WGSL for the offset sum of i_k * p.{s}k over the axes. */
export const offset = (rank: number, s: string): string => range(rank).map((k) => `i${k} * p.${s}${k}`).join(' + ');

/**
 * Uniforms of the collapsed index of `rank` axes: d0..d{rank-2} (the outermost size is never
 * read: its index is what is left of the division) and each operand's strides `${prefix}0..`.
 */
export function indexUniformDecl(rank: number, prefixes: readonly string[]): Record<string, ScalarType> {
  const out: Record<string, ScalarType> = {};
  for (let k = 0; k < rank - 1; k++) out[`d${k}`] = 'u32';
  for (const s of prefixes) for (let k = 0; k < rank; k++) out[`${s}${k}`] = 'u32';
  return out;
}

/** Values of indexUniformDecl(dims.length, prefixes) into `out`: sizes and each operand's strides. */
export function indexUniforms(out: Record<string, number>, dims: readonly number[], prefixes: readonly string[], strides: readonly (readonly number[])[]): Record<string, number> {
  for (let k = 0; k < dims.length - 1; k++) out[`d${k}`] = dims[k]!;
  prefixes.forEach((s, j) => strides[j]!.forEach((v, k) => (out[`${s}${k}`] = v)));
  return out;
}

/**
 * binary_broadcast and expand (generated here, see broadcastBody): threads = invocations, then the
 * collapsed index; an operand is read as vec4s (`vec4<f32>`) or scalars (`f32`).
 */
function broadcastDecl(rank: number, types: readonly string[]): Interface {
  const prefixes = ['sa', 'sb'].slice(0, types.length);
  const bindings: Interface['bindings'] =
    types.length === 2 ? { as_: read(types[0]!), bs: read(types[1]!), outs: readWrite('vec4<f32>') } : { as_: read(types[0]!), outs: readWrite('vec4<f32>') };
  return { uniforms: { threads: 'u32', ...indexUniformDecl(rank, prefixes) }, bindings };
}
/** x viewed as [outer, r, inner] (T-typed columns) -> chunked partial sums [outer, chunks, inner]. */
const sumMiddleDecl = (t: string) =>
  ({ uniforms: { threads: 'u32', inner: 'u32', r: 'u32', rows_per_chunk: 'u32', chunks: 'u32' }, bindings: { x: read(t), partial: readWrite(t) } }) as const;
/** sum_middle_partial's interface for the subgroup kernel: `outputs` workgroups, one per partial sum. */
const sumMiddleSgDecl = (t: string) =>
  ({ uniforms: { outputs: 'u32', inner: 'u32', r: 'u32', rows_per_chunk: 'u32', chunks: 'u32' }, bindings: { x: read(t), partial: readWrite(t) } }) as const;
/** sum_rows_partial's interface for the subgroup kernel: `outputs` workgroups, one per partial sum. */
const sumRowsSgDecl = (t: string) => ({ uniforms: { outputs: 'u32', r: 'u32', per_chunk: 'u32', chunks: 'u32' }, bindings: { x: read(t), partial: readWrite('f32') } }) as const;
/** x viewed as [rows, r] (T-typed) -> per-chunk row sums; `r` and `per_chunk` in units of T. */
const sumRowsDecl = (t: string) => ({ uniforms: { threads: 'u32', r: 'u32', per_chunk: 'u32', chunks: 'u32' }, bindings: { x: read(t), partial: readWrite('f32') } }) as const;

/**
 * How many consecutive units (vec4s, usually) of a run of `units` one invocation takes: 4, 2 or 1,
 * whichever divides it. They share index arithmetic and weights, which costs more than the loads
 * on CPU adapters; four vec4s stay inside the register budget (SWIFTSHADER.md lesson 3).
 */
export const runLength = (units: number): number => (units % 4 === 0 ? 4 : units % 2 === 0 ? 2 : 1);

/**
 * Generates the body of binary_broadcast (out = a OP b, `expr` in a and b) and expand (out = a
 * broadcast to the output shape: broadcastTo, and the backward of sumToShape). The index
 * arithmetic is generated because private arrays and loops are slow on SwiftShader; only constant
 * field names of the uniform block appear in it. `vec`: vector mode (d0 counted in vec4s, the
 * stride of axis 0 scaled by 4 so offsets stay in floats), `per` vec4s per invocation;
 * `vecOperand[j]`: operand j is read as vec4 (else it is broadcast along axis 0: one splatted load).
 */
function broadcastBody(rank: number, vec: boolean, per: number, vecOperand: readonly boolean[], expr: string): string {
  const names = ['a', 'b'].slice(0, vecOperand.length);
  const arrays = ['as_', 'bs'];
  if (vec) {
    const lines = [decompose(rank, `i * ${per}u`)];
    names.forEach((n, j) => {
      const off = offset(rank, `s${n}`);
      lines.push(vecOperand[j] ? `let o${n} = (${off}) >> 2u;` : `let ${n} = vec4<f32>(${arrays[j]}[${off}]);`);
    });
    for (let k = 0; k < per; k++) {
      const loads = names.filter((_, j) => vecOperand[j]).map((n) => `let ${n} = ${arrays[names.indexOf(n)]}[o${n} + ${k}u];`);
      lines.push(`{ ${loads.join(' ')} outs[i * ${per}u + ${k}u] = ${expr}; }`);
    }
    return lines.join('\n  ');
  }
  // Scalar mode: four consecutive elements; reads clamped to the buffer for the tail lanes.
  const loads = names.map((n, j) => `let ${n} = ${arrays[j]}[min(${offset(rank, `s${n}`)}, last_${n})];`).join(' ');
  const lanes = range(4).map((u) => `{ ${loads} v[${u}] = ${expr}; }${u < 3 ? ' ' + stepIndex(rank) : ''}`);
  return [
    decompose(rank, 'i * 4u', true),
    ...names.map((n, j) => `let last_${n} = arrayLength(&${arrays[j]}) - 1u;`),
    'var v: vec4<f32>;',
    ...lanes,
    'outs[i] = v;',
  ].join('\n  ');
}

/** Runs binary_broadcast or expand for operands broadcasting to `outShape`. No autograd. */
function runBroadcast(op: string, kernel: 'binary_broadcast' | 'expand', expr: string, operands: readonly Tensor[], outShape: readonly number[]): Tensor {
  const engine = operands[0]!.engine;
  const c = collapse(outShape, operands.map((t) => t.shape));
  const rank = c.dims.length;
  check(rank <= MAX_COLLAPSED_RANK, op, () =>
    `${operands.map((t) => `${t.name} ${fmtShape(t.shape)}`).join(' and ')} broadcast to ${fmtShape(outShape)} with ${rank} alternating broadcast axes; at most ${MAX_COLLAPSED_RANK} are supported`);
  const out = engine.empty(outShape, 'f32');
  const n = out.size;
  if (n === 0) return out;
  const vec = c.dims[0]! % 4 === 0;
  const vecOperand = c.strides.map((s) => vec && s[0] === 1);
  const dims = vec ? [c.dims[0]! / 4, ...c.dims.slice(1)] : c.dims;
  const strides = vec ? c.strides.map((s) => [s[0]! * 4, ...s.slice(1)]) : c.strides;
  const n4 = Math.ceil(n / 4);
  const per = vec ? runLength(dims[0]!) : 1;
  const threads = n4 / per;
  const prefixes = operands.length === 2 ? ['sa', 'sb'] : ['sa'];
  const uniforms = indexUniforms({ threads }, dims, prefixes, strides);
  const bindings: Record<string, Tensor> = operands.length === 2 ? { as_: operands[0]!, bs: operands[1]!, outs: out } : { as_: operands[0]!, outs: out };
  engine.run({
    // The name carries the op, hence the expression; the variant the rest of the generated code.
    name: `${kernel}_${op}`,
    variant: `r${rank}-${vec ? `v${per}` : 's'}-${vecOperand.map((v) => (v ? 'v' : 's')).join('')}`,
    shader: () => {
      const types = vecOperand.map((v) => (v ? 'vec4<f32>' : 'f32'));
      return generatedSpec(broadcastDecl(rank, types), main1d(broadcastBody(rank, vec, per, vecOperand, expr)));
    },
    uniforms,
    bindings,
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: kernel === 'binary_broadcast' ? n : 0,
    bytes: 4 * n + operands.reduce((s, t) => s + t.byteLength, 0),
  });
  return out;
}

/**
 * `a OP b` with NumPy broadcasting, `expr` a WGSL expression in `a` and `b` valid for both f32 and
 * vec4<f32>. No autograd: the ops in basic.ts record it. Shapes must already be validated.
 */
export function binaryBroadcastKernel(op: string, expr: string, a: Tensor, b: Tensor, outShape: readonly number[]): Tensor {
  return runBroadcast(op, 'binary_broadcast', expr, [a, b], outShape);
}

function checkBroadcastTo(op: string, x: Tensor, shape: readonly number[], xIsSmall: boolean): void {
  const small = xIsSmall ? x.shape : shape;
  const big = xIsSmall ? shape : x.shape;
  const what = xIsSmall ? `${x.name} ${fmtShape(x.shape)} does not broadcast to ${fmtShape(shape)}` : `${x.name} ${fmtShape(x.shape)} cannot be summed down to ${fmtShape(shape)}`;
  check(Array.isArray(shape) && shape.every((d) => Number.isInteger(d) && d >= 0), op, () => `target shape must be non-negative integers, got ${JSON.stringify(shape)}`);
  check(small.length <= big.length, op, () => `${what}: the smaller shape has more axes`);
  for (let k = 1; k <= small.length; k++) {
    const s = small[small.length - k]!;
    const b = big[big.length - k]!;
    check(s === b || s === 1, op, () => `${what}: axis ${-k} is ${s} vs ${b} (sizes must match or the smaller be 1)`);
  }
}

/** `x` broadcast (copied) to `shape`; NumPy rules. Backward: sumToShape. */
export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  checkOperands('broadcastTo', x);
  check(x.dtype === 'f32', 'broadcastTo', () => `${x.name} must be f32, got ${x.dtype}`);
  checkBroadcastTo('broadcastTo', x, shape, true);
  const out = runBroadcast('broadcastTo', 'expand', 'a', [x], shape);
  return recordOp(out, 'broadcastTo', [x], (g) => [sumToShapeKernel(g, x.shape)]);
}

/** Sums x over broadcast axes down to `shape` (the reverse of broadcasting). Backward: broadcastTo. */
export function sumToShape(x: Tensor, shape: readonly number[]): Tensor {
  checkOperands('sumToShape', x);
  check(x.dtype === 'f32', 'sumToShape', () => `${x.name} must be f32, got ${x.dtype}`);
  checkBroadcastTo('sumToShape', x, shape, false);
  const out = sumToShapeKernel(x, shape);
  return recordOp(out, 'sumToShape', [x], (g) => [runBroadcast('sumToShape_backward', 'expand', 'a', [g], x.shape)]);
}

/**
 * sumToShape without validation or autograd (backward of broadcast ops). The kept and summed
 * axes of x are collapsed into alternating groups; each summed group is reduced as the middle axis
 * of an [outer, r, inner] view, innermost group first, the last pass writing straight into a
 * tensor of `shape`.
 */
export function sumToShapeKernel(x: Tensor, shape: readonly number[]): Tensor {
  const engine = x.engine;
  const r = x.rank;
  const target = [...Array<number>(r - shape.length).fill(1), ...shape];
  const groups: { size: number; summed: boolean }[] = [];
  for (let k = 0; k < r; k++) {
    const d = x.shape[k]!;
    if (d === 1) continue;
    const summed = target[k] === 1;
    const last = groups[groups.length - 1];
    if (last && last.summed === summed) last.size *= d;
    else groups.push({ size: d, summed });
  }
  if (x.size === 0 || !groups.some((g) => g.summed)) {
    // Nothing to sum (or nothing to sum over): a copy, or zeros for an empty reduction.
    const out = engine.empty(shape, 'f32');
    if (x.size === 0) fill(out, 0);
    else engine.copyBuffer(x, 0, out, 0, x.byteLength);
    return out;
  }
  let cur = x;
  for (;;) {
    let j = groups.length - 1;
    while (!groups[j]!.summed) j--;
    const outer = prod(groups.slice(0, j).map((g) => g.size));
    const inner = prod(groups.slice(j + 1).map((g) => g.size));
    const rows = groups.splice(j, 1)[0]!.size;
    const last = !groups.some((g) => g.summed);
    const next = sumMiddleAxis(cur, outer, rows, inner, last ? shape : [outer * inner]);
    if (cur !== x) cur.dispose();
    cur = next;
    if (last) return cur;
  }
}

/** Invocations a reduction pass aims for: enough to fill a real GPU, few enough partials to re-read cheaply. */
const TARGET_THREADS = 16384;
const MIN_ROWS_PER_CHUNK = 32;

function chunking(lanes: number, rows: number): { chunks: number; perChunk: number } {
  let chunks = lanes >= TARGET_THREADS ? 1 : Math.min(Math.ceil(TARGET_THREADS / lanes), Math.ceil(rows / MIN_ROWS_PER_CHUNK));
  chunks = Math.max(1, chunks);
  const perChunk = Math.max(1, Math.ceil(rows / chunks));
  return { chunks: Math.max(1, Math.ceil(rows / perChunk)), perChunk };
}

/**
 * Chunks of the subgroup kernels (a workgroup per partial sum): at least 8 rows per invocation,
 * and about SG_TARGET_GROUPS workgroups in all.
 */
const SG_TARGET_GROUPS = 1024;
function chunkingSg(lanes: number, rows: number): { chunks: number; perChunk: number } {
  const chunks = Math.max(1, Math.min(Math.ceil(SG_TARGET_GROUPS / lanes), Math.ceil(rows / (8 * SG_WG))));
  const perChunk = Math.ceil(rows / chunks);
  return { chunks: Math.ceil(rows / perChunk), perChunk };
}

/**
 * Whether a pass of lanes (independent sums) over rows takes the subgroup kernel: with the
 * feature on (subgroup.ts), for few lanes over many rows, where a workgroup per sum keeps a GPU
 * busy; many lanes already fill it one invocation each, with neighbouring loads (a heuristic: no
 * hardware GPU was available to measure).
 */
const sgPass = (engine: Tensor['engine'], lanes: number, rows: number): boolean => useSubgroups(engine) && lanes <= 1024 && rows >= 4 * SG_WG;

/**
 * sum_middle_partial: x viewed as [outer, r, inner] with inner > 1; out[k, chunk, c] = sum of
 * x[k, row, c] over the rows of one chunk. Neighbouring invocations read neighbouring columns of
 * type `t` (vec4 columns when inner % 4 == 0); a later pass sums the [outer, chunks, inner]
 * partials. No workgroup memory. Four rows per iteration into two accumulators: fewer loop trips,
 * and shorter dependency chains.
 */
const sumMiddlePartialWgsl = (t: string): string =>
  main1d(`let c = i % p.inner;
  let t = i / p.inner;
  let chunk = t % p.chunks;
  let k = t / p.chunks;
  let r0 = chunk * p.rows_per_chunk;
  let r1 = min(p.r, r0 + p.rows_per_chunk);
  let s = p.inner;
  var at = (k * p.r + r0) * s + c;
  var acc0 = ${t}(0.0);
  var acc1 = ${t}(0.0);
  var row = r0;
  for (; row + 4u <= r1; row = row + 4u) {
    acc0 = acc0 + x[at] + x[at + 2u * s];
    acc1 = acc1 + x[at + s] + x[at + 3u * s];
    at = at + 4u * s;
  }
  for (; row < r1; row = row + 1u) {
    acc0 = acc0 + x[at];
    at = at + s;
  }
  partial[(k * p.chunks + chunk) * p.inner + c] = acc0 + acc1;`);

/**
 * sum_rows_partial: x viewed as [rows, r] (contiguous rows); out[row, chunk] = sum of one chunk of
 * a row. With t = vec4<f32> (r % 4 == 0) sizes are in vec4s and `hsum` adds the four lanes of
 * `acc` at the end.
 */
const sumRowsPartialWgsl = (t: string, hsum: string): string =>
  main1d(`let chunk = i % p.chunks;
  let row = i / p.chunks;
  let j0 = chunk * p.per_chunk;
  let j1 = min(p.r, j0 + p.per_chunk);
  let base = row * p.r;
  var acc0 = ${t}(0.0);
  var acc1 = ${t}(0.0);
  var j = j0;
  for (; j + 4u <= j1; j = j + 4u) {
    acc0 = acc0 + x[base + j] + x[base + j + 2u];
    acc1 = acc1 + x[base + j + 1u] + x[base + j + 3u];
  }
  for (; j < j1; j = j + 1u) { acc0 = acc0 + x[base + j]; }
  let acc = acc0 + acc1;
  partial[i] = ${hsum};`);

/**
 * sum_middle_sg: sum_middle_partial with subgroups, one workgroup per output (k, chunk, c); its
 * invocations take every SG_WG-th row of the chunk, then wg_sum adds the workgroup's partials. For
 * few columns over many rows (the loss's [pixels, 2] terms, a 19-channel bias gradient), where one
 * invocation per column leaves a GPU idle.
 */
const sumMiddleSgWgsl = (t: string): string =>
  subgroupMain([workgroupSumWgsl('wg_sum', t)], `let c = w % p.inner;
  let q = w / p.inner;
  let chunk = q % p.chunks;
  let k = q / p.chunks;
  let r0 = chunk * p.rows_per_chunk;
  let r1 = min(p.r, r0 + p.rows_per_chunk);
  let s = p.inner;
  var acc0 = ${t}(0.0);
  var acc1 = ${t}(0.0);
  var row = r0 + t;
  for (; row + ${SG_WG}u < r1; row = row + 2u * ${SG_WG}u) {
    acc0 = acc0 + x[(k * p.r + row) * s + c];
    acc1 = acc1 + x[(k * p.r + row + ${SG_WG}u) * s + c];
  }
  if (row < r1) { acc0 = acc0 + x[(k * p.r + row) * s + c]; }
  let total = wg_sum(acc0 + acc1, t, sgi);
  if (t == 0u) { partial[(k * p.chunks + chunk) * p.inner + c] = total; }`);

/**
 * sum_rows_sg: sum_rows_partial with subgroups, one workgroup per (row, chunk), its invocations
 * reading neighbouring units of the row, then wg_sum; `hsum` adds a vec4's lanes.
 */
const sumRowsSgWgsl = (t: string, hsum: string): string =>
  subgroupMain([workgroupSumWgsl('wg_sum', t)], `let chunk = w % p.chunks;
  let row = w / p.chunks;
  let j0 = chunk * p.per_chunk;
  let j1 = min(p.r, j0 + p.per_chunk);
  let base = row * p.r;
  var acc0 = ${t}(0.0);
  var acc1 = ${t}(0.0);
  var j = j0 + t;
  for (; j + ${SG_WG}u < j1; j = j + 2u * ${SG_WG}u) {
    acc0 = acc0 + x[base + j];
    acc1 = acc1 + x[base + j + ${SG_WG}u];
  }
  if (j < j1) { acc0 = acc0 + x[base + j]; }
  let acc = wg_sum(acc0 + acc1, t, sgi);
  if (t == 0u) { partial[w] = ${hsum}; }`);

/**
 * Sums `x`, viewed as [outer, r, inner], over r into a tensor of `outShape` (outer * inner
 * elements). Passes of chunked partial sums (no workgroup memory, no atomics) until one is left.
 * `into` (outer * inner f32 elements, any shape, not x): the last pass writes there instead of a
 * new tensor, and it is returned. No validation (but of `into`) or autograd: a building block for
 * sumToShape, fcaFuse and friends.
 */
export function sumMiddleAxis(x: Tensor, outer: number, r: number, inner: number, outShape: readonly number[], into: Tensor | null = null): Tensor {
  const engine = x.engine;
  if (into) check(into.dtype === 'f32' && into.size === outer * inner && into !== x, 'sumMiddleAxis', () => `cannot write [${outer * inner}] sums of ${x.name} into ${into.name} ${fmtShape(into.shape)} ${into.dtype}`);
  const maxDim = engine.limits.maxComputeWorkgroupsPerDimension;
  let cur = x;
  let rows = r;
  for (;;) {
    let chunks: number;
    let next: Tensor;
    if (inner === 1) {
      // Row sums: `units` vectors per row (vec4 when the row allows), HSUM adds a vec4's lanes.
      const vec = rows % 4 === 0;
      const units = vec ? rows / 4 : rows;
      const sg = sgPass(engine, outer, rows);
      const c = (sg ? chunkingSg : chunking)(outer, units);
      chunks = c.chunks;
      next = chunks === 1 ? (into ?? engine.empty(outShape, 'f32')) : engine.empty([outer, chunks], 'f32');
      const sums = outer * chunks;
      const hsum = vec ? 'dot(acc, vec4<f32>(1.0))' : 'acc';
      engine.run({
        name: sg ? 'sum_rows_sg' : 'sum_rows_partial',
        variant: vec ? 'v4' : 's',
        shader: () => {
          const t = vec ? 'vec4<f32>' : 'f32';
          return sg ? generatedSpec(sumRowsSgDecl(t), sumRowsSgWgsl(t, hsum)) : generatedSpec(sumRowsDecl(t), sumRowsPartialWgsl(t, hsum));
        },
        // The subgroup kernel runs a workgroup per sum, the other an invocation per sum.
        uniforms: { ...(sg ? { outputs: sums } : { threads: sums }), r: units, per_chunk: c.perChunk, chunks },
        bindings: { x: cur, partial: next },
        dispatch: sg ? grid1d(sums * SG_WG, SG_WG, maxDim) : grid1d(sums, WG, maxDim),
        flops: outer * rows,
        bytes: 4 * outer * rows,
      });
    } else {
      // Column sums over the middle axis: `cols` vectors of the inner axis.
      const vec = inner % 4 === 0;
      const cols = vec ? inner / 4 : inner;
      const sg = sgPass(engine, outer * cols, rows);
      const c = (sg ? chunkingSg : chunking)(outer * cols, rows);
      chunks = c.chunks;
      next = chunks === 1 ? (into ?? engine.empty(outShape, 'f32')) : engine.empty([outer, chunks, inner], 'f32');
      const sums = outer * chunks * cols;
      engine.run({
        name: sg ? 'sum_middle_sg' : 'sum_middle_partial',
        variant: vec ? 'v4' : 's',
        shader: () => {
          const t = vec ? 'vec4<f32>' : 'f32';
          return sg ? generatedSpec(sumMiddleSgDecl(t), sumMiddleSgWgsl(t)) : generatedSpec(sumMiddleDecl(t), sumMiddlePartialWgsl(t));
        },
        uniforms: { ...(sg ? { outputs: sums } : { threads: sums }), inner: cols, r: rows, rows_per_chunk: c.perChunk, chunks },
        bindings: { x: cur, partial: next },
        dispatch: sg ? grid1d(sums * SG_WG, SG_WG, maxDim) : grid1d(sums, WG, maxDim),
        flops: outer * rows * inner,
        bytes: 4 * outer * rows * inner,
      });
    }
    if (cur !== x) cur.dispose();
    cur = next;
    rows = chunks;
    if (chunks === 1) return cur;
  }
}
