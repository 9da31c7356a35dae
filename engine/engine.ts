/**
 * The Engine: one GPUDevice, its buffer pool, the pipeline cache and the command encoder that ops
 * record into. Work is batched: ops append dispatches to one compute pass, `flush()` (or a read)
 * submits once. Nothing here is global, so several engines, or an engine on an application's own
 * device, coexist.
 *
 * The Engine is the public face; its concerns live in helpers it owns: tensor-store.ts (pools,
 * live tensors, scopes), dispatch.ts (pipelines, bind groups, encoder and pass, submit),
 * uniform-arena.ts (uniform blocks), profiling.ts (timestamp queries) and variants.ts (the
 * kernel variant registry, `engine.variants`). This file keeps the engine's state (open, closed,
 * lost), the tensor API, arenas, captures and the error checks.
 */
import type { TuningCase } from './tune.js';
import { EngineClosedError, FeatureError, GPUExecutionError, ShapeError, check, fmtShape } from './errors.js';
import { type Program, assembleWgsl } from './program.js';
import { type CaptureOptions, Plan, type PlanHost, Recorder, type PipelineRef } from './plan.js';
import { type ScopeContext, StackScopeContext, collectTensors } from './scope.js';
import { type ArenaBuffer, type DType, Tensor, dtypeBytes } from './tensor.js';
import { decodeHalf, encodeHalf } from './half-float.js';
import { copyTensor } from './ops/basic.js';
import { summarizeDevice } from './device-common.js';
import { type DispatchCounters, Dispatcher } from './dispatch.js';
import { type KernelTiming, Profiler } from './profiling.js';
import { TensorStore, checkShape, isTensor } from './tensor-store.js';
import { MapMode } from './gpu-constants.js';
import { type PreferView, VariantRegistry } from './variants.js';

export { BIND_GROUP_CACHE_LIMIT } from './dispatch.js';
export type { KernelTiming } from './profiling.js';

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU implementation (SwiftShader, WARP, llvmpipe). */
  isSoftware: boolean;
}

export interface EngineInit {
  device: GPUDevice;
  /** True when the engine created the device and so may destroy it. */
  ownsDevice: boolean;
  adapter?: AdapterSummary;
  scopeContext?: ScopeContext;
}

/** What `engine.stats()` reports: the memory of its tensors and pools, and the dispatcher's counters. */
export interface EngineStats extends DispatchCounters {
  liveTensors: number;
  /** Bytes of data in live tensors. */
  liveBytes: number;
  /** Bytes of the pool buffers behind them (bucket sizes). */
  liveBufferBytes: number;
  buffersCreated: number;
  poolHits: number;
  freeBuffers: number;
  freeBytes: number;
  pipelines: number;
}

type TensorData = ArrayLike<number> | Float32Array | Int32Array | Uint32Array;

/** Why an engine's device went away (see Engine.lost). */
export interface EngineLostInfo {
  /** WebGPU's reason: 'destroyed' (someone called device.destroy()) or 'unknown' (driver reset, GPU removed, ...). */
  reason: string;
  message: string;
}

export class Engine {
  readonly device: GPUDevice;
  readonly adapter: AdapterSummary;
  readonly features: ReadonlySet<string>;
  readonly limits: GPUSupportedLimits;
  /** While false, ops record no autograd graph (see noGrad). */
  gradEnabled = true;
  /**
   * This engine's kernel variants (engine/variants.ts): every choice ops make between kernels,
   * its candidates and default rule, the overrides set here (`variants.set('conv2d',
   * 'workgroup')`; a wrong family or value throws), the autotuner's measured choices, and
   * `describe()`: which variant runs and why.
   */
  readonly variants: VariantRegistry;
  /**
   * The overrides of `variants` as an object, by family (e.g. `prefer.bnReduce = 'workgroup'`;
   * `delete` clears one). Writes are checked as `variants.set` checks them.
   */
  get prefer(): PreferView {
    return this.variants.prefer();
  }
  /**
   * Measured kernel choices for this engine, by case key (e.g. a conv2d GEMM's geometry) ->
   * variant (e.g. '16x32@16': a register tile and workgroup size). Filled by `autotune`, saved and
   * loaded with `exportTuning`/`importTuning` (a JSON file in Node: `loadTuningFile`); ops fall
   * back to their per-adapter defaults for keys not in it. Held by `variants` (its `tuned`).
   */
  get tuned(): Map<string, string> {
    return this.variants.tuned;
  }
  /** @internal While autotune records a workload: the tunable cases ops met, by key. */
  tuningSink: Map<string, () => TuningCase> | null = null;

  private readonly ownsDevice: boolean;
  /** Tensors and their lifetime: pools, the live set, scopes. */
  private readonly store: TensorStore;
  /** Dispatch and caches: pipelines, bind groups, the batch's encoder and pass, uniforms. */
  private readonly dispatcher: Dispatcher;
  private pendingChecks: Promise<GPUExecutionError | null>[] = [];
  private closedReason: string | null = null;
  /** GPU objects the engine made besides pool buffers (textures, see `own`); destroy() frees them. */
  private readonly owned = new Set<{ destroy(): void }>();
  /** Rejects once the engine closes (device lost, or destroy()): GPU waits race it, so none hangs. */
  private readonly closedSignal: Promise<never>;
  private signalClosed: () => void = () => {};
  /**
   * Resolves when the device is lost while the engine is open: the application destroyed its own
   * device, or the driver reset or removed the GPU. It never rejects, and does not resolve for
   * engine.destroy(). By then every pending read, flush and sync has rejected with an
   * EngineClosedError naming the reason, and every later call throws one; create a new engine
   * (on a new device) to continue.
   */
  readonly lost: Promise<EngineLostInfo>;

  constructor(init: EngineInit) {
    this.device = init.device;
    this.ownsDevice = init.ownsDevice;
    this.adapter = init.adapter ?? summarizeDevice(init.device) ?? { vendor: '', architecture: '', device: '', description: 'application device', isSoftware: false };
    this.features = new Set(init.device.features as unknown as Iterable<string>);
    this.limits = init.device.limits;
    this.variants = new VariantRegistry(this);
    const report = (c: Promise<GPUExecutionError | null>): void => void this.pendingChecks.push(c);
    this.store = new TensorStore(this.device, this.limits, init.scopeContext ?? new StackScopeContext(), report);
    this.dispatcher = new Dispatcher({ device: this.device, limits: this.limits, report, usage: () => this.store.usage() });
    if (this.ownsDevice) {
      // Errors outside our error scopes (a bind group made from a pipeline that failed to
      // compile, say) are reported with the next flush instead of being printed by the runtime.
      this.device.addEventListener('uncapturederror', (ev) => {
        const error = (ev as GPUUncapturedErrorEvent).error;
        ev.preventDefault();
        this.pendingChecks.push(Promise.resolve(new GPUExecutionError(`GPU error: ${error.message}`, 'validation', [])));
      });
    }
    this.closedSignal = new Promise<never>((_, reject) => (this.signalClosed = () => reject(this.closedError())));
    this.closedSignal.catch(() => {}); // only ever awaited through races
    this.lost = new Promise<EngineLostInfo>((resolve) => {
      this.device.lost.then((info) => {
        if (this.closedReason) return; // engine.destroy() came first: not a loss
        this.closedReason = `GPU device lost (${info.reason}): ${info.message || 'no message'}`;
        this.dispatcher.dropRecorded(); // recorded work is gone with the device
        this.signalClosed();
        resolve({ reason: info.reason ?? 'unknown', message: info.message });
      });
    });
  }

  /** Null while usable; otherwise why the engine is closed (destroyed, device lost). */
  get closed(): string | null {
    return this.closedReason;
  }

  private closedError(): EngineClosedError {
    return new EngineClosedError(`canet-gpu engine is closed: ${this.closedReason}. Create a new engine.`);
  }

  /** @internal Throws the EngineClosedError once the engine is closed. */
  assertOpen(): void {
    if (this.closedReason) throw this.closedError();
  }

  /**
   * Awaits a GPU promise, but rejects with the EngineClosedError as soon as the device is lost or
   * the engine destroyed, whichever the runtime reports first (Dawn rejects a pending mapAsync
   * with a bare AbortError, sometimes before device.lost resolves).
   */
  private async unlessClosed<T>(p: Promise<T>): Promise<T> {
    try {
      const v = await Promise.race([p, this.closedSignal]);
      this.assertOpen();
      return v;
    } catch (e) {
      if (e instanceof EngineClosedError || this.closedReason) throw this.closedReason ? this.closedError() : e;
      // A failure caused by a loss whose event is still queued: give the event a moment to land.
      await Promise.race([this.closedSignal, new Promise((r) => setTimeout(r, 50))]).catch(() => {});
      throw this.closedReason ? this.closedError() : e;
    }
  }

  // ---------------------------------------------------------------- tensors

  /** Whether the device has `shader-f16`: f16 tensors and the f16 inference path (CANet.half()). */
  get hasF16(): boolean {
    return this.features.has('shader-f16');
  }

  /**
   * Throws a FeatureError naming `what`, this adapter and the missing feature unless the device
   * has `shader-f16` (requested at device creation wherever the adapter offers it).
   */
  requireF16(what: string): void {
    if (this.hasF16) return;
    const adapter = this.adapter.description || 'this adapter';
    throw new FeatureError(
      `${what}: f16 needs the WebGPU feature 'shader-f16', which the adapter '${adapter}' does not offer` +
        (/swiftshader/i.test(adapter) ? ` (SwiftShader has none; Mesa lavapipe does: createEngine({ software: 'lavapipe' }) or CANET_SOFTWARE_GPU=lavapipe)` : '') +
        (this.ownsDevice ? '' : ` (or the application's device was created without it: requiredFeatures: ['shader-f16'])`),
      'shader-f16',
      adapter,
    );
  }

  /** Uploads `data` as a tensor of `shape` (row-major). dtype follows the array type unless given. */
  tensor(data: TensorData, shape: readonly number[], dtype?: DType): Tensor {
    this.assertOpen();
    const dt: DType = dtype ?? (data instanceof Int32Array ? 'i32' : data instanceof Uint32Array ? 'u32' : 'f32');
    checkShape('tensor', shape);
    const size = shape.reduce((a, b) => a * b, 1);
    check(data.length === size, 'tensor', () => `data has ${data.length} elements but shape ${fmtShape(shape)} needs ${size}`);
    const t = this.empty(shape, dt);
    const Ctor = dt === 'f32' || dt === 'f16' ? Float32Array : dt === 'i32' ? Int32Array : Uint32Array;
    const typed = data instanceof Ctor ? data : Ctor.from(data as ArrayLike<number>);
    this.writeTensor(t, typed);
    return t;
  }

  /** Overwrites a tensor's data from the CPU. */
  writeTensor(t: Tensor, data: Float32Array | Int32Array | Uint32Array): void {
    this.assertOpen();
    check(data.length === t.size, 'writeTensor', () => `${t.name} ${fmtShape(t.shape)} has ${t.size} elements, data has ${data.length}`);
    // queue.writeBuffer runs before the pending encoder is submitted; submit it first so work
    // recorded earlier reads the old contents of this (possibly recycled) buffer.
    if (this.dispatcher.pending) this.submit();
    // f16 tensors take f32 values, rounded to binary16 here (padded to whole 4-byte words).
    if (t.dtype === 'f16') data = new Uint32Array(encodeHalf(data).buffer);
    if (data.length) this.device.queue.writeBuffer(t.buffer, t.offset, data.buffer, data.byteOffset, data.byteLength);
    if (data.length) this.dispatcher.recorder?.write(t.buffer, t.offset, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), t);
    t.version++;
  }

  /** A tensor with uninitialised contents (a recycled buffer holds old data). */
  empty(shape: readonly number[], dtype: DType = 'f32', name?: string): Tensor {
    this.assertOpen();
    checkShape('empty', shape);
    const size = shape.reduce((a, b) => a * b, 1);
    if (dtype === 'f16') this.requireF16('empty');
    const bytes = size * dtypeBytes(dtype);
    const maxBytes = Math.min(this.limits.maxStorageBufferBindingSize, this.limits.maxBufferSize);
    if (bytes > maxBytes)
      throw new ShapeError(`tensor ${name ?? ''}${fmtShape(shape)} needs ${bytes} bytes, over this adapter's maxStorageBufferBindingSize of ${maxBytes} bytes`);
    return this.store.track(new Tensor(this, [...shape], dtype, this.store.pool.acquire(bytes), name));
  }

  /** A copy of `t` (one copyBufferToBuffer). */
  copy(t: Tensor): Tensor {
    return copyTensor(t);
  }

  /** Called by Tensor.dispose. */
  releaseTensor(t: Tensor, buffer: GPUBuffer): void {
    this.store.release(t, buffer);
  }

  // ---------------------------------------------------------------- arenas

  /**
   * Tensors of the given shapes in one GPU buffer, each at an offset aligned for binding
   * (minStorageBufferOffsetAlignment), plus `whole`, a 1-D f32 tensor over the entire run (gaps
   * included): a kernel over `whole` touches every part in one dispatch, as the fused optimizer
   * step does. Zero-filled. The buffer returns to the pool when the last of these tensors is
   * disposed. Refused (ShapeError naming the limit) if the run exceeds one binding.
   */
  arena(shapes: readonly (readonly number[])[], names: readonly string[] = []): { whole: Tensor; parts: Tensor[] } {
    this.assertOpen();
    const offsets = this.store.arenaLayout(shapes);
    const total = offsets.pop()!;
    const arena: ArenaBuffer = { buffer: this.store.pool.acquire(total), members: 0 };
    const parts = shapes.map((shape, i) => this.arenaTensor(arena, offsets[i]!, shape, names[i]));
    const whole = this.arenaTensor(arena, 0, [total / 4], 'arena');
    this.fillZero(whole);
    return { whole, parts };
  }

  /**
   * Moves `tensors` (f32, of this engine) into one arena: their data is copied into slots of a new
   * buffer and each tensor from then on lives there (same object, same data). Returns the whole
   * run as a 1-D tensor, as `arena` does.
   */
  pack(tensors: readonly Tensor[]): Tensor {
    this.assertOpen();
    for (const t of tensors) check(t.engine === this && t.dtype === 'f32' && !t.disposed, 'pack', () => `${t.name} must be a live f32 tensor of this engine`);
    const offsets = this.store.arenaLayout(tensors.map((t) => t.shape));
    const total = offsets.pop()!;
    const arena: ArenaBuffer = { buffer: this.store.pool.acquire(total), members: 0 };
    const whole = this.arenaTensor(arena, 0, [total / 4], 'arena');
    // The gaps between slots must read as zeros for kernels over the whole run.
    this.fillZero(whole);
    tensors.forEach((t, i) => {
      this.copyBuffer(t, 0, arena.buffer, offsets[i]!, t.byteLength);
      const old = t.buffer;
      const oldArena = t.arena;
      if (!oldArena) this.store.pool.release(old);
      else if (--oldArena.members === 0) this.store.pool.release(oldArena.buffer);
      t.joinArena(arena, offsets[i]!);
    });
    return whole;
  }

  private arenaTensor(arena: ArenaBuffer, offset: number, shape: readonly number[], name?: string): Tensor {
    return this.store.track(new Tensor(this, [...shape], 'f32', arena.buffer, name, { arena, offset }));
  }

  private fillZero(t: Tensor): void {
    if (this.dispatcher.pending) this.submit();
    const zeros = new Uint8Array(Math.ceil(t.byteLength / 4) * 4);
    this.device.queue.writeBuffer(t.buffer, t.offset, zeros);
    this.dispatcher.recorder?.write(t.buffer, t.offset, zeros, t);
  }

  /** Reads a tensor back to the CPU. */
  async readTensor(t: Tensor): Promise<Float32Array | Int32Array | Uint32Array> {
    this.assertOpen();
    // Whole words: an f16 tensor of odd size ends half way through one (buffers are padded).
    const bytes = Math.ceil(t.byteLength / 4) * 4;
    const Ctor = t.dtype === 'f32' || t.dtype === 'f16' ? Float32Array : t.dtype === 'i32' ? Int32Array : Uint32Array;
    if (bytes === 0) return new Ctor(0);
    const staging = this.store.readPool.acquire(bytes);
    try {
      this.dispatcher.encoderOutsidePass().copyBufferToBuffer(t.buffer, t.offset, staging, 0, bytes);
      await this.flush();
      await this.unlessClosed(staging.mapAsync(MapMode.READ, 0, bytes));
      const raw = staging.getMappedRange(0, bytes).slice(0);
      staging.unmap();
      return t.dtype === 'f16' ? decodeHalf(new Uint16Array(raw), t.size) : new Ctor(raw);
    } finally {
      this.store.readPool.release(staging);
    }
  }

  // ---------------------------------------------------------------- scopes and grad mode

  /**
   * Runs `fn` and disposes every tensor it created except those in its result (tensors, arrays,
   * plain objects, Maps of tensors). Returned tensors move to the enclosing scope. Async-safe in
   * Node (AsyncLocalStorage); see scope.ts for browsers.
   */
  scope<T>(fn: () => T): T {
    return this.store.scope(fn);
  }

  /** Removes `t` from every enclosing scope (see Tensor.keep). */
  untrack(t: Tensor): void {
    this.store.untrack(t);
  }

  /** Runs `fn` with autograd recording off (inference). */
  noGrad<T>(fn: () => T): T {
    const prev = this.gradEnabled;
    this.gradEnabled = false;
    let result: T;
    try {
      result = fn();
    } catch (e) {
      this.gradEnabled = prev;
      throw e;
    }
    if (result instanceof Promise) return result.finally(() => (this.gradEnabled = prev)) as T;
    this.gradEnabled = prev;
    return result;
  }

  // ---------------------------------------------------------------- kernels

  /** @internal The WGSL the engine compiles for `program` (tests check the generated interface). */
  static wgslOf(program: Program): string {
    return assembleWgsl(program.shader());
  }

  /** Records one dispatch of `program` into the current batch. */
  run(program: Program): void {
    this.assertOpen();
    this.dispatcher.run(program);
  }

  /** @internal A bind group for a pipeline's layout: the uniform block (dynamic offset) and the storage buffers. */
  createBindGroup(entry: PipelineRef, label: string, uniformBuffer: GPUBuffer | null, blockSize: number, buffers: readonly GPUBuffer[], ranges: readonly ({ offset: number; size: number } | null)[]): GPUBindGroup {
    return this.dispatcher.createBindGroup(entry, label, uniformBuffer, blockSize, buffers, ranges);
  }

  /**
   * @internal The pass to record a dispatch of `name` into: the batch's open compute pass, or,
   * while profiling, a pass of its own with timestamps (end it with endTimedPass).
   */
  computePass(name: string, flops?: number, bytes?: number): GPUComputePassEncoder {
    return this.dispatcher.computePass(name, flops, bytes);
  }

  /** @internal Ends `pass` if it is a profiling pass of its own (see computePass). */
  endTimedPass(pass: GPUComputePassEncoder): void {
    this.dispatcher.endTimedPass(pass);
  }

  /**
   * Records a buffer-to-buffer copy (cheaper than a kernel: no pass, no bind group). Offsets are
   * bytes from the start of a tensor's data (its arena offset added) or of a raw buffer.
   */
  copyBuffer(src: Tensor | GPUBuffer, srcOffset: number, dst: Tensor | GPUBuffer, dstOffset: number, bytes: number): void {
    this.assertOpen();
    const encoder = this.dispatcher.encoderOutsidePass();
    const [sb, so] = src instanceof Tensor ? [src.buffer, src.offset + srcOffset] : [src, srcOffset];
    const [db, dO] = dst instanceof Tensor ? [dst.buffer, dst.offset + dstOffset] : [dst, dstOffset];
    if (bytes > 0) {
      encoder.copyBufferToBuffer(sb, so, db, dO, bytes);
      this.dispatcher.recorder?.copy(sb, so, db, dO, bytes, src instanceof Tensor ? src : null, dst instanceof Tensor ? dst : null);
    }
    if (dst instanceof Tensor) dst.version++;
  }

  /**
   * Records a texture-to-buffer copy into the current batch, after the work recorded so far (like
   * copyBuffer: the compute pass ends first, since copies live outside passes).
   */
  copyTextureToBuffer(source: GPUTexelCopyTextureInfo, destination: GPUTexelCopyBufferInfo, size: GPUExtent3DStrict): void {
    this.assertOpen();
    this.dispatcher.encoderOutsidePass().copyTextureToBuffer(source, destination, size);
    this.dispatcher.recorder?.textureToBuffer(source, destination, size);
  }

  /** Records a buffer-to-texture copy into the current batch (see copyTextureToBuffer). */
  copyBufferToTexture(source: GPUTexelCopyBufferInfo, destination: GPUTexelCopyTextureInfo, size: GPUExtent3DStrict): void {
    this.assertOpen();
    this.dispatcher.encoderOutsidePass().copyBufferToTexture(source, destination, size);
    this.dispatcher.recorder?.bufferToTexture(source, destination, size);
  }

  /**
   * Makes the engine the owner of a GPU object it created outside the pool (a texture): destroy()
   * destroys it. `disown` gives it back (or `destroyNow` frees it at once).
   */
  own<T extends { destroy(): void }>(resource: T): T {
    this.assertOpen();
    this.owned.add(resource);
    return resource;
  }

  /** Stops owning `resource`; with `destroyNow`, destroys it (after submitting work that may use it). */
  disown(resource: { destroy(): void }, destroyNow = false): void {
    if (!this.owned.delete(resource) || !destroyNow) return;
    // WebGPU defers destruction until submitted work is done, but work still being recorded
    // would fail validation at submit: submit it first.
    if (this.dispatcher.pending && !this.closedReason) this.submit();
    resource.destroy();
  }

  /** Number of GPU objects held through `own` (tests check they are released). */
  get ownedResources(): number {
    return this.owned.size;
  }

  // ---------------------------------------------------------------- captured plans

  /**
   * Runs `fn` (synchronously, as usual: its results are valid) and records the GPU work it does
   * into a Plan whose `run()` replays it with no JavaScript op code: one compute pass, one submit,
   * no allocation. Capture a steady-state call, after a warm-up call. See engine/plan.ts for what
   * is fixed at capture (buffers, written data) and what is read again at each replay (uniforms
   * given as functions, hooks).
   *
   * ```ts
   * const x = engine.empty([1, 512, 1024, 3]).keep();
   * const plan = engine.capture(() => model.segment(x));   // plan.result: the ids tensor
   * plan.run([[x, pixels]]);                                // new input, replayed
   * const ids = await plan.result.read();
   * ```
   * @throws Error for nested captures and for an asynchronous `fn`.
   */
  capture<T>(fn: () => T, opts?: CaptureOptions): Plan<T> {
    this.assertOpen();
    if (this.dispatcher.recorder) throw new Error('capture: captures do not nest (a plan is already being captured)');
    if (this.dispatcher.profiler) throw new Error('capture: not while profiling');
    const recorder = new Recorder();
    this.dispatcher.recorder = recorder;
    let result: T;
    try {
      result = this.scope(fn);
    } finally {
      this.dispatcher.recorder = null;
    }
    if (result instanceof Promise) {
      result.then((r) => collectTensors(r, new Set(), isTensor).forEach((t) => t.dispose()), () => {});
      throw new Error('capture: fn must be synchronous (it returned a Promise); read results after plan.run()');
    }
    const results = [...collectTensors(result, new Set(), isTensor)];
    for (const t of results) t.keep();
    return new Plan(this.planHost(), recorder, result, results, opts);
  }

  /** True while `capture` records. */
  get capturing(): boolean {
    return this.dispatcher.recorder !== null;
  }

  /**
   * Registers CPU work that must happen again at each replay of the plan being captured, at this
   * point of the call (an optimizer advancing its step count). Does nothing outside a capture.
   */
  onReplay(hook: () => void): void {
    this.dispatcher.recorder?.hook(hook);
  }

  /**
   * Registers a check that a replay of the plan being captured runs first: it returns why the plan
   * is stale (a cache derived from weights that changed since), or null. Does nothing outside a
   * capture.
   */
  onReplayCheck(check: () => string | null): void {
    this.dispatcher.recorder?.guards.push(check);
  }

  private planHost(): PlanHost {
    return {
      device: this.device,
      limits: this.limits,
      assertOpen: () => this.assertOpen(),
      liveTensors: () => this.store.live,
      claimFreeBuffer: (b) => this.store.pool.claim(b),
      returnClaimedBuffer: (b) => this.store.pool.release(b),
      createBindGroup: (...a) => this.createBindGroup(...a),
      computePass: (name, flops, bytes) => this.computePass(name, flops, bytes),
      endTimedPass: (pass) => this.endTimedPass(pass),
      encoderOutsidePass: () => this.dispatcher.encoderOutsidePass(),
      countReplay: (dispatches, flops, kernels) => {
        this.dispatcher.counters.dispatches += dispatches;
        this.dispatcher.counters.flops += flops;
        for (const k of kernels) this.dispatcher.batchKernels.add(k);
      },
      submit: () => this.submit(),
      own: (r) => this.own(r),
      disown: (r, now) => this.disown(r, now),
      writeTensor: (t, d) => this.writeTensor(t, d),
    };
  }

  /** Submits recorded work without waiting. Errors surface at the next flush() or read. */
  submit(): void {
    this.assertOpen();
    this.dispatcher.submit();
  }

  /** Submits recorded work and waits until the GPU reports errors for it (throws the first). */
  async flush(): Promise<void> {
    this.assertOpen();
    this.submit();
    const checks = this.pendingChecks;
    this.pendingChecks = [];
    const errors = (await this.unlessClosed(Promise.all(checks))).filter((e): e is GPUExecutionError => e !== null);
    if (errors.length) throw errors[0];
  }

  /** Waits until all submitted work has finished on the GPU. */
  async sync(): Promise<void> {
    await this.flush();
    await this.unlessClosed(this.device.queue.onSubmittedWorkDone());
  }

  /**
   * Runs `fn` with per-kernel GPU timing (timestamp queries; each dispatch gets its own pass, so
   * totals are a little higher than an untimed run). Needs the `timestamp-query` feature.
   */
  async profile<T>(fn: () => T | Promise<T>, capacity = 4096): Promise<{ result: T; kernels: KernelTiming[] }> {
    check(this.features.has('timestamp-query'), 'profile', () => `adapter has no timestamp-query feature`);
    await this.flush();
    capacity = Math.min(capacity, 4096); // WebGPU's limit on one query set
    const prof = new Profiler(this.device, capacity);
    this.dispatcher.profiler = prof;
    let result: T;
    try {
      result = await fn();
    } finally {
      this.dispatcher.profiler = null;
    }
    let kernels: KernelTiming[] = [];
    const timings = prof.resolve(() => this.dispatcher.encoderOutsidePass());
    if (timings) {
      await this.flush();
      kernels = await timings.read((p) => this.unlessClosed(p));
    }
    prof.destroy();
    return { result: result!, kernels };
  }

  // ---------------------------------------------------------------- lifetime

  stats(): EngineStats {
    const p = this.store.pool.stats();
    return {
      liveTensors: this.store.live.size,
      liveBytes: this.store.liveBytes,
      liveBufferBytes: p.liveBucketBytes,
      buffersCreated: p.buffersCreated,
      poolHits: p.poolHits,
      freeBuffers: p.freeBuffers,
      freeBytes: p.freeBytes,
      pipelines: this.dispatcher.pipelineCount,
      ...this.dispatcher.counters,
    };
  }

  /** Destroys pooled buffers nobody holds; returns the bytes given back. */
  trim(): number {
    this.dispatcher.clearBindGroups();
    return this.store.pool.trim() + this.store.readPool.trim();
  }

  /**
   * Releases every buffer the engine made. Destroys the device only if the engine created it;
   * an application's device stays alive and usable.
   */
  destroy(): void {
    if (this.closedReason === 'destroyed') return;
    if (this.dispatcher.pending && !this.closedReason) this.submit();
    this.dispatcher.dropRecorded();
    this.closedReason = 'destroyed';
    this.signalClosed();
    this.store.destroy();
    for (const r of this.owned) r.destroy();
    this.owned.clear();
    this.dispatcher.destroy();
    if (this.ownsDevice) this.device.destroy();
  }
}

