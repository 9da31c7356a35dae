/** `canet segment`: PNG/JPEG in, colour-coded label PNG, overlay and optionally raw class ids out. */
import { mkdir } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import type { Engine } from '../engine/engine.js';
import { createEngine } from '../engine/device-node.js';
import { imageToTensor } from '../engine/ops/preprocess.js';
import type { CANet } from '../net/canet.js';
import { readImage, writePng } from '../data/image-io.js';
import { colorize, overlay } from '../data/palette.js';
import { parseCommand, parseSize, usage, UsageError, type CommandSpec } from './args.js';
import { loadModel } from './model-file.js';
import { applyTuning, blankImages, tuningFlags } from './tuning.js';

export const segmentSpec: CommandSpec = {
  name: 'segment',
  summary: 'segment images with a trained model',
  usage: 'canet segment IMAGE... [--weights FILE] [--out DIR] [--size WxH] [--overlay 0.5] [--ids] [--tune]',
  flags: {
    weights: { type: 'string', help: 'model file (.safetensors)', default: 'weights/demo.safetensors' },
    out: { type: 'string', help: 'output folder', default: 'out' },
    size: { type: 'string', help: 'network input WIDTHxHEIGHT, multiples of 32 (default: the size the model was trained at)' },
    overlay: { type: 'number', help: 'opacity of the labels over the photo', default: 0.5 },
    ids: { type: 'boolean', help: 'also write the raw class-id PNG (8-bit)' },
    ...tuningFlags,
  },
};

export interface SegmentOutput {
  input: string;
  labels: string;
  overlay: string;
  ids?: string;
  classIds: Uint8Array;
  width: number;
  height: number;
  ms: { preprocess: number; gpu: number; readback: number };
}

/** Nearest-neighbour resize of a class-id map (ids must not be blended). */
function resizeIds(ids: ArrayLike<number>, w: number, h: number, ow: number, oh: number): Uint8Array {
  const out = new Uint8Array(ow * oh);
  for (let y = 0; y < oh; y++) {
    const sy = Math.min(h - 1, Math.floor(((y + 0.5) * h) / oh));
    for (let x = 0; x < ow; x++) out[y * ow + x] = ids[sy * w + Math.min(w - 1, Math.floor(((x + 0.5) * w) / ow))]!;
  }
  return out;
}

/** Segments one image file with a loaded model and writes the PNGs. */
export async function segmentFile(engine: Engine, model: CANet, input: string, outDir: string, opts: { size: [number, number]; overlay: number; ids: boolean }): Promise<SegmentOutput> {
  const t0 = performance.now();
  const img = await readImage(input);
  const [w, h] = opts.size;
  const x = imageToTensor(engine, img, { outWidth: w, outHeight: h });
  await engine.sync();
  const t1 = performance.now();
  // GPU time: recording (pipelines compile on first use) and running the network.
  const ids = engine.scope(() => model.segment(x));
  x.dispose();
  await engine.sync();
  const t2 = performance.now();
  const raw = await ids.read();
  ids.dispose();
  const t3 = performance.now();
  const classIds = resizeIds(raw, w, h, img.width, img.height);
  const colours = colorize(classIds, img.width, img.height);
  const rgba = img.channels === 4 ? img.data : rgbToRgba(img.data);
  const stem = join(outDir, basename(input, extname(input)));
  const out: SegmentOutput = {
    input,
    labels: `${stem}_labels.png`,
    overlay: `${stem}_overlay.png`,
    classIds,
    width: img.width,
    height: img.height,
    ms: { preprocess: t1 - t0, gpu: t2 - t1, readback: t3 - t2 },
  };
  await writePng(out.labels, colours, img.width, img.height, 4);
  await writePng(out.overlay, overlay(rgba, colours, opts.overlay), img.width, img.height, 4);
  if (opts.ids) {
    out.ids = `${stem}_ids.png`;
    await writePng(out.ids, classIds, img.width, img.height, 1);
  }
  return out;
}

function rgbToRgba(rgb: Uint8Array): Uint8Array {
  const n = rgb.length / 3;
  const out = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) {
    out[4 * i] = rgb[3 * i]!;
    out[4 * i + 1] = rgb[3 * i + 1]!;
    out[4 * i + 2] = rgb[3 * i + 2]!;
    out[4 * i + 3] = 255;
  }
  return out;
}

export async function runSegment(argv: string[]): Promise<SegmentOutput[] | null> {
  const p = parseCommand(segmentSpec, argv);
  if (p.help) {
    console.log(usage(segmentSpec));
    return null;
  }
  if (!p.positional.length) throw new UsageError('canet segment: give at least one image (PNG or JPEG)');
  const overlayAlpha = Number(p.flags.overlay);
  if (!(overlayAlpha >= 0 && overlayAlpha <= 1)) throw new UsageError(`--overlay must be in [0, 1], got ${overlayAlpha}`);
  const engine = await createEngine();
  try {
    const { model, config } = await loadModel(engine, String(p.flags.weights));
    model.eval();
    const size = p.flags.size ? parseSize(String(p.flags.size)) : config.inputSize ?? [512, 256];
    if (size[0] % 32 || size[1] % 32) throw new UsageError(`--size must be multiples of 32, got ${size.join('x')}`);
    const outDir = String(p.flags.out);
    await applyTuning(engine, p.flags, () => model.segment(blankImages(engine, 1, size[0], size[1])), p.positional.length, (l) => console.log(l));
    await mkdir(outDir, { recursive: true });
    const results: SegmentOutput[] = [];
    for (const input of p.positional) {
      const r = await segmentFile(engine, model, input, outDir, { size, overlay: overlayAlpha, ids: Boolean(p.flags.ids) });
      const note = results.length === 0 ? ' (first image: includes compiling the GPU pipelines)' : '';
      results.push(r);
      console.log(`${input}: ${r.width}x${r.height} at ${size.join('x')}: preprocess ${r.ms.preprocess.toFixed(0)} ms, GPU ${r.ms.gpu.toFixed(0)} ms${note}, readback ${r.ms.readback.toFixed(0)} ms -> ${r.labels}, ${r.overlay}${r.ids ? `, ${r.ids}` : ''}`);
    }
    model.dispose();
    return results;
  } finally {
    engine.destroy();
  }
}
