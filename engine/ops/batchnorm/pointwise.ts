/**
 * BatchNorm's elementwise passes, one generator: per lane, four coefficients from a [4, L] tensor
 * (replicated to L floats, see layout.ts), then K groups of one vec4 column per invocation.
 * - bn_affine: y = act(((x - pivot) - dev) * a + b (+ residual)), the normalise pass (also the
 *   inference dx = g a, with rows [a; 0; 0; 0]);
 * - bn_backward_dx: dx = a g' + (x - pivot) b + d, g' the gradient through the activation,
 *   recomputed from its output y (or g itself).
 * Generated (the activation comes from activation.ts), so their WGSL lives here, not in
 * shaders/batchnorm.wgsl.
 */
import type { Tensor } from '../../tensor.js';
import { grid1d, read, readWrite } from '../../program.js';
import { type ActivationName, activationGradWgsl, activationWgsl } from '../activation.js';
import { generatedSpec, lines } from '../shader.js';
import { type Geometry, WG } from './layout.js';

/**
 * Groups per invocation in the elementwise passes: the per-channel parameters are loaded once per
 * K data vec4s. K = 8 measured best on SwiftShader (1 and 2 were 1.5-3x slower, 4 and 16 about equal
 * or slower); with it the normalise pass runs at the speed of the engine's `scale` kernel and the
 * dx pass at the speed of `add`.
 */
const K = 8;

const V4 = 'vec4<f32>';

/**
 * The WGSL of one pass: `helper` at module scope, the coefficients of lane j read from `coef` under
 * the names `names` (rows 0-3), then `store(at)` for each of the invocation's K groups in bounds.
 */
function perLanePassWgsl(helper: string, coef: string, names: readonly [string, string, string, string], store: (at: string) => string): string {
  return `${helper}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg, ${WG}u);
  if (i >= p.p4 * p.blocks) { return; }
  let j = i % p.p4;
  let base = (i / p.p4) * ${K}u * p.p4 + j;
  let ${names[0]} = ${coef}[j];
  let ${names[1]} = ${coef}[p.p4 + j];
  let ${names[2]} = ${coef}[2u * p.p4 + j];
  let ${names[3]} = ${coef}[3u * p.p4 + j];
${lines(K, (k) => `  { let at = base + ${k}u * p.p4; if (at < p.n4) { ${store('at')} } }`)}
}`;
}

/**
 * y = act(((x - pivot) - dev) * a + b (+ residual)) per lane, params [a; pivot; dev; b] (bn_affine).
 * x - pivot is exact for data near the pivot (a data value of the channel), and dev is small, so
 * x - mean keeps full precision even when |mean| >> std.
 */
export function perLaneAffine(geo: Geometry, x: Tensor, params: Tensor, y: Tensor, act: ActivationName = 'none', residual: Tensor | null = null): void {
  const engine = x.engine;
  const blocks = Math.ceil(geo.groups / K);
  engine.run({
    name: `bn_affine${act === 'none' ? '' : `_${act}`}${residual ? '_residual' : ''}`,
    // Every compile-time input of the generated WGSL: the activation and the residual (K is a constant).
    variant: `${act}${residual ? ' res' : ''}`,
    shader: () => generatedSpec({
      uniforms: { n4: 'u32', p4: 'u32', blocks: 'u32' },
      // res: a residual added before the activation (MobileNetV2's skip connection), when the op has one.
      bindings: { x: read(V4), params: read(V4), y: readWrite(V4), ...(residual ? { res: read(V4) } : {}) },
    }, perLanePassWgsl(
        `fn act(x: ${V4}) -> ${V4} {\n  return ${activationWgsl(act, V4)};\n}`,
        'params', ['a', 'pivot', 'dev', 'b'],
        (at) => `y[${at}] = act(((x[${at}] - pivot) - dev) * a + b${residual ? ` + res[${at}]` : ''});`,
      )),
    uniforms: { n4: geo.n4, p4: geo.p4, blocks },
    bindings: { x, params, y, ...(residual ? { res: residual } : {}) },
    dispatch: grid1d(geo.p4 * blocks, WG, engine.limits.maxComputeWorkgroupsPerDimension),
    flops: 3 * x.size,
    bytes: 2 * x.byteLength,
  });
}

/**
 * dx = a act'(g) + (x - pivot) b + d from stored coefficients [a; pivot; d; b] (bn_backward_dx,
 * after bn_grad_finish or bn_train_grad). `y`: the activation's output (g without an activation),
 * or null for the plain dx = a g + ... of the chunked path, which reads no y.
 */
export function backwardDx(geo: Geometry, g: Tensor, x: Tensor, coef: Tensor, dx: Tensor, act: ActivationName, y: Tensor | null): void {
  const blocks = Math.ceil(geo.groups / K);
  x.engine.run({
    name: y ? (act === 'none' ? 'bn_backward_dx' : `bn_backward_dx_${act}`) : 'bn_backward_dx',
    // Every compile-time input of the generated WGSL: the activation, and whether g' is act_grad(g, y)
    // or g itself (plain, no y binding); K is a constant.
    variant: y ? `act ${act}` : 'plain',
    shader: () => generatedSpec({
      uniforms: { n4: 'u32', p4: 'u32', blocks: 'u32' },
      bindings: { gr: read(V4), x: read(V4), coef: read(V4), dx: readWrite(V4), ...(y ? { y: read(V4) } : {}) },
    }, perLanePassWgsl(
        y ? `fn act_grad(g: ${V4}, y: ${V4}) -> ${V4} {\n  return ${activationGradWgsl(act, V4)};\n}` : '',
        'coef', ['a', 'pivot', 'd', 'b'],
        (at) => `dx[${at}] = a * ${y ? `act_grad(gr[${at}], y[${at}])` : `gr[${at}]`} + (x[${at}] - pivot) * b + d;`,
      )),
    uniforms: { n4: geo.n4, p4: geo.p4, blocks },
    bindings: { gr: g, x, coef, dx, ...(y ? { y } : {}) },
    dispatch: grid1d(geo.p4 * blocks, WG, x.engine.limits.maxComputeWorkgroupsPerDimension),
    flops: (y ? 6 : 5) * x.size,
    bytes: (y ? 4 : 3) * x.byteLength,
  });
}
