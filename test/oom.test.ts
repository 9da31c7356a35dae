/**
 * Out of GPU memory, by fault injection: a real allocation failure on SwiftShader would first
 * exhaust the host's RAM (it is a CPU driver), so a wrapper device makes chosen createBuffer calls
 * fail the way WebGPU reports it: the buffer comes back invalid (here: destroyed) and the
 * enclosing 'out-of-memory' error scope pops an error. The engine must surface it as a
 * GPUExecutionError with the requested size and its current usage, keep the failed buffer out of
 * the pool, and run on correctly after engine.trim().
 */
import * as assert from 'uvu/assert';
import { createEngine, GPUExecutionError, ops, bucketSize, type Engine } from '../entry/node.js';
import { suite } from './harness.js';
import { randn, testEngine, expectClose } from './gpu.js';

const t = suite('oom');

interface Faults {
  /** Fails the createBuffer call made `n` calls from now (1 = the next one). */
  failIn(n: number): void;
  /** Sizes of the allocations made to fail. */
  readonly injected: number[];
  createBufferCalls: number;
}

/**
 * A GPUDevice that forwards everything to `real` but can fail createBuffer calls as out-of-memory.
 * Error scopes are tracked so the injected error pops from the scope that was open at the call,
 * as WebGPU's would.
 */
function faultyDevice(real: GPUDevice): { device: GPUDevice; faults: Faults } {
  const scopes: { filter: GPUErrorFilter; injected: string | null }[] = [];
  let failAt = 0;
  const faults: Faults = {
    failIn: (n) => void (failAt = faults.createBufferCalls + n),
    injected: [],
    createBufferCalls: 0,
  };
  const device = new Proxy(real, {
    get(target, prop) {
      if (prop === 'createBuffer')
        return (desc: GPUBufferDescriptor) => {
          faults.createBufferCalls++;
          const buffer = target.createBuffer(desc);
          if (faults.createBufferCalls === failAt) {
            const scope = [...scopes].reverse().find((s) => s.filter === 'out-of-memory');
            if (!scope) throw new Error('fault injection: createBuffer outside an out-of-memory error scope');
            scope.injected = `Out of memory (injected) allocating ${desc.size} bytes`;
            faults.injected.push(desc.size);
            buffer.destroy(); // a failed allocation leaves an unusable buffer
          }
          return buffer;
        };
      if (prop === 'pushErrorScope')
        return (filter: GPUErrorFilter) => {
          scopes.push({ filter, injected: null });
          target.pushErrorScope(filter);
        };
      if (prop === 'popErrorScope')
        return () => {
          const scope = scopes.pop();
          const popped = target.popErrorScope();
          return scope?.injected ? popped.then(() => ({ message: scope.injected })) : popped;
        };
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { device, faults };
}

async function faultyEngine(): Promise<{ e: Engine; faults: Faults }> {
  const host = await testEngine();
  const { device, faults } = faultyDevice(host.device);
  return { e: await createEngine({ device }), faults };
}

const N = 100_000; // 400,000-byte tensors: a bucket of its own, so every pool miss is visible

t('an allocation that fails is reported with its size and the engine usage; the failed buffer never comes back from the pool', async () => {
  const { e, faults } = await faultyEngine();
  const av = randn(N, 1);
  const bv = randn(N, 2);
  const a = e.tensor(Float32Array.from(av), [N]);
  const b = e.tensor(Float32Array.from(bv), [N]);
  const ref = Array.from(av, (v, i) => Math.fround(v) + Math.fround(bv[i]!));
  await e.flush();

  // 1. The output of add is the allocation that fails; the tensor is still live when it surfaces.
  const before = e.stats();
  faults.failIn(1);
  const c = ops.add(a, b);
  const err = await e.flush().then(() => null, (x: unknown) => x);
  assert.instance(err, GPUExecutionError);
  const g = err as GPUExecutionError;
  assert.is(g.kind, 'out-of-memory');
  const size = bucketSize(N * 4);
  assert.equal(faults.injected, [size]);
  assert.match(g.message, new RegExp(`out of GPU memory allocating a buffer of ${size} bytes`));
  // The usage at the failed call: the two inputs, nothing pooled yet.
  assert.match(g.message, new RegExp(`engine held ${before.liveBufferBytes} bytes in ${before.liveTensors} live tensors and ${before.freeBytes} bytes in ${before.freeBuffers} pooled buffers`));
  assert.match(g.message, /engine\.trim\(\) frees the pool/);
  console.log(`    oom: ${g.message.slice(0, 200)}`);
  c.dispose(); // its buffer is destroyed, not pooled
  assert.is(e.stats().freeBuffers, before.freeBuffers, 'the failed buffer went back into the pool');

  // 2. The run continues: same op again, a fresh allocation, the right answer.
  const created = e.stats().buffersCreated;
  const c2 = ops.add(a, b);
  expectClose(await c2.read(), ref, 1e-6, 'add after the failure');
  assert.is(e.stats().buffersCreated, created + 1, 'a new buffer replaced the failed one');
  c2.dispose();

  // 3. Failure of a temporary that a scope disposed (pooled) before the failure was known.
  faults.failIn(1);
  const d = e.scope(() => ops.scale(ops.add(a, b), 2)); // add's output fails, then goes to the pool
  const err2 = await e.flush().then(() => null, (x: unknown) => x);
  assert.instance(err2, GPUExecutionError);
  assert.is((err2 as GPUExecutionError).kind, 'out-of-memory');
  d.dispose();
  const stats = e.stats();
  const trimmed = e.trim();
  assert.ok(trimmed >= stats.freeBytes, `trim() freed ${trimmed} bytes, the pool held ${stats.freeBytes} (plus readback buffers)`);
  assert.is(e.stats().freeBuffers, 0);
  console.log(`    oom: after 2 injected failures, trim() freed ${trimmed} bytes in ${stats.freeBuffers} buffers; live ${e.stats().liveBufferBytes} bytes`);
  const d2 = e.scope(() => ops.scale(ops.add(a, b), 2));
  expectClose(await d2.read(), ref.map((v) => 2 * v), 1e-6, 'scale(add) after trim');
  d2.dispose();
  // Many more iterations from the pool: none of them may hit a destroyed buffer.
  for (let k = 0; k < 20; k++) e.scope(() => void ops.scale(ops.add(a, b), 2));
  await e.flush();
  a.dispose();
  b.dispose();
  e.destroy();
});

t('a failed allocation in the middle of a CANet inference: the error surfaces at the read, the next inference is correct', async () => {
  const { e, faults } = await faultyEngine();
  const { canet } = await import('../entry/node.js');
  const model = canet(e, { classes: 4, width: 0.125, seed: 5 }).eval();
  const x = e.tensor(Float32Array.from(randn(64 * 64 * 3, 9)), [1, 64, 64, 3]);
  const infer = async () => e.scope(async () => Array.from(await e.noGrad(() => model.forward(x)).read()));
  const good = await infer();
  e.trim(); // so the next inference allocates again
  const calls0 = faults.createBufferCalls;
  await infer();
  const perRun = faults.createBufferCalls - calls0;
  assert.ok(perRun > 5, `an inference after trim() made ${perRun} allocations`);
  e.trim();
  faults.failIn(Math.ceil(perRun / 2));
  const err = await infer().then(() => null, (x0: unknown) => x0);
  assert.instance(err, GPUExecutionError, String(err));
  assert.is((err as GPUExecutionError).kind, 'out-of-memory');
  assert.match((err as Error).message, new RegExp(`allocating a buffer of ${faults.injected[0]} bytes`));
  e.trim();
  const again = await infer();
  assert.ok(again.every((v, i) => Object.is(v, good[i])), 'inference after the failure and trim() gives the same logits bit for bit');
  console.log(`    oom: failed allocation ${Math.ceil(perRun / 2)} of ${perRun} (${faults.injected[0]} bytes) in a CANet inference; recovered`);
  x.dispose();
  model.dispose();
  e.destroy();
});

t.run();
