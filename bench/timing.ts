/** Shared timing protocol for benchmarks: warm-up runs first, then timed runs that each end with the GPU really done. */
import type { Engine } from '../engine/engine.js';
import { defaultTuningFile } from '../engine/tune-file.js';
import { chooseSoftwareGPU, SOFTWARE_GPUS, type NodeEngineOptions } from '../engine/device-node.js';

export interface Timing {
  firstMs: number;
  minMs: number;
  medianMs: number;
  maxMs: number;
  iters: number;
  /**
   * Median CPU time of a timed run: everything up to and including `submit()` (the op code or the
   * plan replay, scope disposal, uniform uploads), not the wait for the GPU. On a real GPU this is
   * the floor of a call's latency whatever the GPU's speed.
   */
  cpuMs: number;
}

/**
 * Times `fn` (which records GPU work): `warmup` runs (the first, with pipeline compilation, reported
 * as firstMs), then `iters` timed runs, and more while they add up to less than `minTotalMs` (at
 * most 100): on a shared host a 50 ms kernel's median over 3 runs swings by a third, over 30 by a
 * few percent.
 */
export async function timeGpu(engine: Engine, fn: () => void | Promise<void>, iters: number, warmup = 1, minTotalMs = 0): Promise<Timing> {
  // The GPU is idle when a run starts (the previous one ended with sync), so the CPU part is the
  // call itself; a synchronous fn's scope (and its disposals) is part of it.
  const once = async (): Promise<[number, number]> => {
    await engine.sync();
    const t0 = performance.now();
    let cpu = NaN;
    await engine.scope(async () => {
      const r = fn();
      if (r instanceof Promise) await r;
      engine.submit();
      cpu = performance.now() - t0;
      await engine.sync();
    });
    return [performance.now() - t0, cpu];
  };
  const firstMs = warmup > 0 ? (await once())[0] : NaN;
  for (let i = 1; i < warmup; i++) await once();
  const runs: number[] = [];
  const cpu: number[] = [];
  let total = 0;
  while (runs.length < iters || (total < minTotalMs && runs.length < 100)) {
    const [ms, cpuMs] = await once();
    runs.push(ms);
    cpu.push(cpuMs);
    total += ms;
  }
  runs.sort((a, b) => a - b);
  cpu.sort((a, b) => a - b);
  return { firstMs, minMs: runs[0]!, medianMs: runs[Math.floor(runs.length / 2)]!, maxMs: runs[runs.length - 1]!, iters: runs.length, cpuMs: cpu[Math.floor(cpu.length / 2)]! };
}

export function describeAdapter(engine: Engine): string {
  const a = engine.adapter;
  return `${a.description} (vendor ${a.vendor || '?'}, architecture ${a.architecture || '?'}${a.isSoftware ? ', software' : ''}); features: ${[...engine.features].join(', ')}`;
}

/**
 * The engine a benchmark runs on: `--adapter lavapipe|swiftshader` (or `--software NAME`) forces
 * that software GPU, and sets CANET_SOFTWARE_GPU and CANET_FORCE_SOFTWARE for the processes it starts
 * (the TF.js peer) so they use the same one; `--adapter OTHER` picks a hardware adapter whose
 * description, vendor or architecture contains OTHER; neither: the engine's default choice.
 */
export function engineOptionsFromArgs(args: Map<string, string | true>): NodeEngineOptions {
  const software = args.get('software');
  const adapter = args.get('adapter');
  if (software === true || adapter === true) throw new Error(`bench: --${software === true ? 'software' : 'adapter'} needs a value (${SOFTWARE_GPUS.join(', ')} or part of a hardware adapter's name)`);
  const name = software ?? adapter;
  if (name === undefined) return {};
  if (software === undefined && !(SOFTWARE_GPUS as readonly string[]).includes(name.toLowerCase())) return { adapter: name };
  if (!(SOFTWARE_GPUS as readonly string[]).includes(name.toLowerCase())) throw new Error(`bench: --software is '${name}'; the software GPUs are ${SOFTWARE_GPUS.join(' and ')}`);
  const driver = chooseSoftwareGPU(name.toLowerCase());
  process.env.CANET_SOFTWARE_GPU = driver;
  process.env.CANET_FORCE_SOFTWARE = '1';
  return { software: driver, forceSoftware: true };
}

/**
 * `--name value`, `--name=value` and bare `--name` options. With `known` (names without dashes),
 * anything else is refused: an Error naming it. `--help` / `-h` come back as the key 'help'.
 */
export function parseArgs(argv: string[], known?: readonly string[]): Map<string, string | true> {
  const m = new Map<string, string | true>();
  const accepted = known && new Set<string>([...known, ...COMMON_FLAGS]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') {
      m.set('help', true);
      continue;
    }
    if (!a.startsWith('--')) {
      if (accepted) throw new Error(`unexpected argument '${a}'`);
      continue;
    }
    const [k, v] = a.slice(2).split('=', 2) as [string, string | undefined];
    if (accepted && !accepted.has(k)) throw new Error(`unknown option --${k}`);
    if (v !== undefined) m.set(k, v);
    else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) m.set(k, argv[++i]!);
    else m.set(k, true);
  }
  return m;
}

/** Options every benchmark program takes (engineOptionsFromArgs, tuneFileArg). */
export const COMMON_FLAGS = ['adapter', 'software', 'tune'] as const;

/** A benchmark program's command line: its usage text and the options it knows (without the dashes). */
export interface BenchCommand {
  usage: string;
  flags: readonly string[];
}

/**
 * The program's options from process.argv. `--help` prints the usage and exits 0; an unknown
 * option or a stray argument prints what is wrong and the usage and exits 2, before any work
 * starts: a mistyped flag must not silently run the full benchmark for minutes.
 */
export function commandLine(command: BenchCommand): Map<string, string | true> {
  let args: Map<string, string | true>;
  try {
    args = parseArgs(process.argv.slice(2), command.flags);
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${command.usage}`);
    process.exit(2);
  }
  if (args.has('help')) {
    console.log(command.usage);
    process.exit(0);
  }
  return args;
}

/** `--tune [FILE]`: the tuning file to tune into (the default file when no name follows), or undefined without --tune. */
export function tuneFileArg(args: Map<string, string | true>): string | undefined {
  const v = args.get('tune');
  return v === undefined ? undefined : typeof v === 'string' ? v : defaultTuningFile();
}

export const fmt = (v: number, d = 1) => v.toFixed(d);
