/**
 * GPU limits. An engine reads its limits from the device, so a wrapper device that reports tiny
 * limits (the real device behind it is unchanged) makes every kernel run against them:
 *  - maxComputeWorkgroupsPerDimension = 8: every kernel must fold its grid (grid1d) or be
 *    refused by engine.run naming the limit; a CANet forward and training step must give the
 *    same numbers as on the real limits;
 *  - maxStorageBufferBindingSize = 64 KiB: a tensor over it is refused naming the limit, before
 *    anything is allocated or dispatched.
 */
import * as assert from 'uvu/assert';
import { createEngine, ShapeError, ops, canet, SGD, trainStep, grid1d, read, type Engine } from '../entry/node.js';
import { suite } from './harness.js';
import { randn, testEngine, withLimits } from './gpu.js';

const t = suite('limits');

t('engine.run refuses a dispatch beyond maxComputeWorkgroupsPerDimension, naming the limit, and records nothing', async () => {
  const e = await testEngine();
  const max = e.limits.maxComputeWorkgroupsPerDimension;
  const x = e.tensor([1, 2, 3, 4], [4]);
  const before = e.stats().dispatches;
  for (const dispatch of [[max + 1], [1, max + 1], [1, 1, max + 1]] as [number, number?, number?][]) {
    assert.throws(
      () => e.run({ name: 'too_wide', shader: () => ({ bindings: { x: read('f32') }, code: '@compute @workgroup_size(1) fn main() { _ = &x; }' }), bindings: { x }, dispatch }),
      (err: unknown) => err instanceof ShapeError && new RegExp(`kernel too_wide: dispatch \\[${[...dispatch, 1, 1].slice(0, 3).join(', ')}\\] exceeds maxComputeWorkgroupsPerDimension \\(${max}\\)`).test((err as Error).message),
    );
  }
  assert.is(e.stats().dispatches, before);
  // grid1d folds any count the buffers allow: 2^32 invocations of 64 is 65536 x 1025 groups at most.
  for (const n of [1, max, max * 64, max * 64 + 1, 2 ** 32 - 1]) {
    const [gx, gy] = grid1d(n, 64, max);
    assert.ok(gx <= max && gy <= max && gx * gy * 64 >= n, `grid1d(${n}) = [${gx}, ${gy}]`);
  }
  x.dispose();
});

t('with maxComputeWorkgroupsPerDimension = 8 every kernel folds: a CANet forward and a training step match the real limits bit for bit', async () => {
  const host = await testEngine();
  // Both engines embed the same device, so they plan alike (tiles and reductions depend on the
  // adapter kind, which an embedded engine reads from device.adapterInfo): only the limit differs.
  const real = await createEngine({ device: host.device });
  const tiny = await createEngine({ device: withLimits(host.device, { maxComputeWorkgroupsPerDimension: 8 }) });
  assert.is(tiny.limits.maxComputeWorkgroupsPerDimension, 8);
  let folded = 0;
  const run0 = tiny.run.bind(tiny);
  tiny.run = (program) => {
    if ((program.dispatch[1] ?? 1) > 1) folded++;
    run0(program);
  };
  const run = async (e: Engine) => {
    const m = canet(e, { classes: 4, width: 0.125, seed: 9 });
    const x = e.tensor(Float32Array.from(randn(2 * 64 * 32 * 3, 4)), [2, 64, 32, 3]);
    const labels = e.tensor(Int32Array.from({ length: 2 * 64 * 32 }, (_, i) => (i >> 4) % 4), [2, 64, 32]);
    const opt = new SGD(m.parameters(), { lr: 0.01, momentum: 0.9 });
    const loss = trainStep(m, opt, x, labels);
    const lv = (await loss.read())[0]!;
    m.eval();
    const y = e.noGrad(() => m.forward(x));
    const out = { loss: lv, logits: (await y.read()) as Float32Array, dispatches: e.stats().dispatches };
    [loss, y, x, labels].forEach((t0) => t0.dispose());
    opt.dispose();
    m.dispose();
    return out;
  };
  const d0 = tiny.stats().dispatches;
  const a = await run(real);
  const b = await run(tiny);
  assert.ok(Number.isFinite(a.loss));
  assert.is(b.loss, a.loss, 'training loss');
  assert.ok(b.logits.every((v, i) => Object.is(v, a.logits[i])), 'logits after the update');
  assert.ok(folded > 20, `only ${folded} dispatches were folded`);
  console.log(`    limits: ${b.dispatches - d0} dispatches under a limit of 8 workgroups per dimension (${folded} folded into 2-D grids), results identical`);
  tiny.destroy();
  real.destroy();
}, { timeoutMs: 240_000 });

t('with maxStorageBufferBindingSize = 64 KiB a larger tensor is refused naming the limit, with nothing allocated or dispatched', async () => {
  const real = await testEngine();
  const small = await createEngine({ device: withLimits(real.device, { maxStorageBufferBindingSize: 65536 }) });
  const ok = ops.full(small, [128, 128], 1); // exactly 64 KiB: fits
  const before = small.stats();
  for (const fn of [() => small.empty([128, 129]), () => ops.add(ok, ops.full(small, [2, 1, 1], 1)), () => ops.resizeBilinear(ok.engine.tensor(new Float32Array(4), [1, 2, 2, 1]), 200, 200)]) {
    assert.throws(fn, (err: unknown) => err instanceof ShapeError && /needs \d+ bytes, over this adapter's maxStorageBufferBindingSize of 65536 bytes/.test((err as Error).message));
  }
  const after = small.stats();
  assert.is(after.dispatches - before.dispatches, 1, 'only the small full() inside the second case ran');
  assert.is(after.liveTensors - before.liveTensors, 2, 'the small inputs made inside the cases, no outputs');
  assert.is((await ops.sum(ok).read())[0], 128 * 128);
  small.destroy();
});

t.run();
