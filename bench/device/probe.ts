/**
 * The device kit's adapter check (bench/device/README.md): creates the engine as the benchmark
 * does, prints the adapter, its features and limits, writes them as JSON, and fails loudly
 * (exit status 3) when the adapter is a software driver (SwiftShader, lavapipe/llvmpipe), so GPU
 * time is never spent timing a CPU. `--allow-software` accepts one (the dry run on SwiftShader).
 *   node dist/bench/device/probe.js [--json FILE] [--allow-software]
 */
import { writeFileSync } from 'node:fs';
import { createEngine } from '../../engine/device-node.js';
import { parseArgs } from '../timing.js';

const args = parseArgs(process.argv.slice(2));
const engine = await createEngine();
const a = engine.adapter;
const limits: Record<string, number> = {};
// Dawn's limits are getters on the prototype: for..in walks them.
for (const k in engine.limits) {
  const v = (engine.limits as unknown as Record<string, unknown>)[k];
  if (typeof v === 'number') limits[k] = v;
}
const features = [...engine.features].sort();
const env = Object.fromEntries(['VK_DRIVER_FILES', 'VK_ICD_FILENAMES', 'LD_LIBRARY_PATH'].map((k) => [k, process.env[k] ?? null]));
const report = { date: new Date().toISOString(), node: process.version, adapter: a, features, limits, env };
console.log(`adapter: ${a.description} (vendor ${a.vendor || '?'}, architecture ${a.architecture || '?'}, device ${a.device || '?'})${a.isSoftware ? ' [SOFTWARE]' : ''}`);
console.log(`features: ${features.join(', ') || '(none)'}`);
console.log(`limits: ${Object.entries(limits).map(([k, v]) => `${k}=${v}`).join(' ')}`);
if (typeof args.get('json') === 'string') writeFileSync(String(args.get('json')), JSON.stringify(report, null, 2) + '\n');
engine.destroy();
if (a.isSoftware && !args.has('allow-software')) {
  console.error(
    `\n*** FAIL: the adapter is a SOFTWARE driver (${a.description}), not the GPU. ***\n` +
      `*** The Vulkan loader did not find the GPU's driver (VK_DRIVER_FILES=${env.VK_DRIVER_FILES ?? 'unset'}); ` +
      `nothing was benchmarked. Pass --allow-software only for a dry run. ***\n`,
  );
  process.exit(3);
}
