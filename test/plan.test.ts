/**
 * Captured plans (engine/plan.ts): a replay gives bit-identical results to the op-by-op call for
 * inference (both heads, two backbones) and for training steps (losses, weights, BatchNorm
 * statistics, optimizer state); a replay records no op code, creates no buffers or bind groups;
 * every way a plan can go stale throws a clear error instead of computing something wrong.
 * Also the declared program interface the engine generates (engine/program.ts).
 */
import * as assert from 'uvu/assert';
import type { Engine } from '../engine/engine.js';
import { Engine as EngineClass } from '../engine/engine.js';
import { PlanInvalidError } from '../engine/plan.js';
import { read, readWrite, type Program } from '../engine/program.js';
import { Adam, AdamW, SGD, type Optimizer } from '../engine/optim.js';
import { ShapeError, EngineClosedError } from '../engine/errors.js';
import type { Tensor } from '../engine/tensor.js';
import { canet, type CANetOptions } from '../net/canet.js';
import { trainStep } from '../net/train.js';
import { createEngine } from '../entry/node.js';
import { suite } from './harness.js';
import { Segmenter } from '../net/segmenter.js';
import { textureToTensor } from '../engine/ops/texture.js';
import { TextureUsage } from '../engine/gpu-constants.js';
import { PlannedCall } from '../engine/plan.js';
import { randn, testEngine } from './gpu.js';

const t = suite('plan');

const image = (e: Engine, n: number, h: number, w: number, seed: number): Tensor => e.tensor(Float32Array.from(randn(n * h * w * 3, seed)), [n, h, w, 3]).keep();
const same = (a: ArrayLike<number>, b: ArrayLike<number>, what: string): void => {
  assert.is(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) assert.unreachable(`${what}: element ${i} differs: ${a[i]} vs ${b[i]}`);
};

for (const opts of [
  { backbone: 'mobilenetv2', width: 0.25, head: 'compatible' },
  { backbone: 'mobilenetv2', width: 0.25, head: 'plain' },
  { backbone: 'resnet18', width: 0.25, head: 'compatible' },
] as CANetOptions[]) {
  t(`CANet-${opts.backbone} (${opts.head} head): a captured segment() and forward() replay bit-identical to the op-by-op calls, with no buffers, bind groups or op code`, async () => {
    const e = await testEngine();
    const model = canet(e, { ...opts, classes: 5, seed: 3 });
    model.eval();
    const x = image(e, 1, 64, 96, 1);
    try {
      const eager = async (input: Tensor) => e.noGrad(() => e.scope(async () => [await model.segment(input).read(), await model.forward(input).read()]));
      await eager(x); // warm-up: compiles and folds the BatchNorms
      const plan = e.noGrad(() => e.capture(() => ({ ids: model.segment(x), logits: model.forward(x) }), { label: 'inference' }));
      // The capture ran the call: its results are already there.
      const [ids0, logits0] = await eager(x);
      same(await plan.result.ids.read(), ids0!, 'captured ids');
      same(await plan.result.logits.read(), logits0!, 'captured logits');
      // A new input through the plan, against the op-by-op call on the same data.
      const data = Float32Array.from(randn(x.size, 2));
      const x2 = e.tensor(data, x.shape).keep();
      const [ids2, logits2] = await eager(x2);
      const s0 = e.stats();
      plan.run([[x, data]]);
      const s1 = e.stats();
      same(await plan.result.ids.read(), ids2!, 'replayed ids');
      same(await plan.result.logits.read(), logits2!, 'replayed logits');
      assert.is(s1.buffersCreated, s0.buffersCreated, 'buffers created by a replay');
      assert.is(s1.bindGroupsCreated, s0.bindGroupsCreated, 'bind groups created by a replay');
      assert.is(s1.submits - s0.submits, 1, 'one submit per replay (the input write goes on the queue)');
      assert.is(s1.dispatches - s0.dispatches, plan.dispatches, 'dispatches per replay');
      assert.ok(plan.dispatches > 50, `${plan.dispatches} dispatches captured`);
      // Replays again, many times: same answer each time.
      for (let i = 0; i < 3; i++) plan.run();
      same(await plan.result.ids.read(), ids2!, 'ids after more replays');
      const live = e.stats().liveTensors;
      plan.dispose();
      assert.is(e.stats().liveTensors, live - 2, 'dispose frees the two result tensors');
      x2.dispose();
    } finally {
      x.dispose();
      model.dispose();
    }
  }, { timeoutMs: 300_000 });
}

/** Every parameter, buffer and counter of a model and the optimizer's step counts, for comparison. */
async function snapshot(model: ReturnType<typeof canet>, opt: Optimizer): Promise<Map<string, ArrayLike<number>>> {
  const out = new Map<string, ArrayLike<number>>();
  // Parameters, BatchNorm running statistics and num_batches_tracked, as a checkpoint holds them.
  for (const [name, v] of await model.stateDict()) out.set(name, v.data);
  const state = await opt.stateDict();
  state.params.forEach((s, i) => {
    if (!s) return;
    out.set(`opt.${i}.step`, [s.step]);
    for (const [k, v] of Object.entries(s.buffers)) out.set(`opt.${i}.${k}`, v);
  });
  return out;
}

for (const [kind, makeOpt] of [
  ['SGD with momentum', (ps: Tensor[]) => new SGD(ps, { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 })],
  ['AdamW', (ps: Tensor[]) => new AdamW(ps, { lr: 2e-3, weightDecay: 0.01 })],
] as const) {
  t(`a captured training step (${kind}) replays bit-identical losses, weights, BatchNorm statistics and optimizer state over 3 steps, with a new lr and new data each step`, async () => {
    const e = await testEngine();
    const make = () => {
      const model = canet(e, { classes: 4, width: 0.125, head: 'plain', seed: 5 });
      return { model, opt: makeOpt(model.parameters()) };
    };
    const a = make();
    const b = make();
    const images = [1, 2, 3, 4].map((s) => e.tensor(Float32Array.from(randn(2 * 32 * 64 * 3, 10 + s)), [2, 32, 64, 3]).keep());
    const labels = e.tensor(Int32Array.from({ length: 2 * 32 * 64 }, (_, i) => (i * 7) % 4), [2, 32, 64]).keep();
    const lrs = [0.05, 0.03, 0.02, 0.01].map((v) => (kind === 'AdamW' ? v / 20 : v));
    try {
      // A: op by op, four steps.
      const lossesA: number[] = [];
      for (let s = 0; s < 4; s++) {
        a.opt.lr = lrs[s]!;
        const loss = trainStep(a.model, a.opt, images[s]!, labels);
        lossesA.push((await loss.read())[0]!);
        loss.dispose();
      }
      // B: the first step op by op (it creates the optimizer state), the second captured, then replays.
      const lossesB: number[] = [];
      b.opt.lr = lrs[0]!;
      let loss = trainStep(b.model, b.opt, images[0]!, labels);
      lossesB.push((await loss.read())[0]!);
      loss.dispose();
      const input = e.empty(images[0]!.shape, 'f32').keep();
      e.copyBuffer(images[1]!, 0, input, 0, input.byteLength);
      b.opt.lr = lrs[1]!;
      const plan = e.capture(() => trainStep(b.model, b.opt, input, labels), { label: 'train step' });
      lossesB.push((await plan.result.read())[0]!);
      for (let s = 2; s < 4; s++) {
        b.opt.lr = lrs[s]!;
        e.copyBuffer(images[s]!, 0, input, 0, input.byteLength);
        const before = e.stats();
        plan.run();
        const after = e.stats();
        assert.is(after.buffersCreated, before.buffersCreated, 'buffers created by a replayed step');
        assert.is(after.bindGroupsCreated, before.bindGroupsCreated, 'bind groups created by a replayed step');
        lossesB.push((await plan.result.read())[0]!);
      }
      same(lossesB, lossesA, 'losses');
      const [sa, sb] = [await snapshot(a.model, a.opt), await snapshot(b.model, b.opt)];
      assert.equal([...sb.keys()].sort(), [...sa.keys()].sort(), 'same state names');
      for (const [name, v] of sa) same(sb.get(name)!, v, name);
      plan.dispose();
      input.dispose();
    } finally {
      for (const m of [a, b]) {
        m.opt.dispose();
        m.model.dispose();
      }
      images.forEach((x) => x.dispose());
      labels.dispose();
    }
  }, { timeoutMs: 300_000 });
}

t('stale plans refuse to replay: a disposed input, new BatchNorm statistics, a disposed plan, a destroyed engine; feeds are checked', async () => {
  const e = await createEngine({ quiet: true });
  const model = canet(e, { backbone: 'mobilenetv2', width: 0.125, classes: 3, seed: 1 });
  model.eval();
  const x = image(e, 1, 32, 32, 4);
  e.noGrad(() => e.scope(() => void model.segment(x)));
  const plan = e.noGrad(() => e.capture(() => model.segment(x)));
  plan.run();
  // Feeds: the wrong size, a tensor the plan does not read.
  assert.throws(() => plan.run([[x, new Float32Array(7)]]), (err: Error) => err instanceof ShapeError && /input .* \[1, 32, 32, 3\] takes 3072 values, got 7/.test(err.message));
  const other = e.tensor(new Float32Array(4), [4]);
  assert.throws(() => plan.run([[other, new Float32Array(4)]]), (err: Error) => /is not a tensor this plan reads/.test(err.message));
  // Weights written after capture: the folded BatchNorm the plan binds is stale.
  const bn = [...model.modules()].find((m) => (m as { runningMean?: Tensor }).runningMean) as unknown as { runningMean: Tensor };
  e.writeTensor(bn.runningMean, new Float32Array(bn.runningMean.size).fill(0.5));
  assert.throws(() => plan.run(), (err: Error) => err instanceof PlanInvalidError && /changed since capture/.test(err.message) && /capture it again/.test(err.message));
  // A fresh capture works again; then disposing its input invalidates it.
  const plan2 = e.noGrad(() => e.capture(() => model.segment(x)));
  plan2.run();
  x.dispose();
  assert.throws(() => plan2.run(), (err: Error) => err instanceof PlanInvalidError && /was disposed/.test(err.message));
  plan2.dispose();
  assert.throws(() => plan2.run(), (err: Error) => err instanceof PlanInvalidError && /plan was disposed/.test(err.message));
  // Misuse of capture itself.
  assert.throws(() => e.capture(() => e.capture(() => 1)), /do not nest/);
  assert.throws(() => e.capture(async () => 1), /must be synchronous/);
  // The engine is still usable after all the refusals.
  const y = image(e, 1, 32, 32, 5);
  const ids = await e.noGrad(() => e.scope(() => model.segment(y)).read());
  assert.is(ids.length, 32 * 32);
  const plan3 = e.noGrad(() => e.capture(() => model.segment(y)));
  e.destroy();
  assert.throws(() => plan3.run(), (err: Error) => err instanceof EngineClosedError);
  plan.dispose();
  plan3.dispose();
});

t('capturing an optimizer\'s first step is refused (its state would be re-created at every replay); dispose gives the intermediates back', async () => {
  const e = await testEngine();
  const model = canet(e, { classes: 3, width: 0.125, head: 'plain', seed: 2 });
  const opt = new Adam(model.parameters(), { lr: 1e-3 });
  const x = image(e, 1, 32, 32, 6);
  const labels = e.tensor(new Int32Array(32 * 32), [1, 32, 32]).keep();
  try {
    assert.throws(() => e.capture(() => trainStep(model, opt, x, labels)), /run one step before capturing/);
    // The engine and the optimizer are still usable: a normal first step, then a capture.
    const first = trainStep(model, opt, x, labels);
    await first.read();
    first.dispose();
    const s0 = e.stats();
    const plan = e.capture(() => trainStep(model, opt, x, labels));
    plan.run();
    await plan.result.read();
    plan.dispose();
    const s1 = e.stats();
    assert.is(s1.liveTensors, s0.liveTensors, 'live tensors after dispose');
    // The intermediates are back in the pool: an op-by-op step reuses them and creates nothing.
    const b0 = e.stats().buffersCreated;
    const l = trainStep(model, opt, x, labels);
    await l.read();
    l.dispose();
    assert.is(e.stats().buffersCreated, b0, 'buffers created by a step after dispose');
  } finally {
    opt.dispose();
    model.dispose();
    x.dispose();
    labels.dispose();
  }
}, { timeoutMs: 300_000 });

t('declared interface: struct Params and bindings are generated in declaration order, values travel by name with their types, a function value is read at each replay, and mismatches are named', async () => {
  const e = await testEngine();
  const spec = {
    uniforms: { count: 'u32', offset: 'i32', scale: 'f32' },
    bindings: { xs: read('f32'), ys: readWrite('f32') },
    code: `@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < p.count) { ys[i] = xs[i] * p.scale + f32(p.offset); }
}`,
  } as const;
  const x = e.tensor(Float32Array.from([1, 2, 3, 4, 5]), [5]);
  const y = e.empty([5], 'f32');
  let scale = 2;
  const program = (uniforms: Record<string, number | (() => number)>): Program => ({
    name: 'test_affine', shader: () => spec, uniforms, bindings: { xs: x, ys: y }, dispatch: [1],
  });
  const wgsl = EngineClass.wgslOf(program({}));
  assert.match(wgsl, /struct Params \{\n  count: u32,\n  offset: i32,\n  scale: f32,\n\}/);
  assert.match(wgsl, /@group\(0\) @binding\(1\) var<storage, read> xs: array<f32>;\n@group\(0\) @binding\(2\) var<storage, read_write> ys: array<f32>;/);
  const plan = e.capture(() => e.run(program({ count: 4, offset: -3, scale: () => scale })));
  assert.equal([...(await y.read())].slice(0, 4), [-1, 1, 3, 5], 'captured call: x * 2 - 3');
  scale = 10;
  plan.run();
  assert.equal([...(await y.read())].slice(0, 4), [7, 17, 27, 37], 'the function value is read again at replay');
  plan.dispose();
  assert.throws(() => e.run({ ...program({ count: 4, offset: 0, scale: 1 }), name: 'test_affine_missing', uniforms: { count: 4, scale: 1 } }), /uniforms declared \[count, offset, scale\], given \[count, scale\]/);
  assert.throws(() => e.run(program({ count: -1, offset: 0, scale: 1 })), /uniform count = -1 is not a u32/);
  x.dispose();
  y.dispose();
});

t('Segmenter replays its network from a plan from the third frame of a size on: ids equal the op-by-op segment() of each frame, replays create nothing, new weights are picked up', async () => {
  const e = await testEngine();
  const model = canet(e, { backbone: 'mobilenetv2', width: 0.125, classes: 4, seed: 8 });
  model.eval();
  const [w, h] = [40, 24];
  const frames = [1, 2, 3, 4, 5].map((seed) => {
    const data = new Uint8Array(w * h * 4);
    let v = seed * 7919;
    for (let i = 0; i < data.length; i++) data[i] = (v = (Math.imul(v, 1103515245) + 12345) >>> 0) >>> 24;
    const tex = e.device.createTexture({ size: [w, h, 1], format: 'rgba8unorm', usage: TextureUsage.COPY_SRC | TextureUsage.COPY_DST, label: `frame ${seed}` });
    e.device.queue.writeTexture({ texture: tex }, data, { bytesPerRow: w * 4, rowsPerImage: h }, [w, h, 1]);
    return tex;
  });
  const direct = async (tex: GPUTexture) => e.noGrad(() => e.scope(() => model.segment(textureToTensor(e, tex, { outWidth: 64, outHeight: 32 })).read()));
  const seg = new Segmenter(model, { width: 64, height: 32 });
  const plain = new Segmenter(model, { width: 64, height: 32, capture: false });
  try {
    for (const [i, tex] of frames.entries()) {
      if (i === 4) {
        // New weights between frames: the plan notices its folded BatchNorms are stale and the
        // Segmenter records op by op again instead of replaying stale values.
        const bn = [...model.modules()].find((m) => (m as { runningVar?: Tensor }).runningVar) as unknown as { runningVar: Tensor };
        e.writeTensor(bn.runningVar, new Float32Array(bn.runningVar.size).fill(3));
      }
      // The Segmenter first: an op-by-op call would refold the BatchNorms in place for it.
      const before = e.stats();
      const frame = seg.segment(tex);
      const after = e.stats();
      const got = await frame.ids.read();
      const want = await direct(tex);
      same(got, want, `frame ${i + 1} ids`);
      same(await plain.segment(tex).ids.read(), want, `frame ${i + 1} ids without capture`);
      if (i === 3) {
        assert.is(after.buffersCreated, before.buffersCreated, 'a replayed frame creates no buffers');
        assert.is(after.bindGroupsCreated - before.bindGroupsCreated, 0, 'a replayed frame creates no bind groups');
      }
    }
  } finally {
    seg.destroy();
    plain.destroy();
    frames.forEach((f) => f.destroy());
    model.dispose();
  }
}, { timeoutMs: 300_000 });

t('PlannedCall: op by op, then captured, then replayed; a stale plan is dropped and captured again', async () => {
  const e = await testEngine();
  const x = e.tensor(Float32Array.from([1, 2, 3, 4]), [4]).keep();
  const w = e.tensor(Float32Array.from([2, 2, 2, 2]), [4]).keep();
  const { mul } = await import('../engine/ops/basic.js');
  const call = new PlannedCall(e, () => mul(x, w));
  const r1 = call.run();
  assert.is(call.replaying, false);
  assert.equal([...(await r1.read())], [2, 4, 6, 8]);
  const r2 = call.run();
  assert.ok(r1.disposed, 'the op-by-op result is freed by the next run');
  assert.equal([...(await r2.read())], [2, 4, 6, 8]);
  e.writeTensor(x, Float32Array.from([5, 6, 7, 8]));
  const r3 = call.run();
  assert.is(call.replaying, true);
  assert.is(r3, r2, 'a replay returns the plan\'s result tensor');
  assert.equal([...(await r3.read())], [10, 12, 14, 16]);
  w.dispose(); // the plan is now stale; the next run must not replay it (and fails op by op, clearly)
  assert.throws(() => call.run(), /disposed/);
  call.dispose();
  x.dispose();
});

t.run();
