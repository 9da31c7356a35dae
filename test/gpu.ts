/** One engine shared by the tests in a process (device creation is the slow part). */
import { chooseSoftwareGPU, createEngine, softwareDriverName, type Engine } from '../entry/node.js';
import type { VariantFamilyName } from '../engine/variants.js';
import type { Suite } from './harness.js';

export { rng, randn, expectClose } from './check.js';

let shared: Promise<Engine> | undefined;

export function testEngine(): Promise<Engine> {
  if (!shared) {
    shared = createEngine({ quiet: true });
    // test/run.js reads this engine's pipeline count and compile time around each file.
    (globalThis as { __canetTestEngine?: Promise<Engine> }).__canetTestEngine = shared;
  }
  return shared;
}

/** The real device with some properties reported as `shown` (the device behind it is unchanged; its methods stay bound to it). */
function deviceView(real: GPUDevice, shown: Readonly<Record<string, unknown>>): GPUDevice {
  return new Proxy(real, {
    get(target, prop) {
      if (typeof prop === 'string' && Object.hasOwn(shown, prop)) return shown[prop];
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** The real device, reporting `overrides` as its limits: tests run kernels against tiny limits. */
export function withLimits(real: GPUDevice, overrides: Partial<Record<keyof GPUSupportedLimits, number>>): GPUDevice {
  const limits = new Proxy(real.limits, {
    get: (target, prop) => (prop in overrides ? overrides[prop as keyof GPUSupportedLimits] : Reflect.get(target, prop, target)),
  });
  return deviceView(real, { limits });
}

/** The real device, reporting its features without `hidden`: tests take the paths of a device that lacks them. */
export function withoutFeatures(real: GPUDevice, hidden: readonly string[]): GPUDevice {
  return deviceView(real, { features: new Set([...(real.features as unknown as Iterable<string>)].filter((f) => !hidden.includes(f))) });
}

/**
 * True in the lavapipe run of the tests (CANET_SOFTWARE_GPU=lavapipe, as CI's second run), where
 * two kinds of kernels are too slow to compile on a cold Mesa cache (a fresh machine) and are
 * checked in the SwiftShader run instead: SwiftShader's large unrolled tiles (minutes each) and
 * the GPUs' workgroup-memory kernels (4-13 s each; one took a conv2d test past its time limit).
 */
export const lavapipeRun = chooseSoftwareGPU(undefined, process.env) === 'lavapipe';

/** Why a kernel mode is skipped in the lavapipe run (see lavapipeRun), by 'family=candidate' or by candidate. */
const LAVAPIPE_SKIPS: Record<string, string> = {
  workgroup: "the GPU's workgroup-memory kernels compile for seconds each there",
  swiftshader: "SwiftShader's tiles compile for minutes there",
  // One register-tile table serves SwiftShader and GPUs in these ops (only llvmpipe's differs).
  'depthwiseTiles=gpu': "the GPUs' depthwise tiles are SwiftShader's, which compile for tens of seconds each there",
  'convTransposeTiles=gpu': "the GPUs' transposed-convolution tiles are SwiftShader's, which compile for tens of seconds each there",
  'family=gpu': "the gpu family takes the workgroup-memory kernels, which compile for seconds each there",
  'poolShape=unrolled': "max pooling's unrolled windows compile for minutes there (bench/RESULTS.md)",
};

/** Why forcing `mode` is skipped in this run (the lavapipe run, see LAVAPIPE_SKIPS), or undefined. */
export function lavapipeSkip(mode: KernelMode | string | null): string | undefined {
  if (!lavapipeRun || !mode) return undefined;
  if (typeof mode === 'string') return LAVAPIPE_SKIPS[mode];
  return LAVAPIPE_SKIPS[`${mode.family}=${mode.value}`] ?? LAVAPIPE_SKIPS[mode.value];
}

/** `t`, or for a kernel mode of LAVAPIPE_SKIPS in the lavapipe run, a skip that says why. */
export function forKernelMode(t: Suite, mode: KernelMode | string | null): (name: string, fn: () => unknown, opts?: { timeoutMs?: number }) => void {
  const why = lavapipeSkip(mode);
  if (!why) return t;
  return (name) => t.skip(`${name} (skipped on lavapipe: ${why}; checked on SwiftShader)`);
}

let swiftShader: Promise<Engine> | undefined;

/**
 * The engine whose numbers the browser tests compare the page's against, bit for bit: one on the
 * adapter the test Chromium runs (SwiftShader, BROWSER.md's flags). That is the shared test engine,
 * except in a run on another adapter (CANET_SOFTWARE_GPU=lavapipe), where llvmpipe rounds
 * differently (its own code shapes, contracted multiply-adds) and the same kernels give other last
 * bits: there a SwiftShader engine of its own.
 */
export async function browserPeerEngine(): Promise<Engine> {
  const shared = await testEngine();
  if (softwareDriverName(shared.adapter) === 'SwiftShader') return shared;
  swiftShader ??= createEngine({ quiet: true, forceSoftware: true, software: 'swiftshader' });
  return swiftShader;
}

/** One candidate of one kernel variant family (engine/variants.ts) forced on an engine; null: the adapter's defaults. */
export interface KernelMode {
  family: VariantFamilyName;
  value: string;
}

/**
 * The kernel modes a test runs: null (the engine's defaults), then every candidate of `families`
 * that `e` does not take by default (the null mode runs those). The candidates come from the
 * engine's variant registry, so a candidate registered there is tested here without editing the
 * tests.
 */
export function kernelModes(e: Engine, ...families: VariantFamilyName[]): (KernelMode | null)[] {
  const modes: (KernelMode | null)[] = [null];
  for (const family of families)
    for (const value of e.variants.candidates(family)) if (value !== e.variants.defaultOf(family)) modes.push({ family, value });
  return modes;
}

/** Clears the overrides of `families` on `e`, then forces `mode` (null: the defaults). */
export function useKernelMode(e: Engine, mode: KernelMode | null, families: readonly VariantFamilyName[]): void {
  for (const family of families) e.variants.clear(family);
  if (mode) e.variants.set(mode.family, mode.value);
}

/** A mode in a test's title: ', conv2d=workgroup', or '' for the defaults. */
export const modeSuffix = (mode: KernelMode | null): string => (mode ? `, ${mode.family}=${mode.value}` : '');

/** Runs `fn` with `overrides` forced on `e` (checked by the registry), then clears them. */
export async function withVariants<T>(e: Engine, overrides: { [F in VariantFamilyName]?: string }, fn: () => Promise<T>): Promise<T> {
  for (const [family, value] of Object.entries(overrides)) e.variants.set(family, value);
  try {
    return await fn();
  } finally {
    for (const family of Object.keys(overrides)) e.variants.clear(family);
  }
}

/**
 * Names of the kernels `fn` dispatches, in order. The lanes kernels (conv2d-lanes.ts,
 * conv-transpose-lanes.ts) share the register kernels' names; their variants start with 'lanes',
 * and they are listed as `NAME[lanes]`.
 */
export function kernelsRun(e: Engine, fn: () => void): string[] {
  const names: string[] = [];
  const run = e.run;
  e.run = (p) => {
    names.push(p.variant?.startsWith('lanes') ? `${p.name}[lanes]` : p.name);
    run.call(e, p);
  };
  try {
    fn();
  } finally {
    delete (e as { run?: unknown }).run; // back to the prototype's method
  }
  return names;
}
