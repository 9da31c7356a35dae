/**
 * A once-only warning for the commonest memory mistake: calling ops outside any `engine.scope()`
 * and never disposing the results, so that every inference or training step leaves tensors
 * behind (about 0.4 MB per CANet inference, 1.1 MB per training step) and memory creeps until
 * the process dies, with nothing said.
 *
 * How it decides: at each "call boundary" (a tensor read or `engine.sync()`, what every
 * inference and training loop does once per iteration) it looks at the number of live tensors.
 * When that number has risen at {@link LEAK_STREAK} boundaries in a row without ever falling,
 * by at least {@link LEAK_MIN_GROWTH} tensors, and at least that many tensors made outside any
 * scope are still alive and were never `keep()`-ed (parameters, plans and anything kept on
 * purpose are not suspects), it warns once, naming the ops that made the oldest of those
 * tensors: the place to look first.
 *
 * It costs one Map insertion per tensor made outside a scope and a counter check per boundary;
 * a captured plan's replays are not observed at all. Turn it off with
 * `createEngine({ leakWarning: false })` or the environment variable `CANET_LEAK_WARNING=0`
 * (Node), or receive the message instead of a console warning with `leakWarning: (msg) => ...`.
 */
import type { Engine } from './engine.js';
import type { ScopeContext } from './scope.js';
import { Tensor } from './tensor.js';

/** Consecutive call boundaries with more live tensors than the one before, before warning. */
export const LEAK_STREAK = 16;
/** Fewest tensors the live count must have grown by over that streak (and suspects alive). */
export const LEAK_MIN_GROWTH = 64;

/** `false`: no watch. `true`: warn on the console. A function: receives the message (nothing printed). */
export type LeakWarningOption = boolean | ((message: string) => void);

interface Suspect {
  /** The op (kernel name) that first wrote the tensor, or how it was made. */
  op: string | null;
}

/**
 * Watches `engine` (whose scopes are `scopes`) and warns once through `warn` when live tensors
 * keep growing outside any scope. Wraps the engine's own `empty`, `tensor`, `untrack`,
 * `releaseTensor`, `run`, `readTensor` and `sync` on this instance; nothing else changes. The map of
 * suspects holds only live tensors (a dispose removes its entry), so it never outgrows the engine's
 * own set of live tensors.
 */
export function watchLiveTensors(engine: Engine, scopes: ScopeContext, warn: (message: string) => void): void {
  const suspects = new Map<Tensor, Suspect>();
  let uploading = 0;
  let warned = false;
  let last = -1;
  let streak = 0;
  let streakStart = 0;

  const orig = {
    empty: engine.empty,
    tensor: engine.tensor,
    untrack: engine.untrack,
    releaseTensor: engine.releaseTensor,
    run: engine.run,
    readTensor: engine.readTensor,
    sync: engine.sync,
  };

  engine.empty = function (this: Engine, ...args: Parameters<Engine['empty']>) {
    const t = orig.empty.apply(this, args);
    if (!warned && !scopes.current() && !engine.capturing) suspects.set(t, { op: uploading ? 'engine.tensor (an upload)' : null });
    return t;
  };
  engine.tensor = function (this: Engine, ...args: Parameters<Engine['tensor']>) {
    uploading++;
    try {
      return orig.tensor.apply(this, args);
    } finally {
      uploading--;
    }
  };
  engine.untrack = function (this: Engine, t: Tensor) {
    suspects.delete(t); // keep(): the caller owns it on purpose
    return orig.untrack.call(this, t);
  };
  engine.releaseTensor = function (this: Engine, t: Tensor, buffer: GPUBuffer) {
    suspects.delete(t); // disposed: no longer a suspect (and not held by this map)
    return orig.releaseTensor.call(this, t, buffer);
  };
  engine.run = function (this: Engine, program: Parameters<Engine['run']>[0]) {
    if (suspects.size && !warned)
      for (const b of Object.values(program.bindings)) {
        if (!(b instanceof Tensor)) continue;
        const s = suspects.get(b);
        if (s && s.op === null) s.op = program.name;
      }
    return orig.run.call(this, program);
  };
  const boundary = () => {
    if (warned) return;
    const live = engine.stats().liveTensors;
    if (live < last) streak = 0;
    else if (live > last) {
      if (streak === 0) streakStart = last < 0 ? live : last;
      streak++;
    }
    last = live;
    if (streak < LEAK_STREAK || live - streakStart < LEAK_MIN_GROWTH) return;
    if (suspects.size < LEAK_MIN_GROWTH) {
      streak = 0; // the growth is in scopes or kept tensors: deliberate
      return;
    }
    warned = true;
    const alive = suspects.size;
    const oldest = [...suspects].slice(0, 20);
    const byOp = new Map<string, number>();
    for (const [t, s] of oldest) {
      const op = s.op ?? (t.name.startsWith('tensor#') ? 'engine.empty' : `engine.empty ("${t.name}")`);
      byOp.set(op, (byOp.get(op) ?? 0) + 1);
    }
    const ops = [...byOp].sort((a, b) => b[1] - a[1]).map(([op, n]) => `${op} (${n})`).join(', ');
    suspects.clear();
    warn(
      `canet-gpu: live tensors grew from ${streakStart} to ${live} over the last ${streak} reads/syncs, and ${alive} tensors made outside any engine.scope() are still alive; ` +
        `the oldest ${oldest.length} were made by ${ops}. Results not disposed keep their GPU memory: wrap each step in engine.scope(() => ...) or dispose() what you no longer need. ` +
        `(Shown once. Turn off with createEngine({ leakWarning: false }) or CANET_LEAK_WARNING=0.)`,
    );
  };
  engine.readTensor = function (this: Engine, t: Tensor) {
    boundary();
    return orig.readTensor.call(this, t);
  };
  engine.sync = function (this: Engine) {
    boundary();
    return orig.sync.call(this);
  };
}

/** The warning sink for an engine's options, or null for no watch. */
export function leakWarningSink(option: LeakWarningOption | undefined, quiet: boolean, env: string | undefined): ((message: string) => void) | null {
  if (option === false || env === '0') return null;
  if (typeof option === 'function') return option;
  if (quiet && option === undefined) return null;
  return (message) => console.warn(message);
}
