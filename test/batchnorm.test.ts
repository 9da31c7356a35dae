/**
 * batchNorm2d against the float64 reference of PyTorch's BatchNorm2d (training and inference), in
 * every lane mode. The forward and gradient tables, their runners and tolerances are in
 * test/cases/batchnorm.ts, shared with the browser page.
 */
import * as assert from 'uvu/assert';
import { backward, ShapeError, type Engine, type Tensor } from '../entry/node.js';
import { batchNorm2d, type BatchNormOptions } from '../engine/ops/batchnorm.js';
import { ACTIVATION_OPS, type ActivationName, activationRef } from '../engine/ops/activation.js';
import { kernelFamily } from '../engine/device-common.js';
import { suite } from './harness.js';
import { expectClose, randn, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { refBatchNorm } from './ref/batchnorm.js';
import { f32Round as asF32, sizeOf } from './cases/common.js';
import {
  BN_INFERENCE_BACKWARD,
  BN_INFERENCE_FORWARD,
  BN_TRAINING_BACKWARD,
  BN_TRAINING_FORWARD,
  bnParams as params,
  checkBnGrad,
  checkBnInferenceForward,
  checkBnTrainingForward,
  uploadBnParams as upload,
} from './cases/batchnorm.js';

const t = suite('batchnorm');

const f64 = (a: ArrayLike<number>): Float64Array => Float64Array.from(a);

/** Why the subgroup variants cannot run here ('' where the adapter has the `subgroups` feature). */
const engine0 = await testEngine();
const noSubgroups = engine0.features.has('subgroups') ? '' : `the adapter (${engine0.adapter.description}) has no subgroups feature`;
const llvmpipe = kernelFamily(engine0) === 'llvmpipe';

/**
 * Registers `body` six times: with the lane reductions serial (what CPU adapters run),
 * workgroup-parallel with a tree merge in workgroup memory, and workgroup-parallel merged with
 * subgroup operations (GPUs; engine/ops/subgroup.ts), each with the elementwise pass fused into
 * the reduction's dispatch and as its own kernel, so every variant meets the same float64 checks
 * here. The subgroup runs must dispatch a subgroup kernel (`_sg`), or they fail; without the
 * feature they are counted as skipped, with the reason.
 */
type LaneMode = 'serial' | 'workgroup' | 'workgroup+subgroups';

function bothLaneModes(name: string, body: (e: Engine, mode: LaneMode) => Promise<void>, opts: { otherUnroll?: boolean } = {}): void {
  if (opts.otherUnroll) {
    // The lane kernels' unrolled loop is chosen per kernel family (laneUnroll: 4 on SwiftShader,
    // none on llvmpipe, for compile time): the shape this adapter does not take runs here too.
    const other = llvmpipe ? '4' : '1';
    t(`${name} [serial lanes, fused, unroll ${other}]`, async () => {
      const e = await testEngine();
      e.prefer.bnReduce = 'serial';
      e.prefer.bnFuse = 'fused';
      e.prefer.bnUnroll = other;
      try {
        await body(e, 'serial');
      } finally {
        delete e.prefer.bnReduce;
        delete e.prefer.bnFuse;
        delete e.prefer.bnUnroll;
      }
    });
  }
  for (const mode of ['serial', 'workgroup', 'workgroup+subgroups'] as const satisfies readonly LaneMode[])
    for (const fuse of engine0.variants.candidates('bnFuse')) {
      const title = `${name} [${mode} lanes, ${fuse}]`;
      const sg = mode === 'workgroup+subgroups';
      if (sg && noSubgroups) {
        t.skip(`${title} (skipped: ${noSubgroups})`);
        continue;
      }
      // The tree merge in workgroup memory is a GPU shape that llvmpipe never takes and compiles
      // 2-3x slower than the serial walk there (bench/RESULTS.md): on lavapipe only its subgroup
      // form runs (subgroups of 8), the tree is checked on SwiftShader (CI runs both).
      if (mode === 'workgroup' && llvmpipe) {
        t.skip(`${title} (skipped on lavapipe: the GPU tree merge is checked on SwiftShader)`);
        continue;
      }
      t(title, async () => {
        const e = await testEngine();
        e.prefer.bnReduce = sg ? 'workgroup' : mode;
        e.prefer.bnFuse = fuse;
        e.prefer.subgroups = sg ? 'on' : 'off';
        const run = e.run;
        let sgKernels = 0;
        e.run = (p) => {
          if (p.name.includes('_sg')) sgKernels++;
          return run.call(e, p);
        };
        try {
          await body(e, mode);
        } finally {
          e.run = run;
          delete e.prefer.bnReduce;
          delete e.prefer.bnFuse;
          delete e.prefer.subgroups;
        }
        if (sg) assert.ok(sgKernels > 0, 'no subgroup kernel ran');
        else assert.is(sgKernels, 0, 'a subgroup kernel ran with subgroups off');
      });
    }
}

t('reference is right on a hand-computed case', () => {
  // One channel, values 1 and 3: mean 2, biased variance 1, unbiased 2.
  const r = refBatchNorm(f64([1, 3]), 1, f64([2]), f64([0.5]), f64([0]), f64([1]), { training: true, eps: 0 });
  assert.equal(Array.from(r.y), [-1.5, 2.5]);
  assert.equal(Array.from(r.mean), [2]);
  assert.equal(Array.from(r.variance), [1]);
  assert.ok(Math.abs(r.runningMean[0]! - 0.2) < 1e-15, '0.9 * 0 + 0.1 * 2');
  assert.ok(Math.abs(r.runningVar[0]! - 1.1) < 1e-15, '0.9 * 1 + 0.1 * 2 (unbiased)');
  // Two channels interleaved (NHWC), inference: (x - rm) / sqrt(rv) * gamma + beta.
  const s = refBatchNorm(f64([1, 10, 3, 20]), 2, f64([1, 2]), f64([0, 1]), f64([1, 10]), f64([4, 25]), { training: false, eps: 0 });
  assert.equal(Array.from(s.y), [0, 1, 1, 5]);
});

// y's tolerance 3e-4: see BN_TOL in test/cases/batchnorm.ts (outputs that cancel to near zero).
bothLaneModes('training forward: output (rel err < 3e-4) and running statistics (< 1e-4) after 1 and 2 calls match float64', async (e) => {
  for (const { c: shape, seed } of BN_TRAINING_FORWARD) await checkBnTrainingForward(e, shape, seed);
}, { otherUnroll: true });

bothLaneModes('training statistics stay accurate far from zero (mean 1000, std 0.6; rel err < 1e-4)', async (e) => {
  // sum(x^2) - n mean^2 would lose every digit here (and an f32 mean near 1000 carries 3e-5 of
  // rounding); shifted sums, Chan's merge and the (pivot, deviation) form of the mean do not.
  for (const shape of [[3, 64, 65, 8], [2, 17, 33, 5]]) {
    const c = shape[shape.length - 1]!;
    const p = params(c, 7);
    const x = asF32(randn(sizeOf(shape), 8, 999, 1001));
    const opts = { training: true };
    await e.scope(async () => {
      const g = upload(e, p);
      const r = refBatchNorm(x, c, p.gamma, p.beta, p.rm, p.rv, opts);
      const y = batchNorm2d(e.tensor(Float32Array.from(x), shape), g.gamma, g.beta, g.rm, g.rv, opts);
      console.log(expectClose(await y.read(), r.y, 1e-4, `y ${shape}`));
      expectClose(await g.rv.read(), r.runningVar, 1e-4, `runningVar ${shape}`);
      expectClose(await g.rm.read(), r.runningMean, 1e-6, `runningMean ${shape}`);
    });
  }
});

t('inference forward matches float64 (rel err < 1e-4) and leaves the running statistics alone', async () => {
  const e = await testEngine();
  for (const { c: shape, seed } of BN_INFERENCE_FORWARD) await checkBnInferenceForward(e, shape, seed);
});

bothLaneModes('training backward: x, gamma, beta vs finite differences of float64 (rel err < 2e-3)', async (e) => {
  for (const { c, seed } of BN_TRAINING_BACKWARD) await checkBnGrad(e, c, seed);
});

t('inference backward: x, gamma, beta vs finite differences of float64 (rel err < 2e-3)', async () => {
  const e = await testEngine();
  for (const { c, seed } of BN_INFERENCE_BACKWARD) await checkBnGrad(e, c, seed);
});

bothLaneModes('fused activation (every activation of the table in the serial lanes, relu in the others): forward vs float64 BN-then-act, backward vs finite differences (rel err < 1e-4 / 2e-3)', async (e, mode) => {
  // C = 8 and 12 run the one-dispatch lane kernels with the activation inside; C = 5 composes
  // the chunked BatchNorm with the separate activation op.
  // Each lane kernel declares the activation once, as a function of its lane type (activation.ts),
  // and calls it where the normalised value is written: the reduction mode (serial, workgroup
  // tree, subgroups) does not touch it. So the whole table runs once per fusion choice (serial
  // lanes, fused and separate, forward and backward) and the other reduction modes run relu, the
  // network's activation: the table in every mode compiled 3 x 4 pipelines more per mode for
  // the same code.
  let seed = 40;
  for (const act of mode === 'serial' ? ACTIVATION_OPS : (['relu'] as const))
    for (const [shape, training] of [[[2, 5, 7, 8], true], [[1, 9, 7, 12], false], [[2, 3, 5, 5], true]] as [number[], boolean][]) {
      const c = shape[shape.length - 1]!;
      const p = params(c, seed);
      // Scaled so relu6 clips on both sides.
      const x = asF32(randn(sizeOf(shape), seed + 1, -2, 2));
      const opts = { training, momentum: 0.1, eps: 1e-5 };
      const want = refBatchNorm(x, c, p.gamma.map((v) => 4 * v), p.beta, p.rm, p.rv, opts).y.map(activationRef(act));
      await e.scope(async () => {
        const g = upload(e, { ...p, gamma: p.gamma.map((v) => 4 * v) });
        const y = batchNorm2d(e.tensor(Float32Array.from(x), shape), g.gamma, g.beta, g.rm, g.rv, { ...opts, act });
        expectClose(await y.read(), want, 1e-4, `${act} ${training ? 'training' : 'inference'} ${shape}`);
      });
      await checkBnGrad(e, { shape, training, act }, seed + 2);
      seed += 5;
    }
});

type Act = ActivationName;

bothLaneModes('residual add (fused for C % 4 == 0 with no activation, composed otherwise): forward vs float64, backward vs finite differences', async (e) => {
  let seed = 70;
  for (const [shape, act, training] of [[[2, 5, 7, 8], 'none', true], [[1, 9, 7, 12], 'none', false], [[2, 3, 5, 8], 'relu', true], [[2, 3, 5, 5], 'none', true]] as [number[], Act, boolean][]) {
    const c = shape[shape.length - 1]!;
    const p = params(c, seed);
    const x = asF32(randn(sizeOf(shape), seed + 1, -2, 2));
    const r = asF32(randn(sizeOf(shape), seed + 2, -2, 2));
    const opts = { training, momentum: 0.1, eps: 1e-5 };
    const ref = (xd: Float64Array, gm: Float64Array, bt: Float64Array, rd: Float64Array) =>
      refBatchNorm(xd, c, gm, bt, p.rm, p.rv, opts).y.map((v, i) => activationRef(act)(v + rd[i]!));
    await e.scope(async () => {
      const g = upload(e, p);
      const y = batchNorm2d(e.tensor(Float32Array.from(x), shape), g.gamma, g.beta, g.rm, g.rv, { ...opts, act, residual: e.tensor(Float32Array.from(r), shape) });
      expectClose(await y.read(), ref(x, p.gamma, p.beta, r), 1e-4, `residual ${act} ${shape}`);
    });
    await gradCheck(e, {
      gpu: ([xt, gamma, beta, res]) => batchNorm2d(xt!, gamma!, beta!, e.tensor(Float32Array.from(p.rm), [c]), e.tensor(Float32Array.from(p.rv), [c]), { ...opts, act, residual: res! }),
      ref: ([xd, gm, bt, rd]) => ref(xd!, gm!, bt!, rd!),
      inputs: [
        { name: 'x', shape, data: x },
        { name: 'gamma', shape: [c], data: p.gamma },
        { name: 'beta', shape: [c], data: p.beta },
        { name: 'residual', shape, data: r },
      ],
      tol: 2e-3,
      maxElements: 30,
      seed,
    });
    seed += 5;
  }
});

bothLaneModes('training backward on a long reduction (one-dispatch lanes for C = 8, merge passes for C = 6) matches the closed form (rel err < 1e-3)', async (e) => {
  // Too large for finite differences; checks dx, dgamma, dbeta against the analytic formula in float64.
  for (const c of [8, 6]) {
    const shape = [3, 64, 65, c];
    const n = sizeOf(shape);
    const rows = n / c;
    const p = params(c, 9);
    const x = asF32(randn(n, 10, -2, 2));
    const gout = asF32(randn(n, 11, -1, 1));
    const r = refBatchNorm(x, c, p.gamma, p.beta, p.rm, p.rv, { training: true });
    const sg = new Float64Array(c);
    const sgx = new Float64Array(c);
    const xhat = x.map((v, i) => (v - r.mean[i % c]!) / Math.sqrt(r.variance[i % c]! + 1e-5));
    for (let i = 0; i < n; i++) {
      sg[i % c] += gout[i]!;
      sgx[i % c] += gout[i]! * xhat[i]!;
  }
  const dx = gout.map((gv, i) => {
    const k = i % c;
    return (p.gamma[k]! / Math.sqrt(r.variance[k]! + 1e-5) / rows) * (rows * gv - sg[k]! - xhat[i]! * sgx[k]!);
  });
  await e.scope(async () => {
    const g = upload(e, p);
    const xt = e.tensor(Float32Array.from(x), shape);
    xt.requiresGrad = g.gamma.requiresGrad = g.beta.requiresGrad = true;
    const y = batchNorm2d(xt, g.gamma, g.beta, g.rm, g.rv, { training: true });
    backward(y, { gradOutput: e.tensor(Float32Array.from(gout), shape) });
    expectClose(await g.beta.grad!.read(), sg, 1e-4, 'dbeta');
    expectClose(await g.gamma.grad!.read(), sgx, 1e-3, 'dgamma');
    expectClose(await xt.grad!.read(), dx, 1e-3, 'dx');
  });
  }
}, { otherUnroll: true });

t('one pixel and constant input: no NaN, output is beta, running variance stays finite', async () => {
  const e = await testEngine();
  for (const [shape, value] of [[[1, 1, 1, 5], 0.7], [[1, 1, 1, 8], -3], [[2, 3, 3, 5], 2.5], [[1, 1, 1, 1], 1e6]] as [number[], number][]) {
    const c = shape[shape.length - 1]!;
    const p = params(c, 12);
    await e.scope(async () => {
      const g = upload(e, p);
      const x = e.tensor(new Float32Array(sizeOf(shape)).fill(value), shape);
      x.requiresGrad = g.gamma.requiresGrad = g.beta.requiresGrad = true;
      const y = batchNorm2d(x, g.gamma, g.beta, g.rm, g.rv, { training: true });
      const yv = await y.read();
      assert.ok(yv.every(Number.isFinite), `finite output for ${shape}`);
      expectClose(yv, Array.from({ length: yv.length }, (_, i) => Float32Array.from(p.beta)[i % c]!), 1e-6, `y = beta for ${shape}`);
      const r = refBatchNorm(new Float64Array(sizeOf(shape)).fill(value), c, p.gamma, p.beta, p.rm, p.rv, { training: true });
      expectClose(await g.rv.read(), r.runningVar, 1e-6, `running var for ${shape}`);
      expectClose(await g.rm.read(), r.runningMean, 1e-6, `running mean for ${shape}`);
      backward(y, { gradOutput: e.tensor(Float32Array.from(randn(sizeOf(shape), 13)), shape) });
      for (const gr of [x.grad!, g.gamma.grad!, g.beta.grad!]) assert.ok((await gr.read()).every(Number.isFinite), `finite gradients for ${shape}`);
    });
  }
});

t('no tensors leak: inference under noGrad and a training step in a scope', async () => {
  const e = await testEngine();
  const p = params(5, 14);
  const g = upload(e, p);
  const before = e.stats().liveTensors;
  const x = e.tensor(Float32Array.from(randn(3 * 7 * 9 * 5, 15)), [3, 7, 9, 5]);
  e.noGrad(() => batchNorm2d(x, g.gamma, g.beta, g.rm, g.rv, { training: true }).dispose());
  assert.is(e.stats().liveTensors, before + 1, 'only x is live after a no-grad call');
  await e.scope(async () => {
    x.requiresGrad = true;
    backward(batchNorm2d(x, g.gamma, g.beta, g.rm, g.rv, { training: true }), { gradOutput: e.tensor(new Float32Array(x.size).fill(1), x.shape) });
    await x.grad!.read();
  });
  x.dispose();
  for (const v of Object.values(g)) v.dispose();
  assert.is(e.stats().liveTensors, before - 4, 'everything made by the op is gone');
});

t('backward after the forward scope is gone says so', async () => {
  const e = await testEngine();
  const g = upload(e, params(3, 17));
  const x = e.tensor(Float32Array.from(randn(2 * 3 * 3 * 3, 18)), [2, 3, 3, 3]);
  x.requiresGrad = true;
  const y = e.scope(() => batchNorm2d(x, g.gamma, g.beta, g.rm, g.rv, { training: true }));
  const gradOutput = e.tensor(new Float32Array(x.size), x.shape);
  assert.throws(() => backward(y, { gradOutput }), /batchNorm2d backward: the saved batch statistics were disposed/);
  for (const v of [x, y, gradOutput, ...Object.values(g)]) v.dispose();
});

t('bad input throws a ShapeError naming the op, tensor and shapes before dispatching', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const g = upload(e, params(4, 16));
    const x = e.tensor(new Float32Array(2 * 3 * 3 * 4), [2, 3, 3, 4]);
    const run = (xx: Tensor, o: Partial<typeof g> = {}, opts: BatchNormOptions = { training: true }) => () => {
      const a = { ...g, ...o };
      batchNorm2d(xx, a.gamma, a.beta, a.rm, a.rv, opts);
    };
    const dispatches = e.stats().dispatches;
    assert.throws(run(e.tensor(new Float32Array(4), [4])), (err: Error) => err instanceof ShapeError && /batchNorm2d: input .* must be \[N, H, W, C\].*got \[4\]/.test(err.message));
    assert.throws(run(e.tensor(new Float32Array(0), [0, 3, 3, 4])), /batchNorm2d: input .*\[0, 3, 3, 4\] is empty/);
    assert.throws(run(x, { gamma: e.tensor(new Float32Array(5), [5]) }), /batchNorm2d: gamma .* must be \[4\] \(the channels of .*\[2, 3, 3, 4\]\), got \[5\]/);
    assert.throws(run(x, { beta: e.tensor(new Float32Array(4), [1, 4]) }), /batchNorm2d: beta .* must be \[4\].*got \[1, 4\]/);
    assert.throws(run(x, { rv: e.tensor(new Float32Array(3), [3]) }), /batchNorm2d: runningVar .* must be \[4\].*got \[3\]/);
    assert.throws(run(x, { rm: e.tensor(new Int32Array(4), [4]) }), /batchNorm2d: .* must be f32, got i32/);
    assert.throws(run(x, { rm: g.rv }), /batchNorm2d: runningMean .* must be its own tensor/);
    assert.throws(run(x, { rm: g.gamma }), /batchNorm2d: runningMean .* must be its own tensor/);
    assert.throws(run(x, {}, { training: true, momentum: 1.5 }), /batchNorm2d: momentum must be in \[0, 1\], got 1.5/);
    assert.throws(run(x, {}, { training: false, eps: 0 }), /batchNorm2d: eps must be positive, got 0/);
    assert.is(e.stats().dispatches, dispatches, 'nothing was dispatched');
  });
});

t.run();
