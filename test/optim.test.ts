/**
 * SGD, Adam, AdamW against float64 torch.optim references (configurations, runner and helpers in
 * test/cases/optim.ts, shared with the browser page); checkpoints; schedules; a small training run.
 */
import * as assert from 'uvu/assert';
import { ShapeError, backward, recordOp, read, readWrite, type Tensor } from '../entry/node.js';
import { checkLossFinite, softmaxCrossEntropy } from '../engine/ops/loss.js';
import { Adam, AdamW, SGD, type OptimizerState } from '../engine/optim.js';
import { cosineLR, polyLR } from '../engine/schedule.js';
import { suite } from './harness.js';
import { expectClose, randn, rng, testEngine } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { refCrossEntropy } from './ref/loss.js';
import { RefAdam, RefSGD } from './ref/optim.js';
import { checkOptimConfig, close, CONFIGS, makeOptimizer, makeRef, setGrad, SIZES, type Config } from './cases/optim.js';

const t = suite('optim');
const f32round = (x: ArrayLike<number>): Float64Array => Float64Array.from(Float32Array.from(x));

t('references are right on hand-computed cases', () => {
  const sgd = new RefSGD(Float64Array.of(1), { lr: 0.1, momentum: 0.9 });
  sgd.step([1]); // buf = 1, p = 0.9
  sgd.step([1]); // buf = 0.9 + 1 = 1.9, p = 0.9 - 0.19
  assert.ok(Math.abs(sgd.p[0]! - 0.71) < 1e-15);
  const nest = new RefSGD(Float64Array.of(1), { lr: 0.1, momentum: 0.9, nesterov: true });
  nest.step([1]); // buf = 1, direction 1 + 0.9
  assert.ok(Math.abs(nest.p[0]! - 0.81) < 1e-15);
  const wd = new RefSGD(Float64Array.of(1), { lr: 0.1, weightDecay: 0.1 });
  wd.step([1]); // d = 1.1
  assert.ok(Math.abs(wd.p[0]! - 0.89) < 1e-15);
  // Adam, first step: m = 0.2, v = 0.004, step size 0.1 / 0.1 = 1, denom sqrt(0.004) / sqrt(0.001) + eps = 2 + 1e-8.
  const adam = new RefAdam(Float64Array.of(1), { lr: 0.1 });
  adam.step([2]);
  assert.ok(Math.abs(adam.p[0]! - (1 - 0.2 / (2 + 1e-8))) < 1e-15);
  // AdamW decays first: 1 * (1 - 0.1 * 0.1) = 0.99, then the same update.
  const adamw = new RefAdam(Float64Array.of(1), { lr: 0.1, weightDecay: 0.1, decoupled: true });
  adamw.step([2]);
  assert.ok(Math.abs(adamw.p[0]! - (0.99 - 0.2 / (2 + 1e-8))) < 1e-15);
  // Adam's L2 decay enters the gradient: g = 2 + 0.1 * 1.
  const adaml2 = new RefAdam(Float64Array.of(1), { lr: 0.1, weightDecay: 0.1 });
  adaml2.step([2]);
  assert.ok(Math.abs(adaml2.p[0]! - (1 - 0.21 / (2.1 + 1e-8))) < 1e-15);
});

for (const c of CONFIGS) {
  t(`${c.kind} ${JSON.stringify(c.opts)}: 6 steps on 1, 5, 1001 elements match float64 torch.optim (rel err < 1e-5, floor 5% of max)`, async () => {
    await checkOptimConfig(await testEngine(), c);
  });
}

t('a step where every parameter has its gradient in its slot is one dispatch over the arena; uneven steps fall back per tensor (float64 refs)', async () => {
  const e = await testEngine();
  for (const c of [CONFIGS[5]!, CONFIGS[8]!]) {
    await e.scope(async () => {
      const sizes = [3, 64, 1001, 7];
      const init = sizes.map((n, k) => f32round(randn(n, 2000 + k)));
      const params = sizes.map((n, k) => e.tensor(Float32Array.from(init[k]!), [n]));
      const refs = init.map((p) => makeRef(c, Float64Array.from(p)));
      const opt = makeOptimizer(c, params);
      try {
        const dispatches: number[] = [];
        for (let step = 0; step < 5; step++) {
          params.forEach((p, k) => {
            if (step === 2 && k === 3) return; // no gradient: skipped, then its step count lags
            const g = Float32Array.from(randn(p.size, 31 * step + k, -1, 1));
            setGrad(e, p, g);
            refs[k]!.step(g);
          });
          const d0 = e.stats().dispatches;
          opt.step();
          dispatches.push(e.stats().dispatches - d0);
          opt.zeroGrad();
        }
        assert.equal(dispatches, [1, 1, 3, 4, 4], `${c.kind}: dispatches per step (fused, fused, 3 tensors, then per tensor while steps differ)`);
        for (const [k, p] of params.entries()) close(await p.read(), refs[k]!.p, `${c.kind} param of ${p.size}`);
      } finally {
        opt.dispose();
      }
    });
  }
});

t('optimizer arenas: parameters keep their values when packed, and every arena buffer returns to the pool', async () => {
  const e = await testEngine();
  const s0 = e.stats();
  const data = [Float32Array.from(randn(10, 1)), Float32Array.from(randn(300, 2))];
  const params = data.map((d) => e.tensor(d, [d.length]).keep());
  params.forEach((p) => (p.requiresGrad = true));
  const opt = new AdamW(params, { lr: 0.1 });
  for (const [k, p] of params.entries()) assert.equal(Array.from(await p.read()), Array.from(data[k]!), 'value after packing');
  assert.ok(params.every((p) => p.arena !== null && p.gradSlot !== null), 'packed, with slots');
  for (const p of params) setGrad(e, p, new Float32Array(p.size).fill(1));
  opt.step();
  opt.dispose();
  assert.ok(params.every((p) => p.gradSlot === null && p.grad === null), 'the optimizer took its slots back');
  for (const p of params) p.dispose();
  const s1 = e.stats();
  assert.is(s1.liveTensors, s0.liveTensors, 'no tensor left');
  assert.is(s1.liveBufferBytes, s0.liveBufferBytes, 'every arena buffer back in the pool');
});

t('changing lr and other hyper-parameters each step compiles no new pipeline', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const p = e.tensor(Float32Array.from(randn(37, 3)), [37]);
    const sgd = new SGD([p], { lr: 0.1, momentum: 0.9 });
    const adam = new AdamW([p], { lr: 1e-3 });
    let pipelines = 0;
    for (let step = 0; step < 5; step++) {
      setGrad(e, p, Float32Array.from(randn(37, step)));
      sgd.lr = cosineLR(0.1, step, 5);
      sgd.weightDecay = step * 1e-3;
      sgd.nesterov = step % 2 === 1;
      adam.lr = polyLR(1e-3, step, 5);
      adam.betas = [0.9 - step / 100, 0.999];
      sgd.step();
      adam.step();
      await e.flush();
      if (step === 0) pipelines = e.stats().pipelines;
      else assert.is(e.stats().pipelines, pipelines, `step ${step}`);
    }
    sgd.dispose();
    adam.dispose();
  });
});

t('stateDict / loadStateDict: a restored optimizer continues bit-identically', async () => {
  const e = await testEngine();
  for (const c of [CONFIGS[5]!, CONFIGS[7]!, CONFIGS[8]!]) {
    await e.scope(async () => {
      const a = SIZES.map((n, k) => e.tensor(Float32Array.from(randn(n, 500 + k)), [n]));
      const optA = makeOptimizer(c, a);
      const grads = (step: number) => SIZES.map((n, k) => Float32Array.from(randn(n, 600 + 10 * step + k)));
      for (let step = 0; step < 3; step++) {
        grads(step).forEach((g, k) => setGrad(e, a[k]!, g));
        optA.step();
      }
      optA.zeroGrad();
      // What a checkpoint holds: parameter values and the optimizer state, cloned off the GPU.
      const saved = structuredClone(await optA.stateDict()) as OptimizerState;
      const b = await Promise.all(a.map(async (p) => e.tensor((await p.read()) as Float32Array, p.shape)));
      const optB = makeOptimizer({ ...c, opts: { ...c.opts, lr: 123 } } as Config, b);
      optB.loadStateDict(saved);
      assert.is(optB.lr, c.opts.lr, 'hyper-parameters restored');
      for (let step = 3; step < 6; step++) {
        const g = grads(step);
        for (const [ps, opt] of [[a, optA], [b, optB]] as const) {
          g.forEach((gk, k) => setGrad(e, ps[k]!, gk));
          opt.step();
        }
      }
      for (let k = 0; k < SIZES.length; k++)
        assert.equal(Array.from(await b[k]!.read()), Array.from(await a[k]!.read()), `${c.kind} parameter ${k} identical`);
      assert.equal(await optB.stateDict(), await optA.stateDict(), `${c.kind} state identical`);
      optA.dispose();
      optB.dispose();
    });
  }
});

t('loadStateDict rejects mismatched state before changing anything', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const p = e.tensor(Float32Array.from(randn(5, 1)), [5]);
    p.name = 'w';
    const opt = new Adam([p], { lr: 0.01 });
    setGrad(e, p, Float32Array.from(randn(5, 2)));
    opt.step();
    const good = await opt.stateDict();
    assert.throws(() => new SGD([p], { lr: 1 }).loadStateDict(good), /SGD.loadStateDict: state was saved by Adam, not SGD/);
    const two = new Adam([p, e.tensor(new Float32Array(3), [3])], { lr: 1 });
    assert.throws(() => two.loadStateDict(good), /state has 1 parameters, optimizer has 2/);
    const short = structuredClone(good);
    short.params[0]!.buffers.exp_avg = new Float32Array(4);
    assert.throws(() => opt.loadStateDict(short), (err: Error) => err instanceof ShapeError && /parameter 0 \(w\): buffer exp_avg must be a Float32Array of 5 elements \(shape \[5\]\), got 4/.test(err.message));
    const missing = structuredClone(good);
    delete missing.params[0]!.buffers.exp_avg_sq;
    assert.throws(() => opt.loadStateDict(missing), /buffers must be exp_avg and exp_avg_sq, got \[exp_avg\]/);
    const badLR = structuredClone(good);
    badLR.options.lr = -1;
    assert.throws(() => opt.loadStateDict(badLR), /lr must be a finite number/);
    assert.is(opt.lr, 0.01, 'options unchanged after a rejected load');
    assert.equal(await opt.stateDict(), good, 'state unchanged after rejected loads');
    opt.dispose();
    two.dispose();
  });
});

t('zeroGrad drops gradients (or zero-fills them); parameters without a gradient are skipped', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const p = e.tensor(Float32Array.of(1, 2, 3), [3]);
    const q = e.tensor(Float32Array.of(4, 5), [2]);
    const opt = new SGD([p, q], { lr: 0.5, momentum: 0.9 });
    setGrad(e, p, Float32Array.of(1, 1, 1));
    opt.step();
    assert.equal(Array.from(await p.read()), [0.5, 1.5, 2.5]);
    assert.equal(Array.from(await q.read()), [4, 5], 'q had no gradient');
    assert.is((await opt.stateDict()).params[1], null, 'no state for a skipped parameter');
    opt.zeroGrad(false);
    assert.equal(Array.from(await p.grad!.read()), [0, 0, 0], 'zero-filled in place');
    opt.zeroGrad();
    assert.is(p.grad, null);
    opt.step(); // nothing to do
    assert.equal(Array.from(await p.read()), [0.5, 1.5, 2.5]);
    opt.dispose();
    assert.throws(() => opt.step(), /SGD: the optimizer was disposed/);
  });
});

t('bad options throw RangeError; a bad gradient throws ShapeError and dispatches nothing', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const p = e.tensor(new Float32Array(6), [2, 3]);
    p.name = 'conv.weight';
    assert.throws(() => new SGD([p], { lr: -1 }), (err: Error) => err instanceof RangeError && /SGD: lr must be a finite number/.test(err.message));
    assert.throws(() => new SGD([p], { lr: 0.1, nesterov: true }), /nesterov needs momentum > 0 and dampening 0/);
    assert.throws(() => new SGD([p], { lr: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true }), /nesterov needs/);
    assert.throws(() => new Adam([p], { lr: 0.1, betas: [0.9, 1] }), /Adam: betas\[1\] must be a finite number in \[0, 1\)/);
    assert.throws(() => new AdamW([p], { lr: NaN }), /AdamW: lr must be/);
    assert.throws(() => new SGD([], { lr: 0.1 }), (err: Error) => err instanceof ShapeError && /at least one parameter/.test(err.message));
    assert.throws(() => new SGD([p, p], { lr: 0.1 }), /parameter 1 \(conv.weight\) appears twice/);
    assert.throws(() => new SGD([e.tensor(new Int32Array(2), [2])], { lr: 0.1 }), /must be f32, got i32/);
    const opt = new SGD([p], { lr: 0.1 });
    p.grad = e.tensor(new Float32Array(5), [5]).keep();
    const before = e.stats().dispatches;
    assert.throws(() => opt.step(), (err: Error) => err instanceof ShapeError && /gradient of conv.weight must be f32 with 6 elements \(shape \[2, 3\]\), got f32 \[5\]/.test(err.message));
    assert.is(e.stats().dispatches, before);
    opt.lr = Infinity;
    assert.throws(() => opt.step(), /lr must be a finite number/);
    opt.zeroGrad();
    opt.dispose();
  });
});

t('schedules match hand-computed values', () => {
  const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
  near(polyLR(0.01, 0, 100), 0.01, 'poly start');
  near(polyLR(0.01, 50, 100), 0.01 * 0.5 ** 0.9, 'poly half'); // 0.5^0.9 = 0.535886731...
  near(polyLR(0.01, 50, 100), 0.005358867312681466, 'poly half, digits');
  near(polyLR(0.01, 75, 100, 2), 0.01 * 0.0625, 'poly power 2');
  near(polyLR(0.01, 100, 100), 0, 'poly end');
  near(polyLR(0.01, 150, 100), 0, 'poly past the end');
  const o = { warmupSteps: 10, warmupStartFactor: 0.1, minLR: 0.001 };
  near(cosineLR(0.1, 0, 110, o), 0.01, 'warm-up start');
  near(cosineLR(0.1, 5, 110, o), 0.055, 'warm-up middle: 0.1 * (0.1 + 0.9 / 2)');
  near(cosineLR(0.1, 10, 110, o), 0.1, 'cosine start');
  near(cosineLR(0.1, 35, 110, o), 0.001 + 0.099 * (1 + Math.SQRT1_2) / 2, 'cosine quarter');
  near(cosineLR(0.1, 60, 110, o), 0.0505, 'cosine half: 0.001 + 0.099 / 2');
  near(cosineLR(0.1, 110, 110, o), 0.001, 'cosine end');
  near(cosineLR(0.1, 200, 110, o), 0.001, 'past the end');
  near(cosineLR(0.1, 0, 4), 0.1, 'no warm-up');
  near(cosineLR(0.1, 2, 4), 0.05, 'no warm-up, half');
  near(cosineLR(1, 0, 10, { warmupSteps: 2 }), 0.04, 'default start factor 1/25');
  near(cosineLR(1, 3, 3, { warmupSteps: 3 }), 0, 'warm-up as long as training');
  assert.throws(() => polyLR(0.01, -1, 10), /polyLR: step must be an integer >= 0/);
  assert.throws(() => polyLR(0.01, 1, 0), /totalSteps must be an integer >= 1/);
  assert.throws(() => cosineLR(0.1, 1, 10, { warmupSteps: 11 }), /warmupSteps must be an integer in \[0, totalSteps = 10\]/);
  assert.throws(() => cosineLR(0.1, 1, 10, { minLR: 0.2 }), /minLR must be in/);
});

// ---------------------------------------------------------------- end to end

/** c[m, n] = sum_k a[m*sam + k*sak] * b[k*sbk + n*sbn]: a test-only matmul with strides for transposes. */
const MATMUL_WGSL = `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.m * p.n) { return; }
  let row = i / p.n;
  let col = i % p.n;
  var acc = 0.0;
  for (var k = 0u; k < p.k; k = k + 1u) { acc = acc + a[row * p.sam + k * p.sak] * b[k * p.sbk + col * p.sbn]; }
  c[i] = acc;
}`;

function stridedMatmul(a: Tensor, b: Tensor, shape: number[], [m, n, k]: number[], strides: number[]): Tensor {
  const out = a.engine.empty(shape, 'f32');
  const [sam, sak, sbk, sbn] = strides as [number, number, number, number];
  a.engine.run({
    name: 'test_matmul',
    shader: () => ({ uniforms: { m: 'u32', n: 'u32', k: 'u32', sam: 'u32', sak: 'u32', sbk: 'u32', sbn: 'u32' }, bindings: { a: read('f32'), b: read('f32'), c: readWrite('f32') }, code: MATMUL_WGSL }),
    uniforms: { m: m!, n: n!, k: k!, sam, sak, sbk, sbn },
    bindings: { a, b, c: out },
    dispatch: [Math.ceil((m! * n!) / 64)],
  });
  return out;
}

/** logits[..., K] = x[..., F] w^T for w [K, F] (linear layer, bias as a constant-1 feature); grad to w only. */
function linear(x: Tensor, w: Tensor): Tensor {
  const [K, F] = w.shape as [number, number];
  const P = x.size / F;
  const out = stridedMatmul(x, w, [...x.shape.slice(0, -1), K], [P, K, F], [F, 1, 1, F]);
  // dW[c, f] = sum_p g[p, c] x[p, f]
  return recordOp(out, 'test_linear', [w], (g) => [stridedMatmul(g, x, [K, F], [K, F, P], [1, K, F, 1])]);
}

function refLinear(x: Float64Array, w: ArrayLike<number>, K: number, F: number): Float64Array {
  const P = x.length / F;
  const out = new Float64Array(P * K);
  for (let p = 0; p < P; p++) for (let c = 0; c < K; c++) for (let f = 0; f < F; f++) out[p * K + c] += x[p * F + f]! * w[c * F + f]!;
  return out;
}

/** Gaussian blobs: pixel features near one of K centres, the last feature a constant 1 (bias). */
function blobs(pixels: number, K: number, F: number, seed: number): { x: Float64Array; labels: number[] } {
  const r = rng(seed);
  const centres = randn(K * (F - 1), seed + 1, -2, 2);
  const x = new Float64Array(pixels * F);
  const labels: number[] = [];
  for (let p = 0; p < pixels; p++) {
    const y = Math.floor(r() * K);
    labels.push(r() < 0.1 ? 255 : y);
    for (let f = 0; f < F - 1; f++) x[p * F + f] = centres[y * (F - 1) + f]! + 0.6 * (r() - 0.5);
    x[p * F + F - 1] = 1;
  }
  return { x, labels };
}

t('gradCheck through a linear layer and the loss (the end-to-end model below; tol 1e-4)', async () => {
  const e = await testEngine();
  const [K, F] = [5, 4];
  const { x, labels } = blobs(2 * 3 * 4, K, F, 70);
  await e.scope(async () => {
    const xt = e.tensor(Float32Array.from(x), [2, 3, 4, F]);
    const yt = e.tensor(Int32Array.from(labels), [2, 3, 4]);
    const x32 = f32round(x);
    await gradCheck(e, {
      gpu: ([w]) => softmaxCrossEntropy(linear(xt, w!), yt),
      ref: ([w]) => Float64Array.of(refCrossEntropy(refLinear(x32, w!, K, F), labels, K).loss),
      inputs: [{ name: 'w', shape: [K, F], data: randn(K * F, 71) }],
      tol: 1e-4,
    });
  });
});

t('end to end: SGD (momentum, weight decay, cosine warm-up) trains a linear classifier; no buffers created after step 1', async () => {
  const e = await testEngine();
  const [K, F, steps] = [5, 4, 25];
  const shape = [2, 6, 7];
  const { x, labels } = blobs(84, K, F, 80);
  await e.scope(async () => {
    const xt = e.tensor(Float32Array.from(x), [...shape, F]);
    const yt = e.tensor(Int32Array.from(labels), shape);
    const w = e.tensor(new Float32Array(K * F), [K, F]);
    w.requiresGrad = true;
    const opt = new SGD([w], { lr: 0.5, momentum: 0.9, weightDecay: 1e-4 });
    const logits0 = e.scope(() => e.noGrad(() => linear(xt, w)));
    expectClose(await logits0.read(), refLinear(f32round(x), new Float64Array(K * F), K, F), 1e-6, 'linear forward');
    const losses: number[] = [];
    let created = 0;
    let live = 0;
    for (let step = 0; step < steps; step++) {
      opt.lr = cosineLR(0.5, step, steps, { warmupSteps: 3, warmupStartFactor: 0.2 });
      const loss = e.scope(() => {
        const l = softmaxCrossEntropy(linear(xt, w), yt);
        backward(l);
        opt.step();
        opt.zeroGrad();
        return l;
      });
      losses.push(await checkLossFinite(loss, step));
      loss.dispose();
      if (step === 1) {
        created = e.stats().buffersCreated;
        live = e.stats().liveTensors;
      } else if (step > 1) {
        assert.is(e.stats().buffersCreated, created, `no new GPU buffers at step ${step}`);
        assert.is(e.stats().liveTensors, live, `no leaked tensors at step ${step}`);
      }
    }
    expectClose([losses[0]!], [Math.log(K)], 1e-6, 'zero weights give log K');
    assert.ok(losses[steps - 1]! < 0.25 * losses[0]!, `loss went down: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
    // Accuracy on the non-ignored pixels, from the trained weights.
    const wt = await w.read();
    const logits = refLinear(f32round(x), wt, K, F);
    let right = 0;
    let counted = 0;
    labels.forEach((y, p) => {
      if (y === 255) return;
      counted++;
      const row = Array.from(logits.subarray(p * K, p * K + K));
      if (row.indexOf(Math.max(...row)) === y) right++;
    });
    assert.ok(right / counted > 0.9, `accuracy ${right}/${counted}`);
    opt.dispose();
  });
});

t.run();
