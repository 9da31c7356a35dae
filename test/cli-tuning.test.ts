/**
 * The commands' tuning (cli/tuning.ts): the tuning file's winners are loaded when it exists,
 * `--tune` times the workload's kernels and saves them, a file that cannot be read is reported and
 * ignored (it is a cache), and contradictory or missing explicit files are usage errors.
 */
import * as assert from 'uvu/assert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyTuning } from '../cli/tuning.js';
import { conv2d } from '../engine/ops/conv2d.js';
import { suite } from './harness.js';
import { randn, testEngine } from './gpu.js';

const t = suite('cli-tuning');

async function rejects(fn: () => Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected an error matching ${re}`);
}

t('load, --tune and save, reload in a fresh table; unreadable files ignored; usage errors', async () => {
  const e = await testEngine();
  const saved = new Map(e.tuned);
  const dir = await mkdtemp(join(tmpdir(), 'canet-cli-tuning-'));
  const file = join(dir, 'tuning.json');
  const lines: string[] = [];
  const log = (l: string) => void lines.push(l);
  // One 3x3 conv of awkward channels: its forward GEMM is the workload's only tunable kernel.
  const x = e.tensor(randn(1 * 7 * 9 * 6, 3), [1, 7, 9, 6]).keep();
  const w = e.tensor(randn(5 * 3 * 3 * 6, 4), [5, 3, 3, 6]).keep();
  const workload = () => e.noGrad(() => conv2d(x, w, null, { padding: 1 }));
  try {
    e.tuned.clear();
    const env = process.env.CANET_TUNING;
    process.env.CANET_TUNING = file;
    try {
      await applyTuning(e, {}, workload, 1000, log);
    } finally {
      if (env === undefined) delete process.env.CANET_TUNING;
      else process.env.CANET_TUNING = env;
    }
    assert.ok(!existsSync(file), 'no file is written without --tune');
    assert.is(e.tuned.size, 0);

    await applyTuning(e, { tune: true, tuning: file }, workload, 1000, log);
    assert.ok(e.tuned.size >= 1, 'the conv was tuned');
    assert.match(lines.at(-1)!, /^tuning: timed 1 kernels in \d+ s \(\d with a tile over 5% faster than the default\); saved to /);
    const table = JSON.parse(await readFile(file, 'utf8'));
    assert.is(table.format, 'canet-gpu-tuning/1');

    const winners = new Map(e.tuned);
    e.tuned.clear();
    await applyTuning(e, { tuning: file }, workload, 1000, log);
    assert.equal(e.tuned, winners, 'the saved winners come back');
    assert.match(lines.at(-1)!, /^tuning: 1 tuned kernels for this adapter from /);

    await writeFile(file, '{ not json');
    e.tuned.clear();
    await applyTuning(e, { tuning: file }, workload, 1000, log);
    assert.is(e.tuned.size, 0);
    assert.match(lines.at(-1)!, /^tuning: ignoring .*tuning\.json: .*not JSON/);

    await rejects(() => applyTuning(e, { tuning: 'none', tune: true }, workload, 1000, log), /--tune needs a tuning file/);
    await rejects(() => applyTuning(e, { tuning: join(dir, 'missing.json') }, workload, 1000, log), /missing\.json: no such file \(pass --tune to create it\)/);
    await applyTuning(e, { tuning: 'none' }, workload, 1000, log);
  } finally {
    x.dispose();
    w.dispose();
    e.tuned.clear();
    for (const [k, v] of saved) e.tuned.set(k, v);
    await rm(dir, { recursive: true, force: true });
  }
}, { timeoutMs: 300_000 });

t.run();
