/**
 * Every kernel outside the conv family declares its interface (engine/program.ts `Program`): for a
 * representative call of each op (with its backward where it has one), each distinct
 * `name|variant` is checked against its generated WGSL (test/kernel-interface-checks.ts), and every
 * `//# kernel` section of the shader files these ops own must have been produced by some call, so
 * a new kernel without a case here fails.
 */
import * as assert from 'uvu/assert';
import { Adam, SGD, backward, colorizeIds, labelsToTensor, ops, rowsToTensor, type Engine, type Program, type Tensor } from '../engine/entry-node.js';
import { channelAttentionInference } from '../engine/ops/fca.js';
import { resizeBilinearArgmax } from '../engine/ops/upsample.js';
import { readWrite } from '../engine/program.js';
import broadcastWgsl from '../shaders/broadcast.wgsl';
import colorizeWgsl from '../shaders/colorize.wgsl';
import concatWgsl from '../shaders/concat.wgsl';
import elementwiseWgsl from '../shaders/elementwise.wgsl';
import fcaWgsl from '../shaders/fca.wgsl';
import linearWgsl from '../shaders/linear.wgsl';
import lossWgsl from '../shaders/loss.wgsl';
import metricsWgsl from '../shaders/metrics.wgsl';
import optimWgsl from '../shaders/optim.wgsl';
import poolWgsl from '../shaders/pool.wgsl';
import preprocessWgsl from '../shaders/preprocess.wgsl';
import reduceWgsl from '../shaders/reduce.wgsl';
import softmaxWgsl from '../shaders/softmax.wgsl';
import upsampleWgsl from '../shaders/upsample.wgsl';
import { suite } from './harness.js';
import { randn, testEngine } from './gpu.js';
import { checkPrograms, collectPrograms, programProblems, sectionCoverage } from './kernel-interface-checks.js';

const t = suite('kernel-interface');

/** The shader families of the ops checked here (the conv family has its own). */
const FAMILIES = {
  'broadcast.wgsl': broadcastWgsl,
  'colorize.wgsl': colorizeWgsl,
  'concat.wgsl': concatWgsl,
  'elementwise.wgsl': elementwiseWgsl,
  'fca.wgsl': fcaWgsl,
  'linear.wgsl': linearWgsl,
  'loss.wgsl': lossWgsl,
  'metrics.wgsl': metricsWgsl,
  'optim.wgsl': optimWgsl,
  'pool.wgsl': poolWgsl,
  'preprocess.wgsl': preprocessWgsl,
  'reduce.wgsl': reduceWgsl,
  'softmax.wgsl': softmaxWgsl,
  'upsample.wgsl': upsampleWgsl,
};

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Representative calls of every op (forward and backward), in one scope. */
function everyOp(e: Engine): void {
  let seed = 1;
  const data = (shape: readonly number[]) => Float32Array.from(randn(prod(shape), seed++));
  const x = (shape: readonly number[], grad = true): Tensor => {
    const v = e.tensor(data(shape), shape);
    v.requiresGrad = grad;
    return v;
  };
  /** Backward of a non-scalar output with a gradient of ones. */
  const back = (y: Tensor) => backward(y, { gradOutput: ops.full(e, y.shape, 1) });

  // Elementwise, broadcast, reductions, the unary table.
  const a = x([2, 3, 8]);
  const b = x([2, 3, 8]);
  back(ops.add(ops.mul(a, b), ops.sub(a, ops.scale(b, 2))));
  back(ops.add(x([2, 3, 8]), x([8]))); // vector broadcast; backward sums over the middle axis
  back(ops.mul(x([3, 5]), x([3, 1]))); // scalar broadcast; backward sums rows
  back(ops.broadcastTo(x([1, 5]), [4, 5]));
  back(ops.sumToShape(x([4, 6]), [1, 6]));
  backward(ops.sum(x([5000])));
  ops.axpyInPlace(e.tensor(data([9]), [9]), e.tensor(data([9]), [9]), 0.5);
  ops.broadcastScalar(e.tensor([2], [1]), [3, 3]);
  for (const op of Object.keys(ops.unaryOps) as ops.UnaryOpName[]) back(ops.unary(op, x([7]), 0.1));
  ops.sumColumns(e.tensor(data([6, 4]), [6, 4]));

  // Pooling: vector and scalar channels, chunked global pools, both max-pool backward kernels.
  for (const c of [4, 3]) {
    back(ops.globalAvgPool(x([1, 16, 16, c])));
    back(ops.globalMaxPool(x([1, 16, 16, c])));
    back(ops.maxPool2d(x([1, 9, 9, c]), { kernel: 3, stride: 2, padding: 1 }));
    back(ops.maxPool2d(x([1, 10, 10, c]), { kernel: 5, stride: 5 }));
  }
  e.noGrad(() => ops.maxPool2d(x([1, 8, 8, 4], false), { kernel: 2 }));

  // Bilinear resize (vector and scalar passes) and the fused resize-argmax.
  back(ops.resizeBilinear(x([1, 4, 5, 4]), 8, 7));
  back(ops.resizeBilinear(x([1, 4, 5, 3]), 3, 9, { alignCorners: true }));
  resizeBilinearArgmax(x([1, 4, 4, 5], false), 8, 8);

  // FCA: vector and scalar channels, with and without attention gradients; inference attention.
  for (const c of [8, 3]) {
    back(ops.fcaFuse(x([1, 4, 4, c]), x([1, 4, 4, 1]), x([1, c])));
    back(ops.fcaFuse(x([1, 4, 4, c]), x([1, 4, 4, 1], false), x([1, c], false)));
  }
  e.noGrad(() => {
    channelAttentionInference(x([1, 4, 4, 12], false), 4, x([8, 8], false), x([8], false));
    channelAttentionInference(x([1, 4, 4, 5], false), 0, x([5, 5], false), x([5], false));
  });

  // Cross-entropy: unrolled with gradient and class weights, looped without either.
  const labels = (n: number, k: number) => e.tensor(Int32Array.from({ length: n }, (_, i) => i % k), [n], 'i32');
  backward(ops.softmaxCrossEntropy(x([12, 5]), labels(12, 5), { classWeights: e.tensor([1, 2, 1, 1, 0.5], [5]) }));
  e.noGrad(() => ops.softmaxCrossEntropy(x([6, 70], false), labels(6, 70)));

  // Softmax and argmax: grouped rows, looped vec4 rows, looped scalar rows.
  for (const l of [5, 40, 37]) {
    back(ops.softmax(x([6, l])));
    ops.argmax(x([6, l], false));
  }

  // Data movement: concat and its slices (scalar and vec4 bands), slice backward, permute modes.
  back(ops.concat([x([16, 3]), x([16, 5])], 1));
  back(ops.concat([x([16, 4]), x([16, 8])], 1));
  back(ops.slice(x([16, 7]), 1, 1, 3));
  back(ops.slice(x([16, 12]), 1, 4, 4));
  back(ops.permute(x([2, 3, 4, 5]), [0, 3, 1, 2]));
  back(ops.permute(x([2, 8, 4]), [0, 2, 1]));
  back(ops.permute(x([3, 5, 7]), [2, 0, 1]));

  // Linear: with and without bias, vec4 and scalar rows.
  back(ops.linear(x([3, 8]), x([6, 8]), x([6])));
  back(ops.linear(x([5, 3]), x([4, 3]), null));

  // Metrics, image input, texture rows, colours.
  const cm = new ops.ConfusionMatrix(e, 3);
  cm.add(e.tensor(Int32Array.from([0, 1, 2, 1]), [4], 'i32'), e.tensor(Int32Array.from([0, 2, 2, 255]), [4], 'i32'));
  cm.dispose();
  ops.imageToTensor(e, { data: new Uint8Array(4 * 3 * 3), width: 4, height: 3, channels: 3 }, { outWidth: 8, outHeight: 6, flip: true });
  labelsToTensor(e, { data: new Uint8Array(12), width: 4, height: 3 });
  const ids = e.tensor(Int32Array.from([0, 1, 2, 255, 3, 4]), [2, 3], 'i32');
  const rows = colorizeIds(ids, { width: 6, height: 4 });
  rowsToTensor(e, rows, { outWidth: 3, outHeight: 2 });
  colorizeIds(ids, { photo: rows, opacity: 0.5, palette: [[1, 2, 3], [4, 5, 6]] });

  // Optimizers: plain SGD, SGD with momentum, Adam.
  const params = () => [x([10]), x([3, 4])];
  for (const make of [(p: Tensor[]) => new SGD(p, { lr: 0.1 }), (p: Tensor[]) => new SGD(p, { lr: 0.1, momentum: 0.9 }), (p: Tensor[]) => new Adam(p, { lr: 0.01 })]) {
    const ps = params();
    const opt = make(ps);
    for (const p of ps) p.grad = e.tensor(data(p.shape), p.shape).keep();
    opt.step();
    for (const p of ps) p.grad!.dispose();
    opt.dispose();
  }
}

let collected: Awaited<ReturnType<typeof collectPrograms>>['programs'] = [];

t('representative calls of every op run', async () => {
  const e = await testEngine();
  const { programs, error } = await collectPrograms(e, () => e.scope(() => everyOp(e)));
  collected = programs;
  if (error) throw error;
  assert.ok(collected.length > 50, `only ${collected.length} programs`);
});

t('each distinct name|variant has the declared interface in its WGSL, reads what it declares and gives stable WGSL', () => {
  const { keys, problems } = checkPrograms(collected);
  assert.ok(keys.length > 60, `only ${keys.length} distinct programs`);
  assert.equal(problems, [], problems.join('\n'));
});

t('every kernel section of these shader files was produced by some call', () => {
  const { uncovered, unmatched } = sectionCoverage(FAMILIES, collected);
  assert.equal(uncovered, [], `sections no call produced (add a case to everyOp): ${uncovered.join(', ')}`);
  assert.equal(unmatched, [], `programs whose code matches no section: ${unmatched.join(', ')}`);
});

t('the checks catch a wrong interface', () => {
  const broken: Program = {
    name: 'broken',
    shader: () => ({
      uniforms: { n: 'u32', unused: 'f32' },
      bindings: { y: readWrite('f32'), z: readWrite('f32') },
      code: '@compute @workgroup_size(1)\nfn main() { y[0] = f32(p.n + p.m); }',
    }),
    uniforms: { n: 1, extra: 2 },
    bindings: {},
    dispatch: [1],
  };
  const problems = programProblems(broken);
  for (const what of ['reads p.m', 'uniform unused is declared but never read', 'binding z is declared but never used', 'uniforms given', 'bindings given'])
    assert.ok(problems.some((p) => p.includes(what)), `no problem mentions "${what}": ${problems.join('; ')}`);
  assert.equal(programProblems(broken, { unreadUniforms: { broken: ['unused'] } }).filter((p) => p.includes('never read') && p.includes('unused')), []);
  let calls = 0;
  const unstable: Program = { ...broken, shader: () => ({ bindings: {}, code: `fn main() {} // ${calls++}` }), uniforms: {} };
  assert.ok(programProblems(unstable).some((p) => p.includes('different WGSL')));
  // The same key with different WGSL: a compile-time choice left out of the variant.
  const twins = [0, 1].map((k): Program => ({ name: 'twin', shader: () => ({ bindings: {}, code: `@compute @workgroup_size(${k + 1})\nfn main() {}` }), bindings: {}, dispatch: [1] }));
  assert.ok(checkPrograms(twins).problems.some((p) => p.includes('different WGSL')));
  // A section no program produced.
  assert.equal(sectionCoverage({ 'f.wgsl': '// shared\n//# kernel a\nfn main() {}\n//# kernel b\nfn main() { {{X}} }\n' }, twins).uncovered, ['f.wgsl: a', 'f.wgsl: b']);
});

t.run();
