/**
 * Fully connected layer, PyTorch's nn.Linear: y = x w^T + b. CANet's channel attention uses a
 * 256 x 256 one on [N, 256]: small, so plain register tiles without workgroup memory suffice.
 */
import { recordOp } from '../autograd.js';
import { check, checkOperands, fmtShape } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import type { Tensor } from '../tensor.js';
import { sumColumns } from './reduce.js';
import { type Interface, WG, generatedSpec, main1d } from './shader.js';

/** Outputs per invocation in the forward tile (rows of x take min(N, 4)). */
const TO = 4;

// Declared interfaces. T is vec4<f32> when the contiguous axis allows vec4 loads, else f32. The
// kernels are generated here: register tiles unrolled, no workgroup memory.
/** x [n, In] and w [out, In] with `kv` = In / V vectors per row; `o_blocks` tiles of TO outputs per row; optional bias [out]. */
const linearForwardDecl = (t: string, bias: boolean): Interface => ({
  uniforms: { n: 'u32', kv: 'u32', out: 'u32', o_blocks: 'u32', total: 'u32' },
  bindings: bias ? { x: read(t), w: read(t), y: readWrite('f32'), bias: read('f32') } : { x: read(t), w: read(t), y: readWrite('f32') },
});
/** c [m, nv] = A [m, k] b [k, nv] (nv in units of T); `j_blocks` tiles of TJ per row of c. */
const LINEAR_MATMUL = (t: string) =>
  ({ uniforms: { m: 'u32', k: 'u32', nv: 'u32', j_blocks: 'u32', total: 'u32' }, bindings: { a: read('f32'), b: read(t), c: readWrite(t) } }) as const;

/**
 * Fully connected layer: x [N, In], w [Out, In] (PyTorch layout), bias [Out] or null -> [N, Out].
 * Gradients: dx = g w, dw = g^T x (summed over the batch), db = the column sums of g.
 * @throws ShapeError for ranks other than 2, empty tensors, In or Out mismatches, non-f32 data.
 */
export function linear(x: Tensor, w: Tensor, bias: Tensor | null): Tensor {
  const op = 'linear';
  checkOperands(op, x, w, bias);
  check(x.rank === 2, op, () => `input ${x.name} must be [N, In], got ${fmtShape(x.shape)}`);
  check(w.rank === 2, op, () => `weight ${w.name} must be [Out, In], got ${fmtShape(w.shape)}`);
  const [n, inF] = x.shape as [number, number];
  const [outF, wIn] = w.shape as [number, number];
  check(x.size > 0, op, () => `input ${x.name} ${fmtShape(x.shape)} is empty`);
  check(w.size > 0, op, () => `weight ${w.name} ${fmtShape(w.shape)} is empty`);
  check(wIn === inF, op, () => `weight ${w.name} ${fmtShape(w.shape)} must be [Out, ${inF}] to match input ${x.name} ${fmtShape(x.shape)}`);
  if (bias) check(bias.rank === 1 && bias.shape[0] === outF, op, () => `bias ${bias.name} must be [${outF}] (the rows of weight ${w.name} ${fmtShape(w.shape)}), got ${fmtShape(bias.shape)}`);
  for (const t of bias ? [x, w, bias] : [x, w]) check(t.dtype === 'f32', op, () => `${t.name} must be f32, got ${t.dtype}`);

  const engine = x.engine;
  const v = inF % 4 === 0 ? 4 : 1;
  const tn = Math.min(n, 4);
  const oBlocks = Math.ceil(outF / TO);
  const total = Math.ceil(n / tn) * oBlocks;
  const y = engine.empty([n, outF], 'f32');
  engine.run({
    name: 'linear_forward',
    variant: `${v === 4 ? 'v4' : 's'}-n${tn}${bias ? '-b' : ''}`,
    shader: () =>
      generatedSpec(linearForwardDecl(v === 4 ? 'vec4<f32>' : 'f32', bias !== null), forwardWgsl(tn, v, bias !== null)),
    uniforms: { n, kv: inF / v, out: outF, o_blocks: oBlocks, total },
    bindings: bias ? { x, w, y, bias } : { x, w, y },
    dispatch: grid1d(total, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 2 * n * inF * outF,
    bytes: x.byteLength + w.byteLength + y.byteLength,
  });
  const inputs = bias ? [x, w, bias] : [x, w];
  return recordOp(y, op, inputs, (g, _accumulated, into) => [
    x.requiresGrad ? matmul(g, w, n, outF, inF, false) : null,
    w.requiresGrad ? matmul(g, x, outF, n, inF, true, into[1]) : null,
    bias?.requiresGrad ? sumColumns(g, undefined, into[2]) : null,
  ]);
}

/**
 * linear_forward: each invocation computes a tn x TO tile of y, unrolled: dot products along In,
 * then bias and masked stores. x and w are both contiguous along In, the reduction axis, so both
 * load as vec4 along it (SWIFTSHADER.md, lesson 5), and each loaded vector feeds TO (or tn) dot
 * products.
 */
function forwardWgsl(tn: number, v: number, hasBias: boolean): string {
  const dot = (a: string, b: string) => (v === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`);
  const out: string[] = [`let o0 = (i % p.o_blocks) * ${TO}u;`, `  let n0 = (i / p.o_blocks) * ${tn}u;`];
  // Rows past the edge read a valid row (clamped) and are not stored: no bounds checks in the loop.
  for (let r = 0; r < tn; r++) out.push(`  let xr${r} = min(n0 + ${r}u, p.n - 1u) * p.kv;`);
  for (let o = 0; o < TO; o++) out.push(`  let wr${o} = min(o0 + ${o}u, p.out - 1u) * p.kv;`);
  for (let r = 0; r < tn; r++) for (let o = 0; o < TO; o++) out.push(`  var acc${r}_${o} = 0.0;`);
  out.push('  for (var k = 0u; k < p.kv; k = k + 1u) {');
  for (let r = 0; r < tn; r++) out.push(`    let x${r} = x[xr${r} + k];`);
  for (let o = 0; o < TO; o++) out.push(`    let w${o} = w[wr${o} + k];`);
  for (let r = 0; r < tn; r++) for (let o = 0; o < TO; o++) out.push(`    acc${r}_${o} = acc${r}_${o} + ${dot(`x${r}`, `w${o}`)};`);
  out.push('  }');
  for (let o = 0; o < TO; o++) out.push(`  let b${o} = ${hasBias ? `bias[min(o0 + ${o}u, p.out - 1u)]` : '0.0'};`);
  for (let r = 0; r < tn; r++)
    for (let o = 0; o < TO; o++)
      out.push(`  if ((n0 + ${r}u < p.n) & (o0 + ${o}u < p.out)) { y[(n0 + ${r}u) * p.out + o0 + ${o}u] = acc${r}_${o} + b${o}; }`);
  return main1d(out.join('\n'), { count: 'total' });
}

/**
 * c [m, cols] = A b with b [k, cols]; A is `a` [m, k] or, transposed, `a` [k, m]. Serves
 * dx = g w (m = N, k = Out) and dw = g^T x (m = Out, k = N, A transposed). `into`: a tensor of
 * m * cols elements (a weight's optimizer slot) that receives c instead of a new tensor.
 */
function matmul(a: Tensor, b: Tensor, m: number, k: number, cols: number, transposeA: boolean, into: Tensor | null = null): Tensor {
  const engine = a.engine;
  const v = cols % 4 === 0 ? 4 : 1;
  const T = v === 4 ? 'vec4<f32>' : 'f32';
  const tm = Math.min(m, 4);
  const tj = v === 4 ? 2 : 4;
  const nv = cols / v;
  const jBlocks = Math.ceil(nv / tj);
  const total = Math.ceil(m / tm) * jBlocks;
  const out = into ?? engine.empty([m, cols], 'f32');
  engine.run({
    // The name carries the transposition, the variant the tile.
    name: transposeA ? 'linear_matmul_tn' : 'linear_matmul_nn',
    variant: `${v === 4 ? 'v4' : 's'}-m${tm}`,
    shader: () => {
      const aAt = (row: string) => (transposeA ? `a[k * p.m + ${row}]` : `a[${row} * p.k + k]`);
      // c[m, j] = sum_k A(m, k) b[k, j] with b and c contiguous along j and A read as aAt('m'):
      // each invocation computes a tm x tj tile of c; each A scalar feeds tj vector multiply-adds.
      const body: string[] = [`let j0 = (i % p.j_blocks) * ${tj}u;`, `  let m0 = (i / p.j_blocks) * ${tm}u;`];
      for (let r = 0; r < tm; r++) body.push(`  let mr${r} = min(m0 + ${r}u, p.m - 1u);`);
      for (let j = 0; j < tj; j++) body.push(`  let jc${j} = min(j0 + ${j}u, p.nv - 1u);`);
      for (let r = 0; r < tm; r++) for (let j = 0; j < tj; j++) body.push(`  var c${r}_${j} = ${T}(0.0);`);
      body.push('  for (var k = 0u; k < p.k; k = k + 1u) {');
      for (let r = 0; r < tm; r++) body.push(`    let a${r} = ${aAt(`mr${r}`)};`);
      for (let j = 0; j < tj; j++) body.push(`    let b${j} = b[k * p.nv + jc${j}];`);
      for (let r = 0; r < tm; r++) for (let j = 0; j < tj; j++) body.push(`    c${r}_${j} = c${r}_${j} + a${r} * b${j};`);
      body.push('  }');
      for (let r = 0; r < tm; r++)
        for (let j = 0; j < tj; j++) body.push(`  if ((m0 + ${r}u < p.m) & (j0 + ${j}u < p.nv)) { c[(m0 + ${r}u) * p.nv + j0 + ${j}u] = c${r}_${j}; }`);
      return generatedSpec(LINEAR_MATMUL(T), main1d(body.join('\n'), { count: 'total' }));
    },
    uniforms: { m, k, nv, j_blocks: jBlocks, total },
    bindings: { a, b, c: out },
    dispatch: grid1d(total, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 2 * m * k * cols,
    bytes: a.byteLength + b.byteLength + out.byteLength,
  });
  return out;
}
