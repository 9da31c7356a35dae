/**
 * Learning-rate schedules as pure functions of the step, so resuming from a checkpoint needs
 * only the step number (no scheduler state to save) and `opt.lr = cosineLR(base, step, total)`
 * before each `opt.step()` changes a uniform, never a pipeline.
 */

function checkArgs(fn: string, baseLR: number, step: number, totalSteps: number): void {
  if (!Number.isFinite(baseLR) || baseLR < 0) throw new RangeError(`${fn}: baseLR must be a finite number >= 0, got ${baseLR}`);
  if (!Number.isInteger(totalSteps) || totalSteps < 1) throw new RangeError(`${fn}: totalSteps must be an integer >= 1, got ${totalSteps}`);
  if (!Number.isInteger(step) || step < 0) throw new RangeError(`${fn}: step must be an integer >= 0, got ${step}`);
}

/**
 * Polynomial decay ("poly", DeepLab's schedule): baseLR * (1 - step / totalSteps)^power.
 * Steps past totalSteps give 0.
 */
export function polyLR(baseLR: number, step: number, totalSteps: number, power = 0.9): number {
  checkArgs('polyLR', baseLR, step, totalSteps);
  if (!Number.isFinite(power) || power <= 0) throw new RangeError(`polyLR: power must be a finite number > 0, got ${power}`);
  return baseLR * Math.pow(1 - Math.min(step, totalSteps) / totalSteps, power);
}

export interface CosineLROptions {
  /** Steps of linear warm-up before the cosine starts (default 0). */
  warmupSteps?: number;
  /**
   * The warm-up starts at baseLR * warmupStartFactor (default 1/25, the start of the one-cycle
   * schedule the reference CANet training uses: OneCycleLR's div_factor 25).
   */
  warmupStartFactor?: number;
  /** The learning rate the cosine ends at, at totalSteps and after (default 0). */
  minLR?: number;
}

/**
 * Linear warm-up from baseLR * warmupStartFactor (at step 0) to baseLR (at warmupSteps), then
 * half a cosine from baseLR down to minLR at totalSteps; minLR after that.
 */
export function cosineLR(baseLR: number, step: number, totalSteps: number, opts: CosineLROptions = {}): number {
  checkArgs('cosineLR', baseLR, step, totalSteps);
  const warmup = opts.warmupSteps ?? 0;
  const start = opts.warmupStartFactor ?? 1 / 25;
  const minLR = opts.minLR ?? 0;
  if (!Number.isInteger(warmup) || warmup < 0 || warmup > totalSteps)
    throw new RangeError(`cosineLR: warmupSteps must be an integer in [0, totalSteps = ${totalSteps}], got ${warmup}`);
  if (!Number.isFinite(start) || start < 0 || start > 1) throw new RangeError(`cosineLR: warmupStartFactor must be in [0, 1], got ${start}`);
  if (!Number.isFinite(minLR) || minLR < 0 || minLR > baseLR) throw new RangeError(`cosineLR: minLR must be in [0, baseLR = ${baseLR}], got ${minLR}`);
  if (step < warmup) return baseLR * (start + ((1 - start) * step) / warmup);
  if (step >= totalSteps) return minLR;
  const t = (step - warmup) / (totalSteps - warmup);
  return minLR + ((baseLR - minLR) * (1 + Math.cos(Math.PI * t))) / 2;
}
