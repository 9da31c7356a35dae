/**
 * Adapter and device set-up shared by Node and browsers, and the kernel family of an adapter
 * (swiftshader, llvmpipe or gpu; the `family` and `<op>Tiles` variants of engine.variants
 * override it) that picks the default kernels and tiles of the ops.
 */
import type { AdapterSummary } from './engine.js';
import type { VariantRegistry } from './variants.js';

/**
 * Features the engine uses when present; each has a tested fallback. `shader-f16` is requested
 * wherever the adapter offers it, so that f16 tensors and the f16 inference path (CANet.half(),
 * `--precision f16`) are available; without it they throw a FeatureError naming the adapter.
 */
const OPTIONAL_FEATURES = ['timestamp-query', 'shader-f16', 'subgroups'] as const;

/** Limits requested at the adapter's maximum rather than WebGPU's defaults. */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

export function summarizeAdapter(adapter: GPUAdapter): AdapterSummary {
  return summarizeInfo(adapter.info, (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter);
}

/**
 * What an application's device says about its adapter (GPUDevice.adapterInfo, where the runtime
 * has it), so an embedded engine picks kernel variants for the hardware it really runs on (CPU
 * adapters take other tiles and reductions); null where the runtime does not tell.
 */
export function summarizeDevice(device: GPUDevice): AdapterSummary | null {
  const info = (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  return info ? summarizeInfo(info, undefined) : null;
}

function summarizeInfo(info: GPUAdapterInfo, fallbackFlag: boolean | undefined): AdapterSummary {
  const description = info.description || `${info.vendor} ${info.architecture}`.trim();
  const isSoftware =
    // isFallbackAdapter moved from GPUAdapter to GPUAdapterInfo; read whichever exists.
    Boolean((info as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? fallbackFlag) ||
    /swiftshader|llvmpipe|lavapipe|warp|software/i.test(`${info.vendor} ${info.architecture} ${info.description}`);
  return { vendor: info.vendor, architecture: info.architecture, device: info.device, description, isSoftware };
}

/**
 * Which CPU driver an adapter is, by name ('SwiftShader', 'lavapipe'), or undefined for any other.
 * Dawn describes lavapipe as 'llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)' (vendor 'mesa'), SwiftShader as
 * 'SwiftShader driver 5.0.0' (vendor 'google', architecture 'swiftshader').
 */
export function softwareDriverName(a: { vendor: string; architecture: string; description: string }): 'SwiftShader' | 'lavapipe' | undefined {
  const text = `${a.vendor} ${a.architecture} ${a.description}`;
  if (/swiftshader/i.test(text)) return 'SwiftShader';
  if (/llvmpipe|lavapipe/i.test(text)) return 'lavapipe';
  return undefined;
}

export async function requestDevice(adapter: GPUAdapter): Promise<GPUDevice> {
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  return adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'canet-gpu' });
}

/**
 * Which set of code-shape rules (tiles, unrolls, reductions) kernels use on an adapter:
 * - 'swiftshader': CPU adapters whose JIT wants large fully unrolled register tiles and no
 *   barriers (SwiftShader, and any other software adapter: WARP, unknown CPU drivers);
 * - 'llvmpipe': Mesa lavapipe, whose LLVM back end vectorises invocations into SIMD lanes like a
 *   GPU and compiles big unrolled shaders very slowly (a cold Mesa cache makes compile time the
 *   first cost): moderate tiles, loops instead of full unrolls;
 * - 'gpu': hardware adapters.
 */
export type KernelFamily = 'swiftshader' | 'llvmpipe' | 'gpu';

export const KERNEL_FAMILIES: readonly KernelFamily[] = ['swiftshader', 'llvmpipe', 'gpu'];

const familyCache = new WeakMap<object, KernelFamily>();

/** The kernel family of an adapter summary (see KernelFamily). */
export function adapterFamily(a: AdapterSummary): KernelFamily {
  let f = familyCache.get(a);
  if (!f) {
    f = !a.isSoftware ? 'gpu' : softwareDriverName(a) === 'lavapipe' ? 'llvmpipe' : 'swiftshader';
    familyCache.set(a, f);
  }
  return f;
}

/**
 * The kernel family an engine's kernels follow: the `family` choice of its variant registry (its
 * adapter's, unless forced: tests run the llvmpipe shapes on SwiftShader against the float64
 * references).
 */
export function kernelFamily(engine: { variants: VariantRegistry }): KernelFamily {
  return engine.variants.choose('family');
}

/**
 * The family whose register tiles one op's kernels take: the registry's `conv2dTiles`,
 * `depthwiseTiles` or `convTransposeTiles` (tests and benchmarks run another family's tiles on
 * this adapter, per engine), which defaults to kernelFamily.
 */
export function tileFamily(engine: { variants: VariantRegistry }, op: 'conv2d' | 'depthwise' | 'convTranspose'): KernelFamily {
  return engine.variants.choose(op === 'conv2d' ? 'conv2dTiles' : op === 'depthwise' ? 'depthwiseTiles' : 'convTransposeTiles');
}
