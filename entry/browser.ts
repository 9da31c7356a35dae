/** canet-gpu for browsers: the engine on navigator.gpu or an application's device. No Node built-ins. */
export * from './index.js';
export { createEngine, type BrowserEngineOptions } from '../engine/device-browser.js';
