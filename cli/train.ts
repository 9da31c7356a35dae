/**
 * `canet train`: trains CANet on the GPU from image folders or the synthetic street scenes, with a
 * progress bar, atomic checkpoints, exact resume (model, optimizer, step and data order), periodic
 * evaluation, metrics.jsonl and a loss/mIoU curve.
 */
import { appendFile, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from '../engine/engine.js';
import { createEngine } from '../engine/device-node.js';
import { SGD, AdamW, type Optimizer } from '../engine/optim.js';
import { cosineLR, polyLR } from '../engine/schedule.js';
import { checkLossFinite, LossCheckError } from '../engine/ops/loss.js';
import { canet, type CANet } from '../net/canet.js';
import { SafetensorsError } from '../weights/safetensors.js';
import { uploadBatch, trainStep } from '../net/train.js';
import { PlannedCall } from '../engine/plan.js';
import { CLASS_NAMES } from '../engine/palette.js';
import { imageBudget, maxMegapixelsFlag, parseCommand, parseSize, usage, UsageError, type CommandSpec } from './args.js';
import { folderDataset, syntheticDataset, Prefetcher, type Dataset } from './data.js';
import { saveCheckpoint, loadCheckpoint } from './checkpoint.js';
import { saveModel, loadPretrained, type ModelConfig } from './model-file.js';
import { evaluate } from './evaluate.js';
import { Progress } from './progress.js';
import { writeCurve } from './plot.js';
import { ensureOutputDir } from './files.js';
import { parseClassWeights, resolveClassWeights } from './class-weights.js';
import { applyTuning, blankImages, tuningFlags } from './tuning.js';

export const trainSpec: CommandSpec = {
  name: 'train',
  summary: 'train CANet on the GPU',
  usage: 'canet train (--data DIR | --synthetic N) [options]',
  flags: {
    data: { type: 'string', help: 'dataset folder (Cityscapes, images/+labels/ or images/+masks/ layout)' },
    synthetic: { type: 'number', minInt: 1, help: 'train on N generated street scenes instead' },
    'val-synthetic': { type: 'number', minInt: 0, help: 'synthetic validation scenes (with --synthetic)', default: 32 },
    split: { type: 'string', help: 'split folder name for --data', default: 'train' },
    'val-split': { type: 'string', help: 'validation split for --data (skipped if absent)', default: 'val' },
    backbone: { type: 'string', help: 'mobilenetv2 | resnet18 | resnet101', default: 'mobilenetv2' },
    head: { type: 'string', help: 'compatible | plain', default: 'compatible' },
    width: { type: 'number', help: 'width multiplier of every layer', default: 1 },
    classes: { type: 'number', minInt: 1, help: 'number of classes', default: 19 },
    size: { type: 'string', help: 'training crop WIDTHxHEIGHT (multiples of 32)', default: '256x128' },
    batch: { type: 'number', minInt: 1, help: 'images per step', default: 4 },
    steps: { type: 'number', minInt: 1, help: 'optimizer steps (default: 1 epoch)' },
    epochs: { type: 'number', minInt: 1, help: 'epochs (alternative to --steps)' },
    optimizer: { type: 'string', help: 'sgd | adamw', default: 'sgd' },
    lr: { type: 'number', help: 'base learning rate', default: 0.01 },
    momentum: { type: 'number', help: 'SGD momentum', default: 0.9 },
    'weight-decay': { type: 'number', help: 'weight decay', default: 1e-4 },
    schedule: { type: 'string', help: 'cosine | poly', default: 'cosine' },
    warmup: { type: 'number', minInt: 0, help: 'linear warm-up steps', default: 0 },
    scale: { type: 'number', help: 'random zoom augmentation up to this factor (1 = off)', default: 1.5 },
    'no-flip': { type: 'boolean', help: 'disable random horizontal flips' },
    seed: { type: 'number', minInt: 0, help: 'seed of initialisation, data order and augmentation', default: 0 },
    out: { type: 'string', help: 'output folder', default: 'runs/canet' },
    resume: { type: 'string', help: 'continue from a checkpoint exactly where it stopped' },
    pretrained: { type: 'string', help: 'initial weights: a CANet file, or a torchvision MobileNetV2/ResNet safetensors checkpoint (backbone only)' },
    'checkpoint-every': { type: 'number', minInt: 1, help: 'save a checkpoint every N steps', default: 100 },
    'eval-every': { type: 'number', minInt: 0, help: 'evaluate every N steps (0: only at the end)', default: 0 },
    'log-every': { type: 'number', minInt: 1, help: 'write a metrics line every N steps', default: 1 },
    save: { type: 'string', help: 'dtype of the final model file: f32 | f16', default: 'f32' },
    'class-weights': { type: 'string', help: "loss weight per class: none, enet (1/ln(1.02 + pixel frequency), counted on 64 training images) or K comma-separated numbers", default: 'none' },
    'no-capture': { type: 'boolean', help: 'record every step op by op instead of replaying a captured plan (to compare)' },
    'no-prefetch': { type: 'boolean', help: 'load each batch only when its step starts (to measure what overlapping the next batch with the GPU work saves)' },
    ...maxMegapixelsFlag,
    'continue-on-nan': { type: 'boolean', help: 'on a NaN/Inf loss, log it and keep training instead of stopping (checkpoints are only written while the weights are finite)' },
    ...tuningFlags,
  },
};

interface RunConfig {
  model: ModelConfig;
  data: { source: string; synthetic?: number; valSynthetic?: number; dir?: string; split?: string; valSplit?: string; maxPixels?: number };
  batch: number;
  steps: number;
  optimizer: 'sgd' | 'adamw';
  lr: number;
  momentum: number;
  weightDecay: number;
  schedule: 'cosine' | 'poly';
  warmup: number;
  scale: number;
  flip: boolean;
  seed: number;
  /** How often to checkpoint, evaluate and log (kept so that a resume without the flags keeps them). */
  checkpointEvery?: number;
  evalEvery?: number;
  logEvery?: number;
  /** Loss weight per class (null or absent: unweighted); resolved once, so a resumed run uses the same. */
  classWeights?: number[] | null;
}

function oneOf<T extends string>(flag: string, v: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(v as T)) throw new UsageError(`--${flag} must be one of ${allowed.join(', ')}; got '${v}'`);
  return v as T;
}

function configFromFlags(f: Record<string, unknown>): RunConfig {
  const [w, h] = parseSize(String(f.size));
  if (w % 32 || h % 32) throw new UsageError(`--size must be multiples of 32 (the backbone downsamples 32x); got ${w}x${h}`);
  if (!f.data && !f.synthetic) throw new UsageError('canet train needs --data DIR or --synthetic N');
  if (f.data && f.synthetic) throw new UsageError('--data and --synthetic are alternatives; give one');
  const classes = Number(f.classes);
  // Below 1 the zoom silently did nothing: refuse it rather than train without the augmentation asked for.
  if (!(Number(f.scale) >= 1)) throw new UsageError(`--scale must be >= 1 (the largest random zoom; 1 = no zoom), got ${f.scale}`);
  return {
    model: {
      backbone: oneOf('backbone', f.backbone, ['mobilenetv2', 'resnet18', 'resnet101'] as const),
      head: oneOf('head', f.head, ['compatible', 'plain'] as const),
      width: Number(f.width),
      classes,
      inputSize: [w, h],
      classNames: classes === CLASS_NAMES.length ? [...CLASS_NAMES] : undefined,
    },
    data: f.synthetic
      ? { source: 'synthetic', synthetic: Number(f.synthetic), valSynthetic: Number(f['val-synthetic']) }
      : { source: 'folder', dir: String(f.data), split: String(f.split), valSplit: String(f['val-split']), maxPixels: imageBudget(f).maxPixels },
    batch: Number(f.batch),
    steps: 0,
    optimizer: oneOf('optimizer', f.optimizer, ['sgd', 'adamw'] as const),
    lr: Number(f.lr),
    momentum: Number(f.momentum),
    weightDecay: Number(f['weight-decay']),
    schedule: oneOf('schedule', f.schedule, ['cosine', 'poly'] as const),
    warmup: Number(f.warmup),
    scale: Number(f.scale),
    flip: !f['no-flip'],
    seed: Number(f.seed),
  };
}

function datasets(cfg: RunConfig): { train: Dataset; val: Dataset | null } {
  const [w, h] = cfg.model.inputSize!;
  if (cfg.data.source === 'synthetic') {
    // Generated a little larger than the crop so random zoom keeps detail.
    const gw = Math.round(w * Math.min(cfg.scale, 1.5));
    const gh = Math.round(h * Math.min(cfg.scale, 1.5));
    return {
      train: syntheticDataset(cfg.data.synthetic!, 'train', gw, gh),
      val: cfg.data.valSynthetic ? syntheticDataset(cfg.data.valSynthetic, 'val', w, h) : null,
    };
  }
  const budget = { maxPixels: cfg.data.maxPixels, raiseWith: '--max-megapixels' };
  const train = folderDataset(cfg.data.dir!, cfg.data.split, budget);
  let val: Dataset | null = null;
  if (cfg.data.valSplit && existsSync(cfg.data.dir!)) {
    try {
      val = folderDataset(cfg.data.dir!, cfg.data.valSplit, budget);
    } catch {
      val = null; // no validation split: evaluation is skipped, as the help says
    }
  }
  return { train, val };
}

function makeOptimizer(model: CANet, cfg: RunConfig): Optimizer {
  const params = model.parameters();
  return cfg.optimizer === 'sgd'
    ? new SGD(params, { lr: cfg.lr, momentum: cfg.momentum, weightDecay: cfg.weightDecay })
    : new AdamW(params, { lr: cfg.lr, weightDecay: cfg.weightDecay });
}

function lrAt(cfg: RunConfig, step: number): number {
  return cfg.schedule === 'cosine' ? cosineLR(cfg.lr, step, cfg.steps, { warmupSteps: cfg.warmup }) : polyLR(cfg.lr, step, cfg.steps);
}

/** One training step of a fresh model with this run's configuration on zero images, for autotune to record its kernels. */
function tuningStep(engine: Engine, cfg: RunConfig): void {
  const [w, h] = cfg.model.inputSize!;
  const model = canet(engine, { ...cfg.model, seed: cfg.seed });
  const optimizer = makeOptimizer(model, cfg);
  try {
    const images = blankImages(engine, cfg.batch, w, h);
    const labels = engine.tensor(new Int32Array(cfg.batch * h * w), [cfg.batch, h, w]);
    trainStep(model, optimizer, images, labels).dispose();
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}

export interface TrainResult {
  steps: number;
  losses: number[];
  finalMiou: number | null;
}

/** Runs training; returns the losses of the steps this call ran. */
export async function runTrain(argv: string[], engineIn?: Engine): Promise<TrainResult | null> {
  const parsed = parseCommand(trainSpec, argv);
  if (parsed.help) {
    console.log(usage(trainSpec));
    return null;
  }
  const f = parsed.flags;
  const out = String(f.out);
  await ensureOutputDir(out);
  const engine = engineIn ?? (await createEngine());
  let cfg: RunConfig;
  let startStep = 0;
  const resume = f.resume ? await loadCheckpoint(String(f.resume)) : null;
  if (resume) {
    cfg = resume.meta.config as unknown as RunConfig;
    startStep = resume.meta.step;
  } else {
    cfg = configFromFlags(f);
  }
  // Schedules: a flag given now wins; on a resume without it, the original run's value (they used
  // to fall back to the defaults, so a resumed run checkpointed every 100 steps whatever was asked).
  const given = (flag: string) => argv.some((a) => a === `--${flag}` || a.startsWith(`--${flag}=`));
  const schedule = (flag: string, key: 'checkpointEvery' | 'evalEvery' | 'logEvery'): number => {
    const v = resume && !given(flag) && typeof cfg[key] === 'number' ? cfg[key]! : Number(f[flag]);
    cfg[key] = v;
    return v;
  };
  const checkpointEvery = schedule('checkpoint-every', 'checkpointEvery');
  const evalEvery = schedule('eval-every', 'evalEvery');
  const logEvery = schedule('log-every', 'logEvery');
  const { train, val } = datasets(cfg);
  if (!resume) cfg.classWeights = await resolveClassWeights(parseClassWeights(String(f['class-weights']), cfg.model.classes), train, cfg.model.classes);
  if (!resume) cfg.steps = f.steps ? Number(f.steps) : Math.max(1, Math.ceil(((Number(f.epochs) || 1) * train.size) / cfg.batch));
  const model = canet(engine, { ...cfg.model, seed: cfg.seed });
  const optimizer = makeOptimizer(model, cfg);
  const progress = new Progress();
  const disposeAtEnd: (() => void)[] = [];
  const classWeights = cfg.classWeights ? engine.tensor(Float32Array.from(cfg.classWeights), [cfg.classWeights.length], 'f32') : null;
  try {
    if (resume) {
      model.loadStateDict(resume.state);
      if (resume.optimizer) optimizer.loadStateDict(resume.optimizer);
      progress.log(`resumed from ${f.resume} at step ${startStep}/${cfg.steps}`);
    } else if (f.pretrained) {
      const r = await loadPretrained(model, String(f.pretrained));
      progress.log(`pretrained: ${r.loaded} tensors from ${f.pretrained}`);
    }
    progress.log(`training CANet-${cfg.model.backbone} (width ${cfg.model.width}, ${model.numParameters().toLocaleString('en-US')} parameters) on ${train.name}, ${cfg.steps} steps of ${cfg.batch} at ${cfg.model.inputSize!.join('x')}, ${engine.adapter.description}`);
    if (cfg.classWeights) progress.log(`class weights: ${cfg.classWeights.map((x) => x.toFixed(2)).join(', ')}`);
    // Tuned on a throwaway model of the same shapes: tuning runs the step once, which must not
    // move this run's weights, optimizer or BatchNorm statistics (exact resume).
    await applyTuning(engine, f, () => tuningStep(engine, cfg), cfg.steps - startStep, (l) => progress.log(l));
    const metricsPath = join(out, 'metrics.jsonl');
    // A fresh run starts a new file at its first line (a run that fails before logging leaves none);
    // a resume keeps the lines up to the checkpoint's step and drops the later ones, which a killed
    // run logged after its last checkpoint and which the resumed run logs again.
    if (!resume) await rm(metricsPath, { force: true });
    else if (existsSync(metricsPath)) {
      const lines = (await readFile(metricsPath, 'utf8')).split('\n').filter(Boolean);
      const kept = lines.filter((l) => {
        try {
          return (JSON.parse(l) as { step?: number }).step! <= startStep;
        } catch {
          return false; // a line cut by the kill
        }
      });
      if (kept.length !== lines.length) await writeFile(metricsPath, kept.map((l) => `${l}\n`).join(''));
    }
    const prefetch = new Prefetcher(train, cfg.batch, cfg.seed);
    const [w, h] = cfg.model.inputSize!;
    const losses: number[] = [];
    let windowStart = performance.now();
    let windowImages = 0;
    const checkpointPath = join(out, 'checkpoint.safetensors');
    const continueOnNan = Boolean(f['continue-on-nan']);
    let lastMiou: number | null = null;
    let lastCheckpoint = resume ? startStep : 0;
    const nonFiniteSteps: number[] = [];
    const lastGood = () => (lastCheckpoint ? `the last good checkpoint is ${checkpointPath} (step ${lastCheckpoint})` : 'no checkpoint was written yet');
    const nonFiniteWeights = (e: unknown): boolean => e instanceof SafetensorsError && /non-finite value/.test(e.message);
    let weightsBad = false;

    // The batch goes into fixed input tensors and the step (forward, loss, backward, update) is
    // replayed from a captured plan from the third step on (PlannedCall): the lr of each step is
    // read again at every replay, so a schedule needs no new capture.
    const batchImages = engine.empty([cfg.batch, h, w, 3], 'f32', 'images').keep();
    const batchLabels = engine.empty([cfg.batch, h, w], 'u32', 'labels').keep();
    const stepCall = new PlannedCall(engine, () => trainStep(model, optimizer, batchImages, batchLabels, { classWeights }), { label: 'training step', capture: !f['no-capture'] });
    disposeAtEnd.push(() => (stepCall.dispose(), batchImages.dispose(), batchLabels.dispose()));

    for (let step = startStep; step < cfg.steps; step++) {
      optimizer.lr = lrAt(cfg, step);
      const samples = await prefetch.take(step);
      uploadBatch(engine, samples, w, h, { seed: cfg.seed * 7_919 + step, maxScale: cfg.scale, flip: cfg.flip }, { images: batchImages, labels: batchLabels });
      // The loss belongs to stepCall until its next run.
      const loss = stepCall.run();
      engine.submit();
      // Decode or generate the next batch on this thread while the GPU works on this one.
      if (step + 1 < cfg.steps && !f['no-prefetch']) prefetch.ahead(step + 1);
      let value: number;
      try {
        value = await checkLossFinite(loss, step + 1);
      } catch (e) {
        // Invalid labels always stop: they are a data error, not a numeric accident.
        if (!(e instanceof LossCheckError)) throw e;
        if (e.invalidLabels > 0)
          throw new Error(
            `${e.message}; training stopped. This is a data error, not a numeric one: fix the label maps (class ids must be below --classes ${cfg.model.classes}, or 255 to ignore a pixel) or pass the right --classes`,
          );
        if (!continueOnNan) throw new Error(`${e.message}; training stopped; ${lastGood()}. Lower --lr and resume from it, or pass --continue-on-nan to train on.`);
        value = e.loss;
        nonFiniteSteps.push(step + 1);
        if (nonFiniteSteps.length === 1) progress.log(`step ${step + 1}: non-finite loss (${e.loss}); continuing (--continue-on-nan)`);
      }
      losses.push(value);
      windowImages += cfg.batch;
      const now = performance.now();
      const ips = (windowImages * 1000) / Math.max(1, now - windowStart);
      if (now - windowStart > 10_000) {
        windowStart = now;
        windowImages = 0;
      }
      const done = step + 1;
      if (done % logEvery === 0 || done === cfg.steps)
        await appendFile(metricsPath, JSON.stringify({ step: done, loss: value, ...(Number.isFinite(value) ? {} : { nonFinite: true }), lr: optimizer.lr, imagesPerSecond: ips, time: new Date().toISOString() }) + '\n');
      progress.update({ step: done, total: cfg.steps, loss: value, imagesPerSecond: ips, extra: lastMiou !== null ? `mIoU ${(100 * lastMiou).toFixed(1)}%` : undefined });
      if (evalEvery && done % evalEvery === 0 && val && done < cfg.steps) {
        const s = await evaluate(engine, model, val, w, h, cfg.batch);
        lastMiou = s.miou;
        await appendFile(metricsPath, JSON.stringify({ step: done, miou: s.miou, pixelAccuracy: s.pixelAccuracy }) + '\n');
        progress.log(`step ${done}: val mIoU ${(100 * s.miou).toFixed(2)}%, pixel accuracy ${(100 * s.pixelAccuracy).toFixed(2)}%`);
      }
      if ((done % checkpointEvery === 0 || done === cfg.steps) && !weightsBad) {
        try {
          await saveCheckpoint(checkpointPath, model, optimizer, { step: done, config: cfg as unknown as Record<string, unknown> });
          lastCheckpoint = done;
        } catch (e) {
          // The serializer refuses NaN/Inf: a checkpoint that could not be resumed is never written.
          if (!nonFiniteWeights(e)) throw e;
          if (!continueOnNan) throw new Error(`the weights became non-finite by step ${done} (${(e as Error).message.replace(/; pass allowNonFinite.*$/, '')}); training stopped; ${lastGood()}. Lower --lr and resume from it.`);
          weightsBad = true;
          progress.log(`step ${done}: the weights are non-finite; no more checkpoints are written (${lastGood()})`);
        }
      }
    }
    if (nonFiniteSteps.length) progress.log(`${nonFiniteSteps.length} step(s) had a non-finite loss (first: step ${nonFiniteSteps[0]})`);

    let finalMiou: number | null = null;
    if (val) {
      const s = await evaluate(engine, model, val, w, h, cfg.batch);
      finalMiou = s.miou;
      await appendFile(metricsPath, JSON.stringify({ step: cfg.steps, miou: s.miou, pixelAccuracy: s.pixelAccuracy }) + '\n');
      progress.log(`final: val mIoU ${(100 * s.miou).toFixed(2)}%, pixel accuracy ${(100 * s.pixelAccuracy).toFixed(2)}% on ${val.name}`);
    }
    const modelPath = join(out, 'model.safetensors');
    try {
      await saveModel(modelPath, model, cfg.model, {
        dtype: f.save === 'f16' ? 'F16' : 'F32',
        sidecar: { steps: cfg.steps, batch: cfg.batch, data: cfg.data, finalMiou, command: `canet train ${argv.join(' ')}` },
      });
    } catch (e) {
      if (!nonFiniteWeights(e)) throw e;
      throw new Error(`the weights are non-finite after step ${cfg.steps}; ${modelPath} was not written; ${lastGood()}.`);
    }
    await writeCurve(metricsPath, join(out, 'curve.svg'));
    progress.log(`wrote ${modelPath}, ${checkpointPath}, ${metricsPath}, ${join(out, 'curve.svg')}`);
    return { steps: cfg.steps, losses, finalMiou };
  } finally {
    for (const d of disposeAtEnd) d();
    classWeights?.dispose();
    optimizer.dispose();
    model.dispose();
    if (!engineIn) engine.destroy();
  }
}
