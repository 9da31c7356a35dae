/** Engine creation in browsers: navigator.gpu, or an application's own device. */
import { Engine } from './engine.js';
import { requestDevice, summarizeAdapter } from './device-common.js';

export interface BrowserEngineOptions {
  /** Embed into an application's device: the engine creates nothing global and never destroys it. */
  device?: GPUDevice;
  powerPreference?: GPUPowerPreference;
}

export async function createEngine(options: BrowserEngineOptions = {}): Promise<Engine> {
  if (options.device) return new Engine({ device: options.device, ownsDevice: false });
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new Error('canet-gpu: this browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome, Edge or Safari, or enable WebGPU.');
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  if (!adapter) throw new Error('canet-gpu: navigator.gpu.requestAdapter() returned no adapter (WebGPU is blocked or unsupported on this GPU).');
  const device = await requestDevice(adapter);
  return new Engine({ device, ownsDevice: true, adapter: summarizeAdapter(adapter) });
}
