/** One engine shared by the tests in a process (device creation is the slow part). */
import { chooseSoftwareGPU, createEngine, type Engine } from '../entry/node.js';
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

/** The real device, reporting `overrides` as its limits (the device behind it is unchanged): tests run kernels against tiny limits. */
export function withLimits(real: GPUDevice, overrides: Partial<Record<keyof GPUSupportedLimits, number>>): GPUDevice {
  const limits = new Proxy(real.limits, {
    get: (target, prop) => (prop in overrides ? overrides[prop as keyof GPUSupportedLimits] : Reflect.get(target, prop, target)),
  });
  return new Proxy(real, {
    get(target, prop) {
      if (prop === 'limits') return limits;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * True in the lavapipe run of the tests (CANET_SOFTWARE_GPU=lavapipe, as CI's second run). The
 * workgroup-memory kernels written for GPUs compile for 4-13 s each there on a cold Mesa cache
 * (a fresh machine), which took a conv2d test past its time limit; they are checked in the
 * SwiftShader run, where they compile in a fraction of that.
 */
export const lavapipeRun = chooseSoftwareGPU(undefined, process.env) === 'lavapipe';

/** `t`, or for the 'workgroup' kernel mode in the lavapipe run, a skip that says why. */
export function forKernelMode(t: Suite, mode: string | null): (name: string, fn: () => unknown, opts?: { timeoutMs?: number }) => void {
  if (!(lavapipeRun && mode === 'workgroup')) return t;
  return (name) => t.skip(`${name} (skipped on lavapipe: the GPU's workgroup-memory kernels compile for seconds each there; checked on SwiftShader)`);
}
