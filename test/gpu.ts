/** One engine shared by the tests in a process (device creation is the slow part). */
import { createEngine, type Engine } from '../entry/node.js';

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
