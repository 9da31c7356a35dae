/**
 * The Engine: one GPUDevice, its buffer pool, the pipeline cache and the command encoder that ops
 * record into. Work is batched: ops append dispatches to one compute pass, `flush()` (or a read)
 * submits once. Nothing here is global, so several engines, or an engine on an application's own
 * device, coexist.
 */
import type { TuningCase } from './tune.js';
import { EngineClosedError, FeatureError, GPUExecutionError, ShapeError, check, fmtShape } from './errors.js';
import { BufferPool, STORAGE_USAGE } from './pool.js';
import { BufferUsage, MapMode, ShaderStage } from './gpu-constants.js';
import { type Program, type ScalarType, assembleWgsl, programKey, uniformBlockSize, writeUniforms } from './program.js';
import { type CaptureOptions, Plan, type PlanHost, Recorder, type PipelineRef } from './plan.js';
import { Scope, type ScopeContext, StackScopeContext, collectTensors } from './scope.js';
import { type ArenaBuffer, type DType, Tensor, dtypeBytes } from './tensor.js';
import { decodeHalf, encodeHalf } from './half-float.js';
import { copyTensor } from './ops/basic.js';
import { summarizeDevice } from './device-common.js';

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

export interface EngineStats {
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
  dispatches: number;
  submits: number;
  bindGroupsCreated: number;
  /** Dispatches that reused a cached bind group. */
  bindGroupHits: number;
  /** Useful floating-point operations recorded (sum of the programs' declared flops). */
  flops: number;
  /**
   * Milliseconds this engine spent creating shader modules and pipelines (each is compiled once,
   * on first use, and blocks the calling thread: seconds on SwiftShader, so first calls are slow).
   */
  compileMs: number;
}

export interface KernelTiming {
  name: string;
  ms: number;
  flops?: number;
  bytes?: number;
}

type TensorData = ArrayLike<number> | Float32Array | Int32Array | Uint32Array;

/**
 * Uniform blocks for one submit: 64 KiB GPU chunks filled on the CPU, written once at submit.
 * Every submit fills the chunks from the first one in the same order, so a loop that records the
 * same work each step puts each block at the same (chunk, offset) each time: with the offset
 * dynamic, the bind groups that name the chunk can be cached and reused (see Engine.run).
 */
class UniformArena {
  static readonly CHUNK = 65536;
  private chunks: { gpu: GPUBuffer; cpu: Uint8Array<ArrayBuffer>; view: DataView }[] = [];
  private current = 0;
  private top = 0;
  private touched = false;
  constructor(private device: GPUDevice, private align: number) {}

  /**
   * Places a block of `size` bytes; returns its chunk (index, buffer, and a view of the CPU copy to
   * fill) and byte offset. The caller writes the values at `offset` in `view` before the upload.
   */
  reserve(size: number): { index: number; buffer: GPUBuffer; offset: number; view: DataView; bytes: Uint8Array } {
    let at = this.touched ? Math.ceil(this.top / this.align) * this.align : 0;
    if (at + size > UniformArena.CHUNK) {
      this.current++;
      at = 0;
    }
    let chunk = this.chunks[this.current];
    if (!chunk) {
      const cpu = new Uint8Array(UniformArena.CHUNK);
      chunk = {
        gpu: this.device.createBuffer({ size: UniformArena.CHUNK, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST, label: 'canet-gpu:uniforms' }),
        cpu,
        view: new DataView(cpu.buffer),
      };
      this.chunks.push(chunk);
    }
    this.top = at + size;
    this.touched = true;
    return { index: this.current, buffer: chunk.gpu, offset: at, view: chunk.view, bytes: chunk.cpu };
  }

  /** Writes this batch's blocks. WebGPU orders the writes after earlier submits, so chunks are reusable at once. */
  upload(queue: GPUQueue): void {
    if (!this.touched) return;
    for (let i = 0; i <= this.current; i++) {
      const c = this.chunks[i]!;
      const bytes = i < this.current ? UniformArena.CHUNK : Math.ceil(this.top / 4) * 4;
      queue.writeBuffer(c.gpu, 0, c.cpu, 0, bytes);
    }
    this.current = 0;
    this.top = 0;
    this.touched = false;
  }

  destroy(): void {
    for (const c of this.chunks) c.gpu.destroy();
    this.chunks = [];
    this.current = 0;
    this.top = 0;
    this.touched = false;
  }
}

/** A compiled kernel: its pipeline, explicit bind group layout, and its declared interface. */
interface PipelineEntry extends PipelineRef {
  layout: GPUBindGroupLayout;
  /** writes[i]: storage binding i + 1 is read_write (its tensor's version advances). */
  writes: boolean[];
  /** Declared uniforms in struct order. */
  uniformNames: string[];
  uniformTypes: ScalarType[];
  /** Declared storage bindings in binding order. */
  bindingNames: string[];
  /** Bytes of the uniform block (0: no uniforms). */
  blockSize: number;
}

/**
 * Bind groups kept at most (a loop with fixed shapes needs a few hundred). Past it the least
 * recently used one goes: clearing the whole cache instead made the next call of a steady loop
 * recreate every bind group it had hit before the clear (a flaky steady-state test showed it).
 */
export const BIND_GROUP_CACHE_LIMIT = 4096;

/** Why an engine's device went away (see Engine.lost). */
export interface EngineLostInfo {
  /** WebGPU's reason: 'destroyed' (someone called device.destroy()) or 'unknown' (driver reset, GPU removed, ...). */
  reason: string;
  message: string;
}

interface Profiler {
  querySet: GPUQuerySet;
  capacity: number;
  entries: { name: string; flops?: number; bytes?: number }[];
}

export class Engine {
  readonly device: GPUDevice;
  readonly adapter: AdapterSummary;
  readonly features: ReadonlySet<string>;
  readonly limits: GPUSupportedLimits;
  /** While false, ops record no autograd graph (see noGrad). */
  gradEnabled = true;
  /**
   * Kernel variant overrides for this engine, by name (e.g. `bnReduce: 'workgroup'`; `conv2d`,
   * `convTranspose`, `depthwise`: 'workgroup' or 'register', see the README); ops pick by adapter
   * otherwise. For tests, which run every variant, and for tuning.
   */
  readonly prefer: Record<string, string> = {};
  /**
   * Measured kernel choices for this engine, by case key (e.g. a conv2d GEMM's geometry) ->
   * variant (e.g. '16x32@16': a register tile and workgroup size). Filled by `autotune`, saved and
   * loaded with `exportTuning`/`importTuning` (a JSON file in Node: `loadTuningFile`); ops fall
   * back to their per-adapter defaults for keys not in it.
   */
  readonly tuned = new Map<string, string>();
  /** @internal While autotune records a workload: the tunable cases ops met, by key. */
  tuningSink: Map<string, () => TuningCase> | null = null;

  private readonly ownsDevice: boolean;
  private readonly pool: BufferPool;
  private readonly readPool: BufferPool;
  private readonly uniforms: UniformArena;
  private readonly pipelines = new Map<string, PipelineEntry>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private readonly scopes: ScopeContext;
  private readonly live = new Set<Tensor>();
  private liveBytes = 0;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private timedPass: GPUComputePassEncoder | null = null;
  /** While `capture` runs: what the engine records, for the plan. */
  private recorder: Recorder | null = null;
  private batchKernels = new Set<string>();
  private pendingChecks: Promise<GPUExecutionError | null>[] = [];
  private counters = { dispatches: 0, submits: 0, bindGroupsCreated: 0, bindGroupHits: 0, flops: 0, compileMs: 0 };
  private profiler: Profiler | null = null;
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
    this.scopes = init.scopeContext ?? new StackScopeContext();
    this.pool = new BufferPool(this.device, STORAGE_USAGE, 'canet-gpu', (d) => this.createBuffer(d));
    this.readPool = new BufferPool(this.device, BufferUsage.MAP_READ | BufferUsage.COPY_DST, 'canet-gpu:readback', (d) => this.createBuffer(d));
    this.uniforms = new UniformArena(this.device, this.limits.minUniformBufferOffsetAlignment);
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
        this.encoder = null; // recorded work is gone with the device
        this.pass = null;
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
    if (this.encoder) this.submit();
    // f16 tensors take f32 values, rounded to binary16 here (padded to whole 4-byte words).
    if (t.dtype === 'f16') data = new Uint32Array(encodeHalf(data).buffer);
    if (data.length) this.device.queue.writeBuffer(t.buffer, t.offset, data.buffer, data.byteOffset, data.byteLength);
    if (data.length) this.recorder?.write(t.buffer, t.offset, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), t);
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
    const buffer = this.pool.acquire(bytes);
    const t = new Tensor(this, [...shape], dtype, buffer, name);
    this.live.add(t);
    this.liveBytes += t.byteLength;
    this.scopes.current()?.tensors.add(t);
    return t;
  }

  /**
   * Pool misses land here: a new GPU buffer, with out-of-memory reported at the next flush. A
   * buffer whose allocation failed is invalid, so it is discarded rather than pooled: later work
   * gets a fresh allocation instead of inheriting the failure.
   */
  private createBuffer(desc: GPUBufferDescriptor): GPUBuffer {
    const usage = this.usage();
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer(desc);
    this.pendingChecks.push(
      this.device.popErrorScope().then((e) => {
        if (!e) return null;
        if (!this.pool.discard(buffer)) this.readPool.discard(buffer);
        return new GPUExecutionError(`out of GPU memory allocating a buffer of ${desc.size} bytes (${desc.label}); the engine held ${usage}; engine.trim() frees the pool: ${e.message}`, 'out-of-memory', []);
      }),
    );
    return buffer;
  }

  /** The engine's GPU memory in words, for out-of-memory messages. */
  private usage(): string {
    const p = this.pool.stats();
    const r = this.readPool.stats();
    return `${p.liveBucketBytes} bytes in ${this.live.size} live tensors and ${p.freeBytes + r.freeBytes + r.liveBucketBytes} bytes in ${p.freeBuffers + r.freeBuffers + r.liveBuffers} pooled buffers`;
  }

  /** A copy of `t` (one copyBufferToBuffer). */
  copy(t: Tensor): Tensor {
    return copyTensor(t);
  }

  /** Called by Tensor.dispose. */
  releaseTensor(t: Tensor, buffer: GPUBuffer): void {
    if (!this.live.delete(t)) return;
    this.liveBytes -= t.byteLength;
    // Work already recorded may still use this buffer; that is safe: the next user of the buffer
    // records after it in the same encoder, and uploads submit pending work first.
    const arena = t.arena;
    if (!arena) this.pool.release(buffer);
    else if (--arena.members === 0) this.pool.release(arena.buffer);
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
    const offsets = this.arenaLayout(shapes);
    const total = offsets.pop()!;
    const arena: ArenaBuffer = { buffer: this.pool.acquire(total), members: 0 };
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
    const offsets = this.arenaLayout(tensors.map((t) => t.shape));
    const total = offsets.pop()!;
    const arena: ArenaBuffer = { buffer: this.pool.acquire(total), members: 0 };
    const whole = this.arenaTensor(arena, 0, [total / 4], 'arena');
    // The gaps between slots must read as zeros for kernels over the whole run.
    this.fillZero(whole);
    tensors.forEach((t, i) => {
      this.copyBuffer(t, 0, arena.buffer, offsets[i]!, t.byteLength);
      const old = t.buffer;
      const oldArena = t.arena;
      if (!oldArena) this.pool.release(old);
      else if (--oldArena.members === 0) this.pool.release(oldArena.buffer);
      t.joinArena(arena, offsets[i]!);
    });
    return whole;
  }

  /** Byte offsets of arena slots for `shapes`, then the total size (last entry). */
  private arenaLayout(shapes: readonly (readonly number[])[]): number[] {
    const align = Math.max(256, this.limits.minStorageBufferOffsetAlignment);
    const offsets: number[] = [];
    let at = 0;
    for (const shape of shapes) {
      checkShape('arena', shape);
      offsets.push(at);
      const bytes = shape.reduce((a, b) => a * b, 1) * 4;
      at += Math.ceil(Math.max(16, bytes) / align) * align;
    }
    const maxBytes = Math.min(this.limits.maxStorageBufferBindingSize, this.limits.maxBufferSize);
    if (at > maxBytes) throw new ShapeError(`arena of ${shapes.length} tensors needs ${at} bytes, over this adapter's maxStorageBufferBindingSize of ${maxBytes} bytes; split it`);
    offsets.push(Math.max(at, 16));
    return offsets;
  }

  private arenaTensor(arena: ArenaBuffer, offset: number, shape: readonly number[], name?: string): Tensor {
    const t = new Tensor(this, [...shape], 'f32', arena.buffer, name, { arena, offset });
    this.live.add(t);
    this.liveBytes += t.byteLength;
    this.scopes.current()?.tensors.add(t);
    return t;
  }

  private fillZero(t: Tensor): void {
    if (this.encoder) this.submit();
    const zeros = new Uint8Array(Math.ceil(t.byteLength / 4) * 4);
    this.device.queue.writeBuffer(t.buffer, t.offset, zeros);
    this.recorder?.write(t.buffer, t.offset, zeros, t);
  }

  /** Reads a tensor back to the CPU. */
  async readTensor(t: Tensor): Promise<Float32Array | Int32Array | Uint32Array> {
    this.assertOpen();
    // Whole words: an f16 tensor of odd size ends half way through one (buffers are padded).
    const bytes = Math.ceil(t.byteLength / 4) * 4;
    const Ctor = t.dtype === 'f32' || t.dtype === 'f16' ? Float32Array : t.dtype === 'i32' ? Int32Array : Uint32Array;
    if (bytes === 0) return new Ctor(0);
    const staging = this.readPool.acquire(bytes);
    try {
      this.endPass();
      this.ensureEncoder().copyBufferToBuffer(t.buffer, t.offset, staging, 0, bytes);
      await this.flush();
      await this.unlessClosed(staging.mapAsync(MapMode.READ, 0, bytes));
      const raw = staging.getMappedRange(0, bytes).slice(0);
      staging.unmap();
      return t.dtype === 'f16' ? decodeHalf(new Uint16Array(raw), t.size) : new Ctor(raw);
    } finally {
      this.readPool.release(staging);
    }
  }

  // ---------------------------------------------------------------- scopes and grad mode

  /**
   * Runs `fn` and disposes every tensor it created except those in its result (tensors, arrays,
   * plain objects, Maps of tensors). Returned tensors move to the enclosing scope. Async-safe in
   * Node (AsyncLocalStorage); see scope.ts for browsers.
   */
  scope<T>(fn: () => T): T {
    const scope = new Scope(this.scopes.current());
    const finish = (result: Awaited<T> | T, failed: boolean): void => {
      const kept = failed ? new Set<Tensor>() : collectTensors(result, new Set(), isTensor);
      for (const t of scope.tensors) {
        if (kept.has(t)) scope.parent?.tensors.add(t);
        else t.dispose();
      }
      scope.tensors.clear();
    };
    let result: T;
    try {
      result = this.scopes.run(scope, fn);
    } catch (e) {
      finish(undefined as T, true);
      throw e;
    }
    if (result instanceof Promise)
      return result.then(
        (r) => (finish(r, false), r),
        (e) => {
          finish(undefined as T, true);
          throw e;
        },
      ) as T;
    finish(result, false);
    return result;
  }

  /** Removes `t` from every enclosing scope (see Tensor.keep). */
  untrack(t: Tensor): void {
    for (let s = this.scopes.current(); s; s = s.parent) s.tensors.delete(t);
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

  private ensureEncoder(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: 'canet-gpu:batch' });
    return this.encoder;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  /** The compiled pipeline of `program` (key: its cache key); builds the WGSL only on a miss. */
  private pipeline(key: string, program: Program): PipelineEntry {
    const cached = this.pipelines.get(key);
    if (cached) return cached;
    const spec = program.shader();
    const code = assembleWgsl(spec);
    const uniforms = Object.entries(spec.uniforms ?? {});
    const uniformNames = uniforms.map(([n]) => n);
    const uniformTypes = uniforms.map(([, t]) => t);
    const bindingNames = Object.keys(spec.bindings);
    const writes = Object.values(spec.bindings).map((b) => b.access === 'read_write');
    const blockSize = uniforms.length ? uniformBlockSize(uniforms.length) : 0;
    // The values must name exactly the declared interface (checked once per pipeline: a program
    // gives the same names on every call with the same key).
    const given = Object.keys(program.uniforms ?? {});
    const missing = uniformNames.filter((n) => !given.includes(n));
    const extra = given.filter((n) => !uniformNames.includes(n));
    if (missing.length || extra.length) throw new Error(`kernel ${program.name}: uniforms declared [${uniformNames.join(', ')}], given [${given.join(', ')}]`);
    const givenBindings = Object.keys(program.bindings);
    if (givenBindings.length !== bindingNames.length || bindingNames.some((n) => !(n in program.bindings)))
      throw new Error(`kernel ${program.name}: bindings declared [${bindingNames.join(', ')}], given [${givenBindings.join(', ')}]`);
    // An explicit layout (not 'auto'): the uniform block takes a dynamic offset, so one bind
    // group serves the same buffers whatever offset this submit's block got.
    const entries: GPUBindGroupLayoutEntry[] = [];
    if (blockSize) entries.push({ binding: 0, visibility: ShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } });
    writes.forEach((w, i) => entries.push({ binding: i + 1, visibility: ShaderStage.COMPUTE, buffer: { type: w ? 'storage' : 'read-only-storage' } }));
    const t0 = performance.now();
    this.device.pushErrorScope('validation');
    const layout = this.device.createBindGroupLayout({ entries, label: program.name });
    const module = this.device.createShaderModule({ code, label: program.name });
    const pipeline = this.device.createComputePipeline({
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout], label: program.name }),
      compute: { module, entryPoint: 'main' },
      label: program.name,
    });
    this.counters.compileMs += performance.now() - t0;
    const entry: PipelineEntry = { pipeline, layout, writes, uniformNames, uniformTypes, bindingNames, blockSize, name: program.name };
    this.pendingChecks.push(
      this.device.popErrorScope().then((e) => {
        if (!e) return null;
        // Forget the broken pipeline so a later call compiles again (and reports again).
        if (this.pipelines.get(key) === entry) this.pipelines.delete(key);
        return new GPUExecutionError(`kernel ${program.name} failed to compile: ${e.message}`, 'validation', [program.name]);
      }),
    );
    this.pipelines.set(key, entry);
    return entry;
  }

  /** @internal The WGSL the engine compiles for `program` (tests check the generated interface). */
  static wgslOf(program: Program): string {
    return assembleWgsl(program.shader());
  }

  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = this.nextBufferId++));
    return id;
  }

  /** Records one dispatch of `program` into the current batch. */
  run(program: Program): void {
    this.assertOpen();
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension;
    const [x, y = 1, z = 1] = program.dispatch;
    if (x === 0 || y === 0 || z === 0) return;
    if (x > maxDim || y > maxDim || z > maxDim)
      throw new ShapeError(`kernel ${program.name}: dispatch [${x}, ${y}, ${z}] exceeds maxComputeWorkgroupsPerDimension (${maxDim})`);
    const programId = programKey(program);
    const entry = this.pipeline(programId, program);
    const bindings = entry.bindingNames.map((n) => program.bindings[n]!);
    const buffers = bindings.map((b) => (b instanceof Tensor ? b.buffer : b));
    // Arena tensors bind their own range; the others the whole pool buffer, as the kernels expect.
    const ranges = bindings.map((b) => (b instanceof Tensor && b.arena ? { offset: b.offset, size: Math.ceil(Math.max(16, b.byteLength) / 16) * 16 } : null));
    const blockSize = entry.blockSize;
    let uniform: ReturnType<UniformArena['reserve']> | null = null;
    if (blockSize) {
      uniform = this.uniforms.reserve(blockSize);
      writeUniforms(program.name, uniform.view, uniform.offset, entry.uniformNames, entry.uniformTypes, program.uniforms!);
    }
    // Same pipeline, same buffers, same uniform chunk and block size: the same bind group.
    let key = `${programId}#${uniform ? `${uniform.index}:${blockSize}` : '-'}`;
    buffers.forEach((b, i) => (key += `,${this.bufferId(b)}${ranges[i] ? `@${ranges[i]!.offset}+${ranges[i]!.size}` : ''}`));
    let bindGroup = this.bindGroups.get(key);
    if (bindGroup) {
      this.counters.bindGroupHits++;
      // Map order is insertion order: re-inserting a hit keeps the oldest entry the least recently used.
      this.bindGroups.delete(key);
      this.bindGroups.set(key, bindGroup);
    } else {
      bindGroup = this.createBindGroup(entry, program.name, uniform ? uniform.buffer : null, blockSize, buffers, ranges);
      if (this.bindGroups.size >= BIND_GROUP_CACHE_LIMIT) this.bindGroups.delete(this.bindGroups.keys().next().value!);
      this.bindGroups.set(key, bindGroup);
    }
    // Kernels write their outputs in place: advance the versions (caches derived from a tensor,
    // such as a folded BatchNorm, compare them).
    bindings.forEach((b, i) => {
      if (entry.writes[i] && b instanceof Tensor) b.version++;
    });
    if (this.recorder) {
      // Blocks with values given as functions are packed again at each replay.
      const values = program.uniforms;
      const dynamic = values !== undefined && Object.values(values).some((v) => typeof v === 'function');
      this.recorder.dispatch({
        entry, buffers, ranges, bindings,
        block: uniform ? uniform.bytes.slice(uniform.offset, uniform.offset + blockSize) : null,
        repack: dynamic ? (bytes, at) => writeUniforms(program.name, new DataView(bytes.buffer, bytes.byteOffset), at, entry.uniformNames, entry.uniformTypes, values) : null,
        workgroups: [x, y, z], flops: program.flops, bytes: program.bytes,
      });
    }
    const pass = this.computePass(program.name, program.flops, program.bytes);
    pass.setPipeline(entry.pipeline);
    if (uniform) pass.setBindGroup(0, bindGroup, [uniform.offset]);
    else pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    this.endTimedPass(pass);
    this.batchKernels.add(program.name);
    this.counters.dispatches++;
    this.counters.flops += program.flops ?? 0;
  }

  /** @internal A bind group for a pipeline's layout: the uniform block (dynamic offset) and the storage buffers. */
  createBindGroup(entry: PipelineRef, label: string, uniformBuffer: GPUBuffer | null, blockSize: number, buffers: readonly GPUBuffer[], ranges: readonly ({ offset: number; size: number } | null)[]): GPUBindGroup {
    const e = entry as PipelineEntry;
    const entries: GPUBindGroupEntry[] = [];
    if (uniformBuffer) entries.push({ binding: 0, resource: { buffer: uniformBuffer, offset: 0, size: blockSize } });
    buffers.forEach((buffer, i) => entries.push({ binding: i + 1, resource: ranges[i] ? { buffer, ...ranges[i]! } : { buffer } }));
    this.counters.bindGroupsCreated++;
    return this.device.createBindGroup({ layout: e.layout, entries, label });
  }

  /**
   * @internal The pass to record a dispatch of `name` into: the batch's open compute pass, or,
   * while profiling, a pass of its own with timestamps (end it with endTimedPass).
   */
  computePass(name: string, flops?: number, bytes?: number): GPUComputePassEncoder {
    const prof = this.profiler;
    if (prof !== null && prof.entries.length * 2 < prof.capacity) {
      this.endPass();
      const i = prof.entries.length;
      prof.entries.push({ name, flops, bytes });
      this.timedPass = this.ensureEncoder().beginComputePass({
        label: name,
        timestampWrites: { querySet: prof.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
      });
      return this.timedPass;
    }
    return (this.pass ??= this.ensureEncoder().beginComputePass({ label: 'canet-gpu:ops' }));
  }

  /** @internal Ends `pass` if it is a profiling pass of its own (see computePass). */
  endTimedPass(pass: GPUComputePassEncoder): void {
    if (pass !== this.timedPass) return;
    pass.end();
    this.timedPass = null;
  }

  /**
   * Records a buffer-to-buffer copy (cheaper than a kernel: no pass, no bind group). Offsets are
   * bytes from the start of a tensor's data (its arena offset added) or of a raw buffer.
   */
  copyBuffer(src: Tensor | GPUBuffer, srcOffset: number, dst: Tensor | GPUBuffer, dstOffset: number, bytes: number): void {
    this.assertOpen();
    this.endPass();
    const [sb, so] = src instanceof Tensor ? [src.buffer, src.offset + srcOffset] : [src, srcOffset];
    const [db, dO] = dst instanceof Tensor ? [dst.buffer, dst.offset + dstOffset] : [dst, dstOffset];
    if (bytes > 0) {
      this.ensureEncoder().copyBufferToBuffer(sb, so, db, dO, bytes);
      this.recorder?.copy(sb, so, db, dO, bytes, src instanceof Tensor ? src : null, dst instanceof Tensor ? dst : null);
    }
    if (dst instanceof Tensor) dst.version++;
  }

  /**
   * Records a texture-to-buffer copy into the current batch, after the work recorded so far (like
   * copyBuffer: the compute pass ends first, since copies live outside passes).
   */
  copyTextureToBuffer(source: GPUTexelCopyTextureInfo, destination: GPUTexelCopyBufferInfo, size: GPUExtent3DStrict): void {
    this.assertOpen();
    this.endPass();
    this.ensureEncoder().copyTextureToBuffer(source, destination, size);
    this.recorder?.textureToBuffer(source, destination, size);
  }

  /** Records a buffer-to-texture copy into the current batch (see copyTextureToBuffer). */
  copyBufferToTexture(source: GPUTexelCopyBufferInfo, destination: GPUTexelCopyTextureInfo, size: GPUExtent3DStrict): void {
    this.assertOpen();
    this.endPass();
    this.ensureEncoder().copyBufferToTexture(source, destination, size);
    this.recorder?.bufferToTexture(source, destination, size);
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
    if (this.encoder && !this.closedReason) this.submit();
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
    if (this.recorder) throw new Error('capture: captures do not nest (a plan is already being captured)');
    if (this.profiler) throw new Error('capture: not while profiling');
    const recorder = new Recorder();
    this.recorder = recorder;
    let result: T;
    try {
      result = this.scope(fn);
    } finally {
      this.recorder = null;
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
    return this.recorder !== null;
  }

  /**
   * Registers CPU work that must happen again at each replay of the plan being captured, at this
   * point of the call (an optimizer advancing its step count). Does nothing outside a capture.
   */
  onReplay(hook: () => void): void {
    this.recorder?.hook(hook);
  }

  /**
   * Registers a check that a replay of the plan being captured runs first: it returns why the plan
   * is stale (a cache derived from weights that changed since), or null. Does nothing outside a
   * capture.
   */
  onReplayCheck(check: () => string | null): void {
    this.recorder?.guards.push(check);
  }

  private planHost(): PlanHost {
    return {
      device: this.device,
      limits: this.limits,
      assertOpen: () => this.assertOpen(),
      liveTensors: () => this.live,
      claimFreeBuffer: (b) => this.pool.claim(b),
      returnClaimedBuffer: (b) => this.pool.release(b),
      createBindGroup: (...a) => this.createBindGroup(...a),
      computePass: (name, flops, bytes) => this.computePass(name, flops, bytes),
      endTimedPass: (pass) => this.endTimedPass(pass),
      encoderOutsidePass: () => (this.endPass(), this.ensureEncoder()),
      countReplay: (dispatches, flops, kernels) => {
        this.counters.dispatches += dispatches;
        this.counters.flops += flops;
        for (const k of kernels) this.batchKernels.add(k);
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
    if (!this.encoder) return;
    this.endPass();
    const kernels = [...this.batchKernels];
    this.batchKernels.clear();
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    this.uniforms.upload(this.device.queue);
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.counters.submits++;
    const validation = this.device.popErrorScope();
    const oom = this.device.popErrorScope();
    this.pendingChecks.push(
      Promise.all([validation, oom]).then(([v, o]) => {
        const e = v ?? o;
        if (!e) return null;
        const what = v ? 'validation' : `out-of-memory (the engine holds ${this.usage()}; engine.trim() frees the pool)`;
        return new GPUExecutionError(`GPU ${what} error in a batch running [${kernels.join(', ')}]: ${e.message}`, v ? 'validation' : 'out-of-memory', kernels);
      }),
    );
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
    const querySet = this.device.createQuerySet({ type: 'timestamp', count: capacity, label: 'canet-gpu:profile' });
    this.profiler = { querySet, capacity, entries: [] };
    let result: T;
    const prof = this.profiler;
    try {
      result = await fn();
    } finally {
      this.profiler = null;
    }
    const n = prof.entries.length * 2;
    const kernels: KernelTiming[] = [];
    if (n > 0) {
      const resolve = this.device.createBuffer({ size: n * 8, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
      const staging = this.device.createBuffer({ size: n * 8, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
      this.endPass();
      const enc = this.ensureEncoder();
      enc.resolveQuerySet(querySet, 0, n, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, staging, 0, n * 8);
      await this.flush();
      await this.unlessClosed(staging.mapAsync(MapMode.READ));
      const ts = new BigInt64Array(staging.getMappedRange().slice(0));
      staging.unmap();
      prof.entries.forEach((e, i) => kernels.push({ ...e, ms: Number(ts[2 * i + 1]! - ts[2 * i]!) / 1e6 }));
      resolve.destroy();
      staging.destroy();
    }
    querySet.destroy();
    return { result: result!, kernels };
  }

  // ---------------------------------------------------------------- lifetime

  stats(): EngineStats {
    const p = this.pool.stats();
    return {
      liveTensors: this.live.size,
      liveBytes: this.liveBytes,
      liveBufferBytes: p.liveBucketBytes,
      buffersCreated: p.buffersCreated,
      poolHits: p.poolHits,
      freeBuffers: p.freeBuffers,
      freeBytes: p.freeBytes,
      pipelines: this.pipelines.size,
      ...this.counters,
    };
  }

  /** Destroys pooled buffers nobody holds; returns the bytes given back. */
  trim(): number {
    this.bindGroups.clear();
    return this.pool.trim() + this.readPool.trim();
  }

  /**
   * Releases every buffer the engine made. Destroys the device only if the engine created it;
   * an application's device stays alive and usable.
   */
  destroy(): void {
    if (this.closedReason === 'destroyed') return;
    if (this.encoder && !this.closedReason) this.submit();
    this.encoder = null;
    this.pass = null;
    this.timedPass = null;
    this.closedReason = 'destroyed';
    this.signalClosed();
    for (const t of [...this.live]) t.dispose();
    this.pool.destroyAll();
    this.readPool.destroyAll();
    this.uniforms.destroy();
    for (const r of this.owned) r.destroy();
    this.owned.clear();
    this.pipelines.clear();
    this.bindGroups.clear();
    if (this.ownsDevice) this.device.destroy();
  }
}

function isTensor(v: unknown): v is Tensor {
  return v instanceof Tensor;
}

function checkShape(op: string, shape: readonly number[]): void {
  check(Array.isArray(shape) && shape.every((d) => Number.isInteger(d) && d >= 0), op, () => `shape must be non-negative integers, got ${JSON.stringify(shape)}`);
}
