/** `canet eval`: per-class IoU, mIoU, pixel accuracy, confusion matrix (JSON) and images/s. */
import { writeFile } from 'node:fs/promises';
import { createEngine } from '../engine/device-node.js';
import { CLASS_NAMES } from '../engine/palette.js';
import { imageBudget, maxMegapixelsFlag, parseCommand, parseSize, usage, UsageError, type CommandSpec } from './args.js';
import { folderDataset, syntheticDataset } from './data.js';
import { evaluate, type EvalResult } from './evaluate.js';
import { loadModelFile } from '../weights/load-file.js';
import { demoFiles } from '../weights/bundled.js';
import { applyTuning, blankImages, tuningFlags } from './tuning.js';

export const evalSpec: CommandSpec = {
  name: 'eval',
  summary: 'score a model on labelled images',
  usage: 'canet eval (--data DIR | --synthetic N) [--weights FILE] [--split val] [--size WxH] [--batch N] [--json FILE]',
  flags: {
    data: { type: 'string', help: 'dataset folder (Cityscapes, images/+labels/ or images/+masks/ layout)' },
    synthetic: { type: 'number', minInt: 1, help: 'score on N held-out synthetic scenes (the validation seeds)' },
    split: { type: 'string', help: 'split folder name for --data', default: 'val' },
    weights: { type: 'string', help: 'model file (.safetensors); default: the demo model shipped in the package' },
    size: { type: 'string', help: 'network input WIDTHxHEIGHT (default: the model\'s training size)' },
    batch: { type: 'number', minInt: 1, help: 'images per batch', default: 4 },
    json: { type: 'string', help: 'write scores and the confusion matrix to this JSON file' },
    ...maxMegapixelsFlag,
    ...tuningFlags,
  },
};

export function formatScores(r: EvalResult, names: readonly string[]): string {
  const lines = ['class            IoU'];
  r.iou.forEach((v, k) => lines.push(`${(names[k] ?? `class ${k}`).padEnd(16)} ${Number.isNaN(v) ? '   -  ' : (100 * v).toFixed(2).padStart(6) + '%'}`));
  lines.push(`mIoU             ${(100 * r.miou).toFixed(2)}%`);
  lines.push(`pixel accuracy   ${(100 * r.pixelAccuracy).toFixed(2)}%`);
  lines.push(`${r.images} images in ${r.seconds.toFixed(1)} s (${r.imagesPerSecond.toFixed(2)} images/s)`);
  if (r.invalidLabels) lines.push(`warning: ${r.invalidLabels} label pixels were outside the classes and not 255 (not scored)`);
  return lines.join('\n');
}

export async function runEval(argv: string[]): Promise<EvalResult | null> {
  const p = parseCommand(evalSpec, argv);
  if (p.help) {
    console.log(usage(evalSpec));
    return null;
  }
  const f = p.flags;
  if (!f.data === !f.synthetic) throw new UsageError('canet eval needs one of --data DIR or --synthetic N');
  const budget = imageBudget(f);
  const engine = await createEngine();
  try {
    const weights = String(f.weights ?? demoFiles().model);
    const { model, config } = await loadModelFile(engine, weights);
    const [w, h] = f.size ? parseSize(String(f.size)) : config.inputSize ?? [512, 256];
    const data = f.synthetic ? syntheticDataset(Number(f.synthetic), 'val', w, h) : folderDataset(String(f.data), String(f.split), budget);
    const batch = Math.min(Number(f.batch), data.size);
    await applyTuning(engine, f, () => model.segment(blankImages(engine, batch, w, h)), Math.ceil(data.size / batch), (l) => console.log(l));
    const r = await evaluate(engine, model, data, w, h, Number(f.batch));
    console.log(`${data.name}, model ${weights} at ${w}x${h}`);
    console.log(formatScores(r, config.classNames ?? CLASS_NAMES));
    if (f.json) await writeFile(String(f.json), JSON.stringify({ weights, data: data.name, size: [w, h], ...r }, null, 2) + '\n');
    model.dispose();
    return r;
  } finally {
    engine.destroy();
  }
}
