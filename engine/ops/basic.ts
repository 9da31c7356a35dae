/**
 * The elementwise basics: full and copy, the binary elementwise ops (one table: add, sub, mul;
 * broadcasting, same shapes take a flat vec4 kernel) and sumToShape for their gradients, scale,
 * unaryKernel (one WGSL expression per name), a full sum and broadcastScalar. fill and the
 * in-place accumulate kernels autograd needs live in accumulate.ts (they record no graph) and are
 * re-exported here.
 */
import elementwise from '../../shaders/elementwise.wgsl';
import reduce from '../../shaders/reduce.wgsl';
import { recordOp } from '../autograd.js';
import { check, checkOperands, checkShapeArg, fmtShape } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { binaryBroadcastKernel, broadcastShapes, sumToShape as sumToShapeOp, sumToShapeKernel } from './broadcast.js';
import { WG, generatedSpec, main1d, sectionSpec } from './shader.js';
import { addInPlace, axpyInPlace, fill, isF32 } from './accumulate.js';

export { addInPlace, axpyInPlace, fill };

// Declared interfaces (shaders/elementwise.wgsl, shaders/reduce.wgsl). Sizes are in vec4s: tensor
// buffers are pool buckets padded to 16 bytes.
/** y = f(x) for an expression in x (vec4) and alpha. */
const UNARY = { uniforms: { n4: 'u32', alpha: 'f32' }, bindings: { xs: read('vec4<f32>'), ys: readWrite('vec4<f32>') } } as const;
const BINARY = { uniforms: { n4: 'u32' }, bindings: { as_: read('vec4<f32>'), bs: read('vec4<f32>'), outs: readWrite('vec4<f32>') } } as const;
const BROADCAST_SCALAR = { uniforms: { n4: 'u32' }, bindings: { s: read('f32'), y: readWrite('vec4<f32>') } } as const;
/** n: scalars summed; threads: invocations (each sums a strided run of vec4s into partial[i]). */
const SUM_PARTIAL = { uniforms: { n: 'u32', threads: 'u32' }, bindings: { xs: read('vec4<f32>'), partial: readWrite('f32') } } as const;

/** A new tensor of `shape` filled with `value`. */
export function full(engine: Tensor['engine'], shape: readonly number[], value: number): Tensor {
  checkShapeArg('full', shape);
  return fill(engine.empty(shape, 'f32'), value);
}

/** A copy of `t` (copyBufferToBuffer: no kernel). Gradient flows through unchanged. */
export function copyTensor(t: Tensor): Tensor {
  checkOperands('copy', t);
  const out = t.engine.empty(t.shape, t.dtype);
  t.engine.copyBuffer(t, 0, out, 0, Math.ceil(t.byteLength / 4) * 4);
  return recordOp(out, 'copy', [t], (g) => [g]);
}

/** A binary elementwise op of the table below. */
export interface BinaryOpSpec {
  /**
   * WGSL expression in `a` and `b`, valid for f32 and vec4<f32> operands alike (the same-shape
   * kernel reads vec4s; the broadcasting one reads vec4s or splatted scalars, see broadcast.ts).
   */
  forward: string;
  /**
   * The gradient to each operand from g (dL/dout, of the output's shape) and the operands.
   * `reduce` sums a tensor of the output's shape down to that operand's shape (the tensor itself
   * when the operand was not broadcast). Launches kernels only; may return g itself (add does).
   */
  backward: {
    a: (g: Tensor, a: Tensor, b: Tensor, reduce: (t: Tensor) => Tensor) => Tensor;
    b: (g: Tensor, a: Tensor, b: Tensor, reduce: (t: Tensor) => Tensor) => Tensor;
  };
  /** float64 reference, for tests (test/broadcast.test.ts, test/op-fuzz.test.ts). */
  ref: (a: number, b: number) => number;
}

/**
 * The binary elementwise ops, each declared once (after webgpu-torch's op table): its kernels
 * (same-shape and broadcasting), autograd and tests come from its entry, so a new binary op is one
 * entry here (CONTRIBUTING.md, "Add a binary elementwise op").
 */
const binaryTable = {
  add: {
    forward: 'a + b',
    backward: { a: (g, _a, _b, reduce) => reduce(g), b: (g, _a, _b, reduce) => reduce(g) },
    ref: (a, b) => a + b,
  },
  sub: {
    forward: 'a - b',
    // Negate after reducing: the reduced gradient is the smaller tensor.
    backward: { a: (g, _a, _b, reduce) => reduce(g), b: (g, _a, _b, reduce) => scale(reduce(g), -1) },
    ref: (a, b) => a - b,
  },
  mul: {
    forward: 'a * b',
    backward: { a: (g, _a, b, reduce) => reduce(binaryKernel('mul', g, b)), b: (g, a, _b, reduce) => reduce(binaryKernel('mul', g, a)) },
    ref: (a, b) => a * b,
  },
} satisfies Record<string, BinaryOpSpec>;

export type BinaryOpName = keyof typeof binaryTable;
export const binaryOps: Record<BinaryOpName, BinaryOpSpec> = binaryTable;

const sameShapeOf = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * binary (generated: the op's expression is its body): out = a OP b for same-shape tensors, in
 * vec4s over ceil(n / 4) (the tail lanes read and write slack inside the same buffers).
 */
const binaryWgsl = (expr: string): string =>
  main1d(`let a = as_[i];
  let b = bs[i];
  outs[i] = ${expr};`, { count: 'n4' });

/**
 * Op `op` of the binary table: same-shape operands take the flat vec4 kernel; others the
 * broadcasting one. No autograd. (`op` is a string here: the table's gradients call this.)
 */
function binaryKernel(op: string, a: Tensor, b: Tensor): Tensor {
  checkOperands(op, a, b);
  isF32(op, a, b);
  const expr = (binaryOps as Record<string, BinaryOpSpec>)[op]!.forward;
  if (!sameShapeOf(a.shape, b.shape)) return binaryBroadcastKernel(op, expr, a, b, broadcastShapes(op, a, b));
  const engine = a.engine;
  const out = engine.empty(a.shape, 'f32');
  const n4 = Math.ceil(a.size / 4);
  engine.run({
    // The name carries the op, hence the expression.
    name: `binary_${op}`,
    shader: () => generatedSpec(BINARY, binaryWgsl(expr)),
    uniforms: { n4 },
    bindings: { as_: a, bs: b, outs: out },
    dispatch: grid1d(n4, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: a.size,
    bytes: 3 * a.byteLength,
  });
  return out;
}

/** The gradient of a broadcast operand: g summed back down to its shape (g itself when no axis was broadcast). */
function reduceGrad(g: Tensor, shape: readonly number[]): Tensor {
  return sameShapeOf(g.shape, shape) ? g : sumToShapeKernel(g, shape);
}

/** `a OP b` elementwise for an op of the binary table, with NumPy broadcasting; records its gradient. */
export function binary(op: BinaryOpName, a: Tensor, b: Tensor): Tensor {
  check(Object.hasOwn(binaryOps, op), 'binary', () => `unknown op ${JSON.stringify(op)} (known: ${Object.keys(binaryOps).join(', ')})`);
  const { backward } = binaryOps[op];
  return recordOp(binaryKernel(op, a, b), op, [a, b], (g) => [
    a.requiresGrad ? backward.a(g, a, b, (t) => reduceGrad(t, a.shape)) : null,
    b.requiresGrad ? backward.b(g, a, b, (t) => reduceGrad(t, b.shape)) : null,
  ]);
}

/** a + b with NumPy broadcasting (shapes aligned at the right, size-1 axes stretch). */
export function add(a: Tensor, b: Tensor): Tensor {
  return binary('add', a, b);
}

/** a - b with NumPy broadcasting. */
export function sub(a: Tensor, b: Tensor): Tensor {
  return binary('sub', a, b);
}

/** a * b elementwise with NumPy broadcasting. */
export function mul(a: Tensor, b: Tensor): Tensor {
  return binary('mul', a, b);
}

/** Sums x over broadcast axes down to `shape` (the reverse of broadcasting). Backward: broadcastTo. */
export function sumToShape(x: Tensor, shape: readonly number[]): Tensor {
  return sumToShapeOp(x, shape);
}

/** alpha * x. */
export function scale(x: Tensor, alpha: number): Tensor {
  checkOperands('scale', x);
  isF32('scale', x);
  const out = unaryKernel('scale', x, 'x * alpha', alpha);
  return recordOp(out, 'scale', [x], (g) => [scale(g, alpha)]);
}

/** The expression each unaryKernel name was first used with: the name is the pipeline key. */
const unaryExprs = new Map<string, string>();

/**
 * Runs the `unary` kernel with a WGSL expression in x (vec4) and the uniform alpha. `name` is the
 * pipeline key, so one name must always come with the same expression (checked).
 */
export function unaryKernel(name: string, x: Tensor, expr: string, alpha = 0): Tensor {
  const known = unaryExprs.get(name);
  if (known === undefined) unaryExprs.set(name, expr);
  else if (known !== expr) throw new Error(`unaryKernel: kernel ${name} was first run with ${JSON.stringify(known)}, now ${JSON.stringify(expr)}: one name per expression`);
  const engine = x.engine;
  const out = engine.empty(x.shape, 'f32');
  const n4 = Math.ceil(x.size / 4);
  engine.run({
    name,
    // Generated: the expression is the kernel's algorithm (one name per expression, checked above).
    shader: () => generatedSpec(UNARY, main1d(`let x = xs[i];
  let alpha = p.alpha;
  ys[i] = ${expr};`, { count: 'n4' })),
    uniforms: { n4, alpha },
    bindings: { xs: x, ys: out },
    dispatch: grid1d(n4, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: x.size,
    bytes: 2 * x.byteLength,
  });
  return out;
}

/** Sum of all elements, as a one-element tensor. Gradient: ones times the incoming scalar. */
export function sum(x: Tensor): Tensor {
  checkOperands('sum', x);
  isF32('sum', x);
  const engine = x.engine;
  const out = engine.noGrad(() => sumAll(x));
  return recordOp(out, 'sum', [x], (g) => [broadcastScalar(g, x.shape)]);
}

function sumAll(x: Tensor): Tensor {
  const engine = x.engine;
  // Each pass leaves ~n/256 partial sums; a pass of a few thousand elements finishes in one invocation.
  let cur = x;
  for (;;) {
    const threads = cur.size <= 4096 ? 1 : Math.ceil(cur.size / 256);
    const next = engine.empty(threads === 1 ? [1] : [threads], 'f32');
    engine.run({
      name: 'sum_partial',
      shader: () => sectionSpec(SUM_PARTIAL, reduce, 'sum_partial', { WG }),
      uniforms: { n: cur.size, threads },
      bindings: { xs: cur, partial: next },
      dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
      flops: cur.size,
      bytes: cur.byteLength,
    });
    if (cur !== x) cur.dispose();
    cur = next;
    if (threads === 1) return cur;
  }
}

/** A tensor of `shape` whose every element is the single value of `s` (GPU side, no readback). */
export function broadcastScalar(s: Tensor, shape: readonly number[]): Tensor {
  checkOperands('broadcastScalar', s);
  checkShapeArg('broadcastScalar', shape);
  isF32('broadcastScalar', s);
  check(s.size === 1, 'broadcastScalar', () => `${s.name} must have one element, has shape ${fmtShape(s.shape)}`);
  const engine = s.engine;
  const out = engine.empty(shape, 'f32');
  const n4 = Math.ceil(out.size / 4);
  engine.run({
    name: 'broadcast_scalar',
    shader: () => sectionSpec(BROADCAST_SCALAR, elementwise, 'broadcast_scalar', { WG }),
    uniforms: { n4 },
    bindings: { s, y: out },
    dispatch: grid1d(n4, WG, engine.limits.maxComputeWorkgroupsPerDimension),
  });
  return out;
}
