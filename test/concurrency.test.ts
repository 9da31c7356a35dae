/**
 * Concurrency: two engines in one process (each its own device) computing the same and different
 * things with their work interleaved, checked against float64 references; and overlapping async
 * segment() calls with reads on one model, each equal to the sequential result.
 */
import * as assert from 'uvu/assert';
import { createEngine, ops, canet, type Engine } from '../entry/node.js';
import { suite } from './harness.js';
import { randn, rng, testEngine, expectClose } from './gpu.js';
import { refConv2d } from './ref/conv.js';
import { refSoftmax } from './ref/softmax.js';

const t = suite('concurrency');

const f32 = (a: Float64Array) => Float32Array.from(a);
const round = (a: Float64Array) => a.map(Math.fround);

t('two engines interleaved: the same conv and different ops give each its reference, and neither sees the other', async () => {
  const a = await testEngine();
  const b = await createEngine({ quiet: true });
  assert.is.not(a.device, b.device);
  const xs: readonly number[] = [1, 7, 5, 6];
  const ws: readonly number[] = [4, 3, 3, 6];
  const x = round(randn(xs.reduce((p, q) => p * q), 1));
  const w = round(randn(ws.reduce((p, q) => p * q), 2));
  const conv = refConv2d(x, xs, w, ws, null, { padding: 1 }).data;
  const logits = round(randn(13 * 19, 3, -5, 5));
  const soft = refSoftmax(logits, 19);
  const liveA = a.stats().liveTensors;

  for (let round0 = 0; round0 < 3; round0++) {
    // Record on both engines in alternation, then read everything at once.
    const xa = a.tensor(f32(x), [...xs]);
    const xb = b.tensor(f32(x), [...xs]);
    const wa = a.tensor(f32(w), [...ws]);
    const wb = b.tensor(f32(w), [...ws]);
    const ya = ops.conv2d(xa, wa, null, { padding: 1 });
    const yb = ops.conv2d(xb, wb, null, { padding: 1 });
    const la = a.tensor(f32(logits), [13, 19]);
    const sb = ops.softmax(b.tensor(f32(logits), [13, 19]));
    const sa = ops.sum(ops.relu(la)); // different work on a while b runs softmax
    const [ra, rb, rsb, rsa] = await Promise.all([ya.read(), yb.read(), sb.read(), sa.read()]);
    expectClose(ra, conv, 1e-4, `round ${round0}: conv on engine A`);
    expectClose(rb, conv, 1e-4, `round ${round0}: conv on engine B`);
    expectClose(rsb, soft, 1e-5, `round ${round0}: softmax on engine B`);
    expectClose(rsa, [logits.reduce((s, v) => s + Math.max(v, 0), 0)], 1e-5, `round ${round0}: sum(relu) on engine A`);
    assert.ok(ra.every((v, i) => v === rb[i]), 'same adapter, same kernels: bit-identical');
    for (const t0 of [xa, wa, ya, la, sa]) t0.dispose();
  }
  // A's tensors are A's: B's stats and lifetime are independent.
  b.destroy();
  assert.is(a.closed, null);
  assert.ok(a.stats().liveTensors >= liveA && a.stats().liveTensors - liveA <= 3, `engine A live tensors ${a.stats().liveTensors} vs ${liveA}`);
  const z = a.tensor([1, 2, 3], [3]);
  assert.equal(Array.from(await ops.scale(z, 2).read()), [2, 4, 6], 'engine A works after B is destroyed');
}, { timeoutMs: 120_000 });

t('overlapping async segment() calls on one model: each result equals the sequential one, and no tensor leaks', async () => {
  const e = await testEngine();
  const model = canet(e, { classes: 5, width: 0.125, seed: 11 }).eval();
  const H = 32, W = 64;
  const images = [0, 1, 2, 3, 4].map((k) => Float32Array.from(randn(H * W * 3, 100 + k, -2, 2)));
  const segment = async (img: Float32Array) =>
    e.scope(async () => {
      const ids = model.segment(e.tensor(img, [1, H, W, 3]));
      return Array.from(await ids.read());
    });
  const sequential: number[][] = [];
  for (const img of images) sequential.push(await segment(img));
  assert.ok(new Set(sequential.map((s) => s.join())).size > 1, 'different images give different maps');
  const live0 = e.stats().liveTensors;

  // All five at once, each awaiting at a random moment in between: their recordings interleave.
  const r = rng(5);
  const jobs = images.map((img, k) =>
    e.scope(async () => {
      await new Promise((res) => setTimeout(res, Math.floor(r() * 20)));
      const x = e.tensor(img, [1, H, W, 3]);
      const logits = e.noGrad(() => model.forward(x));
      await new Promise((res) => setTimeout(res, Math.floor(r() * 20)));
      const ids = ops.argmax(logits);
      const [got, raw] = await Promise.all([ids.read(), logits.read()]);
      return { k, ids: Array.from(got), logits: raw as Float32Array };
    }),
  );
  const results = await Promise.all(jobs);
  for (const { k, ids, logits } of results) {
    assert.equal(ids, sequential[k], `job ${k}: ids differ from the sequential run`);
    assert.is(logits.length, H * W * 5);
  }
  // segment() itself, five at once.
  const again = await Promise.all(images.map((img) => segment(img)));
  again.forEach((ids, k) => assert.equal(ids, sequential[k], `segment ${k} (concurrent)`));
  assert.is(e.stats().liveTensors, live0, 'overlapping scopes left tensors behind');
  model.dispose();
}, { timeoutMs: 180_000 });

t('two models on two engines segment concurrently with independent results', async () => {
  const a = await testEngine();
  const b = await createEngine({ quiet: true });
  const H = 32, W = 32;
  const img = Float32Array.from(randn(H * W * 3, 42, -2, 2));
  const run = (e: Engine, seed: number) => {
    const m = canet(e, { classes: 4, width: 0.125, seed }).eval();
    return e.scope(async () => {
      const out = Array.from(await m.segment(e.tensor(img, [1, H, W, 3])).read());
      m.dispose();
      return out;
    });
  };
  // Same seed on both engines: identical maps; another seed: a different map.
  const [sameA, sameB, other] = await Promise.all([run(a, 1), run(b, 1), run(b, 2)]);
  assert.equal(sameA, sameB);
  assert.ok(other.some((v, i) => v !== sameA[i]), 'a differently initialised model gives a different map');
  b.destroy();
}, { timeoutMs: 180_000 });

t.run();
