/** canet-gpu for Node: the engine on Dawn (webgpu package), with the SwiftShader fallback. */
export * from './index.js';
export { createEngine, SWIFTSHADER_ICD, SOFTWARE_GPU_HELP, type NodeEngineOptions } from './device-node.js';
export { readSafetensorsFile, writeSafetensorsFile, writeFileAtomic } from '../weights/file.js';
