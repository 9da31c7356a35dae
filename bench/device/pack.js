#!/usr/bin/env node
// Builds the device kit (bench/device/README.md): a self-contained folder that runs the benchmark
// and the PyTorch peer on an x86-64 Linux GPU machine with no Node, npm or network.
//   node scripts/build.js && node bench/device/pack.js [OUTDIR] [--xz-level N] [--deb FILE]
// OUTDIR defaults to device-kit/ at the repository root (ignored by git; pass it as `carry`).
// The folder holds: this Node (process.execPath) and the linux-x64 dawn.node, both xz'd; this
// machine's libstdc++ (xz'd, used only where the GPU machine's is too old for dawn.node); Debian's
// libvulkan1 .deb (apt-get download); app/ (the built benchmark's files and nothing else, the
// `webgpu` package's JS, the demo weights, combine.js); torch_canet.py; run.sh; manifest.json.
// The xz'd binaries are cached in ~/.cache/canet-gpu/device-kit (keyed by file, size, mtime, level).
// Exit status 4: the libvulkan1 .deb could not be downloaded (no network or no apt).
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { homedir, tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const MAX_BYTES = 56 * 2 ** 20; // the GPU machine receives 64 MiB in all, the repository included

const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  argv.splice(i, 2);
  return v;
};
const level = Number(opt('xz-level') ?? 6);
const debArg = opt('deb');
const out = resolve(argv[0] ?? join(root, 'device-kit'));

function fail(msg, status = 1) {
  console.error(`pack: ${msg}`);
  process.exit(status);
}

if (process.platform !== 'linux' || process.arch !== 'x64')
  fail(`the kit carries this machine's Node and Dawn for an x86-64 Linux GPU machine, but this is ${process.platform}-${process.arch}: build it on x86-64 Linux`);
if (!(level >= 0 && level <= 9)) fail(`--xz-level must be 0-9, got ${level}`);
for (const f of ['dist/bench/run.js', 'dist/bench/device/probe.js'])
  if (!existsSync(join(root, f))) fail(`${f} is missing: run \`node scripts/build.js\` first`);
const dawn = join(root, 'node_modules/webgpu/dist/linux-x64/dawn.node');
if (!existsSync(dawn)) fail(`${dawn} is missing: run \`npm ci\` first`);
if (out === root || root.startsWith(out + '/')) fail(`refusing to write the kit over ${out}`);
// OUTDIR is replaced whole: only when it is empty or an earlier kit (it has the manifest).
if (existsSync(out) && readdirSync(out).length && !existsSync(join(out, 'manifest.json')))
  fail(`${out} exists and is not a device kit (no manifest.json): refusing to replace it; name a new folder`);

/** `src` xz'd at `level` into `dest`, through the cache. */
function xzInto(src, dest) {
  const st = statSync(src);
  const cacheDir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'canet-gpu', 'device-kit');
  const cached = join(cacheDir, `${basename(src)}-${st.size}-${Math.round(st.mtimeMs)}-${level}.xz`);
  if (!existsSync(cached)) {
    mkdirSync(cacheDir, { recursive: true });
    const t0 = Date.now();
    const r = spawnSync('xz', [`-${level}`, '-T2', '-c', src], { maxBuffer: 256 * 2 ** 20 });
    if (r.error || r.status !== 0) fail(`xz ${src}: ${r.error?.message ?? r.stderr}`);
    writeFileSync(cached + '.tmp', r.stdout);
    copyFileSync(cached + '.tmp', cached);
    rmSync(cached + '.tmp');
    console.log(`  xz -${level} ${src}: ${mb(st.size)} -> ${mb(r.stdout.length)} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  copyFileSync(cached, dest);
}

const mb = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** The libstdc++ this Node process loaded (dawn.node needs its GLIBCXX version). */
function libstdcxx() {
  const maps = readFileSync('/proc/self/maps', 'utf8');
  const m = maps.match(/\s(\/\S*libstdc\+\+\.so\.6\S*)\s*$/m);
  if (!m) fail('cannot find the libstdc++ this Node loaded (/proc/self/maps)');
  return m[1];
}

/** Debian's libvulkan1 .deb for amd64: --deb FILE, else the cache, else apt-get download (after apt-get update). */
function vulkanDeb(dir) {
  if (debArg) {
    if (!existsSync(debArg)) fail(`--deb ${debArg}: no such file`);
    return resolve(debArg);
  }
  const cacheDir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'canet-gpu', 'device-kit');
  const cached = existsSync(cacheDir) ? readdirSync(cacheDir).find((f) => /^libvulkan1_.*_amd64\.deb$/.test(f)) : undefined;
  if (cached) return join(cacheDir, cached);
  const download = () => spawnSync('apt-get', ['download', 'libvulkan1:amd64'], { cwd: dir, encoding: 'utf8' });
  let r = download();
  if (r.error || r.status !== 0) {
    console.log('  apt-get download libvulkan1 failed; apt-get update, then again');
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
    r = download();
  }
  const deb = readdirSync(dir).find((f) => /^libvulkan1_.*_amd64\.deb$/.test(f));
  if (r.error || r.status !== 0 || !deb)
    fail(`cannot download Debian's libvulkan1 (apt-get download libvulkan1:amd64: ${r.error?.message ?? r.stderr?.trim()}); pass a .deb with --deb FILE`, 4);
  mkdirSync(cacheDir, { recursive: true });
  copyFileSync(join(dir, deb), join(cacheDir, deb));
  return join(dir, deb);
}

/** Files of dist/ that `entries` import, transitively (relative imports; esbuild's output). */
function importClosure(entries) {
  const seen = new Set();
  const bare = new Set();
  const todo = [...entries];
  while (todo.length) {
    const f = todo.pop();
    if (seen.has(f)) continue;
    seen.add(f);
    const src = readFileSync(join(root, f), 'utf8');
    for (const m of src.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']/g)) {
      const spec = m[1];
      if (spec.startsWith('.')) todo.push(relative(root, resolve(root, dirname(f), spec)));
      else bare.add(spec);
    }
  }
  const foreign = [...bare].filter((s) => !s.startsWith('node:') && s !== 'webgpu');
  if (foreign.length) fail(`the benchmark now imports ${foreign.join(', ')}: the kit carries only 'webgpu' (add it to bench/device/pack.js)`);
  return [...seen].sort();
}

const t0 = Date.now();
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'app'), { recursive: true });
writeFileSync(join(out, 'manifest.json'), '{ "building": true }\n'); // marks the folder as a kit at once
const tmp = mkdtempSync(join(tmpdir(), 'canet-kit-pack-'));
try {
  console.log(`pack: building the device kit in ${out}`);
  const put = (src, rel) => {
    mkdirSync(dirname(join(out, rel)), { recursive: true });
    copyFileSync(src, join(out, rel));
  };
  for (const f of importClosure(['dist/bench/run.js', 'dist/bench/device/probe.js'])) {
    put(join(root, f), join('app', f));
    if (existsSync(join(root, f + '.map'))) put(join(root, f + '.map'), join('app', f + '.map'));
  }
  writeFileSync(join(out, 'app/package.json'), JSON.stringify({ name: 'canet-gpu-device-kit', private: true, type: 'module' }, null, 2) + '\n');
  for (const f of ['package.json', 'index.js', 'LICENSE.md']) put(join(root, 'node_modules/webgpu', f), join('app/node_modules/webgpu', f));
  put(join(here, 'combine.js'), 'app/combine.js');
  for (const f of ['demo.safetensors', 'demo.json']) put(join(root, 'weights', f), join('app/weights', f));
  put(join(here, 'torch_canet.py'), 'torch_canet.py');
  put(join(here, 'run.sh'), 'run.sh');
  chmodSync(join(out, 'run.sh'), 0o755);
  put(join(here, 'README.md'), 'README.md');
  xzInto(process.execPath, join(out, 'node.xz'));
  xzInto(dawn, join(out, 'dawn.node.xz'));
  xzInto(libstdcxx(), join(out, 'libstdc++.so.6.xz'));
  const deb = vulkanDeb(tmp);
  put(deb, basename(deb));

  const files = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (relative(out, p) !== 'manifest.json') files.push({ path: relative(out, p), bytes: statSync(p).size });
    }
  };
  walk(out);
  const git = (...a) => {
    try {
      return execFileSync('git', a, { cwd: root, encoding: 'utf8' }).trim();
    } catch {
      return null;
    }
  };
  const total = files.reduce((s, f) => s + f.bytes, 0);
  const manifest = {
    built: new Date().toISOString(),
    commit: git('rev-parse', 'HEAD'),
    dirty: git('status', '--porcelain')?.length ? true : false,
    node: process.version,
    xzLevel: level,
    bytes: total,
  };
  writeFileSync(join(out, 'manifest.json'), JSON.stringify({ ...manifest, files }, null, 2) + '\n');
  const big = files.filter((f) => f.bytes > 2 ** 20).sort((a, b) => b.bytes - a.bytes);
  for (const f of big) console.log(`  ${f.path.padEnd(40)} ${mb(f.bytes).padStart(10)}`);
  console.log(`  ${`${files.length - big.length} other files`.padEnd(40)} ${mb(files.filter((f) => f.bytes <= 2 ** 20).reduce((s, f) => s + f.bytes, 0)).padStart(10)}`);
  console.log(`pack: ${out}: ${files.length + 1} files, ${mb(total)} in all (limit ${mb(MAX_BYTES)}), in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (total > MAX_BYTES) fail(`the kit is ${mb(total)}, over ${mb(MAX_BYTES)}: the GPU machine receives at most 64 MiB with the repository`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
