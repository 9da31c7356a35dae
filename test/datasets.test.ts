/**
 * Dataset folders (data/datasets.ts): layout detection, pairing, loading, and the synthetic
 * dataset written in the Cityscapes layout. CPU only; every tree is built in a temp folder.
 */
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { findPairs, loadPair, writeSyntheticDataset } from '../data/datasets.js';
import { encodePng } from '../data/image-io.js';
import { generateScene, syntheticSeeds } from '../data/synthetic.js';
import { suite } from './harness.js';

const t = suite('datasets');

let dir = '';
t.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'canet-datasets-'));
});
t.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let made = 0;
/** Writes a small PNG (RGB image or greyscale label) at root/rel, creating folders. */
async function put(root: string, rel: string, kind: 'image' | 'label' = 'image', w = 4, h = 3): Promise<void> {
  const path = join(root, rel);
  await mkdir(dirname(path), { recursive: true });
  const c = kind === 'image' ? 3 : 1;
  const data = new Uint8Array(w * h * c).map((_, i) => (i * 37 + made * 11) % (kind === 'image' ? 256 : 19));
  made++;
  await writeFile(path, encodePng(data, w, h, c));
}

const rel = (root: string, pairs: { image: string; label: string }[]) =>
  pairs.map((p) => [p.image.slice(root.length + 1).replaceAll('\\', '/'), p.label.slice(root.length + 1).replaceAll('\\', '/')]);

t('Cityscapes layout: pairs by city and stem, per split or all splits', async () => {
  const root = join(dir, 'cityscapes');
  for (const [split, city, stem] of [['train', 'aachen', 'aachen_000001_000019'], ['train', 'bremen', 'bremen_000000_000019'], ['train', 'aachen', 'aachen_000000_000019'], ['val', 'lindau', 'lindau_000000_000019']]) {
    await put(root, `leftImg8bit/${split}/${city}/${stem}_leftImg8bit.png`);
    await put(root, `gtFine/${split}/${city}/${stem}_gtFine_labelTrainIds.png`, 'label');
    // What else cityscapesscripts leaves beside the train ids: ignored.
    await put(root, `gtFine/${split}/${city}/${stem}_gtFine_color.png`);
    await writeFile(join(root, `gtFine/${split}/${city}/${stem}_gtFine_polygons.json`), '{}');
  }
  assert.equal(rel(root, findPairs(root, 'train')), [
    ['leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png', 'gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png'],
    ['leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png', 'gtFine/train/aachen/aachen_000001_000019_gtFine_labelTrainIds.png'],
    ['leftImg8bit/train/bremen/bremen_000000_000019_leftImg8bit.png', 'gtFine/train/bremen/bremen_000000_000019_gtFine_labelTrainIds.png'],
  ]);
  assert.is(findPairs(root, 'val').length, 1);
  assert.is(findPairs(root).length, 4);
  assert.throws(() => findPairs(root, 'test'), /no image\/label pairs under .*cityscapes for split 'test'.*Found: leftImg8bit\/ with splits train, val, not 'test'/);
});

t('Cityscapes without train-id label maps says how to make them', async () => {
  const root = join(dir, 'cityscapes-raw');
  await put(root, 'leftImg8bit/train/ulm/ulm_000000_000019_leftImg8bit.png');
  await put(root, 'gtFine/train/ulm/ulm_000000_000019_gtFine_labelIds.png', 'label');
  assert.throws(() => findPairs(root, 'train'), /1 Cityscapes images .* but no \*_gtFine_labelTrainIds\.png label maps .*createTrainIdLabelImgs/);
});

t('CamVid style: images/ + labels/ by base name, any image extension, subfolders', async () => {
  const root = join(dir, 'camvid');
  await put(root, 'images/0001TP_006690.png');
  await put(root, 'labels/0001TP_006690.png', 'label');
  await put(root, 'images/seq2/0006R0_f02400.png');
  await put(root, 'labels/seq2/0006R0_f02400.png', 'label');
  // A JPEG photo with a PNG label of the same base name.
  await mkdir(join(root, 'images'), { recursive: true });
  await writeFile(join(root, 'images/Seq05VD_f00000.jpg'), new Uint8Array([0xff, 0xd8, 0xff])); // found, not decoded here
  await put(root, 'labels/Seq05VD_f00000.png', 'label');
  await writeFile(join(root, 'labels/README.txt'), 'class list');
  assert.equal(rel(root, findPairs(root)), [
    ['images/0001TP_006690.png', 'labels/0001TP_006690.png'],
    ['images/Seq05VD_f00000.jpg', 'labels/Seq05VD_f00000.png'],
    ['images/seq2/0006R0_f02400.png', 'labels/seq2/0006R0_f02400.png'],
  ]);
});

t('symbolic links to folders are followed; a link cycle is not', async () => {
  const root = join(dir, 'linked');
  const store = join(dir, 'store');
  await put(store, 'city/s_000000_000019_leftImg8bit.png');
  await put(root, 'gtFine/train/city/s_000000_000019_gtFine_labelTrainIds.png', 'label');
  await mkdir(join(root, 'leftImg8bit/train'), { recursive: true });
  await symlink(join(store, 'city'), join(root, 'leftImg8bit/train/city'), 'dir');
  await symlink(join(root, 'gtFine'), join(root, 'gtFine/train/city/loop'), 'dir');
  assert.equal(rel(root, findPairs(root, 'train')), [
    ['leftImg8bit/train/city/s_000000_000019_leftImg8bit.png', 'gtFine/train/city/s_000000_000019_gtFine_labelTrainIds.png'],
  ]);
});

t('simple layout: images/ + masks/, with _mask suffixes; split folders either way round', async () => {
  const root = join(dir, 'simple');
  await put(root, 'images/a.png');
  await put(root, 'masks/a_mask.png', 'label');
  await put(root, 'images/b.png');
  await put(root, 'masks/b.png', 'label');
  assert.equal(rel(root, findPairs(root)), [
    ['images/a.png', 'masks/a_mask.png'],
    ['images/b.png', 'masks/b.png'],
  ]);
  const bySplit = join(dir, 'by-split');
  await put(bySplit, 'images/train/x.png');
  await put(bySplit, 'labels/train/x.png', 'label');
  await put(bySplit, 'val/images/y.png');
  await put(bySplit, 'val/masks/y.png', 'label');
  assert.equal(rel(bySplit, findPairs(bySplit, 'train')), [['images/train/x.png', 'labels/train/x.png']]);
  assert.equal(rel(bySplit, findPairs(bySplit, 'val')), [['val/images/y.png', 'val/masks/y.png']]);
});

t('no pairs, missing folders and unlabelled images give errors that say what and where', async () => {
  const empty = join(dir, 'empty');
  await mkdir(empty);
  assert.throws(
    () => findPairs(empty),
    (e: unknown) => {
      const m = (e as Error).message;
      for (const want of [empty, 'Cityscapes (leftImg8bit/{split}/**/*_leftImg8bit.png with gtFine/{split}/**/*_gtFine_labelTrainIds.png)', 'CamVid-style (images/ + labels/', 'simple (images/ + masks/'])
        if (!m.includes(want)) throw new Error(`message ${JSON.stringify(m)} lacks ${JSON.stringify(want)}`);
      return true;
    },
  );
  assert.throws(() => findPairs(empty, 'train'), /split 'train'.*images\/train\/ \+ labels\/train\/, or train\/images\/ \+ train\/labels\//);
  assert.throws(() => findPairs(join(dir, 'missing')), /dataset folder .*missing does not exist/);
  await writeFile(join(dir, 'file.txt'), 'x');
  assert.throws(() => findPairs(join(dir, 'file.txt')), /file\.txt is a file, not a dataset folder/);
  assert.throws(() => findPairs(empty, '../etc'), /split must be a folder name/);

  const unmatched = join(dir, 'unmatched');
  await put(unmatched, 'images/a.png');
  await put(unmatched, 'images/b.png');
  await put(unmatched, 'labels/a.png', 'label');
  assert.throws(() => findPairs(unmatched), /1 of 2 images have no label map .*unmatched[/\\]images[/\\]b\.png/);
  const none = join(dir, 'no-names-match');
  await put(none, 'images/a.png');
  await put(none, 'labels/zzz.png', 'label');
  assert.throws(() => findPairs(none), /no image\/label pairs.*Found: CamVid-style folders .* \(1 images\) and .*labels, but no label file shares a base name/);
});

t('loadPair: RGB and ids; RGBA drops alpha; size mismatch names both files and sizes', async () => {
  const root = join(dir, 'load');
  await mkdir(join(root, 'images'), { recursive: true });
  await mkdir(join(root, 'labels'), { recursive: true });
  const rgba = new Uint8Array([10, 20, 30, 255, 40, 50, 60, 0]);
  await writeFile(join(root, 'images/p.png'), encodePng(rgba, 2, 1, 4));
  await writeFile(join(root, 'labels/p.png'), encodePng(new Uint8Array([13, 0]), 2, 1, 1));
  const [pair] = findPairs(root);
  const loaded = await loadPair(pair!);
  assert.equal([loaded.width, loaded.height], [2, 1]);
  assert.equal(Array.from(loaded.image), [10, 20, 30, 40, 50, 60]);
  assert.equal(Array.from(loaded.labels), [13, 0]);

  await writeFile(join(root, 'labels/p.png'), encodePng(new Uint8Array(6), 3, 2, 1));
  try {
    await loadPair(pair!);
    assert.unreachable('size mismatch accepted');
  } catch (e) {
    const m = (e as Error).message;
    assert.match(m, /label .*labels[/\\]p\.png is 3x2 but image .*images[/\\]p\.png is 2x1/);
  }
  await rm(join(root, 'labels/p.png'));
  try {
    await loadPair(pair!);
    assert.unreachable('missing label accepted');
  } catch (e) {
    assert.match((e as Error).message, /labels[/\\]p\.png: file not found/);
  }
});

t('writeSyntheticDataset + findPairs + loadPair reproduce generateScene exactly', async () => {
  const root = join(dir, 'synthetic');
  const [w, h] = [64, 32];
  await writeSyntheticDataset(root, 3, { width: w, height: h, split: 'val' });
  const pairs = findPairs(root, 'val');
  assert.equal(rel(root, pairs).map(([i]) => i), [
    'leftImg8bit/val/synthetic/000000_leftImg8bit.png',
    'leftImg8bit/val/synthetic/000001_leftImg8bit.png',
    'leftImg8bit/val/synthetic/000002_leftImg8bit.png',
  ]);
  const seeds = syntheticSeeds(3, 'val');
  for (const [i, pair] of pairs.entries()) {
    const want = generateScene(seeds[i]!, w, h);
    const got = await loadPair(pair);
    assert.equal([got.width, got.height], [w, h]);
    assert.ok(got.image.every((v, k) => v === want.image[k]), `image ${i} differs from generateScene(${seeds[i]})`);
    assert.ok(got.labels.every((v, k) => v === want.labels[k]), `labels ${i} differ from generateScene(${seeds[i]})`);
  }
  const leftovers = (await readdir(join(root, 'gtFine/val/synthetic'))).filter((f) => f.startsWith('.'));
  assert.equal(leftovers, []);
  // Zero scenes: the folders, and nothing in them.
  await writeSyntheticDataset(root, 0, { width: w, height: h, split: 'train' });
  assert.equal(await readdir(join(root, 'leftImg8bit/train/synthetic')), []);
});

t('writeSyntheticDataset refuses bad options before writing anything', async () => {
  const root = join(dir, 'synthetic-bad');
  for (const [count, opts, re] of [
    [2, { width: 0, height: 8, split: 'train' }, /opts\.width must be an integer in \[1, 8192\], got 0/],
    [2, { width: 8, height: 8, split: 'test' }, /opts\.split must be 'train' or 'val', got test/],
    [-1, { width: 8, height: 8, split: 'train' }, /count must be an integer/],
  ] as const) {
    try {
      await writeSyntheticDataset(root, count, opts as { width: number; height: number; split: 'train' });
      assert.unreachable('accepted');
    } catch (e) {
      assert.instance(e, RangeError);
      assert.match((e as Error).message, re);
    }
  }
  assert.not.ok(existsSync(root), 'folders were created for a refused call');
});

t.run();
