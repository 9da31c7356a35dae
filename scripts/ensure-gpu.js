#!/usr/bin/env node
// Pre-step of `npm start` and `npm test`: makes sure canet-gpu can find a WebGPU adapter. If Dawn
// finds none, we need SwiftShader, the CPU Vulkan driver in Debian's chromium package, plus the
// Vulkan loader (libvulkan1). As root with apt-get this installs both and says so; otherwise it
// prints the exact command. It never fails the calling script by itself: without an adapter the
// engine throws its own error saying what to install. With --browser (the test pre-step) it also
// makes sure of Xvfb, the X display the headless-Chromium tests draw their WebGPU canvas on.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const ICD = process.env.CANET_SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json';
const browser = process.argv.includes('--browser');
const PACKAGES = ['chromium', 'libvulkan1', ...(browser ? ['xvfb'] : [])];
if (process.env.CANET_SKIP_GPU_SETUP === '1') process.exit(0);
const xvfbMissing = browser && process.platform === 'linux' && !existsSync('/usr/bin/Xvfb');

function loaderPresent() {
  if (process.platform !== 'linux') return true;
  const r = spawnSync('sh', ['-c', 'ldconfig -p 2>/dev/null | grep -q "libvulkan.so.1 "'], { encoding: 'utf8' });
  return r.status === 0;
}

/** Asks Dawn (in a child process, so a crash cannot take this script down) for any adapter. */
function dawnFindsAdapter(useSwiftShader) {
  const code = `
    const { create } = await import('webgpu');
    process.env.VK_LOADER_DRIVERS_DISABLE ??= '*lvp*';
    ${useSwiftShader ? `process.env.VK_ICD_FILENAMES = ${JSON.stringify(ICD)};` : ''}
    const a = await create([]).requestAdapter();
    process.exit(a ? 0 : 3);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' } });
  return r.status === 0;
}

if (existsSync(ICD) && loaderPresent() && !xvfbMissing) process.exit(0);
if (process.platform !== 'linux' || (!xvfbMissing && dawnFindsAdapter(false))) process.exit(0);

const cmd = `apt-get update && apt-get install -y ${PACKAGES.join(' ')}`;
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).status === 0;
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
