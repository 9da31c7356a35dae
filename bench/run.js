#!/usr/bin/env node
// Launcher: the benchmark is TypeScript, built to dist/bench by `npm install` / `npm run build`.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
const built = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'bench', 'run.js');
if (!existsSync(built)) {
  console.error('bench: dist/bench/run.js is missing; run `npm run build` first.');
  process.exit(1);
}
await import(pathToFileURL(built).href);
