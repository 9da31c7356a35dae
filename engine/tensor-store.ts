/**
 * Tensors and their lifetime: the buffer pools behind them, the live set and its bytes, release on
 * dispose (arena members included), and the scopes that dispose what a function created. The
 * Engine owns one; the tensors themselves are made by the Engine (they point back at it).
 */
import { GPUExecutionError, ShapeError, check } from './errors.js';
import { BufferUsage } from './gpu-constants.js';
import { BufferPool, STORAGE_USAGE } from './pool.js';
import { Scope, type ScopeContext, collectTensors } from './scope.js';
import { Tensor } from './tensor.js';

export function isTensor(v: unknown): v is Tensor {
  return v instanceof Tensor;
}

export function checkShape(op: string, shape: readonly number[]): void {
  check(Array.isArray(shape) && shape.every((d) => Number.isInteger(d) && d >= 0), op, () => `shape must be non-negative integers, got ${JSON.stringify(shape)}`);
}

export class TensorStore {
  /** Storage buffers of tensors. */
  readonly pool: BufferPool;
  /** Mappable staging buffers of reads. */
  readonly readPool: BufferPool;
  readonly live = new Set<Tensor>();
  private liveByteCount = 0;

  /** `report` queues an allocation's out-of-memory check for the next flush. */
  constructor(
    private readonly device: GPUDevice,
    private readonly limits: GPUSupportedLimits,
    readonly scopes: ScopeContext,
    private readonly report: (check: Promise<GPUExecutionError | null>) => void,
  ) {
    this.pool = new BufferPool(device, STORAGE_USAGE, 'canet-gpu', (d) => this.createBuffer(d));
    this.readPool = new BufferPool(device, BufferUsage.MAP_READ | BufferUsage.COPY_DST, 'canet-gpu:readback', (d) => this.createBuffer(d));
  }

  /** Bytes of data in live tensors. */
  get liveBytes(): number {
    return this.liveByteCount;
  }

  /** Counts a new tensor as live and puts it in the current scope. */
  track(t: Tensor): Tensor {
    this.live.add(t);
    this.liveByteCount += t.byteLength;
    this.scopes.current()?.tensors.add(t);
    return t;
  }

  /** Called by Tensor.dispose (through the engine). */
  release(t: Tensor, buffer: GPUBuffer): void {
    if (!this.live.delete(t)) return;
    this.liveByteCount -= t.byteLength;
    // Work already recorded may still use this buffer; that is safe: the next user of the buffer
    // records after it in the same encoder, and uploads submit pending work first.
    const arena = t.arena;
    if (!arena) this.pool.release(buffer);
    else if (--arena.members === 0) this.pool.release(arena.buffer);
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
    this.report(
      this.device.popErrorScope().then((e) => {
        if (!e) return null;
        if (!this.pool.discard(buffer)) this.readPool.discard(buffer);
        return new GPUExecutionError(`out of GPU memory allocating a buffer of ${desc.size} bytes (${desc.label}); the engine held ${usage}; engine.trim() frees the pool: ${e.message}`, 'out-of-memory', []);
      }),
    );
    return buffer;
  }

  /** The engine's GPU memory in words, for out-of-memory messages. */
  usage(): string {
    const p = this.pool.stats();
    const r = this.readPool.stats();
    return `${p.liveBucketBytes} bytes in ${this.live.size} live tensors and ${p.freeBytes + r.freeBytes + r.liveBucketBytes} bytes in ${p.freeBuffers + r.freeBuffers + r.liveBuffers} pooled buffers`;
  }

  /** Byte offsets of arena slots for `shapes`, then the total size (last entry). */
  arenaLayout(shapes: readonly (readonly number[])[]): number[] {
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

  /**
   * Runs `fn` and disposes every tensor it created except those in its result (see Engine.scope).
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

  /** Disposes every live tensor and destroys both pools. */
  destroy(): void {
    for (const t of [...this.live]) t.dispose();
    this.pool.destroyAll();
    this.readPool.destroyAll();
  }
}
