/** One engine shared by the tests in a process (device creation is the slow part). */
import { createEngine, type Engine } from '../engine/entry-node.js';

export { rng, randn, expectClose } from './check.js';

let shared: Promise<Engine> | undefined;

export function testEngine(): Promise<Engine> {
  shared ??= createEngine({ quiet: true });
  return shared;
}
