/**
 * The `canet` command line end to end: a short training run whose loss falls, kill -9 mid-run and
 * resume giving the same loss sequence as an uninterrupted run, segmentation outputs, evaluation,
 * and one clear message (non-zero exit, nothing half-written) for each kind of bad input.
 * Every command is a process that compiles its GPU pipelines from scratch (seconds on SwiftShader),
 * so the file spawns as few as cover the behaviour: kill and resume is one test of three kill
 * rounds (a deterministic kill after step 12 was a weaker copy of it, and was dropped).
 */
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './harness.js';
import { rng } from './gpu.js';
import { parseSafetensors, serializeSafetensors, type SafeTensorInput } from '../weights/safetensors.js';

const t = suite('cli');
const root = process.cwd();
const bin = join(root, 'bin', 'canet.js');
const work = mkdtempSync(join(tmpdir(), 'canet-cli-'));

// A tuning file of this test's own (none exists): the user's tuned tiles must not change these runs.
const ENV = { ...process.env, CANET_DEBUG: '', CANET_TUNING: join(work, 'tuning.json') };

function canet(args: string[], timeoutMs = 240_000) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: work, encoding: 'utf8', timeout: timeoutMs, env: ENV });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const TRAIN = ['train', '--synthetic', '64', '--val-synthetic', '4', '--size', '128x64', '--batch', '2', '--width', '0.25', '--head', 'plain', '--optimizer', 'adamw', '--lr', '0.003', '--seed', '5', '--class-weights', 'enet'];

function losses(dir: string): number[] {
  return readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.loss !== undefined).map((r) => r.loss as number);
}

t('canet train --synthetic 64 --steps 20 --size 128x64: loss falls, and it writes model, checkpoint, metrics and curve', () => {
  const r = canet([...TRAIN, '--steps', '20', '--out', 'run-a', '--checkpoint-every', '10']);
  assert.is(r.code, 0, r.err + r.out);
  const l = losses(join(work, 'run-a'));
  assert.is(l.length, 20);
  const head = (l[0]! + l[1]! + l[2]!) / 3;
  const tail = (l[17]! + l[18]! + l[19]!) / 3;
  assert.ok(tail < 0.8 * head, `loss ${head.toFixed(3)} -> ${tail.toFixed(3)}`);
  for (const f of ['model.safetensors', 'model.json', 'checkpoint.safetensors', 'curve.svg']) assert.ok(existsSync(join(work, 'run-a', f)), f);
  assert.match(readFileSync(join(work, 'run-a', 'curve.svg'), 'utf8'), /<svg/);
  assert.match(r.out, /final: val mIoU/);
}, { timeoutMs: 300_000 });

t('canet train replays its step from a captured plan: the same run op by op (--no-capture) gives the same losses and the same model file, byte for byte', () => {
  // 8 steps with an evaluation after step 4: steps 3-8 are replays, and the evaluation in between
  // switches the model to eval mode and back.
  const args = [...TRAIN, '--steps', '8', '--eval-every', '4', '--checkpoint-every', '8'];
  for (const [out, extra] of [['run-plan', []], ['run-ops', ['--no-capture']]] as const) {
    const r = canet([...args, '--out', out, ...extra]);
    assert.is(r.code, 0, r.err + r.out);
  }
  assert.equal(losses(join(work, 'run-plan')), losses(join(work, 'run-ops')), 'losses');
  assert.ok(readFileSync(join(work, 'run-plan', 'model.safetensors')).equals(readFileSync(join(work, 'run-ops', 'model.safetensors'))), 'model files differ');
}, { timeoutMs: 300_000 });

t('kill -9 at random moments with a checkpoint every step: each kill leaves a whole checkpoint, and resuming to the end gives the uninterrupted run\'s loss sequence', async () => {
  // Checkpoints are written every step, so kills land in the middle of writes too; the delays come
  // from a seeded generator (printed) so a failure can be replayed.
  const seed = Number(process.env.CANET_KILL_SEED ?? 41);
  const delay = rng(seed);
  const dir = join(work, 'run-k');
  const ckpt = join(dir, 'checkpoint.safetensors');
  let lastStep = 0;
  let msPerStep = 0;
  for (let round = 0; round < 3; round++) {
    const args = round === 0 ? [...TRAIN, '--steps', '20', '--out', 'run-k', '--checkpoint-every', '1'] : ['train', '--resume', ckpt, '--out', 'run-k'];
    const child = spawn(process.execPath, [bin, ...args], { cwd: work, stdio: 'ignore', env: ENV });
    const exited = new Promise((r) => child.once('exit', r));
    const started = Date.now();
    // Round 0 measures a step's time (the first two metrics lines, in a fresh folder); each round,
    // once it is past the last checkpoint (later rounds count the killed round's stale lines too,
    // so their kill may land while the resumed process still starts), is killed at a random
    // moment within 0.3 of the time its remaining steps took at round 0's pace (its early steps run
    // op by op, slower than the replays that follow): milliseconds, not steps, so kills land
    // mid-step and mid-write, yet a fast adapter (lavapipe, a quiet host) cannot finish first.
    let wait = 0;
    await new Promise<void>((resolve, reject) => {
      let first: number | null = null;
      const poll = setInterval(() => {
        const n = existsSync(join(dir, 'metrics.jsonl')) ? losses(dir).length : 0;
        if (child.exitCode !== null) return clearInterval(poll), reject(new Error(`round ${round} finished before the kill (seed ${seed})`));
        if (round === 0 && n >= 1 && first === null) first = Date.now();
        const ready = round === 0 ? n >= 2 : n > lastStep + round;
        if (ready) {
          clearInterval(poll);
          if (round === 0) msPerStep = (Date.now() - first!) / (n - 1);
          wait = Math.floor(delay() * Math.min(2700, 0.3 * (20 - n) * msPerStep));
          setTimeout(() => (child.kill('SIGKILL'), resolve()), wait);
        } else if (Date.now() - started > 200_000) clearInterval(poll), reject(new Error(`round ${round} made no progress`));
      }, 20);
    });
    await exited;
    // Whatever the moment, the checkpoint parses completely and is not older than the last one.
    const bytes = readFileSync(ckpt);
    const parsed = parseSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    const step = Number(parsed.metadata.step);
    assert.ok(Number.isInteger(step) && step >= lastStep && step < 20, `round ${round} (kill after ${wait} ms, seed ${seed}): checkpoint at step ${step}`);
    lastStep = step;
    const temps = readdirSync(dir).filter((f) => f.startsWith('.canet-tmp-'));
    assert.ok(temps.length <= 1, `at most the interrupted write's temporary file is left: ${temps.join(', ')}`);
  }
  const r = canet(['train', '--resume', ckpt, '--out', 'run-k']);
  assert.is(r.code, 0, r.err + r.out);
  assert.match(r.out, new RegExp(`resumed from .*checkpoint\\.safetensors at step ${lastStep}/20`));
  // metrics.jsonl holds each killed round's lines up to its checkpoint, then the resumed ones.
  const byStep = new Map<number, number>();
  const lossLines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((x) => x.loss !== undefined);
  lossLines.forEach((x) => byStep.set(x.step, x.loss));
  // A resume drops the lines a killed round logged after its checkpoint: one line per step.
  assert.is(lossLines.length, byStep.size, `duplicate step lines in metrics.jsonl: ${lossLines.map((x) => x.step).join(',')}`);
  const clean = losses(join(work, 'run-a'));
  for (let s = 1; s <= 20; s++) assert.is(byStep.get(s), clean[s - 1], `step ${s} (seed ${seed})`);
}, { timeoutMs: 600_000 });

t('canet segment writes label, overlay and id PNGs; canet eval prints per-class IoU and mIoU', () => {
  const model = join(work, 'run-a', 'model.safetensors');
  const r = canet(['segment', join(root, 'weights', 'sample.png'), '--weights', model, '--out', 'seg', '--ids']);
  assert.is(r.code, 0, r.err);
  for (const f of ['sample_labels.png', 'sample_overlay.png', 'sample_ids.png']) assert.ok(statSync(join(work, 'seg', f)).size > 100, f);
  assert.match(r.out, /decode \d+ ms, GPU \d+ ms( \(first image: includes compiling the GPU pipelines\))?, readback \d+ ms/);
  const e = canet(['eval', '--synthetic', '4', '--weights', model, '--json', 'scores.json']);
  assert.is(e.code, 0, e.err);
  assert.match(e.out, /road\s+[\d.]+%/);
  assert.match(e.out, /mIoU\s+[\d.]+%/);
  const scores = JSON.parse(readFileSync(join(work, 'scores.json'), 'utf8'));
  assert.is(scores.confusion.length, 19);
}, { timeoutMs: 300_000 });

// The shipped demo weights on the shipped sample, scored against its ground truth (docs/weights.md, "The
// demo"): measured 91.9% pixel accuracy and 31.4% mIoU over the 15 classes present (2026-12-03,
// the 56.1% weights).
t('canet segment with the default (bundled) model: every input checked before the model loads, same-named inputs get distinct outputs, a bad image is listed at the end (exit 1) after the others are written; --fail-fast stops before any GPU work', () => {
  for (const d of ['a', 'b']) mkdirSync(join(work, d), { recursive: true });
  copyFileSync(join(root, 'weights', 'sample.png'), join(work, 'a', 'street.png'));
  copyFileSync(join(root, 'weights', 'sample.png'), join(work, 'b', 'street.png'));
  writeFileSync(join(work, 'b', 'broken.png'), 'not an image at all');
  const r = canet(['segment', 'a/street.png', 'b/broken.png', 'b/street.png', '--size', '64x32', '--out', 'mixed']);
  assert.is(r.code, 1, r.err + r.out);
  assert.match(r.err, /skipping b\/broken\.png: not a PNG or JPEG image/);
  assert.match(r.err, /1 of 3 images failed:\n\s+b\/broken\.png: not a PNG or JPEG image/);
  assert.equal(readdirSync(join(work, 'mixed')).sort(), ['a_street_labels.png', 'a_street_overlay.png', 'b_street_labels.png', 'b_street_overlay.png']);
  // The bad input is found before the engine exists (its software-GPU notice comes later, if at all).
  const skipped = r.err.indexOf('skipping b/broken.png');
  const engineNotice = r.err.indexOf('canet-gpu: no hardware GPU');
  assert.ok(engineNotice < 0 || skipped < engineNotice, r.err);
  const ff = canet(['segment', 'a/street.png', 'b/broken.png', '--size', '64x32', '--out', 'fail-fast', '--fail-fast']);
  assert.is(ff.code, 1, ff.err + ff.out);
  assert.match(ff.err, /b\/broken\.png: not a PNG or JPEG image/);
  assert.equal(readdirSync(join(work, 'fail-fast')), [], 'nothing written');
  assert.not.match(ff.err, /no hardware GPU adapter/, 'an engine was created');
});

t('canet demo (npm start) segments the sample with the demo weights: pixel accuracy >= 88%, mIoU over the classes present >= 27%', () => {
  const r = canet(['demo', '--out', 'demo-out']);
  assert.is(r.code, 0, r.err + r.out);
  for (const f of ['sample_labels.png', 'sample_overlay.png', 'sample_ids.png']) assert.ok(statSync(join(work, 'demo-out', f)).size > 100, f);
  const m = /pixel accuracy ([\d.]+)%, mIoU ([\d.]+)% over (\d+) classes present/.exec(r.out);
  assert.ok(m, r.out);
  assert.ok(Number(m![1]) >= 88, `pixel accuracy ${m![1]}%`);
  assert.ok(Number(m![2]) >= 27, `mIoU ${m![2]}%`);
}, { timeoutMs: 300_000 });

t('bad input: one clear message each, non-zero exit, checkpoints untouched', () => {
  const ckpt = join(work, 'run-a', 'checkpoint.safetensors');
  const before = readFileSync(ckpt);
  const model = join(work, 'run-a', 'model.safetensors');
  writeFileSync(join(work, 'notes.txt'), 'hello, not an image');
  const png = readFileSync(join(root, 'weights', 'sample.png'));
  writeFileSync(join(work, 'corrupt.png'), png.subarray(0, 200));
  // A folder dataset whose label has the wrong size, and an empty one.
  mkdirSync(join(work, 'ds', 'images'), { recursive: true });
  mkdirSync(join(work, 'ds', 'masks'), { recursive: true });
  copyFileSync(join(root, 'weights', 'sample.png'), join(work, 'ds', 'images', 'a.png'));
  copyFileSync(join(work, 'seg', 'sample_ids.png'), join(work, 'ds', 'masks', 'a.png'));
  spawnSync('sh', ['-c', `cd ${work} && mkdir -p ds2/images ds2/masks empty`]);
  const small = canet(['segment', join(root, 'weights', 'sample.png'), '--weights', model, '--out', 'small', '--ids', '--size', '64x32']);
  assert.is(small.code, 0, small.err);
  copyFileSync(join(root, 'weights', 'sample.png'), join(work, 'ds2', 'images', 'b.png'));
  // a 64x32 id map would still be 512x256 (ids are resized back): make a wrong-size label by hand
  writeFileSync(join(work, 'ds2', 'masks', 'b.png'), readFileSync(join(work, 'seg', 'sample_ids.png')));
  const header = (md: Record<string, string>) => {
    const json = new TextEncoder().encode(JSON.stringify({ __metadata__: md }));
    const out = new Uint8Array(8 + json.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    return out;
  };
  writeFileSync(join(work, 'bad-config.safetensors'), header({ format: 'canet-gpu-checkpoint-1', step: '3', config: '{"model":5}' }));
  // The run-a checkpoint, its config asking for a 4x-wide ResNet-101: refused before building (before: minutes and gigabytes).
  const real = parseSafetensors(new Uint8Array(before));
  const hugeCfg = JSON.parse(real.metadata.config!);
  hugeCfg.model = { ...hugeCfg.model, backbone: 'resnet101', width: 4 };
  const tensors: Record<string, SafeTensorInput> = {};
  for (const [n, x] of real.tensors) tensors[n] = { data: x.data as Float32Array | Int32Array, shape: x.shape, dtype: x.dtype === 'I64' ? 'I64' : undefined };
  writeFileSync(join(work, 'huge-ckpt.safetensors'), serializeSafetensors(tensors, { ...real.metadata, config: JSON.stringify(hugeCfg) }));
  writeFileSync(join(work, 'bad-json.safetensors'), header({ format: 'canet-gpu-checkpoint-1', step: '3', config: '{"model":', optimizer: '{' }));
  const cases: [string[], RegExp][] = [
    [['segment', 'missing.png', '--weights', model], /missing\.png.*(no such file|not found|does not exist)/i],
    [['segment', 'notes.txt', '--weights', model], /notes\.txt.*(not a PNG or JPEG|not an image|unsupported|text)/i],
    [['segment', 'corrupt.png', '--weights', model], /corrupt\.png.*(truncated|corrupt|invalid)/i],
    [['segment', join(root, 'weights', 'sample.png'), '--weights', 'nope.safetensors'], /weights nope\.safetensors: no such file/],
    [['segment', join(root, 'weights', 'sample.png'), '--weights', 'notes.txt'], /weights|safetensors|header/i],
    [['eval', '--data', 'empty', '--weights', model], /empty.*(no .*pairs|looked for)/i],
    [['train', '--data', 'empty', '--steps', '1', '--out', 'run-a'], /empty.*(no .*pairs|looked for)/i],
    [['train', '--synthetic', '4', '--size', '100x64', '--out', 'run-a'], /multiples of 32/],
    [['train', '--synthetic', '4', '--class-weights', '1,2', '--out', 'run-a'], /--class-weights has 2 numbers, expected one per class \(19\)/],
    [['train', '--bogus', '1'], /unknown option --bogus/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    // Issue 24: file errors name the file and say what is wrong, and nothing hangs.
    [['segment', join(root, 'weights', 'sample.png'), '--weights', model, '--out', '/proc/canet-out'], /--out \/proc\/canet-out: cannot create the folder \/proc\/canet-out/], // before: hung forever
    [['segment', join(root, 'weights', 'sample.png'), '--weights', model, '--out', 'notes.txt'], /--out notes\.txt: is a file, not a folder/], // before: raw EEXIST
    [['segment', join(root, 'weights', 'sample.png'), '--weights', 'empty'], /weights empty: is a folder, not a weights file/], // before: raw EISDIR
    [['train', '--resume', 'notes.txt', '--out', 'run-x'], /checkpoint notes\.txt: header length/], // before: no path
    [['train', '--resume', 'bad-config.safetensors', '--out', 'run-x'], /checkpoint bad-config\.safetensors: metadata "config": model must be an object, got 5/], // before: raw TypeError
    [['train', '--resume', 'huge-ckpt.safetensors', '--out', 'run-x'], /checkpoint huge-ckpt\.safetensors: the tensors do not match the model the metadata describes \(resnet101, plain head, width 4, 19 classes\); nothing was built/],
    [['train', '--resume', 'bad-json.safetensors', '--out', 'run-x'], /checkpoint bad-json\.safetensors: metadata "config" is not valid JSON/],
    [['train', '--synthetic', '4', '--size', '64x32', '--width', '0.125', '--steps', '1', '--pretrained', 'notes.txt', '--out', 'run-x'], /pretrained weights notes\.txt: header length/], // before: no path
    [['train', '--synthetic', '4', '--scale', '0', '--out', 'run-x'], /--scale must be >= 1/],
    [['segment', join(root, 'weights', 'sample.png'), '--weights', model, '--max-megapixels', '0.1'], /sample\.png: PNG of 512x256 pixels \(0\.1 megapixels\) is over the decoding budget of 0\.1 megapixels.*--max-megapixels/],
  ];
  for (const [args, re] of cases) {
    const r = canet(args, 120_000);
    assert.ok(r.code !== 0, `${args.join(' ')} should fail`);
    assert.match(r.err, re, `${args.join(' ')}: ${r.err}`);
    assert.ok(!/\n\s+at /.test(r.err), `${args.join(' ')} printed a stack trace: ${r.err}`);
  }
  assert.ok(Buffer.compare(before, readFileSync(ckpt)) === 0, 'checkpoint unchanged by failed runs');
}, { timeoutMs: 400_000 });

t('resume and metrics: a finished checkpoint resumes into a new folder, schedules are kept, a failed run leaves no metrics, bad labels are called a data error', () => {
  // The run-a checkpoint (--checkpoint-every 10) records its schedules, so a resume without the flags keeps them.
  const ckpt = join(work, 'run-a', 'checkpoint.safetensors');
  const config = JSON.parse(parseSafetensors(new Uint8Array(readFileSync(ckpt))).metadata.config!);
  assert.is(config.checkpointEvery, 10);
  // Before: wrote the model, then exited 1 (ENOENT .../metrics.jsonl).
  const r = canet(['train', '--resume', ckpt, '--out', 'run-r']);
  assert.is(r.code, 0, r.err + r.out);
  assert.ok(existsSync(join(work, 'run-r', 'model.safetensors')));
  // Labels outside --classes stop the run as a data error (the advice used to be "lower --lr"),
  // and the failed run leaves no metrics.jsonl behind (it used to leave an empty one).
  mkdirSync(join(work, 'dsl', 'train', 'images'), { recursive: true });
  mkdirSync(join(work, 'dsl', 'train', 'masks'), { recursive: true });
  copyFileSync(join(root, 'weights', 'sample.png'), join(work, 'dsl', 'train', 'images', 'a.png'));
  copyFileSync(join(work, 'seg', 'sample_ids.png'), join(work, 'dsl', 'train', 'masks', 'a.png'));
  const bad = canet(['train', '--data', 'dsl', '--classes', '2', '--steps', '2', '--batch', '1', '--size', '64x32', '--width', '0.125', '--out', 'run-bad']);
  assert.is(bad.code, 1, bad.err + bad.out);
  assert.match(bad.err, /outside \[0, 2\).*this is a data error, not a numeric one: fix the label maps/i);
  assert.not.match(bad.err, /Lower --lr/);
  assert.not.ok(existsSync(join(work, 'run-bad', 'metrics.jsonl')), 'a failed run left a metrics.jsonl');
}, { timeoutMs: 300_000 });

t('--help works for every command', () => {
  for (const c of ['segment', 'train', 'eval', 'make-dataset', 'demo']) {
    const r = canet([c, '--help']);
    assert.is(r.code, 0, c);
    assert.match(r.out, new RegExp(`canet ${c}`));
  }
});

t.run();
