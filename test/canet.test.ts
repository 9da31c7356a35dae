/** CANet in net/: sizes, names and shapes against NETWORK.md, forward shapes, errors. */
import * as assert from 'uvu/assert';
import { canet } from '../net/canet.js';
import { imageToTensor } from '../engine/ops/preprocess.js';
import { ShapeError } from '../engine/errors.js';
import { suite } from './harness.js';
import { loadPretrained } from '../cli/model-file.js';
import { serializeSafetensors, type SafeTensorInput } from '../weights/safetensors.js';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rng, testEngine } from './gpu.js';

const t = suite('canet');

t('CANet-MobileNetV2 (K = 19, compatible head) has exactly 4,774,186 parameters, split as NETWORK.md says', async () => {
  const e = await testEngine();
  const m = canet(e, { backbone: 'mobilenetv2', classes: 19, head: 'compatible' });
  assert.is(m.numParameters(), 4_774_186);
  const part = (prefix: string) => m.namedParameters().filter(([n]) => n.startsWith(prefix)).reduce((s, [, p]) => s + p.size, 0);
  assert.is(part('context_branch.backbone.'), 1_811_712);
  assert.is(part('spatial_branch.'), 371_264);
  assert.is(part('context_branch.up'), 1_217_856);
  assert.is(part('fca.'), 1_292_072);
  assert.is(part('up.'), 81_282);
  m.dispose();
});

t('ResNet variants: CANet-ResNet18 14,839,402 and CANet-ResNet101 50,586,730 parameters (torchvision backbones without fc)', async () => {
  const e = await testEngine();
  const r18 = canet(e, { backbone: 'resnet18' });
  assert.is(r18.numParameters(), 14_839_402);
  r18.dispose();
  const r101 = canet(e, { backbone: 'resnet101' });
  assert.is(r101.numParameters(), 50_586_730);
  const bb = r101.namedParameters().filter(([n]) => n.startsWith('context_branch.backbone.')).reduce((s, [, p]) => s + p.size, 0);
  assert.is(bb, 42_500_160);
  r101.dispose();
});

t('state dict names and PyTorch shapes match NETWORK.md and torchvision', async () => {
  const e = await testEngine();
  const m = canet(e, { classes: 19 });
  const sd = await m.stateDict();
  const shape = (n: string) => sd.get(n)?.shape;
  const expectShapes: Record<string, number[]> = {
    'spatial_branch.0.0.weight': [64, 3, 3, 3],
    'spatial_branch.0.1.running_mean': [64],
    'spatial_branch.2.0.weight': [256, 128, 3, 3],
    'spatial_branch.2.1.num_batches_tracked': [],
    'context_branch.backbone.layer1.0.0.weight': [32, 3, 3, 3],
    'context_branch.backbone.layer1.1.conv.0.0.weight': [32, 1, 3, 3],
    'context_branch.backbone.layer1.1.conv.1.weight': [16, 32, 1, 1],
    'context_branch.backbone.layer1.3.conv.3.running_var': [24],
    'context_branch.backbone.layer2.4.conv.0.0.weight': [144, 24, 1, 1],
    'context_branch.backbone.layer3.13.conv.2.weight': [96, 576, 1, 1],
    'context_branch.backbone.layer4.17.conv.1.0.weight': [960, 1, 3, 3],
    'context_branch.backbone.layer4.17.conv.2.weight': [320, 960, 1, 1],
    'context_branch.up1.up_conv.0.weight': [320, 192, 3, 3],
    'context_branch.up1.up_conv.0.bias': [192],
    'context_branch.up2.up_conv.0.weight': [288, 256, 3, 3],
    'context_branch.up2.up_conv.1.weight': [256],
    'fca.conv_init.0.weight': [256, 512, 3, 3],
    'fca.sa.0.0.weight': [1, 256, 3, 3],
    'fca.sa.0.1.running_mean': [1],
    'fca.ca.fc.weight': [256, 256],
    'fca.ca.fc.bias': [256],
    'fca.conv_last.0.weight': [19, 256, 3, 3],
    'up.up_conv.0.weight': [19, 19, 15, 15],
    'up.up_conv.1.num_batches_tracked': [],
  };
  for (const [n, s] of Object.entries(expectShapes)) assert.equal(shape(n), s, n);
  // No block index is renumbered: torchvision's features.N keep N inside layer1..4.
  const blocks = new Set([...sd.keys()].map((n) => n.match(/^context_branch\.backbone\.layer(\d)\.(\d+)\./)?.slice(1, 3).join('.')).filter(Boolean));
  assert.equal([...blocks].sort((a, b) => Number(a!.split('.')[1]) - Number(b!.split('.')[1])), ['1.0', '1.1', '1.2', '1.3', '2.4', '2.5', '2.6', '3.7', '3.8', '3.9', '3.10', '3.11', '3.12', '3.13', '4.14', '4.15', '4.16', '4.17']);
  assert.ok([...sd.keys()].every((n) => !n.includes('features.18')), 'the 1280-channel conv is not used');
  // Every BN has weight, bias, running_mean, running_var, num_batches_tracked.
  const bnWeights = [...sd.keys()].filter((n) => n.endsWith('.running_mean'));
  for (const n of bnWeights) for (const s of ['weight', 'bias', 'running_var', 'num_batches_tracked']) assert.ok(sd.has(n.replace('running_mean', s)), `${n} -> ${s}`);
  assert.is(sd.get('spatial_branch.2.1.num_batches_tracked')!.dtype, 'I64');
  m.dispose();
});

t('forward gives [N, H, W, K] logits at input resolution; segment gives class ids', async () => {
  const e = await testEngine();
  const m = canet(e, { classes: 5, width: 0.25, seed: 3 }).eval();
  const r = rng(5);
  const img = Uint8Array.from({ length: 64 * 96 * 3 }, () => Math.floor(r() * 256));
  await e.scope(async () => {
    const x = imageToTensor(e, { data: img, width: 96, height: 64, channels: 3 });
    // The first fused forward folds each BatchNorm into its conv; the folds are model state
    // (cached until the parameters change, freed by dispose), so count after it.
    e.noGrad(() => m.forward(x)).dispose();
    const live = e.stats().liveTensors;
    const logits = e.noGrad(() => m.forward(x));
    assert.equal(logits.shape, [1, 64, 96, 5]);
    assert.is(e.stats().liveTensors, live + 1, 'inference frees every intermediate');
    const v = await logits.read();
    assert.ok(v.every(Number.isFinite));
    const ids = m.segment(x);
    assert.equal(ids.shape, [1, 64, 96]);
    assert.is(ids.dtype, 'i32');
    const idv = await ids.read();
    // argmax of the logits we read
    for (let p = 0; p < 64 * 96; p += 97) {
      let best = 0;
      for (let k = 1; k < 5; k++) if (v[p * 5 + k]! > v[p * 5 + best]!) best = k;
      assert.is(idv[p], best, `pixel ${p}`);
    }
  });
  m.dispose();
});

t('inputs whose sides are not multiples of 32 get a clear error, or are padded with padInput', async () => {
  const e = await testEngine();
  const m = canet(e, { classes: 3, width: 0.25 }).eval();
  await e.scope(async () => {
    const x = e.empty([1, 50, 64, 3]);
    assert.throws(() => m.forward(x), (err: unknown) => err instanceof ShapeError && /multiples of 32.*50x64/.test((err as Error).message));
    assert.throws(() => m.forward(e.empty([1, 64, 64, 4])), /NHWC \[N, H, W, 3\], got \[1, 64, 64, 4\]/);
  });
  const padded = canet(e, { classes: 3, width: 0.25, padInput: true }).eval();
  await e.scope(async () => {
    const y = e.noGrad(() => padded.forward(e.tensor(new Float32Array(50 * 70 * 3).fill(0.5), [1, 50, 70, 3])));
    assert.equal(y.shape, [1, 50, 70, 3]);
  });
  padded.dispose();
  m.dispose();
});

t('CANet-MobileNetV2 (K = 19) at 1024x512: logits [1, 512, 1024, 19] (the engine\'s [N, H, W, K] for PyTorch\'s 1x19x512x1024)', async () => {
  const e = await testEngine();
  const m = canet(e, { classes: 19 }).eval();
  await e.scope(async () => {
    const y = e.noGrad(() => m.forward(e.tensor(new Float32Array(512 * 1024 * 3).fill(0.25), [1, 512, 1024, 3])));
    assert.equal(y.shape, [1, 512, 1024, 19]);
    const v = await y.read();
    assert.ok(v[0] !== undefined && Number.isFinite(v[v.length - 1]!));
  });
  m.dispose();
}, { timeoutMs: 300_000 });

t('a torchvision MobileNetV2 state dict (features.N.*, classifier.*) loads into the backbone alone', async () => {
  const e = await testEngine();
  const src = canet(e, { classes: 19, seed: 11 });
  const sd = await src.stateDict();
  // Rebuild torchvision's names from ours: context_branch.backbone.layerK.N.rest -> features.N.rest.
  const tv: Record<string, SafeTensorInput> = {};
  for (const [n, t0] of sd) {
    const m = /^context_branch\.backbone\.layer\d\.(\d+)\.(.*)$/.exec(n);
    if (m) tv[`features.${m[1]}.${m[2]}`] = { data: t0.data, shape: t0.shape, dtype: t0.dtype };
  }
  tv['features.18.0.weight'] = { data: new Float32Array(1280 * 320), shape: [1280, 320, 1, 1] };
  tv['classifier.1.weight'] = { data: new Float32Array(1000 * 1280), shape: [1000, 1280] };
  tv['classifier.1.bias'] = { data: new Float32Array(1000), shape: [1000] };
  const file = join(mkdtempSync(join(tmpdir(), 'canet-tv-')), 'mobilenet_v2.safetensors');
  writeFileSync(file, serializeSafetensors(tv));
  const dst = canet(e, { classes: 19, seed: 12 });
  const headBefore = (await dst.stateDict()).get('fca.ca.fc.weight')!.data;
  const r = await loadPretrained(dst, file);
  assert.is(r.loaded, Object.keys(tv).length - 3, 'every backbone tensor, nothing else');
  const after = await dst.stateDict();
  for (const [n, t0] of sd) {
    if (!n.startsWith('context_branch.backbone.')) continue;
    assert.ok(after.get(n)!.data.every((v, i) => Object.is(v, t0.data[i])), n);
  }
  assert.ok(after.get('fca.ca.fc.weight')!.data.every((v, i) => v === headBefore[i]), 'head untouched');
  src.dispose();
  dst.dispose();
});

t.run();
