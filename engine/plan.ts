/**
 * Captured plans: the GPU work of one call, recorded once and replayed with no op code, no
 * autograd, no allocation and no uniform packing. `engine.capture(fn)` runs `fn` as usual (its
 * results are valid) while the engine records every dispatch (pipeline, buffers, uniform bytes,
 * workgroup counts), buffer copy, texture copy and queue write it makes; `plan.run()` replays that
 * list into the engine's batch, in one compute pass between copies, and submits once.
 *
 * What CUDA graphs and ONNX Runtime's graph capture taught, applied here:
 * - Memory is fixed at capture. Intermediate buffers that `fn` freed go to the plan, not back to
 *   the pool, so nothing else can overwrite them between replays; tensors that outlive `fn`
 *   (parameters, inputs, results, caches) are bound where they are, and a replay refuses to run
 *   once one of them was disposed.
 * - Inputs are tensors of the plan: write new data into them (`plan.run([[x, data]])`, or
 *   `engine.writeTensor(x, data)` before `run()`). Data written inside `fn` (a fill, a
 *   `writeTensor`) is replayed as it was written.
 * - Values that change every call (a learning rate from a schedule, Adam's bias corrections) are
 *   uniforms given as functions: they are read again at each replay. CPU state that a call
 *   advances (an optimizer's step count, BatchNorm's num_batches_tracked) is advanced by hooks the
 *   ops register with `engine.onReplay`, in the order `fn` ran them.
 * - Caches derived from tensors (a BatchNorm folded into a conv) register a guard with
 *   `engine.onReplayCheck`: a replay after the weights changed throws a PlanInvalidError instead
 *   of computing with stale folded values.
 * - Capture a steady-state call (after one warm-up call): one-time work in `fn` (compiling is
 *   harmless, but lazily created state, such as an optimizer's first step, would run every time).
 */
import { check, fmtShape } from './errors.js';
import { BufferUsage } from './gpu-constants.js';
import { Tensor } from './tensor.js';
import { collectTensors } from './scope.js';
import type { Engine } from './engine.js';

/** The part of a compiled pipeline a plan needs. */
export interface PipelineRef {
  readonly pipeline: GPUComputePipeline;
  readonly name: string;
}

type Range = { offset: number; size: number } | null;

/** One dispatch as `engine.run` recorded it. */
export interface RecordedDispatch {
  entry: PipelineRef;
  buffers: readonly GPUBuffer[];
  ranges: readonly Range[];
  /** What was bound (tensors are checked and their versions advanced at replay). */
  bindings: readonly (Tensor | GPUBuffer)[];
  /** The uniform block as packed at capture (null: no uniforms). */
  block: Uint8Array | null;
  /** For blocks with values given as functions: packs the block again into `bytes` at `at`. */
  repack: ((bytes: Uint8Array, at: number) => void) | null;
  workgroups: [number, number, number];
  flops?: number;
  bytes?: number;
}

type Command =
  | ({ kind: 'dispatch' } & RecordedDispatch)
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number; srcTensor: Tensor | null; dstTensor: Tensor | null }
  | { kind: 'textureToBuffer'; source: GPUTexelCopyTextureInfo; destination: GPUTexelCopyBufferInfo; size: GPUExtent3DStrict }
  | { kind: 'bufferToTexture'; source: GPUTexelCopyBufferInfo; destination: GPUTexelCopyTextureInfo; size: GPUExtent3DStrict }
  | { kind: 'write'; dst: GPUBuffer; offset: number; data: Uint8Array; tensor: Tensor | null }
  | { kind: 'hook'; fn: () => void };

/** Collects what the engine does while `capture` runs. */
export class Recorder {
  readonly commands: Command[] = [];
  readonly guards: (() => string | null)[] = [];

  dispatch(d: RecordedDispatch): void {
    this.commands.push({ kind: 'dispatch', ...d });
  }
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number, srcTensor: Tensor | null, dstTensor: Tensor | null): void {
    this.commands.push({ kind: 'copy', src, srcOffset, dst, dstOffset, size, srcTensor, dstTensor });
  }
  textureToBuffer(source: GPUTexelCopyTextureInfo, destination: GPUTexelCopyBufferInfo, size: GPUExtent3DStrict): void {
    this.commands.push({ kind: 'textureToBuffer', source, destination, size });
  }
  bufferToTexture(source: GPUTexelCopyBufferInfo, destination: GPUTexelCopyTextureInfo, size: GPUExtent3DStrict): void {
    this.commands.push({ kind: 'bufferToTexture', source, destination, size });
  }
  write(dst: GPUBuffer, offset: number, data: Uint8Array, tensor: Tensor | null): void {
    this.commands.push({ kind: 'write', dst, offset, data: data.slice(), tensor });
  }
  hook(fn: () => void): void {
    this.commands.push({ kind: 'hook', fn });
  }
}

/** A plan can no longer replay what it captured (a captured tensor was disposed, weights changed, ...). */
export class PlanInvalidError extends Error {
  override name = 'PlanInvalidError';
}

export interface CaptureOptions {
  /** Named in errors and profiles. */
  label?: string;
}

/** What the engine lends a plan (internal methods of Engine). */
export interface PlanHost {
  readonly device: GPUDevice;
  readonly limits: GPUSupportedLimits;
  assertOpen(): void;
  liveTensors(): Iterable<Tensor>;
  claimFreeBuffer(buffer: GPUBuffer): boolean;
  returnClaimedBuffer(buffer: GPUBuffer): void;
  createBindGroup(entry: PipelineRef, label: string, uniformBuffer: GPUBuffer | null, blockSize: number, buffers: readonly GPUBuffer[], ranges: readonly Range[]): GPUBindGroup;
  computePass(name: string, flops?: number, bytes?: number): GPUComputePassEncoder;
  endTimedPass(pass: GPUComputePassEncoder): void;
  encoderOutsidePass(): GPUCommandEncoder;
  countReplay(dispatches: number, flops: number, kernels: readonly string[]): void;
  submit(): void;
  own<T extends { destroy(): void }>(resource: T): T;
  disown(resource: { destroy(): void }, destroyNow?: boolean): void;
  writeTensor(t: Tensor, data: Float32Array | Int32Array | Uint32Array): void;
}

/** A replay step, compiled from the recorded commands. */
type Step =
  | { kind: 'dispatch'; pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; offsets: number[] | null; x: number; y: number; z: number; name: string; flops?: number; bytes?: number }
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number }
  | { kind: 'clear'; dst: GPUBuffer; offset: number; size: number }
  | { kind: 'textureToBuffer'; source: GPUTexelCopyTextureInfo; destination: GPUTexelCopyBufferInfo; size: GPUExtent3DStrict }
  | { kind: 'bufferToTexture'; source: GPUTexelCopyBufferInfo; destination: GPUTexelCopyTextureInfo; size: GPUExtent3DStrict };

/** CPU work of a replay before encoding, in capture order: hooks, and blocks packed from functions. */
type Refresh = { kind: 'hook'; fn: () => void } | { kind: 'repack'; repack: (bytes: Uint8Array, at: number) => void; at: number; size: number };

/** Input data for `run`: a tensor the plan reads, and its new contents. */
export type PlanFeed = readonly [Tensor, Float32Array | Int32Array | Uint32Array];

export class Plan<T = unknown> {
  /** What `fn` returned at capture; its tensors belong to the plan and hold each replay's results. */
  readonly result: T;
  readonly label: string;
  /** Dispatches per replay. */
  readonly dispatches: number;
  private readonly steps: Step[] = [];
  private readonly refresh: Refresh[] = [];
  /** Tensors that outlive the capture and that the plan binds: each must stay alive. */
  private readonly external: Tensor[];
  private readonly externalSet: Set<Tensor>;
  /** Of those, the ones the plan writes: their versions advance at each replay. */
  private readonly written: Tensor[];
  private readonly results: Tensor[];
  private readonly guards: (() => string | null)[];
  /** Pool buffers the plan took over (intermediates freed inside `fn`). */
  private readonly claimed: GPUBuffer[] = [];
  private readonly ownBuffers: GPUBuffer[] = [];
  private readonly uniformCpu: Uint8Array<ArrayBuffer> | null = null;
  private readonly uniformBuffer: GPUBuffer | null = null;
  private readonly kernelNames: string[];
  private readonly flops: number;
  private disposedReason: string | null = null;

  /** @internal Built by `engine.capture`. */
  constructor(private readonly host: PlanHost, recorder: Recorder, result: T, resultTensors: Tensor[], opts: CaptureOptions = {}) {
    this.result = result;
    this.results = resultTensors;
    this.label = opts.label ?? 'plan';
    this.guards = [...recorder.guards];
    const commands = recorder.commands;

    // ---- which buffers are whose
    const tensors = new Set<Tensor>();
    const buffers = new Set<GPUBuffer>();
    for (const c of commands) {
      if (c.kind === 'dispatch') {
        c.buffers.forEach((b) => buffers.add(b));
        c.bindings.forEach((b) => b instanceof Tensor && tensors.add(b));
      } else if (c.kind === 'copy') {
        buffers.add(c.src).add(c.dst);
        for (const t of [c.srcTensor, c.dstTensor]) if (t) tensors.add(t);
      } else if (c.kind === 'write') {
        buffers.add(c.dst);
        if (c.tensor) tensors.add(c.tensor);
      } else if (c.kind === 'textureToBuffer') buffers.add(c.destination.buffer);
      else if (c.kind === 'bufferToTexture') buffers.add(c.source.buffer);
    }
    const external = new Set([...tensors].filter((t) => !t.disposed));
    for (const t of resultTensors) external.add(t);
    const owned = new Set([...external].map((t) => t.buffer));
    const orphans: GPUBuffer[] = [];
    for (const b of buffers) {
      if (owned.has(b)) continue;
      if (host.claimFreeBuffer(b)) this.claimed.push(b);
      else orphans.push(b);
    }
    // A buffer neither free nor bound through a live tensor may belong to a live tensor that `fn`
    // created and kept without the plan binding it directly (an arena member, say).
    if (orphans.length) {
      const left = new Set(orphans);
      for (const t of host.liveTensors()) if (!t.disposed && left.has(t.buffer)) external.add(t);
    }
    this.external = [...external];
    this.externalSet = external;

    // ---- uniforms: one buffer, each block at an aligned offset, written once
    const align = host.limits.minUniformBufferOffsetAlignment;
    let uniformBytes = 0;
    const blockAt = new Map<RecordedDispatch, number>();
    for (const c of commands) {
      if (c.kind !== 'dispatch' || !c.block) continue;
      uniformBytes = Math.ceil(uniformBytes / align) * align;
      blockAt.set(c, uniformBytes);
      uniformBytes += c.block.length;
    }
    if (uniformBytes) {
      this.uniformCpu = new Uint8Array(Math.ceil(uniformBytes / 16) * 16);
      for (const [c, at] of blockAt) this.uniformCpu.set(c.block!, at);
      this.uniformBuffer = host.own(host.device.createBuffer({ size: this.uniformCpu.length, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST, label: `canet-gpu:${this.label}:uniforms` }));
      host.device.queue.writeBuffer(this.uniformBuffer, 0, this.uniformCpu);
      this.ownBuffers.push(this.uniformBuffer);
    }

    // ---- data written inside fn: zero fills become clears, the rest copies from a constant buffer
    const constants: { c: Extract<Command, { kind: 'write' }>; at: number }[] = [];
    let constantBytes = 0;
    for (const c of commands) {
      if (c.kind !== 'write' || c.data.every((v) => v === 0)) continue;
      constants.push({ c, at: constantBytes });
      constantBytes += Math.ceil(c.data.length / 4) * 4;
    }
    let constantBuffer: GPUBuffer | null = null;
    if (constantBytes) {
      const cpu = new Uint8Array(constantBytes);
      for (const { c, at } of constants) cpu.set(c.data, at);
      constantBuffer = host.own(host.device.createBuffer({ size: constantBytes, usage: BufferUsage.COPY_SRC | BufferUsage.COPY_DST, label: `canet-gpu:${this.label}:constants` }));
      host.device.queue.writeBuffer(constantBuffer, 0, cpu);
      this.ownBuffers.push(constantBuffer);
    }
    const constantAt = new Map(constants.map(({ c, at }) => [c, at] as const));

    // ---- the replay list
    const bindGroups = new Map<string, GPUBindGroup>();
    const ids = new Map<GPUBuffer, number>();
    const id = (b: GPUBuffer): number => ids.get(b) ?? (ids.set(b, ids.size), ids.size - 1);
    const pipelineIds = new Map<GPUComputePipeline, number>();
    const written = new Set<Tensor>();
    const names = new Set<string>();
    let dispatches = 0;
    let flops = 0;
    for (const c of commands) {
      switch (c.kind) {
        case 'dispatch': {
          const at = blockAt.get(c);
          const size = c.block?.length ?? 0;
          let pid = pipelineIds.get(c.entry.pipeline);
          if (pid === undefined) pipelineIds.set(c.entry.pipeline, (pid = pipelineIds.size));
          const key = `${pid}:${size}:${c.buffers.map((b, i) => `${id(b)}${c.ranges[i] ? `@${c.ranges[i]!.offset}+${c.ranges[i]!.size}` : ''}`).join(',')}`;
          let bindGroup = bindGroups.get(key);
          if (!bindGroup) bindGroups.set(key, (bindGroup = host.createBindGroup(c.entry, c.entry.name, at === undefined ? null : this.uniformBuffer, size, c.buffers, c.ranges)));
          const [x, y, z] = c.workgroups;
          this.steps.push({ kind: 'dispatch', pipeline: c.entry.pipeline, bindGroup, offsets: at === undefined ? null : [at], x, y, z, name: c.entry.name, flops: c.flops, bytes: c.bytes });
          if (c.repack && at !== undefined) this.refresh.push({ kind: 'repack', repack: c.repack, at, size });
          c.bindings.forEach((b) => b instanceof Tensor && external.has(b) && written.add(b));
          names.add(c.entry.name);
          dispatches++;
          flops += c.flops ?? 0;
          break;
        }
        case 'copy':
          this.steps.push({ kind: 'copy', src: c.src, srcOffset: c.srcOffset, dst: c.dst, dstOffset: c.dstOffset, size: c.size });
          // As copyBuffer at capture: the destination tensor's version advances, not the source's.
          if (c.dstTensor && external.has(c.dstTensor)) written.add(c.dstTensor);
          break;
        case 'write': {
          const at = constantAt.get(c);
          this.steps.push(at === undefined
            ? { kind: 'clear', dst: c.dst, offset: c.offset, size: Math.ceil(c.data.length / 4) * 4 }
            : { kind: 'copy', src: constantBuffer!, srcOffset: at, dst: c.dst, dstOffset: c.offset, size: Math.ceil(c.data.length / 4) * 4 });
          if (c.tensor && external.has(c.tensor)) written.add(c.tensor);
          break;
        }
        case 'textureToBuffer':
        case 'bufferToTexture':
          this.steps.push(c);
          break;
        case 'hook':
          this.refresh.push({ kind: 'hook', fn: c.fn });
          break;
      }
    }
    this.written = [...written];
    this.dispatches = dispatches;
    this.flops = flops;
    this.kernelNames = [...names];
  }

  /** Whether `run` would replay now; otherwise why not. */
  check(): string | null {
    if (this.disposedReason) return this.disposedReason;
    for (const t of this.external) if (t.disposed) return `${t.name} ${fmtShape(t.shape)}, which it reads or writes, was disposed`;
    for (const g of this.guards) {
      const why = g();
      if (why) return why;
    }
    return null;
  }

  /** The tensors the plan binds and that live outside it (parameters, inputs, results, caches). */
  get tensors(): readonly Tensor[] {
    return this.external;
  }

  /**
   * Replays the captured work into the engine's batch and submits it. `feeds` overwrite tensors
   * the plan reads (its inputs) first; each must have the tensor's element count.
   * @throws PlanInvalidError when a captured tensor was disposed, a guarded cache went stale or the
   * plan was disposed; EngineClosedError when the engine was destroyed or lost its device.
   */
  run(feeds?: readonly PlanFeed[]): void {
    this.host.assertOpen();
    const why = this.check();
    if (why) throw new PlanInvalidError(`${this.label}: cannot replay: ${why}; capture it again`);
    if (feeds) {
      for (const [t, data] of feeds) {
        check(t instanceof Tensor && this.externalSet.has(t), `${this.label}.run`, () => `${t instanceof Tensor ? t.name : String(t)} is not a tensor this plan reads`);
        check(data.length === t.size, `${this.label}.run`, () => `input ${t.name} ${fmtShape(t.shape)} takes ${t.size} values, got ${data.length} (a new size needs a new plan)`);
      }
      for (const [t, data] of feeds) this.host.writeTensor(t, data);
    }
    const cpu = this.uniformCpu;
    if (this.refresh.length) {
      let lo = Infinity;
      let hi = 0;
      for (const r of this.refresh) {
        if (r.kind === 'hook') r.fn();
        else {
          r.repack(cpu!, r.at);
          lo = Math.min(lo, r.at);
          hi = Math.max(hi, r.at + r.size);
        }
      }
      // Ordered after earlier submits on the queue, so a replay still in flight keeps its values.
      if (hi > lo) this.host.device.queue.writeBuffer(this.uniformBuffer!, lo, cpu!, lo, hi - lo);
    }
    const host = this.host;
    for (const s of this.steps) {
      if (s.kind === 'dispatch') {
        const pass = host.computePass(s.name, s.flops, s.bytes);
        pass.setPipeline(s.pipeline);
        if (s.offsets) pass.setBindGroup(0, s.bindGroup, s.offsets);
        else pass.setBindGroup(0, s.bindGroup);
        pass.dispatchWorkgroups(s.x, s.y, s.z);
        host.endTimedPass(pass);
      } else {
        const enc = host.encoderOutsidePass();
        if (s.kind === 'copy') enc.copyBufferToBuffer(s.src, s.srcOffset, s.dst, s.dstOffset, s.size);
        else if (s.kind === 'clear') enc.clearBuffer(s.dst, s.offset, s.size);
        else if (s.kind === 'textureToBuffer') enc.copyTextureToBuffer(s.source, s.destination, s.size);
        else enc.copyBufferToTexture(s.source, s.destination, s.size);
      }
    }
    for (const t of this.written) t.version++;
    host.countReplay(this.dispatches, this.flops, this.kernelNames);
    host.submit();
  }

  /**
   * Gives the plan's intermediate buffers back to the engine's pool and frees its result tensors
   * and uniform buffer (read the results first). Idempotent; `run` then throws.
   */
  dispose(): void {
    if (this.disposedReason) return;
    this.disposedReason = 'the plan was disposed';
    for (const b of this.claimed) this.host.returnClaimedBuffer(b);
    for (const b of this.ownBuffers) this.host.disown(b, true);
    for (const t of this.results) t.dispose();
  }
}

/**
 * The same call, many times, at the lowest CPU cost: op by op the first time (pipelines compile,
 * caches such as folded BatchNorms settle), captured the second, replayed from then on. A plan
 * that went stale (weights changed, a captured tensor disposed) is dropped and the cycle starts
 * again, so the caller never sees a PlanInvalidError. What `run` returns stays valid until the
 * next `run` or `dispose` (with a plan it is the same tensors every time).
 */
export class PlannedCall<T> {
  private plan: Plan<T> | null = null;
  private eager: Tensor[] = [];
  private callsSincePlan = 0;

  constructor(
    private readonly engine: Engine,
    private readonly fn: () => T,
    private readonly opts: CaptureOptions & { /** false: always op by op (for comparisons). */ capture?: boolean } = {},
  ) {}

  /** Whether the last `run` replayed a plan. */
  get replaying(): boolean {
    return this.plan !== null && this.callsSincePlan > 0;
  }

  run(): T {
    this.dropEager();
    if (this.plan) {
      if (this.plan.check() === null) {
        this.plan.run();
        this.callsSincePlan++;
        return this.plan.result;
      }
      this.plan.dispose();
      this.plan = null;
      this.callsSincePlan = 0;
    }
    if (this.opts.capture !== false && this.callsSincePlan > 0) {
      this.plan = this.engine.capture(this.fn, this.opts);
      this.callsSincePlan = 0;
      return this.plan.result;
    }
    const result = this.engine.scope(this.fn);
    this.eager = [...collectTensors(result, new Set(), (v): v is Tensor => v instanceof Tensor)];
    for (const t of this.eager) t.keep();
    this.callsSincePlan++;
    return result;
  }

  /** Frees the last results and the plan. */
  dispose(): void {
    this.dropEager();
    this.plan?.dispose();
    this.plan = null;
    this.callsSincePlan = 0;
  }

  private dropEager(): void {
    for (const t of this.eager) t.dispose();
    this.eager = [];
  }
}
