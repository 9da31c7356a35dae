/**
 * Dispatch and caches: the pipeline and bind-group caches, the batch's command encoder and compute
 * pass, the uniform arena, and the submit that ends a batch. Engine.run and the plan replays record
 * through it; the Engine owns one and delegates (it keeps the checks that the engine is open).
 */
import { GPUExecutionError, ShapeError } from './errors.js';
import { ShaderStage } from './gpu-constants.js';
import { type Program, type ScalarType, assembleWgsl, programKey, uniformBlockSize, writeUniforms } from './program.js';
import type { PipelineRef, Recorder } from './plan.js';
import type { Profiler } from './profiling.js';
import { Tensor } from './tensor.js';
import { UniformArena } from './uniform-arena.js';

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

/** The dispatcher's running counts, reported by `engine.stats()` (EngineStats). */
export interface DispatchCounters {
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

/** What the dispatcher needs from its engine. */
export interface DispatchHost {
  device: GPUDevice;
  limits: GPUSupportedLimits;
  /** Queues a check that the next flush awaits (a compile or submit error, or null). */
  report(check: Promise<GPUExecutionError | null>): void;
  /** The engine's GPU memory in words, for out-of-memory messages. */
  usage(): string;
}

export class Dispatcher {
  readonly counters: DispatchCounters = { dispatches: 0, submits: 0, bindGroupsCreated: 0, bindGroupHits: 0, flops: 0, compileMs: 0 };
  /** While `capture` runs: what the engine records, for the plan. */
  recorder: Recorder | null = null;
  /** While `profile` runs: the timestamp queries each dispatch writes. */
  profiler: Profiler | null = null;
  /** Kernels recorded into the current batch (named in its errors). */
  readonly batchKernels = new Set<string>();
  private readonly device: GPUDevice;
  private readonly uniforms: UniformArena;
  private readonly pipelines = new Map<string, PipelineEntry>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private timedPass: GPUComputePassEncoder | null = null;

  constructor(private readonly host: DispatchHost) {
    this.device = host.device;
    this.uniforms = new UniformArena(this.device, host.limits.minUniformBufferOffsetAlignment);
  }

  /** Whether work is recorded and not yet submitted. */
  get pending(): boolean {
    return this.encoder !== null;
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }

  ensureEncoder(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: 'canet-gpu:batch' });
    return this.encoder;
  }

  endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  /** The encoder, with the compute pass ended: copies and query resolves live outside passes. */
  encoderOutsidePass(): GPUCommandEncoder {
    this.endPass();
    return this.ensureEncoder();
  }

  /** Forgets recorded work without submitting it (the device is gone, or the engine destroyed). */
  dropRecorded(): void {
    this.encoder = null;
    this.pass = null;
    this.timedPass = null;
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
    this.host.report(
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

  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = this.nextBufferId++));
    return id;
  }

  /** Records one dispatch of `program` into the current batch (see Engine.run). */
  run(program: Program): void {
    const maxDim = this.host.limits.maxComputeWorkgroupsPerDimension;
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

  /** A bind group for a pipeline's layout: the uniform block (dynamic offset) and the storage buffers. */
  createBindGroup(entry: PipelineRef, label: string, uniformBuffer: GPUBuffer | null, blockSize: number, buffers: readonly GPUBuffer[], ranges: readonly ({ offset: number; size: number } | null)[]): GPUBindGroup {
    const e = entry as PipelineEntry;
    const entries: GPUBindGroupEntry[] = [];
    if (uniformBuffer) entries.push({ binding: 0, resource: { buffer: uniformBuffer, offset: 0, size: blockSize } });
    buffers.forEach((buffer, i) => entries.push({ binding: i + 1, resource: ranges[i] ? { buffer, ...ranges[i]! } : { buffer } }));
    this.counters.bindGroupsCreated++;
    return this.device.createBindGroup({ layout: e.layout, entries, label });
  }

  /**
   * The pass to record a dispatch of `name` into: the batch's open compute pass, or, while
   * profiling, a pass of its own with timestamps (end it with endTimedPass).
   */
  computePass(name: string, flops?: number, bytes?: number): GPUComputePassEncoder {
    const timestampWrites = this.profiler?.timestampWrites(name, flops, bytes);
    if (timestampWrites) {
      this.endPass();
      this.timedPass = this.ensureEncoder().beginComputePass({ label: name, timestampWrites });
      return this.timedPass;
    }
    return (this.pass ??= this.ensureEncoder().beginComputePass({ label: 'canet-gpu:ops' }));
  }

  /** Ends `pass` if it is a profiling pass of its own (see computePass). */
  endTimedPass(pass: GPUComputePassEncoder): void {
    if (pass !== this.timedPass) return;
    pass.end();
    this.timedPass = null;
  }

  /** Submits the recorded batch (with this batch's uniform blocks) and queues its error check. */
  submit(): void {
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
    this.host.report(
      Promise.all([validation, oom]).then(([v, o]) => {
        const e = v ?? o;
        if (!e) return null;
        const what = v ? 'validation' : `out-of-memory (the engine holds ${this.host.usage()}; engine.trim() frees the pool)`;
        return new GPUExecutionError(`GPU ${what} error in a batch running [${kernels.join(', ')}]: ${e.message}`, v ? 'validation' : 'out-of-memory', kernels);
      }),
    );
  }

  /** Drops the cached bind groups (they hold pool buffers that trim destroys). */
  clearBindGroups(): void {
    this.bindGroups.clear();
  }

  destroy(): void {
    this.dropRecorded();
    this.uniforms.destroy();
    this.pipelines.clear();
    this.bindGroups.clear();
  }
}

