/**
 * The package as a user gets it: `npm pack`, the tarball installed (with Dawn, the optional peer
 * `webgpu`) into a new folder outside the repository, and used from there:
 * (a) an ESM and (b) a CommonJS script segment the bundled sample with the bundled model, found
 * through the package's own API (demoFiles, loadModelFile), and get the ids this checkout gets;
 * (c) `tsc --noEmit` under `strict` compiles a Node example (node16 resolution) and a browser
 * example (bundler resolution) with no configuration beyond the compiler's own, and the browser
 * resolution refuses a Node-only import; (d) `npx canet segment` works there with the default
 * weights; the README's Node example runs as pasted and its browser example type-checks; (e) esbuild bundles the browser example for the browser with no Node built-in.
 * Plus what the tarball holds (no tests, no source maps, no sources) and its size, and that
 * createEngine leaves process.env and the temporary folder as it found them.
 *
 * One install serves every case. The package's dependencies come from npm's cache (`npm ci`
 * filled it), so the test needs no network where the suite already ran `npm ci`.
 */
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './harness.js';
import { testEngine } from './gpu.js';
import { demoFiles, loadModelFile, readImage, imageToTensor } from '../entry/node.js';

const t = suite('consumer');
const root = process.cwd();
const work = mkdtempSync(join(tmpdir(), 'canet-consumer-'));
const app = join(work, 'app');
const node = process.execPath;
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const esbuild = join(root, 'node_modules', '.bin', 'esbuild');
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string; devDependencies: Record<string, string> };
/** The network size of these runs: small, so each process compiles its pipelines in seconds. */
const [W, H] = [64, 32];

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}) {
  const r = spawnSync(cmd, args, { cwd: opts.cwd ?? app, encoding: 'utf8', timeout: opts.timeoutMs ?? 240_000, env: opts.env ?? { ...process.env, CANET_DEBUG: '' } });
  return { code: r.status, out: r.stdout ?? '', err: r.stderr ?? '', all: `${r.stdout ?? ''}\n${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}` };
}
/** The first code block under the README heading that starts with `heading`: what a user pastes. */
function readmeBlock(heading: string): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const at = readme.indexOf(`\n## ${heading}`);
  const m = at < 0 ? null : /```(?:js|ts)\n([\s\S]*?)```/.exec(readme.slice(at));
  if (!m) throw new Error(`README.md has no code block under "## ${heading}"`);
  return m[1]!;
}
const npm = (args: string[], cwd = app) => run(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, { cwd });

let tarball = '';
let installed = false;
/** The ids this checkout computes for the bundled sample at W x H: what every consumer must get. */
let expected: Int32Array | null = null;

t('npm pack: the tarball holds the library, the CLI, the types and the demo files, and nothing of the repository besides (no tests, maps or sources)', async () => {
  // Declarations only: the JavaScript under dist/ was built by `npm test`, and other test files
  // are running from dist/test now (a full build would delete it under them).
  const b = run(node, ['scripts/build.js', '--types-only'], { cwd: root });
  assert.is(b.code, 0, b.all);
  const p = npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], root);
  assert.is(p.code, 0, p.all);
  const [info] = JSON.parse(p.out) as [{ filename: string; unpackedSize: number; files: { path: string; size: number }[] }];
  tarball = join(work, info.filename);
  const paths = info.files.map((f) => f.path);
  for (const f of ['dist/node/index.js', 'dist/cli/main.js', 'dist/browser/canet-gpu.js', 'dist/browser/canet-gpu.d.ts', 'dist/types/index.d.ts', 'bin/canet.js', 'weights/demo.safetensors', 'weights/sample.png', 'package.json', 'README.md'])
    assert.ok(paths.includes(f), `${f} is missing from the tarball`);
  const stray = paths.filter((f) => /\.map$|^dist\/(test|bench|web|chunks|test-browser)\/|\.ts$/.test(f) && !f.endsWith('.d.ts'));
  assert.equal(stray, [], 'files a user does not need');
  const weights = info.files.filter((f) => f.path.startsWith('weights/')).reduce((n, f) => n + f.size, 0);
  const code = info.unpackedSize - weights;
  // The issue's budget: about 3 MB unpacked besides the weights (1.35 MB on 2026-12-06).
  assert.ok(code < 3_000_000, `the package is ${(code / 1e6).toFixed(2)} MB unpacked besides the ${(weights / 1e6).toFixed(2)} MB of weights`);
}, { timeoutMs: 180_000 });

t('npm install of the tarball and webgpu into a new folder outside the repository', () => {
  assert.ok(tarball, 'no tarball (the pack test failed)');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer-app', private: true, type: 'module' }));
  const webgpu = manifest.devDependencies.webgpu!;
  const r = npm(['install', tarball, `webgpu@${webgpu}`, '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts']);
  assert.is(r.code, 0, r.all);
  assert.ok(existsSync(join(app, 'node_modules', 'canet-gpu', 'dist', 'node', 'index.js')));
  installed = true;
}, { timeoutMs: 180_000 });

t('this checkout segments the sample (the reference for the installed package)', async () => {
  const engine = await testEngine();
  const { model } = await loadModelFile(engine, demoFiles().model);
  try {
    assert.is(model.training, false, 'a loaded model file is in eval mode');
    const x = imageToTensor(engine, await readImage(demoFiles().sample), { outWidth: W, outHeight: H });
    const ids = model.segment(x);
    expected = await ids.readInt32();
    ids.dispose();
    x.dispose();
  } finally {
    model.dispose();
  }
});

const ESM = `
import { createEngine, loadModelFile, demoFiles, readImage, imageToTensor } from 'canet-gpu';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
const keys = ['VK_ICD_FILENAMES', 'VK_LOADER_DRIVERS_DISABLE', 'XDG_RUNTIME_DIR'];
const before = JSON.stringify(keys.map((k) => process.env[k] ?? null));
const engine = await createEngine({ quiet: true });
const { model } = await loadModelFile(engine, demoFiles().model);
const x = imageToTensor(engine, await readImage(demoFiles().sample), { outWidth: ${W}, outHeight: ${H} });
const ids = await model.segment(x).readInt32();
engine.destroy();
const after = JSON.stringify(keys.map((k) => process.env[k] ?? null));
const left = readdirSync(tmpdir()).filter((f) => f.startsWith('canet-gpu-'));
console.log(JSON.stringify({ ids: Array.from(ids), training: model.training, envSame: before === after, left }));
`;

const CJS = `
const { createEngine, loadModelFile, demoFiles, readImage, imageToTensor } = require('canet-gpu');
(async () => {
  const engine = await createEngine({ quiet: true });
  const { model } = await loadModelFile(engine, demoFiles().model);
  const x = imageToTensor(engine, await readImage(demoFiles().sample), { outWidth: ${W}, outHeight: ${H} });
  const ids = await model.segment(x).readInt32();
  engine.destroy();
  console.log(JSON.stringify({ ids: Array.from(ids), training: model.training }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

/** The JSON line a consumer script printed last. */
function lastJson(out: string): { ids: number[]; training: boolean; envSame?: boolean; left?: string[] } {
  const line = out.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as ReturnType<typeof lastJson>;
}

t('(a) an ESM script: bundled model and sample through the package API give this checkout\'s ids; createEngine leaves process.env and the temporary folder as it found them', () => {
  assert.ok(installed && expected, 'install or reference failed');
  writeFileSync(join(app, 'segment.mjs'), ESM);
  // An empty temporary folder of its own and no XDG_RUNTIME_DIR: createEngine makes one there.
  const tmp = mkdtempSync(join(work, 'tmp-'));
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp, CANET_DEBUG: '' };
  delete env.XDG_RUNTIME_DIR;
  const r = run(node, ['segment.mjs'], { env });
  assert.is(r.code, 0, r.all);
  const got = lastJson(r.out);
  assert.is(got.training, false);
  assert.equal(got.ids, Array.from(expected!));
  assert.ok(got.envSame, 'process.env changed');
  assert.equal(got.left, [], 'left in the temporary folder');
  assert.equal(readdirSync(tmp), [], 'left in the temporary folder after exit');
});

t('(b) a CommonJS script (require) gets the same ids', () => {
  assert.ok(installed && expected, 'install or reference failed');
  writeFileSync(join(app, 'segment.cjs'), CJS);
  const r = run(node, ['segment.cjs']);
  assert.is(r.code, 0, r.all);
  assert.equal(lastJson(r.out).ids, Array.from(expected!));
});

const NODE_EXAMPLE = `
import { createEngine, loadModelFile, demoFiles, readImage, imageToTensor, colorize, resizeClassIds, type Engine } from 'canet-gpu';
const engine: Engine = await createEngine({ software: 'swiftshader' });
const { model, config } = await loadModelFile(engine, demoFiles().model);
const photo = await readImage(demoFiles().sample);
const [w, h] = config.inputSize ?? [512, 256];
const ids: Int32Array = await model.segment(imageToTensor(engine, photo, { outWidth: w, outHeight: h })).readInt32();
const rgba: Uint8Array = colorize(resizeClassIds(ids, w, h, photo.width, photo.height), photo.width, photo.height);
const device: GPUDevice = engine.device;
console.log(rgba.length, device.limits.maxBufferSize);
engine.destroy();
`;

const BROWSER_EXAMPLE = `
import { createEngine, loadModelBytes, Segmenter, colorize, CLASS, type SegmentedFrame } from 'canet-gpu';
const engine = await createEngine();
const { model } = loadModelBytes(engine, await (await fetch('/weights/demo.safetensors')).arrayBuffer());
const segmenter = new Segmenter(model, { width: 512, height: 256 });
const frame: SegmentedFrame = segmenter.segment(document.querySelector('video')!);
const ids: Int32Array = await frame.ids.readInt32();
const texture: GPUTexture = frame.texture;
console.log(CLASS.car, colorize(ids, frame.width, frame.height).length, texture.width);
segmenter.destroy();
engine.destroy();
`;

t('(c) tsc strict: a Node example (node16) and a browser example (bundler) compile with no extra configuration; the browser resolution has no Node-only API', () => {
  assert.ok(installed, 'install failed');
  writeFileSync(join(app, 'node-example.ts'), NODE_EXAMPLE);
  writeFileSync(join(app, 'browser-example.ts'), BROWSER_EXAMPLE);
  writeFileSync(join(app, 'browser-node-api.ts'), `import { readImage } from 'canet-gpu';\nconsole.log(readImage);\n`);
  // "types": [] keeps the compiler from picking up anything installed besides the package: the
  // WebGPU types must come with canet-gpu itself.
  const base = { strict: true, target: 'es2022', noEmit: true, types: [] as string[] };
  const configs: [string, object, string][] = [
    ['tsconfig.node.json', { ...base, module: 'node16', moduleResolution: 'node16' }, 'node-example.ts'],
    ['tsconfig.browser.json', { ...base, module: 'esnext', moduleResolution: 'bundler', lib: ['es2022', 'dom'] }, 'browser-example.ts'],
    ['tsconfig.browser-node-api.json', { ...base, module: 'esnext', moduleResolution: 'bundler', lib: ['es2022', 'dom'] }, 'browser-node-api.ts'],
  ];
  // The README's browser example, as pasted into a TypeScript file (its free names declared).
  writeFileSync(join(app, 'readme-browser.ts'), `declare const videoElement: HTMLVideoElement;\n${readmeBlock('Browser')}\nexport {};\n`);
  configs.push(['tsconfig.readme-browser.json', { ...base, module: 'esnext', moduleResolution: 'bundler', lib: ['es2022', 'dom'] }, 'readme-browser.ts']);
  for (const [file, compilerOptions, source] of configs) writeFileSync(join(app, file), JSON.stringify({ compilerOptions, files: [source] }));
  for (const file of ['tsconfig.node.json', 'tsconfig.browser.json', 'tsconfig.readme-browser.json']) {
    const r = run(node, [tsc, '-p', file]);
    assert.is(r.code, 0, `${file}: ${r.all}`);
  }
  // The check above can fail: a browser build resolving the Node typings would accept this.
  const r = run(node, [tsc, '-p', 'tsconfig.browser-node-api.json']);
  assert.is.not(r.code, 0, 'a browser resolution accepted readImage (Node only)');
  assert.match(r.out, /has no exported member 'readImage'/);
}, { timeoutMs: 180_000 });

t('the README\'s Node example, pasted into the new folder, runs and writes the colour labels at the photo\'s size', () => {
  assert.ok(installed, 'install failed');
  writeFileSync(join(app, 'readme-node.mjs'), readmeBlock('Node'));
  const r = run(node, ['readme-node.mjs']);
  assert.is(r.code, 0, r.all);
  const png = readFileSync(join(app, 'labels.png'));
  // IHDR: width and height, big-endian, at bytes 16 and 20.
  assert.equal([png.readUInt32BE(16), png.readUInt32BE(20)], [512, 256]);
});

t('(d) npx canet segment from the new folder, with the default (bundled) weights', () => {
  assert.ok(installed && expected, 'install or reference failed');
  const sample = join(app, 'node_modules', 'canet-gpu', 'weights', 'sample.png');
  const r = npm(['exec', '--offline', '--', 'canet', 'segment', sample, '--size', `${W}x${H}`, '--out', 'out', '--ids']);
  assert.is(r.code, 0, r.all);
  for (const f of ['sample_labels.png', 'sample_overlay.png', 'sample_ids.png']) assert.ok(existsSync(join(app, 'out', f)), f);
});

t('(e) esbuild bundles the browser example for the browser: no Node built-in reaches it', () => {
  assert.ok(installed, 'install failed');
  const r = run(esbuild, ['browser-example.ts', '--bundle', '--format=esm', '--platform=browser', '--outfile=bundle.js', '--metafile=meta.json', '--log-level=warning']);
  assert.is(r.code, 0, r.all);
  const meta = JSON.parse(readFileSync(join(app, 'meta.json'), 'utf8')) as { inputs: Record<string, unknown> };
  const inputs = Object.keys(meta.inputs);
  assert.ok(inputs.some((f) => f.includes('canet-gpu/dist/browser/canet-gpu.js')), `the browser bundle of canet-gpu was not used: ${inputs.join(', ')}`);
  const bundle = readFileSync(join(app, 'bundle.js'), 'utf8');
  assert.not.match(bundle, /from\s*["']node:|require\(["'](node:)?(fs|path|os|url|child_process)["']\)/);
});

t.after(() => rmSync(work, { recursive: true, force: true }));

t.run();
