/**
 * The fine-tuning page (web/finetune.html) in headless Chromium on SwiftShader, driven as a user
 * would: brush strokes with the mouse on the sample (a class picked from the palette, a bigger
 * brush, an undo), "Train" for a few steps with the backbone frozen, then "Download weights".
 * Checks: the loss falls, the share of labelled pixels segmented as labelled rises, the downloaded
 * file loads in Node (loadModelBytes) and segments the sample to the page's class ids; "Stop" ends
 * a long run within a step or two; a hidden page pauses and resumes; pagehide frees the engine.
 * Screenshot: docs/finetune.png (written when missing or with CANET_UPDATE_SCREENSHOT=1).
 *
 * Without Chromium (/usr/lib/chromium/chromium or /usr/bin/chromium, or CANET_CHROMIUM) the test is
 * counted as skipped. The page draws with a 2D canvas, so no X display is needed.
 */
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { PNG } from 'pngjs';
import { dirname, join } from 'node:path';
import { imageToTensor, loadModelBytes } from '../entry/node.js';
import { readImage } from '../data/image-io.js';
import { startServer, packageRoot, type WebServer } from '../web/server.js';
import { suite } from './harness.js';
import { browserPeerEngine } from './gpu.js';

const t = suite('browser-finetune');
const root = packageRoot();
const CHROMIUM = process.env.CANET_CHROMIUM ?? ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));
/** BROWSER.md: the flag that gives a CPU adapter, and no traffic to the (closed) network. */
const CHROMIUM_ARGS = ['--enable-unsafe-webgpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // Chromium's own test camera (a moving pattern) with the permission granted, for the webcam frames.
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];
/** Training steps the test runs (frozen backbone: a few hundred ms each here). */
const STEPS = 12;
/** Training crop: half the network's 256x128 (a quarter of the work per step; the test is about the loop, not the resolution). */
const TRAIN_SIZE = '128x64';
/**
 * Class ids of the page may differ from Node's at this many pixels, as in browser.test.ts: both
 * run SwiftShader, but Chromium's and the webgpu package's Dawn/Tint builds may round f32 sums
 * differently, so a pixel whose two best logits are that close may flip. (The page's frame comes
 * from a 2D canvas's getImageData; Node decodes the PNG itself.)
 */
const ALLOWED_ID_DIFFERENCES = 8;

interface PageHooks {
  losses(): number[];
  accuracy(): { labelled: number; correct: number } | null;
  ids(): string | null;
  network: [number, number];
  liveTensors(): number;
  closed(): boolean;
}
declare global {
  interface Window {
    finetunePage?: PageHooks;
  }
}

/** The screenshot with 4 bits per channel and no alpha: a photo-heavy page shot at half the bytes. */
function posterize(png: Buffer): Buffer {
  const src = PNG.sync.read(png);
  const out = new PNG({ width: src.width, height: src.height });
  for (let i = 0; i < src.data.length; i++) out.data[i] = i % 4 === 3 ? 255 : (src.data[i]! & 0xf0) | 8;
  return PNG.sync.write(out, { deflateLevel: 9, colorType: 2 });
}

function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer from the page in ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

if (!CHROMIUM) {
  console.log('browser-finetune: skipped: chromium not installed (apt-get install -y chromium; .ci/run does it)');
  t.skip('fine-tuning page (skipped: chromium not installed)');
} else {
  t('fine-tuning page: paint, train, loss falls and labelled accuracy rises; the downloaded weights give the page\'s ids in Node; stop, pause, webcam and file frames, pagehide', async () => {
    const t0 = Date.now();
    const server: WebServer = await startServer({ root });
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
    const errors: string[] = [];
    try {
      const page = await browser.newPage({ viewport: { width: 620, height: 1000 }, acceptDownloads: true });
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
      const hooks = <R>(what: string, fn: (h: PageHooks) => R, ms = 10_000): Promise<R> =>
        within(ms, what, page.evaluate(`(${fn.toString()})(window.finetunePage)`) as Promise<R>);
      const waitState = async (state: string, ms: number): Promise<void> => {
        await page.waitForFunction((s) => document.body.dataset.state === s || document.body.dataset.state === 'error', state, { timeout: ms });
        const [got, msg] = await page.evaluate(() => [document.body.dataset.state, document.getElementById('message')!.textContent]);
        assert.is(got, state, `${msg} ${errors.join(' ')}`);
      };
      await page.goto(`${server.url}/web/finetune.html?steps=${STEPS}&preview=4&train=${TRAIN_SIZE}`);
      await waitState('ready', 60_000);
      const tReady = Date.now();
      const [nw, nh] = await hooks('network size', (h) => h.network);

      // ---- paint as a user: pick a class, drag; a stroke undone; the eraser on part of one
      const box = (await page.locator('#view').boundingBox())!;
      const toPage = (x: number, y: number): [number, number] => [box.x + (x / 512) * box.width, box.y + (y / 256) * box.height];
      const drag = async (pts: [number, number][]): Promise<void> => {
        await page.mouse.move(...toPage(...pts[0]!));
        await page.mouse.down();
        for (const p of pts.slice(1)) await page.mouse.move(...toPage(...p), { steps: 6 });
        await page.mouse.up();
      };
      await page.locator('#brush').fill('14');
      await page.locator('#palette [data-class="1"]').click(); // sidewalk, over the road at the bottom left
      await drag([[20, 236], [230, 236], [230, 222], [20, 222]]);
      await page.locator('#palette [data-class="10"]').click(); // sky, where it is sky
      await drag([[215, 12], [300, 12], [300, 40]]);
      await page.locator('#palette [data-class="13"]').click(); // car, on the truck: undone below
      await drag([[120, 70], [170, 70]]);
      const beforeUndo = await hooks('labelled pixels', (h) => h.accuracy()!.labelled);
      await page.locator('#undo').click();
      await page.locator('#eraser').click();
      await drag([[20, 236], [40, 236]]);
      const before = (await hooks('accuracy before', (h) => h.accuracy()))!;
      console.log(`  painted ${before.labelled} pixels (${beforeUndo} before the undo); ${((100 * before.correct) / before.labelled).toFixed(1)}% segmented as labelled before training`);
      assert.ok(before.labelled > 4000 && before.labelled < beforeUndo, 'the strokes, the undo and the eraser changed the labels');

      // ---- train
      await page.locator('#go').click();
      await waitState('training', 5_000);
      await waitState('ready', 120_000);
      const tTrained = Date.now();
      const losses = await hooks('losses', (h) => h.losses());
      const after = (await hooks('accuracy after', (h) => h.accuracy()))!;
      const progress = await page.locator('#progress').textContent();
      console.log(`  ${progress}`);
      console.log(`  losses ${losses.map((l) => l.toFixed(3)).join(' ')}; ${((100 * after.correct) / after.labelled).toFixed(1)}% of the labelled pixels segmented as labelled after ${STEPS} steps`);
      assert.is(losses.length, STEPS);
      const head = (losses[0]! + losses[1]!) / 2;
      const tail = (losses[STEPS - 2]! + losses[STEPS - 1]!) / 2;
      assert.ok(tail < 0.6 * head, `loss ${head.toFixed(3)} -> ${tail.toFixed(3)}: fell by less than 40%`);
      assert.is(after.labelled, before.labelled);
      assert.ok(after.correct / after.labelled > before.correct / before.labelled + 0.2, 'labelled accuracy rose by at least 20 points');

      // ---- download, and the same ids in Node from the file
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.locator('#download').click()]);
      const bytes = readFileSync((await download.path())!);
      const pageIds = Uint8Array.from(Buffer.from((await hooks('ids', (h) => h.ids()))!, 'base64'));
      const e = await browserPeerEngine();
      const { model, config } = loadModelBytes(e, bytes);
      let differing = 0;
      try {
        model.eval();
        assert.equal(config.inputSize, [nw, nh]);
        const img = await readImage(join(root, 'weights/sample.png'));
        const out = e.scope(() => model.segment(imageToTensor(e, img, { outWidth: nw, outHeight: nh })));
        const ids = (await out.read()) as Int32Array;
        out.dispose();
        for (let i = 0; i < ids.length; i++) if (ids[i] !== pageIds[i]) differing++;
      } finally {
        model.dispose();
      }
      console.log(`  downloaded ${download.suggestedFilename()} (${(bytes.length / 2 ** 20).toFixed(2)} MB): Node's ids differ from the page's at ${differing} of ${nw * nh} pixels (allowed ${ALLOWED_ID_DIFFERENCES})`);
      assert.is(download.suggestedFilename(), 'canet-finetuned.safetensors');
      assert.ok(differing <= ALLOWED_ID_DIFFERENCES, `${differing} pixels differ`);

      // ---- screenshot (docs/finetune.png only when asked or missing, so a run leaves the tree clean)
      const docsShot = join(root, 'docs/finetune.png');
      const shotPath = process.env.CANET_UPDATE_SCREENSHOT === '1' || !existsSync(docsShot) ? docsShot : join(root, 'out/finetune.png');
      mkdirSync(dirname(shotPath), { recursive: true });
      const png = posterize(await page.locator('main').screenshot());
      writeFileSync(shotPath, png);
      console.log(`  screenshot: ${shotPath.slice(root.length + 1)} (${(png.length / 1024).toFixed(0)} KiB, 4 bits per channel)`);
      assert.ok(png.length < 150 * 1024, 'the screenshot stays under 150 KiB');

      // ---- stop: a long run ends within a couple of steps of the click
      await page.locator('#steps').fill('1000');
      await page.locator('#go').click();
      await page.waitForFunction((n) => window.finetunePage!.losses().length >= n + 2, STEPS, { timeout: 30_000 });
      // ---- hidden: no step while hidden, steps again once shown
      const setHidden = (hidden: boolean) =>
        page.evaluate((v) => {
          Object.defineProperty(document, 'hidden', { configurable: true, get: () => v });
          document.dispatchEvent(new Event('visibilitychange'));
        }, hidden);
      await setHidden(true);
      await page.waitForFunction(() => / \(paused/.test(document.getElementById('progress')!.textContent!), null, { timeout: 10_000 });
      const pausedAt = (await hooks('losses', (h) => h.losses())).length;
      await page.waitForTimeout(1500);
      const stillAt = (await hooks('losses', (h) => h.losses())).length;
      await setHidden(false);
      await page.waitForFunction((n) => window.finetunePage!.losses().length > n, stillAt, { timeout: 15_000 });
      const clickedAt = (await hooks('losses', (h) => h.losses())).length;
      await page.locator('#stop').click();
      await waitState('ready', 30_000);
      const stoppedAt = (await hooks('losses', (h) => h.losses())).length;
      const stopText = await page.locator('#progress').textContent();
      console.log(`  paused at step ${pausedAt - STEPS} (still ${stillAt - STEPS} 1.5 s later), resumed; stop clicked at step ${clickedAt - STEPS}, stopped at ${stoppedAt - STEPS}: ${stopText}`);
      assert.is(stillAt, pausedAt, 'no step while the page is hidden');
      assert.ok(stoppedAt - clickedAt <= 2, 'stopped within two steps of the click');
      assert.match(stopText!, /^stopped after \d+ steps/);

      // ---- more frames: a webcam grab (Chromium's fake camera) and an image file; each is segmented and selected
      const frameCount = () => page.locator('#frames button').count();
      await page.locator('#webcam').click();
      await page.locator('#grab').waitFor({ state: 'visible', timeout: 10_000 });
      await page.locator('#grab').click();
      await page.waitForFunction(() => /^webcam 1: \d+x\d+, network at .*paint some/.test(document.getElementById('caption')!.textContent!), null, { timeout: 20_000 });
      await page.locator('#file').setInputFiles(join(root, 'weights/sample.png'));
      await page.waitForFunction(() => document.querySelectorAll('#frames button').length === 3 && /^sample\.png/.test(document.getElementById('caption')!.textContent!), null, { timeout: 20_000 });
      const captionFile = await page.locator('#caption').textContent();
      console.log(`  frames: ${await frameCount()}; last: ${captionFile}`);
      assert.match(captionFile!, /^sample\.png: 512x256, network at \d+x\d+; 0 labelled pixels: paint some$/);

      // ---- leaving the page frees the engine
      const live = await hooks('live tensors', (h) => h.liveTensors());
      await page.evaluate(() => dispatchEvent(new PageTransitionEvent('pagehide')));
      const closed = await hooks('closed', (h) => h.closed());
      const state = await page.evaluate(() => document.body.dataset.state);
      console.log(`  pagehide: ${live} live tensors before, engine destroyed: ${closed}, page state ${state}`);
      assert.ok(closed);
      assert.is(state, 'closed');
      assert.equal(errors, []);
      console.log(`  timings: page ready ${tReady - t0} ms, painting + ${STEPS} steps ${tTrained - tReady} ms, total ${Date.now() - t0} ms`);
    } finally {
      await browser.close().catch(() => {});
      await server.close().catch(() => {});
    }
  }, { timeoutMs: 240_000 });
}

t.run();
