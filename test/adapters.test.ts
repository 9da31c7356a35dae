/**
 * Choosing the software GPU: SwiftShader (the default) or Mesa's lavapipe (createEngine's
 * `software`, CANET_SOFTWARE_GPU, bench's --adapter). The lavapipe tests run where lavapipe is
 * installed and Dawn accepts it (Mesa 24+); elsewhere they count as skipped, with the reason.
 * They use tiny shapes (small tiles, which compile fast): on a cold Mesa shader cache lavapipe
 * compiles large unrolled kernels for minutes (issue 22).
 */
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine, chooseSoftwareGPU, softwareDriverName, LAVAPIPE_ICD, adapterKey, type Engine } from '../entry/node.js';
import { conv2d } from '../engine/ops/conv2d.js';
import { imageToTensor } from '../engine/ops/preprocess.js';
import { canet } from '../net/canet.js';
import { engineOptionsFromArgs, parseArgs } from '../bench/timing.js';
import { suite } from './harness.js';
import { randn, rng } from './gpu.js';

const t = suite('adapters');

const distIndex = new URL('../node/index.js', import.meta.url).href;

/** Runs `code` (an ES module) in a child Node with extra environment; `unset` removes variables. */
function runNode(code: string, env: Record<string, string> = {}, unset: string[] = []): { stdout: string; stderr: string; status: number | null } {
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
  for (const k of unset) delete childEnv[k];
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { env: childEnv, encoding: 'utf8', timeout: 120_000 });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

t('CANET_SOFTWARE_GPU and the software option: swiftshader by default, bad values refused', () => {
  assert.is(chooseSoftwareGPU(undefined, {}), 'swiftshader');
  assert.is(chooseSoftwareGPU(undefined, { CANET_SOFTWARE_GPU: '' }), 'swiftshader');
  assert.is(chooseSoftwareGPU(undefined, { CANET_SOFTWARE_GPU: 'lavapipe' }), 'lavapipe');
  assert.is(chooseSoftwareGPU(undefined, { CANET_SOFTWARE_GPU: ' LavaPipe ' }), 'lavapipe');
  assert.is(chooseSoftwareGPU(undefined, { CANET_SOFTWARE_GPU: 'swiftshader' }), 'swiftshader');
  // The option wins over the environment.
  assert.is(chooseSoftwareGPU('swiftshader', { CANET_SOFTWARE_GPU: 'lavapipe' }), 'swiftshader');
  assert.is(chooseSoftwareGPU('lavapipe', {}), 'lavapipe');
  assert.throws(() => chooseSoftwareGPU(undefined, { CANET_SOFTWARE_GPU: 'llvm' }), (e: Error) => /CANET_SOFTWARE_GPU is 'llvm'.*'swiftshader' and 'lavapipe'/.test(e.message));
  assert.throws(() => chooseSoftwareGPU('mesa', {}), (e: Error) => /createEngine\(\{ software \}\) is 'mesa'/.test(e.message));
});

t('createEngine refuses a bad software value before creating anything', async () => {
  let err: Error | undefined;
  try {
    await createEngine({ software: 'vulkan' as 'lavapipe', quiet: true });
  } catch (e) {
    err = e as Error;
  }
  assert.ok(err, 'expected an error');
  assert.match(err!.message, /software \}\) is 'vulkan'; the software GPUs are 'swiftshader' and 'lavapipe'/);
  const r = runNode(`import { createEngine } from '${distIndex}';
    try { await createEngine({ quiet: true }); console.log('created'); } catch (e) { console.log(e.message); }`, { CANET_SOFTWARE_GPU: 'lvp' });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /CANET_SOFTWARE_GPU is 'lvp'/);
});

t('lavapipe asked for but missing, or refused by Dawn: the error names the install command', () => {
  const code = `import { createEngine } from '${distIndex}';
    try { await createEngine({ forceSoftware: true }); console.log('created'); } catch (e) { console.log(e.message); }`;
  const missing = runNode(code, { CANET_SOFTWARE_GPU: 'lavapipe', CANET_LAVAPIPE_ICD: '/nonexistent/lvp_icd.json' });
  assert.is(missing.status, 0, missing.stderr);
  assert.match(missing.stdout, /lavapipe software GPU was asked for/);
  assert.match(missing.stdout, /\/nonexistent\/lvp_icd\.json does not exist/);
  assert.match(missing.stdout, /apt-get install -y -t bookworm-backports mesa-vulkan-drivers/);
  // An ICD file whose driver cannot load stands for one Dawn refuses (as it refuses Mesa 22's).
  const dir = mkdtempSync(join(tmpdir(), 'canet-lvp-'));
  const fake = join(dir, 'lvp_icd.json');
  writeFileSync(fake, JSON.stringify({ file_format_version: '1.0.0', ICD: { library_path: join(dir, 'libvulkan_none.so'), api_version: '1.3.230' } }));
  const refused = runNode(code, { CANET_SOFTWARE_GPU: 'lavapipe', CANET_LAVAPIPE_ICD: fake });
  assert.is(refused.status, 0, refused.stderr);
  assert.match(refused.stdout, /Dawn refused the lavapipe driver at .*\(Vulkan 1\.3\.230\): it needs Mesa 24 or newer/);
  assert.match(refused.stdout, /bookworm-backports/);
});

t('bench --adapter / --software: software GPUs by name, other names match hardware adapters', () => {
  const saved = { gpu: process.env.CANET_SOFTWARE_GPU, force: process.env.CANET_FORCE_SOFTWARE };
  try {
    assert.equal(engineOptionsFromArgs(parseArgs([])), {});
    assert.equal(engineOptionsFromArgs(parseArgs(['--adapter', 'nvidia'])), { adapter: 'nvidia' });
    assert.equal(engineOptionsFromArgs(parseArgs(['--adapter', 'Lavapipe'])), { software: 'lavapipe', forceSoftware: true });
    assert.is(process.env.CANET_SOFTWARE_GPU, 'lavapipe', 'the TF.js peer child uses the same driver');
    assert.equal(engineOptionsFromArgs(parseArgs(['--software=swiftshader'])), { software: 'swiftshader', forceSoftware: true });
    assert.throws(() => engineOptionsFromArgs(parseArgs(['--software', 'mesa'])), /--software is 'mesa'; the software GPUs are swiftshader and lavapipe/);
    assert.throws(() => engineOptionsFromArgs(parseArgs(['--adapter'])), /--adapter needs a value/);
  } finally {
    for (const [k, v] of [['CANET_SOFTWARE_GPU', saved.gpu], ['CANET_FORCE_SOFTWARE', saved.force]] as const)
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
});

t('ensure-gpu copies the machine\'s Debian entry (URIs, Signed-By) for bookworm-backports', async () => {
  // A plain path in a variable: esbuild still bundles the script (its main part runs only as a script).
  const { debianEntryFields } = (await import('../scripts/ensure-gpu.js' as string)) as { debianEntryFields: (s: [string, string][]) => string | null };
  const deb822 = [
    'Types: deb',
    '# http://snapshot.debian.org/archive/debian/20250520T000000Z',
    'URIs: http://mirror.example/debian',
    'Suites: bookworm bookworm-updates',
    'Components: main',
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
    '',
    'Types: deb',
    'URIs: http://mirror.example/debian-security',
    'Suites: bookworm-security',
    'Components: main',
  ].join('\n');
  assert.is(
    debianEntryFields([['/etc/apt/sources.list.d/other.list', 'deb https://x.example/apt stable main\n'], ['/etc/apt/sources.list.d/debian.sources', deb822]]),
    'URIs: http://mirror.example/debian\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg',
  );
  // Security first, a disabled stanza, no Signed-By (apt's trusted keys): copied as it is.
  const reordered = 'Types: deb\nURIs: http://s.example/debian-security\nSuites: bookworm-security\n\nEnabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n\nTypes: deb deb-src\nURIs: http://a.example/debian http://b.example/debian\nSuites: bookworm\nComponents: main\n';
  assert.is(debianEntryFields([['/etc/apt/sources.list.d/debian.sources', reordered]]), 'URIs: http://a.example/debian http://b.example/debian');
  // One-line format, with and without signed-by.
  assert.is(
    debianEntryFields([['/etc/apt/sources.list', '# deb http://old.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n']]),
    'URIs: http://m.example/debian\nSigned-By: /k.gpg',
  );
  assert.is(debianEntryFields([['/etc/apt/sources.list', 'deb http://m.example/debian bookworm main\n']]), 'URIs: http://m.example/debian');
  assert.is(debianEntryFields([['/etc/apt/sources.list', 'deb http://m.example/debian trixie main\n']]), null);
});

t('the default stays SwiftShader with lavapipe installed beside it; its notice names SwiftShader', () => {
  const r = runNode(`import { createEngine } from '${distIndex}';
    const e = await createEngine({ forceSoftware: true }); console.log(JSON.stringify(e.adapter)); e.destroy();`, {}, ['CANET_SOFTWARE_GPU', 'VK_ICD_FILENAMES', 'VK_LOADER_DRIVERS_DISABLE']);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /using the SwiftShader software GPU \(SwiftShader/);
  assert.match(JSON.parse(r.stdout.trim()).description, /SwiftShader/);
});

// --- On lavapipe, where it is installed and Dawn accepts it ---

let lavapipe: Engine | undefined;
let unavailable = '';
if (!existsSync(LAVAPIPE_ICD)) unavailable = `lavapipe is not installed (no ${LAVAPIPE_ICD})`;
else {
  try {
    lavapipe = await createEngine({ software: 'lavapipe', forceSoftware: true, quiet: true });
  } catch (e) {
    unavailable = (e as Error).message.split('\n')[0]!;
  }
}
const onLavapipe = (name: string, fn: () => Promise<void>, opts?: { timeoutMs?: number }): void => {
  if (lavapipe) t(`lavapipe: ${name}`, fn, opts);
  else t.skip(`lavapipe: ${name} (skipped: ${unavailable})`);
};
if (!lavapipe) console.log(`adapters: the lavapipe tests are skipped: ${unavailable}`);

let swiftshader: Promise<Engine> | undefined;
const swiftshaderEngine = (): Promise<Engine> => (swiftshader ??= createEngine({ software: 'swiftshader', forceSoftware: true, quiet: true }));

onLavapipe('the adapter says llvmpipe, is software, has shader-f16, and tunes apart from SwiftShader', async () => {
  const e = lavapipe!;
  assert.match(e.adapter.description, /llvmpipe/);
  assert.ok(e.adapter.isSoftware);
  assert.is(softwareDriverName(e.adapter), 'lavapipe');
  assert.ok(e.features.has('shader-f16'), `features: ${[...e.features].join(', ')}`);
  const s = await swiftshaderEngine();
  assert.is(softwareDriverName(s.adapter), 'SwiftShader');
  assert.not.equal(adapterKey(e), adapterKey(s), 'tuning tables keep the two drivers apart');
  // The notice of a process that picks lavapipe names it (CANET_SOFTWARE_GPU, as the CLI and tests use).
  const r = runNode(`import { createEngine } from '${distIndex}';
    const e = await createEngine({ forceSoftware: true }); console.log(JSON.stringify(e.adapter)); e.destroy();`, { CANET_SOFTWARE_GPU: 'lavapipe' });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /using the lavapipe software GPU \(llvmpipe/);
});

/** Largest |a - b| over max |b|. */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / (m || 1);
}

onLavapipe('a small conv2d equals SwiftShader\'s', async () => {
  const s = await swiftshaderEngine();
  const x = Float32Array.from(randn(1 * 12 * 10 * 8, 1));
  const w = Float32Array.from(randn(16 * 3 * 3 * 8, 2));
  const b = Float32Array.from(randn(16, 3));
  const run = async (e: Engine) =>
    e.scope(() => conv2d(e.tensor(x, [1, 12, 10, 8]), e.tensor(w, [16, 3, 3, 8]), e.tensor(b, [16]), { stride: 2, padding: 1 }).read());
  const [got, want] = [await run(lavapipe!), await run(s)];
  assert.is(got.length, 1 * 6 * 5 * 16);
  assert.ok(relDiff(got, want) < 1e-5, `relative difference ${relDiff(got, want)}`);
});

onLavapipe(
  'CANet-MobileNetV2 width 0.125 at 64x32: logits within 1e-4 of SwiftShader\'s, class ids equal but for near ties',
  async () => {
    const s = await swiftshaderEngine();
    const r = rng(7);
    const img = Uint8Array.from({ length: 32 * 64 * 3 }, () => Math.floor(r() * 256));
    const run = async (e: Engine) => {
      const m = canet(e, { classes: 19, width: 0.125, seed: 3 }).eval();
      try {
        return await e.scope(async () => {
          const x = imageToTensor(e, { data: img, width: 64, height: 32, channels: 3 });
          const logits = await e.noGrad(() => m.forward(x)).read();
          const ids = await m.segment(x).read();
          return { logits, ids };
        });
      } finally {
        m.dispose();
      }
    };
    const got = await run(lavapipe!);
    const want = await run(s);
    const d = relDiff(got.logits, want.logits);
    assert.ok(d < 1e-4, `logits differ by ${d} of their largest magnitude`);
    // Different summation orders can flip the argmax where the top two logits (nearly) tie: allow
    // a few pixels, each of them a near tie in SwiftShader's logits.
    let maxAbs = 0;
    for (const v of want.logits) maxAbs = Math.max(maxAbs, Math.abs(v));
    let flips = 0;
    for (let p = 0; p < want.ids.length; p++) {
      if (got.ids[p] === want.ids[p]) continue;
      flips++;
      const a = want.logits[p * 19 + want.ids[p]!]!;
      const b = want.logits[p * 19 + got.ids[p]!]!;
      assert.ok(Math.abs(a - b) <= 1e-4 * maxAbs, `pixel ${p}: class ${got.ids[p]} on lavapipe, ${want.ids[p]} on SwiftShader, logits ${b} vs ${a}`);
    }
    assert.ok(flips <= 4, `${flips} of ${want.ids.length} class ids differ`);
  },
  // The whole network compiles here: a minute or two on a cold Mesa shader cache.
  { timeoutMs: 600_000 },
);

t.after(async () => {
  lavapipe?.destroy();
  if (swiftshader) (await swiftshader).destroy();
});

t.run();
