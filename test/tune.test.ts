/**
 * autotune: every conv2d GEMM a workload meets is timed with each candidate tile, the fastest is
 * kept in engine.tuned and used afterwards; every candidate (CPU-adapter and real-GPU sets, run
 * here on SwiftShader) matches the float64 reference, forward and gradients; tables survive a
 * JSON round trip and a file, bad tables are refused whole, scratch tensors are released.
 */
import * as assert from 'uvu/assert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, autotune, backward, exportTuning, importTuning, loadTuningFile, saveTuningFile, type TunedCase } from '../entry/node.js';
import { pickWinner } from '../engine/tune.js';
import { type Conv2dOptions, conv2d } from '../engine/ops/conv2d.js';
import { convTranspose2d, convTranspose2dArgmax } from '../engine/ops/conv-transpose.js';
import { type ConvTransposeGeometry, convTransposeOutShape, refConvTranspose, refConvTransposeBackward } from './ref/conv-transpose.js';
import { mul, sum } from '../engine/ops/basic.js';
import { suite } from './harness.js';
import { expectClose, forKernelMode, randn, testEngine, withoutFeatures } from './gpu.js';
import { gradCheck } from './gradcheck.js';
import { refConv2d, refConv2dBackward } from './ref/conv.js';

const t = suite('tune');

interface Case { x: number[]; w: number[]; opts: Conv2dOptions }
// Scalar lanes (Ci 6, Co 5), stride 2 with padding, batch 2; then vec4 lanes (Ci 8, Co 12).
const CASES: Case[] = [
  { x: [2, 7, 9, 6], w: [5, 3, 3, 6], opts: { stride: 2, padding: 1 } },
  { x: [1, 5, 6, 8], w: [12, 3, 3, 8], opts: { padding: 1 } },
];
const size = (s: number[]): number => s.reduce((a, b) => a * b, 1);
const f32 = (d: Float64Array): Float64Array => Float64Array.from(Float32Array.from(d));

/**
 * An engine on the shared test device whose conv2d default is register tiles (what these tests
 * time), shown without 'subgroups': with them llvmpipe takes the lanes kernels (conv2d-lanes.ts),
 * whose tiles the lanes test below times. Without subgroups the register tiles are llvmpipe's
 * default, as here.
 */
function registerTileEngine(base: Engine): Engine {
  return new Engine({ device: withoutFeatures(base.device, ['subgroups']), ownsDevice: false, adapter: base.adapter });
}

/** An engine on the shared test device that takes the tiles of the given adapter class. */
async function engineFor(cls: 'cpu' | 'gpu' | 'llvmpipe'): Promise<Engine> {
  const base = await testEngine();
  if (cls === 'cpu') return base.variants.choose('conv2d') === 'register' ? base : registerTileEngine(base);
  if (cls === 'llvmpipe') {
    // The llvmpipe kernel family's candidates, on whatever adapter the tests run.
    const e = registerTileEngine(base);
    e.prefer.family = 'llvmpipe';
    return e;
  }
  return new Engine({ device: base.device, ownsDevice: false, adapter: { ...base.adapter, isSoftware: false } });
}

/** Forward and backward of each case: what autotune records. */
function workload(e: Engine): void {
  for (const [k, c] of CASES.entries()) {
    const x = e.tensor(Float32Array.from(randn(size(c.x), k)), c.x);
    const w = e.tensor(Float32Array.from(randn(size(c.w), k + 10)), c.w);
    x.requiresGrad = true;
    w.requiresGrad = true;
    backward(sum(conv2d(x, w, null, c.opts)));
  }
}

async function tune(e: Engine): Promise<TunedCase[]> {
  for (const key of [...e.tuned.keys()]) if (key.startsWith('conv2d.')) e.tuned.delete(key);
  return autotune(e, () => workload(e), { rounds: 2, roundMs: 2 });
}

t('pickWinner: the default stays unless a candidate is 5% faster and pays back its compile over the horizon', () => {
  const d = { variant: 'd', ms: 10, compileMs: 0 };
  // Noise-level win (4%): default.
  assert.is(pickWinner([d, { variant: 'a', ms: 9.6, compileMs: 0 }], 0.05, 1000).variant, 'd');
  // 20% faster, compiled before: replaces it.
  assert.is(pickWinner([d, { variant: 'a', ms: 8, compileMs: 0 }], 0.05, 1000).variant, 'a');
  // 20% faster (2 ms a call) but 3 s of compile over 1000 calls is 3 ms a call: default.
  assert.is(pickWinner([d, { variant: 'a', ms: 8, compileMs: 3000 }], 0.05, 1000).variant, 'd');
  // Of those that pay, the fastest; a faster one that does not pay is passed over.
  const r = pickWinner([d, { variant: 'a', ms: 9, compileMs: 100 }, { variant: 'b', ms: 5, compileMs: 9000 }, { variant: 'c', ms: 8.5, compileMs: 500 }], 0.05, 1000);
  assert.equal(r, { variant: 'c', ms: 8.5, compileMs: 500 });
  // A default slower than everything by far is replaced by the plain fastest when compiles are free.
  assert.is(pickWinner([{ variant: 'd', ms: 100, compileMs: 0 }, { variant: 'a', ms: 50, compileMs: 0 }, { variant: 'b', ms: 40, compileMs: 0 }], 0.05, 1000).variant, 'b');
});

// The GPU tile set's workgroup-memory kernels compile for seconds each on a cold lavapipe (CI's
// second run): there they are checked in the SwiftShader run, as in conv2d.test (forKernelMode).
const forClass = (cls: 'cpu' | 'gpu' | 'llvmpipe') => (cls === 'gpu' ? forKernelMode(t, 'family=gpu') : t);

for (const cls of ['cpu', 'gpu', 'llvmpipe'] as const) {
  forClass(cls)(`autotune (${cls} tile set) times each candidate of the 3 GEMMs of each conv, keeps the fastest, leaks nothing`, async () => {
    const e = await engineFor(cls);
    const before = e.stats().liveTensors;
    const report = await tune(e);
    assert.is(e.stats().liveTensors, before, 'live tensors after autotune');
    assert.is(report.length, 3 * CASES.length, `tuned cases: ${report.map((r) => r.key).join('; ')}`);
    for (const kernel of ['forward', 'input', 'filter']) assert.is(report.filter((r) => r.key.startsWith(`conv2d.${kernel} `)).length, CASES.length, kernel);
    for (const r of report) {
      assert.ok(r.times.length >= 2, `${r.label}: only ${r.times.length} candidates`);
      assert.is(new Set(r.times.map((x) => x.variant)).size, r.times.length, `${r.label}: duplicate candidates`);
      for (const x of r.times) assert.ok(Number.isFinite(x.ms) && x.ms > 0 && Number.isFinite(x.compileMs) && x.compileMs >= 0, `${r.label} ${x.variant}: ${x.ms} ms, compile ${x.compileMs} ms`);
      const expected = pickWinner(r.times, 0.05, 1000);
      assert.is(r.winner, expected.variant, r.label);
      assert.is(e.tuned.get(r.key), r.winner, `engine.tuned of ${r.key}`);
      assert.ok(Math.abs(r.speedup - r.times[0]!.ms / expected.ms) < 1e-9, 'speedup is default / winner');
    }
    // A second call keeps what is tuned: nothing left to time.
    assert.is((await autotune(e, () => workload(e), { rounds: 1 })).length, 0, 'second autotune re-timed tuned keys');
    assert.is(e.stats().liveTensors, before, 'live tensors after the second autotune');
  });

  forClass(cls)(`every ${cls} candidate tile matches float64: forward and gradients`, async () => {
    const e = await engineFor(cls);
    await everyCandidateMatches(e, await tune(e), 3);
  });
}

/**
 * Candidate i of each GEMM of a case at once (the last one where a GEMM has fewer), for every i:
 * the forward against float64 and the gradients against finite differences. `perCase`: the GEMMs
 * of each case the report holds.
 */
async function everyCandidateMatches(e: Engine, report: TunedCase[], perCase: number): Promise<void> {
  try {
    for (const [k, c] of CASES.entries()) {
      const mine = report.filter((r) => r.key.includes(` ${c.x.join('x')}>${c.w[0]} `));
      assert.is(mine.length, perCase, `cases of ${c.x}`);
      const most = Math.max(...mine.map((r) => r.times.length));
      for (let i = 0; i < most; i++) {
        for (const r of mine) e.tuned.set(r.key, r.times[Math.min(i, r.times.length - 1)]!.variant);
        const tiles = mine.map((r) => e.tuned.get(r.key)).join(', ');
        const xd = f32(randn(size(c.x), 50 + k));
        const wd = f32(randn(size(c.w), 60 + k));
        const ref = refConv2d(xd, c.x, wd, c.w, null, c.opts);
        await e.scope(async () => {
          const y = conv2d(e.tensor(Float32Array.from(xd), c.x), e.tensor(Float32Array.from(wd), c.w), null, c.opts);
          expectClose(await y.read(), ref.data, 1e-4, `forward of ${c.x} with ${tiles}`);
        });
        await gradCheck(e, {
          gpu: ([x, w]) => conv2d(x!, w!, null, c.opts),
          ref: ([x, w]) => refConv2d(x!, c.x, w!, c.w, null, c.opts).data,
          inputs: [{ name: 'x', shape: c.x, data: xd }, { name: 'w', shape: c.w, data: wd }],
          tol: 1e-3,
          maxElements: 24,
          seed: 70 + i,
        });
      }
    }
  } finally {
    for (const r of report) e.tuned.delete(r.key);
  }
}

// The lanes kernels (conv2d-lanes.ts), llvmpipe's default where the device has subgroups: autotune
// times the lanes tiles of the forward and of the stride-1 input gradient; the filter gradient's
// tile fixes its pixel chunks and keeps the default; CASES[0]'s stride-2 input gradient is the
// register tiles'. The lanes default needs the subgroups feature (both software adapters have it).
const shared = await testEngine();
if (!shared.features.has('subgroups')) t.skip(`autotune times the lanes tiles (llvmpipe with subgroups); every candidate matches float64 (skipped: '${shared.adapter.description}' has no subgroups)`);
else
  t('autotune times the lanes tiles (llvmpipe with subgroups); every candidate matches float64', async () => {
    const base = await testEngine();
    const e = new Engine({ device: base.device, ownsDevice: false, adapter: base.adapter });
    e.prefer.family = 'llvmpipe';
    assert.is(e.variants.choose('conv2d'), 'lanes');
    const report = await tune(e);
    const kinds = report.map((r) => `${r.key.split(' ')[0]} ${r.times[0]!.variant.startsWith('lanes') ? 'lanes' : 'register'}`).sort();
    assert.equal(kinds, ['conv2d.forward lanes', 'conv2d.forward lanes', 'conv2d.input lanes', 'conv2d.input register'], report.map((r) => r.key).join('; '));
    for (const r of report.filter((x) => x.times[0]!.variant.startsWith('lanes'))) {
      assert.ok(r.times.length >= 3 && r.times.every((x) => x.variant.startsWith('lanes')), `${r.label}: ${r.times.map((x) => x.variant)}`);
      assert.is(e.tuned.get(r.key), pickWinner(r.times, 0.05, 1000).variant, r.label);
    }
    await everyCandidateMatches(e, report, 2);
  });

// Transposed convolutions: a decoder upsampler (Ci 6: zero-padded lanes, batch 2) and an x8 head
// (19 classes, k15 s8) whose forward also runs with the fused argmax.
const DECONV: { g: ConvTransposeGeometry; argmax: boolean }[] = [
  { g: { x: [2, 5, 7, 6], k: [5, 3, 3], stride: [2, 2], padding: [1, 1], outputPadding: [1, 1] }, argmax: false },
  { g: { x: [1, 3, 4, 8], k: [19, 15, 15], stride: [8, 8], padding: [7, 7], outputPadding: [7, 7] }, argmax: true },
];
const deconvOpts = (g: ConvTransposeGeometry) => ({ stride: g.stride as [number, number], padding: g.padding as [number, number], outputPadding: g.outputPadding as [number, number] });
const wShapeOf = (g: ConvTransposeGeometry): number[] => [g.k[0]!, g.k[1]!, g.k[2]!, g.x[3]!];

for (const cls of ['cpu', 'gpu'] as const)
forClass(cls)(`autotune covers convTranspose2d (forward, fused argmax, input gradient); every ${cls} candidate matches float64`, async () => {
  const e = await engineFor(cls);
  e.tuned.clear();
  const before = e.stats().liveTensors;
  const report = await autotune(e, () => {
    for (const [k, { g, argmax }] of DECONV.entries()) {
      const x = e.tensor(Float32Array.from(randn(size([...g.x]), k)), g.x);
      const w = e.tensor(Float32Array.from(randn(size(wShapeOf(g)), k + 1)), wShapeOf(g));
      x.requiresGrad = true;
      backward(sum(convTranspose2d(x, w, null, deconvOpts(g))));
      if (argmax) e.noGrad(() => convTranspose2dArgmax(x, w, null, deconvOpts(g)));
    }
  }, { rounds: 2, roundMs: 2 });
  assert.is(e.stats().liveTensors, before, 'live tensors after autotune');
  const kinds = report.map((r) => r.key.split(' ')[0]).sort();
  assert.equal(kinds, ['convTranspose2d.forward', 'convTranspose2d.forward', 'convTranspose2d.forward-argmax', 'convTranspose2d.input', 'convTranspose2d.input'], report.map((r) => r.key).join('; '));
  // GPUs time the workgroup-memory kernel (their default) against the register tiles; the fused argmax has none.
  for (const r of report) assert.is(r.times[0]!.variant === 'wg', cls === 'gpu' && !r.key.includes('argmax'), `${r.key}: ${r.times[0]!.variant} first`);
  try {
    for (const [k, { g, argmax }] of DECONV.entries()) {
      const mine = report.filter((r) => r.key.includes(` ${g.x.join('x')}>${g.k[0]} `));
      const most = Math.max(...mine.map((r) => r.times.length));
      assert.ok(most >= 3, `${g.x}: ${most} candidates`);
      const outShape = convTransposeOutShape(g);
      const xd = f32(randn(size([...g.x]), 90 + k));
      const wd = f32(randn(size(wShapeOf(g)), 91 + k));
      const gyd = f32(randn(size(outShape), 92 + k));
      const ref = refConvTranspose(g, xd, wd, null);
      const refDx = refConvTransposeBackward(g, xd, wd, gyd).dx;
      const classes = g.k[0]!;
      const refIds = Array.from({ length: ref.length / classes }, (_, p) => {
        let best = 0;
        for (let c = 1; c < classes; c++) if (ref[p * classes + c]! > ref[p * classes + best]!) best = c;
        return best;
      });
      for (let i = 0; i < most; i++) {
        for (const r of mine) e.tuned.set(r.key, r.times[Math.min(i, r.times.length - 1)]!.variant);
        const tiles = mine.map((r) => `${r.key.split(' ')[0]} ${e.tuned.get(r.key)}`).join(', ');
        await e.scope(async () => {
          const x = e.tensor(Float32Array.from(xd), g.x);
          const w = e.tensor(Float32Array.from(wd), wShapeOf(g));
          x.requiresGrad = true;
          const y = convTranspose2d(x, w, null, deconvOpts(g));
          expectClose(await y.read(), ref, 1e-4, `forward of ${g.x} with ${tiles}`);
          backward(y, { gradOutput: e.tensor(Float32Array.from(gyd), outShape) });
          expectClose(await x.grad!.read(), refDx, 1e-4, `input gradient of ${g.x} with ${tiles}`);
          if (argmax) {
            const ids = await e.noGrad(() => convTranspose2dArgmax(x, w, null, deconvOpts(g))).read();
            const wrong = refIds.filter((c, p) => ids[p] !== c).length;
            assert.ok(wrong <= 2, `fused argmax with ${tiles}: ${wrong} of ${refIds.length} pixels differ from the reference`);
          }
        });
      }
    }
  } finally {
    e.tuned.clear();
  }
});

t('tuning tables: JSON round trip per adapter, a file that merges adapters, bad tables refused whole', async () => {
  const e = await testEngine();
  const other = new Engine({ device: e.device, ownsDevice: false, adapter: { ...e.adapter, description: 'another adapter' } });
  e.tuned.clear();
  other.tuned.clear();
  e.tuned.set('conv2d.forward 1x8x8x4>4 k3x3 s1x1 p1x1 d1x1 g1', '16x16@16');
  const table = JSON.parse(JSON.stringify(exportTuning(e)));
  assert.is(importTuning(other, table), 0, 'entries of another adapter are not loaded');
  const copy = new Engine({ device: e.device, ownsDevice: false, adapter: e.adapter });
  assert.is(importTuning(copy, table), 1);
  assert.equal([...copy.tuned], [...e.tuned]);

  assert.throws(() => importTuning(copy, { adapters: {} }), /not a canet-gpu tuning table/);
  const bad = JSON.parse(JSON.stringify(table));
  const entries = Object.values(bad.adapters)[0] as Record<string, unknown>;
  entries['conv2d.input x'] = 12;
  entries['conv2d.filter y'] = '8x8@16';
  copy.tuned.clear();
  assert.throws(() => importTuning(copy, bad), /entry "conv2d.input x" has variant 12, expected a string such as "16x32@16"/);
  assert.is(copy.tuned.size, 0, 'a refused table changed engine.tuned');

  const dir = await mkdtemp(join(tmpdir(), 'canet-tune-'));
  try {
    const file = join(dir, 'sub', 'tuning.json');
    assert.is(await loadTuningFile(copy, file), 0, 'a missing file loads nothing');
    other.tuned.set('conv2d.filter 1x8x8x4>4 k1x1 s1x1 p0x0 d1x1 g1', '4x4@64');
    await saveTuningFile(e, file);
    await saveTuningFile(other, file);
    const saved = JSON.parse(await readFile(file, 'utf8'));
    assert.is(Object.keys(saved.adapters).length, 2, 'both adapters are kept in one file');
    assert.is(await loadTuningFile(copy, file), 1);
    assert.is(copy.tuned.get('conv2d.forward 1x8x8x4>4 k3x3 s1x1 p1x1 d1x1 g1'), '16x16@16');
    await writeFile(file, '{ not json');
    let message = '';
    await loadTuningFile(copy, file).catch((err: Error) => (message = err.message));
    assert.match(message, /tuning\.json: not JSON .*delete it to start a new tuning table/);
  } finally {
    await rm(dir, { recursive: true, force: true });
    e.tuned.clear();
  }
});

t('conv2d uses a tuned tile (a new pipeline), ignores one that does not fit (the default\'s), results stay right', async () => {
  const e = await engineFor('cpu');
  const c = CASES[1]!; // vec4 channels: a 2-column tile cannot hold a vec4
  const key = `conv2d.forward ${c.x.join('x')}>${c.w[0]} k3x3 s1x1 p1x1 d1x1 g1`;
  const xd = f32(randn(size(c.x), 80));
  const wd = f32(randn(size(c.w), 81));
  const ref = refConv2d(xd, c.x, wd, c.w, null, c.opts);
  const forward = async (what: string): Promise<number> => {
    await e.scope(async () => {
      const y = conv2d(e.tensor(Float32Array.from(xd), c.x), e.tensor(Float32Array.from(wd), c.w), null, c.opts);
      expectClose(await y.read(), ref.data, 1e-4, `forward with ${what}`);
    });
    return e.stats().pipelines;
  };
  e.tuned.clear();
  try {
    const base = await forward('the default tile');
    assert.is(await forward('the default tile again'), base, 'the default pipeline is cached');
    e.tuned.set(key, '2x4@8');
    assert.is(await forward('tuned 2x4@8'), base + 1, 'a tuned tile compiles its own pipeline');
    e.tuned.set(key, '4x2@16');
    assert.is(await forward('unfit 4x2@16'), base + 1, 'an unfit tile falls back to the default pipeline');
    e.tuned.set(key, '128x128@16');
    assert.is(await forward('oversized 128x128@16'), base + 1, 'an oversized tile falls back to the default pipeline');
  } finally {
    e.tuned.clear();
  }
});

t('a tuned filter-gradient tile keeps the default tile\'s pixel chunks: no extra reduction dispatch, same gradient', async () => {
  // 64 output channels x 288 taps: the default 8x8 tile makes 288 tiles, enough invocations that
  // the 100 pixels run in one pass; a 32x16 tile makes 36, which used to split the pixels in two
  // and add a column-sum dispatch (the tuned training step went over issue 10's 400).
  const e = await engineFor('cpu');
  const xs = [1, 10, 10, 32], ws = [64, 3, 3, 32], ys = [1, 10, 10, 64];
  const key = `conv2d.filter ${xs.join('x')}>${ws[0]} k3x3 s1x1 p1x1 d1x1 g1`;
  const xd = f32(randn(size(xs), 90));
  const wd = f32(randn(size(ws), 91));
  const rd = f32(randn(size(ys), 92));
  const ref = refConv2dBackward(xd, xs, wd, ws, rd, { padding: 1 }).dw;
  const filterGrad = async (what: string): Promise<number> => {
    let dispatches = 0;
    await e.scope(async () => {
      const x = e.tensor(Float32Array.from(xd), xs);
      const w = e.tensor(Float32Array.from(wd), ws);
      w.requiresGrad = true;
      const loss = sum(mul(conv2d(x, w, null, { padding: 1 }), e.tensor(Float32Array.from(rd), ys)));
      const before = e.stats().dispatches;
      backward(loss);
      await e.flush();
      dispatches = e.stats().dispatches - before;
      expectClose(await w.grad!.read(), ref, 1e-4, `filter gradient with ${what}`);
    });
    return dispatches;
  };
  e.tuned.clear();
  try {
    const base = await filterGrad('the default tile');
    e.tuned.set(key, '32x16@16');
    assert.is(await filterGrad('tuned 32x16@16'), base, 'backward dispatches with the tuned tile');
  } finally {
    e.tuned.clear();
  }
});

t('autotune refuses to nest and leaves engine.tuned as it was when the workload throws', async () => {
  const e = await testEngine();
  e.tuned.clear();
  let inner = '';
  await autotune(e, async () => {
    await autotune(e, () => {}).catch((err: Error) => (inner = err.message));
  });
  assert.match(inner, /already tuning/);
  let message = '';
  await autotune(e, () => {
    throw new Error('workload failed');
  }).catch((err: Error) => (message = err.message));
  assert.is(message, 'workload failed');
  assert.is(e.tuned.size, 0);
  assert.is(e.tuningSink, null, 'the sink is cleared after a failed workload');
});

t.run();
