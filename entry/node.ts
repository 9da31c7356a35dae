/** canet-gpu for Node: the engine on Dawn (webgpu package), with the SwiftShader fallback, and file helpers. */
export * from './index.js';
export {
  createEngine,
  chooseSoftwareGPU,
  SWIFTSHADER_ICD,
  LAVAPIPE_ICD,
  LAVAPIPE_INSTALL,
  SOFTWARE_GPUS,
  SOFTWARE_GPU_HELP,
  type NodeEngineOptions,
  type SoftwareGPU,
} from '../engine/device-node.js';
export { softwareDriverName } from '../engine/device-common.js';
export { readSafetensorsFile, writeSafetensorsFile } from '../weights/file.js';
export { writeFileAtomic } from '../engine/atomic-file.js';
export { loadWeightsFile, loadModelFile } from '../weights/load-file.js';
export { demoFiles, type DemoFiles } from '../weights/bundled.js';
export { readImage, inspectImageFile, type ImageInfo, decodeImage, encodePng, writePng, readLabelImage } from '../data/image-io.js';
export { findPairs, loadPair, writeSyntheticDataset } from '../data/datasets.js';
export { loadTuningFile, saveTuningFile, defaultTuningFile } from '../engine/tune-file.js';
