/**
 * The declared interfaces of the conv-family kernels (conv2d, transposed conv, depthwise,
 * BatchNorm, and the fused epilogue they share): the programs of a set of representative calls
 * are collected by wrapping the engine's `run`, and for each distinct pipeline key (`name|variant`)
 * the test checks that
 * 1. the generated `struct Params` holds exactly the declared uniforms, in order, with their types;
 * 2. every `p.X` the kernel's code reads is declared, and every declared uniform is read;
 * 3. every declared storage binding is used by the code;
 * 4. the program gives values for exactly the declared uniforms and tensors for exactly the
 *    declared bindings;
 * 5. `shader()` is deterministic, and every program with the same key generates the same WGSL
 *    (a compile-time input missing from the variant would show up here as two different shaders
 *    under one key, i.e. a pipeline silently reused for the wrong kernel).
 * CANET_DUMP_WGSL=<file> also writes the full WGSL of every conv-family program the calls ran, in
 * call order, as JSON: compare two such files to check that a refactor leaves the kernels alone.
 */
import * as assert from 'uvu/assert';
import { writeFileSync } from 'node:fs';
import { backward, type Engine } from '../engine/entry-node.js';
import { Engine as EngineClass } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { type Program, programKey } from '../engine/program.js';
import { conv2d, setConv2dTiles } from '../engine/ops/conv2d.js';
import { convTranspose2d, convTranspose2dArgmax } from '../engine/ops/conv-transpose.js';
import { depthwiseConv2d } from '../engine/ops/depthwise.js';
import { batchNorm2d, bnFold } from '../engine/ops/batchnorm.js';
import { add, sum } from '../engine/ops/basic.js';
import type { Epilogue } from '../engine/ops/epilogue.js';
import { suite } from './harness.js';
import { randn, testEngine } from './gpu.js';

const t = suite('kernel-interface-conv');

/** The kernels of the files under test (others, such as sumColumns, are not checked here). */
const OURS = /^(conv2d_|conv_transpose_|depthwise_|bn_)/;

/**
 * Declared uniforms a variant may leave unread, with the reason. Empty: every kernel declares
 * only what its code reads. (Add `'name|variant-pattern': ['field', ...]` here with a comment.)
 */
const UNREAD_UNIFORMS: [RegExp, string[]][] = [];

const size = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

function tensor(e: Engine, shape: number[], seed: number, grad = false): Tensor {
  const t = e.tensor(Float32Array.from(randn(size(shape), seed)), shape);
  if (grad) t.requiresGrad = true;
  return t;
}

/** Forward and backward of `f` on fresh inputs of `shapes` (all requiring grad). */
function withGrad(e: Engine, shapes: number[][], f: (ts: Tensor[]) => Tensor, seed: number): void {
  const ts = shapes.map((s, i) => tensor(e, s, seed + i, true));
  backward(sum(f(ts)));
}

/** The representative calls: every kernel of the four op files, the epilogue in each layout. */
function calls(e: Engine): void {
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
  setConv2dTiles('cpu');
  try {
    withGrad(e, [[1, 6, 6, 8], [8, 3, 3, 8]], ([x, w]) => conv2d(x!, w!, null, { padding: 1 }), 7);
  } finally {
    setConv2dTiles(null);
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
  withGrad(e, [[1, 8, 8, 4], [3, 5, 4]], ([x, w]) => depthwiseConv2d(x!, w!, null, { padding: [2, 4], dilation: 2 }), 62);

  // ---- transposed conv forward and backward: vec4 and padded channels, several channel tiles
  withGrad(e, [[1, 4, 5, 8], [8, 3, 3, 8], [8]], ([x, w, b]) => convTranspose2d(x!, w!, b!, { stride: 2, padding: 1, outputPadding: 1 }), 70);
  withGrad(e, [[1, 4, 4, 3], [5, 3, 3, 3]], ([x, w]) => convTranspose2d(x!, w!, null, { stride: 2, padding: 1, outputPadding: 1 }), 71);
  withGrad(e, [[1, 3, 3, 8], [24, 4, 4, 8]], ([x, w]) => convTranspose2d(x!, w!, null, { stride: 2, padding: 1 }), 72);

  // ---- BatchNorm: every lane mode and fusion, chunked passes, inference, fold
  const bn = (c: number, shape: number[], opts: Parameters<typeof batchNorm2d>[5], seed: number, residual = false): void => {
    const stats = [tensor(e, [c], seed + 2), tensor(e, [c], seed + 3)];
    stats[1] = e.tensor(Float32Array.from({ length: c }, () => 1), [c]);
    withGrad(e, residual ? [shape, [c], [c], shape] : [shape, [c], [c]], ([x, gm, bt, r]) =>
      batchNorm2d(x!, gm!, bt!, stats[0]!, stats[1]!, { ...opts, residual: r ?? null }), seed);
  };
  const modes: [string | undefined, string | undefined][] = [[undefined, undefined], ['serial', 'fused'], ['serial', 'separate'], ['workgroup', 'fused'], ['workgroup', 'separate'], ['chunked', undefined]];
  for (const [reduce, fuse] of modes) {
    if (reduce) e.prefer.bnReduce = reduce;
    if (fuse) e.prefer.bnFuse = fuse;
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
    }
  }
  e.noGrad(() => {
    const c = [tensor(e, [8], 92), tensor(e, [8], 93), tensor(e, [8], 94), e.tensor(Float32Array.from({ length: 8 }, () => 1), [8])] as const;
    bnFold(c[0], c[1], c[2], c[3], 1e-5);
    bnFold(c[0], c[1], c[2], c[3], 1e-5, tensor(e, [8], 95));
  });
}

interface Seen {
  key: string;
  program: Program;
  wgsl: string;
}

/** Runs the calls with `run` wrapped; returns the programs of our kernels (and the others' count). */
async function collect(e: Engine): Promise<{ ours: Seen[] }> {
  const ours: Seen[] = [];
  const run = e.run;
  const dump: { name: string; wgsl: string }[] = [];
  e.run = (program: Program): void => {
    if (process.env.CANET_DUMP_WGSL && OURS.test(program.name)) dump.push({ name: program.name, wgsl: EngineClass.wgslOf(program) });
    if (OURS.test(program.name)) ours.push({ key: programKey(program), program, wgsl: EngineClass.wgslOf(program) });
    run.call(e, program);
  };
  try {
    await e.scope(async () => {
      calls(e);
      await e.sync();
    });
  } finally {
    e.run = run;
  }
  if (process.env.CANET_DUMP_WGSL) writeFileSync(process.env.CANET_DUMP_WGSL, JSON.stringify(dump));
  return { ours };
}

/** The kernel's code without comments. */
const stripComments = (code: string): string => code.replace(/\/\/[^\n]*/g, '');
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

let seen: Seen[] = [];

t.before(async () => {
  const e = await testEngine();
  const { ours } = await collect(e);
  seen = ours;
});

t('the calls cover every conv-family kernel and layout', () => {
  const names = new Set(seen.map((s) => s.program.name.replace(/_(serial|workgroup)(_scalar)?$/, '')));
  for (const want of ['conv2d_forward', 'conv2d_backward_input', 'conv2d_backward_input_accumulate', 'conv2d_backward_filter',
    'conv_transpose_forward', 'conv_transpose_backward_input', 'conv_transpose_backward_filter', 'conv_transpose_pack', 'conv_transpose_pad_channels',
    'depthwise_forward', 'depthwise_backward_input', 'depthwise_backward_filter',
    'bn_stats_partial', 'bn_stats_combine', 'bn_stats_finish', 'bn_inference_params', 'bn_fold', 'bn_affine', 'bn_grad_partial', 'bn_grad_combine',
    'bn_grad_finish_train', 'bn_grad_finish_eval', 'bn_backward_dx'])
    assert.ok(names.has(want), `no call ran ${want} (ran: ${[...names].sort().join(', ')})`);
  const keys = new Set(seen.map((s) => s.key));
  assert.ok(keys.size >= 60, `only ${keys.size} distinct pipelines`);
});

t('struct Params is exactly the declared uniforms, in order', () => {
  for (const { key, program, wgsl } of seen) {
    const spec = program.shader();
    const declared = Object.entries(spec.uniforms ?? {});
    const m = /struct Params \{([^}]*)\}/.exec(wgsl);
    if (!declared.length) {
      assert.ok(!m && !/var<uniform>/.test(wgsl), `${key}: no uniforms declared, but the WGSL has a uniform block`);
      continue;
    }
    assert.ok(m, `${key}: no struct Params`);
    const fields = m![1]!.split(',').map((f) => f.trim()).filter(Boolean).map((f) => f.split(':').map((s) => s.trim()));
    assert.equal(fields, declared.map(([n, ty]) => [n, ty]), `${key}: Params fields`);
    assert.is((wgsl.match(/^struct Params\b/gm) ?? []).length, 1, `${key}: one struct Params`);
  }
});

t('every uniform read is declared and every declared uniform is read', () => {
  for (const { key, program } of seen) {
    const spec = program.shader();
    const code = stripComments(spec.code);
    const declared = Object.keys(spec.uniforms ?? {});
    const read = new Set([...code.matchAll(/\bp\.([A-Za-z_]\w*)/g)].map((m) => m[1]!));
    for (const r of read) assert.ok(declared.includes(r), `${key}: reads p.${r}, which is not declared (declared: ${declared.join(', ')})`);
    const allowed = UNREAD_UNIFORMS.filter(([re]) => re.test(key)).flatMap(([, f]) => f);
    const unread = declared.filter((d) => !read.has(d) && !allowed.includes(d));
    assert.equal(unread, [], `${key}: declared uniforms never read`);
  }
});

t('every declared binding is used', () => {
  for (const { key, program } of seen) {
    const spec = program.shader();
    const code = stripComments(spec.code);
    for (const name of Object.keys(spec.bindings))
      assert.ok(new RegExp(`\\b${escape(name)}\\s*\\[`).test(code), `${key}: binding ${name} is declared but never indexed`);
    // And no binding is declared by hand any more.
    assert.not.match(code, /@binding\(/, `${key}: the code declares a binding itself`);
    assert.not.match(code, /struct Params\b/, `${key}: the code declares Params itself`);
    assert.not.match(code, /\{\{\w+\}\}/, `${key}: an unsubstituted define`);
  }
});

t('values and tensors are given for exactly the declared names', () => {
  for (const { key, program } of seen) {
    const spec = program.shader();
    assert.equal(Object.keys(program.uniforms ?? {}).sort(), Object.keys(spec.uniforms ?? {}).sort(), `${key}: uniform values`);
    assert.equal(Object.keys(program.bindings).sort(), Object.keys(spec.bindings).sort(), `${key}: bindings`);
    for (const [n, v] of Object.entries(program.uniforms ?? {}))
      assert.ok(typeof v === 'number' || typeof v === 'function', `${key}: uniform ${n} is not a number (${JSON.stringify(v)})`);
  }
});

t('shader() is deterministic and one key means one shader', () => {
  const byKey = new Map<string, string>();
  for (const { key, program, wgsl } of seen) {
    assert.is(EngineClass.wgslOf(program), wgsl, `${key}: shader() gives different WGSL on a second call`);
    const first = byKey.get(key);
    if (first === undefined) byKey.set(key, wgsl);
    else assert.ok(first === wgsl, `${key}: two programs with this key generate different WGSL (a compile-time input is missing from the variant)`);
    assert.ok(program.variant === undefined || program.variant.length <= 120, `${key}: the variant should be short`);
  }
});

t.run();
