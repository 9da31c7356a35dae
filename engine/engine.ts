/**
 * The Engine: one GPUDevice, its buffer pool, the pipeline cache and the command encoder that ops
 * record into. Work is batched: ops append dispatches to one compute pass, `flush()` (or a read)
 * submits once. Nothing here is global, so several engines, or an engine on an application's own
 * device, coexist.
 */
import { EngineClosedError, GPUExecutionError, ShapeError, check, fmtShape } from './errors.js';
import { BufferPool, STORAGE_USAGE } from './pool.js';
import { BufferUsage, MapMode } from './gpu-constants.js';
import { type Program, assembleWgsl, packUniforms, programKey } from './program.js';
import { Scope, type ScopeContext, StackScopeContext, collectTensors } from './scope.js';
import { type DType, Tensor } from './tensor.js';
import { copyTensor } from './ops/basic.js';

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
  /** Useful floating-point operations recorded (sum of the programs' declared flops). */
  flops: number;
}

export interface KernelTiming {
  name: string;
  ms: number;
  flops?: number;
  bytes?: number;
}

type TensorData = ArrayLike<number> | Float32Array | Int32Array | Uint32Array;

/** Uniform blocks for one submit: 64 KiB GPU chunks filled on the CPU, written once at submit. */
class UniformArena {
  private static CHUNK = 65536;
  private free: { gpu: GPUBuffer; cpu: Uint8Array<ArrayBuffer> }[] = [];
  private used: { gpu: GPUBuffer; cpu: Uint8Array<ArrayBuffer>; top: number }[] = [];
  constructor(private device: GPUDevice, private align: number) {}

  alloc(data: Uint8Array): GPUBufferBinding {
    let chunk = this.used[this.used.length - 1];
    const at = chunk ? Math.ceil(chunk.top / this.align) * this.align : 0;
    if (!chunk || at + data.length > UniformArena.CHUNK) {
      const fresh = this.free.pop() ?? {
        gpu: this.device.createBuffer({ size: UniformArena.CHUNK, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST, label: 'canet-gpu:uniforms' }),
        cpu: new Uint8Array(UniformArena.CHUNK),
      };
      chunk = { ...fresh, top: 0 };
      this.used.push(chunk);
      return this.alloc(data);
    }
    chunk.cpu.set(data, at);
    chunk.top = at + data.length;
    return { buffer: chunk.gpu, offset: at, size: data.length };
  }

  /** Writes this batch's blocks; the chunks are free again once the submit is queued. */
  upload(queue: GPUQueue): void {
    for (const c of this.used) {
      queue.writeBuffer(c.gpu, 0, c.cpu, 0, Math.ceil(c.top / 4) * 4);
      this.free.push({ gpu: c.gpu, cpu: c.cpu });
    }
    this.used = [];
  }

  destroy(): void {
    for (const c of [...this.free, ...this.used]) c.gpu.destroy();
    this.free = [];
    this.used = [];
  }
}

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

  private readonly ownsDevice: boolean;
  private readonly pool: BufferPool;
  private readonly readPool: BufferPool;
  private readonly uniforms: UniformArena;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly scopes: ScopeContext;
  private readonly live = new Set<Tensor>();
  private liveBytes = 0;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private batchKernels = new Set<string>();
  private pendingChecks: Promise<GPUExecutionError | null>[] = [];
  private counters = { dispatches: 0, submits: 0, bindGroupsCreated: 0, flops: 0 };
  private profiler: Profiler | null = null;
  private closedReason: string | null = null;
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
    this.adapter = init.adapter ?? { vendor: '', architecture: '', device: '', description: 'application device', isSoftware: false };
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

  private assertOpen(): void {
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

  /** Uploads `data` as a tensor of `shape` (row-major). dtype follows the array type unless given. */
  tensor(data: TensorData, shape: readonly number[], dtype?: DType): Tensor {
    this.assertOpen();
    const dt: DType = dtype ?? (data instanceof Int32Array ? 'i32' : data instanceof Uint32Array ? 'u32' : 'f32');
    checkShape('tensor', shape);
    const size = shape.reduce((a, b) => a * b, 1);
    check(data.length === size, 'tensor', () => `data has ${data.length} elements but shape ${fmtShape(shape)} needs ${size}`);
    const t = this.empty(shape, dt);
    const Ctor = dt === 'f32' ? Float32Array : dt === 'i32' ? Int32Array : Uint32Array;
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
    if (data.length) this.device.queue.writeBuffer(t.buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  }

  /** A tensor with uninitialised contents (a recycled buffer holds old data). */
  empty(shape: readonly number[], dtype: DType = 'f32', name?: string): Tensor {
    this.assertOpen();
    checkShape('empty', shape);
    const size = shape.reduce((a, b) => a * b, 1);
    const maxBytes = Math.min(this.limits.maxStorageBufferBindingSize, this.limits.maxBufferSize);
    if (size * 4 > maxBytes)
      throw new ShapeError(`tensor ${name ?? ''}${fmtShape(shape)} needs ${size * 4} bytes, over this adapter's maxStorageBufferBindingSize of ${maxBytes} bytes`);
    const buffer = this.pool.acquire(size * 4);
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
    this.pool.release(buffer);
  }

  /** Reads a tensor back to the CPU. */
  async readTensor(t: Tensor): Promise<Float32Array | Int32Array | Uint32Array> {
    this.assertOpen();
    const bytes = t.byteLength;
    const Ctor = t.dtype === 'f32' ? Float32Array : t.dtype === 'i32' ? Int32Array : Uint32Array;
    if (bytes === 0) return new Ctor(0);
    const staging = this.readPool.acquire(bytes);
    try {
      this.endPass();
      this.ensureEncoder().copyBufferToBuffer(t.buffer, 0, staging, 0, Math.ceil(bytes / 4) * 4);
      await this.flush();
      await this.unlessClosed(staging.mapAsync(MapMode.READ, 0, bytes));
      const out = new Ctor(staging.getMappedRange(0, bytes).slice(0));
      staging.unmap();
      return out;
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

  private pipeline(program: Program): GPUComputePipeline {
    const key = programKey(program);
    let p = this.pipelines.get(key);
    if (p) return p;
    const code = assembleWgsl(program);
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code, label: program.name });
    p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: program.name });
    this.pendingChecks.push(
      this.device.popErrorScope().then((e) => {
        if (!e) return null;
        // Forget the broken pipeline so a later call compiles again (and reports again).
        if (this.pipelines.get(key) === p) this.pipelines.delete(key);
        return new GPUExecutionError(`kernel ${program.name} failed to compile: ${e.message}`, 'validation', [program.name]);
      }),
    );
    this.pipelines.set(key, p);
    return p;
  }

  /** Records one dispatch of `program` into the current batch. */
  run(program: Program): void {
    this.assertOpen();
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension;
    const [x, y = 1, z = 1] = program.dispatch;
    if (x === 0 || y === 0 || z === 0) return;
    if (x > maxDim || y > maxDim || z > maxDim)
      throw new ShapeError(`kernel ${program.name}: dispatch [${x}, ${y}, ${z}] exceeds maxComputeWorkgroupsPerDimension (${maxDim})`);
    const pipeline = this.pipeline(program);
    const entries: GPUBindGroupEntry[] = [];
    if (program.uniforms?.length) entries.push({ binding: 0, resource: this.uniforms.alloc(packUniforms(program.uniforms)) });
    program.bindings.forEach((b, i) => {
      const buffer = b instanceof Tensor ? b.buffer : b;
      entries.push({ binding: i + 1, resource: { buffer } });
    });
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label: program.name });
    this.counters.bindGroupsCreated++;
    let pass = this.pass;
    const prof = this.profiler;
    const timed = prof !== null && prof.entries.length * 2 < prof.capacity;
    if (timed) {
      this.endPass();
      const i = prof.entries.length;
      pass = this.ensureEncoder().beginComputePass({
        label: program.name,
        timestampWrites: { querySet: prof.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
      });
      prof.entries.push({ name: program.name, flops: program.flops, bytes: program.bytes });
    } else if (!pass) {
      pass = this.pass = this.ensureEncoder().beginComputePass({ label: 'canet-gpu:ops' });
    }
    pass!.setPipeline(pipeline);
    pass!.setBindGroup(0, bindGroup);
    pass!.dispatchWorkgroups(x, y, z);
    if (timed) pass!.end();
    this.batchKernels.add(program.name);
    this.counters.dispatches++;
    this.counters.flops += program.flops ?? 0;
  }

  /** Records a buffer-to-buffer copy (cheaper than a kernel: no pass, no bind group). */
  copyBuffer(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.assertOpen();
    this.endPass();
    if (bytes > 0) this.ensureEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
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
    this.closedReason = 'destroyed';
    this.signalClosed();
    for (const t of [...this.live]) t.dispose();
    this.pool.destroyAll();
    this.readPool.destroyAll();
    this.uniforms.destroy();
    this.pipelines.clear();
    if (this.ownsDevice) this.device.destroy();
  }
}

function isTensor(v: unknown): v is Tensor {
  return v instanceof Tensor;
}

function checkShape(op: string, shape: readonly number[]): void {
  check(Array.isArray(shape) && shape.every((d) => Number.isInteger(d) && d >= 0), op, () => `shape must be non-negative integers, got ${JSON.stringify(shape)}`);
}
