/**
 * The TF.js peer of the benchmark (bench/peers/): the same network as ours, checked number for
 * number, and `bench/run.js --peers` runs it and reports the ratio. TF.js runs in child processes
 * (it keeps global state and needs WebGPU globals our engine never creates), so these tests spawn
 * the built programs. The number-for-number check runs on TF.js WASM to stay fast; on WebGPU it is
 * `node bench/peers/tfjs.js --check --backend webgpu` (1-2 minutes on SwiftShader, mostly TF.js's
 * shader compilation), while the run test below has the WebGPU peer run on our engine's device.
 */
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './harness.js';

const t = suite('peers');
const tmpJson = () => join(mkdtempSync(join(tmpdir(), 'canet-peers-')), 'out.json');

t('TF.js network = ours: every tensor name and shape, 4,774,186 parameters, logits, loss and one SGD step', () => {
  const json = tmpJson();
  const r = spawnSync(process.execPath, ['bench/peers/tfjs.js', '--check', '--backend', 'wasm', '--size', '64x64', '--batch', '2', '--json', json], { encoding: 'utf8', timeout: 170_000 });
  assert.is(r.status, 0, r.stderr + r.stdout);
  const c = JSON.parse(readFileSync(json, 'utf8'));
  assert.is(c.ourParameters, 4_774_186);
  assert.is(c.peerParameters, 4_774_186);
  assert.equal(c.onlyOurs, []);
  assert.equal(c.onlyPeer, []);
  assert.equal(c.shapeMismatches, []);
  // Our weights with random batch-norm statistics, in both. Inference is close to f32 rounding;
  // training-mode batch norm over few pixels deep in the backbone amplifies rounding, and TF.js
  // WASM reduces in f32 (its updates differ ~1e-2 normwise where TF.js's float64-accumulating CPU
  // backend differs ~2e-4): loose enough for that, far below what a wrong layer gives (~1).
  assert.ok(c.inferLogits.relative < 1e-4, `inference logits differ by ${c.inferLogits.relative}`);
  assert.ok(c.trainLogits.relative < 1e-3, `training logits differ by ${c.trainLogits.relative}`);
  assert.ok(Math.abs(c.loss.ours - c.loss.peer) < 1e-4 * Math.abs(c.loss.ours), `loss ${c.loss.ours} vs ${c.loss.peer}`);
  assert.ok(c.updates.overall < 3e-2, `SGD updates differ by ${c.updates.overall} overall`);
  assert.ok(c.updates.relative < 0.1, `SGD update of ${c.updates.worst} differs by ${c.updates.relative}`);
  assert.ok(c.updates.zeroGradientBiases < 1e-3, `biases before batch norm moved by ${c.updates.zeroGradientBiases}`);
  assert.ok(c.runningStats.relative < 1e-3, `running statistic ${c.runningStats.worst} differs by ${c.runningStats.relative}`);
  // 20.3 G multiply-adds at 1024x512 (NETWORK.md) is 1/128 of that at 64x64.
  assert.ok(Math.abs(c.forwardGmacPerImage - 20.3 / 128) < 0.03 * (20.3 / 128), `forward ${c.forwardGmacPerImage} GMAC`);
}, { timeoutMs: 180_000 });

t('bench/run.js --peers: our time, each peer time and the ratio; TF.js WebGPU on our engine device', () => {
  const json = tmpJson();
  const r = spawnSync(process.execPath, ['bench/run.js', '--peers', 'tfjs-webgpu,tfjs-wasm', '--size', '64x64', '--infer', '--iters', '1', '--json', json], { encoding: 'utf8', timeout: 170_000 });
  assert.is(r.status, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /ours vs TF\.js/);
  const doc = JSON.parse(readFileSync(json, 'utf8'));
  const [c] = doc.results;
  assert.is(c.parameters, 4_774_186);
  const [gpu, wasm] = c.peers;
  assert.is(gpu.peer, 'tfjs-webgpu', JSON.stringify(gpu));
  assert.is(gpu.device, 'shared');
  assert.is(gpu.adapter, doc.adapter.description);
  assert.is(wasm.peer, 'tfjs-wasm', JSON.stringify(wasm));
  assert.ok(wasm.threads >= 1);
  for (const p of [gpu, wasm]) {
    assert.is(p.parameters, c.parameters);
    assert.ok(p.medianMs > 0 && p.firstMs > 0, JSON.stringify(p));
  }
  const cell = (p: { medianMs: number }) => ` +${p.medianMs.toFixed(1)} +${(p.medianMs / c.medianMs).toFixed(2)}`;
  assert.match(r.stdout, new RegExp(`infer mobilenetv2 64x64 b1 +${c.medianMs.toFixed(1)}${cell(gpu)}${cell(wasm)}`));
}, { timeoutMs: 180_000 });

t('TF.js stays a benchmark devDependency: the library, the browser bundle and the CLI contain none of it', () => {
  for (const f of ['dist/node/index.js', 'dist/browser/canet-gpu.js', 'dist/cli/main.js', 'dist/bench/run.js']) {
    const text = readFileSync(f, 'utf8');
    assert.not.match(text, /@tensorflow|tfjs-core|WebGPUBackend/, `${f} references TF.js`);
  }
  const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
  for (const name of Object.keys(pkg.dependencies ?? {})) assert.not.match(name, /^@tensorflow\//, `${name} is a runtime dependency`);
  assert.ok(pkg.devDependencies['@tensorflow/tfjs-core'], 'tfjs-core is a devDependency');
});

t.run();
