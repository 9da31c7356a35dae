#!/usr/bin/env node
// The `canet` command line. Commands live in dist/cli (built from cli/*.ts).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js');
if (!existsSync(main)) {
  console.error('canet: the build is missing (dist/cli/main.js). Run `npm install` (or `npm run build`) in the package folder.');
  process.exit(1);
}
const { run } = await import(pathToFileURL(main).href);
process.exitCode = await run(process.argv.slice(2));
