/** The `canet` command: segment, train, eval, make-dataset, demo. */
import { readFile } from 'node:fs/promises';
import { writeSyntheticDataset } from '../data/datasets.js';
import { demoFiles } from '../weights/bundled.js';
import { readLabelImage } from '../data/image-io.js';
import { scoresFromConfusion } from '../engine/ops/metrics.js';
import { parseCommand, parseSize, usage, UsageError, type CommandSpec } from './args.js';
import { runSegment } from './segment.js';
import { ensureOutputDir } from './files.js';
import { runTrain } from './train.js';
import { runEval } from './eval.js';

const makeDatasetSpec: CommandSpec = {
  name: 'make-dataset',
  summary: 'write synthetic street scenes as PNG files in a Cityscapes-like layout',
  usage: 'canet make-dataset --synthetic N --out DIR [--size WxH] [--split train|val]',
  flags: {
    synthetic: { type: 'number', minInt: 1, help: 'number of scenes' },
    out: { type: 'string', help: 'output folder' },
    size: { type: 'string', help: 'WIDTHxHEIGHT', default: '512x256' },
    split: { type: 'string', help: 'train | val (disjoint seeds)', default: 'train' },
  },
};

const demoSpec: CommandSpec = {
  name: 'demo',
  summary: 'segment the sample image with the demo weights (what `npm start` runs)',
  usage: 'canet demo [--out DIR]',
  flags: { out: { type: 'string', help: 'output folder', default: 'out' } },
};

const HELP = `canet: CANet semantic segmentation on WebGPU

usage: canet COMMAND [options]    (canet COMMAND --help for its options)

commands:
  segment IMAGE...   segment PNG/JPEG images; writes colour labels and overlays
  train              train on image folders or synthetic street scenes
  eval               per-class IoU, mIoU and pixel accuracy of a model
  make-dataset       write synthetic street scenes as PNG files
  demo               segment the sample image with the demo weights (npm start)`;

async function runDemo(argv: string[]): Promise<void> {
  const p = parseCommand(demoSpec, argv);
  if (p.help) return void console.log(usage(demoSpec));
  const { model: weights, sample, sampleLabels: truthPath, card } = demoFiles();
  const out = String(p.flags.out);
  const [r] = (await runSegment([sample, '--weights', weights, '--out', out, '--ids']))!;
  if (r) {
    const truth = await readLabelImage(truthPath);
    const meta = JSON.parse(await readFile(card, 'utf8')) as { classes: number };
    const confusion = Array.from({ length: meta.classes }, () => new Array<number>(meta.classes).fill(0));
    truth.labels.forEach((y, i) => {
      if (y < meta.classes) confusion[y]![r.classIds[i]!]!++;
    });
    const s = scoresFromConfusion(confusion);
    const present = s.iou.filter((v) => !Number.isNaN(v)).length;
    console.log(`sample vs its ground truth: pixel accuracy ${(100 * s.pixelAccuracy).toFixed(1)}%, mIoU ${(100 * s.miou).toFixed(1)}% over ${present} classes present`);
  }
  console.log(`\nopen ${r!.overlay} (overlay) and ${r!.labels} (labels)`);
}

async function makeDataset(argv: string[]): Promise<void> {
  const p = parseCommand(makeDatasetSpec, argv);
  if (p.help) return void console.log(usage(makeDatasetSpec));
  if (!p.flags.synthetic || !p.flags.out) throw new UsageError('canet make-dataset needs --synthetic N and --out DIR');
  const [width, height] = parseSize(String(p.flags.size));
  const split = String(p.flags.split);
  if (split !== 'train' && split !== 'val') throw new UsageError(`--split must be train or val, got '${split}'`);
  await ensureOutputDir(String(p.flags.out));
  const t0 = performance.now();
  await writeSyntheticDataset(String(p.flags.out), Number(p.flags.synthetic), { width, height, split });
  console.log(`wrote ${p.flags.synthetic} ${width}x${height} scenes (${split}) to ${p.flags.out} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** Runs the CLI; returns the exit code (0 ok, 1 failure, 2 usage error). */
export async function run(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'segment':
        await runSegment(rest);
        return 0;
      case 'train':
        await runTrain(rest);
        return 0;
      case 'eval':
        await runEval(rest);
        return 0;
      case 'make-dataset':
        await makeDataset(rest);
        return 0;
      case 'demo':
        await runDemo(rest);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(HELP);
        return cmd === undefined ? 2 : 0;
      default:
        console.error(`canet: unknown command '${cmd}'\n\n${HELP}`);
        return 2;
    }
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(e.message);
      return 2;
    }
    console.error(`canet ${cmd}: ${(e as Error).message}`);
    if (process.env.CANET_DEBUG) console.error((e as Error).stack);
    return 1;
  }
}
