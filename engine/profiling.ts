/**
 * Per-kernel GPU timing with timestamp queries (Engine.profile): while a Profiler is active, each
 * dispatch gets a compute pass of its own whose beginning and end write two timestamps.
 */
import { BufferUsage, MapMode } from './gpu-constants.js';

export interface KernelTiming {
  name: string;
  ms: number;
  flops?: number;
  bytes?: number;
}

export class Profiler {
  private readonly querySet: GPUQuerySet;
  private readonly entries: { name: string; flops?: number; bytes?: number }[] = [];

  constructor(private readonly device: GPUDevice, private readonly capacity: number) {
    this.querySet = device.createQuerySet({ type: 'timestamp', count: capacity, label: 'canet-gpu:profile' });
  }

  /**
   * The timestamp writes of a pass for one dispatch of `name`, or null once the query set is full
   * (the dispatch then goes into the batch's shared, untimed pass).
   */
  timestampWrites(name: string, flops?: number, bytes?: number): GPUComputePassTimestampWrites | null {
    if (this.entries.length * 2 >= this.capacity) return null;
    const i = this.entries.length;
    this.entries.push({ name, flops, bytes });
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /**
   * Records the copy of the timestamps into a mappable buffer (into the encoder `encoder()` gives,
   * outside any pass); `read` maps it once that work has been submitted. Null when nothing was
   * timed (and then no encoder is asked for).
   */
  resolve(encoder: () => GPUCommandEncoder): { read(wait: <T>(p: Promise<T>) => Promise<T>): Promise<KernelTiming[]> } | null {
    const n = this.entries.length * 2;
    if (n === 0) return null;
    const resolve = this.device.createBuffer({ size: n * 8, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
    const staging = this.device.createBuffer({ size: n * 8, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    const enc = encoder();
    enc.resolveQuerySet(this.querySet, 0, n, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, staging, 0, n * 8);
    return {
      read: async (wait) => {
        await wait(staging.mapAsync(MapMode.READ));
        const ts = new BigInt64Array(staging.getMappedRange().slice(0));
        staging.unmap();
        resolve.destroy();
        staging.destroy();
        return this.entries.map((e, i) => ({ ...e, ms: Number(ts[2 * i + 1]! - ts[2 * i]!) / 1e6 }));
      },
    };
  }

  destroy(): void {
    this.querySet.destroy();
  }
}
