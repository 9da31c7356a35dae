/**
 * Throughput benchmark: CANet inference and training steps on this machine's adapter.
 *   node bench/run.js [--quick] [--full] [--backbone mobilenetv2|resnet18|resnet101] [--size WxH]
 *                     [--batch N] [--iters N] [--width W] [--profile] [--json PATH]
 *                     [--peers [tfjs-webgpu,tfjs-wasm]] [--peer-iters N] [--peer-timeout S]
 *                     [--tune [FILE]] [--cpu] [--adapter lavapipe|swiftshader|NAME] [--prefer k=v[,k=v]]
 *                     [--precision f32|f16|f32,f16]
 * --prefer sets kernel variant choices (engine.variants: subgroups=on|off, bnUnroll=N, family=...;
 * an unknown family or value is refused, naming the allowed ones).
 * --adapter lavapipe or swiftshader (also --software NAME) runs on that software GPU even where a
 * hardware adapter exists; another NAME picks the hardware adapter whose description contains it.
 * Protocol: a first run (pipeline compilation included, reported as "first ms"), a warm-up, then
 * N timed runs each ending with the GPU really done (onSubmittedWorkDone); the median is reported.
 * Each run's CPU part (JavaScript and submit(), not the wait) is reported as "cpu ms". Then the
 * same call is captured into a plan (engine.capture) and replayed N times: "plan ms" and
 * "plan cpu" are its median time and CPU ms per replay. `--cpu` runs a 64x32 inference (small GPU
 * part, so CPU cost shows) and issue 10's 256x128 b2 training step.
 *
 * --peers also runs the same network in TensorFlow.js on each case (bench/peers/tfjs.ts: WebGPU
 * on a device of the same adapter, and WASM on the CPU; a list picks some) and prints ours, theirs
 * and the ratio theirs / ours. Without --size the cases are then the targets of issue 10:
 * inference 512x256 batch 1 and a training step 256x128 batch 2. Only MobileNetV2 has a peer.
 *
 * --precision f32 or f16 times inference through `segment` (class ids, the path of the CLI and the
 * Segmenter) in that storage precision (f16: CANet.half(), needs shader-f16, e.g. --adapter
 * lavapipe); without it inference times `forward` (f32 logits), as before. `f32,f16` compares the
 * two on the inference cases in one run: after both have compiled and warmed up, each timed
 * iteration runs f32 then f16 (A/B interleaved, so load changes hit both), and the table gives
 * both medians, the median of the per-pair ratios f16 / f32, and how many class ids agree (random
 * weights and images: see test/half.test.ts and bench/RESULTS.md for the demo weights on the sample).
 *
 * --tune loads the tuning file (default ~/.cache/canet-gpu/tuning.json, see engine/tune-file.ts),
 * autotunes each case's conv and transposed-conv kernels that it does not hold yet (engine/tune.ts), saves it, and then
 * measures with the winners. Without it every kernel takes the adapter's default tiles.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEngine } from '../engine/device-node.js';
import type { Engine, KernelTiming } from '../engine/engine.js';
import { SGD } from '../engine/optim.js';
import { canet, type BackboneName, type Precision } from '../net/canet.js';
import { trainStep } from '../net/train.js';
import { autotune } from '../engine/tune.js';
import { loadTuningFile, saveTuningFile } from '../engine/tune-file.js';
import { commandLine, describeAdapter, engineOptionsFromArgs, fmt, timeGpu, tuneFileArg, type BenchCommand } from './timing.js';
import type { PeerResult } from './peers/tfjs.js';

export interface BenchCase {
  model: 'canet';
  backbone: BackboneName;
  width: number;
  mode: 'infer' | 'train';
  batch: number;
  size: [number, number];
  /** Inference through segment() in this precision (--precision); absent: forward() logits in f32. */
  precision?: Precision;
}

export interface BenchResult extends BenchCase {
  iterations: number;
  firstMs: number;
  minMs: number;
  medianMs: number;
  maxMs: number;
  imagesPerSecond: number;
  /** GPU memory held by the engine's pools after the case (live + pooled buffers). */
  peakGpuBytes: number;
  /** Useful FLOPs of one image's forward (2 x multiply-adds), from the kernels' own counts. */
  forwardGflopPerImage: number;
  /** Achieved rate: FLOPs of what the timed call ran / its median time. */
  gflops: number;
  /** Median CPU ms of one op-by-op call: JavaScript and submit(), not the wait for the GPU (bench/timing.ts). */
  cpu_ms: number;
  /** The same call captured once and replayed (engine.capture): CPU ms per replay, and its times. */
  plan: { cpu_ms: number; medianMs: number; minMs: number; dispatches: number };
  /** Dispatches of one steady-state call. */
  dispatches: number;
  /** GPU buffers and bind groups one steady-state call creates (0 when the pool and the bind-group cache serve everything). */
  steadyBuffersCreated: number;
  steadyBindGroupsCreated: number;
  /** Our parameter count (the peers must have the same). */
  parameters: number;
  /** With --tune: kernels timed for this case (0 when the file had them all), and the winners that beat the default. */
  tuning?: { timed: number; faster: { label: string; winner: string; speedup: number }[] };
  profile?: { kernel: string; calls: number; ms: number; gflops: number | null }[];
  /** The same case in the peers (--peers); `error` when a peer could not run it. */
  peers?: (PeerResult | { peer: string; error: string })[];
}

function randomImages(engine: Engine, n: number, h: number, w: number) {
  const data = new Float32Array(n * h * w * 3);
  let s = 1;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s >>> 8) / 8388608 - 1;
  }
  return engine.tensor(data, [n, h, w, 3]).keep();
}

function groupProfile(kernels: KernelTiming[]) {
  const by = new Map<string, { calls: number; ms: number; flops: number }>();
  for (const k of kernels) {
    const g = by.get(k.name) ?? { calls: 0, ms: 0, flops: 0 };
    g.calls++;
    g.ms += k.ms;
    g.flops += k.flops ?? 0;
    by.set(k.name, g);
  }
  return [...by.entries()]
    .map(([kernel, g]) => ({ kernel, calls: g.calls, ms: g.ms, gflops: g.flops ? g.flops / 1e9 / (g.ms / 1000) : null }))
    .sort((a, b) => b.ms - a.ms);
}

export async function runCase(engine: Engine, c: BenchCase, iters: number, profile: boolean, tuneFile?: string): Promise<BenchResult> {
  const [w, h] = c.size;
  const model = canet(engine, { backbone: c.backbone, classes: 19, width: c.width, seed: 1 });
  const images = randomImages(engine, c.batch, h, w);
  const labels = engine.tensor(Int32Array.from({ length: c.batch * h * w }, (_, i) => (i * 7) % 19), [c.batch, h, w]).keep();
  const opt = c.mode === 'train' ? new SGD(model.parameters(), { lr: 1e-4, momentum: 0.9, weightDecay: 1e-4 }) : null;
  if (c.precision === 'f16') model.half();
  const once = () => {
    if (c.mode === 'infer') {
      model.eval();
      if (c.precision) model.segment(images);
      else engine.noGrad(() => model.forward(images));
    } else trainStep(model, opt!, images, labels);
  };
  try {
    let tuning: BenchResult['tuning'];
    if (tuneFile) {
      await loadTuningFile(engine, tuneFile);
      const report = await autotune(engine, once);
      await saveTuningFile(engine, tuneFile);
      tuning = { timed: report.length, faster: report.filter((r) => r.speedup > 1.05).map((r) => ({ label: r.label, winner: r.winner, speedup: r.speedup })) };
    }
    // The first call compiles the pipelines (and folds each BatchNorm into its conv, in
    // inference); the second settles the pool (buffers then come back in the same order every
    // call); the third is counted: FLOPs, dispatches, and what a steady-state call creates
    // (buffers and bind groups, both 0 when caching works). The timed calls repeat it exactly.
    const first0 = performance.now();
    await engine.scope(async () => {
      once();
      await engine.sync();
    });
    const firstMs = performance.now() - first0;
    await engine.scope(async () => {
      once();
      await engine.sync();
    });
    const s0 = engine.stats();
    await engine.scope(async () => {
      once();
      await engine.sync();
    });
    const s1 = engine.stats();
    let forwardFlops = (s1.flops - s0.flops) / c.batch;
    if (c.mode === 'train') {
      // Forward alone, for FLOPs per image (a training step is forward + backward + update).
      const f0 = engine.stats().flops;
      await engine.scope(async () => {
        model.eval();
        engine.noGrad(() => model.forward(images));
        await engine.sync();
      });
      forwardFlops = (engine.stats().flops - f0) / c.batch;
    }
    const t = { ...(await timeGpu(engine, once, iters, 0)), firstMs };
    // The same call captured (after the warm-ups above, as a steady-state call) and replayed.
    const plan = engine.capture(once, { label: `${c.mode} plan` });
    const p = await timeGpu(engine, () => plan.run(), iters, 1);
    const planDispatches = plan.dispatches;
    plan.dispose();
    const callFlops = s1.flops - s0.flops;
    const st = engine.stats();
    const result: BenchResult = {
      ...c,
      iterations: iters,
      firstMs: t.firstMs,
      minMs: t.minMs,
      medianMs: t.medianMs,
      maxMs: t.maxMs,
      imagesPerSecond: (c.batch * 1000) / t.medianMs,
      peakGpuBytes: st.liveBufferBytes + st.freeBytes,
      forwardGflopPerImage: forwardFlops / 1e9,
      gflops: callFlops / 1e9 / (t.medianMs / 1000),
      cpu_ms: t.cpuMs,
      plan: { cpu_ms: p.cpuMs, medianMs: p.medianMs, minMs: p.minMs, dispatches: planDispatches },
      dispatches: s1.dispatches - s0.dispatches,
      steadyBuffersCreated: s1.buffersCreated - s0.buffersCreated,
      steadyBindGroupsCreated: s1.bindGroupsCreated - s0.bindGroupsCreated,
      parameters: model.numParameters(),
      ...(tuning ? { tuning } : {}),
    };
    if (profile && engine.features.has('timestamp-query')) {
      const { kernels } = await engine.profile(() => engine.scope(async () => {
        once();
        await engine.sync();
      }));
      result.profile = groupProfile(kernels);
    }
    return result;
  } finally {
    opt?.dispose();
    images.dispose();
    labels.dispose();
    model.dispose();
  }
}

const BENCH_COMMAND: BenchCommand = {
  usage: `usage: node bench/run.js [options]
  --quick              small sizes and few iterations (about a minute on a software GPU)
  --full               every backbone and size of the full table
  --backbone NAME      mobilenetv2 | resnet18 | resnet101
  --size WxH           network input size (default: the standard cases)
  --batch N            images per call
  --iters N            timed runs per case (the median is reported)
  --width W            channel width multiplier of the network
  --infer, --train     only inference, only the training step
  --cpu                CPU ms per call: a 64x32 inference and a 256x128 b2 training step
  --profile            per-kernel GPU time (timestamp queries)
  --json PATH          write the results as JSON
  --peers [LIST]       also run TensorFlow.js (tfjs-webgpu,tfjs-wasm) on the same cases
  --peer-iters N, --peer-timeout S
  --tune [FILE]        autotune kernels into the tuning file first
  --adapter NAME       lavapipe | swiftshader | part of a hardware adapter's name
  --precision P        f32 | f16 | f32,f16 (f16 inference where the adapter has shader-f16; f32,f16 an A/B)
  --prefer k=v[,k=v]   kernel variant choices (engine.variants), e.g. subgroups=off,conv2d=workgroup
Each case reports the first call (compiling included), the median, CPU ms per call, and the same
for a captured plan (bench/run.ts says how it measures).`,
  flags: ['quick', 'full', 'backbone', 'size', 'batch', 'iters', 'width', 'infer', 'train', 'cpu', 'profile', 'json', 'peers', 'peer-iters', 'peer-timeout', 'precision', 'prefer'],
};

const PEERS = ['tfjs-webgpu', 'tfjs-wasm'] as const;
type PeerName = (typeof PEERS)[number];

function selectedPeers(args: Map<string, string | true>): PeerName[] {
  const v = args.get('peers');
  if (v === undefined) return [];
  if (v === true) return [...PEERS];
  const names = String(v).split(',').map((n) => n.trim()).filter(Boolean);
  const bad = names.filter((n) => !(PEERS as readonly string[]).includes(n));
  if (bad.length) throw new Error(`bench: unknown peer(s) ${bad.join(', ')}; known: ${PEERS.join(', ')}`);
  return names as PeerName[];
}

function defaultCases(args: Map<string, string | true>, peers: boolean): BenchCase[] {
  const backbone = (args.get('backbone') as BackboneName | undefined) ?? 'mobilenetv2';
  const width = Number(args.get('width') ?? 1);
  const base = { model: 'canet' as const, backbone, width };
  const size = typeof args.get('size') === 'string' ? (String(args.get('size')).split('x').map(Number) as [number, number]) : null;
  const batch = args.has('batch') ? Number(args.get('batch')) : null;
  if (size) {
    const modes = args.has('train') ? (['train'] as const) : args.has('infer') ? (['infer'] as const) : (['infer', 'train'] as const);
    return modes.map((mode) => ({ ...base, mode, batch: batch ?? (mode === 'train' ? 2 : 1), size }));
  }
  if (args.has('quick')) return [{ ...base, mode: 'infer', batch: batch ?? 1, size: [256, 128] }];
  // The CPU cost of a call (issue 21): a tiny inference, whose GPU part is small, and the
  // training step of issue 10's target.
  if (args.has('cpu'))
    return [
      { ...base, mode: 'infer', batch: batch ?? 1, size: [64, 32] },
      { ...base, mode: 'train', batch: batch ?? 2, size: [256, 128] },
    ];
  // Issue 10's targets: what the peers are compared on.
  if (peers)
    return [
      { ...base, mode: 'infer', batch: batch ?? 1, size: [512, 256] },
      { ...base, mode: 'train', batch: batch ?? 2, size: [256, 128] },
    ];
  const cases: BenchCase[] = [
    { ...base, mode: 'infer', batch: batch ?? 1, size: [512, 256] },
    { ...base, mode: 'infer', batch: batch ?? 1, size: [1024, 512] },
  ];
  if (args.has('full')) cases.push({ ...base, mode: 'infer', batch: batch ?? 1, size: [2048, 1024] });
  cases.push({ ...base, mode: 'train', batch: batch ?? 2, size: [512, 256] });
  return cases;
}

/**
 * Runs one peer on one case in a child process (see bench/peers/tfjs.ts for why a child: TF.js's
 * global state and the WebGPU globals it needs stay out of the process that times ours).
 */
function runPeer(peer: PeerName, c: BenchCase, iters: number, timeoutS: number): PeerResult | { peer: string; error: string } {
  const program = join(dirname(fileURLToPath(import.meta.url)), 'peers', 'tfjs.js');
  if (!existsSync(program)) return { peer, error: `${program} is missing: the peers need the devDependencies (npm install) and npm run build` };
  if (c.backbone !== 'mobilenetv2') return { peer, error: 'the TF.js peer implements CANet-MobileNetV2 only' };
  const dir = mkdtempSync(join(tmpdir(), 'canet-peer-'));
  const json = join(dir, 'peer.json');
  try {
    const backend = peer === 'tfjs-webgpu' ? 'webgpu' : 'wasm';
    const argv = [program, '--backend', backend, '--mode', c.mode, '--size', c.size.join('x'), '--batch', String(c.batch), '--width', String(c.width), '--iters', String(iters), '--json', json];
    const r = spawnSync(process.execPath, argv, { stdio: ['ignore', 'inherit', 'inherit'], timeout: timeoutS * 1000 });
    if (r.error || r.status !== 0 || !existsSync(json))
      return { peer, error: r.error ? String(r.error.message) : r.signal ? `killed by ${r.signal} (timeout ${timeoutS} s?)` : `exit status ${r.status}` };
    return JSON.parse(readFileSync(json, 'utf8')) as PeerResult;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const caseName = (r: BenchCase) => `${r.mode} ${r.backbone}${r.width !== 1 ? `x${r.width}` : ''} ${r.size.join('x')} b${r.batch}${r.precision && r.mode === 'infer' ? ` ${r.precision}` : ''}`;

/** --precision: one precision, or 'f32,f16' (the A/B comparison); undefined without the flag. */
function precisionsArg(args: Map<string, string | true>): Precision[] | undefined {
  const v = args.get('precision');
  if (v === undefined) return undefined;
  const list = String(v).split(',').map((p) => p.trim());
  if (!list.length || list.some((p) => p !== 'f32' && p !== 'f16')) throw new Error(`bench: --precision must be f32, f16 or f32,f16, got '${v}'`);
  return [...new Set(list)] as Precision[];
}

export interface PrecisionAB {
  case: string;
  iterations: number;
  firstMs: Record<Precision, number>;
  medianMs: Record<Precision, number>;
  minMs: Record<Precision, number>;
  /** Median, min and max over the timed pairs of f16 ms / f32 ms. */
  ratio: { median: number; min: number; max: number };
  /** Share of class ids equal in the last pair (random weights and images). */
  agreement: number;
  loadAverage: number[];
  /** Every timed pair, [f32 ms, f16 ms], in order. */
  pairs: [number, number][];
}

/**
 * f32 against f16 inference (segment) of one case on one model: each first call (compiling) and a
 * warm-up, then `iters` pairs, each an f32 call then an f16 call, every call ending with the GPU
 * done. Interleaving puts both through the same load on a shared host.
 */
async function precisionAB(engine: Engine, c: BenchCase, iters: number): Promise<PrecisionAB> {
  const [w, h] = c.size;
  const model = canet(engine, { backbone: c.backbone, classes: 19, width: c.width, seed: 1 }).eval();
  const images = randomImages(engine, c.batch, h, w);
  const call = async (p: Precision): Promise<{ ms: number; ids: Int32Array }> => {
    const t0 = performance.now();
    const ids = await engine.scope(async () => {
      const y = model.segment(images, { precision: p });
      await engine.sync();
      return await y.readInt32();
    });
    return { ms: performance.now() - t0, ids };
  };
  try {
    const firstMs = { f32: (await call('f32')).ms, f16: (await call('f16')).ms };
    await call('f32');
    await call('f16');
    const times: Record<Precision, number[]> = { f32: [], f16: [] };
    const ratios: number[] = [];
    let agreement = 0;
    for (let i = 0; i < iters; i++) {
      const a = await call('f32');
      const b = await call('f16');
      times.f32.push(a.ms);
      times.f16.push(b.ms);
      ratios.push(b.ms / a.ms);
      let same = 0;
      for (let k = 0; k < a.ids.length; k++) if (a.ids[k] === b.ids[k]) same++;
      agreement = same / a.ids.length;
    }
    const med = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor((v.length - 1) / 2)]!;
    return {
      case: caseName({ ...c, precision: undefined }),
      iterations: iters,
      firstMs,
      medianMs: { f32: med(times.f32), f16: med(times.f16) },
      minMs: { f32: Math.min(...times.f32), f16: Math.min(...times.f16) },
      ratio: { median: med(ratios), min: Math.min(...ratios), max: Math.max(...ratios) },
      agreement,
      loadAverage: loadavg(),
      pairs: times.f32.map((a, i) => [a, times.f16[i]!]),
    };
  } finally {
    images.dispose();
    model.dispose();
  }
}

function printPeerTable(results: BenchResult[], peers: PeerName[]): void {
  console.log(`\nours vs TF.js 4.22 (median ms; ratio = theirs / ours, > 1: we are faster)`);
  console.log(`${'case'.padEnd(34)} ${'ours'.padStart(10)}${peers.map((p) => ` ${p.padStart(12)} ${'ratio'.padStart(7)}`).join('')}`);
  for (const r of results) {
    const cells = peers.map((p) => {
      const q = r.peers?.find((x) => x.peer === p);
      if (!q || 'error' in q) return ` ${'failed'.padStart(12)} ${'-'.padStart(7)}`;
      return ` ${fmt(q.medianMs, 1).padStart(12)} ${fmt(q.medianMs / r.medianMs, 2).padStart(7)}`;
    });
    console.log(`${caseName(r).padEnd(34)} ${fmt(r.medianMs, 1).padStart(10)}${cells.join('')}`);
  }
  for (const r of results)
    for (const q of r.peers ?? []) if ('error' in q) console.log(`  ${q.peer} on ${caseName(r)}: ${q.error}`);
}

async function main() {
  const args = commandLine(BENCH_COMMAND);
  const engine = await createEngine(engineOptionsFromArgs(args));
  // --prefer family=value[,family=value]: kernel variant choices (engine.variants), e.g.
  // subgroups=on,bnUnroll=4; variants.set refuses an unknown family or value, naming the allowed ones.
  const prefer = args.get('prefer');
  if (typeof prefer === 'string')
    for (const kv of prefer.split(',')) {
      const at = kv.indexOf('=');
      if (at <= 0) throw new Error(`--prefer: '${kv}' is not family=value (families: ${engine.variants.names().join(', ')})`);
      engine.variants.set(kv.slice(0, at).trim(), kv.slice(at + 1).trim());
    }
  console.log(`adapter: ${describeAdapter(engine)}${typeof prefer === 'string' ? ` (prefer ${prefer})` : ''}`);
  const peers = selectedPeers(args);
  const cases = defaultCases(args, peers.length > 0);
  const iters = Number(args.get('iters') ?? (engine.adapter.isSoftware ? 2 : 20));
  // TF.js WebGPU takes minutes per call on a software adapter (bench/RESULTS.md): one timed call
  // after the first keeps `--peers` near 15 minutes there.
  const peerIters = Number(args.get('peer-iters') ?? (engine.adapter.isSoftware ? 1 : iters));
  const peerTimeoutS = Number(args.get('peer-timeout') ?? 1800);
  const tuneFile = tuneFileArg(args);
  const precisions = precisionsArg(args);
  if (precisions?.includes('f16')) engine.requireF16('bench --precision f16');
  if (precisions && precisions.length > 1) {
    // The A/B comparison of the two precisions on the inference cases (see the file comment).
    const ab: PrecisionAB[] = [];
    console.log(`${'case'.padEnd(34)} ${'first f32'.padStart(9)} ${'first f16'.padStart(9)} ${'f32 ms'.padStart(9)} ${'f16 ms'.padStart(9)} ${'f16/f32'.padStart(8)} ${'range'.padStart(11)} ${'ids agree'.padStart(9)}  load`);
    for (const c of cases.filter((k) => k.mode === 'infer')) {
      const r = await precisionAB(engine, c, iters);
      ab.push(r);
      console.log(`${r.case.padEnd(34)} ${fmt(r.firstMs.f32, 0).padStart(9)} ${fmt(r.firstMs.f16, 0).padStart(9)} ${fmt(r.medianMs.f32, 1).padStart(9)} ${fmt(r.medianMs.f16, 1).padStart(9)} ${fmt(r.ratio.median, 3).padStart(8)} ${`${fmt(r.ratio.min, 2)}-${fmt(r.ratio.max, 2)}`.padStart(11)} ${`${fmt(100 * r.agreement, 2)}%`.padStart(9)}  ${r.loadAverage.map((l) => fmt(l, 2)).join(' ')}`);
    }
    const json = typeof args.get('json') === 'string' ? String(args.get('json')) : 'bench/results/latest.json';
    mkdirSync(dirname(json), { recursive: true });
    writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), adapter: engine.adapter, features: [...engine.features], precisionAB: ab }, null, 2) + '\n');
    console.log(`wrote ${json}`);
    engine.destroy();
    return;
  }
  if (precisions) for (const c of cases) c.precision = precisions[0];
  const results: BenchResult[] = [];
  console.log(`${'case'.padEnd(34)} ${'first ms'.padStart(9)} ${'median ms'.padStart(10)} ${'min'.padStart(8)} ${'max'.padStart(8)} ${'img/s'.padStart(8)} ${'GFLOP/img'.padStart(9)} ${'GFLOP/s'.padStart(8)} ${'dispatches'.padStart(10)} ${'GPU MB'.padStart(7)} ${'cpu ms'.padStart(7)} ${'plan ms'.padStart(9)} ${'plan cpu'.padStart(8)}`);
  for (const c of cases) {
    const r = await runCase(engine, c, iters, args.has('profile'), tuneFile);
    results.push(r);
    if (r.tuning) {
      console.log(`  autotune: ${r.tuning.timed} conv and transposed-conv kernels timed (${tuneFile}), ${r.tuning.faster.length} with a tile over 5% faster than the default`);
      for (const f of r.tuning.faster) console.log(`    ${f.label.padEnd(52)} ${f.winner.padEnd(10)} ${fmt(f.speedup, 2)}x`);
    }
    console.log(`${caseName(r).padEnd(34)} ${fmt(r.firstMs, 0).padStart(9)} ${fmt(r.medianMs, 1).padStart(10)} ${fmt(r.minMs, 1).padStart(8)} ${fmt(r.maxMs, 1).padStart(8)} ${fmt(r.imagesPerSecond, 2).padStart(8)} ${fmt(r.forwardGflopPerImage, 2).padStart(9)} ${fmt(r.gflops, 2).padStart(8)} ${String(r.dispatches).padStart(10)} ${fmt(r.peakGpuBytes / 2 ** 20, 0).padStart(7)} ${fmt(r.cpu_ms, 2).padStart(7)} ${fmt(r.plan.medianMs, 1).padStart(9)} ${fmt(r.plan.cpu_ms, 3).padStart(8)}`);
    // Issue 10's budgets: at most 90 dispatches per forward, 400 per training step.
    const budget = r.mode === 'infer' ? 90 : 400;
    console.log(`  steady-state call: ${r.dispatches} dispatches (budget ${budget}: ${r.dispatches <= budget ? 'met' : 'over'}), ${r.steadyBuffersCreated} GPU buffers and ${r.steadyBindGroupsCreated} bind groups created`);
    if (r.profile) {
      const total = r.profile.reduce((s, k) => s + k.ms, 0);
      console.log(`  top kernels (GPU time of one call, ${fmt(total, 1)} ms in all):`);
      for (const k of r.profile.slice(0, 10))
        console.log(`    ${k.kernel.padEnd(32)} ${String(k.calls).padStart(4)}x ${fmt(k.ms, 2).padStart(9)} ms ${fmt((100 * k.ms) / total, 1).padStart(5)}%  ${k.gflops === null ? '' : fmt(k.gflops, 2) + ' GFLOP/s'}`);
    }
    if (peers.length) {
      // Our pooled buffers would only crowd a software adapter's memory while the peer runs.
      engine.trim();
      r.peers = [];
      for (const p of peers) {
        const q = runPeer(p, c, peerIters, peerTimeoutS);
        if (!('error' in q)) {
          if (q.parameters !== r.parameters) throw new Error(`bench: ${p} has ${q.parameters} parameters, ours ${r.parameters}: not the same network`);
          if (q.backend === 'webgpu' && q.adapter !== engine.adapter.description) console.log(`  note: ${p} ran on '${q.adapter}', ours on '${engine.adapter.description}'`);
        }
        r.peers.push(q);
      }
    }
  }
  if (peers.length) printPeerTable(results, peers);
  const json = typeof args.get('json') === 'string' ? String(args.get('json')) : 'bench/results/latest.json';
  mkdirSync(dirname(json), { recursive: true });
  writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), adapter: engine.adapter, features: [...engine.features], results }, null, 2) + '\n');
  console.log(`wrote ${json}`);
  engine.destroy();
}

await main();
