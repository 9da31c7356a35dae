/**
 * Leaks, long form (`.long.` in the name: `CANET_SKIP_LONG=1` skips it locally; CI runs it):
 * 1,000 inferences of a small CANet and 200 training steps, with engine.stats() flat after
 * warm-up (live tensors and bytes, buffers created, free buffers, pipelines; bind groups created
 * per call constant) and the process's resident memory flat within a stated bound.
 *
 * The RSS bound. Sampled after a forced GC (v8 --expose-gc at run time) every 50 inferences / 10
 * steps, RSS of this process on SwiftShader moves by up to ~20 MB between samples with no trend
 * (measured 2026-11-24: inference 193-214 MB over 1,000 calls, training 229-247 MB over 200
 * steps): SwiftShader and V8 allocate in large chunks. Single samples are therefore compared by
 * their medians: growth = median(last 5 samples) - median(first 5 after warm-up), which measured
 * -4 MB (inference) and 0 MB (training). The bound, 32 MB, is that noise with a wide margin, and
 * still catches a host-side leak of 64 KB per inference (260 bytes per dispatch) or 320 KB per
 * training step; GPU buffer leaks are caught exactly by the stats.
 */
import * as assert from 'uvu/assert';
import v8 from 'node:v8';
import vm from 'node:vm';
import { canet, SGD, trainStep, checkLossFinite, type Engine, type EngineStats } from '../entry/node.js';
import { suite } from './harness.js';
import { randn, testEngine } from './gpu.js';

const t = suite('leaks');
const RSS_BOUND_MB = 32;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const rssMB = (): number => {
  gc();
  gc();
  return process.memoryUsage().rss / 2 ** 20;
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The stats that must not move in a steady loop. */
function steady(s: EngineStats) {
  return { liveTensors: s.liveTensors, liveBytes: s.liveBytes, liveBufferBytes: s.liveBufferBytes, buffersCreated: s.buffersCreated, freeBuffers: s.freeBuffers, freeBytes: s.freeBytes, pipelines: s.pipelines };
}

/** Runs `step` `n` times after `warmup`, sampling every `every`; asserts flat stats and bounded RSS. */
async function checkFlat(e: Engine, what: string, warmup: number, n: number, every: number, step: (i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < warmup; i++) await step(i);
  const base = e.stats();
  const rss0 = rssMB();
  const samples: number[] = [];
  const bindGroupsPerWindow: number[] = [];
  let lastBindGroups = base.bindGroupsCreated;
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    await step(warmup + i);
    if ((i + 1) % every === 0) {
      const s = e.stats();
      assert.equal(steady(s), steady(base), `${what}: engine stats moved after ${i + 1} iterations`);
      bindGroupsPerWindow.push(s.bindGroupsCreated - lastBindGroups);
      lastBindGroups = s.bindGroupsCreated;
      samples.push(rssMB());
    }
  }
  const secs = (performance.now() - started) / 1000;
  const growth = median(samples.slice(-5)) - median(samples.slice(0, 5));
  const end = e.stats();
  console.log(
    `    leaks: ${what}: ${n} iterations after ${warmup} warm-up in ${secs.toFixed(1)} s; ` +
      `live ${end.liveTensors} tensors / ${end.liveBytes} bytes, ${end.buffersCreated} buffers created, ${end.freeBuffers} free, ${end.pipelines} pipelines (all unchanged); ` +
      `RSS ${rss0.toFixed(1)} -> ${samples[samples.length - 1]!.toFixed(1)} MB (samples ${Math.min(...samples).toFixed(1)}-${Math.max(...samples).toFixed(1)}, median growth ${growth.toFixed(1)} MB, bound ${RSS_BOUND_MB})`,
  );
  // Bind groups are made per dispatch (or cached): either way the same number in every window.
  assert.ok(bindGroupsPerWindow.every((b) => b === bindGroupsPerWindow[0]), `${what}: bind groups per window ${bindGroupsPerWindow.join(', ')}`);
  assert.ok(growth < RSS_BOUND_MB, `${what}: resident memory grew by ${growth.toFixed(1)} MB (median of the last 5 samples vs the first 5), bound ${RSS_BOUND_MB} MB; samples ${samples.map((s) => s.toFixed(0)).join(' ')}`);
}

t('1,000 inferences of CANet-MobileNetV2 (width 0.125, 64x64): engine stats flat, RSS flat within 32 MB', async () => {
  const e = await testEngine();
  const model = canet(e, { classes: 3, width: 0.125, seed: 1 }).eval();
  const x = e.tensor(Float32Array.from(randn(64 * 64 * 3, 1)), [1, 64, 64, 3]);
  const ids0 = model.segment(x);
  const first = Array.from(await ids0.read());
  ids0.dispose();
  let last: number[] = [];
  await checkFlat(e, 'inference', 50, 1000, 50, async (i) => {
    const ids = model.segment(x);
    const v = await ids.read();
    ids.dispose();
    if (i === 1049) last = Array.from(v);
  });
  assert.equal(last, first, 'the 1,050th inference gives the first one\'s answer');
  x.dispose();
  model.dispose();
}, { timeoutMs: 480_000 });

t('200 training steps (CANet width 0.125, 1x32x32, SGD with momentum): engine stats flat, RSS flat within 32 MB', async () => {
  const e = await testEngine();
  const model = canet(e, { classes: 3, width: 0.125, seed: 1 });
  const opt = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  const images = e.tensor(Float32Array.from(randn(32 * 32 * 3, 2)), [1, 32, 32, 3]);
  const labels = e.tensor(Int32Array.from({ length: 32 * 32 }, (_, i) => (i >> 3) % 3), [1, 32, 32]);
  const losses: number[] = [];
  await checkFlat(e, 'training', 20, 200, 10, async (i) => {
    const loss = trainStep(model, opt, images, labels);
    losses.push(await checkLossFinite(loss, i + 1));
    loss.dispose();
  });
  assert.ok(losses[losses.length - 1]! < losses[0]!, `the model trains: loss ${losses[0]} -> ${losses[losses.length - 1]}`);
  images.dispose();
  labels.dispose();
  opt.dispose();
  model.dispose();
}, { timeoutMs: 480_000 });

t.run();
