/**
 * The source tree's layering (scripts/check-imports.js): engine/ at the bottom imports nothing from
 * net/, data/, weights/, cli/, web/, bench/ or entry/, and runtime imports form no cycle. The
 * checker is also run on a small broken tree, so that each of its checks is seen to fail.
 */
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './harness.js';

const t = suite('imports');
const script = join(process.cwd(), 'scripts', 'check-imports.js');
const check = (...args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 60_000 });

t('this tree: no upward import, no runtime import cycle', () => {
  const r = check();
  assert.is(r.status, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /no upward import, no runtime cycle/);
});

t('a broken tree: an upward import and a runtime cycle are both reported; type-only imports are not', () => {
  const root = mkdtempSync(join(tmpdir(), 'canet-imports-'));
  for (const d of ['engine', 'net']) mkdirSync(join(root, d));
  writeFileSync(join(root, 'engine', 'a.ts'), "import { b } from './b.js';\nimport { n } from '../net/n.js';\nexport const a = b + n;\n");
  writeFileSync(join(root, 'engine', 'b.ts'), "import { a } from './a.js';\nexport const b = () => a;\n");
  // Type-only in both spellings: erased by the compiler, so neither a cycle nor (downwards) a problem.
  writeFileSync(join(root, 'engine', 'c.ts'), "import type { D } from './d.js';\nexport type C = D;\n");
  writeFileSync(join(root, 'engine', 'd.ts'), "import { type C } from './c.js';\nexport type D = C | 1;\n");
  writeFileSync(join(root, 'net', 'n.ts'), "import { a } from '../engine/a.js';\nexport const n = 1;\nexport const m = a;\n");
  const r = check('--root', root);
  assert.is(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /engine\/a\.ts \(layer engine\) imports net\/n\.ts from a higher layer/);
  assert.match(r.stderr, /runtime import cycle of 3 files: engine\/a\.ts, engine\/b\.ts, net\/n\.ts/);
  assert.not.match(r.stderr, /engine\/c\.ts|engine\/d\.ts/);
});

t.run();
