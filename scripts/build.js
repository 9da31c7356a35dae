#!/usr/bin/env node
// Builds with esbuild: the Node library and the CLI (dist/node, dist/cli), the browser ESM bundle
// (dist/browser), the bench, probe and demo-server programs, the TF.js peer (dist/bench/peers), and
// the tests (dist/test). WGSL files are bundled as text. The package ships dist/node, dist/cli,
// dist/browser and dist/types (package.json "files").
// `--types` also emits .d.ts files with tsc (slow; done by `prepare`).
import { build } from 'esbuild';
import { readdirSync, existsSync, writeFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);
const common = { bundle: true, format: 'esm', sourcemap: true, loader: { '.wgsl': 'text' }, logLevel: 'warning', target: 'es2022' };
const nodeOpts = { ...common, platform: 'node', packages: 'external' };
const fromDir = (dir, re) => (existsSync(dir) ? readdirSync(dir).filter((f) => re.test(f)).map((f) => join(dir, f)) : []);

// `--types-only`: only the declarations (the consumer test packs the package without rebuilding
// the JavaScript under tests that are running from dist/).
const typesOnly = process.argv.includes('--types-only');

/** Every JavaScript output: the library, the browser bundle, the tests, the programs, the pages, the TF.js peer. */
function buildJavaScript() {
  // Outputs of earlier builds go first: esbuild names chunks by content hash, so stale chunks (and
  // tests deleted from test/) would otherwise pile up, be shipped, or be run.
  for (const dir of ['node', 'cli', 'chunks', 'test', 'bench', 'web', 'test-browser']) rmSync(join('dist', dir), { recursive: true, force: true });

  const jobs = [
    // What the package ships for Node: the library and the CLI, sharing their code through chunks
    // in dist/node/chunks, so the CLI and `import 'canet-gpu'` run the same module instances.
    build({ ...nodeOpts, entryPoints: { 'node/index': 'entry/node.ts', 'cli/main': 'cli/main.ts' }, outdir: 'dist', splitting: true, chunkNames: 'node/chunks/[name]-[hash]' }),
    build({ ...common, platform: 'browser', entryPoints: { 'canet-gpu': 'entry/browser.ts' }, outdir: 'dist/browser' }),
  ];
  const tests = fromDir('test', /\.test\.ts$/);
  if (tests.length)
    jobs.push(build({ ...nodeOpts, entryPoints: tests, outdir: 'dist/test', outbase: 'test', splitting: true, chunkNames: 'chunks/[name]-[hash]' }));
  // Node programs of the repository (not shipped): the benchmarks, the device-kit probe, the demo server.
  const programs = ['bench/run.ts', 'bench/kernels.ts', 'bench/device/probe.ts', 'web/server.ts'].filter((f) => existsSync(f));
  if (programs.length) jobs.push(build({ ...nodeOpts, entryPoints: programs, outdir: 'dist', outbase: '.', splitting: true, chunkNames: 'chunks/[name]-[hash]' }));
  // Pages: the demo and the browser test page. They load the library from the shipped bundle
  // (/browser/canet-gpu.js, served beside them) instead of bundling a second copy, so what they
  // exercise is exactly dist/browser/canet-gpu.js; their imports of the package's browser entry (or of its
  // platform-neutral index, which the bundle re-exports) become that URL.
  const libraryFromBundle = {
    name: 'canet-gpu-library-from-bundle',
    setup(b) {
      b.onResolve({ filter: /(^|\/)entry\/(browser|index)\.js$/ }, () => ({ path: '/browser/canet-gpu.js', external: true }));
    },
  };
  const pages = [
    ['web/demo.ts', 'dist/web'],
    ['web/finetune.ts', 'dist/web'],
    ['test/browser/page.ts', 'dist/test-browser'],
  ].filter(([f]) => existsSync(f));
  for (const [entry, outdir] of pages) jobs.push(build({ ...common, platform: 'browser', entryPoints: [entry], outdir, plugins: [libraryFromBundle] }));
  // The TF.js peer of the benchmark (a devDependency, never in the library or the browser bundle):
  // TF.js's training gradients ship only as ES modules with extensionless imports
  // (@tensorflow/tfjs-core/dist/register_all_gradients), which Node cannot load, so this program
  // bundles TF.js from its ES modules; the Emscripten glue of the WASM backend still calls require()
  // and reads __dirname, which the banner provides.
  if (existsSync('bench/peers/tfjs.ts') && existsSync('node_modules/@tensorflow/tfjs-core'))
    jobs.push(build({
      ...common,
      platform: 'node',
      entryPoints: { 'bench/peers/tfjs': 'bench/peers/tfjs.ts' },
      outdir: 'dist',
      external: ['webgpu'],
      mainFields: ['module', 'main'],
      banner: {
        js: "import { createRequire as __peerRequire } from 'node:module'; import { fileURLToPath as __peerPath } from 'node:url'; import { dirname as __peerDir } from 'node:path';\n" +
          'const require = __peerRequire(import.meta.url); const __filename = __peerPath(import.meta.url); const __dirname = __peerDir(__filename);',
      },
    }));
  return Promise.all(jobs);
}
if (!typesOnly) await buildJavaScript();

if (process.argv.includes('--types') || typesOnly) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  // Declarations are emitted even when tsc reports errors; `npm run typecheck` (run by CI) is the
  // gate for type errors, so an install never fails on them.
  if (existsSync(tsc)) {
    rmSync('dist/types', { recursive: true, force: true }); // declarations of moved or deleted modules must not ship
    try {
      execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
    } catch {
      console.warn('build: tsc reported type errors (declarations were still written); run `npm run typecheck`.');
    }
    // Entry declarations for package.json's "types": the Node entry, and the browser bundle's.
    // They name the WebGPU types (GPUDevice, GPUTexture...) that the API uses, from @webgpu/types
    // (a dependency), so a TypeScript user needs no configuration of their own for them.
    const webgpuTypes = '/// <reference types="@webgpu/types" />\n';
    writeFileSync('dist/types/index.d.ts', `${webgpuTypes}export * from './entry/node.js';\n`);
    writeFileSync('dist/browser/canet-gpu.d.ts', `${webgpuTypes}export * from '../types/entry/browser.js';\n`);
  }
}
