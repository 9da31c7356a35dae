#!/usr/bin/env node
// Pre-step of `npm start` and `npm test`: makes sure canet-gpu can find a WebGPU adapter. If Dawn
// finds none, we need SwiftShader, the CPU Vulkan driver in Debian's chromium package, plus the
// Vulkan loader (libvulkan1). As root with apt-get this installs both and says so; otherwise it
// prints the exact command. It never fails the calling script by itself: without an adapter the
// engine throws its own error saying what to install. With --browser (the test pre-step) it also
// makes sure of Xvfb, the X display the headless-Chromium tests draw their WebGPU canvas on.
//
// Mesa's lavapipe (a second CPU Vulkan driver, with shader-f16) is set up only when asked, with
// --lavapipe or CANET_SOFTWARE_GPU=lavapipe: Dawn needs Mesa 24+, which Debian 12 has only in its
// bookworm-backports suite. As root with apt-get on Debian 12 this adds a sources entry for that
// suite (copying the URIs and Signed-By of the machine's own Debian entry) and installs
// mesa-vulkan-drivers from it, saying so; elsewhere it prints the commands. Unasked it installs
// nothing for lavapipe (today's kernels are shaped for SwiftShader, the default: see README).
import { existsSync, readFileSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { spawnSync } from 'node:child_process';

const ICD = process.env.CANET_SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json';
const LVP_ICD = process.env.CANET_LAVAPIPE_ICD ?? '/usr/share/vulkan/icd.d/lvp_icd.json';
const browser = process.argv.includes('--browser');
const lavapipe = process.argv.includes('--lavapipe') || process.env.CANET_SOFTWARE_GPU?.trim().toLowerCase() === 'lavapipe';
const PACKAGES = ['chromium', 'libvulkan1', ...(browser ? ['xvfb'] : [])];
const xvfbMissing = browser && process.platform === 'linux' && !existsSync('/usr/bin/Xvfb');

function loaderPresent() {
  if (process.platform !== 'linux') return true;
  const r = spawnSync('sh', ['-c', 'ldconfig -p 2>/dev/null | grep -q "libvulkan.so.1 "'], { encoding: 'utf8' });
  return r.status === 0;
}

/**
 * Asks Dawn (in a child process, so a crash cannot take this script down) for an adapter: any
 * (driver false), SwiftShader's (true) or lavapipe's ('lavapipe').
 */
function dawnFindsAdapter(driver) {
  const code = `
    const { create } = await import('webgpu');
    ${driver === 'lavapipe' ? 'delete process.env.VK_LOADER_DRIVERS_DISABLE;' : "process.env.VK_LOADER_DRIVERS_DISABLE ??= '*lvp*';"}
    ${driver ? `process.env.VK_ICD_FILENAMES = ${JSON.stringify(driver === 'lavapipe' ? LVP_ICD : ICD)};` : ''}
    const a = await create([]).requestAdapter();
    process.exit(a ? 0 : 3);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' } });
  return r.status === 0;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).status === 0;

// Run as a script (not when a test imports debianEntryFields).
if (process.env.CANET_SKIP_GPU_SETUP !== '1' && process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  ensureSwiftShader();
  if (lavapipe) ensureLavapipe();
}

function ensureSwiftShader() {
  if (existsSync(ICD) && loaderPresent() && !xvfbMissing) return;
  if (process.platform !== 'linux' || (!xvfbMissing && dawnFindsAdapter(false))) return;

  const cmd = `apt-get update && apt-get install -y ${PACKAGES.join(' ')}`;
  if (isRoot && hasApt) {
    console.log(`canet-gpu: installing the SwiftShader software GPU (Debian's chromium) and the Vulkan loader${browser ? ', and Xvfb for the browser tests' : ''}:\n  ${cmd}`);
    const r = spawnSync('sh', ['-c', `export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq ${PACKAGES.join(' ')} >/dev/null`], { stdio: 'inherit' });
    if (r.status !== 0) console.log(`canet-gpu: the install failed (exit ${r.status}); run it yourself:\n  sudo ${cmd}`);
    else console.log(dawnFindsAdapter(true) ? 'canet-gpu: software GPU installed and working.' : 'canet-gpu: installed, but Dawn still finds no adapter; see README "Requirements".');
  } else {
    console.log(xvfbMissing && existsSync(ICD)
      ? `canet-gpu: Xvfb is not installed, so the browser tests will be skipped. To run them:\n  sudo sh -c '${cmd}'`
      : `canet-gpu: no GPU adapter found. To use the SwiftShader software GPU, run:\n  sudo sh -c '${cmd}'`);
  }
}

/** /etc/os-release as an object ({ ID: 'debian', VERSION_CODENAME: 'bookworm', ... }). */
function osRelease() {
  try {
    return Object.fromEntries(
      readFileSync('/etc/os-release', 'utf8')
        .split('\n')
        .map((l) => /^([A-Z_]+)=(.*)$/.exec(l))
        .filter(Boolean)
        .map((m) => [m[1], m[2].replace(/^"(.*)"$/, '$1')]),
    );
  } catch {
    return {};
  }
}

/** Every apt sources file: [path, text]. */
function aptSources() {
  const files = ['/etc/apt/sources.list'];
  try {
    for (const f of readdirSync('/etc/apt/sources.list.d')) if (/\.(list|sources)$/.test(f)) files.push(`/etc/apt/sources.list.d/${f}`);
  } catch {}
  return files.filter((f) => existsSync(f)).map((f) => [f, readFileSync(f, 'utf8')]);
}

/**
 * The `URIs:` and `Signed-By:` lines (with any continuation lines) of the machine's own Debian 12
 * entry, the one for the `bookworm` suite, from a deb822 .sources file or a one-line .list; null
 * when there is none. The backports entry copies them: no archive host is named here.
 */
export function debianEntryFields(sources) {
  for (const [file, text] of sources) {
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const fields = {};
        let key = null;
        for (const line of stanza.split('\n')) {
          if (line.startsWith('#')) continue;
          const m = /^([A-Za-z-]+):(.*)$/.exec(line);
          if (m) fields[(key = m[1].toLowerCase())] = [line];
          else if (key && /^\s/.test(line) && line.trim()) fields[key].push(line);
        }
        const words = (k) => (fields[k] ?? []).join(' ').replace(/^[A-Za-z-]+:/, '').trim().split(/\s+/);
        if (fields.enabled && /no/i.test(words('enabled')[0])) continue;
        if (fields.uris && words('types').includes('deb') && words('suites').includes('bookworm'))
          return [...fields.uris, ...(fields['signed-by'] ?? [])].join('\n');
      }
    } else {
      for (const line of text.split('\n')) {
        const m = /^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+bookworm\s/.exec(line.trim() + ' ');
        if (!m) continue;
        const signedBy = /(?:^|\s)signed-by=(\S+)/.exec(m[1] ?? '');
        return `URIs: ${m[2]}` + (signedBy ? `\nSigned-By: ${signedBy[1]}` : '');
      }
    }
  }
  return null;
}

function ensureLavapipe() {
  if (process.platform !== 'linux') {
    console.log('canet-gpu: lavapipe (Mesa\'s CPU Vulkan driver) is for Linux; on this system use SwiftShader or a GPU.');
    return;
  }
  if (existsSync(LVP_ICD) && loaderPresent() && dawnFindsAdapter('lavapipe')) return;
  const os = osRelease();
  const bookworm = os.ID === 'debian' && os.VERSION_CODENAME === 'bookworm';
  const sources = bookworm ? aptSources() : [];
  const fields = bookworm ? debianEntryFields(sources) : null;
  const hasBackports = sources.some(([, text]) => text.split('\n').some((l) => !l.trim().startsWith('#') && /\bbookworm-backports\b/.test(l)));
  const FILE = '/etc/apt/sources.list.d/canet-bookworm-backports.sources';
  const entry = fields && `Types: deb\n${fields}\nSuites: bookworm-backports\nComponents: main\n`;
  const install = 'apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1';
  const why = existsSync(LVP_ICD)
    ? `Dawn refuses this machine's lavapipe (${LVP_ICD}): it needs Mesa 24 or newer`
    : 'lavapipe (Mesa\'s CPU Vulkan driver, mesa-vulkan-drivers) is not installed';
  if (isRoot && hasApt && bookworm && (hasBackports || entry)) {
    console.log(`canet-gpu: ${why}; installing Mesa's lavapipe from Debian's bookworm-backports suite:`);
    if (!hasBackports) {
      console.log(`  writing ${FILE} (the URIs and Signed-By of this machine's Debian entry):\n${entry.trimEnd().replace(/^/gm, '    ')}`);
      writeFileSync(FILE, entry);
    }
    console.log(`  apt-get update && ${install}`);
    const r = spawnSync('sh', ['-c', `export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && ${install.replace('-y', '-y -qq')} >/dev/null`], { stdio: 'inherit' });
    if (r.status !== 0) console.log(`canet-gpu: the install failed (exit ${r.status}); run it yourself:\n  sudo sh -c 'apt-get update && ${install}'`);
    else console.log(dawnFindsAdapter('lavapipe') ? 'canet-gpu: lavapipe installed and working (CANET_SOFTWARE_GPU=lavapipe selects it).' : 'canet-gpu: installed, but Dawn still refuses lavapipe; see README "Requirements".');
    return;
  }
  const backportsHelp = entry
    ? `  sudo tee ${FILE} <<'EOF'\n${entry}EOF\n`
    : `  add a sources entry for the bookworm-backports suite: a copy of your Debian entry's URIs and Signed-By lines with\n  "Suites: bookworm-backports", in ${FILE}\n`;
  console.log(
    `canet-gpu: ${why}. To install it:\n` +
      (bookworm
        ? `${hasBackports ? '' : backportsHelp}  sudo sh -c 'apt-get update && ${install}'\n`
        : `  Debian 12: add the bookworm-backports suite of your Debian archive to apt's sources, then\n    sudo sh -c 'apt-get update && ${install}'\n` +
          `  Ubuntu 24.04 and Debian 13 ship Mesa 24+: sudo apt-get install -y mesa-vulkan-drivers libvulkan1\n`) +
      'Without it, CANET_SOFTWARE_GPU=swiftshader (the default) uses SwiftShader.',
  );
}
