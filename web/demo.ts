/**
 * The demo page: the engine on navigator.gpu, the demo weights fetched from this origin, and a
 * Segmenter turning the chosen image, the sample or webcam frames into an overlay texture drawn on
 * the canvas. The opacity slider recolours the last frame without running the network again.
 * Bundled to dist/web/demo.js; the library itself comes from /browser/canet-gpu.js.
 */
import { loadModelBytes, Segmenter, CLASS_NAMES, PALETTE, type Engine, type FrameSource, type SegmentedFrame } from '../entry/browser.js';
import { adapterLabel, openPageEngine } from './page-engine.js';
import { TextureBlitter } from './blit.js';

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const message = $<HTMLParagraphElement>('message');
const canvas = $<HTMLCanvasElement>('view');
const timing = $<HTMLElement>('timing');
const opacityInput = $<HTMLInputElement>('opacity');

/** Largest side of a chosen image we colour at full size (larger ones are scaled on decode). */
const MAX_SIDE = 1280;

/** The controls that start work: disabled until the engine and weights are ready, and for good without WebGPU. */
const controls = (): (HTMLButtonElement | HTMLInputElement)[] => Array.from(document.querySelectorAll<HTMLButtonElement | HTMLInputElement>('#controls button, #controls input'));
const enableControls = (on: boolean): void => controls().forEach((c) => (c.disabled = !on));

function fail(state: 'nogpu' | 'error', text: string): void {
  document.body.dataset.state = state;
  message.textContent = text;
  // Without a usable GPU nothing on the page can work: say so and offer nothing to click.
  if (state === 'nogpu') enableControls(false);
}

interface DemoConfig {
  inputSize?: [number, number];
  classNames?: string[];
}

async function main(): Promise<void> {
  enableControls(false);
  const opened = await openPageEngine('so the demo cannot run', (message) => fail('nogpu', message));
  if (!opened) return;
  const engine: Engine = opened; // (narrowed for the functions declared below)
  $('adapter').textContent = adapterLabel(engine, 'software: expect CPU speeds');

  const [bytes, config] = await Promise.all([
    fetch('/weights/demo.safetensors').then((r) => (r.ok ? r.arrayBuffer() : Promise.reject(new Error(`GET /weights/demo.safetensors: HTTP ${r.status}`)))),
    fetch('/weights/demo.json').then((r) => (r.ok ? (r.json() as Promise<DemoConfig>) : ({} as DemoConfig))),
  ]);
  const { model, config: fileConfig } = loadModelBytes(engine, bytes); // in eval mode
  const [nw, nh] = fileConfig.inputSize ?? config.inputSize ?? [128, 64];
  $('netsize').textContent = `${nw}x${nh}`;
  const names = config.classNames ?? [...CLASS_NAMES];
  const seg = new Segmenter(model, { width: nw, height: nh });

  const format = navigator.gpu.getPreferredCanvasFormat();
  const ctx = canvas.getContext('webgpu');
  if (!ctx) throw new Error('the canvas gave no webgpu context');
  ctx.configure({ device: engine.device, format, alphaMode: 'opaque' });
  const blit = new TextureBlitter(engine.device, format);
  let frames = 0;

  const opacity = (): number => Number(opacityInput.value) / 100;

  function draw(frame: SegmentedFrame): void {
    if (canvas.width !== frame.width || canvas.height !== frame.height) {
      canvas.width = frame.width;
      canvas.height = frame.height;
    }
    blit.draw(frame.texture, ctx!.getCurrentTexture());
  }

  async function legend(frame: SegmentedFrame): Promise<void> {
    // The ids are tiny (the network size): reading them back for the legend costs nothing.
    const ids = await frame.ids.readInt32();
    const counts = new Map<number, number>();
    for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
    const items = [...counts].filter(([id]) => id >= 0 && id < PALETTE.length).sort((x, y) => y[1] - x[1]);
    $('legend').replaceChildren(
      ...items.map(([id, n]) => {
        const li = document.createElement('li');
        const sw = document.createElement('i');
        sw.style.background = `rgb(${PALETTE[id]!.join(',')})`;
        const pct = (100 * n) / ids.length;
        li.append(sw, `${names[id] ?? `class ${id}`} ${pct < 0.1 ? '<0.1' : pct.toFixed(1)}%`);
        return li;
      }),
    );
  }

  /** Runs one frame; returns the GPU time (input copy, network, colours) in ms. */
  async function run(source: FrameSource, what: string): Promise<number> {
    const t0 = performance.now();
    const frame = seg.segment(source, { opacity: opacity() });
    await engine.flush();
    await engine.device.queue.onSubmittedWorkDone();
    const t1 = performance.now();
    draw(frame);
    await engine.device.queue.onSubmittedWorkDone();
    const t2 = performance.now();
    frames++;
    const note = frames === 1 ? ' (first frame: includes compiling the GPU pipelines)' : '';
    timing.textContent = `${what}: ${frame.sourceWidth}x${frame.sourceHeight}, network at ${nw}x${nh}: segment ${(t1 - t0).toFixed(0)} ms${note}, draw ${(t2 - t1).toFixed(0)} ms`;
    await legend(frame);
    return t1 - t0;
  }

  let busy = Promise.resolve();
  /**
   * Serialises work: one frame at a time. A job that succeeds clears the last error (the page is
   * usable again); one that fails shows its error, prefixed with what it was doing (`what`).
   */
  const enqueue = (job: () => Promise<unknown>, what = ''): Promise<void> =>
    (busy = busy.then(job).then(
      () => {
        document.body.dataset.state = 'ready';
        message.textContent = '';
      },
      (e: Error) => fail('error', `${what || 'Error'}: ${e.message}`),
    ));

  async function sample(): Promise<void> {
    const blob = await (await fetch('/weights/sample.png')).blob();
    const bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
    await run(bitmap, 'sample.png');
    bitmap.close();
  }

  $('sample').addEventListener('click', () => void enqueue(sample, 'sample.png'));
  $<HTMLInputElement>('file').addEventListener('change', (ev) => {
    const file = (ev.target as HTMLInputElement).files?.[0];
    if (!file) return;
    void enqueue(async () => {
      let bitmap: ImageBitmap;
      try {
        bitmap = await createImageBitmap(file);
      } catch {
        // The browser's own message ("The source image could not be decoded") names nothing.
        throw new Error(`the browser cannot decode it as an image (${file.type || 'unknown type'}, ${file.size} bytes)`);
      }
      const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
      if (scale < 1) {
        const big = bitmap;
        bitmap = await createImageBitmap(big, { resizeWidth: Math.round(big.width * scale), resizeHeight: Math.round(big.height * scale), resizeQuality: 'high' });
        big.close();
      }
      await run(bitmap, file.name);
      bitmap.close();
    }, `Could not segment ${file.name}`);
  });
  opacityInput.addEventListener('input', () => {
    $('opacity-value').textContent = `${opacityInput.value}%`;
    void enqueue(async () => {
      if (frames === 0) return;
      const frame = seg.recolor({ opacity: opacity() });
      // recolor() records into the engine's batch: submit it before the blit, which goes to the
      // queue directly and would otherwise draw the previous colours.
      await engine.flush();
      draw(frame);
    });
  });

  // Webcam, where there is a camera: frames go straight from the video element to the GPU.
  const video = $<HTMLVideoElement>('video');
  let streaming = false;
  if (navigator.mediaDevices?.enumerateDevices) {
    const devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
    if (devices.some((d) => d.kind === 'videoinput')) $('webcam').hidden = false;
  }
  $('webcam').addEventListener('click', () => {
    if (streaming) {
      streaming = false;
      (video.srcObject as MediaStream | null)?.getTracks().forEach((t) => t.stop());
      video.srcObject = null;
      $('webcam').textContent = 'Webcam';
      return;
    }
    void enqueue(async () => {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
      await video.play();
      streaming = true;
      $('webcam').textContent = 'Stop webcam';
      const loop = (): void => {
        if (!streaming) return;
        void enqueue(() => run(video, 'webcam'), 'webcam').then(() => requestAnimationFrame(loop));
      };
      loop();
    }, 'webcam');
  });

  enableControls(true);
  await enqueue(sample, 'sample.png');
}

main().catch((e: Error) => fail('error', `Error: ${e.message}`));
