/**
 * Model weights end to end: save -> load reproduces outputs bit for bit; broken files (truncated,
 * wrong dtype, wrong shape, missing tensor) give clear errors naming the tensor and leave the
 * model unchanged; a full CANet-MobileNetV2 training step's gradients match finite differences of
 * the GPU forward; ResNet-101 runs forward and a training step.
 */
import * as assert from 'uvu/assert';
import { canet } from '../net/canet.js';
import { backward } from '../engine/autograd.js';
import { softmaxCrossEntropy } from '../engine/ops/loss.js';
import { SGD } from '../engine/optim.js';
import { trainStep } from '../net/train.js';
import { loadWeightsBytes, serializeStateDict } from '../weights/state.js';
import { parseSafetensors, serializeSafetensors, SafetensorsError } from '../weights/safetensors.js';
import { loadModelFile, loadWeightsFile } from '../weights/load-file.js';
import { demoFiles } from '../weights/bundled.js';
import { suite } from './harness.js';
import { randn, testEngine } from './gpu.js';

const t = suite('model-weights');

t('save -> load into a differently initialised model reproduces the outputs bit for bit', async () => {
  const e = await testEngine();
  const a = canet(e, { classes: 5, width: 0.25, seed: 1 });
  // Move the BN running statistics away from their initial values first.
  const x = e.tensor(Float32Array.from(randn(2 * 64 * 64 * 3, 2)), [2, 64, 64, 3]).keep();
  await e.scope(async () => void (await a.forward(x).read()));
  a.eval();
  const bytes = serializeStateDict(await a.stateDict());
  const b = canet(e, { classes: 5, width: 0.25, seed: 99 }).eval();
  const report = loadWeightsBytes(b, bytes);
  assert.is(report.missing.length + report.unexpected.length + report.mismatched.length, 0);
  const [ya, yb] = await e.scope(async () => [await e.noGrad(() => a.forward(x)).read(), await e.noGrad(() => b.forward(x)).read()]);
  assert.ok(ya!.every((v, i) => Object.is(v, yb![i])), 'outputs identical');
  // f16 files load too (converted on load), close to the f32 model.
  const half = serializeStateDict(await a.stateDict(), { dtype: 'F16' });
  assert.ok(half.length < 0.6 * bytes.length, `f16 file ${half.length} vs f32 ${bytes.length}`);
  loadWeightsBytes(b, half);
  const yh = await e.scope(async () => e.noGrad(() => b.forward(x)).read());
  let maxErr = 0;
  let maxAbs = 0;
  yh.forEach((v, i) => {
    maxErr = Math.max(maxErr, Math.abs(v - ya![i]!));
    maxAbs = Math.max(maxAbs, Math.abs(ya![i]!));
  });
  assert.ok(maxErr < 0.02 * maxAbs, `f16 weights: max error ${maxErr} vs max |y| ${maxAbs}`);
  x.dispose();
  a.dispose();
  b.dispose();
});

t('broken weights: clear errors naming the tensor, model unchanged', async () => {
  const e = await testEngine();
  const m = canet(e, { classes: 3, width: 0.25, seed: 4 });
  const state = await m.stateDict();
  const good = serializeStateDict(state);
  const before = await m.stateDict();
  const unchanged = async () => {
    const now = await m.stateDict();
    for (const [n, t0] of before) assert.ok(now.get(n)!.data.every((v, i) => Object.is(v, t0.data[i])), `${n} changed`);
  };
  // Truncated file.
  assert.throws(() => loadWeightsBytes(m, good.subarray(0, good.length - 100)), (err: unknown) => err instanceof SafetensorsError);
  // Wrong shape / missing / unexpected: strict load names each with both shapes.
  const parsed = parseSafetensors(good);
  const entries: Record<string, { data: Float32Array | Int32Array; shape: number[]; dtype?: 'F32' | 'I64' | 'I32' }> = {};
  for (const [n, tt] of parsed.tensors) entries[n] = { data: tt.data as Float32Array | Int32Array, shape: tt.shape, dtype: tt.data instanceof Int32Array ? 'I64' : 'F32' };
  const w = entries['fca.ca.fc.weight']!;
  entries['fca.ca.fc.weight'] = { data: w.data.subarray(0, w.data.length - w.shape[1]!), shape: [w.shape[0]! - 1, w.shape[1]!] };
  delete entries['spatial_branch.0.0.weight'];
  entries['extra.weight'] = { data: new Float32Array(2), shape: [2] };
  assert.throws(() => loadWeightsBytes(m, serializeSafetensors(entries)), (err: unknown) => {
    const msg = (err as Error).message;
    return /wrong shape: fca\.ca\.fc\.weight: expected \[64, 64\], got \[63, 64\]/.test(msg) && /missing: spatial_branch\.0\.0\.weight/.test(msg) && /unexpected: extra\.weight/.test(msg);
  });
  // Wrong dtype: an integer tensor where floats belong.
  const wrongDtype = { ...Object.fromEntries(Object.entries(entries).filter(([n]) => !n.startsWith('extra'))) };
  wrongDtype['spatial_branch.0.0.weight'] = { data: new Int32Array(state.get('spatial_branch.0.0.weight')!.data.length), shape: state.get('spatial_branch.0.0.weight')!.shape, dtype: 'I32' };
  wrongDtype['fca.ca.fc.weight'] = { data: state.get('fca.ca.fc.weight')!.data as Float32Array, shape: state.get('fca.ca.fc.weight')!.shape };
  assert.throws(() => loadWeightsBytes(m, serializeSafetensors(wrongDtype)), /spatial_branch\.0\.0\.weight: expected floating-point data, got I64/);
  await unchanged();
  // Non-strict: loads what fits, reports the rest.
  const report = loadWeightsBytes(m, serializeSafetensors(entries), { strict: false });
  assert.equal(report.missing, ['spatial_branch.0.0.weight']);
  assert.equal(report.unexpected, ['extra.weight']);
  assert.is(report.mismatched.length, 1);
  m.dispose();
});

t('CANet-MobileNetV2 (full width) training step at 2x64x128: sampled gradients match central differences of the GPU forward (rel err < 3%)', async () => {
  const e = await testEngine();
  const m = canet(e, { classes: 19, seed: 3 });
  const x = e.tensor(Float32Array.from(randn(2 * 64 * 128 * 3, 5)), [2, 64, 128, 3]).keep();
  const labels = e.tensor(Int32Array.from({ length: 2 * 64 * 128 }, (_, i) => ((i >> 5) * 7 + (i >> 12)) % 19), [2, 64, 128]).keep();
  // Eval-mode BN keeps the forward a fixed function of the weights (training-mode BN would update
  // running statistics on every finite-difference evaluation); the training-mode backward through
  // batch statistics has its own float64 checks in batchnorm.test.ts and training.test.ts.
  m.eval();
  const loss = async () => e.scope(async () => (await e.noGrad(() => softmaxCrossEntropy(m.forward(x), labels)).read())[0]!);
  await e.scope(async () => backward(softmaxCrossEntropy(m.forward(x), labels)));
  const params = new Map(m.namedParameters());
  const picks = ['fca.conv_last.1.bias', 'up.up_conv.1.weight', 'fca.ca.fc.bias', 'context_branch.up2.up_conv.0.bias', 'spatial_branch.2.1.weight', 'fca.conv_init.1.bias'];
  let checked = 0;
  for (const name of picks) {
    const p = params.get(name)!;
    const g = (await p.grad!.read()) as Float32Array;
    // The entry with the largest gradient: its finite difference stands well above f32 noise.
    let j = 0;
    g.forEach((v, i) => (Math.abs(v) > Math.abs(g[j]!) ? (j = i) : 0));
    const data = (await p.read()) as Float32Array;
    const h = 1e-2 * Math.max(1, Math.abs(data[j]!));
    const at = (v: number) => {
      const d = Float32Array.from(data);
      d[j] = v;
      e.writeTensor(p, d);
    };
    at(data[j]! + h);
    const lp = await loss();
    at(data[j]! - h);
    const lm = await loss();
    at(data[j]!);
    const fd = (lp - lm) / (2 * h);
    const rel = Math.abs(fd - g[j]!) / Math.max(Math.abs(fd), 1e-6);
    assert.ok(rel < 0.03, `${name}[${j}]: analytic ${g[j]}, finite difference ${fd} (rel err ${rel.toFixed(4)})`);
    checked++;
  }
  assert.is(checked, picks.length);
  // And a real training step (train mode, SGD) runs entirely on the GPU and changes the weights.
  m.train();
  const opt = new SGD(m.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  const before = (await params.get('fca.ca.fc.bias')!.read()) as Float32Array;
  const l = trainStep(m, opt, x, labels);
  const lv = (await l.read())[0]!;
  l.dispose();
  assert.ok(Number.isFinite(lv) && lv > 0, `loss ${lv}`);
  const after = (await params.get('fca.ca.fc.bias')!.read()) as Float32Array;
  assert.ok(after.some((v, i) => v !== before[i]), 'weights updated');
  opt.dispose();
  x.dispose();
  labels.dispose();
  m.dispose();
}, { timeoutMs: 400_000 });

t('CANet-ResNet101 at 1x64x64: forward and one training step run, output [1, 64, 64, 19]', async () => {
  const e = await testEngine();
  const m = canet(e, { backbone: 'resnet101', classes: 19, seed: 2 });
  const x = e.tensor(Float32Array.from(randn(64 * 64 * 3, 8)), [1, 64, 64, 3]).keep();
  const labels = e.tensor(Int32Array.from({ length: 64 * 64 }, (_, i) => i % 19), [1, 64, 64]).keep();
  m.eval();
  const y = e.noGrad(() => m.forward(x));
  assert.equal(y.shape, [1, 64, 64, 19]);
  assert.ok((await y.read()).every(Number.isFinite));
  y.dispose();
  const opt = new SGD(m.parameters(), { lr: 0.01, momentum: 0.9 });
  const loss = trainStep(m, opt, x, labels);
  assert.ok(Number.isFinite((await loss.read())[0]!));
  loss.dispose();
  opt.dispose();
  [x, labels].forEach((t0) => t0.dispose());
  m.dispose();
}, { timeoutMs: 400_000 });

t('model files: loadModelFile builds the network the file describes, in eval mode; loadWeightsFile into a differently built model names the file and points at loadModelFile', async () => {
  const e = await testEngine();
  const path = demoFiles().model;
  const { model, config } = await loadModelFile(e, path);
  try {
    assert.is(model.training, false, 'a loaded model is in eval mode');
    assert.is(config.width, 0.5);
  } finally {
    model.dispose();
  }
  const other = canet(e, { backbone: 'mobilenetv2', classes: 19 }); // width 1, compatible head: not the demo's network
  try {
    let err: Error | null = null;
    await loadWeightsFile(other, path).catch((x: Error) => (err = x));
    assert.ok(err, 'loading the demo model into another network must fail');
    const msg = (err as unknown as Error).message;
    assert.ok(msg.startsWith(`weights ${path}: loadStateDict:`), msg.slice(0, 200));
    assert.match(msg, /The file is a model file that describes its own network \(\{.*"width":0\.5.*\): build that network and load it in one call with loadModelFile\(engine, path\)/);
  } finally {
    other.dispose();
  }
  let missing: Error | null = null;
  await loadModelFile(e, '/nonexistent/model.safetensors').catch((x: Error) => (missing = x));
  assert.match((missing as unknown as Error).message, /^weights \/nonexistent\/model\.safetensors: no such file/);
});

t.run();
