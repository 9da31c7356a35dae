/**
 * Optimizers with torch.optim's semantics (SGD, Adam, AdamW): the entry that the rest of the
 * package imports. The parts live in engine/optim/: the update rules (rules.ts) and their kernels
 * (kernels.ts, shaders/optim.wgsl), the base class with the step loop (optimizer.ts), parameter
 * arenas and state storage (state.ts), and checkpoint snapshots (checkpoint.ts).
 */
export { Optimizer } from './optim/optimizer.js';
export { SGD, Adam, AdamW, type SGDOptions, type AdamOptions } from './optim/rules.js';
export type { OptimizerKind, OptimizerState, ParamState } from './optim/checkpoint.js';
