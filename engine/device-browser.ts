/** Engine creation in browsers: navigator.gpu, or an application's own device. */
import { Engine } from './engine.js';
import { requestDevice, summarizeAdapter } from './device-common.js';
import { StackScopeContext } from './scope.js';
import { leakWarningSink, watchLiveTensors, type LeakWarningOption } from './leak-watch.js';

export interface BrowserEngineOptions {
  /** Embed into an application's device: the engine creates nothing global and never destroys it. */
  device?: GPUDevice;
  powerPreference?: GPUPowerPreference;
  /** Warn once when live tensors keep growing outside any engine.scope() (see engine/leak-watch.ts): default on; `false` turns it off; a function receives the message. */
  leakWarning?: LeakWarningOption;
}

function watched(engine: Engine, scopeContext: StackScopeContext, option: LeakWarningOption | undefined): Engine {
  const sink = leakWarningSink(option, false, undefined);
  if (sink) watchLiveTensors(engine, scopeContext, sink);
  return engine;
}

export async function createEngine(options: BrowserEngineOptions = {}): Promise<Engine> {
  const scopeContext = new StackScopeContext();
  if (options.device) return watched(new Engine({ device: options.device, ownsDevice: false, scopeContext }), scopeContext, options.leakWarning);
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new Error('canet-gpu: this browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome, Edge or Safari, or enable WebGPU.');
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  if (!adapter) throw new Error('canet-gpu: navigator.gpu.requestAdapter() returned no adapter (WebGPU is blocked or unsupported on this GPU).');
  const device = await requestDevice(adapter);
  return watched(new Engine({ device, ownsDevice: true, adapter: summarizeAdapter(adapter), scopeContext }), scopeContext, options.leakWarning);
}
