#!/usr/bin/env node
// The layering rule of the source tree, checked: `node scripts/check-imports.js` (run by CI through
// test/imports.test.ts). Layers, lowest first:
//   engine/ (the engine, its ops and kernels)  <  net/, data/, weights/  <  cli/, web/, bench/, entry/
// A module imports only from its own layer or below, and runtime imports form no cycle (`import
// type` is erased by the compiler, so type-only imports may point anywhere except upwards).
// Prints every violation with the import chain and exits 1 when there is one; `--graph` prints the
// module graph (runtime edges) instead.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// `--root DIR` checks another tree (the test gives it a small broken one, to see each check fail).
const rootArg = process.argv.indexOf('--root');
const root = rootArg > 0 ? resolve(process.argv[rootArg + 1]) : join(dirname(fileURLToPath(import.meta.url)), '..');
const LAYERS = [['engine'], ['net', 'data', 'weights'], ['cli', 'web', 'bench', 'entry']];
const layerOf = (file) => LAYERS.findIndex((dirs) => dirs.includes(file.split('/')[0]));
const SOURCE_DIRS = LAYERS.flat();

/** Every .ts file (not .d.ts) under the layered folders, as paths relative to the root. */
function sources() {
  const out = [];
  const walk = (dir) => {
    for (const name of readdirSync(join(root, dir))) {
      const rel = `${dir}/${name}`;
      if (statSync(join(root, rel)).isDirectory()) walk(rel);
      else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(rel);
    }
  };
  for (const d of SOURCE_DIRS) if (existsSync(join(root, d))) walk(d);
  return out;
}

/**
 * The relative imports of a file: [target, typeOnly]. A statement is type-only when it is
 * `import type` / `export type`, or when every name it brings in is marked `type`.
 */
function importsOf(file) {
  const text = readFileSync(join(root, file), 'utf8');
  const out = [];
  const re = /^\s*(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"](\.[^'"]+)['"]|^\s*import\s*['"](\.[^'"]+)['"]/gm;
  for (const m of text.matchAll(re)) {
    const spec = m[4] ?? m[5];
    const names = (m[3] ?? '').trim();
    const braced = /^\{([\s\S]*)\}$/.exec(names);
    const allTypes = Boolean(braced) && braced[1].split(',').map((s) => s.trim()).filter(Boolean).every((s) => s.startsWith('type '));
    const typeOnly = Boolean(m[2]) || allTypes;
    const target = relative(root, resolve(dirname(join(root, file)), spec)).replace(/\.js$/, '.ts');
    if (target.endsWith('.wgsl')) continue;
    out.push([target, typeOnly]);
  }
  return out;
}

const files = sources();
const known = new Set(files);
const runtime = new Map(files.map((f) => [f, []]));
const problems = [];
for (const f of files) {
  for (const [to, typeOnly] of importsOf(f)) {
    if (!known.has(to)) {
      if (SOURCE_DIRS.includes(to.split('/')[0])) problems.push(`${f}: imports ${to}, which does not exist`);
      continue;
    }
    if (layerOf(to) > layerOf(f)) problems.push(`${f} (layer ${LAYERS[layerOf(f)].join('/')}) imports ${to} from a higher layer (${LAYERS[layerOf(to)].join('/')})`);
    if (!typeOnly) runtime.get(f).push(to);
  }
}

// Cycles among runtime imports: Tarjan's strongly connected components.
let index = 0;
const idx = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
const cycles = [];
function connect(v) {
  idx.set(v, index);
  low.set(v, index++);
  stack.push(v);
  onStack.add(v);
  for (const w of runtime.get(v)) {
    if (!idx.has(w)) {
      connect(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
  }
  if (low.get(v) === idx.get(v)) {
    const scc = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || runtime.get(v).includes(v)) cycles.push(scc.sort());
  }
}
for (const f of files) if (!idx.has(f)) connect(f);
for (const c of cycles) problems.push(`runtime import cycle of ${c.length} files: ${c.join(', ')}`);

if (process.argv.includes('--graph')) {
  for (const [f, to] of runtime) if (to.length) console.log(`${f} -> ${to.join(', ')}`);
} else if (problems.length) {
  console.error(`check-imports: ${problems.length} problem(s)\n  ${problems.join('\n  ')}`);
  process.exit(1);
} else {
  console.log(`check-imports: ${files.length} modules, layers ${LAYERS.map((l) => l.join('/')).join(' < ')}, no upward import, no runtime cycle`);
}
