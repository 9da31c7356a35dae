/**
 * Node: where the files shipped inside the package are (the demo model, its card, the sample image
 * and its labels), found from this module's own location, so they resolve from any working folder
 * and from any way the package is installed (a checkout, node_modules, a global install, npx).
 * Browsers fetch the same files by URL: `canet-gpu/weights/<name>` is an export of the package.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Absolute paths of the files shipped in the package's `weights/` folder. */
export interface DemoFiles {
  /** The demo model (safetensors with its `canet` configuration): `loadModelFile(engine, demoFiles().model)`. */
  model: string;
  /** The model card (classes, input size, how it was trained). */
  card: string;
  /** A synthetic street scene to segment (PNG, 512x256). */
  sample: string;
  /** Its ground-truth class ids (PNG, one id per pixel). */
  sampleLabels: string;
}

let root: string | null = null;

/**
 * The package's root folder: the nearest folder above this file whose package.json is canet-gpu's
 * (this code runs from dist/node/, dist/node/chunks/ or dist/test/, depending on the build).
 */
export function packageRoot(): string {
  if (root) return root;
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; ) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'canet-gpu') return (root = dir);
      } catch {
        // Not JSON: keep looking further up.
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`canet-gpu: cannot find the package's folder above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** The bundled demo files; throws naming the path if the installation lacks them. */
export function demoFiles(): DemoFiles {
  const dir = join(packageRoot(), 'weights');
  const files: DemoFiles = {
    model: join(dir, 'demo.safetensors'),
    card: join(dir, 'demo.json'),
    sample: join(dir, 'sample.png'),
    sampleLabels: join(dir, 'sample-labels.png'),
  };
  for (const path of Object.values(files)) if (!existsSync(path)) throw new Error(`canet-gpu: the bundled file ${path} is missing from this installation`);
  return files;
}
