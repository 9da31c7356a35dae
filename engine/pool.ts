import { BufferUsage } from './gpu-constants.js';

/**
 * Size-bucketed GPU buffer pool. Every tensor buffer comes from here and returns here on dispose,
 * so steady-state loops allocate nothing. Buckets grow in 1/8 steps of a power of two, so at
 * most 12.5% of a buffer is slack (TF.js's exact-size pool wastes less but never matches a
 * slightly different shape; a power-of-two pool wastes up to 50%).
 *
 * A bucket hands out its oldest free buffer (lowest creation number), not the last one returned:
 * then which buffer an allocation gets depends only on the set of free buffers, so a loop that
 * allocates the same way each step gets the same buffers each step, and the engine's cached bind
 * groups keep matching (with last-in-first-out the assignment permutes from step to step).
 */

export const STORAGE_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;

/** The bucket size (bytes) a request of `bytes` is served from. */
export function bucketSize(bytes: number): number {
  const n = Math.max(256, Math.ceil(bytes / 16) * 16);
  if (n <= 4096) return 2 ** Math.ceil(Math.log2(n));
  const step = 2 ** Math.floor(Math.log2(n)) / 8;
  return Math.ceil(n / step) * step;
}

export interface PoolStats {
  buffersCreated: number;
  poolHits: number;
  /** Buffers currently handed out. */
  liveBuffers: number;
  /** Bytes currently handed out (bucket sizes). */
  liveBucketBytes: number;
  /** Buffers parked in the pool, free for reuse. */
  freeBuffers: number;
  freeBytes: number;
}

export class BufferPool {
  /** Per bucket size, free buffers sorted by creation number, highest first (pop takes the lowest). */
  private free = new Map<number, GPUBuffer[]>();
  private readonly serial = new WeakMap<GPUBuffer, number>();
  private created = 0;
  private live = new Set<GPUBuffer>();
  /** Live buffers to destroy, not pool, when released (their allocation failed). */
  private doomed = new Set<GPUBuffer>();
  private counters = { buffersCreated: 0, poolHits: 0, liveBucketBytes: 0, freeBytes: 0 };

  constructor(
    device: GPUDevice,
    private readonly usage: number = STORAGE_USAGE,
    private readonly label = 'canet-gpu',
    private readonly create: (desc: GPUBufferDescriptor) => GPUBuffer = (d) => device.createBuffer(d),
  ) {}

  acquire(bytes: number): GPUBuffer {
    const size = bucketSize(bytes);
    const list = this.free.get(size);
    let buffer = list?.pop();
    if (buffer) {
      this.counters.poolHits++;
      this.counters.freeBytes -= size;
    } else {
      buffer = this.create({ size, usage: this.usage, label: `${this.label}:${size}` });
      this.serial.set(buffer, this.created++);
      this.counters.buffersCreated++;
    }
    this.live.add(buffer);
    this.counters.liveBucketBytes += size;
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    if (!this.live.delete(buffer)) return;
    const size = buffer.size;
    this.counters.liveBucketBytes -= size;
    if (this.doomed.delete(buffer)) {
      buffer.destroy();
      return;
    }
    this.counters.freeBytes += size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    const n = this.serial.get(buffer)!;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.serial.get(list[mid]!)! > n) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, buffer);
  }

  /**
   * Hands out a specific free buffer (a captured plan keeps the intermediates it bound); false if
   * it is not free in this pool. `release` returns it.
   */
  claim(buffer: GPUBuffer): boolean {
    const list = this.free.get(buffer.size);
    const i = list ? list.indexOf(buffer) : -1;
    if (i < 0) return false;
    list!.splice(i, 1);
    this.counters.freeBytes -= buffer.size;
    this.live.add(buffer);
    this.counters.liveBucketBytes += buffer.size;
    return true;
  }

  /**
   * Takes a buffer of this pool out of circulation (one whose allocation failed): destroyed now if
   * free, on release if live. Returns false if the buffer is not this pool's.
   */
  discard(buffer: GPUBuffer): boolean {
    if (this.live.has(buffer)) {
      this.doomed.add(buffer);
      return true;
    }
    const list = this.free.get(buffer.size);
    const i = list ? list.indexOf(buffer) : -1;
    if (i < 0) return false;
    list!.splice(i, 1);
    this.counters.freeBytes -= buffer.size;
    buffer.destroy();
    return true;
  }

  /** Destroys every free buffer (returns the bytes given back). Live buffers are untouched. */
  trim(): number {
    const freed = this.counters.freeBytes;
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.counters.freeBytes = 0;
    return freed;
  }

  /** Destroys everything, live buffers included (engine teardown). */
  destroyAll(): void {
    this.trim();
    for (const b of this.live) b.destroy();
    this.live.clear();
    this.doomed.clear();
    this.counters.liveBucketBytes = 0;
  }

  stats(): PoolStats {
    let freeBuffers = 0;
    for (const list of this.free.values()) freeBuffers += list.length;
    return { ...this.counters, liveBuffers: this.live.size, freeBuffers };
  }
}
