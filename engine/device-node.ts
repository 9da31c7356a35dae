/**
 * Engine creation in Node: Dawn through the `webgpu` package. With no hardware adapter we fall
 * back to SwiftShader, the CPU Vulkan driver that Debian's chromium package ships, and say so once.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from 'webgpu';
import { Engine, type AdapterSummary } from './engine.js';
import type { Scope, ScopeContext } from './scope.js';
import { requestDevice, summarizeAdapter } from './device-common.js';
import { leakWarningSink, watchLiveTensors, type LeakWarningOption } from './leak-watch.js';

/** Debian's chromium package puts SwiftShader's Vulkan driver here (CANET_SWIFTSHADER_ICD overrides). */
export const SWIFTSHADER_ICD = process.env.CANET_SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json';

export const SOFTWARE_GPU_HELP =
  `canet-gpu found no WebGPU adapter. Either install GPU drivers with Vulkan support, or install the ` +
  `SwiftShader software GPU that Debian's chromium package ships, with the Vulkan loader:\n` +
  `    sudo apt-get install -y chromium libvulkan1\n` +
  `(it provides ${SWIFTSHADER_ICD}; canet-gpu finds it by itself).`;

export interface NodeEngineOptions {
  /** Embed into an application's device: the engine creates nothing global and never destroys it. */
  device?: GPUDevice;
  powerPreference?: GPUPowerPreference;
  /** Substring of the adapter's description, vendor or architecture that must match. */
  adapter?: string;
  /** Use SwiftShader even if a hardware adapter exists (also: CANET_FORCE_SOFTWARE=1). */
  forceSoftware?: boolean;
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

class AsyncScopeContext implements ScopeContext {
  private als = new AsyncLocalStorage<Scope>();
  current(): Scope | undefined {
    return this.als.getStore();
  }
  run<T>(scope: Scope, fn: () => T): T {
    return this.als.run(scope, fn);
  }
}

function gpuInstance(flags: string[]): GPU {
  const gpu = create(flags) as GPU;
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
  // Dawn prints a warning for every probe when XDG_RUNTIME_DIR is unset or invalid.
  if (!process.env.XDG_RUNTIME_DIR || !existsSync(process.env.XDG_RUNTIME_DIR))
    process.env.XDG_RUNTIME_DIR = mkdtempSync(join(tmpdir(), 'canet-gpu-xdg-'));
  const flags = [...(options.dawnFlags ?? [])];
  const forceSoftware = options.forceSoftware ?? process.env.CANET_FORCE_SOFTWARE === '1';
  const seen: string[] = [];

  let adapter: GPUAdapter | null = null;
  // Mesa's lavapipe (a CPU Vulkan driver that chromium's dependencies install) is rejected by
  // Dawn with a warning on every probe; SwiftShader is the CPU driver we use, so skip lavapipe.
  process.env.VK_LOADER_DRIVERS_DISABLE ??= '*lvp*';
  if (!forceSoftware && (hardwarePossible() || options.adapter)) {
    const gpu = gpuInstance(flags);
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
  if (!adapter && existsSync(SWIFTSHADER_ICD)) {
    // The Vulkan loader reads VK_ICD_FILENAMES when an instance is created, so setting it here,
    // before the second instance, points Dawn at SwiftShader.
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    const a = await gpuInstance(flags).requestAdapter();
    if (a) {
      adapter = a;
      software = true;
      seen.push(summarizeAdapter(a).description);
    }
  }
  if (!adapter) {
    if (options.adapter && seen.length) throw new Error(`canet-gpu: no adapter matches '${options.adapter}'; found: ${seen.join('; ')}`);
    throw new Error(SOFTWARE_GPU_HELP);
  }
  const summary = summarizeAdapter(adapter);
  if (software && !options.quiet && !softwareNoticeShown) {
    softwareNoticeShown = true;
    console.warn(`canet-gpu: no hardware GPU adapter found; using the SwiftShader software GPU (${summary.description}). Expect CPU speeds.`);
  }
  const device = await requestDevice(adapter);
  return watched(new Engine({ device, ownsDevice: true, adapter: summary, scopeContext }));
}
