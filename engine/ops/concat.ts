/**
 * Data movement on the GPU: concat, slice and permute, for any 32-bit dtype (words are copied as u32,
 * bit for bit); gradients flow for f32. A tensor viewed as [outer, axis, inner] turns concat and
 * slice into copies of column bands of rows: contiguous bands (one row, or few rows) go through
 * copyBufferToBuffer (~15x faster than a kernel on SwiftShader), the rest through one strided-copy
 * kernel per input.
 */
import { recordOp } from '../autograd.js';
import { check, checkOperands, fmtShape } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { MAX_COLLAPSED_RANK, decompose, indexUniformDecl, indexUniforms, offset, stepIndex } from './broadcast.js';
import { WG, generatedSpec, main1d, range } from './shader.js';

/** Elements (or vec4s) per invocation in copy_rows. */
const PER = 4;
/** Up to this many rows, a band copy is issued as one copyBufferToBuffer per row. */
const MAX_COPY_COMMANDS = 8;

// Declared interfaces. Every kernel moves 32-bit words as u32 so that any dtype is copied bit for
// bit: T is vec4<u32> where the layout keeps whole vec4s inside rows, u32 otherwise; sizes and
// offsets are in units of T. The kernels are generated here: their bodies do several elements per
// invocation in the scalar case (SWIFTSHADER.md: per-invocation overhead and gathers dominate).
/** `total` = rows * len units to copy, PER per invocation. */
const COPY_ROWS = (t: string) =>
  ({
    uniforms: { threads: 'u32', total: 'u32', len: 'u32', src_row: 'u32', src_off: 'u32', dst_row: 'u32', dst_off: 'u32' },
    bindings: { src: read(t), dst: readWrite(t) },
  }) as const;
/** dx rows of `row` units, the band [off, off + len) from g. */
const SLICE_BACKWARD = (t: string) =>
  ({ uniforms: { threads: 'u32', row: 'u32', off: 'u32', len: 'u32' }, bindings: { g: read(t), dx: readWrite('vec4<u32>') } }) as const;
/** The collapsed index of `rank` output axes (d0..) and x's strides along them (s0..). */
const PERMUTE = (rank: number, tx: string) => ({ uniforms: { threads: 'u32', ...indexUniformDecl(rank, ['s']) }, bindings: { x: read(tx), out: readWrite('vec4<u32>') } }) as const;

const prod = (xs: readonly number[]): number => xs.reduce((a, b) => a * b, 1);

/** Resolves a possibly negative axis of `x`, or throws a ShapeError naming op, tensor and rank. */
function resolveAxis(op: string, x: Tensor, axis: number): number {
  const r = x.rank;
  check(Number.isInteger(axis) && axis >= -r && axis < r, op, () =>
    `axis ${axis} is out of range for ${x.name} ${fmtShape(x.shape)} (rank ${r}: axis must be an integer in [${-r}, ${r - 1}])`);
  return axis < 0 ? axis + r : axis;
}

/**
 * dst[o, dstOff + j] = src[o, srcOff + j] for o < rows, j < len, rows of srcRow / dstRow words:
 * concat writes each input into its column band of the output, slice reads one band (copy_rows
 * where a kernel is needed). No validation or autograd.
 */
function copyRows(src: Tensor, dst: Tensor, rows: number, len: number, srcRow: number, srcOff: number, dstRow: number, dstOff: number): void {
  const engine = src.engine;
  if (rows * len === 0) return;
  if (srcRow === len && dstRow === len) {
    engine.copyBuffer(src, srcOff * 4, dst, dstOff * 4, rows * len * 4);
    return;
  }
  if (rows <= MAX_COPY_COMMANDS) {
    for (let o = 0; o < rows; o++) engine.copyBuffer(src, (o * srcRow + srcOff) * 4, dst, (o * dstRow + dstOff) * 4, len * 4);
    return;
  }
  const vec = [len, srcRow, srcOff, dstRow, dstOff].every((v) => v % 4 === 0);
  const u = vec ? 4 : 1;
  const total = (rows * len) / u;
  const threads = Math.ceil(total / PER);
  engine.run({
    name: 'copy_rows',
    variant: vec ? 'v4' : 's',
    shader: () => {
      const body: string[] = [];
      for (let k = 0; k < PER; k++) {
        body.push(`if (e0 + ${k}u < p.total) { dst[o * p.dst_row + p.dst_off + j] = src[o * p.src_row + p.src_off + j]; }`);
        if (k < PER - 1) body.push('j = j + 1u; { let wrap = j == p.len; j = select(j, 0u, wrap); o = select(o, o + 1u, wrap); }');
      }
      const t = vec ? 'vec4<u32>' : 'u32';
      // Elements e0, e0 + 1, ... unrolled; each write is guarded, since past `total` lie other
      // inputs' bands of the same output.
      return generatedSpec(COPY_ROWS(t), main1d(`let e0 = i * ${PER}u;
  var o = e0 / p.len;
  var j = e0 - o * p.len;
  ${body.join('\n  ')}`));
    },
    uniforms: { threads, total, len: len / u, src_row: srcRow / u, src_off: srcOff / u, dst_row: dstRow / u, dst_off: dstOff / u },
    bindings: { src, dst },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    bytes: 8 * rows * len,
  });
}

/**
 * Writes src [N, H, W, C] into channels [offset, offset + C) of dst [N, H, W, C'] in place (one
 * part of a concatenation whose other parts producers wrote themselves). No autograd. Also f16
 * (channel counts and offset even).
 */
export function copyChannelsInto(src: Tensor, dst: Tensor, offset: number): void {
  const op = 'copyChannelsInto';
  const c = src.shape[src.rank - 1]!;
  const cd = dst.shape[dst.rank - 1]!;
  check(src.rank === dst.rank && src.dtype === dst.dtype && src.shape.slice(0, -1).every((d, i) => d === dst.shape[i]), op, () =>
    `${src.name} ${fmtShape(src.shape)} and ${dst.name} ${fmtShape(dst.shape)} must agree in every axis but the last, and in dtype`);
  check(Number.isInteger(offset) && offset >= 0 && offset + c <= cd, op, () => `channels [${offset}, ${offset + c}) do not fit ${dst.name} ${fmtShape(dst.shape)}`);
  // f16 (the f16 inference path) copies pairs of channels as words: every count must be even.
  const per = src.dtype === 'f16' ? 2 : 1;
  check(c % per === 0 && cd % per === 0 && offset % per === 0, op, () =>
    `f16 channels are copied in pairs: ${src.name} ${fmtShape(src.shape)} into channel ${offset} of ${dst.name} ${fmtShape(dst.shape)} needs even counts and offset`);
  copyRows(src, dst, src.size / c, c / per, c / per, 0, cd / per, offset / per);
  dst.version++;
}

/**
 * Concatenate along `axis` (negative counts from the end; CANet concatenates channels, axis -1).
 * All tensors share dtype, rank and every size but the axis one. Backward: slices of the gradient.
 */
export function concat(tensors: Tensor[], axis: number): Tensor {
  check(Array.isArray(tensors) && tensors.length > 0, 'concat', () => `needs at least one tensor, got ${Array.isArray(tensors) ? 0 : typeof tensors}`);
  checkOperands('concat', ...tensors);
  const first = tensors[0]!;
  check(first.rank >= 1, 'concat', () => `${first.name} is a scalar (shape []); concat needs rank >= 1`);
  const ax = resolveAxis('concat', first, axis);
  const expected = first.shape.map((d, k) => (k === ax ? '*' : String(d)));
  tensors.forEach((t, i) => {
    check(t.dtype === first.dtype, 'concat', () => `${t.name} (tensor ${i}) is ${t.dtype} but ${first.name} (tensor 0) is ${first.dtype}`);
    check(t.rank === first.rank && t.shape.every((d, k) => k === ax || d === first.shape[k]), 'concat', () =>
      `${t.name} (tensor ${i}) has shape ${fmtShape(t.shape)}, expected [${expected.join(', ')}] (every size but axis ${ax} must match ${first.name} ${fmtShape(first.shape)})`);
  });
  const engine = first.engine;
  const sizes = tensors.map((t) => t.shape[ax]!);
  const total = sizes.reduce((a, b) => a + b, 0);
  const outShape = first.shape.map((d, k) => (k === ax ? total : d));
  const outer = prod(first.shape.slice(0, ax));
  const inner = prod(first.shape.slice(ax + 1));
  const out = engine.empty(outShape, first.dtype);
  const offsets: number[] = [];
  let off = 0;
  for (const [i, t] of tensors.entries()) {
    offsets.push(off);
    copyRows(t, out, outer, sizes[i]! * inner, sizes[i]! * inner, 0, total * inner, off * inner);
    off += sizes[i]!;
  }
  return recordOp(out, 'concat', tensors, (g) =>
    tensors.map((t, i) => (t.requiresGrad ? sliceKernel(g, t.shape, outer, total * inner, offsets[i]! * inner, sizes[i]! * inner) : null)),
  );
}

/** g's band [off, off + len) of rows of `row` words, as a tensor of `shape`. No autograd. */
function sliceKernel(g: Tensor, shape: readonly number[], rows: number, row: number, off: number, len: number): Tensor {
  const out = g.engine.empty(shape, g.dtype);
  copyRows(g, out, rows, len, row, off, len, 0);
  return out;
}

/**
 * x[..., start:start+length, ...] along `axis` (negative counts from the end), as a new tensor.
 * Backward: the gradient scattered into zeros by one kernel.
 */
export function slice(x: Tensor, axis: number, start: number, length: number): Tensor {
  checkOperands('slice', x);
  check(x.rank >= 1, 'slice', () => `${x.name} is a scalar (shape []); slice needs rank >= 1`);
  const ax = resolveAxis('slice', x, axis);
  const d = x.shape[ax]!;
  check(Number.isInteger(start) && start >= 0, 'slice', () => `start must be an integer >= 0, got ${start}`);
  check(Number.isInteger(length) && length >= 1, 'slice', () => `length must be an integer >= 1, got ${length}`);
  check(start + length <= d, 'slice', () => `[${start}, ${start + length}) is outside axis ${ax} of ${x.name} ${fmtShape(x.shape)} (size ${d})`);
  const outer = prod(x.shape.slice(0, ax));
  const inner = prod(x.shape.slice(ax + 1));
  const shape = x.shape.map((s, k) => (k === ax ? length : s));
  const out = sliceKernel(x, shape, outer, d * inner, start * inner, length * inner);
  return recordOp(out, 'slice', [x], (g) => [sliceBackward(g, x.shape, outer, d * inner, start * inner, length * inner)]);
}

/**
 * The body of slice_backward, dx[o * row + j] = g[o * len + j - off] for j in [off, off + len),
 * else 0: the gradient of a slice, scattered into zeros in one pass over dx; vec4 units (`vec`),
 * or four consecutive u32 elements stored as one vec4 (the tail lanes into the buffer's slack).
 */
function sliceBackwardBody(vec: boolean): string {
  // The band test and source index of element (o, j) of dx (units of T).
  const band = 'let inside = (j >= p.off) & (j < p.off + p.len); let k = select(0u, o * p.len + j - p.off, inside);';
  return vec
    ? `let o = i / p.row; let j = i - o * p.row; ${band}\n  dx[i] = select(vec4<u32>(0u), g[k], inside);`
    : [
        // Four consecutive elements: one division, then j stepped with a carry into o.
        'var o = i * 4u / p.row;',
        'var j = i * 4u - o * p.row;',
        'let last = arrayLength(&g) - 1u;',
        'var v = vec4<u32>(0u);',
        ...range(4).map((l) => `{ ${band} v[${l}] = select(0u, g[min(k, last)], inside); }${l < 3 ? ' j = j + 1u; { let w = j == p.row; j = select(j, 0u, w); o = select(o, o + 1u, w); }' : ''}`),
        'dx[i] = v;',
      ].join('\n  ');
}

/** dx of `shape`: rows of `row` words, zero but the band [off, off + len) taken from g. */
function sliceBackward(g: Tensor, shape: readonly number[], rows: number, row: number, off: number, len: number): Tensor {
  const engine = g.engine;
  const dx = engine.empty(shape, g.dtype);
  if (len === row) {
    engine.copyBuffer(g, 0, dx, 0, g.byteLength);
    return dx;
  }
  const vec = row % 4 === 0 && off % 4 === 0 && len % 4 === 0;
  const u = vec ? 4 : 1;
  const total = (rows * row) / u;
  const threads = vec ? total : Math.ceil(total / 4);
  if (threads > 0)
    engine.run({
      name: 'slice_backward',
      variant: vec ? 'v4' : 's',
      shader: () => generatedSpec(SLICE_BACKWARD(vec ? 'vec4<u32>' : 'u32'), main1d(sliceBackwardBody(vec))),
      uniforms: { threads, row: row / u, off: off / u, len: len / u },
      bindings: { g, dx },
      dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
      bytes: 4 * rows * (row + len),
    });
  return dx;
}

/**
 * General axis permutation on the GPU: output axis k is input axis perm[k] (e.g. NHWC -> NCHW at
 * the API boundary is [0, 3, 1, 2]). Size-1 axes are dropped and axes that stay neighbours merged,
 * so any rank works whose collapsed form has at most six axes. Backward: the inverse permutation.
 */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  checkOperands('permute', x);
  const r = x.rank;
  check(
    Array.isArray(perm) && perm.length === r && perm.every((p) => Number.isInteger(p)) && [...perm].sort((a, b) => a - b).every((p, i) => p === i),
    'permute',
    () => `${JSON.stringify(perm)} is not a permutation of the ${r} axes of ${x.name} ${fmtShape(x.shape)} (expected each of 0..${r - 1} once)`,
  );
  // Collapsed form: runs of input axes that stay adjacent and in order in the output become one axis.
  const kept = perm.filter((a) => x.shape[a] !== 1);
  const groups: number[][] = [];
  for (const a of kept) {
    const g = groups[groups.length - 1];
    if (g && a === g[g.length - 1]! + 1) g.push(a);
    else groups.push([a]);
  }
  check(groups.length <= MAX_COLLAPSED_RANK, 'permute', () =>
    `${JSON.stringify(perm)} of ${x.name} ${fmtShape(x.shape)} leaves ${groups.length} axes that cannot be merged; at most ${MAX_COLLAPSED_RANK} are supported`);
  const out = permuteKernel(x, perm.map((a) => x.shape[a]!), groups);
  if (x.dtype !== 'f32') return out;
  const inverse = new Array<number>(r);
  perm.forEach((a, k) => (inverse[a] = k));
  return recordOp(out, 'permute', [x], (g) => [permute(g, inverse)]);
}

/**
 * The body of permute for `rank` collapsed axes in `mode`: out (collapsed dims d0.., d0 innermost)
 * gathers x at the sum of i_k * s_k, s_k being x's stride of the axis that becomes output axis k.
 * Modes: vec4 in and out when axis 0 is contiguous in x ('vv'); four strided loads into one vec4
 * store when only the output is ('vs'); else four independently indexed elements ('s').
 */
function permuteBody(rank: number, mode: 'vv' | 'vs' | 's'): string {
  if (mode === 'vv' || mode === 'vs') {
    const off = `i0 * 4u * p.s0${rank > 1 ? ' + ' + offset(rank, 's').split(' + ').slice(1).join(' + ') : ''}`;
    if (mode === 'vv') return `${decompose(rank, 'i')}\n  out[i] = x[(${off}) >> 2u];`;
    return `${decompose(rank, 'i')}\n  let at = ${off};\n  out[i] = vec4<u32>(x[at], x[at + p.s0], x[at + 2u * p.s0], x[at + 3u * p.s0]);`;
  }
  // Four consecutive elements, decomposed once and stepped; reads clamped for the tail lanes.
  return [
    decompose(rank, 'i * 4u', true),
    'let last = arrayLength(&x) - 1u;',
    'var v: vec4<u32>;',
    ...range(4).map((l) => `v[${l}] = x[min(${offset(rank, 's')}, last)];${l < 3 ? ' ' + stepIndex(rank) : ''}`),
    'out[i] = v;',
  ].join('\n  ');
}

/** Runs the permute kernel; `groups` lists, in output order, the runs of input axes merged into one. */
function permuteKernel(x: Tensor, outShape: readonly number[], groups: readonly number[][]): Tensor {
  const engine = x.engine;
  const out = engine.empty(outShape, x.dtype);
  const n = out.size;
  if (n === 0) return out;
  if (groups.every((g, k) => k === 0 || g[0]! > groups[k - 1]![0]!)) {
    // The order of the data does not change: a plain copy.
    engine.copyBuffer(x, 0, out, 0, x.byteLength);
    return out;
  }
  const stride = (a: number) => prod(x.shape.slice(a + 1));
  // Innermost first: output dims and x's strides along them.
  const dims = groups.map((g) => prod(g.map((a) => x.shape[a]!))).reverse();
  const strides = groups.map((g) => stride(g[g.length - 1]!)).reverse();
  const rank = dims.length;
  const vecOut = dims[0]! % 4 === 0;
  if (vecOut) dims[0] = dims[0]! / 4;
  const threads = vecOut ? n / 4 : Math.ceil(n / 4);
  // vec4 in and out, four strided loads into one vec4 store, or four independent elements.
  const mode = vecOut ? (strides[0] === 1 ? 'vv' : 'vs') : 's';
  engine.run({
    name: 'permute',
    variant: `r${rank}-${mode}`,
    shader: () => generatedSpec(PERMUTE(rank, mode === 'vv' ? 'vec4<u32>' : 'u32'), main1d(permuteBody(rank, mode))),
    uniforms: indexUniforms({ threads }, dims, ['s'], [strides]),
    bindings: { x, out },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    bytes: 8 * n,
  });
  return out;
}
