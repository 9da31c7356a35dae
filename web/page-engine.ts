/**
 * What every page of web/ does first: the engine on navigator.gpu, or a message saying why there
 * is none (no WebGPU at all, or no usable adapter), and the adapter named in the page's header.
 */
import { createEngine, type Engine } from '../entry/browser.js';

/**
 * The page's engine, or null after `fail(message)` explains why there is none. `without` ends
 * the no-WebGPU sentence ("so the demo cannot run").
 */
export async function openPageEngine(without: string, fail: (message: string) => void): Promise<Engine | null> {
  if (!('gpu' in navigator) || !navigator.gpu) {
    fail(`This browser has no WebGPU (navigator.gpu is missing), ${without}. Use a recent Chrome, Edge or Safari (or Firefox with WebGPU enabled), over http://127.0.0.1 or https.`);
    return null;
  }
  try {
    return await createEngine();
  } catch (e) {
    fail(`WebGPU is present but gave no usable GPU: ${(e as Error).message}`);
    return null;
  }
}

/** 'Adapter: <name>', plus `softwareNote` on a software adapter. */
export function adapterLabel(engine: Engine, softwareNote: string): string {
  const a = engine.adapter;
  return `Adapter: ${a.description || [a.vendor, a.architecture].filter(Boolean).join(' ') || 'unnamed'}${a.isSoftware ? ` (${softwareNote})` : ''}`;
}
