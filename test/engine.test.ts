/** The engine foundation: adapter, tensors, pool, scopes, errors, embedding. */
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { createEngine, Engine, ShapeError, GPUExecutionError, EngineClosedError, ops, kernelSection, grid1d, read } from '../entry/node.js';
import { BIND_GROUP_CACHE_LIMIT } from '../engine/engine.js';
import { suite } from './harness.js';
import { testEngine, randn } from './gpu.js';

const t = suite('engine');

function runNode(code: string, env: Record<string, string> = {}): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    cwd: process.cwd(),
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

const distIndex = new URL('../node/index.js', import.meta.url).href;

t('software fallback prints one line naming SwiftShader', () => {
  const r = runNode(`import { createEngine } from '${distIndex}';
    const e = await createEngine({ forceSoftware: true }); const e2 = await createEngine({ forceSoftware: true });
    console.log(JSON.stringify(e.adapter)); e.destroy(); e2.destroy();`, { CANET_SOFTWARE_GPU: 'swiftshader' });
  assert.is(r.status, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l.includes('canet-gpu:'));
  assert.is(lines.length, 1, `expected one notice, got: ${r.stderr}`);
  assert.match(lines[0]!, /no hardware GPU adapter found; using the SwiftShader software GPU/);
  const adapter = JSON.parse(r.stdout.trim());
  assert.ok(adapter.isSoftware);
  assert.match(adapter.description, /SwiftShader/i);
});

t('no adapter and no SwiftShader: the error says what to install', () => {
  const r = runNode(`import { createEngine } from '${distIndex}';
    try { await createEngine({ forceSoftware: true }); console.log('created'); } catch (e) { console.log(e.message); }`,
    { CANET_SWIFTSHADER_ICD: '/nonexistent/icd.json', CANET_SOFTWARE_GPU: 'swiftshader' });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /apt-get install -y chromium libvulkan1/);
});

t('tensor round trip of odd sizes and every dtype', async () => {
  const e = await testEngine();
  for (const n of [1, 3, 1000003]) {
    const f = Float32Array.from(randn(n, n));
    const i = Int32Array.from({ length: n }, (_, k) => (k * 7919) % 1000 - 500);
    const u = Uint32Array.from({ length: n }, (_, k) => (k * 2654435761) >>> 0);
    for (const data of [f, i, u]) {
      const x = e.tensor(data, [n]);
      const back = await x.read();
      assert.is(back.constructor, data.constructor);
      assert.equal(Array.from(back.subarray(0, 1000)), Array.from(data.subarray(0, 1000)));
      assert.ok(back.every((v, k) => v === data[k]), `round trip of ${n} ${x.dtype} elements`);
      x.dispose();
    }
  }
});

t('scope disposes all but the result, and the pool serves every later iteration', async () => {
  const e = await testEngine();
  const x = e.tensor(Float32Array.from(randn(1001, 1)), [7, 11, 13]);
  const before = e.stats();
  let created = 0;
  for (let k = 0; k < 100; k++) {
    const y = e.scope(() => {
      const a = ops.add(x, x);
      const b = ops.mul(a, x);
      return ops.scale(b, 0.5);
    });
    if (k === 0) created = e.stats().buffersCreated;
    y.dispose();
  }
  await e.flush();
  const after = e.stats();
  assert.is(after.buffersCreated, created, 'no new buffers after the first iteration');
  assert.is(after.liveTensors, before.liveTensors, 'no tensors leaked');
  assert.is(after.liveBytes, before.liveBytes);
  assert.ok(after.poolHits - before.poolHits >= 99 * 3, `pool hits ${after.poolHits - before.poolHits}`);
  x.dispose();
});

t('async scope keeps returned tensors and disposes the rest', async () => {
  const e = await testEngine();
  const live0 = e.stats().liveTensors;
  const [kept, value] = await e.scope(async () => {
    const a = ops.full(e, [5], 2);
    await e.flush();
    const b = ops.add(a, a);
    return [b, await b.read()] as const;
  });
  assert.is(e.stats().liveTensors, live0 + 1);
  assert.equal(Array.from(value), [4, 4, 4, 4, 4]);
  assert.equal(Array.from(await kept.read()), [4, 4, 4, 4, 4]);
  kept.dispose();
  assert.is(e.stats().liveTensors, live0);
});

t('overlapping async scopes each dispose only their own tensors', async () => {
  const e = await testEngine();
  const live0 = e.stats().liveTensors;
  const job = (v: number) =>
    e.scope(async () => {
      const a = ops.full(e, [3], v);
      await new Promise((r) => setTimeout(r, 5 * v));
      const b = ops.scale(a, 2);
      return (await b.read())[0];
    });
  const results = await Promise.all([job(1), job(2), job(3)]);
  assert.equal(results, [2, 4, 6]);
  assert.is(e.stats().liveTensors, live0);
});

t('shape mismatch names the op and both shapes, and records nothing', async () => {
  const e = await testEngine();
  const a = e.tensor(new Float32Array(6), [2, 3]);
  const b = e.tensor(new Float32Array(6), [3, 2]);
  const dispatches = e.stats().dispatches;
  try {
    ops.add(a, b);
    assert.unreachable('add of [2,3] and [3,2] must throw');
  } catch (err) {
    assert.instance(err, ShapeError);
    assert.match((err as Error).message, /add: .*\[2, 3\].*\[3, 2\]/);
  }
  assert.is(e.stats().dispatches, dispatches);
  assert.throws(() => e.tensor([1, 2, 3], [2, 2]), /3 elements but shape \[2, 2\] needs 4/);
  assert.throws(() => e.empty([2, -1]), /non-negative integers/);
  a.dispose();
  b.dispose();
});

t('a WGSL error is reported naming the kernel, and the engine keeps working', async () => {
  const e = await testEngine();
  const x = e.tensor([1, 2, 3, 4], [4]);
  e.run({ name: 'deliberately_broken', shader: () => ({ bindings: { x: read('f32') }, code: 'fn main( {' }), bindings: { x }, dispatch: [1] });
  try {
    await e.flush();
    assert.unreachable('flush must reject');
  } catch (err) {
    assert.instance(err, GPUExecutionError);
    assert.match((err as Error).message, /deliberately_broken/);
  }
  const y = ops.add(x, x);
  assert.equal(Array.from(await y.read()), [2, 4, 6, 8]);
  x.dispose();
  y.dispose();
});

t('kernels compile once and serve every size (shapes are uniforms)', async () => {
  const e = await testEngine();
  const p0 = e.stats().pipelines;
  for (const n of [5, 17, 1023]) {
    e.scope(() => ops.add(ops.full(e, [n], 1), ops.full(e, [n], 2)));
  }
  await e.flush();
  assert.ok(e.stats().pipelines - p0 <= 2, `pipelines grew by ${e.stats().pipelines - p0}`);
});

t('compileMs counts pipeline creation: it grows when a new kernel compiles, not when one is reused', async () => {
  const e = await testEngine();
  const c0 = e.stats().compileMs;
  // scale's factor is a uniform: an earlier test may have compiled this pipeline already, so the
  // first call may add nothing; what must hold is that reuse adds nothing and a first compile counts.
  const run = (n: number) => e.scope(() => ops.scale(ops.full(e, [n], 1), 3.25));
  run(7);
  await e.flush();
  const c1 = e.stats().compileMs;
  assert.ok(c1 >= c0, 'never decreases');
  const p1 = e.stats().pipelines;
  for (const n of [9, 40]) run(n);
  await e.flush();
  assert.is(e.stats().pipelines, p1, 'no new pipeline');
  assert.is(e.stats().compileMs, c1, 'reused pipelines add no compile time');
  // A fresh engine on the same device compiles again (pipelines are per engine) and counts it.
  const f = await createEngine({ device: e.device, quiet: true });
  try {
    f.scope(() => ops.scale(ops.full(f, [5], 1), 2));
    await f.flush();
    assert.ok(f.stats().compileMs > 0, `a first kernel took ${f.stats().compileMs} ms to compile`);
  } finally {
    f.destroy();
  }
});

t('dispatches beyond 65535 workgroups are folded into a 2-D grid', async () => {
  const e = await testEngine();
  const [x, y] = grid1d(70000 * 64, 64, 65535);
  assert.ok(x <= 65535 && x * y >= 70000, `${x} x ${y}`);
  const n = 64 * 4 * 70000; // 17.9 M elements: 70000 workgroups of 64 vec4 invocations
  const t1 = ops.full(e, [n], 1.5);
  const s = ops.sum(t1);
  assert.is((await s.read())[0], 1.5 * n);
  t1.dispose();
  s.dispose();
});

t('embedding: an engine on the caller\'s device leaves the device alive after destroy()', async () => {
  const owner = await testEngine();
  const device = owner.device; // a device this test's engine did not create
  const guest = await createEngine({ device });
  const x = guest.tensor([1, 2, 3], [3]);
  assert.equal(Array.from(await ops.scale(x, 2).read()), [2, 4, 6]);
  guest.destroy();
  assert.throws(() => guest.tensor([1], [1]), (err: unknown) => err instanceof EngineClosedError);
  assert.is(owner.closed, null);
  const y = owner.tensor([5, 6], [2]);
  assert.equal(Array.from(await y.read()), [5, 6], 'device still usable');
  y.dispose();
});

t('destroy() releases every buffer and closes the engine', async () => {
  const e = await createEngine({ quiet: true });
  const a = e.tensor([1, 2], [2]);
  ops.add(a, a);
  await e.flush();
  e.destroy();
  assert.match(e.closed ?? '', /destroyed/);
  assert.is(e.stats().liveTensors, 0);
  await assert.not.throws(() => a.dispose());
});

t('profile() times each kernel with timestamp queries', async () => {
  const e = await testEngine();
  if (!e.features.has('timestamp-query')) return;
  const x = ops.full(e, [4096], 1);
  const { kernels } = await e.profile(() => e.scope(() => void ops.add(ops.scale(x, 2), x)));
  assert.equal(kernels.map((k) => k.name), ['scale', 'binary_add']);
  assert.ok(kernels.every((k) => k.ms >= 0 && Number.isFinite(k.ms)));
  x.dispose();
});

t('kernelSection splits family files and reports unknown names', () => {
  const fam = '// shared\nfn h() {}\n//# kernel a\nA body\n//# kernel b\nB body\n';
  assert.match(kernelSection(fam, 'a'), /fn h\(\) \{\}\s+A body/);
  assert.not.match(kernelSection(fam, 'a'), /B body/);
  assert.throws(() => kernelSection(fam, 'c'), /no kernel 'c'.*a, b/);
});

t('arenas: parts and the whole run share a buffer; each binds its own range (bind groups keyed by offset and size)', async () => {
  const e = await testEngine();
  await e.scope(async () => {
    const { whole, parts } = e.arena([[5], [70], [3]]);
    assert.is(parts[0]!.offset, 0);
    assert.ok(parts[1]!.offset % 256 === 0 && parts[1]!.offset > 0 && parts[2]!.offset > parts[1]!.offset, 'aligned slots');
    assert.equal(Array.from(await whole.read()).filter((v) => v !== 0), [], 'zero-filled');
    // The same kernel on part 0 and then on the whole (both at offset 0 of one buffer): the second
    // must not reuse the first's bind group, whose range is only part 0.
    ops.fill(parts[0]!, 1);
    ops.fill(whole, 2);
    ops.fill(parts[1]!, 3);
    const w = await whole.read();
    const at = (p: number) => parts[p]!.offset / 4;
    // (A vec4 kernel also writes the slack after a part's data up to a multiple of 4 floats: 72.)
    assert.ok(w.every((v, i) => v === (i >= at(1) && i < at(1) + 72 ? 3 : 2)), 'fill of the whole reached every slot and gap');
    assert.equal(Array.from(await parts[2]!.read()), [2, 2, 2]);
  });
});

t('bind-group cache past its limit evicts the least recently used: a steady loop creates none after the overflow', async () => {
  const base = await testEngine();
  // A fresh engine on the shared device, so its cache holds exactly the bind groups it created.
  const e = new Engine({ device: base.device, ownsDevice: false, adapter: base.adapter });
  try {
    const a = e.tensor(Float32Array.from(randn(37, 1)), [37]).keep();
    const b = e.tensor(Float32Array.from(randn(37, 2)), [37]).keep();
    const step = async (): Promise<void> => e.scope(async () => void (await ops.mul(ops.add(a, b), b).read()));
    await step();
    await step();
    // Fillers: distinct (x_i, x_j) pairs, one new bind group each, until the cache is full. Their
    // buffers are of another pool bucket than the step's, so the step keeps getting its own.
    const xs = Array.from({ length: 64 }, (_, i) => e.tensor(Float32Array.from(randn(2000, 10 + i)), [2000]).keep());
    for (let i = 0; i < 64; i++) for (let j = 0; j < 64 && e.stats().bindGroupsCreated < BIND_GROUP_CACHE_LIMIT; j++) e.scope(() => void ops.add(xs[i]!, xs[j]!));
    await e.flush();
    assert.is(e.stats().bindGroupsCreated, BIND_GROUP_CACHE_LIMIT, 'cache filled to its limit');
    // The loop's step (all hits), then one more new bind group: the overflow.
    await step();
    e.scope(() => void ops.sub(xs[0]!, xs[1]!));
    const before = e.stats().bindGroupsCreated;
    await step();
    assert.is(e.stats().bindGroupsCreated, before, 'the step after the overflow reuses its bind groups');
    for (const t of [a, b, ...xs]) t.dispose();
  } finally {
    e.destroy();
  }
});

t('forgotten disposes: one warning naming the ops of the oldest leaked tensors; none for scoped, disposed or kept results; off switch', async () => {
  const messages: string[] = [];
  const e = await createEngine({ quiet: true, leakWarning: (m) => messages.push(m) });
  const x = e.tensor(new Float32Array(64).fill(1), [64]);
  // Scoped, disposed and kept results, and growth below the threshold: no warning.
  for (let i = 0; i < 40; i++) await e.scope(async () => void (await ops.relu(ops.scale(x, 2)).read()));
  for (let i = 0; i < 40; i++) {
    const y = ops.relu(x);
    await y.read();
    y.dispose();
  }
  const kept = [];
  for (let i = 0; i < 40; i++) {
    const y = e.scope(() => ops.relu(x)).keep();
    await y.read();
    kept.push(y);
  }
  assert.equal(messages, []);
  // The mistake: every step leaves its results (4 tensors) alive outside any scope.
  const leaked = [];
  for (let i = 0; i < 40; i++) {
    const a = ops.scale(x, 2);
    const b = ops.add(a, x);
    const c = ops.relu(b);
    const d = ops.sigmoid(c);
    leaked.push(a, b, c, d);
    await d.read();
  }
  assert.is(messages.length, 1, `messages: ${messages.join(' | ')}`);
  assert.match(messages[0]!, /^canet-gpu: live tensors grew from \d+ to \d+ over the last \d+ reads\/syncs/);
  assert.match(messages[0]!, /the oldest 20 were made by /);
  assert.match(messages[0]!, /wrap each step in engine\.scope/);
  assert.match(messages[0]!, /createEngine\(\{ leakWarning: false \}\) or CANET_LEAK_WARNING=0/);
  // The ops are named by their kernels; kept tensors (the 40 above) are not suspects.
  assert.match(messages[0]!, /engine\.tensor \(an upload\) \(1\)/, messages[0]); // x itself
  // Once only.
  for (let i = 0; i < 40; i++) await ops.relu(x).read();
  assert.is(messages.length, 1);
  for (const t0 of [...leaked, ...kept, x]) t0.dispose();
  e.destroy();

  // Off: the engine's methods are its class's own (nothing wrapped, nothing counted).
  const off = await createEngine({ quiet: true, leakWarning: false });
  assert.is(off.empty, Engine.prototype.empty);
  assert.is(off.run, Engine.prototype.run);
  off.destroy();
  const byEnv = runNode(
    `import { createEngine, ops } from '${distIndex}';
     const e = await createEngine({ leakWarning: undefined });
     const x = e.tensor(new Float32Array(4), [4]);
     for (let i = 0; i < 60; i++) await ops.sigmoid(ops.relu(ops.add(x, x))).read();
     console.log('done', e.run === Object.getPrototypeOf(e).run);`,
    { CANET_LEAK_WARNING: '0' },
  );
  assert.match(byEnv.stdout, /done true/, byEnv.stderr);
  assert.not.match(byEnv.stderr, /live tensors grew/);
});

t.run();
