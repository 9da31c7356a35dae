/**
 * fineTune (net/finetune.ts) on a tiny CANet (width 0.25, plain head, 64x64 synthetic scenes):
 * the loss falls; the loss counts only labelled pixels (the first step's loss equals a float64
 * cross-entropy over the labelled pixels of the same forward, and differs from one over all of
 * them); a frozen backbone stays bit for bit while the rest moves; abort stops it; everything it
 * allocated is released and a repeated call allocates nothing new; bad frames are refused before
 * anything is allocated; serializeModel's bytes load back with loadModelBytes.
 */
import * as assert from 'uvu/assert';
import { canet, fineTune, generateScene, imageToTensor, loadModelBytes, serializeModel, UNLABELLED, type CANet, type Engine, type FineTuneSample } from '../entry/node.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelFile } from '../weights/load-file.js';
import { suite } from './harness.js';
import { testEngine } from './gpu.js';
import { refCrossEntropy } from './ref/loss.js';

const t = suite('finetune');
const S = 64;
const MODEL = { width: 0.25, head: 'plain', classes: 19, seed: 3 } as const;

/** A synthetic scene as RGBA bytes (ImageData's layout) with its labels, pixels outside `keep` unlabelled. */
function frame(seed: number, keep: (x: number, y: number) => boolean = () => true): FineTuneSample {
  const s = generateScene(seed, S, S);
  const rgba = new Uint8ClampedArray(S * S * 4);
  for (let i = 0; i < S * S; i++) rgba.set([s.image[3 * i]!, s.image[3 * i + 1]!, s.image[3 * i + 2]!, 255], 4 * i);
  const labels = Uint8Array.from(s.labels, (c, i) => (keep(i % S, Math.floor(i / S)) ? c : UNLABELLED));
  return { image: rgba, width: S, height: S, labels };
}

async function params(m: CANet, prefix: string, inside: boolean): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [n, p] of m.namedParameters()) if (n.startsWith(prefix) === inside) out.set(n, (await p.read()) as Float32Array);
  return out;
}

async function rejects(fn: () => Promise<unknown>, re: RegExp): Promise<void> {
  const got = await fn().then(() => null, (e: Error) => e);
  assert.ok(got, `expected a rejection matching ${re}`);
  assert.match(got!.message, re);
}

const steady = (e: Engine) => {
  const s = e.stats();
  return { liveTensors: s.liveTensors, liveBytes: s.liveBytes, liveBufferBytes: s.liveBufferBytes };
};

t('loss falls over a few steps on two labelled frames (AdamW, GPU crop/flip)', async () => {
  const e = await testEngine();
  const model = canet(e, MODEL);
  // The step is captured once (at step 2) and replayed from then on.
  const capture = e.capture;
  let captures = 0;
  e.capture = function (this: Engine, ...args: Parameters<Engine['capture']>) {
    captures++;
    return capture.apply(this, args);
  } as Engine['capture'];
  try {
    const r = await fineTune(model, [frame(1), frame(2)], { steps: 10, size: [S, S], lr: 3e-3, seed: 1 });
    e.capture = capture;
    assert.is(captures, 1, 'one capture for ten steps');
    const head = (r.losses[0]! + r.losses[1]!) / 2;
    const tail = (r.losses[8]! + r.losses[9]!) / 2;
    console.log(`  losses ${r.losses.map((l) => l.toFixed(3)).join(' ')} (${r.ms.toFixed(0)} ms, ${r.trainedParameters} parameters)`);
    assert.is(r.steps, 10);
    assert.is(r.stopped, false);
    assert.ok(r.losses.every(Number.isFinite));
    assert.ok(tail < 0.7 * head, `loss ${head.toFixed(3)} -> ${tail.toFixed(3)}: fell by less than 30%`);
    assert.is(r.trainedParameters, model.numParameters());
  } finally {
    e.capture = capture;
    model.dispose();
  }
});

t('only labelled pixels count: the first loss is the float64 cross-entropy over them', async () => {
  const e = await testEngine();
  // Left half labelled, right half UNLABELLED; no augmentation, so the batch is the frame itself.
  const f = frame(4, (x) => x < S / 2);
  const full = frame(4);
  const twin = canet(e, MODEL);
  const model = canet(e, MODEL);
  try {
    // The same forward as the first training step (BatchNorm on running statistics, fineTune's
    // default), on a twin.
    twin.eval();
    const out = e.noGrad(() => e.scope(() => twin.forward(imageToTensor(e, { data: f.image, width: S, height: S, channels: 4 }))));
    const logits = (await out.read()) as Float32Array;
    out.dispose();
    const labelled = refCrossEntropy(logits, f.labels, 19).loss;
    const all = refCrossEntropy(logits, full.labels, 19).loss;
    const r = await fineTune(model, [f], { steps: 1, size: [S, S], augment: false, batch: 1 });
    console.log(`  first loss ${r.losses[0]} | float64 over the ${f.labels.filter((c) => c !== UNLABELLED).length} labelled pixels ${labelled} | over all ${S * S} pixels ${all}`);
    assert.ok(Math.abs(r.losses[0]! - labelled) <= 1e-4 * labelled, 'the loss is the mean over labelled pixels');
    assert.ok(Math.abs(all - labelled) > 1e-2 * labelled, 'the check can tell the two apart');
  } finally {
    twin.dispose();
    model.dispose();
  }
});

t('keepUnlabelled: unlabelled pixels keep the model\'s classes far better than when ignored; the labelled ones still learn', async () => {
  const e = await testEngine();
  // A correction the model cannot already know: the left half labelled as one class (pole).
  const base = frame(12);
  const f: FineTuneSample = { ...base, labels: Uint8Array.from(base.labels, (_, i) => (i % S < S / 2 ? 5 : UNLABELLED)) };
  const run = async (keepUnlabelled: boolean) => {
    const model = canet(e, MODEL);
    try {
      model.eval();
      const ids = async (): Promise<Int32Array> => {
        const out = e.scope(() => model.segment(imageToTensor(e, { data: f.image, width: S, height: S, channels: 4 })));
        const v = (await out.read()) as Int32Array;
        out.dispose();
        return v;
      };
      const before = await ids();
      await fineTune(model, [f], { steps: 8, size: [S, S], lr: 3e-3, keepUnlabelled, augment: false });
      const after = await ids();
      let kept = 0;
      let learned = 0;
      for (let i = 0; i < after.length; i++) {
        if (f.labels[i] === UNLABELLED) kept += after[i] === before[i] ? 1 : 0;
        else learned += after[i] === 5 ? 1 : 0;
      }
      return { kept: kept / (S * S / 2), learned: learned / (S * S / 2) };
    } finally {
      model.dispose();
    }
  };
  const ignored = await run(false);
  const kept = await run(true);
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  console.log(`  unlabelled pixels unchanged: ${pct(kept.kept)} with keepUnlabelled, ${pct(ignored.kept)} ignored; labelled pixels learned: ${pct(kept.learned)} / ${pct(ignored.learned)}`);
  assert.ok(kept.kept > ignored.kept + 0.2, 'keepUnlabelled keeps the rest of the frame');
  assert.ok(kept.learned > 0.5, 'the labelled half still learns its class');
});

t('freezeBackbone: backbone parameters stay bit for bit, the rest moves; requiresGrad and eval mode restored', async () => {
  const e = await testEngine();
  const model = canet(e, MODEL);
  try {
    model.eval();
    const bb0 = await params(model, 'context_branch.backbone.', true);
    const rest0 = await params(model, 'context_branch.backbone.', false);
    const r = await fineTune(model, [frame(5)], { steps: 3, size: [S, S], freezeBackbone: true });
    const bb1 = await params(model, 'context_branch.backbone.', true);
    const rest1 = await params(model, 'context_branch.backbone.', false);
    let moved = 0;
    for (const [n, v] of bb0) assert.equal(Array.from(bb1.get(n)!), Array.from(v), `${n} moved`);
    for (const [n, v] of rest0) if (rest1.get(n)!.some((x, i) => x !== v[i])) moved++;
    console.log(`  ${bb0.size} backbone tensors unchanged; ${moved} of ${rest0.size} others moved; ${r.trainedParameters} of ${model.numParameters()} parameters trained`);
    assert.ok(moved >= rest0.size - 2, `only ${moved} of ${rest0.size} trainable tensors moved`);
    assert.is(r.trainedParameters, model.numParameters() - model.contextBranch.backbone.numParameters());
    assert.ok(model.parameters().every((p) => p.requiresGrad), 'requiresGrad restored');
    assert.ok([...model.modules()].every((m) => !m.training), 'eval mode restored');
  } finally {
    model.dispose();
  }
});

t('abort: stops after the step in flight; an aborted signal runs no step', async () => {
  const e = await testEngine();
  const model = canet(e, MODEL);
  try {
    const ac = new AbortController();
    const r = await fineTune(model, [frame(6)], { steps: 50, size: [S, S], signal: ac.signal, onStep: (s) => void (s.step === 2 && ac.abort()) });
    assert.is(r.steps, 2);
    assert.is(r.stopped, true);
    const r0 = await fineTune(model, [frame(6)], { steps: 5, size: [S, S], signal: ac.signal });
    assert.is(r0.steps, 0);
    assert.is(r0.stopped, true);
  } finally {
    model.dispose();
  }
});

t('releases what it allocated; a repeated call creates no GPU buffer; bad frames refused before any allocation', async () => {
  const e = await testEngine();
  const model = canet(e, MODEL);
  try {
    const frames = [frame(7), frame(8, (x, y) => x + y < S)];
    // Warm-up: pipelines, and the folded BatchNorm caches of the frozen backbone (kept by the model).
    await fineTune(model, frames, { steps: 3, size: [S, S], freezeBackbone: true });
    const before = steady(e);
    const created = e.stats().buffersCreated;
    await fineTune(model, frames, { steps: 3, size: [S, S], freezeBackbone: true });
    assert.equal(steady(e), before, 'live tensors and bytes after = before');
    assert.is(e.stats().buffersCreated, created, 'no GPU buffer created by a repeated call');
    await fineTune(model, frames, { steps: 2, size: [S, S], capture: false });
    await fineTune(model, frames, { steps: 2, size: [S, S] });
    const unfrozen = steady(e);
    await fineTune(model, frames, { steps: 2, size: [S, S] });
    assert.equal(steady(e), unfrozen, 'unfrozen: live tensors and bytes after = before');

    const bad = frame(9);
    bad.labels[S * 3 + 5] = 19;
    await rejects(() => fineTune(model, [bad], { steps: 1, size: [S, S] }), /sample 0: pixel \(5, 3\) has class 19; the model has 19 classes/);
    await rejects(() => fineTune(model, [frame(9, () => false)], { steps: 1, size: [S, S] }), /no sample has a labelled pixel/);
    await rejects(() => fineTune(model, [frame(9)], { steps: 1, size: [S, 40] }), /multiples of 32/);
    await rejects(() => fineTune(model, [{ ...frame(9), labels: new Uint8Array(10) }], { steps: 1, size: [S, S] }), /labels must be a Uint8Array of 4096/);
    await rejects(() => fineTune(model, [frame(9)], { steps: 1, size: [S, S], trainable: () => false }), /every parameter is frozen/);
    assert.equal(steady(e), unfrozen, 'refusals allocate nothing');
  } finally {
    model.dispose();
  }
});

t('serializeModel: the bytes load with loadModelBytes and loadModelFile (what the CLI uses) and segment the same', async () => {
  const e = await testEngine();
  const model = canet(e, MODEL);
  try {
    await fineTune(model, [frame(10)], { steps: 2, size: [S, S] });
    model.eval();
    const bytes = await serializeModel(model, { inputSize: [S, S] });
    const { model: back, config } = loadModelBytes(e, bytes);
    // The command line's loader (`canet segment --weights FILE`) reads the same file.
    const dir = mkdtempSync(join(tmpdir(), 'canet-finetune-'));
    const path = join(dir, 'tuned.safetensors');
    writeFileSync(path, bytes);
    const cli = await loadModelFile(e, path);
    rmSync(dir, { recursive: true, force: true });
    try {
      assert.equal(config.inputSize, [S, S]);
      assert.is(config.width, 0.25);
      assert.equal(cli.config, config);
      back.eval();
      cli.model.eval();
      const f = frame(11);
      const ids = async (m: CANet): Promise<Int32Array> => {
        const out = e.scope(() => m.segment(imageToTensor(e, { data: f.image, width: S, height: S, channels: 4 })));
        const v = (await out.read()) as Int32Array;
        out.dispose();
        return v;
      };
      const want = Array.from(await ids(model));
      assert.equal(Array.from(await ids(back)), want);
      assert.equal(Array.from(await ids(cli.model)), want);
    } finally {
      back.dispose();
      cli.model.dispose();
    }
  } finally {
    model.dispose();
  }
});

t.run();
