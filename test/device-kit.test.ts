/**
 * The device kit (bench/device/): the PyTorch peer has our network (count and names, by its shape
 * walk), and a short dry run of the packed kit on SwiftShader, from a folder outside the
 * repository with no node_modules, using only the carried Node: without --allow-software it stops
 * with status 3; with it, the adapter, ours, the PyTorch attempt and the summary land in OUTDIR.
 * (The full dry run, with the autotuner, takes minutes: bench/device/README.md.)
 */
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canet } from '../net/canet.js';
import { suite } from './harness.js';
import { testEngine } from './gpu.js';

const t = suite('device-kit');
const python = spawnSync('python3', ['--version']).status === 0;

t('torch_canet.py compiles, and its shape walk has our parameter names, sizes and count (4,774,186)', async () => {
  if (!python) return console.log('  skipped: no python3');
  const c = spawnSync('python3', ['-m', 'py_compile', 'bench/device/torch_canet.py'], { encoding: 'utf8' });
  assert.is(c.status, 0, c.stderr);
  const r = spawnSync('python3', ['bench/device/torch_canet.py', '--count-only', '--names'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { parameters: number; parameterShapes: Record<string, number[]>; stateDict: string[] };
  assert.is(doc.parameters, 4_774_186);
  const engine = await testEngine();
  const model = canet(engine, { backbone: 'mobilenetv2', classes: 19 });
  try {
    const ours = new Map(model.namedParameters().map(([n, p]) => [n, p.size]));
    const theirs = new Map(Object.entries(doc.parameterShapes).map(([n, s]) => [n, s.reduce((a, b) => a * b, 1)]));
    assert.equal([...theirs.keys()].sort(), [...ours.keys()].sort());
    for (const [n, size] of ours) assert.is(theirs.get(n), size, n);
    // Every BatchNorm carries its running statistics and counter, as a PyTorch state_dict does.
    assert.is(doc.stateDict.filter((n) => n.endsWith('.running_mean')).length, doc.stateDict.filter((n) => n.endsWith('.num_batches_tracked')).length);
  } finally {
    model.dispose();
  }
  // Where torch imports, the whole timing path once on the CPU (on the GPU machine it runs on CUDA).
  // (pyenv's python3 may lack the torch that Debian's python3-torch put under /usr/bin/python3.)
  const withTorch = ['python3', '/usr/bin/python3'].find((py) => spawnSync(py, ['-c', 'import torch']).status === 0);
  if (withTorch) {
    const dir = mkdtempSync(join(tmpdir(), 'canet-torch-'));
    try {
      const s = spawnSync(withTorch, ['bench/device/torch_canet.py', '--device', 'cpu', '--cases', 'infer:64x32:1,train:64x32:2', '--iters', '1', '--no-compile', '--json', join(dir, 't.json')], { encoding: 'utf8', timeout: 300_000 });
      assert.is(s.status, 0, s.stdout + s.stderr);
      const t = JSON.parse(readFileSync(join(dir, 't.json'), 'utf8'));
      assert.is(t.results.length, 4, JSON.stringify(t.errors));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}, { timeoutMs: 400_000 });

t('the packed kit, from a folder with no node_modules: refuses SwiftShader, and a --dry-run --allow-software writes its files', () => {
  if (process.platform !== 'linux' || process.arch !== 'x64') return console.log('  skipped: the kit is for x86-64 Linux');
  const dir = mkdtempSync(join(tmpdir(), 'canet-kit-test-'));
  try {
    const kit = join(dir, 'kit');
    // xz -0: the test checks the kit works, not how small it is (-6 takes a minute more).
    const p = spawnSync(process.execPath, ['bench/device/pack.js', kit, '--xz-level', '0'], { encoding: 'utf8', timeout: 240_000 });
    if (p.status === 4) return console.log(`  skipped: ${p.stderr.trim()}`);
    assert.is(p.status, 0, p.stdout + p.stderr);
    assert.ok(!existsSync(join(kit, 'node_modules')) && !existsSync(join(kit, 'app/node_modules/webgpu/dist')), 'no Dawn or node_modules unpacked in the kit');
    assert.ok(readdirSync(kit).some((f) => /^libvulkan1_.*_amd64\.deb$/.test(f)), 'the Vulkan loader .deb');
    // Neither the repository's node_modules nor the PATH's node may be used: the kit is in /tmp,
    // and run.sh runs its own Node. No CANET_* variables reach it.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CANET_') && k !== 'NODE_PATH'));
    const refused = spawnSync('bash', [join(kit, 'run.sh'), '--dry-run', join(dir, 'out0')], { encoding: 'utf8', cwd: dir, env, timeout: 120_000 });
    assert.is(refused.status, 3, refused.stdout + refused.stderr);
    assert.match(refused.stdout, /FAIL: the adapter is a SOFTWARE driver/);
    assert.ok(!existsSync(join(dir, 'out0', 'ours.json')), 'nothing benchmarked on a refused adapter');

    // This run takes the GPU machine's fallbacks: the carried Vulkan loader unpacked into /tmp
    // (as where the machine has none and we are not root) and the carried libstdc++.
    const out = join(dir, 'out1');
    const r = spawnSync('bash', [join(kit, 'run.sh'), '--dry-run', '--allow-software', '--cases', 'infer:64x32:1', '--no-tune', out], {
      encoding: 'utf8',
      cwd: dir,
      env: { ...env, KIT_LOCAL_VULKAN: '1', KIT_CARRIED_LIBSTDCXX: '1' },
      timeout: 300_000,
    });
    assert.is(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /LD_LIBRARY_PATH=\S*\/lib:\S*\/vulkan\/usr\/lib\/x86_64-linux-gnu/);
    const files = readdirSync(out).sort();
    assert.ok(files.length <= 8, files.join(' '));
    for (const f of ['adapter.json', 'kit.log', 'ours.json', 'summary.json', 'torch.json']) assert.ok(files.includes(f), `${f} in ${files.join(' ')}`);
    const adapter = JSON.parse(readFileSync(join(out, 'adapter.json'), 'utf8'));
    assert.ok(adapter.adapter.isSoftware && adapter.features.length && adapter.limits.maxStorageBufferBindingSize > 0);
    const ours = JSON.parse(readFileSync(join(out, 'ours.json'), 'utf8'));
    assert.is(ours.results.length, 1);
    assert.equal([ours.results[0].mode, ours.results[0].size, ours.results[0].batch, ours.results[0].parameters], ['infer', [64, 32], 1, 4_774_186]);
    assert.ok(ours.results[0].medianMs > 0 && Array.isArray(ours.results[0].profile));
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    assert.is(summary.rows.length, 1);
    assert.is(summary.rows[0].case, 'infer 64x32 b1');
    assert.match(readFileSync(join(out, 'kit.log'), 'utf8'), /done: all steps passed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, { timeoutMs: 600_000 });

t.run();
