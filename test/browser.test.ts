/**
 * Browsers: the ESM bundle (no Node built-ins, no dependencies), and headless Chromium through
 * playwright-core on a local server: the kernel checks in the page against float64 (the same
 * checks pass here in Node; most run cases of the Node tests' tables in test/cases/), CANet-MobileNetV2 on the demo weights for the sample image against
 * this process's Node run (class ids, network input), the embedding path (an application's device
 * and texture in, the engine's texture drawn to a canvas and read back), a training step's loss
 * against Node's, and the demo page (screenshot: docs/demo-web.png).
 *
 * Without Chromium (/usr/lib/chromium/chromium or /usr/bin/chromium, or CANET_CHROMIUM) the page
 * tests are counted as skipped ("skipped: chromium not installed"); `.ci/run` installs it.
 */
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { spawn } from 'node:child_process';
import { build } from 'esbuild';
import { colorize, generateScene, imageToTensor, loadModelBytes, overlay, type Engine } from '../entry/node.js';
import { PNG } from 'pngjs';
import { decodeImage, readImage } from '../data/image-io.js';
import { startServer, packageRoot, type WebServer } from '../web/server.js';
import { suite } from './harness.js';
import { browserPeerEngine } from './gpu.js';
import { runKernelChecks, type CheckResult } from './browser/kernel-checks.js';
import { TRAIN_SETUP, twoTrainingSteps } from './browser/train-run.js';
import { hashIds } from './browser/hash.js';

const t = suite('browser');
const root = packageRoot();

/**
 * Class ids of the page's run may differ from Node's at this many pixels of the network's map, and
 * only where the two top logits are within ARGMAX_TIE of each other. Both sides run SwiftShader,
 * but Chromium's and the webgpu package's Dawn/Tint/SwiftShader builds differ, so f32 results can
 * differ in the last bits; a pixel whose two best classes are that close may flip.
 */
const ALLOWED_ID_DIFFERENCES = 8;
const ARGMAX_TIE = 1e-3;
/** Relative difference allowed between the page's and Node's training losses (f32 sums in other orders). */
const LOSS_RTOL = 1e-4;

t('bundle: esbuild platform=browser builds it, and it imports no Node built-in and no package', async () => {
  const r = await build({
    entryPoints: [join(root, 'entry/browser.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    loader: { '.wgsl': 'text' },
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const text = r.outputFiles[0]!.text;
  const inputs = Object.keys(r.metafile.inputs);
  assert.equal(inputs.filter((f) => f.includes('node_modules')), [], 'no package is bundled (not webgpu, pngjs, jpeg-js)');
  assert.equal(inputs.filter((f) => /^(data\/(image-io|datasets)|weights\/(file|load-file)|engine\/device-node|cli\/)/.test(f)), [], 'no Node-only module');
  assert.not.match(text, /\bfrom\s*["'](node:)?(fs|path|os|url|child_process|worker_threads|async_hooks|crypto|zlib)(\/[a-z]+)?["']/);
  assert.not.match(text, /\brequire\s*\(/);
  assert.not.match(text, /["']node:/);
  // The shipped file is the same build.
  const shipped = readFileSync(join(root, 'dist/browser/canet-gpu.js'), 'utf8');
  assert.not.match(shipped, /["']node:|\brequire\s*\(/);
  console.log(`  bundle: dist/browser/canet-gpu.js ${(shipped.length / 1024).toFixed(0)} KiB, ${inputs.length} source files`);
  // The check can fail: the same options refuse a Node built-in.
  const bad = await build({ stdin: { contents: "import { readFileSync } from 'node:fs'; console.log(readFileSync);", resolveDir: root }, bundle: true, platform: 'browser', write: false, logLevel: 'silent' }).then(
    () => 'built',
    (e: Error) => e.message,
  );
  assert.match(bad, /node:fs/);
});

const CHROMIUM = process.env.CANET_CHROMIUM ?? ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));
const XVFB = ['/usr/bin/Xvfb'].find((p) => existsSync(p));
/**
 * BROWSER.md: the flag that gives a CPU adapter, and no traffic to the (closed) network. A WebGPU
 * *canvas* needs more: with no display the swap chain cannot cross to the compositor and the first
 * wait after drawing loses the device ("A valid external Instance reference no longer exists");
 * on an X display (Xvfb) with Vulkan compositing on SwiftShader it presents (measured here).
 */
const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist', '--enable-gpu',
];

/** Starts Xvfb on a display it picks itself (-displayfd), for the browser's canvas. */
async function startXvfb(bin: string): Promise<{ display: string; stop: () => void }> {
  const proc = spawn(bin, ['-displayfd', '3', '-screen', '0', '1280x1024x24', '-nolisten', 'tcp'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const display = await new Promise<string>((ok, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`Xvfb gave no display in 10 s: ${stderr}`)), 10_000);
    (proc.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) {
        clearTimeout(timer);
        ok(`:${out.trim()}`);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`Xvfb exited (${code}): ${stderr}`));
    });
  });
  return { display, stop: () => void proc.kill() };
}

type PlaywrightBrowser = import('playwright-core').Browser;
type PlaywrightPage = import('playwright-core').Page;

/** page.evaluate has no timeout of its own. */
function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer from the page in ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

/** Nearest resize of class ids, as the CLI and the colorize kernel do. */
function nearestIds(ids: ArrayLike<number>, w: number, h: number, ow: number, oh: number): Int32Array {
  const out = new Int32Array(ow * oh);
  for (let y = 0; y < oh; y++) {
    const sy = Math.min(h - 1, Math.floor(((y + 0.5) * h) / oh));
    for (let x = 0; x < ow; x++) out[y * ow + x] = ids[sy * w + Math.min(w - 1, Math.floor(((x + 0.5) * w) / ow))]!;
  }
  return out;
}

/** Pixels whose r, g or b differ by more than `tol` levels (alpha ignored: the canvas is opaque). */
function countDiffering(a: Uint8Array, b: Uint8Array, tol: number): number {
  let n = 0;
  for (let i = 0; i < a.length; i += 4) if (Math.abs(a[i]! - b[i]!) > tol || Math.abs(a[i + 1]! - b[i + 1]!) > tol || Math.abs(a[i + 2]! - b[i + 2]!) > tol) n++;
  return n;
}

/** The test page's canvas as the browser shows it (a screenshot of the element, 1 CSS pixel = 1 pixel). */
async function canvasShot(page: PlaywrightPage, w: number, h: number): Promise<Uint8Array> {
  const png = PNG.sync.read(await page.locator('#gpu').screenshot());
  if (png.width !== w || png.height !== h) throw new Error(`canvas screenshot is ${png.width}x${png.height}, expected ${w}x${h}`);
  return new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength);
}

const b64 = (a: ArrayBufferView): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

const missing = !CHROMIUM ? 'chromium' : !XVFB ? 'xvfb' : null;
if (missing) {
  console.log(`browser: skipped: ${missing} not installed (apt-get install -y chromium xvfb; .ci/run does it)`);
  for (const name of ['kernel checks in the page', 'CANet forward and embedding in the page', 'training step in the page', 'demo page']) t.skip(`${name} (skipped: ${missing} not installed)`);
} else {
  let server: WebServer | null = null;
  let browser: PlaywrightBrowser | null = null;
  let page: PlaywrightPage | null = null;
  let xvfb: { display: string; stop: () => void } | null = null;
  const pageErrors: string[] = [];
  let nodeEngine: Engine;

  const close = async (): Promise<void> => {
    await browser?.close().catch(() => {});
    await server?.close().catch(() => {});
    xvfb?.stop();
    browser = null;
    server = null;
    xvfb = null;
  };

  t.before(async () => {
    try {
      nodeEngine = await browserPeerEngine();
      const t0 = Date.now();
      server = await startServer({ root, tests: true });
      const { chromium } = await import('playwright-core');
      xvfb = await startXvfb(XVFB!);
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000, env: { ...process.env, DISPLAY: xvfb.display } });
      page = await browser.newPage();
      page.on('pageerror', (e) => pageErrors.push(e.message));
      page.on('console', (m) => void (m.type() === 'error' && pageErrors.push(m.text())));
      await page.goto(`${server.url}/test/page.html`);
      await page.waitForFunction(() => document.body.dataset.ready === 'yes', null, { timeout: 30_000 });
      console.log(`  browser: ${browser.version()} on ${server.url}, ready in ${Date.now() - t0} ms`);
    } catch (e) {
      await close();
      throw e;
    }
  });
  t.after(close);

  const evaluate = <A, R>(what: string, ms: number, fn: (arg: A) => Promise<R>, arg: A): Promise<R> => {
    if (!page) throw new Error('no page (start-up failed)');
    return within(ms, what, page.evaluate(fn as (arg: unknown) => Promise<R>, arg)).catch((e: Error) => {
      throw new Error(`${e.message}${pageErrors.length ? `\n  page errors: ${pageErrors.join('\n  ')}` : ''}`);
    });
  };

  t('kernel checks in the page match float64 with the Node tests\' tolerances (and pass in Node)', async () => {
    const node = await runKernelChecks(nodeEngine);
    const t0 = Date.now();
    const inPage = await evaluate('kernel checks', 120_000, () => window.canetTests!.kernels(), undefined);
    const fmt = (r: CheckResult | undefined) => (r ? (r.ok ? r.maxErr.toExponential(1) : 'FAIL') : '-');
    console.log(`  kernel checks in ${Date.now() - t0} ms on ${inPage.adapter.vendor} ${inPage.adapter.architecture} (page) | max rel error page / node | tolerance`);
    for (const r of inPage.results) console.log(`    ${r.ok ? 'ok  ' : 'FAIL'} ${r.name}: ${fmt(r)} / ${fmt(node.find((n) => n.name === r.name))} | ${r.tol} (${r.ms.toFixed(0)} ms)`);
    assert.is(inPage.results.length, node.length, 'the same checks ran');
    assert.ok(inPage.results.length >= 10, 'conv2d fwd/bwd, depthwise, conv-transpose, batchnorm training/inference fwd and bwd, FCA, loss, optimizers');
    for (const r of node) assert.ok(r.ok, `Node: ${r.name}: ${r.error}`);
    for (const r of inPage.results) assert.ok(r.ok, `page: ${r.name}: ${r.error}`);
  });

  t('CANet-MobileNetV2 demo weights on the sample, on the page\'s own device: input and class ids match Node; engine texture drawn to a canvas', async () => {
    // Node's run: what `npm start` does (bytes -> imageToTensor -> segment at the demo size).
    const bytes = readFileSync(join(root, 'weights/demo.safetensors'));
    const { model, config } = loadModelBytes(nodeEngine, bytes);
    model.eval();
    const [nw, nh] = config.inputSize ?? [128, 64];
    const img = await readImage(join(root, 'weights/sample.png'));
    const { input, ids } = await nodeEngine.scope(async () => {
      const x = imageToTensor(nodeEngine, img, { outWidth: nw, outHeight: nh });
      const input = (await x.read()) as Float32Array;
      const ids = (await model.segment(x).read()) as Int32Array;
      return { input, ids };
    });
    model.dispose();
    const t0 = Date.now();
    const r = await evaluate('CANet embedding', 240_000, (a) => window.canetTests!.embedding(a), { nodeIds: b64(Uint8Array.from(ids)), nodeInput: b64(input), netWidth: nw, netHeight: nh });
    const ms = Object.entries(r.ms).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(', ');
    console.log(`  CANet in the page (${Date.now() - t0} ms: ${ms})`);
    console.log(`    ids: node ${hashIds(ids)} page ${r.pageHash}; ${r.differing.length} of ${r.pixels} pixels differ (allowed ${ALLOWED_ID_DIFFERENCES}, top-2 logit gap < ${ARGMAX_TIE})${r.differing.map((d) => `\n      pixel ${d.pixel}: node ${d.node}, page ${d.page}, logit gap ${d.margin.toExponential(1)}`).join('')}`);
    console.log(`    network input: ${r.inputDiffering} of ${input.length} floats differ (max ${r.inputMaxAbs})`);
    assert.is(r.inputDiffering, 0, 'texture -> tensor in the page equals imageToTensor of the PNG bytes in Node, bit for bit');
    assert.ok(r.differing.length <= ALLOWED_ID_DIFFERENCES, `${r.differing.length} pixels differ`);
    for (const d of r.differing) assert.ok(d.margin < ARGMAX_TIE, `pixel ${d.pixel} differs with a logit gap of ${d.margin}: not a tie`);
    assert.is(r.segVsDirect, 0, 'Segmenter (texture source) = textureToTensor + segment');

    // The canvas as displayed: the engine's label texture, drawn by the page with its own pipeline.
    const [sw, sh] = r.canvas as [number, number];
    const idsUp = nearestIds(ids, nw, nh, sw, sh);
    const shown = await canvasShot(page!, sw, sh);
    const labels = colorize(idsUp, sw, sh);
    const wrong = countDiffering(shown, labels, 0);
    const mayDiffer = r.differing.length * Math.ceil(sw / nw) * Math.ceil(sh / nh);
    console.log(`    canvas (${r.format}): ${wrong} of ${sw * sh} pixels are not the palette colour of Node's class id (allowed ${mayDiffer})`);
    assert.ok(wrong <= mayDiffer, `${wrong} canvas pixels show another colour`);

    const f = await evaluate('embedding, second half', 60_000, () => window.canetTests!.embeddingFinish(), undefined);
    const overlaid = await canvasShot(page!, sw, sh);
    await evaluate('embedding cleanup', 10_000, () => window.canetTests!.embeddingCleanup(), undefined);
    const rgba = new Uint8Array(sw * sh * 4);
    for (let i = 0; i < sw * sh; i++) rgba.set([img.data[3 * i]!, img.data[3 * i + 1]!, img.data[3 * i + 2]!, 255], 4 * i);
    const wantOverlay = overlay(rgba, labels, 0.5);
    const overlayWrong = countDiffering(overlaid, wantOverlay, 1);
    console.log(`    overlay drawn from the app's bgra8unorm texture after engine.destroy(): ${overlayWrong} pixels off by more than 1 level from engine/palette.ts overlay`);
    assert.is(f.externalVsDirect, 0, 'Segmenter with an ImageBitmap (copyExternalImageToTexture) gives the same ids');
    assert.is(f.intoAppFormat, 'bgra8unorm');
    assert.ok(overlayWrong <= mayDiffer, `${overlayWrong} overlay pixels wrong`);
    assert.match(f.noCopyError, /texture 'no-copy' \(rgba8unorm, 8x8\) lacks GPUTextureUsage.COPY_SRC/);
    assert.is(f.ownedBefore, 2, 'the Segmenter held an input and an output texture');
    assert.is(f.ownedAfter, 0, 'engine.destroy() freed them');
    assert.match(f.destroyedError, /destroyed/i, 'the engine texture is destroyed');
    assert.is(f.appDrawError, '', 'the application device still draws after engine.destroy()');
  });

  t('training step in the page: CANet (width 0.25) on the same batch, losses of two SGD steps match Node', async () => {
    const scenes = TRAIN_SETUP.seeds.map((s) => generateScene(s, TRAIN_SETUP.width, TRAIN_SETUP.height));
    const samples = scenes.map((s) => ({ image: s.image, labels: s.labels, width: TRAIN_SETUP.width, height: TRAIN_SETUP.height }));
    const node = await twoTrainingSteps(nodeEngine, samples);
    const images = new Uint8Array(scenes.flatMap((s) => Array.from(s.image)));
    const labels = new Uint8Array(scenes.flatMap((s) => Array.from(s.labels)));
    const r = await evaluate('training step', 180_000, (a) => window.canetTests!.train(a), { images: b64(images), labels: b64(labels), width: TRAIN_SETUP.width, height: TRAIN_SETUP.height });
    const rel = r.losses.map((l, i) => Math.abs(l - node[i]!) / Math.abs(node[i]!));
    console.log(`  training (${r.ms.toFixed(0)} ms in the page): losses page [${r.losses.map((l) => l.toPrecision(8))}] node [${node.map((l) => l.toPrecision(8))}], relative difference [${rel.map((v) => v.toExponential(1))}] (allowed ${LOSS_RTOL})`);
    assert.ok(node[1]! < node[0]!, 'the step lowers the loss');
    for (const v of rel) assert.ok(v <= LOSS_RTOL, `loss differs by ${v}`);
  });

  t('demo page: segments the sample, overlay and legend drawn, timings and adapter shown; screenshot docs/demo-web.png', async () => {
    const demo = await browser!.newPage({ viewport: { width: 600, height: 600 } });
    try {
      const errors: string[] = [];
      demo.on('pageerror', (e) => errors.push(e.message));
      await demo.goto(`${server!.url}/web/`);
      await demo.waitForFunction(() => document.body.dataset.state !== 'loading', null, { timeout: 120_000 });
      const state = await demo.evaluate(() => ({
        state: document.body.dataset.state,
        message: document.getElementById('message')!.textContent,
        adapter: document.getElementById('adapter')!.textContent,
        timing: document.getElementById('timing')!.textContent,
        legend: Array.from(document.querySelectorAll('#legend li'), (li) => li.textContent),
        canvas: [(document.getElementById('view') as HTMLCanvasElement).width, (document.getElementById('view') as HTMLCanvasElement).height],
      }));
      console.log(`  demo: ${state.adapter}; ${state.timing}; legend ${state.legend.slice(0, 4).join(', ')}…`);
      assert.is(state.state, 'ready', `${state.message} ${errors.join(' ')}`);
      assert.match(state.adapter!, /swiftshader|google|Adapter: \S/i);
      const [dw, dh] = (JSON.parse(readFileSync(join(root, 'weights', 'demo.json'), 'utf8')) as { inputSize: [number, number] }).inputSize;
      assert.match(state.timing!, new RegExp(`sample\\.png: 512x256, network at ${dw}x${dh}: segment \\d+ ms`));
      assert.ok(state.legend.some((l) => /^road \d/.test(l!)), `legend: ${state.legend.join(', ')}`);
      assert.equal(state.canvas, [512, 256]);
      // The slider recolours without running the network (a render only), and the canvas shows
      // it at once: at 0 the photo alone, at 100 the labels alone (it used to change nothing
      // until the next frame was segmented).
      // The canvas at its own size (1 CSS pixel = 1 pixel) while its pixels are compared.
      const natural = await demo.addStyleTag({ content: '#view { width: 512px !important; height: 256px !important; }' });
      const view = async (): Promise<Uint8Array> => {
        const p = PNG.sync.read(await demo.locator('#view').screenshot());
        // The element's box can round up to 257 rows at a fractional offset: the first 256 are the canvas.
        assert.ok(p.width === 512 && p.height >= 256 && p.height <= 257, `canvas screenshot is ${p.width}x${p.height}`);
        return new Uint8Array(p.data.buffer, p.data.byteOffset, 512 * 256 * 4);
      };
      const slide = async (v: number): Promise<Uint8Array> => {
        await demo.locator('#opacity').fill(String(v));
        await demo.waitForFunction((want) => document.getElementById('opacity-value')!.textContent === `${want}%`, v);
        await demo.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
        return view();
      };
      const photo = decodeImage(readFileSync(join(root, 'weights', 'sample.png')));
      const photoRgba = new Uint8Array(512 * 256 * 4);
      for (let i = 0; i < 512 * 256; i++) for (let c = 0; c < 4; c++) photoRgba[4 * i + c] = c < 3 ? photo.data[photo.channels * i + c]! : 255;
      const clear = await slide(0);
      const full = await slide(100);
      const photoOff = countDiffering(clear, photoRgba, 3);
      const changed = countDiffering(clear, full, 8);
      console.log(`  demo slider: at 0, ${photoOff} of ${512 * 256} pixels differ from the photo; 0 -> 100 changed ${changed}`);
      assert.ok(photoOff < 512 * 256 * 0.01, `opacity 0 shows the photo (${photoOff} pixels differ)`);
      assert.ok(changed > 512 * 256 * 0.5, `moving the slider changed ${changed} pixels`);
      await slide(55);
      await natural.evaluate((el) => (el as Element).remove());
      // out/demo-web.png every run; the committed docs/demo-web.png only when asked (or missing),
      // so a test run leaves the work tree clean.
      const docsShot = join(root, 'docs/demo-web.png');
      const shotPath = process.env.CANET_UPDATE_SCREENSHOT === '1' || !existsSync(docsShot) ? docsShot : join(root, 'out/demo-web.png');
      mkdirSync(dirname(shotPath), { recursive: true });
      const png = await demo.locator('main').screenshot({ path: shotPath });
      console.log(`  demo screenshot: ${shotPath.slice(root.length + 1)} (${(png.length / 1024).toFixed(0)} KiB; CANET_UPDATE_SCREENSHOT=1 updates docs/demo-web.png)`);
      const shot = PNG.sync.read(png);
      const { data } = shot;
      // The overlay is drawn: the canvas area holds the road colour blended over the photo.
      let colourful = 0;
      for (let i = 0; i < data.length; i += 4) if (Math.max(data[i]!, data[i + 1]!, data[i + 2]!) - Math.min(data[i]!, data[i + 1]!, data[i + 2]!) > 40) colourful++;
      assert.ok(colourful > (shot.width * shot.height) / 10, `the screenshot shows the coloured overlay (${colourful} saturated pixels)`);
      assert.equal(errors, []);
      // A file the browser cannot decode: the banner names it; the next good frame clears it.
      await demo.locator('#file').setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not an image') });
      await demo.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: 30_000 });
      assert.match((await demo.locator('#message').textContent())!, /Could not segment notes\.png: the browser cannot decode it/);
      await demo.locator('#sample').click();
      await demo.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 60_000 });
      assert.is(await demo.locator('#message').isVisible(), false, 'the error banner stays after a good frame');
      assert.equal(errors, []);
      // Without WebGPU the page says so instead of failing silently, and offers nothing to click.
      const bare = await browser!.newPage();
      await bare.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
      await bare.goto(`${server!.url}/web/`);
      await bare.waitForFunction(() => document.body.dataset.state !== 'loading', null, { timeout: 20_000 });
      const msg = await bare.evaluate(() => [document.body.dataset.state, document.getElementById('message')!.textContent]);
      assert.equal(msg[0], 'nogpu');
      assert.match(msg[1]!, /no WebGPU \(navigator\.gpu is missing\)/);
      const enabled = await bare.evaluate(() => Array.from(document.querySelectorAll<HTMLButtonElement | HTMLInputElement>('#controls button, #controls input')).filter((c) => !c.disabled).map((c) => c.id));
      assert.equal(enabled, [], 'controls left enabled without WebGPU');
      await bare.close();
    } finally {
      await demo.close();
    }
  });
}

t.run();
