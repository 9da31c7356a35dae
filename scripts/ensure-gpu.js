#!/usr/bin/env node
// Pre-step of `npm start` and `npm test`: makes sure a WebGPU adapter can be found. With no
// hardware Vulkan driver we use SwiftShader, the CPU Vulkan driver in Debian's chromium package,
// plus the Vulkan loader (libvulkan1). As root with apt-get, this installs both and says so;
// otherwise it prints the exact command to run. It never fails the calling script on its own:
// the engine gives its own clear error if no adapter exists.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const ICD = process.env.CANET_SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json';
const PACKAGES = ['chromium', 'libvulkan1'];
const loaderPaths = ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib/aarch64-linux-gnu/libvulkan.so.1', '/usr/lib/libvulkan.so.1', '/usr/lib64/libvulkan.so.1'];

if (process.platform !== 'linux' || process.env.CANET_SKIP_GPU_SETUP === '1') process.exit(0);
const haveIcd = existsSync(ICD);
const haveLoader = loaderPaths.some((p) => existsSync(p));
if (haveIcd && haveLoader) process.exit(0);

// A machine with a hardware Vulkan driver needs nothing from us.
const hwIcds = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d'].some((d) => {
  const r = spawnSync('sh', ['-c', `ls ${d}/*.json 2>/dev/null`], { encoding: 'utf8' });
  return r.stdout.trim().length > 0;
});
if (hwIcds && haveLoader) process.exit(0);

const cmd = `apt-get update && apt-get install -y ${PACKAGES.join(' ')}`;
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).status === 0;
if (isRoot && hasApt) {
  console.log(`canet-gpu: no GPU driver found; installing the SwiftShader software GPU (Debian's chromium) and the Vulkan loader:\n  ${cmd}`);
  const r = spawnSync('sh', ['-c', `export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq ${PACKAGES.join(' ')} >/dev/null`], { stdio: 'inherit' });
  if (r.status !== 0) console.log(`canet-gpu: the install failed (exit ${r.status}); run it yourself:\n  sudo ${cmd}`);
  else console.log('canet-gpu: software GPU installed.');
} else {
  console.log(`canet-gpu: no GPU driver found. To use the SwiftShader software GPU, run:\n  sudo sh -c '${cmd}'`);
}
