/**
 * Engine creation in Node: Dawn through the `webgpu` package. With no hardware adapter we fall
 * back to a CPU Vulkan driver, and say so once: SwiftShader (Debian's chromium package) by default,
 * or Mesa's lavapipe when asked (`software: 'lavapipe'`, CANET_SOFTWARE_GPU=lavapipe).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, type AdapterSummary } from './engine.js';
import type { Scope, ScopeContext } from './scope.js';
import { requestDevice, softwareDriverName, summarizeAdapter } from './device-common.js';
import { leakWarningSink, watchLiveTensors, type LeakWarningOption } from './leak-watch.js';

/** Debian's chromium package puts SwiftShader's Vulkan driver here (CANET_SWIFTSHADER_ICD overrides). */
export const SWIFTSHADER_ICD = process.env.CANET_SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json';
/** Mesa's lavapipe (llvmpipe) Vulkan driver, from `mesa-vulkan-drivers` (CANET_LAVAPIPE_ICD overrides). */
export const LAVAPIPE_ICD = process.env.CANET_LAVAPIPE_ICD ?? '/usr/share/vulkan/icd.d/lvp_icd.json';

/** The CPU Vulkan drivers the engine can fall back to when no hardware adapter is used. */
export type SoftwareGPU = 'swiftshader' | 'lavapipe';
export const SOFTWARE_GPUS: readonly SoftwareGPU[] = ['swiftshader', 'lavapipe'];

/**
 * How to install lavapipe 25 on Debian 12: Dawn refuses bookworm's own Mesa 22.3 lavapipe, so it
 * comes from the bookworm-backports suite of the Debian archive the machine already uses
 * (scripts/ensure-gpu.js writes that sources entry itself: `CANET_SOFTWARE_GPU=lavapipe node scripts/ensure-gpu.js`).
 */
export const LAVAPIPE_INSTALL =
  `Debian 12: add a sources entry for bookworm-backports (copy the URIs and Signed-By lines of your Debian entry in ` +
  `/etc/apt/sources.list.d/debian.sources, with "Suites: bookworm-backports"; or run, as root, ` +
  `CANET_SOFTWARE_GPU=lavapipe node scripts/ensure-gpu.js), then\n` +
  `    sudo apt-get update && sudo apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1\n` +
  `Ubuntu 24.04 and Debian 13 ship Mesa 24+: sudo apt-get install -y mesa-vulkan-drivers libvulkan1`;

export const SOFTWARE_GPU_HELP =
  `canet-gpu found no WebGPU adapter. Either install GPU drivers with Vulkan support, or install the ` +
  `SwiftShader software GPU that Debian's chromium package ships, with the Vulkan loader:\n` +
  `    sudo apt-get install -y chromium libvulkan1\n` +
  `(it provides ${SWIFTSHADER_ICD}; canet-gpu finds it by itself).`;

/**
 * The software driver asked for: `option` (createEngine's `software`), else the environment
 * variable CANET_SOFTWARE_GPU (of `env`, by default process.env); SwiftShader by default. Any
 * other value is refused, naming the accepted ones.
 */
export function chooseSoftwareGPU(option?: string, env: Record<string, string | undefined> = process.env): SoftwareGPU {
  const [value, source] = option !== undefined ? [option, 'createEngine({ software })'] : [env.CANET_SOFTWARE_GPU, 'CANET_SOFTWARE_GPU'];
  if (value === undefined || value === '') return 'swiftshader';
  const v = value.trim().toLowerCase();
  if ((SOFTWARE_GPUS as readonly string[]).includes(v)) return v as SoftwareGPU;
  throw new Error(`canet-gpu: ${source} is '${value}'; the software GPUs are ${SOFTWARE_GPUS.map((s) => `'${s}'`).join(' and ')} (default 'swiftshader')`);
}

/** Vulkan API version an ICD file declares ('1.4.305'), or '' when it cannot be read. */
function icdApiVersion(icd: string): string {
  try {
    return String((JSON.parse(readFileSync(icd, 'utf8')) as { ICD?: { api_version?: string } }).ICD?.api_version ?? '');
  } catch {
    return '';
  }
}

function lavapipeUnavailable(icd: string, present: boolean): string {
  const why = present
    ? `Dawn refused the lavapipe driver at ${icd}${icdApiVersion(icd) ? ` (Vulkan ${icdApiVersion(icd)})` : ''}: it needs Mesa 24 or newer ` +
      `(Debian 12's own Mesa 22.3 lacks features Dawn requires; check with 'dpkg -l mesa-vulkan-drivers').`
    : `lavapipe's Vulkan driver file ${icd} does not exist (set CANET_LAVAPIPE_ICD if it is elsewhere).`;
  return `canet-gpu: the lavapipe software GPU was asked for (CANET_SOFTWARE_GPU or createEngine({ software: 'lavapipe' })), but ${why} ` +
    `Install Mesa 25's lavapipe:\n  ${LAVAPIPE_INSTALL}\nor use SwiftShader (CANET_SOFTWARE_GPU=swiftshader, the default).`;
}

export interface NodeEngineOptions {
  /** Embed into an application's device: the engine creates nothing global and never destroys it. */
  device?: GPUDevice;
  powerPreference?: GPUPowerPreference;
  /** Substring of the adapter's description, vendor or architecture that must match. */
  adapter?: string;
  /** Use the software GPU even if a hardware adapter exists (also: CANET_FORCE_SOFTWARE=1). */
  forceSoftware?: boolean;
  /**
   * Which CPU Vulkan driver to use when no hardware adapter is used (also: CANET_SOFTWARE_GPU):
   * 'swiftshader' (the default; Debian's chromium package) or 'lavapipe' (Mesa 24+, which has
   * shader-f16). SwiftShader stays the default because today's kernels are shaped for it: on a cold
   * Mesa shader cache (a fresh machine, CI) lavapipe's first 512x256 inference took 330-365 s against
   * SwiftShader's 28-30 s, although its steady state is about 2x faster (/work/shared/LAVAPIPE.md, issue 22).
   */
  software?: SoftwareGPU;
  /** Print nothing (the software fallback notice is otherwise printed once). */
  quiet?: boolean;
  /**
   * Warn once when live tensors keep growing across reads outside any engine.scope() (forgotten
   * disposes; see engine/leak-watch.ts). Default: on, printed unless `quiet`; `false` (or
   * CANET_LEAK_WARNING=0) turns it off; a function receives the message instead.
   */
  leakWarning?: LeakWarningOption;
  /** Extra Dawn instance flags, e.g. 'enable-dawn-features=disable_robustness' (an opt-in trade of safety for speed). */
  dawnFlags?: string[];
}

// Dawn's GPU instances must stay referenced for the life of the process: Node segfaults when
// one is garbage-collected while its devices live (SWIFTSHADER.md, lesson 8).
const instances: GPU[] = [];
let softwareNoticeShown = false;

/** The `webgpu` package's `create`, loaded on first use (see DAWN_MISSING). */
type CreateGPU = (flags: string[]) => GPU;
let dawn: CreateGPU | null = null;

/**
 * Dawn for Node is the `webgpu` package: an optional peer dependency, so that browser-only users
 * do not download its 130 MB of native binaries. Imported here, on first use, so that importing
 * canet-gpu in Node never fails for lack of it; createEngine({ device }) does not need it.
 */
export const DAWN_MISSING =
  `canet-gpu: Node needs Dawn, the 'webgpu' package, to create a GPU device. Install it beside canet-gpu:\n` +
  `    npm install webgpu@^0.6.2\n` +
  `(It is an optional peer dependency: browser-only applications do not need it.)`;

async function loadDawn(): Promise<CreateGPU> {
  if (dawn) return dawn;
  let mod: { create?: CreateGPU };
  try {
    mod = (await import('webgpu')) as unknown as { create?: CreateGPU };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && /'webgpu'/.test((e as Error).message)) throw new Error(DAWN_MISSING, { cause: e });
    throw new Error(`canet-gpu: loading Dawn (the 'webgpu' package) failed: ${(e as Error).message}`, { cause: e });
  }
  if (typeof mod.create !== 'function') throw new Error(`canet-gpu: the 'webgpu' package has no create() function; canet-gpu needs webgpu@^0.6.2`);
  return (dawn = mod.create);
}

/** The environment variables Dawn's Vulkan loader reads when an instance is created. */
const VULKAN_ENV = ['VK_ICD_FILENAMES', 'VK_LOADER_DRIVERS_DISABLE', 'XDG_RUNTIME_DIR'] as const;

/**
 * Runs `fn` (creating instances, adapters and the device) with the Vulkan loader's environment
 * set as `fn` sets it, then puts process.env back exactly as it was and removes the temporary
 * XDG_RUNTIME_DIR it made: the engine leaves no globals behind. The loader reads these variables
 * when an instance is created, inside `fn`; nothing reads them after the device exists.
 */
async function withVulkanEnv<T>(fn: () => Promise<T>): Promise<T> {
  const saved = VULKAN_ENV.map((k) => [k, process.env[k]] as const);
  let runtimeDir: string | null = null;
  // Dawn prints a warning for every probe when XDG_RUNTIME_DIR is unset or invalid.
  if (!process.env.XDG_RUNTIME_DIR || !existsSync(process.env.XDG_RUNTIME_DIR))
    process.env.XDG_RUNTIME_DIR = runtimeDir = mkdtempSync(join(tmpdir(), 'canet-gpu-xdg-'));
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    if (runtimeDir) rmSync(runtimeDir, { recursive: true, force: true });
  }
}

class AsyncScopeContext implements ScopeContext {
  private als = new AsyncLocalStorage<Scope>();
  current(): Scope | undefined {
    return this.als.getStore();
  }
  run<T>(scope: Scope, fn: () => T): T {
    return this.als.run(scope, fn);
  }
}

function gpuInstance(create: CreateGPU, flags: string[]): GPU {
  const gpu = create(flags);
  instances.push(gpu);
  return gpu;
}

/**
 * Whether a hardware adapter can exist. On Linux a GPU driver needs a device node (DRM render
 * nodes, NVIDIA's, WSL's dxg); without one, probing only makes the Vulkan loader print errors.
 */
function hardwarePossible(): boolean {
  if (process.platform !== 'linux') return true;
  const has = (dir: string, re: RegExp) => {
    try {
      return readdirSync(dir).some((f) => re.test(f));
    } catch {
      return false;
    }
  };
  return has('/dev/dri', /^renderD/) || has('/dev', /^(nvidia\d|dxg$)/);
}

function matches(summary: AdapterSummary, name: string | undefined): boolean {
  if (!name) return true;
  const n = name.toLowerCase();
  return [summary.description, summary.vendor, summary.architecture, summary.device].some((s) => s.toLowerCase().includes(n));
}

/** Creates an engine on Dawn (or on `options.device`). */
export async function createEngine(options: NodeEngineOptions = {}): Promise<Engine> {
  const scopeContext = new AsyncScopeContext();
  const watched = (engine: Engine): Engine => {
    const sink = leakWarningSink(options.leakWarning, Boolean(options.quiet), process.env.CANET_LEAK_WARNING);
    if (sink) watchLiveTensors(engine, scopeContext, sink);
    return engine;
  };
  if (options.device) return watched(new Engine({ device: options.device, ownsDevice: false, scopeContext }));
  const create = await loadDawn();
  const { device, summary } = await withVulkanEnv(() => openDevice(create, options));
  return watched(new Engine({ device, ownsDevice: true, adapter: summary, scopeContext }));
}

/** Finds the adapter (hardware first, else the software driver asked for) and opens its device. */
async function openDevice(create: CreateGPU, options: NodeEngineOptions): Promise<{ device: GPUDevice; summary: AdapterSummary }> {
  const flags = [...(options.dawnFlags ?? [])];
  const forceSoftware = options.forceSoftware ?? process.env.CANET_FORCE_SOFTWARE === '1';
  // Checked first, so a bad value is refused even where a hardware adapter would be used.
  const driver = chooseSoftwareGPU(options.software);
  const seen: string[] = [];

  let adapter: GPUAdapter | null = null;
  // Mesa's lavapipe is installed with chromium's dependencies; Debian 12's (Mesa 22.3) is refused
  // by Dawn with a warning on every probe, so it is hidden from the Vulkan loader unless the user
  // set VK_LOADER_DRIVERS_DISABLE or asked for lavapipe (below).
  process.env.VK_LOADER_DRIVERS_DISABLE ??= '*lvp*';
  if (!forceSoftware && (hardwarePossible() || options.adapter)) {
    const gpu = gpuInstance(create, flags);
    for (const powerPreference of [options.powerPreference ?? 'high-performance', 'low-power'] as const) {
      const a = await gpu.requestAdapter({ powerPreference });
      if (!a) continue;
      const s = summarizeAdapter(a);
      seen.push(s.description || s.architecture);
      if (matches(s, options.adapter) && (!s.isSoftware || options.adapter)) {
        adapter = a;
        break;
      }
    }
  }
  let software = false;
  const icd = driver === 'lavapipe' ? LAVAPIPE_ICD : SWIFTSHADER_ICD;
  if (!adapter && existsSync(icd)) {
    // The Vulkan loader reads VK_ICD_FILENAMES (and VK_LOADER_DRIVERS_DISABLE) when an instance is
    // created, so setting them here, before this instance, points Dawn at the one driver
    // (withVulkanEnv puts both back afterwards).
    process.env.VK_ICD_FILENAMES = icd;
    if (driver === 'lavapipe') delete process.env.VK_LOADER_DRIVERS_DISABLE;
    const a = await gpuInstance(create, flags).requestAdapter();
    if (a) {
      adapter = a;
      software = true;
      seen.push(summarizeAdapter(a).description);
    }
  }
  if (!adapter) {
    if (options.adapter && seen.length) throw new Error(`canet-gpu: no adapter matches '${options.adapter}'; found: ${seen.join('; ')}`);
    if (driver === 'lavapipe') throw new Error(lavapipeUnavailable(icd, existsSync(icd)));
    throw new Error(SOFTWARE_GPU_HELP);
  }
  const summary = summarizeAdapter(adapter);
  if (software && !options.quiet && !softwareNoticeShown) {
    softwareNoticeShown = true;
    // Named from the adapter itself: CANET_SWIFTSHADER_ICD may point at another driver.
    const name = softwareDriverName(summary) ?? (driver === 'lavapipe' ? 'lavapipe' : 'SwiftShader');
    console.warn(`canet-gpu: no hardware GPU adapter found; using the ${name} software GPU (${summary.description}). Expect CPU speeds.`);
  }
  return { device: await requestDevice(adapter), summary };
}
