/** Platform-neutral engine API (the Node and browser entries add createEngine). */
export { Engine, type AdapterSummary, type EngineStats, type KernelTiming } from './engine.js';
export { Tensor, type DType } from './tensor.js';
export { ShapeError, GPUExecutionError, EngineClosedError } from './errors.js';
export { backward, recordOp, type GradNode, type BackwardOptions } from './autograd.js';
export { type Program, kernelSection, grid1d, f32, i32 } from './program.js';
export { bucketSize } from './pool.js';
export * as ops from './ops/index.js';
export { Optimizer, SGD, Adam, AdamW, type SGDOptions, type AdamOptions, type OptimizerKind, type OptimizerState, type ParamState } from './optim.js';
export { polyLR, cosineLR, type CosineLROptions } from './schedule.js';
export * as layout from './layout.js';
export * from '../weights/safetensors.js';
export * from '../weights/names.js';
