/**
 * Every kernel declares its interface (engine/program.ts `Program`). Two groups of representative
 * calls (forward and backward) run with the engine's `run` replaced by a recorder: every op
 * outside the conv family, and the conv family (conv2d, transposed conv, depthwise, BatchNorm and
 * the fused epilogue they share: every kernel, every epilogue layout). The recorder validates each
 * WGSL with the device's compiler front end but builds no pipeline and dispatches nothing
 * (collectPrograms: a kernel's backend compile and its numbers are its family test's). Then
 * - each distinct `name|variant` is checked against its generated WGSL (programProblems of
 *   test/kernel-interface-checks.ts: struct Params is the declared uniforms, every uniform read is
 *   declared and every declared one read, every binding used, values given for exactly the
 *   declared names, stable WGSL), and two programs with one key must give the same WGSL (a
 *   compile-time input missing from the variant would show up as two shaders under one key, a
 *   pipeline silently reused for the wrong kernel);
 * - every `//# kernel` section of every shaders/*.wgsl file must have been produced by some call,
 *   and every program's code must come from a section, so a new kernel without a call here fails.
 * CANET_DUMP_WGSL=<file> also writes the full WGSL of every program the calls ran, in call order,
 * as JSON: compare two such files to check that a refactor leaves the kernels alone.
 */
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { existsSync } from 'node:fs';
import { Adam, LAVAPIPE_ICD, SGD, backward, colorizeIds, createEngine, labelsToTensor, ops, rowsToTensor, Engine, type Program, type Tensor } from '../entry/node.js';
import { cast, foldHalf } from '../engine/ops/half.js';
import { batchNorm2d, bnFold } from '../engine/ops/batchnorm.js';
import { add, sum } from '../engine/ops/basic.js';
import { conv2d } from '../engine/ops/conv2d.js';
import { convTranspose2d, convTranspose2dArgmax } from '../engine/ops/conv-transpose.js';
import { depthwiseConv2d } from '../engine/ops/depthwise.js';
import type { Epilogue } from '../engine/ops/epilogue.js';
import { channelAttentionInference } from '../engine/ops/fca.js';
import { resizeBilinearArgmax } from '../engine/ops/upsample.js';
import { programKey, readWrite } from '../engine/program.js';
import { suite } from './harness.js';
import { randn, testEngine } from './gpu.js';
import { type Dispatched, checkPrograms, collectPrograms, dispatched, programProblems, sectionCoverage, textDefineUses } from './kernel-interface-checks.js';
import { generatedSpec, section } from '../engine/ops/shader.js';
import type { PreferView } from '../engine/variants.js';

const t = suite('kernel-interface');
const engine0 = await testEngine();

/** Every shader file (name -> text), read from shaders/ as the engine bundles it: none can be left out. */
const SHADER_DIR = new URL('../../shaders/', import.meta.url);
const SHADERS: Record<string, string> = Object.fromEntries(
  readdirSync(SHADER_DIR).filter((f) => f.endsWith('.wgsl')).sort().map((f) => [f, readFileSync(new URL(f, SHADER_DIR), 'utf8')]),
);

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Representative calls of every op outside the conv family (forward and backward). */
function otherOpCalls(e: Engine): void {
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

  // Subgroup reductions (engine/ops/subgroup.ts), where the adapter has the feature: column and
  // row sums (vec4 and scalar), the loss's sums, global average pooling, the FCA channel pool.
  if (e.features.has('subgroups')) {
    e.prefer.subgroups = 'on';
    try {
      ops.sumColumns(e.tensor(data([300, 8]), [300, 8]));
      ops.sumColumns(e.tensor(data([300, 3]), [300, 3]));
      back(ops.mul(x([3, 1024]), x([3, 1])));
      back(ops.mul(x([3, 1023]), x([3, 1])));
      backward(ops.softmaxCrossEntropy(x([300, 5]), labels(300, 5)));
      for (const c of [4, 3]) back(ops.globalAvgPool(x([1, 9, 8, c])));
      e.noGrad(() => {
        channelAttentionInference(x([1, 8, 8, 12], false), 4, x([8, 8], false), x([8], false));
        channelAttentionInference(x([1, 8, 8, 5], false), 0, x([5, 5], false), x([5], false));
      });
    } finally {
      delete e.prefer.subgroups;
    }
  }

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

function tensor(e: Engine, shape: number[], seed: number, grad = false): Tensor {
  const t = e.tensor(Float32Array.from(randn(prod(shape), seed)), shape);
  if (grad) t.requiresGrad = true;
  return t;
}

/** Forward and backward of `f` on fresh inputs of `shapes` (all requiring grad). */
function withGrad(e: Engine, shapes: number[][], f: (ts: Tensor[]) => Tensor, seed: number): void {
  const ts = shapes.map((s, i) => tensor(e, s, seed + i, true));
  backward(sum(f(ts)));
}

/** Representative calls of the conv family: every kernel of its four op files, the epilogue in each layout. */
function convFamilyCalls(e: Engine): void {
  // ---- conv2d forward, grad input, grad filter: vec4 and scalar channels, strides, groups, pointwise
  withGrad(e, [[1, 6, 6, 8], [8, 3, 3, 8], [8]], ([x, w, b]) => conv2d(x!, w!, b!, { padding: 1 }), 1);
  withGrad(e, [[1, 7, 5, 3], [5, 3, 3, 3]], ([x, w]) => conv2d(x!, w!, null, { stride: 2, padding: 1 }), 2);
  // Scalar x, vec4 y: the same tile as the first call, so only the vector width tells them apart.
  withGrad(e, [[1, 6, 6, 3], [8, 3, 3, 3], [8]], ([x, w, b]) => conv2d(x!, w!, b!, { padding: 1 }), 8);
  withGrad(e, [[1, 5, 5, 8], [8, 1, 1, 8]], ([x, w]) => conv2d(x!, w!, null), 3);
  withGrad(e, [[1, 5, 5, 8], [12, 1, 1, 8]], ([x, w]) => conv2d(x!, w!, null, { stride: 2 }), 4);
  withGrad(e, [[1, 6, 6, 8], [8, 3, 3, 4]], ([x, w]) => conv2d(x!, w!, null, { padding: 2, dilation: 2, groups: 2 }), 5);
  // The input gradient added into an existing one (x feeds two convolutions).
  withGrad(e, [[1, 5, 5, 4], [4, 3, 3, 4], [4, 3, 3, 4]], ([x, w1, w2]) => add(conv2d(x!, w1!, null, { padding: 1 }), conv2d(x!, w2!, null, { padding: 1 })), 6);
  // CPU-class tiles (the large ones production uses on SwiftShader are forced by name elsewhere).
  e.prefer.conv2dTiles = 'swiftshader';
  try {
    withGrad(e, [[1, 6, 6, 8], [8, 3, 3, 8]], ([x, w]) => conv2d(x!, w!, null, { padding: 1 }), 7);
  } finally {
    delete e.prefer.conv2dTiles;
  }
  // The workgroup-memory GEMMs (GPUs' default, forced here): vec4 and scalar K, stride, dilation
  // and groups, the input gradient added into an existing one, every epilogue layout (below).
  e.prefer.conv2d = 'workgroup';
  try {
    withGrad(e, [[1, 6, 6, 8], [8, 3, 3, 8], [8]], ([x, w, b]) => conv2d(x!, w!, b!, { padding: 1 }), 11);
    withGrad(e, [[1, 7, 5, 3], [5, 3, 3, 3]], ([x, w]) => conv2d(x!, w!, null, { stride: 2, padding: 1 }), 12);
    withGrad(e, [[1, 6, 6, 8], [8, 3, 3, 4]], ([x, w]) => conv2d(x!, w!, null, { padding: 2, dilation: 2, groups: 2 }), 13);
    withGrad(e, [[1, 9, 9, 40], [72, 3, 3, 40]], ([x, w]) => conv2d(x!, w!, null, { padding: 1 }), 14);
    withGrad(e, [[1, 5, 5, 4], [4, 3, 3, 4], [4, 3, 3, 4]], ([x, w1, w2]) => add(conv2d(x!, w1!, null, { padding: 1 }), conv2d(x!, w2!, null, { padding: 1 })), 15);
  } finally {
    delete e.prefer.conv2d;
  }

  // The lanes kernels (conv2d-lanes.ts, forced here; llvmpipe's default): forward, stride-1 input
  // gradient (weights read flipped, added into a gathered gradient), filter gradient; vec4 and scalar.
  e.prefer.conv2d = 'lanes';
  try {
    withGrad(e, [[1, 6, 6, 8], [8, 3, 3, 8], [8]], ([x, w, b]) => conv2d(x!, w!, b!, { padding: 1 }), 16);
    withGrad(e, [[1, 7, 5, 3], [5, 3, 3, 3]], ([x, w]) => conv2d(x!, w!, null, { stride: 2, padding: 1 }), 17);
    withGrad(e, [[1, 5, 5, 4], [4, 3, 3, 4], [4, 3, 3, 4]], ([x, w1, w2]) => add(conv2d(x!, w1!, null, { padding: 1 }), conv2d(x!, w2!, null, { padding: 1 })), 18);
    e.noGrad(() => conv2d(tensor(e, [1, 6, 6, 8], 19), tensor(e, [8, 3, 3, 8], 56), null, { padding: 1 }, { affine: tensor(e, [2, 8], 57), act: 'relu6', residual: tensor(e, [1, 6, 6, 8], 58) }));
  } finally {
    delete e.prefer.conv2d;
  }

  // The transposed convolution's lanes forward (conv-transpose-lanes.ts, forced here; llvmpipe's
  // default): vec4 stores after a folded BN with a residual, scalar stores with a bias (x padded
  // to vec4 channels), the fused argmax of the x8 head; the input gradient (conv2d's lanes
  // forward of gy, vec4 and padded channels).
  e.prefer.convTranspose = 'lanes';
  try {
    withGrad(e, [[1, 4, 5, 8], [8, 3, 3, 8], [8]], ([x, w, b]) => convTranspose2d(x!, w!, b!, { stride: 2, padding: 1, outputPadding: 1 }), 99);
    withGrad(e, [[1, 4, 4, 3], [5, 3, 3, 3]], ([x, w]) => convTranspose2d(x!, w!, null, { stride: 2, padding: 1, outputPadding: 1 }), 100);
    e.noGrad(() => {
      convTranspose2d(tensor(e, [1, 4, 4, 8], 90), tensor(e, [8, 3, 3, 8], 91), null, { stride: 2, padding: 1, outputPadding: 1 }, { affine: tensor(e, [2, 8], 92), act: 'relu', residual: tensor(e, [1, 8, 8, 8], 93) });
      convTranspose2d(tensor(e, [1, 4, 4, 5], 94), tensor(e, [7, 3, 3, 5], 95), tensor(e, [7], 96), { stride: 2, padding: 1, outputPadding: 1 });
      convTranspose2dArgmax(tensor(e, [1, 2, 2, 19], 97), tensor(e, [19, 15, 15, 19], 98), null, { stride: 8, padding: 7, outputPadding: 7 }, { act: 'relu' });
    });
  } finally {
    delete e.prefer.convTranspose;
  }

  // ---- the epilogue in every layout, through each producer (inference)
  e.noGrad(() => {
    const shape = [1, 6, 6, 8];
    const affine = tensor(e, [2, 8], 20);
    const residual = tensor(e, shape, 21);
    const fca = { as: tensor(e, [1, 6, 6, 1], 22), ac: tensor(e, [1, 8], 23) };
    const bias = tensor(e, [8], 24);
    const x = tensor(e, shape, 25);
    const w = tensor(e, [8, 3, 3, 8], 26);
    const epilogues: [Tensor | null, Epilogue][] = [
      [null, { affine, act: 'relu' }],
      [null, { affine, act: 'relu6', residual }],
      [null, { affine, act: 'sigmoid', fca }],
      [null, { affine, residual, fca }],
      [bias, { act: 'relu' }],
      [bias, { residual }],
      [null, { act: 'relu6' }],
      [null, { affine, into: { tensor: tensor(e, [1, 6, 6, 20], 27), channelOffset: 8 } }],
      // Scalar stores: the target's channel offset is not a multiple of 4.
      [null, { affine, act: 'relu', into: { tensor: tensor(e, [1, 6, 6, 11], 28), channelOffset: 3 } }],
      [bias, { into: { tensor: tensor(e, [1, 6, 6, 11], 29), channelOffset: 1 } }],
    ];
    for (const [b, ep] of epilogues) {
      conv2d(x, w, b, { padding: 1 }, ep);
      e.prefer.conv2d = e.prefer.convTranspose = e.prefer.depthwise = 'workgroup';
      conv2d(x, w, b, { padding: 1 }, ep);
      convTranspose2d(x, w, b, { padding: 1 }, ep);
      depthwiseConv2d(x, tensor(e, [3, 3, 8], 30), b, { padding: 1 }, ep);
      for (const key of ['conv2d', 'convTranspose', 'depthwise'] as const) delete e.prefer[key];
      depthwiseConv2d(x, tensor(e, [3, 3, 8], 30), b, { padding: 1 }, ep);
      // Transposed conv: stride 1, so the output has the input's size.
      convTranspose2d(x, w, b, { padding: 1 }, ep);
    }
    // A slice of the output channels (paramOffset, read from the whole layer's affine or bias).
    conv2d(x, tensor(e, [16, 1, 1, 8], 31), null, { outputChannels: [8, 8] }, { affine: tensor(e, [2, 16], 32), act: 'relu' });
    conv2d(x, tensor(e, [16, 1, 1, 8], 33), tensor(e, [16], 34), { outputChannels: [4, 8] });
    conv2d(x, tensor(e, [8, 3, 3, 4], 55), null, { inputChannels: [4, 4], padding: 1 }, { act: 'relu' });
    depthwiseConv2d(tensor(e, [1, 6, 6, 4], 35), tensor(e, [3, 3, 12], 36), null, { padding: 1, channels: [4, 4] }, { affine: tensor(e, [2, 12], 37) });
    // Scalar channels (5) through each producer.
    const x5 = tensor(e, [1, 6, 6, 5], 38);
    conv2d(x5, tensor(e, [5, 3, 3, 5], 39), null, { padding: 1 }, { affine: tensor(e, [2, 5], 40), act: 'relu' });
    depthwiseConv2d(x5, tensor(e, [3, 3, 5], 41), null, { stride: 2, padding: 1 }, { affine: tensor(e, [2, 5], 42), act: 'relu6' });
    convTranspose2d(x5, tensor(e, [5, 3, 3, 5], 43), null, { stride: 2, padding: 1, outputPadding: 1 }, { affine: tensor(e, [2, 5], 44), act: 'relu' });
    // Transposed conv: several channel tiles (Co > 20), the fused argmax with and without an affine.
    convTranspose2d(x, tensor(e, [24, 3, 3, 8], 45), tensor(e, [24], 46), { stride: 2, padding: 1, outputPadding: 1 });
    convTranspose2d(x, tensor(e, [24, 3, 3, 8], 47), null, { stride: 2, padding: 1, outputPadding: 1 }, { affine: tensor(e, [2, 24], 48), act: 'relu' });
    convTranspose2dArgmax(x, tensor(e, [5, 3, 3, 8], 49), tensor(e, [5], 50), { stride: 2, padding: 1, outputPadding: 1 });
    convTranspose2dArgmax(x, tensor(e, [7, 3, 3, 8], 51), null, { stride: 2, padding: 1, outputPadding: 1 }, { affine: tensor(e, [2, 7], 52), act: 'relu' });
    convTranspose2dArgmax(x, tensor(e, [7, 3, 3, 8], 53), tensor(e, [7], 54), { stride: 2, padding: 1, outputPadding: 1 }, { act: 'relu' });
  });

  // ---- depthwise forward and backward: vec4 and scalar channels, strides, dilation
  withGrad(e, [[1, 6, 6, 8], [3, 3, 8], [8]], ([x, w, b]) => depthwiseConv2d(x!, w!, b!, { padding: 1 }), 60);
  withGrad(e, [[1, 7, 6, 3], [3, 3, 3]], ([x, w]) => depthwiseConv2d(x!, w!, null, { stride: 2, padding: 1 }), 61);
  // Scalar channels in the first call's window: only the vector width tells their backward kernels apart.
  withGrad(e, [[1, 6, 6, 3], [3, 3, 3]], ([x, w]) => depthwiseConv2d(x!, w!, null, { padding: 1 }), 63);
  withGrad(e, [[1, 8, 8, 4], [3, 5, 4]], ([x, w]) => depthwiseConv2d(x!, w!, null, { padding: [2, 4], dilation: 2 }), 62);
  // The workgroup-memory forward (GPUs' default): vec4 and scalar channels, stride 2, a channel slice.
  e.prefer.depthwise = 'workgroup';
  try {
    withGrad(e, [[1, 6, 6, 8], [3, 3, 8], [8]], ([x, w, b]) => depthwiseConv2d(x!, w!, b!, { padding: 1 }), 64);
    withGrad(e, [[1, 7, 6, 3], [3, 3, 3]], ([x, w]) => depthwiseConv2d(x!, w!, null, { stride: 2, padding: 1 }), 65);
    e.noGrad(() => depthwiseConv2d(tensor(e, [1, 6, 6, 4], 66), tensor(e, [3, 3, 12], 67), null, { padding: 1, channels: [4, 4] }, { affine: tensor(e, [2, 12], 68) }));
  } finally {
    delete e.prefer.depthwise;
  }

  // ---- transposed conv forward and backward: vec4 and padded channels, several channel tiles
  withGrad(e, [[1, 4, 5, 8], [8, 3, 3, 8], [8]], ([x, w, b]) => convTranspose2d(x!, w!, b!, { stride: 2, padding: 1, outputPadding: 1 }), 70);
  withGrad(e, [[1, 4, 4, 3], [5, 3, 3, 3]], ([x, w]) => convTranspose2d(x!, w!, null, { stride: 2, padding: 1, outputPadding: 1 }), 71);
  withGrad(e, [[1, 3, 3, 8], [24, 4, 4, 8]], ([x, w]) => convTranspose2d(x!, w!, null, { stride: 2, padding: 1 }), 72);
  // The same through the workgroup-memory GEMMs (GPUs' default): vec4 and scalar channels.
  e.prefer.convTranspose = 'workgroup';
  try {
    withGrad(e, [[1, 4, 5, 8], [8, 3, 3, 8], [8]], ([x, w, b]) => convTranspose2d(x!, w!, b!, { stride: 2, padding: 1, outputPadding: 1 }), 73);
    withGrad(e, [[1, 4, 4, 3], [5, 3, 3, 3]], ([x, w]) => convTranspose2d(x!, w!, null, { stride: 2, padding: 1, outputPadding: 1 }), 74);
  } finally {
    delete e.prefer.convTranspose;
  }

  // ---- BatchNorm: every lane mode and fusion, chunked passes, inference, fold
  const bn = (c: number, shape: number[], opts: Parameters<typeof batchNorm2d>[5], seed: number, residual = false): void => {
    const stats = [tensor(e, [c], seed + 2), tensor(e, [c], seed + 3)];
    stats[1] = e.tensor(Float32Array.from({ length: c }, () => 1), [c]);
    withGrad(e, residual ? [shape, [c], [c], shape] : [shape, [c], [c]], ([x, gm, bt, r]) =>
      batchNorm2d(x!, gm!, bt!, stats[0]!, stats[1]!, { ...opts, residual: r ?? null }), seed);
  };
  // [bnReduce, bnFuse, more prefer]: subgroup merges where the adapter has them, and the lane
  // loop both unrolled (SwiftShader) and not (llvmpipe).
  const modes: [PreferView['bnReduce'], PreferView['bnFuse'], PreferView?][] = [[undefined, undefined], ['serial', 'fused'], ['serial', 'separate'], ['workgroup', 'fused'], ['workgroup', 'separate'], ['chunked', undefined],
    ['serial', 'fused', { bnUnroll: '1' }], ['serial', 'fused', { bnUnroll: '4' }],
    ...(e.features.has('subgroups') ? [['workgroup', 'fused', { subgroups: 'on' }], ['workgroup', 'separate', { subgroups: 'on' }]] as [PreferView['bnReduce'], PreferView['bnFuse'], PreferView][] : [])];
  for (const [reduce, fuse, more] of modes) {
    if (reduce) e.prefer.bnReduce = reduce;
    if (fuse) e.prefer.bnFuse = fuse;
    Object.assign(e.prefer, more ?? {});
    try {
      for (const training of [true, false]) {
        bn(8, [2, 3, 4, 8], { training }, 80);
        bn(8, [2, 3, 4, 8], { training, act: 'relu' }, 81);
        bn(8, [2, 3, 4, 8], { training, act: 'relu6' }, 82);
        bn(8, [2, 3, 4, 8], { training, act: 'sigmoid' }, 83);
        bn(8, [2, 3, 4, 8], { training }, 84, true);
        bn(8, [2, 3, 4, 8], { training, act: 'relu' }, 85, true);
        bn(3, [2, 3, 4, 3], { training }, 86);
        bn(3, [2, 3, 4, 3], { training, act: 'relu' }, 87);
        bn(6, [2, 3, 4, 6], { training }, 88, true);
        bn(19, [1, 5, 7, 19], { training, act: 'sigmoid' }, 89);
      }
      // Only gamma and beta require grad: the lane backward stores no dx.
      {
        const x = tensor(e, [2, 3, 4, 8], 96);
        const ps = [tensor(e, [8], 97, true), tensor(e, [8], 98, true), tensor(e, [8], 99), e.tensor(Float32Array.from({ length: 8 }, () => 1), [8])];
        backward(sum(batchNorm2d(x, ps[0]!, ps[1]!, ps[2]!, ps[3]!, { training: true, act: 'relu' })));
      }
      // Enough groups for the chunked merge passes.
      bn(4, [1, 64, 80, 4], { training: true }, 90);
      bn(3, [1, 128, 150, 3], { training: true }, 91);
    } finally {
      delete e.prefer.bnReduce;
      delete e.prefer.bnFuse;
      for (const k of Object.keys(more ?? {})) e.variants.clear(k);
    }
  }
  e.noGrad(() => {
    const c = [tensor(e, [8], 92), tensor(e, [8], 93), tensor(e, [8], 94), e.tensor(Float32Array.from({ length: 8 }, () => 1), [8])] as const;
    bnFold(c[0], c[1], c[2], c[3], 1e-5);
    bnFold(c[0], c[1], c[2], c[3], 1e-5, tensor(e, [8], 95));
  });
}

/**
 * The f16 storage variants of the inference kernels (CANet.half()) and the f16 conversions: run
 * on an engine with shader-f16 (lavapipe, or a GPU), see halfEngine.
 */
function halfCalls(e: Engine): void {
  e.noGrad(() => {
    let seed = 200;
    const h = (shape: number[]): Tensor => cast(tensor(e, shape, seed++), 'f16');
    const f = (shape: number[]): Tensor => tensor(e, shape, seed++);
    const aff = f([2, 16]);
    // cast both ways, vec4 and scalar; a folded weight.
    cast(h([8]), 'f32');
    cast(f([7]), 'f16');
    foldHalf(f([16, 3, 3, 8]), aff, 16, 72);
    // conv2d: f16 x and w (vec4 and scalar K), the f32 image into f16 weights, epilogues with f16 residual / FCA / slice targets.
    conv2d(h([1, 6, 6, 8]), h([16, 3, 3, 8]), f([16]), { padding: 1 }, { act: 'relu6', residual: h([1, 6, 6, 16]) });
    conv2d(f([1, 6, 6, 3]), h([16, 3, 3, 3]), f([16]), { stride: 2, padding: 1 }, { act: 'relu' });
    // The same layer with an f16 input: only x's storage type differs, so the variant must say it.
    conv2d(h([1, 6, 6, 3]), h([16, 3, 3, 3]), f([16]), { stride: 2, padding: 1 }, { act: 'relu' });
    conv2d(h([1, 6, 6, 8]), h([16, 1, 1, 8]), f([16]));
    const cat = e.empty([1, 6, 6, 32], 'f16');
    conv2d(h([1, 6, 6, 8]), h([16, 3, 3, 8]), f([16]), { padding: 1 }, { act: 'relu', fca: { as: h([1, 6, 6]), ac: f([1, 16]) }, into: { tensor: cat, channelOffset: 16 } });
    conv2d(h([1, 6, 6, 8]), h([1, 3, 3, 8]), f([1]), { padding: 1 }, { act: 'sigmoid' });
    // depthwise, transposed conv (vec4 and padded channels), its fused argmax; the FCA channel pool.
    depthwiseConv2d(h([1, 7, 7, 8]), h([3, 3, 8]), f([8]), { stride: 2, padding: 1 }, { act: 'relu6' });
    convTranspose2d(h([1, 4, 4, 8]), h([8, 3, 3, 8]), f([8]), { stride: 2, padding: 1, outputPadding: 1 }, { act: 'relu' });
    convTranspose2dArgmax(h([1, 2, 2, 19]), h([19, 15, 15, 19]), f([19]), { stride: 8, padding: 7, outputPadding: 7 }, { act: 'relu' });
    channelAttentionInference(h([1, 4, 4, 32]), 16, f([16, 16]), f([16]));
  });
}

/** An engine with shader-f16 for halfCalls: lavapipe where installed, else the test engine if it has the feature. */
let halfEngine: Engine | undefined;
let halfUnavailable = '';
try {
  if (existsSync(LAVAPIPE_ICD)) halfEngine = await createEngine({ software: 'lavapipe', forceSoftware: true, quiet: true });
  else if ((await testEngine()).hasF16) halfEngine = await testEngine();
  else halfUnavailable = `no adapter with shader-f16 (no ${LAVAPIPE_ICD}; '${(await testEngine()).adapter.description}' has none)`;
} catch (err) {
  halfUnavailable = (err as Error).message.split('\n')[0]!;
}

/** The programs each group dispatched, in call order. */
const collected: Record<'other' | 'conv' | 'half', Dispatched[]> = { other: [], conv: [], half: [] };
const all = (): Dispatched[] => [...collected.other, ...collected.conv, ...collected.half];
const distinct = (ds: readonly Dispatched[]): Set<string> => new Set(ds.map((d) => programKey(d.program)));

/** Runs one group of calls in a scope of the test engine and records its programs; throws what the calls threw. */
async function runGroup(group: keyof typeof collected, calls: (e: Engine) => void, engine?: Engine): Promise<Dispatched[]> {
  const e = engine ?? (await testEngine());
  const { programs, error } = await collectPrograms(e, () => e.scope(() => calls(e)));
  collected[group] = programs;
  if (error) throw error;
  return programs;
}

t('representative calls of every op outside the conv family run', async () => {
  const programs = await runGroup('other', otherOpCalls);
  assert.ok(distinct(programs).size > 60, `only ${distinct(programs).size} distinct programs`);
});

t('representative calls of the conv family run and reach every conv-family kernel', async () => {
  const programs = await runGroup('conv', convFamilyCalls);
  const names = new Set(programs.map((d) => d.program.name.replace(/_(serial|workgroup)(_scalar)?$/, '')));
  for (const want of ['conv2d_forward', 'conv2d_backward_input', 'conv2d_backward_input_accumulate', 'conv2d_backward_filter',
    'conv2d_wg_forward', 'conv2d_wg_backward_input', 'conv2d_wg_backward_input_accumulate', 'conv2d_wg_backward_filter',
    'conv_transpose_wg_forward', 'conv_transpose_wg_backward_input', 'conv_transpose_wg_backward_filter', 'depthwise_wg_forward',
    'conv_transpose_forward', 'conv_transpose_backward_input', 'conv_transpose_backward_filter', 'conv_transpose_pack', 'conv_transpose_pad_channels',
    'depthwise_forward', 'depthwise_backward_input', 'depthwise_backward_filter',
    'bn_stats_partial', 'bn_stats_combine', 'bn_stats_finish', 'bn_inference_params', 'bn_fold', 'bn_affine', 'bn_grad_partial', 'bn_grad_combine',
    'bn_grad_finish_train', 'bn_grad_finish_eval', 'bn_backward_dx'])
    assert.ok(names.has(want), `no call ran ${want} (ran: ${[...names].sort().join(', ')})`);
  const conv = distinct(programs.filter((d) => /^(conv2d_|conv_transpose_|depthwise_|bn_)/.test(d.program.name)));
  assert.ok(conv.size >= 60, `only ${conv.size} distinct conv-family pipelines`);
  if (process.env.CANET_DUMP_WGSL) writeFileSync(process.env.CANET_DUMP_WGSL, JSON.stringify(all().map((d) => ({ name: d.program.name, wgsl: d.wgsl }))));
});

if (halfEngine)
  t('representative f16 calls (the f16 inference path) run and reach the f16 variants and conversions', async () => {
    const programs = await runGroup('half', halfCalls, halfEngine);
    const half = distinct(programs.filter((d) => /h:|-h[yrscb]|f16|^fold_half$/.test(`${d.program.name}|${d.program.variant ?? ''}`)));
    assert.ok(half.size >= 12, `only ${half.size} distinct f16 programs: ${[...half].join(', ')}`);
  });
else t.skip(`representative f16 calls (skipped: ${halfUnavailable}; shaders/half.wgsl's sections are then not required)`);

t('each distinct name|variant has the declared interface in its WGSL, reads what it declares and gives stable WGSL', () => {
  const { keys, problems } = checkPrograms(all());
  assert.ok(keys.length > 120, `only ${keys.length} distinct programs`);
  if (halfEngine) assert.ok(keys.some((k) => k.includes('h:x,w')), 'the f16 programs were checked');
  assert.equal(problems, [], problems.join('\n'));
});

t('every kernel section of every shader file was produced by some call, and every program by a section', () => {
  // 11 since the families of generated kernels only (broadcast, concat, fca, softmax, linear,
  // colorize, pool, depthwise, conv2d and their workgroup variants) moved wholly to TypeScript.
  assert.ok(Object.keys(SHADERS).length >= 11, `only ${Object.keys(SHADERS).length} shader files in ${SHADER_DIR.pathname}`);
  const coverage = sectionCoverage(SHADERS, all());
  const unmatched = coverage.unmatched;
  // Without the subgroups feature the subgroup kernels (`*_sg`) cannot compile: no call runs them;
  // the f16 conversions run only on an adapter with shader-f16 (see halfCalls).
  const uncovered = coverage.uncovered
    .filter((id) => engine0.features.has('subgroups') || !id.endsWith('_sg'))
    .filter((id) => halfEngine || !id.startsWith('half.wgsl: '));
  if (!engine0.features.has('subgroups') && coverage.uncovered.some((id) => id.endsWith('_sg'))) console.log(`kernel-interface: subgroup sections not covered: the adapter has no subgroups feature`);
  assert.equal({ uncovered, unmatched }, { uncovered: [], unmatched: [] },
    `sections no call produced (add a call): [${uncovered.join(', ')}]; programs whose code matches no section: [${unmatched.join(', ')}]`);
});

t('the kernel sections of the shader files use their defines as numbers only (one home per kernel)', () => {
  const uses = textDefineUses(SHADERS);
  assert.equal(uses, [], `a section takes numeric defines only; write a kernel that needs WGSL text from TypeScript wholly in its TS file (generatedSpec, CONTRIBUTING.md "One home per kernel"):\n${uses.join('\n')}`);
});

t('the checks catch a wrong interface', () => {
  const mentions = (problems: string[], ...what: string[]) => {
    for (const w of what) assert.ok(problems.some((p) => p.includes(w)), `no problem mentions "${w}": ${problems.join('; ')}`);
  };
  const broken: Program = {
    name: 'broken',
    variant: 'v'.repeat(121),
    shader: () => ({
      uniforms: { n: 'u32', unused: 'f32', s: 'u32' },
      bindings: { y: readWrite('f32'), z: readWrite('f32') },
      code: '@compute @workgroup_size(1)\nfn main() { y[0] = f32(p.n + p.m + p.s); }',
    }),
    uniforms: { n: 1, extra: 2, s: '3' as unknown as number },
    bindings: {},
    dispatch: [1],
  };
  mentions(programProblems(broken), 'reads p.m', 'uniform unused is declared but never read', 'binding z is declared but never used', 'uniforms given', 'bindings given',
    'uniform s is given "3", not a number', 'variant is longer');
  assert.equal(programProblems(broken, { unreadUniforms: { broken: ['unused'] } }).filter((p) => p.includes('never read') && p.includes('unused')), []);
  // The kernel code declaring its own interface, or holding a define left unsubstituted.
  const selfDeclared: Program = { name: 'self', shader: () => ({ bindings: {}, code: 'struct Params { a: u32 }\n@group(0) @binding(0) var<uniform> p: Params;\nfn main() { {{X}} }' }), bindings: {}, dispatch: [1] };
  mentions(programProblems(selfDeclared), 'declares no uniforms but its WGSL has a uniform block', 'declares its own struct Params', 'declares its own @binding', 'unsubstituted define {{X}}');
  // WGSL that changes from call to call, or since the dispatch.
  let calls = 0;
  const unstable: Program = { ...broken, shader: () => ({ bindings: {}, code: `fn main() {} // ${calls++}` }), uniforms: {} };
  mentions(programProblems(unstable), 'different WGSL on a second call');
  mentions(checkPrograms([{ program: selfDeclared, wgsl: 'what it gave then' }]).problems, 'different WGSL than when the program was dispatched');
  // The same key with different WGSL: a compile-time choice left out of the variant.
  const twins = [0, 1].map((k) => dispatched({ name: 'twin', shader: () => ({ bindings: {}, code: `@compute @workgroup_size(${k + 1})\nfn main() {}` }), bindings: {}, dispatch: [1] }));
  mentions(checkPrograms(twins).problems, 'two programs with this key give different WGSL');
  // A section no program produced, and a program from no section.
  const family = { 'f.wgsl': '// shared\n//# kernel a\nfn main() {}\n//# kernel b\nfn main() { let x = {{X}}; }\n' };
  assert.equal(sectionCoverage(family, twins), { uncovered: ['f.wgsl: a', 'f.wgsl: b'], unmatched: ['twin'] });
  const fromB = dispatched({ name: 'b', shader: () => ({ bindings: {}, code: '// shared\n\nfn main() { let x = 1; }\n' }), bindings: {}, dispatch: [1] });
  assert.equal(sectionCoverage(family, [fromB]), { uncovered: ['f.wgsl: a'], unmatched: [] });
  // A section's define filled with text matches no section; a generated kernel is not looked for.
  const textB = dispatched({ name: 'b', shader: () => ({ bindings: {}, code: '// shared\n\nfn main() { let x = y + 1; }\n' }), bindings: {}, dispatch: [1] });
  assert.equal(sectionCoverage(family, [textB]).unmatched, ['b']);
  const generated = dispatched({ name: 'g', shader: () => generatedSpec({ bindings: {} }, '@compute @workgroup_size(1)\nfn main() {}'), bindings: {}, dispatch: [1] });
  assert.equal(sectionCoverage(family, [generated]).unmatched, []);
  // Text in a section's define: refused by section() at run time, found in the files by textDefineUses.
  assert.throws(() => section(family['f.wgsl'], 'b', { X: 'y + 1' as unknown as number }), /define \{\{X\}\} is "y \+ 1", not a number.*generatedSpec/);
  assert.equal(section(family['f.wgsl'], 'b', { X: 2 }), '// shared\n\nfn main() { let x = 2; }\n');
  const texty = { 't.wgsl': '//# kernel c\n{{ENABLE}}\nfn main() { var a = {{T}}(0.0); let b: {{T}} = a; let v = vec4<{{T}}>(a); let n = {{N}}u * 2u; }\n' };
  assert.equal(textDefineUses(texty).map((u) => u.split(' in ')[0]), ['t.wgsl: c: {{ENABLE}}', 't.wgsl: c: {{T}}', 't.wgsl: c: {{T}}', 't.wgsl: c: {{T}}']);
});

t('the recorder validates WGSL with the compiler front end, dispatches nothing and advances written tensors\' versions', async () => {
  const e = await testEngine();
  const y = e.tensor([5, 6], [2]);
  const program = (body: string): Program => ({
    name: 'recorded',
    variant: body.length.toString(),
    shader: () => generatedSpec({ bindings: { y: readWrite('f32') } }, `@compute @workgroup_size(1)\nfn main() { ${body} }`),
    bindings: { y },
    dispatch: [1],
  });
  const version = y.version;
  const good = await collectPrograms(e, () => e.run(program('y[0] = 1.0;')));
  assert.is(good.error, undefined);
  assert.is(good.programs.length, 1);
  assert.is(y.version, version + 1, 'the written tensor\'s version');
  assert.equal(Array.from(await y.read()), [5, 6], 'nothing ran');
  // A type error (f32 = bool) the text checks cannot see: the compiler's message comes back.
  const bad = await collectPrograms(e, () => e.run(program('y[0] = true;')));
  assert.ok(bad.error instanceof Error && /WGSL the compiler refused:\n\s*recorded\|\d+: \d+:\d+ /.test(bad.error.message), String(bad.error));
  assert.is(e.run, Engine.prototype.run, 'the recorder is removed');
  y.dispose();
});

t.after(async () => {
  if (halfEngine && halfEngine !== (await testEngine())) halfEngine.destroy();
});

t.run();
