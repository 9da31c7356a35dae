/**
 * The FCA (feature cross attention) combination of CANet: Y = F * As * Ac + F, spatial attention
 * As (one value per pixel) and channel attention Ac (one per image and channel) applied to the
 * fused features F in one kernel that reads F once. Its backward reads g and F once: dF directly,
 * dAs and dAc as chunked partial sums finished by the reductions of broadcast.ts.
 */
import { recordOp } from '../autograd.js';
import { check, checkOperands, fmtShape } from '../errors.js';
import { grid1d, read, readWrite } from '../program.js';
import { type Tensor, dtypeBytes } from '../tensor.js';
import { halfTag, storageType } from './storage.js';
import { runLength, sumMiddleAxis } from './broadcast.js';
import { type Interface, WG, generatedSpec, main1d, range } from './shader.js';
import { SG_WG, subgroupMain, useSubgroups, workgroupMaxWgsl, workgroupSumWgsl } from './subgroup.js';

/** Invocations the backward aims for; more pixels per chunk means fewer dAc partials. */
const TARGET_THREADS = 8192;
const MIN_PIXELS_PER_CHUNK = 16;

// The kernels are generated here. Vector mode (C % 4 == 0): an invocation owns a block of V vec4s
// of channels (unrolled). Scalar mode: forward takes four consecutive elements (F read and Y
// written as one vec4); backward a block of four channels guarded against C.
// Declared interfaces. `c` is in units of the channel type (vec4s in vector
// mode), `hw` = H * W pixels per image, `nb` blocks of channels per pixel.
/** Y = F * (As * Ac + 1); the scalar mode has no channel blocks. */
const FCA_FORWARD = (vec: boolean): Interface => ({
  uniforms: vec ? { threads: 'u32', hw: 'u32', c: 'u32', nb: 'u32' } : { threads: 'u32', hw: 'u32', c: 'u32' },
  bindings: { f: read('vec4<f32>'), as_: read('f32'), ac: read(vec ? 'vec4<f32>' : 'f32'), y: readWrite('vec4<f32>') },
});
/** `chunks` of `per_chunk` pixels per image. */
const FCA_BACKWARD = (t: string) =>
  ({
    uniforms: { threads: 'u32', hw: 'u32', c: 'u32', nb: 'u32', chunks: 'u32', per_chunk: 'u32' },
    bindings: { g: read(t), f: read(t), as_: read('f32'), ac: read(t), df: readWrite(t), das_part: readWrite('f32'), dac_part: readWrite(t) },
  }) as const;
/**
 * `cv` channel vectors of X, `stride_v` per pixel of x, X starting at `off_v`; `inv_hw` = 1 / hw.
 * x is `tx` (f16 on the f16 inference path), the pooled s is `t` (f32).
 */
const FCA_CHANNEL_POOL = (tx: string, t: string) =>
  ({ uniforms: { threads: 'u32', hw: 'u32', cv: 'u32', stride_v: 'u32', off_v: 'u32', inv_hw: 'f32' }, bindings: { x: read(tx), s: readWrite(t) } }) as const;
/** fca_channel_pool_sg (f32 x only): `threads` = N * cv workgroups. */
const FCA_CHANNEL_POOL_SG = (t: string) =>
  ({ uniforms: { threads: 'u32', hw: 'u32', cv: 'u32', stride_v: 'u32', off_v: 'u32', inv_hw: 'f32' }, bindings: { x: read(t), s: readWrite(t) } }) as const;
/** `kv` = C / V vectors per row of w. */
const FCA_CHANNEL_FC = (t: string) =>
  ({ uniforms: { threads: 'u32', c: 'u32', kv: 'u32' }, bindings: { s: read(t), w: read(t), b: read('f32'), ac: readWrite('f32') } }) as const;

function checkFca(F: Tensor, As: Tensor, Ac: Tensor): [number, number, number, number] {
  const op = 'fcaFuse';
  checkOperands(op, F, As, Ac);
  for (const t of [F, As, Ac]) check(t.dtype === 'f32', op, () => `${t.name} must be f32, got ${t.dtype}`);
  check(F.rank === 4, op, () => `F (${F.name}) must be [N, H, W, C], got ${fmtShape(F.shape)}`);
  const [n, h, w, c] = F.shape as [number, number, number, number];
  check(n >= 1 && h >= 1 && w >= 1 && c >= 1, op, () => `F (${F.name}) ${fmtShape(F.shape)} has a zero size`);
  const asOk = (As.rank === 4 && As.shape[3] === 1) || As.rank === 3;
  check(asOk && As.shape[0] === n && As.shape[1] === h && As.shape[2] === w, op, () =>
    `As (${As.name}) must be [${n}, ${h}, ${w}, 1] (spatial attention of F ${fmtShape(F.shape)}), got ${fmtShape(As.shape)}`);
  const acOk = (Ac.rank === 2 && Ac.shape[1] === c) || (Ac.rank === 4 && Ac.shape[1] === 1 && Ac.shape[2] === 1 && Ac.shape[3] === c);
  check(acOk && Ac.shape[0] === n, op, () => `Ac (${Ac.name}) must be [${n}, ${c}] (channel attention of F ${fmtShape(F.shape)}), got ${fmtShape(Ac.shape)}`);
  return [n, h, w, c];
}

/** Y = X * (As * Ac + 1): the forward with X = F, and dF with X = g. */
function fcaScale(X: Tensor, As: Tensor, Ac: Tensor, hw: number, c: number): Tensor {
  const engine = X.engine;
  const y = engine.empty(X.shape, 'f32');
  const total = X.size;
  const vec = c % 4 === 0;
  const v = vec ? runLength(c / 4) : 1;
  const nb = vec ? c / 4 / v : 0;
  const threads = vec ? (total / c) * nb : Math.ceil(total / 4);
  engine.run({
    name: 'fca_forward',
    variant: vec ? `v${v}` : 's',
    shader: () => generatedSpec(FCA_FORWARD(vec), main1d(vec ? forwardVecBody(v) : forwardScalarBody())),
    uniforms: vec ? { threads, hw, c: c / 4, nb } : { threads, hw, c },
    bindings: { f: X, as_: As, ac: Ac, y },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 3 * total,
    bytes: 8 * total + As.byteLength,
  });
  return y;
}

/** Forward, vector mode: a block of v vec4s of channels of one pixel. */
function forwardVecBody(v: number): string {
  return [
    'let b = i % p.nb;',
    'let pix = i / p.nb;',
    'let s = as_[pix];',
    `let fb = pix * p.c + b * ${v}u;`,
    `let ab = (pix / p.hw) * p.c + b * ${v}u;`,
    ...range(v).map((k) => `y[fb + ${k}u] = f[fb + ${k}u] * (s * ac[ab + ${k}u] + 1.0);`),
  ].join('\n  ');
}

function forwardScalarBody(): string {
  // Four consecutive elements: F read and Y written as one vec4; the (image, pixel, channel)
  // index decomposed once and stepped with carries (integer division is slow on CPU adapters);
  // reads clamped for the tail lanes.
  return [
    'let fv = f[i];',
    'var pix = i * 4u / p.c;',
    'var ch = i * 4u - pix * p.c;',
    'var n = pix / p.hw;',
    'var q = pix - n * p.hw;',
    'let last_s = arrayLength(&as_) - 1u;',
    'let last_c = arrayLength(&ac) - 1u;',
    'var v: vec4<f32>;',
    ...range(4).map(
      (u) =>
        `v[${u}] = fv[${u}] * (as_[min(pix, last_s)] * ac[min(n * p.c + ch, last_c)] + 1.0);` +
        (u < 3 ? ' ch = ch + 1u; { let w = ch == p.c; ch = select(ch, 0u, w); pix = select(pix, pix + 1u, w); q = select(q, q + 1u, w); let wq = q == p.hw; q = select(q, 0u, wq); n = select(n, n + 1u, wq); }' : ''),
    ),
    'y[i] = v;',
  ].join('\n  ');
}

/**
 * FCA combination Y = F * As * Ac + F in one kernel that reads F once. F [N,H,W,C], As [N,H,W,1]
 * (spatial attention; [N,H,W] also accepted), Ac [N,C] (channel attention; [N,1,1,C] also
 * accepted). Backward: dF = g*(As*Ac + 1), dAs = sum_c g*F*Ac, dAc = sum_{h,w} g*F*As, from one
 * pass over g and F plus parallel reductions of the partial sums.
 */
export function fcaFuse(F: Tensor, As: Tensor, Ac: Tensor): Tensor {
  const [, h, w, c] = checkFca(F, As, Ac);
  const y = fcaScale(F, As, Ac, h * w, c);
  return recordOp(y, 'fcaFuse', [F, As, Ac], (g) => {
    if (!As.requiresGrad && !Ac.requiresGrad) return [fcaScale(g, As, Ac, h * w, c), null, null];
    return fcaBackward(g, F, As, Ac);
  });
}

function fcaBackward(g: Tensor, F: Tensor, As: Tensor, Ac: Tensor): [Tensor, Tensor, Tensor] {
  const engine = g.engine;
  const [n, h, w, c] = F.shape as [number, number, number, number];
  const hw = h * w;
  const vec = c % 4 === 0;
  const v = vec ? runLength(c / 4) : 1;
  const nb = vec ? c / 4 / v : Math.ceil(c / 4);
  let chunks = Math.max(1, Math.min(Math.ceil(TARGET_THREADS / (n * nb)), Math.ceil(hw / MIN_PIXELS_PER_CHUNK)));
  const perChunk = Math.ceil(hw / chunks);
  chunks = Math.ceil(hw / perChunk);
  const threads = n * chunks * nb;

  const dF = engine.empty(F.shape, 'f32');
  const dasPart = engine.empty(nb === 1 ? As.shape : [n * hw, nb], 'f32');
  const dacPart = engine.empty(chunks === 1 ? Ac.shape : [n, chunks, c], 'f32');
  engine.run({
    name: 'fca_backward',
    variant: vec ? `v${v}` : 's',
    shader: () => {
      const t = vec ? 'vec4<f32>' : 'f32';
      // One pass over g and F: dF = g * (As * Ac + 1) directly; dAs and dAc as partial sums, summed
      // after. Invocation (n, chunk, block) walks the pixels of one chunk for one block of channels:
      //   das_part[pixel, block] = sum over the block's channels of g * F * Ac
      //   dac_part[n, chunk, c]  = sum over the chunk's pixels of g * F * As
      return generatedSpec(FCA_BACKWARD(t), main1d(`let b = i % p.nb;
  let t = i / p.nb;
  let chunk = t % p.chunks;
  let n = t / p.chunks;
  let p0 = chunk * p.per_chunk;
  let p1 = min(p.hw, p0 + p.per_chunk);
  ${vec ? backwardVecBody(v) : backwardScalarBody()}`));
    },
    uniforms: { threads, hw, c: vec ? c / 4 : c, nb, chunks, per_chunk: perChunk },
    bindings: { g, f: F, as_: As, ac: Ac, df: dF, das_part: dasPart, dac_part: dacPart },
    dispatch: grid1d(threads, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 8 * F.size,
    bytes: 12 * F.size,
  });
  const dAs = nb === 1 ? dasPart : sumMiddleAxis(dasPart, n * hw, nb, 1, As.shape);
  const dAc = chunks === 1 ? dacPart : sumMiddleAxis(dacPart, n, chunks, c, Ac.shape);
  return [dF, dAs, dAc];
}

function backwardVecBody(v: number): string {
  const ks = range(v);
  return [
    `let ab = n * p.c + b * ${v}u;`,
    ...ks.map((k) => `let ac${k} = ac[ab + ${k}u]; var acc${k} = vec4<f32>(0.0);`),
    'for (var q = p0; q < p1; q = q + 1u) {',
    '    let pix = n * p.hw + q;',
    '    let s = as_[pix];',
    `    let base = pix * p.c + b * ${v}u;`,
    ...ks.map((k) => `    let g${k} = g[base + ${k}u]; let gf${k} = g${k} * f[base + ${k}u]; df[base + ${k}u] = g${k} * (s * ac${k} + 1.0); acc${k} = acc${k} + gf${k} * s;`),
    `    das_part[pix * p.nb + b] = ${ks.map((k) => `dot(gf${k}, ac${k})`).join(' + ')};`,
    '  }',
    `  let db = (n * p.chunks + chunk) * p.c + b * ${v}u;`,
    ...ks.map((k) => `  dac_part[db + ${k}u] = acc${k};`),
  ].join('\n  ');
}

function backwardScalarBody(): string {
  const us = range(4);
  return [
    'let c0 = b * 4u;',
    ...us.map((u) => `let ok${u} = c0 + ${u}u < p.c; let ac${u} = select(0.0, ac[n * p.c + min(c0 + ${u}u, p.c - 1u)], ok${u}); var acc${u} = 0.0;`),
    'for (var q = p0; q < p1; q = q + 1u) {',
    '    let pix = n * p.hw + q;',
    '    let s = as_[pix];',
    '    let base = pix * p.c + c0;',
    '    var d = 0.0;',
    ...us.map((u) => `    if (ok${u}) { let gg = g[base + ${u}u]; let gf = gg * f[base + ${u}u]; df[base + ${u}u] = gg * (s * ac${u} + 1.0); acc${u} = acc${u} + gf * s; d = d + gf * ac${u}; }`),
    '    das_part[pix * p.nb + b] = d;',
    '  }',
    '  let db = (n * p.chunks + chunk) * p.c + c0;',
    ...us.map((u) => `  if (ok${u}) { dac_part[db + ${u}u] = acc${u}; }`),
  ].join('\n  ');
}

/**
 * Channel attention of the FCA for inference, A_c = sigmoid(FC(maxpool(X)) + FC(avgpool(X))) with
 * one shared Linear (w [C, C], b [C]), in two dispatches: FC is affine, so FC(m) + FC(a) =
 * w (m + a) + 2 b and the two pools feed one vector. X is channels [offset, offset + C) of x
 * [N, H, W, *] (the deep branch's part of the FCA's concatenation). Returns [N, C]. No autograd:
 * training uses the separate pools and linear.
 */
export function channelAttentionInference(x: Tensor, offset: number, w: Tensor, b: Tensor): Tensor {
  const op = 'channelAttention';
  const c = b.shape[0]!;
  // x may be f16 (the f16 inference path): pooled in f32; w, b and the result stay f32.
  check(x.rank === 4 && (x.dtype === 'f32' || x.dtype === 'f16'), op, () => `input ${x.name} must be f32 or f16 [N, H, W, C], got ${x.dtype} ${fmtShape(x.shape)}`);
  const [n, h, wd, stride] = x.shape as [number, number, number, number];
  check(Number.isInteger(offset) && offset >= 0 && offset + c <= stride, op, () => `channels [${offset}, ${offset + c}) do not fit ${x.name} ${fmtShape(x.shape)}`);
  check(w.rank === 2 && w.shape[0] === c && w.shape[1] === c && b.rank === 1, op, () => `weight ${w.name} must be [${c}, ${c}] for bias ${b.name} [${c}], got ${fmtShape(w.shape)}`);
  check(!(x.engine.gradEnabled && (x.requiresGrad || w.requiresGrad || b.requiresGrad)), op, () => `the fused channel attention has no gradient: use it under engine.noGrad()`);
  const engine = x.engine;
  const maxDim = engine.limits.maxComputeWorkgroupsPerDimension;
  const v = c % 4 === 0 && offset % 4 === 0 && stride % 4 === 0 ? 4 : 1;
  const s = engine.empty([n, c], 'f32');
  const poolThreads = (n * c) / v;
  // With subgroups (subgroup.ts), a workgroup per (image, channel vector) instead of one
  // invocation; the f16 path keeps the plain kernel.
  const sg = useSubgroups(engine) && h * wd >= SG_WG && x.dtype === 'f32';
  const poolUniforms = { threads: poolThreads, hw: h * wd, cv: c / v, stride_v: stride / v, off_v: offset / v, inv_hw: 1 / (h * wd) };
  if (sg)
    engine.run({
      name: 'fca_channel_pool_sg',
      variant: v === 4 ? 'v4' : 's',
      shader: () => {
        const t = v === 4 ? 'vec4<f32>' : 'f32';
        return generatedSpec(FCA_CHANNEL_POOL_SG(t), channelPoolSgWgsl(t));
      },
      uniforms: poolUniforms,
      bindings: { x, s },
      dispatch: grid1d(poolThreads * SG_WG, SG_WG, maxDim),
      flops: 2 * n * h * wd * c,
      bytes: 4 * n * h * wd * c,
    });
  else
    engine.run({
      name: 'fca_channel_pool',
      variant: (v === 4 ? 'v4' : 's') + halfTag({ x }),
      shader: () => {
        const t = v === 4 ? 'vec4<f32>' : 'f32';
        return generatedSpec(FCA_CHANNEL_POOL(storageType(x, v), t), channelPoolWgsl(t));
      },
      uniforms: poolUniforms,
      bindings: { x, s },
      dispatch: grid1d(poolThreads, WG, maxDim),
      flops: 2 * n * h * wd * c,
      bytes: n * h * wd * c * dtypeBytes(x.dtype),
    });
  const kv = c % 4 === 0 ? 4 : 1;
  const ac = engine.empty([n, c], 'f32');
  engine.run({
    name: 'fca_channel_fc',
    variant: kv === 4 ? 'v4' : 's',
    shader: () => {
      const t = kv === 4 ? 'vec4<f32>' : 'f32';
      return generatedSpec(FCA_CHANNEL_FC(t), channelFcWgsl(t, kv === 4 ? '(acc.x + acc.y + acc.z + acc.w)' : 'acc'));
    },
    uniforms: { threads: n * c, c, kv: c / kv },
    bindings: { s, w, b, ac },
    dispatch: grid1d(n * c, WG, maxDim),
    flops: 2 * n * c * c,
    bytes: 4 * (c * c + 2 * n * c),
  });
  s.dispose();
  return ac;
}

/**
 * fca_channel_pool: inference channel attention, first half: s[n, c] = max over pixels + mean over
 * pixels of X, X being channels [off, off + C) of a tensor with `stride` channels per pixel (the
 * deep branch's part of the concatenation the FCA convolves). FC(max) + FC(avg) = W (max + avg) +
 * 2 b, so one vector per image feeds the shared Linear. Invocation (n, channel group of `t`);
 * `t(...)` converts f16 storage to f32 (and is the identity on f32).
 */
const channelPoolWgsl = (t: string): string =>
  main1d(`let c = i % p.cv;
  let n = i / p.cv;
  var at = n * p.hw * p.stride_v + p.off_v + c;
  var mx = ${t}(x[at]);
  var sm = mx;
  for (var q = 1u; q < p.hw; q = q + 1u) {
    at = at + p.stride_v;
    let v = ${t}(x[at]);
    mx = max(mx, v);
    sm = sm + v;
  }
  s[i] = mx + sm * p.inv_hw;`);

/**
 * fca_channel_pool_sg: fca_channel_pool with subgroups (subgroup.ts): one workgroup per (image,
 * channel vector), its invocations taking every SG_WG-th pixel, then wg_max and wg_sum. Every
 * invocation starts from pixel 0 (hw >= SG_WG: see channelAttentionInference), so no identity is
 * needed.
 */
const channelPoolSgWgsl = (t: string): string =>
  subgroupMain(
    [workgroupSumWgsl('wg_sum', t), workgroupMaxWgsl('wg_max', t)],
    `let c = w % p.cv;
  let n = w / p.cv;
  let base = n * p.hw * p.stride_v + p.off_v + c;
  var mx = x[base];
  var sm = ${t}(0.0);
  for (var q = t; q < p.hw; q = q + ${SG_WG}u) {
    let v = x[base + q * p.stride_v];
    mx = max(mx, v);
    sm = sm + v;
  }
  let m = wg_max(mx, t);
  let total = wg_sum(sm, t, sgi);
  if (t == 0u) { s[w] = m + total * p.inv_hw; }`,
    'threads',
  );

/**
 * fca_channel_fc: inference channel attention, second half: ac[n, o] = sigmoid(sum_k w[o, k]
 * s[n, k] + 2 b[o]); `sum` adds the lanes of the `t`-typed accumulator. The select takes exp of a
 * non-positive number only, which never overflows.
 */
const channelFcWgsl = (t: string, sum: string): string =>
  main1d(`let o = i % p.c;
  let n = i / p.c;
  var acc = ${t}(0.0);
  for (var k = 0u; k < p.kv; k = k + 1u) { acc = acc + s[n * p.kv + k] * w[o * p.kv + k]; }
  let z = ${sum} + 2.0 * b[o];
  ac[i] = select(exp(z) / (1.0 + exp(z)), 1.0 / (1.0 + exp(-z)), z >= 0.0);`);
