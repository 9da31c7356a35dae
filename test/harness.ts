/**
 * Test harness over uvu: every test file declares suites through `suite()` here, which counts
 * passes and failures (for the closing `N passed, N failed` line that CI reads) and puts a time
 * limit on each test so a hung GPU wait fails instead of stalling CI.
 */
import { suite as uvuSuite } from 'uvu';

export interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

const g = globalThis as { __canetCounts?: Counts };
export const counts: Counts = (g.__canetCounts ??= { passed: 0, failed: 0, skipped: 0 });

type Fn = () => unknown | Promise<unknown>;
export interface Suite {
  (name: string, fn: Fn, opts?: { timeoutMs?: number }): void;
  skip(name: string, fn?: Fn): void;
  before(fn: Fn): void;
  after(fn: Fn): void;
  run(): void;
}

const DEFAULT_TIMEOUT_MS = Number(process.env.CANET_TEST_TIMEOUT_MS ?? 180_000);
/** CANET_TEST_TIMES=1: each test's seconds on stderr, to find where a file's time goes (a cost report, never an assertion). */
const REPORT_TIMES = process.env.CANET_TEST_TIMES === '1';

export function suite(name: string): Suite {
  const s = uvuSuite(name);
  const register = (testName: string, fn: Fn, opts: { timeoutMs?: number } = {}): void => {
    s(testName, async () => {
      const limit = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const t0 = performance.now();
      try {
        await Promise.race([
          Promise.resolve().then(fn),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`test timed out after ${limit} ms`)), limit);
          }),
        ]);
        counts.passed++;
      } catch (e) {
        counts.failed++;
        throw e;
      } finally {
        clearTimeout(timer);
        if (REPORT_TIMES) process.stderr.write(`\n  [${((performance.now() - t0) / 1000).toFixed(1)} s] ${name}: ${testName}\n`);
      }
    });
  };
  const out = register as Suite;
  out.skip = (testName: string) => {
    counts.skipped++;
    s.skip(testName, () => {});
  };
  out.before = (fn) => s.before(async () => void (await fn()));
  out.after = (fn) => s.after(async () => void (await fn()));
  out.run = () => s.run();
  return out;
}
