/**
 * The fine-tuning page: the user's frames (images, the sample, webcam grabs), the model's current
 * segmentation under a brush the user paints class labels with, and "Train", which runs fineTune
 * (net/finetune.ts) on the labelled frames on this page's GPU, with a live loss curve and the
 * current frame's segmentation refreshed every few steps. "Download weights" saves a model file
 * that `canet segment --weights` and loadModelBytes load.
 *
 * Drawing is a 2D canvas: the photo, the class ids read back at the network size (a few tens of
 * KB) coloured on the CPU, and the painted labels; no WebGPU canvas is needed.
 * Main thread only: fineTune yields between steps, and pauses while the page is hidden.
 * Leaving the page (pagehide) stops training and destroys the engine, which frees its GPU memory.
 *
 * URL parameters (the browser test uses them): `steps=N` (the Steps field), `train=WxH` (the
 * training crop; default the network size), `preview=K` (refresh every K steps, default 5).
 * Bundled to dist/web/finetune.js; the library comes from /browser/canet-gpu.js.
 */
import { loadModelBytes, fineTune, serializeModel, imageToTensor, resizeClassIds, CLASS_NAMES, PALETTE, UNLABELLED, type Engine } from '../entry/browser.js';
import { adapterLabel, openPageEngine } from './page-engine.js';

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const message = $<HTMLParagraphElement>('message');
const view = $<HTMLCanvasElement>('view');
const caption = $<HTMLElement>('caption');
const progress = $<HTMLElement>('progress');
const curve = $<HTMLCanvasElement>('curve');
const params = new URLSearchParams(location.search);

/** Frames are decoded to at most this side (labels are painted at the frame's resolution). */
const MAX_SIDE = 512;
const UNDO_DEPTH = 30;
const LABEL_ALPHA = 0.8;

interface Frame {
  name: string;
  width: number;
  height: number;
  rgba: Uint8ClampedArray;
  /** One class id per pixel, UNLABELLED where nobody painted. */
  labels: Uint8Array;
  undo: Uint8Array[];
  /** The model's class ids at the network size, or null when stale (weights changed since). */
  ids: Int32Array | null;
  photo: HTMLCanvasElement;
}

function setState(state: string, text?: string): void {
  document.body.dataset.state = state;
  if (text !== undefined) message.textContent = text;
}

function canvasOf(w: number, h: number): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  return c;
}

async function main(): Promise<void> {
  const opened = await openPageEngine('so nothing can train here', (message) => setState('nogpu', message));
  if (!opened) return;
  const engine: Engine = opened; // (narrowed for the functions declared below)
  $('adapter').textContent = adapterLabel(engine, 'software: expect CPU speeds, about a second per step');
  let closed = false;
  let controller: AbortController | null = null;
  void engine.lost.then((info) => {
    if (closed) return;
    closed = true;
    controller?.abort();
    setState('lost', `The GPU device was lost (${info.message || info.reason}); reload the page to start again.`);
  });

  const bytes = await fetch('/weights/demo.safetensors').then((r) => (r.ok ? r.arrayBuffer() : Promise.reject(new Error(`GET /weights/demo.safetensors: HTTP ${r.status}`))));
  const { model, config } = loadModelBytes(engine, bytes);
  model.eval();
  const [nw, nh] = config.inputSize ?? [256, 128];
  const names = config.classNames ?? [...CLASS_NAMES];
  const classes = model.options.classes;
  const trainSize = (params.get('train')?.split('x').map(Number) as [number, number] | undefined) ?? [nw, nh];
  const previewEvery = Math.max(1, Number(params.get('preview') ?? 5));
  if (params.get('steps')) $<HTMLInputElement>('steps').value = params.get('steps')!;

  const frames: Frame[] = [];
  let current: Frame | null = null;
  let paintClass = 0;
  let erasing = false;
  let training = false;
  const losses: number[] = [];

  // ---- the palette: one radio button per class
  const paletteButtons = Array.from({ length: classes }, (_, id) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('role', 'radio');
    b.dataset.class = String(id);
    const sw = document.createElement('i');
    sw.style.background = `rgb(${(PALETTE[id] ?? [128, 128, 128]).join(',')})`;
    b.append(sw, names[id] ?? `class ${id}`);
    b.addEventListener('click', () => choose(id));
    return b;
  });
  $('palette').replaceChildren(...paletteButtons);
  function choose(id: number): void {
    paintClass = id;
    erasing = false;
    paletteButtons.forEach((b, i) => b.setAttribute('aria-checked', String(i === id)));
    $('eraser').setAttribute('aria-pressed', 'false');
  }
  choose(0);
  $('eraser').addEventListener('click', () => {
    erasing = !erasing;
    $('eraser').setAttribute('aria-pressed', String(erasing));
    paletteButtons.forEach((b, i) => b.setAttribute('aria-checked', String(!erasing && i === paintClass)));
  });
  const brush = $<HTMLInputElement>('brush');
  brush.addEventListener('input', () => ($('brush-value').textContent = brush.value));
  const opacity = $<HTMLInputElement>('opacity');
  opacity.addEventListener('input', () => render());

  // ---- segmentation and drawing
  /** Runs the network on a frame (eval mode) and reads its class ids back (network size). */
  async function segment(f: Frame): Promise<void> {
    model.eval();
    const ids = engine.scope(() => model.segment(imageToTensor(engine, { data: f.rgba, width: f.width, height: f.height, channels: 4 }, { outWidth: nw, outHeight: nh })));
    try {
      f.ids = await ids.readInt32();
    } finally {
      ids.dispose();
    }
  }

  /** Labelled pixels of a frame and how many of them the current segmentation gets right. */
  function accuracy(f: Frame): { labelled: number; correct: number } {
    let labelled = 0;
    let correct = 0;
    if (!f.ids) return { labelled, correct };
    const ids = resizeClassIds(f.ids, nw, nh, f.width, f.height);
    for (let i = 0; i < f.labels.length; i++) {
      const c = f.labels[i]!;
      if (c === UNLABELLED) continue;
      labelled++;
      if (ids[i] === c) correct++;
    }
    return { labelled, correct };
  }

  const segCanvas = canvasOf(nw, nh);
  function render(): void {
    const f = current;
    const ctx = view.getContext('2d')!;
    if (!f) return;
    if (view.width !== f.width || view.height !== f.height) {
      view.width = f.width;
      view.height = f.height;
    }
    ctx.globalAlpha = 1;
    ctx.drawImage(f.photo, 0, 0);
    if (f.ids) {
      const img = new ImageData(nw, nh);
      const alpha = Math.round((Number(opacity.value) / 100) * 255);
      for (let i = 0; i < f.ids.length; i++) {
        const c = PALETTE[f.ids[i]!];
        if (c) img.data.set([c[0], c[1], c[2], alpha], 4 * i);
      }
      segCanvas.getContext('2d')!.putImageData(img, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(segCanvas, 0, 0, f.width, f.height);
    }
    const lab = new ImageData(f.width, f.height);
    const la = Math.round(LABEL_ALPHA * 255);
    for (let i = 0; i < f.labels.length; i++) {
      const c = PALETTE[f.labels[i]!];
      if (c) lab.data.set([c[0], c[1], c[2], la], 4 * i);
    }
    const labCanvas = canvasOf(f.width, f.height);
    labCanvas.getContext('2d')!.putImageData(lab, 0, 0);
    ctx.drawImage(labCanvas, 0, 0);
    const { labelled, correct } = accuracy(f);
    caption.textContent = `${f.name}: ${f.width}x${f.height}, network at ${nw}x${nh}; ${labelled} labelled pixels${labelled ? `, ${((100 * correct) / labelled).toFixed(1)}% of them segmented as labelled` : ': paint some'}${f.ids ? '' : ' (segmentation out of date)'}`;
    ($('undo') as HTMLButtonElement).disabled = f.undo.length === 0;
  }

  function drawCurve(): void {
    const ctx = curve.getContext('2d')!;
    const { width: w, height: h } = curve;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = ctx.strokeStyle = getComputedStyle(document.body).color;
    ctx.font = '11px system-ui, sans-serif';
    if (!losses.length) {
      ctx.fillText('loss per step (after Train)', 8, 16);
      return;
    }
    const max = Math.max(...losses.filter(Number.isFinite), 1e-6);
    const [l, r, t, b] = [34, w - 8, 8, h - 16];
    ctx.globalAlpha = 0.4;
    ctx.strokeRect(l, t, r - l, b - t);
    ctx.globalAlpha = 1;
    ctx.fillText(max.toPrecision(3), 2, t + 8);
    ctx.fillText('0', 24, b);
    ctx.fillText(`step ${losses.length}`, r - 60, h - 3);
    ctx.beginPath();
    losses.forEach((v, i) => {
      const x = l + ((r - l) * (i + (losses.length === 1 ? 0.5 : 0))) / Math.max(1, losses.length - 1);
      const y = b - ((b - t) * Math.min(v, max)) / max;
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.strokeStyle = '#d0508a';
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }

  // ---- frames
  async function addFrame(source: CanvasImageSource, sw: number, sh: number, name: string): Promise<void> {
    const scale = Math.min(1, MAX_SIDE / Math.max(sw, sh));
    const [w, h] = [Math.max(1, Math.round(sw * scale)), Math.max(1, Math.round(sh * scale))];
    const photo = canvasOf(w, h);
    const pctx = photo.getContext('2d', { willReadFrequently: true })!;
    pctx.drawImage(source, 0, 0, w, h);
    const rgba = pctx.getImageData(0, 0, w, h).data;
    const f: Frame = { name, width: w, height: h, rgba, labels: new Uint8Array(w * h).fill(UNLABELLED), undo: [], ids: null, photo };
    frames.push(f);
    const thumb = document.createElement('button');
    thumb.type = 'button';
    thumb.title = name;
    const img = document.createElement('img');
    img.src = photo.toDataURL();
    img.alt = name;
    thumb.append(img);
    thumb.addEventListener('click', () => void select(f));
    $('frames').append(thumb);
    await select(f);
  }

  async function select(f: Frame): Promise<void> {
    current = f;
    const thumbs = Array.from($('frames').children);
    thumbs.forEach((t, i) => t.setAttribute('aria-current', String(frames[i] === f)));
    if (!f.ids && !training) await segment(f);
    render();
  }

  let queue = Promise.resolve();
  /** One job at a time; errors shown on the page. */
  const enqueue = (job: () => Promise<unknown>): Promise<void> =>
    (queue = queue.then(job).then(
      () => {
        if (!closed && document.body.dataset.state !== 'error') setState(training ? 'training' : 'ready');
      },
      // After pagehide the engine is gone and work in flight rejects: the page already says so.
      (e: Error) => void (closed || setState('error', `Error: ${e.message}`)),
    ));

  async function sample(): Promise<void> {
    const blob = await (await fetch('/weights/sample.png')).blob();
    const bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
    await addFrame(bitmap, bitmap.width, bitmap.height, 'sample.png');
    bitmap.close();
  }
  $('sample').addEventListener('click', () => void enqueue(sample));
  $<HTMLInputElement>('file').addEventListener('change', (ev) => {
    const files = Array.from((ev.target as HTMLInputElement).files ?? []);
    void enqueue(async () => {
      for (const file of files) {
        const bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none' });
        await addFrame(bitmap, bitmap.width, bitmap.height, file.name);
        bitmap.close();
      }
    });
  });

  // Webcam, where there is a camera: "Add webcam frame" grabs the current video frame.
  const video = $<HTMLVideoElement>('video');
  if (navigator.mediaDevices?.enumerateDevices) {
    const devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
    if (devices.some((d) => d.kind === 'videoinput')) $('webcam').hidden = false;
  }
  let grabbed = 0;
  $('webcam').addEventListener('click', () => {
    if (video.srcObject) {
      (video.srcObject as MediaStream).getTracks().forEach((t) => t.stop());
      video.srcObject = null;
      $('webcam').textContent = 'Webcam';
      $('grab').hidden = true;
      return;
    }
    void enqueue(async () => {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
      await video.play();
      $('webcam').textContent = 'Stop webcam';
      $('grab').hidden = false;
    });
  });
  $('grab').addEventListener('click', () => void enqueue(() => addFrame(video, video.videoWidth, video.videoHeight, `webcam ${++grabbed}`)));

  // ---- painting
  let stroke: { x: number; y: number } | null = null;
  function stamp(f: Frame, cx: number, cy: number): void {
    const r = Number(brush.value);
    const value = erasing ? UNLABELLED : paintClass;
    for (let y = Math.max(0, Math.ceil(cy - r)); y <= Math.min(f.height - 1, Math.floor(cy + r)); y++)
      for (let x = Math.max(0, Math.ceil(cx - r)); x <= Math.min(f.width - 1, Math.floor(cx + r)); x++)
        if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) f.labels[y * f.width + x] = value;
  }
  function at(ev: PointerEvent): { x: number; y: number } {
    const box = view.getBoundingClientRect();
    return { x: ((ev.clientX - box.left) / box.width) * view.width, y: ((ev.clientY - box.top) / box.height) * view.height };
  }
  view.addEventListener('pointerdown', (ev) => {
    if (!current) return;
    view.setPointerCapture(ev.pointerId);
    current.undo.push(current.labels.slice());
    if (current.undo.length > UNDO_DEPTH) current.undo.shift();
    stroke = at(ev);
    stamp(current, stroke.x, stroke.y);
    render();
  });
  view.addEventListener('pointermove', (ev) => {
    if (!stroke || !current) return;
    const p = at(ev);
    const dist = Math.hypot(p.x - stroke.x, p.y - stroke.y);
    const n = Math.max(1, Math.ceil(dist / Math.max(1, Number(brush.value) / 2)));
    for (let i = 1; i <= n; i++) stamp(current, stroke.x + ((p.x - stroke.x) * i) / n, stroke.y + ((p.y - stroke.y) * i) / n);
    stroke = p;
    render();
  });
  const endStroke = (): void => void (stroke = null);
  view.addEventListener('pointerup', endStroke);
  view.addEventListener('pointercancel', endStroke);
  $('undo').addEventListener('click', () => {
    const prev = current?.undo.pop();
    if (!current || !prev) return;
    current.labels = prev;
    render();
  });
  $('clear').addEventListener('click', () => {
    if (!current) return;
    current.undo.push(current.labels.slice());
    current.labels.fill(UNLABELLED);
    render();
  });

  // ---- training
  const buttons = (on: boolean): void => {
    for (const id of ['go', 'download', 'sample', 'clear']) ($(id) as HTMLButtonElement).disabled = !on;
    ($('stop') as HTMLButtonElement).disabled = on;
  };
  /** Between steps: a macrotask, and no step while the page is hidden (resumes when shown). */
  const yieldTo = async (): Promise<void> => {
    await new Promise((ok) => setTimeout(ok, 0));
    while (document.hidden && !controller?.signal.aborted) {
      progress.textContent = `${progress.textContent!.replace(/ \(paused.*$/, '')} (paused while the page is hidden)`;
      await new Promise((ok) => document.addEventListener('visibilitychange', ok, { once: true }));
    }
  };

  async function train(): Promise<void> {
    const labelled = frames.filter((f) => f.labels.some((c) => c !== UNLABELLED));
    if (!labelled.length) {
      progress.textContent = 'Paint some labels first: choose a class, then drag over the frame.';
      return;
    }
    const steps = Math.max(1, Math.floor(Number($<HTMLInputElement>('steps').value) || 1));
    training = true;
    controller = new AbortController();
    setState('training');
    buttons(false);
    const first = losses.length;
    const t0 = performance.now();
    try {
      const r = await fineTune(
        model,
        labelled.map((f) => ({ image: f.rgba, width: f.width, height: f.height, channels: 4, labels: f.labels })),
        {
          steps,
          size: trainSize,
          batch: Math.min(4, labelled.length),
          lr: Number($<HTMLSelectElement>('lr').value),
          freezeBackbone: $<HTMLInputElement>('freeze').checked,
          keepUnlabelled: $<HTMLInputElement>('keep').checked,
          signal: controller.signal,
          seed: first,
          yieldTo,
          onStep: async (s) => {
            losses.push(s.loss);
            drawCurve();
            progress.textContent = `step ${s.step}/${s.steps}: loss ${s.loss.toFixed(4)}, ${s.ms.toFixed(0)} ms`;
            if (current && (s.step % previewEvery === 0 || s.step === s.steps)) {
              await segment(current);
              render();
            }
          },
        },
      );
      for (const f of frames) if (f !== current) f.ids = null;
      if (current) {
        await segment(current);
        render();
      }
      const secs = (performance.now() - t0) / 1000;
      progress.textContent = `${r.stopped ? 'stopped after' : 'trained'} ${r.steps} steps on ${labelled.length} frame${labelled.length > 1 ? 's' : ''} in ${secs.toFixed(1)} s (${r.trainedParameters.toLocaleString('en-US')} parameters trained); loss ${r.losses[0]?.toFixed(4) ?? '-'} -> ${r.losses.at(-1)?.toFixed(4) ?? '-'}`;
    } finally {
      training = false;
      controller = null;
      if (!closed) buttons(true);
    }
  }
  $('go').addEventListener('click', () => void enqueue(train));
  $('stop').addEventListener('click', () => controller?.abort());
  $('download').addEventListener('click', () =>
    void enqueue(async () => {
      model.eval();
      const file = await serializeModel(model, { inputSize: [nw, nh], classNames: names });
      const url = URL.createObjectURL(new Blob([file as BlobPart], { type: 'application/octet-stream' }));
      const link = document.createElement('a');
      link.href = url;
      link.download = 'canet-finetuned.safetensors';
      link.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      progress.textContent = `saved canet-finetuned.safetensors (${(file.length / 2 ** 20).toFixed(1)} MB): canet segment photo.jpg --weights canet-finetuned.safetensors`;
    }),
  );

  // ---- leaving: stop, and give the GPU memory back (a page restored from the back/forward cache reloads)
  addEventListener('pagehide', () => {
    if (closed) return;
    closed = true;
    controller?.abort();
    if (video.srcObject) (video.srcObject as MediaStream).getTracks().forEach((t) => t.stop());
    model.dispose();
    engine.destroy();
    setState('closed', 'The page was left: the GPU memory was released. Reload to start again.');
  });
  addEventListener('pageshow', (ev) => {
    if ((ev as PageTransitionEvent).persisted && closed) location.reload();
  });

  // Hooks for the browser test (small summaries; nothing here is needed by the page itself).
  (window as unknown as { finetunePage: unknown }).finetunePage = {
    losses: () => [...losses],
    accuracy: () => (current ? accuracy(current) : null),
    ids: () => {
      if (!current?.ids) return null;
      let s = '';
      for (const id of current.ids) s += String.fromCharCode(id & 0xff);
      return btoa(s);
    },
    network: [nw, nh],
    liveTensors: () => engine.stats().liveTensors,
    closed: () => closed,
  };
  drawCurve();
  await enqueue(sample);
}

main().catch((e: Error) => setState('error', `Error: ${e.message}`));
