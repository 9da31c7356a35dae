/**
 * `canet segment`: PNG/JPEG in, colour-coded label PNG, overlay and optionally raw class ids out.
 * Every input is checked (readable, an image, within the pixel budget) before the model is loaded;
 * by default a bad image is reported and the others still processed, and the exit code says so.
 */
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import type { Engine } from '../engine/engine.js';
import { createEngine } from '../engine/device-node.js';
import { imageToTensor, type ImageBytes } from '../engine/ops/preprocess.js';
import type { Tensor } from '../engine/tensor.js';
import { PlannedCall } from '../engine/plan.js';
import type { CANet } from '../net/canet.js';
import { inspectImageFile, readImage, writePng } from '../data/image-io.js';
import { demoFiles } from '../weights/bundled.js';
import { colorize, overlay, resizeClassIds } from '../engine/palette.js';
import { imageBudget, maxMegapixelsFlag, parseCommand, parsePrecision, parseSize, precisionFlag, usage, UsageError, type CommandSpec } from './args.js';
import { loadModelFile } from '../weights/load-file.js';
import { ensureOutputDir } from './files.js';
import { applyTuning, blankImages, tuningFlags } from './tuning.js';

export const segmentSpec: CommandSpec = {
  name: 'segment',
  summary: 'segment images with a trained model',
  usage: 'canet segment IMAGE... [--weights FILE] [--out DIR] [--size WxH] [--overlay 0.5] [--ids] [--precision f32|f16] [--fail-fast] [--tune]',
  flags: {
    weights: { type: 'string', help: 'model file (.safetensors); default: the demo model shipped in the package' },
    out: { type: 'string', help: 'output folder', default: 'out' },
    size: { type: 'string', help: 'network input WIDTHxHEIGHT, multiples of 32 (default: the size the model was trained at)' },
    overlay: { type: 'number', help: 'opacity of the labels over the photo', default: 0.5 },
    ids: { type: 'boolean', help: 'also write the raw class-id PNG (8-bit)' },
    'fail-fast': { type: 'boolean', help: 'stop at the first bad image (default: segment the others, list the failures, exit 1)' },
    ...maxMegapixelsFlag,
    ...precisionFlag,
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
  /** decode: reading the file; gpu: upload, resize and the network (compiling on first use); readback: the ids. */
  ms: { decode: number; gpu: number; readback: number };
}

/**
 * The network at one input size, for many images: each image is written into one fixed input
 * tensor, and the network is replayed from a captured plan from the third image on (PlannedCall).
 */
export class ImageSegmenter {
  readonly input: Tensor;
  private readonly call: PlannedCall<Tensor>;
  constructor(readonly engine: Engine, model: CANet, readonly size: [number, number]) {
    const [w, h] = size;
    this.input = engine.empty([1, h, w, 3], 'f32', 'image').keep();
    this.call = new PlannedCall(engine, () => model.segment(this.input), { label: `segment ${w}x${h}` });
  }
  /** Class ids of `img` (i32 [1, H, W]), valid until the next call. */
  segment(img: ImageBytes): Tensor {
    const [w, h] = this.size;
    imageToTensor(this.engine, img, { outWidth: w, outHeight: h, into: { tensor: this.input, index: 0 } });
    return this.call.run();
  }
  dispose(): void {
    this.call.dispose();
    this.input.dispose();
  }
}

/** Segments one image file and writes the PNGs. */
export async function segmentFile(segmenter: ImageSegmenter, input: string, outDir: string, opts: { overlay: number; ids: boolean; maxPixels?: number; raiseWith?: string; stem?: string }): Promise<SegmentOutput> {
  const engine = segmenter.engine;
  const t0 = performance.now();
  const img = await readImage(input, { maxPixels: opts.maxPixels, raiseWith: opts.raiseWith });
  const [w, h] = segmenter.size;
  const t1 = performance.now();
  // GPU time: the upload, recording or replaying the network (pipelines compile on first use), running it.
  const ids = segmenter.segment(img);
  await engine.sync();
  const t2 = performance.now();
  const raw = await ids.read();
  const t3 = performance.now();
  const classIds = resizeClassIds(raw, w, h, img.width, img.height);
  const colours = colorize(classIds, img.width, img.height);
  const rgba = img.channels === 4 ? img.data : rgbToRgba(img.data);
  const stem = join(outDir, opts.stem ?? basename(input, extname(input)));
  const out: SegmentOutput = {
    input,
    labels: `${stem}_labels.png`,
    overlay: `${stem}_overlay.png`,
    classIds,
    width: img.width,
    height: img.height,
    ms: { decode: t1 - t0, gpu: t2 - t1, readback: t3 - t2 },
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

/**
 * Output name stems, one per input, never two alike: the file name without its extension, and
 * where two inputs share one (a/street.png, b/street.png), their paths below the folder they have
 * in common (a_street, b_street); then the extension (street_png, street_jpg); then a count.
 */
export function outputStems(inputs: readonly string[]): string[] {
  const plain = inputs.map((f) => basename(f, extname(f)));
  const count = (xs: string[]) => xs.reduce((m, x) => m.set(x, (m.get(x) ?? 0) + 1), new Map<string, number>());
  const byPlain = count(plain);
  const full = inputs.map((f) => resolve(f));
  const common = full.reduce((c, f) => {
    while (c !== dirname(c) && !f.startsWith(c.endsWith(sep) ? c : c + sep)) c = dirname(c);
    return c;
  }, dirname(full[0] ?? '.'));
  const flat = (f: string) => relative(common, f).split(sep).join('_');
  let stems = inputs.map((_, i) => (byPlain.get(plain[i]!)! > 1 ? flat(full[i]!.slice(0, full[i]!.length - extname(full[i]!).length)) : plain[i]!));
  const byStem = count(stems);
  stems = stems.map((s, i) => (byStem.get(s)! > 1 ? `${s}_${extname(inputs[i]!).slice(1) || 'noext'}` : s));
  const seen = new Map<string, number>();
  return stems.map((s) => {
    const n = (seen.get(s) ?? 0) + 1;
    seen.set(s, n);
    return n === 1 ? s : `${s}_${n}`;
  });
}

/** The images that could not be segmented (the others were written), for a non-zero exit. */
export class SegmentFailures extends Error {
  override name = 'SegmentFailures';
  constructor(readonly failures: { input: string; reason: string }[], total: number) {
    super(`${failures.length} of ${total} image${total === 1 ? '' : 's'} failed:\n` + failures.map((f) => `  ${f.reason}`).join('\n'));
  }
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
  const budget = imageBudget(p.flags);
  const failFast = Boolean(p.flags['fail-fast']);
  const precision = parsePrecision(p.flags);
  const outDir = String(p.flags.out);
  await ensureOutputDir(outDir); // before the engine: a bad --out fails at once
  // Every input is checked before any GPU work: a typo in the tenth file name costs milliseconds.
  const failures: { input: string; reason: string }[] = [];
  const inputs: string[] = [];
  for (const input of p.positional) {
    try {
      await inspectImageFile(input, budget);
      inputs.push(input);
    } catch (e) {
      if (failFast) throw e;
      failures.push({ input, reason: (e as Error).message });
      console.error(`skipping ${(e as Error).message}`);
    }
  }
  const stems = outputStems(inputs);
  const results: SegmentOutput[] = [];
  if (inputs.length) {
    const engine = await createEngine();
    try {
      const { model, config } = await loadModelFile(engine, String(p.flags.weights ?? demoFiles().model));
      // f16: refused here, before any image, with a FeatureError naming the adapter when it has no shader-f16.
      if (precision === 'f16') model.half();
      const size = p.flags.size ? parseSize(String(p.flags.size)) : config.inputSize ?? [512, 256];
      if (size[0] % 32 || size[1] % 32) throw new UsageError(`--size must be multiples of 32, got ${size.join('x')}`);
      await applyTuning(engine, p.flags, () => model.segment(blankImages(engine, 1, size[0], size[1])), inputs.length, (l) => console.log(l));
      const segmenter = new ImageSegmenter(engine, model, size);
      for (const [i, input] of inputs.entries()) {
        let r: SegmentOutput;
        try {
          r = await segmentFile(segmenter, input, outDir, { overlay: overlayAlpha, ids: Boolean(p.flags.ids), ...budget, stem: stems[i]! });
        } catch (e) {
          // A file that passed the header checks can still fail to decode (damaged image data).
          if (failFast) throw e;
          failures.push({ input, reason: (e as Error).message });
          console.error(`failed: ${(e as Error).message}`);
          continue;
        }
        const note = results.length === 0 ? ' (first image: includes compiling the GPU pipelines)' : '';
        results.push(r);
        console.log(`${input}: ${r.width}x${r.height} at ${size.join('x')}: decode ${r.ms.decode.toFixed(0)} ms, GPU ${r.ms.gpu.toFixed(0)} ms${note}, readback ${r.ms.readback.toFixed(0)} ms -> ${r.labels}, ${r.overlay}${r.ids ? `, ${r.ids}` : ''}`);
      }
      segmenter.dispose();
      model.dispose();
    } finally {
      engine.destroy();
    }
  }
  if (failures.length) throw new SegmentFailures(failures, p.positional.length);
  return results;
}
