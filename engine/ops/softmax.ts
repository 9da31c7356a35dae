/**
 * Softmax and argmax over the last axis (class scores per pixel). Segmentation has millions of
 * short rows, so parallelism is across rows. Rows of up to UNROLL_MAX values are unrolled in
 * registers, R = 4 / gcd(l, 4) rows per invocation so that a group is whole vec4s (l = 19: four
 * rows, 19 aligned vec4 loads instead of 76 scalar gathers); one pipeline per row length, and CANet
 * uses one or two. Longer rows loop, one invocation per row.
 */
import { recordOp } from '../autograd.js';
import { check, checkOperands, fmtShape } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { type Interface, WG, generatedSpec, main1d, range, gcd } from './shader.js';

/** Longest row held in registers: a group is then at most 32 vec4s (lesson 3: well under 4 KB). */
const UNROLL_MAX = 32;

type Kernel = 'softmax_rows' | 'softmax_backward_rows' | 'argmax_rows';

/** Storage bindings of each row kernel, by element type T of the rows. */
const ROW_BINDINGS: Record<Kernel, (t: string) => Interface['bindings']> = {
  softmax_rows: (t) => ({ x: read(t), y: readWrite(t) }),
  softmax_backward_rows: (t) => ({ y: read(t), g: read(t), dx: readWrite(t) }),
  argmax_rows: (t) => ({ x: read(t), out: readWrite('i32') }),
};
/**
 * Uniforms: the grouped code has l built in and guards its last group by `n4` (vec4s of the
 * tensor; argmax: by `rows`); the loops read the row length `l` (in units of T).
 */
const rowsDecl = (kernel: Kernel, grouped: boolean, t: string): Interface => ({
  uniforms: !grouped ? { threads: 'u32', l: 'u32' } : kernel === 'argmax_rows' ? { threads: 'u32', rows: 'u32' } : { threads: 'u32', n4: 'u32' },
  bindings: ROW_BINDINGS[kernel](t),
});

const LANES = ['x', 'y', 'z', 'w'];

/**
 * Unrolled code over a group of `rowsPer` rows of length `l` held in vec4s named `${name}0..`:
 * `at(name, r, k)` is element k of row r of the group, as a compile-time component.
 */
interface Group {
  l: number;
  rowsPer: number;
  vecs: number;
  at: (name: string, r: number, k: number) => string;
  /** Loads vec4s `${name}j` of array `arr` (clamped reads: the last group may run past the tensor). */
  load: (name: string, arr: string) => string[];
  /** Stores vec4 j from per-element expressions `value(r, k)`; guarded to the tensor's vec4s. */
  store: (arr: string, value: (r: number, k: number) => string) => string[];
}

function group(l: number): Group {
  const rowsPer = 4 / gcd(l, 4);
  const vecs = (l * rowsPer) / 4;
  const at = (name: string, r: number, k: number) => {
    const e = r * l + k;
    return `${name}${e >> 2}.${LANES[e & 3]}`;
  };
  return {
    l,
    rowsPer,
    vecs,
    at,
    load: (name, arr) => [`let last_${name} = arrayLength(&${arr}) - 1u;`, ...range(vecs).map((j) => `let ${name}${j} = ${arr}[min(base + ${j}u, last_${name})];`)],
    store: (arr, value) =>
      range(vecs).map((j) => {
        const parts = range(4).map((c) => {
          const e = 4 * j + c;
          return value(Math.floor(e / l), e % l);
        });
        return `if (base + ${j}u < p.n4) { ${arr}[base + ${j}u] = vec4<f32>(${parts.join(', ')}); }`;
      }),
  };
}

function softmaxGrouped(gr: Group): string {
  const lines = ['let base = t * ' + gr.vecs + 'u;', ...gr.load('v', 'x')];
  for (const r of range(gr.rowsPer)) {
    const ks = range(gr.l);
    lines.push(`let m${r} = ${ks.reduce((acc, k) => (k === 0 ? gr.at('v', r, 0) : `max(${acc}, ${gr.at('v', r, k)})`), '')};`);
    lines.push(...ks.map((k) => `let e${r}_${k} = exp(${gr.at('v', r, k)} - m${r});`));
    lines.push(`let s${r} = ${ks.map((k) => `e${r}_${k}`).join(' + ')};`);
  }
  return [...lines, ...gr.store('y', (r, k) => `e${r}_${k} / s${r}`)].join('\n  ');
}

function softmaxBackwardGrouped(gr: Group): string {
  const lines = ['let base = t * ' + gr.vecs + 'u;', ...gr.load('yv', 'y'), ...gr.load('gv', 'g')];
  for (const r of range(gr.rowsPer))
    lines.push(`let d${r} = ${range(gr.l).map((k) => `${gr.at('yv', r, k)} * ${gr.at('gv', r, k)}`).join(' + ')};`);
  return [...lines, ...gr.store('dx', (r, k) => `${gr.at('yv', r, k)} * (${gr.at('gv', r, k)} - d${r})`)].join('\n  ');
}

/** One step of an argmax scan: take value v at index k when strictly greater (the first index wins ties). */
const argmaxStep = (best: string, idx: string, v: string, k: string) => `{ let c = ${v} > ${best}; ${best} = select(${best}, ${v}, c); ${idx} = select(${idx}, ${k}, c); }`;

function argmaxGrouped(gr: Group): string {
  const lines = ['let base = t * ' + gr.vecs + 'u;', ...gr.load('v', 'x')];
  for (const r of range(gr.rowsPer)) {
    lines.push(`var best${r} = ${gr.at('v', r, 0)};`, `var idx${r} = 0i;`);
    for (const k of range(gr.l).slice(1)) lines.push(argmaxStep(`best${r}`, `idx${r}`, gr.at('v', r, k), `${k}i`));
    lines.push(`if (t * ${gr.rowsPer}u + ${r}u < p.rows) { out[t * ${gr.rowsPer}u + ${r}u] = idx${r}; }`);
  }
  return lines.join('\n  ');
}

/** Loop bodies for rows longer than UNROLL_MAX: one invocation per row, vec4s when l % 4 == 0. */
function softmaxLoop(vec: boolean): string {
  const T = vec ? 'vec4<f32>' : 'f32';
  const hmax = vec ? 'max(max(mv.x, mv.y), max(mv.z, mv.w))' : 'mv';
  return [
    'let base = t * p.l;',
    'var mv = x[base];',
    'for (var k = 1u; k < p.l; k = k + 1u) { mv = max(mv, x[base + k]); }',
    `let m = ${T}(${hmax});`,
    `var sv = ${T}(0.0);`,
    'for (var k = 0u; k < p.l; k = k + 1u) { sv = sv + exp(x[base + k] - m); }',
    `let s = ${vec ? 'dot(sv, vec4<f32>(1.0))' : 'sv'};`,
    'for (var k = 0u; k < p.l; k = k + 1u) { y[base + k] = exp(x[base + k] - m) / s; }',
  ].join('\n  ');
}

function softmaxBackwardLoop(vec: boolean): string {
  const T = vec ? 'vec4<f32>' : 'f32';
  return [
    'let base = t * p.l;',
    `var dv = ${T}(0.0);`,
    'for (var k = 0u; k < p.l; k = k + 1u) { dv = dv + y[base + k] * g[base + k]; }',
    `let d = ${T}(${vec ? 'dot(dv, vec4<f32>(1.0))' : 'dv'});`,
    'for (var k = 0u; k < p.l; k = k + 1u) { dx[base + k] = y[base + k] * (g[base + k] - d); }',
  ].join('\n  ');
}

function argmaxLoop(vec: boolean): string {
  const head = ['let base = t * p.l;', `var best = x[base]${vec ? '.x' : ''};`, 'var idx = 0i;'];
  const scan = vec
    ? ['for (var k = 0u; k < p.l; k = k + 1u) {', '    let v = x[base + k];', ...LANES.map((c, j) => `    ${argmaxStep('best', 'idx', `v.${c}`, `i32(4u * k + ${j}u)`)}`), '  }']
    : [`for (var k = 1u; k < p.l; k = k + 1u) ${argmaxStep('best', 'idx', 'x[base + k]', 'i32(k)')}`];
  return [...head, ...scan, 'out[t] = idx;'].join('\n  ');
}

/**
 * The body of each row kernel (generated here, whole): softmax_rows, y = exp(x - max) / sum(exp(x
 * - max)) (subtracting the row max keeps exp() in range for any logits); softmax_backward_rows,
 * dx = y * (g - sum(g * y)) per row; argmax_rows, the index of the row max, the first one on ties
 * (strict > while scanning forward). Rows of up to UNROLL_MAX values run unrolled on groups of
 * 4 / gcd(l, 4) rows: a group is exactly whole vec4s, so even l = 19 is read and written with
 * aligned vec4s and every value sits at a compile-time component (SWIFTSHADER.md lessons 1 and 3).
 * Longer rows loop, one invocation per row, in vec4s when l % 4 == 0 (l then counted in vec4s).
 */
const bodies: Record<Kernel, { grouped: (g: Group) => string; loop: (vec: boolean) => string }> = {
  softmax_rows: { grouped: softmaxGrouped, loop: softmaxLoop },
  softmax_backward_rows: { grouped: softmaxBackwardGrouped, loop: softmaxBackwardLoop },
  argmax_rows: { grouped: argmaxGrouped, loop: argmaxLoop },
};

/** Runs a row kernel over the rows of length l (the last axis of `like`). */
function runRows(kernel: Kernel, like: Tensor, bindings: Record<string, Tensor>, bytes: number): void {
  const engine = like.engine;
  const l = like.shape[like.rank - 1]!;
  const rows = like.size / l;
  if (rows === 0) return;
  const unrolled = l <= UNROLL_MAX;
  const vec = unrolled || l % 4 === 0;
  // A group holds 4 / gcd(l, 4) rows (see group()).
  const threads = unrolled ? Math.ceil(rows / (4 / gcd(l, 4))) : rows;
  engine.run({
    name: kernel,
    // Unrolled code depends on l, so l is then part of the pipeline key.
    variant: unrolled ? `l${l}` : vec ? 'v4' : 's',
    shader: () => {
      const t = vec ? 'vec4<f32>' : 'f32';
      // `t` is the group (or row) of the invocation.
      return generatedSpec(rowsDecl(kernel, unrolled, t), main1d(unrolled ? bodies[kernel].grouped(group(l)) : bodies[kernel].loop(vec), { index: 't' }));
    },
    uniforms: !unrolled ? { threads, l: vec ? l / 4 : l } : kernel === 'argmax_rows' ? { threads, rows } : { threads, n4: Math.ceil(like.size / 4) },
    bindings,
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: kernel === 'softmax_rows' ? 5 * like.size : 3 * like.size,
    bytes,
  });
}

function checkRows(op: string, x: Tensor): void {
  checkOperands(op, x);
  check(x.rank >= 1, op, () => `${x.name} is a scalar (shape []); ${op} works over the last axis`);
  check(x.dtype === 'f32', op, () => `${x.name} must be f32, got ${x.dtype}`);
  check(x.shape[x.rank - 1]! >= 1, op, () => `${x.name} ${fmtShape(x.shape)} has an empty last axis`);
}

/**
 * Softmax over the last axis, numerically stable (the row max is subtracted, so logits of +-1e4
 * give exact 0/1 rather than NaN). Backward: dx = y * (g - sum(g * y)) per row.
 */
export function softmax(x: Tensor): Tensor {
  checkRows('softmax', x);
  const y = x.engine.empty(x.shape, 'f32');
  runRows('softmax_rows', x, { x, y }, 2 * x.byteLength);
  return recordOp(y, 'softmax', [x], (g) => {
    const dx = x.engine.empty(x.shape, 'f32');
    runRows('softmax_backward_rows', x, { y, g, dx }, 3 * x.byteLength);
    return [dx];
  });
}

/**
 * Index of the max over the last axis (the first index on ties) as an i32 tensor of shape
 * x.shape[:-1]. No gradient. NaN handling is unspecified: WGSL lets implementations assume no NaNs.
 */
export function argmax(x: Tensor): Tensor {
  checkRows('argmax', x);
  const out = x.engine.empty(x.shape.slice(0, -1), 'i32');
  runRows('argmax_rows', x, { x, out }, x.byteLength + out.byteLength);
  return out;
}
