/**
 * Segmentation datasets on disk (Node only): finding image/label pairs in the folder layouts
 * people actually have, loading a pair, and writing the synthetic dataset in the Cityscapes
 * layout so that training on it goes through the same loader as training on real data.
 *
 * Layouts recognised by {@link findPairs}, in this order:
 * - Cityscapes: `leftImg8bit/{split}/{city}/X_leftImg8bit.png` with
 *   `gtFine/{split}/{city}/X_gtFine_labelTrainIds.png` (made by cityscapesscripts'
 *   `createTrainIdLabelImgs`);
 * - CamVid style: `images/` with `labels/`, matched by relative folder and base name;
 * - simple: `images/` with `masks/`, matched the same way.
 * With a split, the CamVid and simple layouts are looked up as `images/{split}/` +
 * `labels/{split}/` or as `{split}/images/` + `{split}/labels/`.
 */
import { readdirSync, realpathSync, statSync, promises as fsp } from 'node:fs';
import { join, relative, sep, extname, basename, dirname } from 'node:path';
import { readImage, readLabelImage, writePng, type ImageReadOptions } from './image-io.js';
import { generateScene, syntheticSeeds, SYNTHETIC_VAL_SEED_BASE } from './synthetic.js';

/** One training example on disk: a photo and its label map (class id per pixel). */
export interface ImagePair {
  image: string;
  label: string;
}

/** A loaded example. */
export interface LoadedPair {
  /** RGB bytes, `height * width * 3` (alpha, if the file had any, is dropped). */
  image: Uint8Array;
  /** One class id per pixel, `height * width`. */
  labels: Uint8Array;
  width: number;
  height: number;
}

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg']);
/** Label file names may carry one of these before the extension (`a.png` <-> `a_mask.png`). */
const LABEL_SUFFIXES = ['', '_mask', '_label', '_labels', '_gt', '_seg', '_L'];
const CITY_IMAGE = '_leftImg8bit.png';
const CITY_LABEL = '_gtFine_labelTrainIds.png';

/**
 * Finds the image/label pairs under `root`, detecting its layout (see the module comment).
 *
 * Strict on purpose: an image without a label is an error (it names the first few), not a
 * silently smaller dataset. Extra files in the label folders (colour previews, instance maps,
 * READMEs) are ignored. Pairs are sorted by image path, so the order is the same on every
 * machine.
 *
 * @param root the dataset folder
 * @param split e.g. 'train' or 'val'; for Cityscapes, every split found when omitted
 * @throws Error naming `root` when it is missing or not a folder, when no layout matches (the
 * message lists what was looked for, where), or when images lack labels
 */
export function findPairs(root: string, split?: string): ImagePair[] {
  const st = statOrNull(root);
  if (!st) throw new Error(`findPairs: dataset folder ${root} does not exist`);
  if (!st.isDirectory()) throw new Error(`findPairs: ${root} is a file, not a dataset folder`);
  if (split !== undefined && (split === '' || split.includes('/') || split.includes('\\') || split === '..'))
    throw new Error(`findPairs: split must be a folder name like 'train', got ${JSON.stringify(split)}`);

  const notes: string[] = [];
  const city = findCityscapes(root, split, notes);
  if (city) return city;
  const candidates: [string, string, string][] = []; // [layout, images dir, labels dir]
  for (const [layout, labelsName] of [['CamVid-style', 'labels'], ['simple', 'masks']] as const) {
    if (split === undefined) candidates.push([layout, join(root, 'images'), join(root, labelsName)]);
    else {
      candidates.push([layout, join(root, 'images', split), join(root, labelsName, split)]);
      candidates.push([layout, join(root, split, 'images'), join(root, split, labelsName)]);
    }
  }
  for (const [layout, imagesDir, labelsDir] of candidates) {
    if (!isDir(imagesDir) || !isDir(labelsDir)) continue;
    const pairs = matchByName(imagesDir, labelsDir, layout, notes);
    if (pairs) return pairs;
  }
  const s = split ?? '{split}';
  const looked = [
    `Cityscapes (leftImg8bit/${s}/**/*${CITY_IMAGE} with gtFine/${s}/**/*${CITY_LABEL})`,
    split === undefined ? 'CamVid-style (images/ + labels/, matched by base name)' : `CamVid-style (images/${split}/ + labels/${split}/, or ${split}/images/ + ${split}/labels/)`,
    split === undefined ? 'simple (images/ + masks/, matched by base name)' : `simple (images/${split}/ + masks/${split}/, or ${split}/images/ + ${split}/masks/)`,
  ];
  throw new Error(
    `findPairs: no image/label pairs under ${root}${split === undefined ? '' : ` for split '${split}'`}. Looked for: ${looked.join('; ')}.` +
      (notes.length ? ` Found: ${notes.join('; ')}.` : ''),
  );
}

/**
 * Loads one pair: the image as RGB, the label map as class ids.
 *
 * @throws ImageError (see `data/image-io.ts`) naming the file that cannot be read; Error naming
 * both files and both sizes when the label map's size differs from the image's
 */
export async function loadPair(pair: ImagePair, opts: ImageReadOptions = {}): Promise<LoadedPair> {
  const [img, lab] = await Promise.all([readImage(pair.image, opts), readLabelImage(pair.label, opts)]);
  if (img.width !== lab.width || img.height !== lab.height)
    throw new Error(
      `loadPair: label ${pair.label} is ${lab.width}x${lab.height} but image ${pair.image} is ${img.width}x${img.height}; ` +
        'a label map must have exactly the size of its image',
    );
  let rgb = img.data;
  if (img.channels === 4) {
    const n = img.width * img.height;
    rgb = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) {
      rgb[i * 3] = img.data[i * 4]!;
      rgb[i * 3 + 1] = img.data[i * 4 + 1]!;
      rgb[i * 3 + 2] = img.data[i * 4 + 2]!;
    }
  }
  return { image: rgb, labels: lab.labels, width: img.width, height: img.height };
}

/** Options of {@link writeSyntheticDataset}. */
export interface SyntheticDatasetOptions {
  width: number;
  height: number;
  split: 'train' | 'val';
}

/**
 * Writes `count` synthetic scenes (see `data/synthetic.ts`) as PNGs in the Cityscapes layout:
 * `leftImg8bit/{split}/synthetic/NNNNNN_leftImg8bit.png` (RGB) and
 * `gtFine/{split}/synthetic/NNNNNN_gtFine_labelTrainIds.png` (greyscale train ids), where file
 * NNNNNN (zero-padded index i) is `generateScene(syntheticSeeds(count, split)[i], width,
 * height)`, byte for byte. Folders are created; files are written atomically, so an interrupted
 * run leaves only complete files, and a rerun overwrites them.
 *
 * @param outDir dataset root, e.g. `data/synthetic-256x128`
 * @param count scenes to write, 0..1,000,000
 * @throws RangeError for bad options (before anything is written); ImageError when a file cannot
 * be written
 */
export async function writeSyntheticDataset(outDir: string, count: number, opts: SyntheticDatasetOptions): Promise<void> {
  const { width, height, split } = opts ?? ({} as Partial<SyntheticDatasetOptions>);
  if (split !== 'train' && split !== 'val') throw new RangeError(`writeSyntheticDataset: opts.split must be 'train' or 'val', got ${String(split)}`);
  if (!Number.isInteger(count) || count < 0 || count > SYNTHETIC_VAL_SEED_BASE)
    throw new RangeError(`writeSyntheticDataset: count must be an integer in [0, ${SYNTHETIC_VAL_SEED_BASE}], got ${count}`);
  for (const [name, v] of [['width', width], ['height', height]] as const)
    if (!Number.isInteger(v) || v! < 1 || v! > 8192) throw new RangeError(`writeSyntheticDataset: opts.${name} must be an integer in [1, 8192], got ${v}`);
  const seeds = syntheticSeeds(count, split);
  const imageDir = join(outDir, 'leftImg8bit', split, 'synthetic');
  const labelDir = join(outDir, 'gtFine', split, 'synthetic');
  await fsp.mkdir(imageDir, { recursive: true });
  await fsp.mkdir(labelDir, { recursive: true });
  // Rendering is synchronous CPU work and writing waits on the disk (fsync): keep a few writes
  // in flight while the next scenes render.
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  for (let i = 0; i < count && failure === undefined; i++) {
    const { image, labels } = generateScene(seeds[i]!, width!, height!);
    const stem = String(i).padStart(6, '0');
    const p = Promise.all([
      writePng(join(imageDir, `${stem}${CITY_IMAGE}`), image, width!, height!, 3),
      writePng(join(labelDir, `${stem}${CITY_LABEL}`), labels, width!, height!, 1),
    ]).then(
      () => void inFlight.delete(p),
      (e) => {
        inFlight.delete(p);
        failure ??= e;
      },
    );
    inFlight.add(p);
    if (inFlight.size >= 4) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure !== undefined) throw failure;
}

// ---------------------------------------------------------------------------------------------

function statOrNull(path: string): ReturnType<typeof statSync> | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

function isDir(path: string): boolean {
  return statOrNull(path)?.isDirectory() ?? false;
}

/**
 * All files under `dir` (recursively), as paths relative to `dir` with '/' separators, sorted.
 * Symbolic links are followed (datasets are often assembled from links to shared storage); a
 * link back to a folder already being walked is skipped, so a cycle cannot recurse forever.
 */
function listFiles(dir: string): string[] {
  const out: string[] = [];
  const active = new Set<string>();
  const walk = (d: string): void => {
    const real = realpathSync(d);
    if (active.has(real)) return;
    active.add(real);
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue; // .DS_Store, editor and atomic-write temporaries
      const p = join(d, e.name);
      const st = e.isSymbolicLink() ? statOrNull(p) : e;
      if (st?.isDirectory()) walk(p);
      else if (st?.isFile()) out.push(relative(dir, p).split(sep).join('/'));
    }
    active.delete(real);
  };
  walk(dir);
  return out.sort(byCodeUnits);
}

/** Locale-independent order, so pair order is the same on every machine. */
function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function findCityscapes(root: string, split: string | undefined, notes: string[]): ImagePair[] | null {
  const imgRoot = join(root, 'leftImg8bit');
  const gtRoot = join(root, 'gtFine');
  if (!isDir(imgRoot)) return null;
  const available = readdirSync(imgRoot, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort(byCodeUnits);
  const splits = split === undefined ? available : available.includes(split) ? [split] : [];
  if (!splits.length) {
    notes.push(`leftImg8bit/ with ${available.length ? `splits ${available.join(', ')}` : 'no split folders'}${split === undefined ? '' : `, not '${split}'`}`);
    return null;
  }
  const pairs: ImagePair[] = [];
  const missing: string[] = [];
  let images = 0;
  for (const s of splits) {
    const labels = new Set(isDir(join(gtRoot, s)) ? listFiles(join(gtRoot, s)).filter((f) => f.endsWith(CITY_LABEL)) : []);
    for (const f of listFiles(join(imgRoot, s))) {
      if (!f.endsWith(CITY_IMAGE)) continue;
      images++;
      const label = f.slice(0, -CITY_IMAGE.length) + CITY_LABEL;
      if (labels.has(label)) pairs.push({ image: join(imgRoot, s, f), label: join(gtRoot, s, label) });
      else missing.push(join(imgRoot, s, f));
    }
  }
  if (images === 0) {
    notes.push(`leftImg8bit/${splits.join(', ')} without any *${CITY_IMAGE} files`);
    return null;
  }
  if (pairs.length === 0)
    throw new Error(
      `findPairs: ${root} has ${images} Cityscapes images (leftImg8bit/${splits.join(', ')}) but no *${CITY_LABEL} label maps ` +
        `under gtFine/${splits.join(', ')}; create them with cityscapesscripts' createTrainIdLabelImgs`,
    );
  if (missing.length) throw missingLabels(missing, images, `gtFine/<split>/<city>/*${CITY_LABEL}`);
  return pairs.sort((a, b) => byCodeUnits(a.image, b.image));
}

/** images/ and labels/ (or masks/) trees matched by relative folder and base name. */
function matchByName(imagesDir: string, labelsDir: string, layout: string, notes: string[]): ImagePair[] | null {
  const images = listFiles(imagesDir).filter((f) => IMAGE_EXT.has(extname(f).toLowerCase()));
  if (!images.length) {
    notes.push(`${layout} folders ${imagesDir} and ${labelsDir}, but no .png/.jpg images in the first`);
    return null;
  }
  // Label files by "folder/base name" (without extension).
  const labels = new Map<string, string>();
  for (const f of listFiles(labelsDir)) {
    if (!IMAGE_EXT.has(extname(f).toLowerCase())) continue;
    const key = stripExt(f);
    // Prefer PNG when both a.png and a.jpg exist: labels must be lossless.
    if (!labels.has(key) || extname(f).toLowerCase() === '.png') labels.set(key, f);
  }
  const pairs: ImagePair[] = [];
  const missing: string[] = [];
  for (const f of images) {
    const key = stripExt(f);
    let label: string | undefined;
    for (const suffix of LABEL_SUFFIXES) if ((label = labels.get(key + suffix))) break;
    if (label) pairs.push({ image: join(imagesDir, f), label: join(labelsDir, label) });
    else missing.push(join(imagesDir, f));
  }
  if (!pairs.length) {
    notes.push(`${layout} folders ${imagesDir} (${images.length} images) and ${labelsDir}, but no label file shares a base name with an image`);
    return null;
  }
  if (missing.length) throw missingLabels(missing, images.length, `${labelsDir}/<same name>.png`);
  return pairs;
}

function stripExt(relPath: string): string {
  const d = dirname(relPath);
  const b = basename(relPath, extname(relPath));
  return d === '.' ? b : `${d}/${b}`;
}

function missingLabels(missing: string[], total: number, expected: string): Error {
  const shown = missing.slice(0, 3).join(', ');
  return new Error(
    `findPairs: ${missing.length} of ${total} images have no label map (expected ${expected}): ${shown}` + (missing.length > 3 ? ', ...' : ''),
  );
}
