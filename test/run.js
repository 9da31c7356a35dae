#!/usr/bin/env node
// Runs the built tests (dist/test/*.test.js) under uvu and ends with the line `N passed, N failed`
// that CI reads. `node test/run.js conv pool` runs only the files whose names start with one of them.
//
// Files run in CANET_TEST_JOBS worker processes (default: one per core, at most 4), each taking
// the next file from a shared queue, slowest files first; the files in ALONE run last, by
// themselves. Why: on the software GPU most of a test file's time is pipeline compilation, which
// Dawn does on one thread, so one process leaves the other cores idle (on 2 cores the suite took
// 710 s in one process, 454 s in two). Each worker keeps one engine (and its pipeline cache)
// across its files. A file's output is printed whole when it ends, so two files never
// interleave; a worker that dies fails its file and is replaced. CANET_TEST_JOBS=1 runs
// everything in this process.
//
// Long tests (`*.long.test.ts`: minutes of soak) run by default, as in CI; CANET_SKIP_LONG=1
// leaves them out of a local run.
import { readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { availableParallelism } from 'node:os';
import { fork } from 'node:child_process';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'dist', 'test');
const self = fileURLToPath(import.meta.url);

// Measured slowest first (the timing line at the end of a run says which), so that no long file
// starts last and leaves the other workers idle while it finishes.
const SLOW_FIRST = ['cli', 'consumer', 'large-input', 'browser', 'browser-finetune', 'leaks', 'peers', 'canet', 'bench', 'conv-transpose', 'model-weights', 'finetune', 'training'];
// Run with no other file at the same time: the leak soak is 1,000 short inferences, each waiting
// on the GPU, and sharing the cores with another file made it 3-4x slower (64 s alone, 190-269 s
// next to the CLI test), longer than it takes at the end on its own.
const ALONE = ['leaks'];
/** Index in `list` of the name `f` starts with (`cli` names cli.test.js), or -1. */
const listed = (list, f) => list.findIndex((s) => f.startsWith(s + '.'));
const alone = (f) => listed(ALONE, f) >= 0;
const rank = (f) => {
  const i = listed(SLOW_FIRST, f);
  return i < 0 ? SLOW_FIRST.length : i;
};

/**
 * Pipelines the shared test engine (test/gpu.ts) has compiled and its milliseconds compiling, or
 * zeros before a file made it. Files that create engines of their own are not counted.
 */
async function compileStats() {
  const engine = await globalThis.__canetTestEngine?.catch(() => null);
  if (!engine || engine.closed) return { pipelines: 0, compileMs: 0 };
  const s = engine.stats();
  return { pipelines: s.pipelines, compileMs: s.compileMs };
}

/** Runs one built test file in this process; returns its counts, seconds and compile cost. */
async function runFile(f) {
  const counts = (globalThis.__canetCounts ??= { passed: 0, failed: 0, skipped: 0 });
  const before = { ...counts };
  const compiled = await compileStats();
  const t0 = Date.now();
  globalThis.UVU_DEFER = 1;
  globalThis.UVU_INDEX = 0;
  globalThis.UVU_QUEUE = [[f.replace(/\.js$/, '')]];
  try {
    await import(pathToFileURL(join(dir, f)).href);
    const { exec } = await import('uvu');
    await exec();
  } catch (e) {
    counts.failed++;
    console.error(`\n${f}: failed to load: ${e?.stack ?? e}`);
  }
  const secs = (Date.now() - t0) / 1000;
  const after = await compileStats();
  return {
    file: f,
    passed: counts.passed - before.passed,
    failed: counts.failed - before.failed,
    skipped: counts.skipped - before.skipped,
    secs,
    pipelines: Math.max(0, after.pipelines - compiled.pipelines),
    compileSecs: Math.max(0, after.compileMs - compiled.compileMs) / 1000,
  };
}

if (process.argv[2] === '--worker') {
  // A worker: runs the files the parent sends, one at a time, and reports each when done.
  process.on('message', async (m) => {
    if (m.done) process.exit(0);
    const r = await runFile(m.file);
    // Let the file's last output reach the pipe before the parent prints it.
    await new Promise((resolve) => process.stdout.write('', () => process.stderr.write('', resolve)));
    process.send(r);
  });
  process.send({ ready: true });
} else {
  if (!existsSync(dir)) {
    console.error('dist/test is missing: run `npm run build` (npm test does it for you).');
    process.exit(1);
  }
  const filters = process.argv.slice(2);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.test.js'))
    .filter((f) => !filters.length || filters.some((p) => f.startsWith(p)))
    .filter((f) => !(process.env.CANET_SKIP_LONG === '1' && f.includes('.long.')))
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const jobs = Math.max(1, Math.min(files.length, Number(process.env.CANET_TEST_JOBS ?? Math.min(availableParallelism(), 4))));
  const started = Date.now();
  const results = jobs === 1 ? await inProcess(files) : [...(await inWorkers(files.filter((f) => !alone(f)), jobs)), ...(await inWorkers(files.filter(alone), 1))];
  // A file no worker got to (every worker died before asking for it) fails rather than vanishing.
  for (const f of files.filter((f) => !results.some((r) => r.file === f))) {
    console.error(`\n${f}: never ran (no worker process was left to run it)`);
    results.push({ file: f, passed: 0, failed: 1, skipped: 0, secs: 0, pipelines: 0, compileSecs: 0 });
  }
  const total = { passed: 0, failed: 0, skipped: 0 };
  for (const r of results) for (const k of Object.keys(total)) total[k] += r[k];
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  results.sort((a, b) => b.secs - a.secs);
  const name = (r) => r.file.replace(/\.test\.js$/, '');
  console.log('\nslowest files: ' + results.slice(0, 8).map((r) => `${name(r)} ${r.secs.toFixed(0)} s`).join(', '));
  // Pipeline compilation is most of a kernel test's time on a software GPU: say where it goes.
  const compiling = results.filter((r) => r.pipelines > 0).sort((a, b) => b.compileSecs - a.compileSecs);
  if (compiling.length) {
    const sum = (k) => compiling.reduce((n, r) => n + r[k], 0);
    console.log(`compiling (shared test engine): ${sum('pipelines')} pipelines, ${sum('compileSecs').toFixed(0)} s of those files' ${sum('secs').toFixed(0)} s; most: ` +
      compiling.slice(0, 6).map((r) => `${name(r)} ${r.pipelines} in ${r.compileSecs.toFixed(0)} of ${r.secs.toFixed(0)} s`).join(', '));
  }
  console.log(`${files.length} test files in ${secs} s (${jobs} ${jobs === 1 ? 'process' : 'worker processes'})`);
  console.log(`${total.passed} passed, ${total.failed} failed` + (total.skipped ? `, ${total.skipped} skipped` : ''));
  process.exit(total.failed ? 1 : 0);
}

async function inProcess(files) {
  const results = [];
  for (const f of files) results.push(await runFile(f));
  return results;
}

/** Hands files to `jobs` workers from one queue; a worker that dies fails its file and is replaced. */
function inWorkers(files, jobs) {
  const queue = [...files];
  const results = [];
  let live = 0;
  jobs = Math.min(jobs, files.length);
  return new Promise((resolve) => {
    if (!files.length) return resolve(results);
    const start = () => {
      live++;
      const w = fork(self, ['--worker'], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
      let out = [];
      let current = null;
      w.stdout.on('data', (d) => out.push(d));
      w.stderr.on('data', (d) => out.push(d));
      const flush = () => {
        process.stdout.write(Buffer.concat(out));
        out = [];
      };
      const next = () => {
        current = queue.shift() ?? null;
        if (current) w.send({ file: current });
        else w.send({ done: true });
      };
      w.on('message', (m) => {
        if (!m.ready) {
          flush();
          results.push(m);
        }
        next();
      });
      w.on('exit', (code, signal) => {
        live--;
        if (current) {
          flush();
          console.error(`\n${current}: its worker process died (${signal ?? `exit code ${code}`}) before the file finished`);
          results.push({ file: current, passed: 0, failed: 1, skipped: 0, secs: 0, pipelines: 0, compileSecs: 0 });
          current = null;
          if (queue.length) start();
        }
        if (live === 0) resolve(results);
      });
    };
    for (let i = 0; i < jobs; i++) start();
  });
}
