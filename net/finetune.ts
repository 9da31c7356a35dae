/**
 * Fine-tuning a CANet on a few labelled frames, for an application (or a page) that lets its user
 * correct the model on their own scenes. The loop is the training step everything else uses
 * (net/train.ts: uploadBatch's GPU crop/flip/resample, trainStep's forward, loss, backward and
 * fused optimizer update), replayed from a captured plan after its first step (PlannedCall), with
 * one loss readback per step. Platform-neutral: Node and browsers.
 *
 * Browser main threads: the loop awaits the GPU for each step's loss and then yields a macrotask
 * (setTimeout 0 unless `yieldTo` says otherwise), so input events, paints and the step callback's
 * own drawing run between steps; a step itself is one submit, no CPU work while the GPU runs.
 *
 * Frozen parameters (`freezeBackbone`, or `trainable`) neither get gradients nor move: they are
 * left out of the optimizer and their `requiresGrad` is off while the loop runs, so autograd
 * records nothing for them, and modules whose parameters are all frozen stay in eval mode. A
 * frozen backbone therefore runs its fused inference kernels inside the training step and has no
 * backward at all. Every BatchNorm normalises with its running statistics unless
 * `batchStatistics` is set (frozen BatchNorm, as detection models fine-tune): with batch
 * statistics the running statistics, which every later frame is normalised with, would be pulled
 * towards the few labelled frames. On the demo weights and the sample (frozen backbone, 12 steps,
 * AdamW 3e-4, keepUnlabelled) the two gave the same picture within one run's noise: labelled
 * pixels 100% / 97% right, the rest of the scene 80% / 85% unchanged.
 *
 * Everything the loop allocates (batch tensors, the plan, the optimizer's arenas and moments) is
 * released when it returns, throws or is aborted; the model's parameters stay where they are.
 */
import type { Tensor } from '../engine/tensor.js';
import { ShapeError } from '../engine/errors.js';
import { checkLossFinite } from '../engine/ops/loss.js';
import { imageToTensor } from '../engine/ops/preprocess.js';
import { resizeClassIds } from '../engine/palette.js';
import { SGD, AdamW, type Optimizer } from '../engine/optim.js';
import { PlannedCall } from '../engine/plan.js';
import type { CANet } from './canet.js';
import type { Module } from './module.js';
import { BatchNorm2d } from './layers.js';
import { SeededRandom } from './init.js';
import { trainStep, uploadBatch, type AugmentOptions, type Sample } from './train.js';

/** Label of a pixel nobody labelled: ignored by the loss. */
export const UNLABELLED = 255;

/** One labelled frame. */
export interface FineTuneSample {
  /** RGBA (ImageData's `data`) or RGB bytes, row-major, height x width pixels. */
  image: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  /** 4 (RGBA) or 3 (RGB); default: whichever the length of `image` says. */
  channels?: 3 | 4;
  /** One class id per pixel (width x height), UNLABELLED (255) where nobody labelled it. */
  labels: Uint8Array;
}

/** What the step callback hears after each step. */
export interface FineTuneStep {
  /** Steps done (1 after the first). */
  step: number;
  steps: number;
  /** Mean cross-entropy over the labelled pixels of this step's batch. */
  loss: number;
  lr: number;
  /** Wall time of this step, including the loss readback. */
  ms: number;
}

export interface FineTuneOptions {
  /** Optimizer steps to run (the loop may stop earlier: `signal`). */
  steps: number;
  /** Training crop [width, height], multiples of 32; use the size the model segments at. Default [256, 128]. */
  size?: [number, number];
  /** Frames per step (default: every frame with a labelled pixel, at most 4). */
  batch?: number;
  /** Learning rate, or a schedule of the step index (0-based). Default 3e-4 (AdamW) or 1e-2 (SGD). */
  lr?: number | ((step: number) => number);
  /** 'adamw' (default) or 'sgd' (momentum 0.9); made here, released at the end. */
  optimizer?: 'adamw' | 'sgd';
  weightDecay?: number;
  /**
   * BatchNorm on batch statistics, updating its running statistics, as in training from scratch.
   * Default false: every BatchNorm normalises with its running statistics and keeps them (its
   * scale and shift still train), the usual choice for a few frames, whose batch statistics are
   * noisy and differ from the ones inference uses.
   */
  batchStatistics?: boolean;
  /**
   * Anchor what nobody labelled: unlabelled pixels take the class the model gives them when the
   * call starts, on a share of them as large as the labelled pixels (spread evenly), so the
   * corrections weigh about half of the loss and the rest of the scene stays as the model saw it.
   * Without it (default) unlabelled pixels are ignored, and a few frames labelled with two classes
   * teach the model that the world has two classes.
   */
  keepUnlabelled?: boolean;
  /** Keep the backbone (context_branch.backbone: MobileNetV2 or ResNet) as it is. */
  freezeBackbone?: boolean;
  /** Which parameters (state_dict names) train; overrides freezeBackbone. */
  trainable?: (name: string) => boolean;
  /** Random zoom (up to maxScale) and mirror of each frame, on the GPU; false: whole frames. Default { maxScale: 1.5, flip: true }. */
  augment?: AugmentOptions | false;
  /** Seed of the frame order and augmentation (the same seed draws the same crops). */
  seed?: number;
  /** Stops the loop after the step in flight; the result says `stopped`. */
  signal?: AbortSignal;
  /** Called after each step (awaited): draw a loss curve, refresh a preview every few steps. */
  onStep?: (s: FineTuneStep) => void | Promise<void>;
  /** How to give the thread back between steps (default: a setTimeout(0) macrotask). */
  yieldTo?: () => Promise<void>;
  /** Replay the step from a captured plan (default true; false records every step op by op). */
  capture?: boolean;
}

export interface FineTuneResult {
  /** Steps run. */
  steps: number;
  losses: number[];
  /** Whether `signal` ended the loop before `steps`. */
  stopped: boolean;
  /** Parameters that trained (state_dict names count). */
  trainedParameters: number;
  ms: number;
}

const macrotask = (): Promise<void> => new Promise((ok) => setTimeout(ok, 0));

/** The sample as uploadBatch takes it, after checking sizes and labels (ShapeError naming the frame). */
function checkSample(s: FineTuneSample, i: number, classes: number): Sample & { labelled: number } {
  const what = `fineTune: sample ${i}`;
  if (typeof s !== 'object' || s === null) throw new ShapeError(`${what} must be { image, width, height, labels }`);
  const { width: w, height: h, image, labels } = s;
  if (!(Number.isInteger(w) && Number.isInteger(h) && w > 0 && h > 0)) throw new ShapeError(`${what}: size must be positive integers, got ${w}x${h}`);
  const channels = s.channels ?? (image?.length === w * h * 4 ? 4 : 3);
  if (channels !== 3 && channels !== 4) throw new ShapeError(`${what}: channels must be 3 or 4, got ${channels}`);
  if (!(image instanceof Uint8Array || image instanceof Uint8ClampedArray) || image.length !== w * h * channels)
    throw new ShapeError(`${what}: image must be ${w * h * channels} bytes (${w}x${h}x${channels}), got ${image instanceof Uint8Array || image instanceof Uint8ClampedArray ? image.length : typeof image}`);
  if (!(labels instanceof Uint8Array) || labels.length !== w * h)
    throw new ShapeError(`${what}: labels must be a Uint8Array of ${w * h} class ids (${w}x${h}), got ${labels instanceof Uint8Array ? labels.length : typeof labels}`);
  let labelled = 0;
  for (let p = 0; p < labels.length; p++) {
    const c = labels[p]!;
    if (c === UNLABELLED) continue;
    if (c >= classes) throw new ShapeError(`${what}: pixel (${p % w}, ${Math.floor(p / w)}) has class ${c}; the model has ${classes} classes (use ${UNLABELLED} for unlabelled)`);
    labelled++;
  }
  return { image, width: w, height: h, channels, labels, labelled };
}

/**
 * Fine-tunes `model` in place on labelled frames: `steps` optimizer steps of random crops of
 * `batch` frames, on the GPU. Resolves when the steps are done or `signal` aborted the loop; the
 * model keeps its training/eval mode from before the call.
 *
 * @throws ShapeError for bad frames (sizes, class ids, no labelled pixel at all) before anything
 * is allocated; LossCheckError for a non-finite loss (lower the learning rate).
 */
export async function fineTune(model: CANet, samples: readonly FineTuneSample[], options: FineTuneOptions): Promise<FineTuneResult> {
  const t0 = performance.now();
  const engine = model.engine;
  const { steps } = options;
  const classes = model.options.classes;
  if (!Number.isInteger(steps) || steps < 0) throw new ShapeError(`fineTune: steps must be a non-negative integer, got ${steps}`);
  if (!Array.isArray(samples) || samples.length === 0) throw new ShapeError('fineTune: needs at least one labelled sample');
  const checked = samples.map((s, i) => checkSample(s, i, classes));
  if (checked.every((s) => s.labelled === 0)) throw new ShapeError(`fineTune: no sample has a labelled pixel (every label is ${UNLABELLED}); label some pixels first`);
  const [w, h] = options.size ?? [256, 128];
  if (!(Number.isInteger(w) && Number.isInteger(h) && w > 0 && h > 0 && w % 32 === 0 && h % 32 === 0))
    throw new ShapeError(`fineTune: size must be [width, height], positive multiples of 32 (the backbone downsamples 32x), got ${w}x${h}`);
  const labelledFrames = checked.filter((s) => s.labelled > 0).length;
  const batch = options.batch ?? Math.min(4, labelledFrames);
  if (!Number.isInteger(batch) || batch < 1) throw new ShapeError(`fineTune: batch must be a positive integer, got ${batch}`);
  const kind = options.optimizer ?? 'adamw';
  if (kind !== 'adamw' && kind !== 'sgd') throw new ShapeError(`fineTune: optimizer must be 'adamw' or 'sgd', got ${String(kind)}`);
  const lrAt = typeof options.lr === 'function' ? options.lr : () => (options.lr as number | undefined) ?? (kind === 'adamw' ? 3e-4 : 1e-2);
  const augment = options.augment === false ? null : { maxScale: 1.5, flip: true, ...(options.augment ?? {}) };
  const seed = options.seed ?? 0;
  // Frames with no labelled pixel teach nothing: they are left out of the batches.
  let pool: Sample[] = checked.filter((s) => s.labelled > 0);

  const trainable = options.trainable ?? (options.freezeBackbone ? (name: string) => !name.startsWith('context_branch.backbone.') : () => true);
  const named = model.namedParameters();
  const train = named.filter(([n]) => trainable(n)).map(([, t]) => t);
  const frozen = named.filter(([n]) => !trainable(n)).map(([, t]) => t);
  if (!train.length) throw new ShapeError('fineTune: every parameter is frozen; nothing would train');
  const frozenSet = new Set(frozen);
  const frozenModules: Module[] = [...model.modules()].filter((m) => {
    if (!options.batchStatistics && m instanceof BatchNorm2d) return true;
    const ps = m.parameters();
    return frozen.length > 0 && ps.length > 0 && ps.every((p) => frozenSet.has(p));
  });
  const wasTraining = model.training;
  const grads = frozen.map((p) => p.requiresGrad);
  // What trainStep switches to training mode, at its first run and at every replay.
  const stepModel = {
    forward: (x: Tensor) => model.forward(x),
    train: (on = true) => {
      model.train(on);
      for (const m of frozenModules) m.training = false;
    },
  };

  const losses: number[] = [];
  let stopped = false;
  let optimizer: Optimizer | null = null;
  let images: Tensor | null = null;
  let labels: Tensor | null = null;
  let call: PlannedCall<Tensor> | null = null;
  try {
    if (options.keepUnlabelled) pool = await anchorUnlabelled(model, pool as (Sample & { labelled: number })[], w, h);
    for (const p of frozen) p.requiresGrad = false;
    optimizer = kind === 'adamw' ? new AdamW(train, { lr: lrAt(0), weightDecay: options.weightDecay ?? 1e-4 }) : new SGD(train, { lr: lrAt(0), momentum: 0.9, weightDecay: options.weightDecay ?? 1e-4 });
    images = engine.empty([batch, h, w, 3], 'f32', 'fineTune images').keep();
    labels = engine.empty([batch, h, w], 'u32', 'fineTune labels').keep();
    const opt = optimizer;
    const [bi, bl] = [images, labels];
    call = new PlannedCall(engine, () => trainStep(stepModel, opt, bi, bl), { label: 'fine-tune step', capture: options.capture });
    // Frame order: a seeded shuffle, walked round-robin, so every frame is seen equally often.
    const rng = new SeededRandom(seed);
    const order = pool.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rng.uniform() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (let step = 0; step < steps; step++) {
      if (options.signal?.aborted) {
        stopped = true;
        break;
      }
      const s0 = performance.now();
      const lr = lrAt(step);
      opt.lr = lr;
      const frames = Array.from({ length: batch }, (_, k) => pool[order[(step * batch + k) % order.length]!]!);
      uploadBatch(engine, frames, w, h, augment ? { ...augment, seed: seed * 7_919 + step } : undefined, { images, labels });
      const loss = call.run();
      engine.submit();
      const value = await checkLossFinite(loss, step + 1);
      losses.push(value);
      await options.onStep?.({ step: step + 1, steps, loss: value, lr, ms: performance.now() - s0 });
      await (options.yieldTo ?? macrotask)();
    }
    if (!stopped && options.signal?.aborted && losses.length < steps) stopped = true;
  } finally {
    call?.dispose();
    images?.dispose();
    labels?.dispose();
    optimizer?.dispose();
    frozen.forEach((p, i) => (p.requiresGrad = grads[i]!));
    model.train(wasTraining);
  }
  return { steps: losses.length, losses, stopped, trainedParameters: train.reduce((n, t) => n + t.size, 0), ms: performance.now() - t0 };
}

/** Golden-ratio hash of a pixel index to [0, 1): an even, seed-free spread of anchored pixels. */
const spread = (p: number): number => (Math.imul(p + 1, 2654435761) >>> 0) / 4294967296;

/**
 * Each frame with its unlabelled pixels partly filled with the model's current class ids (at the
 * training size, sampled nearest): as many anchored pixels as labelled ones (keepUnlabelled).
 */
async function anchorUnlabelled(model: CANet, frames: (Sample & { labelled: number })[], w: number, h: number): Promise<Sample[]> {
  const engine = model.engine;
  const out: Sample[] = [];
  model.eval();
  for (const f of frames) {
    const idsT = engine.scope(() => model.segment(imageToTensor(engine, { data: f.image, width: f.width, height: f.height, channels: f.channels ?? 3 }, { outWidth: w, outHeight: h })));
    let ids: Int32Array;
    try {
      ids = await idsT.readInt32();
    } finally {
      idsT.dispose();
    }
    const share = Math.min(1, f.labelled / Math.max(1, f.labels.length - f.labelled));
    const labels = new Uint8Array(f.labels);
    const seen = resizeClassIds(ids, w, h, f.width, f.height);
    for (let p = 0; p < labels.length; p++) if (labels[p] === UNLABELLED && spread(p) < share) labels[p] = seen[p]!;
    out.push({ ...f, labels });
  }
  return out;
}
