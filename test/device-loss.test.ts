/**
 * Device loss: the device destroyed while work is in flight (the engine's own device, and an
 * application's device destroyed by the application). Pending reads, flushes and syncs must
 * reject with an EngineClosedError naming the reason (none may hang), every later call must throw
 * one, `engine.lost` must resolve, and a new engine must work afterwards.
 */
import * as assert from 'uvu/assert';
import { createEngine, EngineClosedError, ops, canet, type Engine, type Tensor } from '../entry/node.js';
import { suite } from './harness.js';
import { randn } from './gpu.js';

const t = suite('device-loss');

class Settled {
  constructor(readonly result: ReturnType<typeof settle>) {}
}
const track = (p: Promise<unknown>, what: string) => new Settled(settle(p, what));

/** Settles `p` or reports a hang after `ms` (a hang is the failure we are testing for). */
function settle<T>(p: Promise<T>, what: string, ms = 20_000): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return Promise.race([
    p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error })),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} hung for ${ms} ms after the device was lost`)), ms)),
  ]);
}

/** Attach handlers at once (a rejection nobody handles yet would end the process), check later. */
async function expectClosed(p: Promise<unknown> | Settled, what: string, reason: RegExp): Promise<void> {
  const r = await (p instanceof Settled ? p.result : settle(p, what));
  assert.ok(!r.ok, `${what} resolved after the device was lost`);
  const err = (r as { error: unknown }).error;
  assert.instance(err, EngineClosedError, `${what}: ${String(err)}`);
  assert.match((err as Error).message, reason, what);
}

function expectThrowsClosed(fn: () => unknown, what: string, reason: RegExp): void {
  try {
    fn();
  } catch (err) {
    assert.instance(err, EngineClosedError, `${what}: ${String(err)}`);
    assert.match((err as Error).message, reason, what);
    return;
  }
  assert.unreachable(`${what} did not throw after the device was lost`);
}

/** Every public entry of a closed engine throws (sync) or rejects (async) naming `reason`. */
async function expectAllClosed(e: Engine, kept: Tensor, reason: RegExp): Promise<void> {
  expectThrowsClosed(() => e.tensor([1, 2], [2]), 'tensor()', reason);
  expectThrowsClosed(() => e.empty([4]), 'empty()', reason);
  expectThrowsClosed(() => e.writeTensor(kept, new Float32Array(kept.size)), 'writeTensor()', reason);
  expectThrowsClosed(() => e.run({ name: 'noop', shader: () => ({ bindings: {}, code: '@compute @workgroup_size(1) fn main() {}' }), bindings: {}, dispatch: [1] }), 'run()', reason);
  expectThrowsClosed(() => e.copyBuffer(kept.buffer, 0, kept.buffer, 0, 0), 'copyBuffer()', reason);
  expectThrowsClosed(() => e.submit(), 'submit()', reason);
  expectThrowsClosed(() => ops.add(kept, kept), 'ops.add', reason);
  await expectClosed(kept.read(), 'read()', reason);
  await expectClosed(e.flush(), 'flush()', reason);
  await expectClosed(e.sync(), 'sync()', reason);
}

/** A few hundred milliseconds of GPU work on SwiftShader: a CANet forward at 128x128. */
function heavyWork(e: Engine): { model: ReturnType<typeof canet>; x: Tensor } {
  const model = canet(e, { classes: 5, width: 0.25, seed: 3 }).eval();
  const x = e.tensor(Float32Array.from(randn(128 * 128 * 3, 7)), [1, 128, 128, 3]);
  return { model, x };
}

t('own device destroyed mid-run: in-flight read, flush and sync reject naming the loss; every call then throws; createEngine() works again', async () => {
  const e = await createEngine({ quiet: true });
  let lostAt = 0;
  const lost = e.lost.then((info) => ((lostAt = performance.now()), info));
  const { model, x } = heavyWork(e);
  const small = e.tensor([1, 2, 3], [3]);
  const y = e.noGrad(() => model.forward(x));
  const pendingRead = track(y.read(), 'read()');
  // One microtask: read() has recorded and submitted its work, which cannot have come back yet (a
  // fixed wait here raced on fast adapters: lavapipe finished the forward within 20 ms once).
  await Promise.resolve();
  const z = ops.scale(small, 2);
  const pendingFlush = track(e.flush(), 'flush()');
  const pendingSync = track(e.sync(), 'sync()');
  const destroyedAt = performance.now();
  e.device.destroy();
  const reason = /GPU device lost \(destroyed\)/;
  await expectClosed(pendingRead, 'read() in flight', reason);
  await expectClosed(pendingFlush, 'flush() in flight', reason);
  await expectClosed(pendingSync, 'sync() in flight', reason);
  const info = await settle(lost, 'engine.lost');
  assert.ok(info.ok && info.value.reason === 'destroyed', `engine.lost: ${JSON.stringify(info)}`);
  console.log(`    device-loss: in-flight work rejected ${(performance.now() - destroyedAt).toFixed(0)} ms after destroy(), engine.lost resolved after ${(lostAt - destroyedAt).toFixed(0)} ms`);
  assert.match(e.closed ?? '', reason);
  await expectAllClosed(e, small, reason);
  // Releasing what the application still holds is harmless, and destroy() is idempotent.
  assert.not.throws(() => {
    z.dispose();
    y.dispose();
    small.dispose();
    x.dispose();
    model.dispose();
    e.destroy();
    e.destroy();
  });
  assert.is(e.stats().liveTensors, 0);

  const again = await createEngine({ quiet: true });
  const a = again.tensor([1, 2, 3], [3]);
  assert.equal(Array.from(await ops.scale(a, 3).read()), [3, 6, 9]);
  assert.is(again.closed, null);
  again.destroy();
}, { timeoutMs: 120_000 });

t("an application's device destroyed by the application: the embedded engine reports the loss and rejects work, nothing crashes", async () => {
  const app = await createEngine({ quiet: true }); // stands in for the application: it owns the device
  const guest = await createEngine({ device: app.device });
  const { model, x } = heavyWork(guest);
  const y = guest.noGrad(() => model.forward(x));
  const pendingRead = track(y.read(), 'read()');
  await new Promise((r) => setTimeout(r, 20));
  app.device.destroy(); // the application's own call, behind the engine's back
  const reason = /GPU device lost \(destroyed\)/;
  await expectClosed(pendingRead, 'guest read() in flight', reason);
  const info = await settle(guest.lost, 'guest engine.lost');
  assert.ok(info.ok && info.value.reason === 'destroyed');
  const kept = x;
  await expectAllClosed(guest, kept, reason);
  assert.match(guest.closed ?? '', reason);
  assert.not.throws(() => {
    model.dispose();
    x.dispose();
    y.dispose();
    guest.destroy();
    app.destroy();
  });
  // The application recovers the way the error says: a new device and a new engine.
  const fresh = await createEngine({ quiet: true });
  const guest2 = await createEngine({ device: fresh.device });
  assert.equal(Array.from(await ops.add(guest2.tensor([1, 2], [2]), guest2.tensor([3, 4], [2])).read()), [4, 6]);
  guest2.destroy();
  fresh.destroy();
}, { timeoutMs: 120_000 });

t('engine.destroy() with a read in flight rejects it (destroyed), and engine.lost does not resolve', async () => {
  const e = await createEngine({ quiet: true });
  let lostFired = false;
  void e.lost.then(() => (lostFired = true));
  const { model, x } = heavyWork(e);
  const y = e.noGrad(() => model.forward(x));
  const pending = track(y.read(), 'read()');
  await Promise.resolve(); // submitted, not yet back (see above)
  e.destroy();
  await expectClosed(pending, 'read() in flight at destroy()', /engine is closed: destroyed/);
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(!lostFired, 'engine.lost resolved for engine.destroy(), which is not a loss');
  assert.is(e.closed, 'destroyed');
  model.dispose();
}, { timeoutMs: 120_000 });

t.run();
