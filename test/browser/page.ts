/**
 * The headless-Chromium test page (bundled to dist/test-browser/page.js; the library comes from
 * /browser/canet-gpu.js). test/browser.test.ts drives it through `window.canetTests`: each entry
 * runs on the page's GPU, compares there, and returns a small summary.
 */
import { createEngine, loadModelBytes, rowPitchWords, Segmenter, TextureUsage, textureToTensor, type Sample } from '../../entry/browser.js';
import { TextureBlitter } from '../../web/blit.js';
import { runKernelChecks } from './kernel-checks.js';
import { twoTrainingSteps } from './train-run.js';
import { hashIds } from './hash.js';

const b64ToBytes = (s: string): Uint8Array => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

async function kernels(filter = '') {
  const e = await createEngine();
  try {
    return { adapter: e.adapter, results: await runKernelChecks(e, filter) };
  } finally {
    e.destroy();
  }
}

async function train(args: { images: string; labels: string; width: number; height: number }) {
  const images = b64ToBytes(args.images);
  const labels = b64ToBytes(args.labels);
  const n = labels.length / (args.width * args.height);
  const samples: Sample[] = Array.from({ length: n }, (_, i) => ({
    image: images.subarray(i * args.width * args.height * 3, (i + 1) * args.width * args.height * 3),
    labels: labels.subarray(i * args.width * args.height, (i + 1) * args.width * args.height),
    width: args.width,
    height: args.height,
  }));
  const e = await createEngine();
  const t0 = performance.now();
  try {
    return { losses: await twoTrainingSteps(e, samples), ms: performance.now() - t0 };
  } finally {
    e.destroy();
  }
}

/** State kept between the two halves of the embedding test (Node screenshots the canvas in between). */
let embedState: {
  device: GPUDevice;
  engine: Awaited<ReturnType<typeof createEngine>>;
  seg: Segmenter;
  bitmap: ImageBitmap;
  appTexture: GPUTexture;
  ids: Int32Array;
  blit: TextureBlitter;
  ctx: GPUCanvasContext;
  engineTexture: GPUTexture;
} | null = null;

/**
 * The embedding test and the CANet forward comparison in one (pipelines compile once per device,
 * the slow part on SwiftShader): the page makes its own device and a texture holding the sample,
 * hands both to the engine, checks the network input and class ids against Node's, and draws the
 * engine's colour texture (labels alone) on the canvas, which Node then screenshots.
 */
async function embedding(args: { nodeIds: string; nodeInput: string; netWidth: number; netHeight: number }) {
  const ms: Record<string, number> = {};
  let t = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    ms[name] = now - t;
    t = now;
  };
  const nodeIds = Int32Array.from(b64ToBytes(args.nodeIds));
  const nodeInputBytes = b64ToBytes(args.nodeInput);
  const nodeInput = new Float32Array(nodeInputBytes.buffer, nodeInputBytes.byteOffset, nodeInputBytes.byteLength / 4);
  const [nw, nh] = [args.netWidth, args.netHeight];

  // --- the application: its device (default limits, no optional features), its texture of the sample
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter in the page');
  const device = await adapter.requestDevice({ label: 'application device' });
  const bitmap = await createImageBitmap(await (await fetch('/weights/sample.png')).blob(), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const [sw, sh] = [bitmap.width, bitmap.height];
  const appTexture = device.createTexture({
    size: [sw, sh, 1],
    format: 'rgba8unorm',
    usage: TextureUsage.COPY_SRC | TextureUsage.COPY_DST | TextureUsage.TEXTURE_BINDING | TextureUsage.RENDER_ATTACHMENT,
    label: 'app sample',
  });
  device.queue.copyExternalImageToTexture({ source: bitmap }, { texture: appTexture }, [sw, sh, 1]);

  // --- the engine on the application's device
  const engine = await createEngine({ device });
  const { model } = loadModelBytes(engine, new Uint8Array(await (await fetch('/weights/demo.safetensors')).arrayBuffer()));
  model.eval();
  lap('load');

  const x = textureToTensor(engine, appTexture, { outWidth: nw, outHeight: nh });
  const input = (await x.read()) as Float32Array;
  let inputDiffering = 0;
  let inputMaxAbs = 0;
  for (let i = 0; i < input.length; i++) {
    const d = Math.abs(input[i]! - nodeInput[i]!);
    if (d > 0) inputDiffering++;
    inputMaxAbs = Math.max(inputMaxAbs, d);
  }
  const idsT = model.segment(x);
  const ids = (await idsT.read()) as Int32Array;
  idsT.dispose();
  lap('forward (first: compiles pipelines)');
  const differing: { pixel: number; node: number; page: number; margin: number }[] = [];
  for (let i = 0; i < ids.length; i++) if (ids[i] !== nodeIds[i]) differing.push({ pixel: i, node: nodeIds[i]!, page: ids[i]!, margin: NaN });
  if (differing.length) {
    // How close the two logits are where the runs disagree (an argmax tie shows a tiny gap).
    const logits = engine.noGrad(() => engine.scope(() => model.forward(x)));
    const l = (await logits.read()) as Float32Array;
    logits.dispose();
    const k = l.length / ids.length;
    for (const d of differing) d.margin = Math.abs(l[d.pixel * k + d.node]! - l[d.pixel * k + d.page]!);
  }
  x.dispose();

  // --- Segmenter: the application's texture in, a colour texture out, drawn on the canvas
  const seg = new Segmenter(model, { width: nw, height: nh });
  const frame = seg.segment(appTexture, { overlay: false, opacity: 1 });
  const segIds = (await frame.ids.read()) as Int32Array;
  let segVsDirect = 0;
  for (let i = 0; i < ids.length; i++) if (segIds[i] !== ids[i]) segVsDirect++;
  lap('segmenter frame (texture source)');
  const canvas = document.getElementById('gpu') as HTMLCanvasElement;
  canvas.width = sw;
  canvas.height = sh;
  const ctx = canvas.getContext('webgpu')!;
  const format = navigator.gpu.getPreferredCanvasFormat();
  ctx.configure({ device, format, alphaMode: 'opaque' });
  const blit = new TextureBlitter(device, format);
  await engine.flush();
  blit.draw(frame.texture, ctx.getCurrentTexture());
  await device.queue.onSubmittedWorkDone();
  lap('draw');
  embedState = { device, engine, seg, bitmap, appTexture, ids, blit, ctx, engineTexture: frame.texture };
  return { pixels: ids.length, pageHash: hashIds(ids), inputDiffering, inputMaxAbs, differing, segVsDirect, canvas: [canvas.width, canvas.height], format, ms };
}

/**
 * Second half: an ImageBitmap source, the overlay into an application texture, a texture the
 * engine must refuse, and engine.destroy() (its textures go; the application's device still draws
 * its own texture, now holding the overlay, on the canvas for Node's second screenshot).
 */
async function embeddingFinish() {
  const st = embedState;
  if (!st) throw new Error('embedding() has not run');
  embedState = null;
  const { device, engine, seg, bitmap, appTexture, ids, blit, ctx } = st;
  const [sw, sh] = [bitmap.width, bitmap.height];
  const frame2 = seg.segment(bitmap, { opacity: 0.5 });
  const extIds = (await frame2.ids.read()) as Int32Array;
  let externalVsDirect = 0;
  for (let i = 0; i < ids.length; i++) if (extIds[i] !== ids[i]) externalVsDirect++;
  const appTarget = device.createTexture({ size: [sw, sh, 1], format: 'bgra8unorm', usage: TextureUsage.COPY_DST | TextureUsage.TEXTURE_BINDING, label: 'app target' });
  const intoApp = seg.recolor({ target: appTarget, opacity: 0.5 });
  await engine.flush();

  const noCopy = device.createTexture({ size: [8, 8, 1], format: 'rgba8unorm', usage: TextureUsage.TEXTURE_BINDING, label: 'no-copy' });
  let noCopyError = '';
  try {
    seg.segment(noCopy);
  } catch (err) {
    noCopyError = (err as Error).message;
  }

  const ownedBefore = engine.ownedResources;
  engine.destroy();
  const ownedAfter = engine.ownedResources;
  device.pushErrorScope('validation');
  const probe = device.createBuffer({ size: rowPitchWords(sw) * 4 * sh, usage: 0x0008 });
  const enc = device.createCommandEncoder();
  enc.copyTextureToBuffer({ texture: st.engineTexture }, { buffer: probe, bytesPerRow: rowPitchWords(sw) * 4 }, [sw, sh, 1]);
  device.queue.submit([enc.finish()]);
  const destroyedError = (await device.popErrorScope())?.message ?? '';
  probe.destroy();
  device.pushErrorScope('validation');
  blit.draw(appTarget, ctx.getCurrentTexture());
  const appDrawError = (await device.popErrorScope())?.message ?? '';
  await device.queue.onSubmittedWorkDone();
  noCopy.destroy();
  // The canvas keeps showing the overlay; Node screenshots it, then calls embeddingCleanup.
  cleanup = () => {
    blit.destroy();
    for (const tex of [appTexture, appTarget]) tex.destroy();
    device.destroy();
  };
  return { externalVsDirect, intoAppFormat: intoApp.texture.format, noCopyError, ownedBefore, ownedAfter, destroyedError, appDrawError };
}

let cleanup: (() => void) | null = null;
async function embeddingCleanup() {
  cleanup?.();
  cleanup = null;
}

declare global {
  interface Window {
    canetTests?: { kernels: typeof kernels; train: typeof train; embedding: typeof embedding; embeddingFinish: typeof embeddingFinish; embeddingCleanup: typeof embeddingCleanup };
  }
}
window.canetTests = { kernels, train, embedding, embeddingFinish, embeddingCleanup };
document.body.dataset.ready = 'yes';
