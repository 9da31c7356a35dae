/**
 * The TF.js peer of the benchmark: CANet-MobileNetV2 (bench/peers/canet-tfjs.ts) in TensorFlow.js
 * 4.22, on the WebGPU backend (on a GPUDevice created by our own createEngine, so the same adapter
 * chosen the same way) or on the WASM backend (a CPU reference point), timed with our protocol.
 *
 *   node bench/peers/tfjs.js --backend webgpu|wasm --mode infer|train --size WxH [--batch N]
 *                            [--iters N] [--width W] [--profile] [--json PATH]
 *   node bench/peers/tfjs.js --check [--backend wasm|webgpu|cpu] [--size 64x64] [--batch 2] [--verbose]
 *                            [--json PATH]
 *
 * `--check` is the proof that it is the same network: it builds ours, compares every tensor name and
 * shape, loads our weights (with randomised batch-norm statistics) into the TF.js network, and
 * compares the inference logits, the training-mode logits, the loss, and every parameter update
 * and running statistic after one SGD step.
 *
 * `node bench/run.js --peers` runs this program in a child process per case rather than importing
 * TF.js: TF.js keeps global state (its engine, registries, flags) and needs WebGPU globals
 * (GPUBufferUsage, navigator.gpu) that our engine deliberately never creates, so our numbers are
 * measured in a process that TF.js never touched, and a TF.js crash cannot take our run with it.
 * Inside this process TF.js runs on our engine's device, so "same adapter" holds by construction.
 *
 * Timing protocol as bench/timing.ts: a first call (shader compilation included, reported as first
 * ms), then N timed calls each ending with a readback (TF.js's own way of waiting for the GPU: a
 * sum of the logits for inference, the loss after the update for training), median reported.
 * Training step: forward (batch-norm batch statistics and running updates), softmax cross-entropy
 * (mean over pixels) against fixed labels, backward, SGD momentum 0.9 with weight decay 1e-4 and
 * lr 1e-4, as ours (PyTorch's SGD: g + wd * w into the momentum buffer).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
// TF.js's plain-JS backend, float64 accumulation: a third opinion in --check, never timed.
import '@tensorflow/tfjs-backend-cpu';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { getThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { globals as webgpuGlobals } from 'webgpu';
import { createEngine } from '../../engine/device-node.js';
import type { Engine } from '../../engine/engine.js';
import { SGD } from '../../engine/optim.js';
import { canet } from '../../net/canet.js';
import { trainStep } from '../../net/train.js';
import type { StateDict } from '../../net/module.js';
import { fmt, parseArgs } from '../timing.js';
import { PeerCANet, type PeerTensorSpec } from './canet-tfjs.js';
import { registerWasmGradientKernels } from './wasm-gradients.js';

/** 'cpu' (TF.js's plain-JS backend, a dependency of the WebGPU one) is a third opinion for --check only. */
export type PeerBackend = 'webgpu' | 'wasm' | 'cpu';

/** Our parameter count for K = 19, width 1 (README "Models", NETWORK.md): the peer must match it. */
export const REFERENCE_PARAMETERS = 4_774_186;

export interface PeerCase {
  backend: PeerBackend;
  mode: 'infer' | 'train';
  size: [number, number];
  batch: number;
  width: number;
  iters: number;
  /** Print TF.js's per-kernel times of one extra call. */
  profile?: boolean;
}

export interface PeerSetup {
  peer: string;
  tfjsVersion: string;
  backend: PeerBackend;
  /** How the WebGPU backend got its device: 'shared' (our createEngine's GPUDevice) or 'separate'. */
  device: 'shared' | 'separate' | 'cpu';
  adapter: string;
  /** WASM: XNNPACK threads actually used. */
  threads?: number;
  simd?: boolean;
}

export interface PeerResult extends PeerSetup {
  mode: 'infer' | 'train';
  size: [number, number];
  batch: number;
  width: number;
  parameters: number;
  forwardGmacPerImage: number;
  iterations: number;
  firstMs: number;
  minMs: number;
  medianMs: number;
  maxMs: number;
}

/** TF.js must not find an adapter of its own: it gets ours. */
function installNavigatorGpu(gpu: object): void {
  const g = globalThis as { navigator?: object };
  if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
  Object.defineProperty(g.navigator!, 'gpu', { value: gpu, configurable: true });
}

async function setupWebGPU(): Promise<{ setup: PeerSetup; engine: Engine }> {
  // The WebGPU globals TF.js's kernels read (GPUBufferUsage, GPUMapMode, ...), in this process only.
  Object.assign(globalThis, webgpuGlobals);
  const engine = await createEngine({ quiet: true });
  const a = engine.adapter;
  const info = { vendor: a.vendor, architecture: a.architecture, device: a.device, description: a.description } as GPUAdapterInfo;
  installNavigatorGpu({
    requestAdapter: () => Promise.reject(new Error('tfjs peer: TF.js is meant to run on our engine device, not to request an adapter')),
  });
  let device: PeerSetup['device'] = 'shared';
  tf.registerBackend('webgpu', () => new WebGPUBackend(engine.device, info));
  if (!(await tf.setBackend('webgpu'))) {
    // Fallback: a second device on the same adapter, which TF.js owns.
    device = 'separate';
    tf.removeBackend('webgpu');
    const other = await createEngine({ quiet: true });
    tf.registerBackend('webgpu', () => new WebGPUBackend(other.device, info));
    if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs peer: the TF.js WebGPU backend failed to start on either device (see its warning above)');
  }
  await tf.ready();
  return { setup: { peer: 'tfjs-webgpu', tfjsVersion: tf.version_core, backend: 'webgpu', device, adapter: a.description }, engine };
}

async function setupWasm(): Promise<PeerSetup> {
  // Node's file system path of the package's .wasm files (Emscripten reads them with fs in Node).
  const require = createRequire(import.meta.url);
  setWasmPaths(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')) + '/dist/');
  if (!(await tf.setBackend('wasm'))) throw new Error('tfjs peer: the TF.js WASM backend failed to start (see its warning above)');
  await tf.ready();
  registerWasmGradientKernels(tf);
  const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
  return { peer: 'tfjs-wasm', tfjsVersion: tf.version_core, backend: 'wasm', device: 'cpu', adapter: `WebAssembly${simd ? ' SIMD' : ''} on the CPU`, threads: getThreadsCount(), simd };
}

export async function setupBackend(backend: PeerBackend): Promise<{ setup: PeerSetup; engine: Engine | null }> {
  // Only our own messages: TF.js's Node hint (install tfjs-node) and kernel warnings are noise here.
  tf.env().set('PROD', true);
  if (backend === 'webgpu') return setupWebGPU();
  if (backend === 'wasm') return { setup: await setupWasm(), engine: null };
  if (backend === 'cpu') {
    await tf.setBackend('cpu');
    return { setup: { peer: 'tfjs-cpu', tfjsVersion: tf.version_core, backend: 'cpu', device: 'cpu', adapter: 'JavaScript on the CPU' }, engine: null };
  }
  throw new Error(`tfjs peer: unknown backend '${String(backend)}' (webgpu or wasm)`);
}

/** The images bench/run.ts feeds ours (same generator). */
export function benchImages(n: number, h: number, w: number): Float32Array {
  const data = new Float32Array(n * h * w * 3);
  let s = 1;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s >>> 8) / 8388608 - 1;
  }
  return data;
}

/** The labels bench/run.ts feeds ours. */
export const benchLabels = (n: number, h: number, w: number, classes: number) => Int32Array.from({ length: n * h * w }, (_, i) => (i * 7) % classes);

/** Mean softmax cross-entropy over pixels against one-hot labels [N, H, W, K]. */
function crossEntropy(logits: tf.Tensor4D, oneHot: tf.Tensor4D): tf.Scalar {
  const pixels = logits.size / logits.shape[3];
  return tf.div(tf.neg(tf.sum(tf.mul(oneHot, tf.logSoftmax(logits)))), pixels) as tf.Scalar;
}

/** One SGD step (lr, momentum 0.9, weight decay as PyTorch's: added to the gradient); returns the loss. */
function peerTrainStep(net: PeerCANet, opt: tf.Optimizer, images: tf.Tensor4D, oneHot: tf.Tensor4D, weightDecay: number): tf.Scalar {
  const vars = net.trainableVariables();
  const { value, grads } = tf.variableGrads(() => crossEntropy(net.forward(images, true), oneHot), vars);
  tf.tidy(() => {
    const decayed: tf.NamedTensorMap = {};
    for (const v of vars) decayed[v.name] = weightDecay ? tf.add(grads[v.name]!, tf.mul(v, weightDecay)) : grads[v.name]!;
    opt.applyGradients(decayed);
  });
  tf.dispose(grads);
  return value;
}

function oneHotLabels(labels: Int32Array, shape: [number, number, number], classes: number): tf.Tensor4D {
  return tf.tidy(() => tf.reshape(tf.oneHot(tf.tensor1d(labels, 'int32'), classes), [...shape, classes]) as tf.Tensor4D);
}

export async function runPeerCase(c: PeerCase, setup: PeerSetup): Promise<PeerResult> {
  const [w, h] = c.size;
  const classes = 19;
  const net = new PeerCANet({ classes, width: c.width });
  const parameters = net.numParameters();
  if (c.width === 1 && parameters !== REFERENCE_PARAMETERS)
    throw new Error(`tfjs peer: the TF.js network has ${parameters} parameters, ours has ${REFERENCE_PARAMETERS}: not the same network`);
  net.materialize(tf, { seed: 1 });
  const images = tf.tensor4d(benchImages(c.batch, h, w), [c.batch, h, w, 3]);
  const oneHot = oneHotLabels(benchLabels(c.batch, h, w, classes), [c.batch, h, w], classes);
  const opt = tf.train.momentum(1e-4, 0.9);
  const once = async () => {
    const t0 = performance.now();
    const done = c.mode === 'infer' ? tf.tidy(() => tf.sum(net.forward(images, false))) : peerTrainStep(net, opt, images, oneHot, 1e-4);
    await done.data();
    done.dispose();
    return performance.now() - t0;
  };
  try {
    const firstMs = await once();
    const macs = net.lastMacs;
    const runs: number[] = [];
    for (let i = 0; i < c.iters; i++) runs.push(await once());
    runs.sort((a, b) => a - b);
    if (c.profile) {
      // Kernel times of one more call, by kernel name (WASM: wall time of each kernel; kernels the
      // peer composes from others, see wasm-gradients.ts, include their inner kernels).
      let dt = 0;
      const info = await tf.profile(async () => {
        dt = await once();
      });
      const by = new Map<string, { calls: number; ms: number }>();
      for (const k of info.kernels) {
        const g = by.get(k.name) ?? { calls: 0, ms: 0 };
        g.calls++;
        g.ms += Number(k.kernelTimeMs) || 0;
        by.set(k.name, g);
      }
      console.log(`  profile (one call, ${fmt(dt, 0)} ms with profiling):`);
      for (const [name, g] of [...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, 12)) console.log(`    ${name.padEnd(36)} ${String(g.calls).padStart(5)}x ${fmt(g.ms, 1).padStart(9)} ms`);
    }
    return {
      ...setup,
      mode: c.mode,
      size: c.size,
      batch: c.batch,
      width: c.width,
      parameters,
      forwardGmacPerImage: macs / c.batch / 1e9,
      iterations: c.iters,
      firstMs,
      minMs: runs[0]!,
      medianMs: runs[Math.floor(runs.length / 2)]!,
      maxMs: runs[runs.length - 1]!,
    };
  } finally {
    opt.dispose();
    images.dispose();
    oneHot.dispose();
    net.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// --check: the same network as ours, number for number.

export interface Discrepancy {
  /** max |ours - theirs| / max |ours| over the tensor (or group). */
  relative: number;
  worst: string;
}

export interface CheckResult extends PeerSetup {
  size: [number, number];
  batch: number;
  width: number;
  ourParameters: number;
  peerParameters: number;
  /** Tensor names/shapes present in one and not the other (should be empty). */
  onlyOurs: string[];
  onlyPeer: string[];
  shapeMismatches: string[];
  inferLogits: Discrepancy;
  trainLogits: Discrepancy;
  loss: { ours: number; peer: number };
  /**
   * Parameter updates (after - before) of one SGD step: ||ours - peer|| / ||ours|| per tensor (the
   * worst one) and over all of them; zeroGradientBiases: the largest update of a bias whose true
   * gradient is zero, relative to its layer's weight update (both sides).
   */
  updates: Discrepancy & { overall: number; zeroGradientBiases: number };
  runningStats: Discrepancy;
  /** Multiply-adds of one forward per image, counted by the peer from its shapes. */
  forwardGmacPerImage: number;
}

function compare(ours: ArrayLike<number>, peer: ArrayLike<number>): number {
  let maxAbs = 0;
  let maxErr = 0;
  for (let i = 0; i < ours.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(ours[i]!));
    const e = Math.abs(ours[i]! - peer[i]!);
    maxErr = Number.isNaN(e) ? Infinity : Math.max(maxErr, e);
  }
  return maxErr / Math.max(maxAbs, 1e-30);
}

function worstOf(pairs: [string, number][]): Discrepancy {
  let worst: Discrepancy = { relative: 0, worst: '' };
  for (const [name, r] of pairs) if (r >= worst.relative) worst = { relative: r, worst: name };
  return worst;
}

export async function runCheck(opts: { backend: PeerBackend; size: [number, number]; batch: number; width: number; verbose?: boolean }, setup: PeerSetup, engine: Engine | null): Promise<CheckResult> {
  const [w, h] = opts.size;
  const classes = 19;
  const ours = engine ?? (await createEngine({ quiet: true }));
  const model = canet(ours, { backbone: 'mobilenetv2', classes, width: opts.width, seed: 3 });
  const net = new PeerCANet({ classes, width: opts.width });
  try {
    // Names and shapes of every float tensor (parameters and running statistics).
    const initial = await model.stateDict();
    const ourSpecs = new Map([...initial].filter(([, t]) => t.dtype === 'F32').map(([n, t]) => [n, t.shape]));
    const peerSpecs = new Map(net.specs.map((s) => [s.name, s.torchShape]));
    const onlyOurs = [...ourSpecs.keys()].filter((n) => !peerSpecs.has(n));
    const onlyPeer = [...peerSpecs.keys()].filter((n) => !ourSpecs.has(n));
    const shapeMismatches = [...ourSpecs].filter(([n, s]) => peerSpecs.has(n) && s.join('x') !== peerSpecs.get(n)!.join('x')).map(([n, s]) => `${n}: ours [${s}], peer [${peerSpecs.get(n)}]`);

    // Non-trivial batch-norm affine and running statistics, so inference exercises them.
    let seed = 7;
    const u = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 4294967296;
    };
    const state: StateDict = new Map();
    for (const [name, t] of initial) {
      if (t.dtype !== 'F32' || !/\.(running_mean|running_var|weight|bias)$/.test(name) || !isBatchNorm(name, net.specs)) {
        state.set(name, t);
        continue;
      }
      const lo = name.endsWith('running_var') || name.endsWith('.weight') ? 0.5 : -0.2;
      const hi = lo === 0.5 ? 1.5 : 0.2;
      state.set(name, { ...t, data: Float32Array.from(t.data, () => lo + (hi - lo) * u()) });
    }
    model.loadStateDict(state);
    net.materialize(tf, { values: (spec) => state.get(spec.name)?.data as Float32Array | undefined });

    const imageData = benchImages(opts.batch, h, w).map((v, i) => v * (1 + (i % 3) * 0.25));
    const labels = benchLabels(opts.batch, h, w, classes);
    const x = ours.tensor(imageData, [opts.batch, h, w, 3]).keep();
    const lab = ours.tensor(labels, [opts.batch, h, w]).keep();
    const px = tf.tensor4d(imageData, [opts.batch, h, w, 3]);
    const oneHot = oneHotLabels(labels, [opts.batch, h, w], classes);

    const ourLogits = async () => {
      const y = ours.noGrad(() => model.forward(x));
      const d = (await y.read()) as Float32Array;
      y.dispose();
      return d;
    };
    const peerLogits = async (training: boolean) => {
      const y = tf.tidy(() => net.forward(px, training));
      const d = (await y.data()) as Float32Array;
      y.dispose();
      return d;
    };

    model.eval();
    const inferLogits = { relative: compare(await ourLogits(), await peerLogits(false)), worst: 'logits' };
    const forwardGmacPerImage = net.lastMacs / opts.batch / 1e9;

    // Training-mode logits: batch statistics. Ours updates running statistics here too, so both
    // sides run exactly one training-mode forward before the step below and are compared after it.
    model.train(true);
    const trainLogits = { relative: compare(await ourLogits(), await peerLogits(true)), worst: 'logits' };

    // One SGD step with lr 1, so the update is the gradient itself (plus weight decay).
    const before = await model.stateDict();
    const opt = new SGD(model.parameters(), { lr: 1, momentum: 0.9, weightDecay: 1e-4 });
    const lossT = trainStep(model, opt, x, lab);
    const ourLoss = ((await lossT.read()) as Float32Array)[0]!;
    lossT.dispose();
    opt.dispose();
    const after = await model.stateDict();
    const peerBefore = await net.stateDict();
    const popt = tf.train.momentum(1, 0.9);
    const pl = peerTrainStep(net, popt, px, oneHot, 1e-4);
    const peerLoss = (await pl.data())[0]!;
    pl.dispose();
    popt.dispose();
    const peerAfter = await net.stateDict();

    // Updates compared normwise: where batch norm cancels most of a gradient (few pixels per
    // channel deep in the backbone) the small remainder carries each side's rounding, and a
    // per-element maximum would measure that rounding rather than the network. The biases of the
    // transposed convolutions feed a training-mode batch norm, which removes any per-channel
    // constant: their true gradient is zero, so they are checked for being ~0 on both sides.
    const updates: [string, number][] = [];
    const stats: [string, number][] = [];
    let errSq = 0;
    let refSq = 0;
    let zeroBias = 0;
    const deltaOf = (a: Float32Array, b: Float32Array) => a.map((v, i) => v - b[i]!);
    const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (const spec of net.specs) {
      const a = after.get(spec.name)!.data as Float32Array;
      if (!spec.trainable) {
        stats.push([spec.name, compare(a, peerAfter.get(spec.name)!)]);
        continue;
      }
      const dOurs = deltaOf(a, before.get(spec.name)!.data as Float32Array);
      const dPeer = deltaOf(peerAfter.get(spec.name)!, peerBefore.get(spec.name)!);
      if (ZERO_GRADIENT.test(spec.name)) {
        const w = spec.name.replace(/bias$/, 'weight');
        const scale = maxAbs(deltaOf(after.get(w)!.data as Float32Array, before.get(w)!.data as Float32Array));
        zeroBias = Math.max(zeroBias, maxAbs(dOurs) / scale, maxAbs(dPeer) / scale);
        continue;
      }
      let e = 0;
      let r = 0;
      for (let i = 0; i < dOurs.length; i++) {
        e += (dOurs[i]! - dPeer[i]!) ** 2;
        r += dOurs[i]! ** 2;
      }
      errSq += e;
      refSq += r;
      updates.push([spec.name, Math.sqrt(e / Math.max(r, 1e-60))]);
      if (opts.verbose) console.log(`  update ${spec.name}: ${updates[updates.length - 1]![1].toExponential(2)} normwise, ${compare(dOurs, dPeer).toExponential(2)} max`);
    }
    [x, lab].forEach((t) => t.dispose());
    [px, oneHot].forEach((t) => t.dispose());
    return {
      ...setup,
      size: opts.size,
      batch: opts.batch,
      width: opts.width,
      ourParameters: model.numParameters(),
      peerParameters: net.numParameters(),
      onlyOurs,
      onlyPeer,
      shapeMismatches,
      inferLogits,
      trainLogits,
      loss: { ours: ourLoss, peer: peerLoss },
      updates: { ...worstOf(updates), overall: Math.sqrt(errSq / refSq), zeroGradientBiases: zeroBias },
      runningStats: worstOf(stats),
      forwardGmacPerImage,
    };
  } finally {
    model.dispose();
    net.dispose();
    if (!engine) ours.destroy();
  }
}

/** Biases of the transposed convolutions: a training-mode batch norm follows, so their gradient is exactly zero. */
const ZERO_GRADIENT = /up_conv\.0\.bias$/;

const isBatchNorm = (name: string, specs: PeerTensorSpec[]) => specs.some((s) => s.name === name.replace(/\.(weight|bias)$/, '.running_mean'));

function writeJson(path: string | true | undefined, doc: unknown): void {
  if (typeof path !== 'string') return;
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(doc, null, 2) + '\n');
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const backend = (args.get('backend') ?? 'wasm') as PeerBackend;
  const size = String(args.get('size') ?? (args.has('check') ? '64x64' : '512x256')).split('x').map(Number) as [number, number];
  if (size.length !== 2 || !size.every((v) => Number.isInteger(v) && v > 0 && v % 32 === 0)) throw new Error(`tfjs peer: --size must be WxH with multiples of 32, got ${args.get('size')}`);
  const width = Number(args.get('width') ?? 1);
  const { setup, engine } = await setupBackend(backend);
  const where = setup.backend === 'webgpu' ? `${setup.adapter}, ${setup.device === 'shared' ? "on our engine's GPUDevice" : 'on a separate device'}` : `${setup.adapter}, ${setup.threads} thread(s)`;
  console.log(`${setup.peer}: TF.js ${setup.tfjsVersion}, ${where}`);
  if (args.has('check')) {
    const batch = Number(args.get('batch') ?? 2);
    const r = await runCheck({ backend, size, batch, width, verbose: args.has('verbose') }, setup, engine);
    console.log(`parameters: ours ${r.ourParameters}, peer ${r.peerParameters}; tensors only in ours: ${r.onlyOurs.length}, only in peer: ${r.onlyPeer.length}, shape mismatches: ${r.shapeMismatches.length}`);
    console.log(`inference logits: ${r.inferLogits.relative.toExponential(2)}; training logits: ${r.trainLogits.relative.toExponential(2)}; loss ours ${r.loss.ours.toFixed(6)} peer ${r.loss.peer.toFixed(6)}`);
    console.log(`SGD updates: overall ${r.updates.overall.toExponential(2)}, worst tensor ${r.updates.relative.toExponential(2)} (${r.updates.worst}), zero-gradient biases ${r.updates.zeroGradientBiases.toExponential(2)}; running statistics: worst ${r.runningStats.relative.toExponential(2)} (${r.runningStats.worst})`);
    writeJson(args.get('json'), r);
  } else {
    const mode = (args.get('mode') ?? 'infer') as 'infer' | 'train';
    const batch = Number(args.get('batch') ?? (mode === 'train' ? 2 : 1));
    const iters = Number(args.get('iters') ?? 2);
    const r = await runPeerCase({ backend, mode, size, batch, width, iters, profile: args.has('profile') }, setup);
    console.log(`${setup.peer} ${mode} ${size.join('x')} b${batch}: parameters ${r.parameters}, ${fmt(r.forwardGmacPerImage, 2)} GMAC/image; first ${fmt(r.firstMs, 0)} ms, median ${fmt(r.medianMs, 1)} ms (min ${fmt(r.minMs, 1)}, max ${fmt(r.maxMs, 1)}, ${iters} runs)`);
    writeJson(args.get('json'), r);
  }
  engine?.destroy();
}

await main();
