#!/usr/bin/env node
// Launcher: the TF.js peer is TypeScript, built to dist/bench/peers by `npm install` / `npm run build`
// (only where the devDependencies are installed).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
const built = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'bench', 'peers', 'tfjs.js');
if (!existsSync(built)) {
  console.error('bench: dist/bench/peers/tfjs.js is missing; run `npm install` (TF.js is a devDependency) and `npm run build` first.');
  process.exit(1);
}
await import(pathToFileURL(built).href);
