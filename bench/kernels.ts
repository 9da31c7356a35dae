/**
 * Kernel micro-benchmark: the convolutions that dominate CANet at a 1024x512 input, timed on this
 * adapter with GFLOP/s, next to the engine's own best matmul (a 1x1 convolution is a matmul), so
 * each conv's fraction of the adapter's matmul ceiling is visible.
 *   node bench/kernels.js [--quick] [--iters N] [--json PATH] [--tune [FILE]] [--adapter lavapipe|swiftshader|NAME]
 *                         [--kernels default|register|workgroup|lanes|lanesTMxNBsSG@WG|both|A,B,...] [--only REGEX] [--grads [input]]
 * --tune times each kernel's candidate tiles first (engine/tune.ts; the ceiling too), keeping the
 * winners in the tuning file as `bench/run.js --tune` does, so the fractions are tuned against tuned.
 * Each kernel runs at least N times (default 3, 2 with --quick) and until its runs add up to 2 s
 * (0.5 s with --quick), so short kernels get a median over tens of runs; the median is reported.
 * --kernels picks the convolution kernels (engine.variants conv2d, convTranspose, depthwise):
 * the adapter's default, the register tiles, the workgroup-memory tiles written for GPUs, or
 * `both`: every case timed with the register kernels and then with the workgroup ones in the same
 * run (the matmul-ceiling fraction of each against its own kind's ceiling). A comma list of kinds
 * (e.g. `register,lanes`) alternates them case by case; a kind may force further variants after
 * `+` (`lanes+conv2dLanesInput=off`); --only keeps the cases whose name matches;
 * --grads times the conv2d cases as forward + both gradients (FLOPs counted 3x the forward's),
 * `--grads input` as forward + the input gradient (2x).
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { createEngine } from '../engine/device-node.js';
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { conv2d } from '../engine/ops/conv2d.js';
import { backward } from '../engine/autograd.js';
import { depthwiseConv2d } from '../engine/ops/depthwise.js';
import { convTranspose2d, convTranspose2dArgmax } from '../engine/ops/conv-transpose.js';
import { commandLine, describeAdapter, engineOptionsFromArgs, fmt, timeGpu, tuneFileArg } from './timing.js';
import { autotune } from '../engine/tune.js';
import { loadTuningFile, saveTuningFile } from '../engine/tune-file.js';

interface Case {
  name: string;
  flops: number;
  setup: (e: Engine) => Tensor[];
  run: (ts: Tensor[]) => Tensor;
  /** Forward and the gradients of x (and w unless `inputOnly`), for --grads: conv2d cases only. */
  grads?: (ts: Tensor[], inputOnly: boolean) => void;
}

function randomTensor(e: Engine, shape: number[], scale = 0.1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    data[i] = ((s >>> 8) / 16777216 - 0.5) * scale;
  }
  return e.tensor(data, shape).keep();
}

function convCase(name: string, n: number, h: number, w: number, ci: number, co: number, k: number, stride: number): Case {
  const pad = (k - 1) / 2;
  const ho = Math.floor((h + 2 * pad - k) / stride) + 1;
  const wo = Math.floor((w + 2 * pad - k) / stride) + 1;
  return {
    name: `${name}: conv ${n}x${h}x${w}x${ci} -> ${co}, ${k}x${k} s${stride}`,
    flops: 2 * n * ho * wo * co * ci * k * k,
    setup: (e) => [randomTensor(e, [n, h, w, ci]), randomTensor(e, [co, k, k, ci])],
    run: ([x, wt]) => conv2d(x!, wt!, null, { stride, padding: pad }),
    grads: ([x, wt], inputOnly) => {
      x!.requiresGrad = true;
      wt!.requiresGrad = !inputOnly;
      const y = conv2d(x!, wt!, null, { stride, padding: pad });
      backward(y, { gradOutput: x!.engine.tensor(new Float32Array(y.size).fill(1), y.shape) });
      for (const t of [x!, wt!]) {
        t.grad?.dispose();
        t.grad = null;
        t.requiresGrad = false;
      }
    },
  };
}

/**
 * A k3 s2 p1 op1 transposed convolution (exactly 2x larger); FLOPs of the (input, output) pairs a
 * tap joins, 3H - 1 per row axis (as conv-transpose.ts counts them).
 */
function deconvCase(name: string, n: number, h: number, w: number, ci: number, co: number): Case {
  return {
    name: `${name}: deconv ${n}x${h}x${w}x${ci} -> ${co}, k3 s2`,
    flops: 2 * n * (3 * h - 1) * (3 * w - 1) * ci * co,
    setup: (e) => [randomTensor(e, [n, h, w, ci]), randomTensor(e, [co, 3, 3, ci])],
    run: ([x, wt]) => convTranspose2d(x!, wt!, null, { stride: 2, padding: 1, outputPadding: 1 }),
  };
}

/** The conv2d cases timed as forward + both gradients (3x the forward's FLOPs), or forward + the input gradient (2x). */
export function gradCases(quick: boolean, inputOnly = false): Case[] {
  return kernelCases(quick).filter((c) => c.grads).map((c) => ({
    ...c, name: `${c.name} ${inputOnly ? 'fwd+dx' : 'fwd+bwd'}`, flops: (inputOnly ? 2 : 3) * c.flops, run: (ts) => (c.grads!(ts, inputOnly), ts[0]!),
  }));
}

export function kernelCases(quick: boolean): Case[] {
  // Sizes at a 1024x512 input (W x H); --quick divides spatial sizes by 4 in each direction.
  const q = quick ? 4 : 1;
  // The x8 head, as training (logits) and inference (fused argmax) run it. Only ceil(15/8)^2 = 4
  // taps reach each output of a k15 s8 deconv: that is the useful work.
  const x8 = {
    flops: 2 * (512 / q) * (1024 / q) * 19 * 19 * 4,
    setup: (e: Engine) => [randomTensor(e, [1, 64 / q, 128 / q, 19]), randomTensor(e, [19, 15, 15, 19])],
  };
  const x8Opts = { stride: 8, padding: 7, outputPadding: 7 };
  return [
    { ...convCase('matmul ceiling', 1, 32, 32, 1024, 1024, 1, 1), name: 'matmul ceiling: 1024x1024x1024 as a 1x1 conv' },
    convCase('FCA conv_init', 1, 64 / q, 128 / q, 512, 256, 3, 1),
    convCase('spatial_branch.1', 1, 256 / q, 512 / q, 64, 128, 3, 2),
    convCase('MobileNetV2 expand', 1, 32 / q, 64 / q, 96, 576, 1, 1),
    {
      name: `MobileNetV2 depthwise: 1x${32 / q}x${64 / q}x576, 3x3 s1`,
      flops: 2 * (32 / q) * (64 / q) * 576 * 9,
      setup: (e) => [randomTensor(e, [1, 32 / q, 64 / q, 576]), randomTensor(e, [3, 3, 576])],
      run: ([x, w]) => depthwiseConv2d(x!, w!, null, { stride: 1, padding: 1 }),
    },
    // The context branch's x2 upsamplers (k3 s2 p1 op1) at a 1024x512 input: up1 320 -> 192 from
    // 1/32, up2 288 -> 256 from 1/16.
    deconvCase('up1', 1, 16 / q, 32 / q, 320, 192),
    deconvCase('up2', 1, 32 / q, 64 / q, 288, 256),
    {
      ...x8,
      name: `x8 deconv: 1x${64 / q}x${128 / q}x19 -> 19, k15 s8`,
      run: ([x, w]) => convTranspose2d(x!, w!, null, x8Opts),
    },
    {
      // Inference runs the head with the argmax fused: class ids out, the logits never stored.
      ...x8,
      name: `x8 deconv + argmax: 1x${64 / q}x${128 / q}x19 -> ids, k15 s8`,
      run: ([x, w]) => x!.engine.noGrad(() => convTranspose2dArgmax(x!, w!, null, x8Opts)),
    },
  ];
}

/**
 * Which convolution kernels a run uses: the adapter's choice, or one kind forced; 'lanes' is
 * conv2d's and the transposed convolution's lanes forwards (conv2d-lanes.ts, conv-transpose-lanes.ts;
 * depthwise keeps the adapter's kernel), 'lanes{TM}x{NB}s{SG}@{WG}' the same with a named conv2d
 * tile (engine.prefer.conv2dLanes).
 */
export type KernelKind = string;

const KINDS = ['default', 'register', 'workgroup', 'lanes'];
/** A kind, then optionally `+family=value` overrides (checked by the registry when set). */
const isKind = (k: string): boolean => {
  const [base, ...extra] = k.split('+');
  return (KINDS.includes(base!) || /^lanes\d+x\d+s\d+@\d+$/.test(base!)) && extra.every((e) => /^\w+=[\w@.]+$/.test(e));
};

/** Forces `kind` on the engine's convolution ops (engine.variants); 'default' clears it. */
function useKernels(engine: Engine, kindAndExtra: KernelKind): void {
  const [kind, ...extra] = kindAndExtra.split('+') as [string, ...string[]];
  for (const family of ['conv2d', 'convTranspose', 'depthwise', 'conv2dLanes', 'conv2dLanesInput'] as const) engine.variants.set(family, undefined);
  for (const e of extra) engine.variants.set(e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1));
  if (kind === 'default') return;
  if (kind.startsWith('lanes')) {
    engine.variants.set('conv2d', 'lanes');
    engine.variants.set('convTranspose', 'lanes');
    if (kind !== 'lanes') engine.variants.set('conv2dLanes', kind);
    return;
  }
  for (const family of ['conv2d', 'convTranspose', 'depthwise'] as const) engine.variants.set(family, kind);
}

export interface KernelResult {
  name: string;
  /** The convolution kernels it ran (--kernels). */
  kernels: KernelKind;
  gflop: number;
  firstMs: number;
  medianMs: number;
  /** Timed runs behind the median. */
  runs: number;
  gflops: number;
  fractionOfMatmul: number;
  /** With --tune: each kernel timed for this case and its winner (empty when the file already held them all). */
  tuned?: { winner: string; speedup: number }[];
}

/**
 * Times every case with each kind of `kinds`; with `interleave` the kinds alternate case by case
 * (A/B on a noisy host), else each kind runs all cases in turn.
 */
export async function runKernelBench(engine: Engine, quick: boolean, iters: number, tuneFile?: string, kinds: KernelKind[] = ['default'], interleave = false, only?: RegExp, grads: boolean | 'input' = false): Promise<KernelResult[]> {
  const results: KernelResult[] = [];
  if (tuneFile) await loadTuningFile(engine, tuneFile);
  const ceilings = new Map<KernelKind, number>();
  const cases = (grads ? gradCases(quick, grads === 'input') : kernelCases(quick)).filter((c) => !only || only.test(c.name));
  const runs: [KernelKind, Case[]][] = interleave ? cases.flatMap((c) => kinds.map((k): [KernelKind, Case[]] => [k, [c]])) : kinds.map((k) => [k, cases]);
  for (const [kind, cs] of runs) {
    useKernels(engine, kind);
    try {
      results.push(...await runCases(engine, quick, iters, tuneFile, kind, cs, ceilings));
    } finally {
      useKernels(engine, 'default');
    }
  }
  return results;
}

async function runCases(engine: Engine, quick: boolean, iters: number, tuneFile: string | undefined, kind: KernelKind, cases: Case[], ceilings: Map<KernelKind, number>): Promise<KernelResult[]> {
  const results: KernelResult[] = [];
  let ceiling = ceilings.get(kind) ?? 0;
  for (const c of cases) {
    const inputs = c.setup(engine);
    let tuned: KernelResult['tuned'];
    if (tuneFile) {
      tuned = (await autotune(engine, () => void c.run(inputs))).map((r) => ({ winner: r.winner, speedup: r.speedup }));
      await saveTuningFile(engine, tuneFile);
    }
    const t = await timeGpu(engine, () => void c.run(inputs), iters, 1, quick ? 500 : 2000);
    inputs.forEach((x) => x.dispose());
    const gflops = c.flops / 1e9 / (t.medianMs / 1000);
    if (c.name.startsWith('matmul ceiling')) ceilings.set(kind, (ceiling = gflops));
    // (With --grads the 'ceiling' is the matmul case's forward + backward.)
    results.push({ name: c.name, kernels: kind, gflop: c.flops / 1e9, firstMs: t.firstMs, medianMs: t.medianMs, runs: t.iters, gflops, fractionOfMatmul: ceiling ? gflops / ceiling : 1, ...(tuned ? { tuned } : {}) });
    console.log(`${kind === 'default' ? '' : `[${kind}] `}${c.name.padEnd(58)} ${fmt(c.flops / 1e9, 2).padStart(7)} GFLOP  first ${fmt(t.firstMs, 0).padStart(6)} ms  median ${fmt(t.medianMs, 1).padStart(8)} ms (${t.iters} runs)  ${fmt(gflops, 2).padStart(6)} GFLOP/s  ${fmt((100 * gflops) / (ceiling || gflops), 0).padStart(4)}% of matmul`);
    if (tuned?.length) console.log(`  tuned: ${tuned.map((r) => `${r.winner} (${fmt(r.speedup, 2)}x the default)`).join(', ')}`);
  }
  return results;
}

async function main() {
  const args = commandLine({
    usage: 'usage: node bench/kernels.js [--quick] [--iters N] [--json PATH] [--kernels default|register|workgroup|lanes|lanesTMxNBsSG@WG|both|A,B,...] [--only REGEX] [--grads [input]] [--tune [FILE]] [--adapter lavapipe|swiftshader|NAME]\n' +
      'Times the convolutions that dominate CANet at 1024x512 (GFLOP/s, fraction of the matmul ceiling); see bench/kernels.ts.',
    flags: ['quick', 'iters', 'json', 'kernels', 'only', 'grads'],
  });
  const quick = args.has('quick');
  const iters = Number(args.get('iters') ?? (quick ? 2 : 3));
  const engine = await createEngine(engineOptionsFromArgs(args));
  console.log(`adapter: ${describeAdapter(engine)}`);
  const tuneFile = tuneFileArg(args);
  const choice = String(args.get('kernels') ?? 'default');
  // A comma list (e.g. register,lanes) alternates the kinds case by case: an A/B in one run.
  const kinds: KernelKind[] = choice === 'both' ? ['register', 'workgroup'] : choice.split(',');
  if (!kinds.every(isKind)) throw new Error(`--kernels must be default, register, workgroup, lanes, lanesTMxNBsSG@WG (each optionally +family=value), both or a comma list of them, got ${choice}`);
  const grads = args.get('grads');
  if (grads !== undefined && grads !== true && grads !== 'input') throw new Error(`--grads takes nothing or 'input', got ${grads}`);
  const only = args.get('only');
  const results = await runKernelBench(engine, quick, iters, tuneFile, kinds, kinds.length > 1 && choice !== 'both', typeof only === 'string' ? new RegExp(only, 'i') : undefined, grads === 'input' ? 'input' : grads === true);
  const json = args.get('json');
  if (typeof json === 'string') {
    mkdirSync(dirname(json), { recursive: true });
    writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), adapter: engine.adapter, quick, iters, tuning: tuneFile ?? null, results }, null, 2));
  }
  engine.destroy();
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('kernels.js')) await main();
