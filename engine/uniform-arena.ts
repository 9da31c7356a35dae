import { BufferUsage } from './gpu-constants.js';

/**
 * Uniform blocks for one submit: 64 KiB GPU chunks filled on the CPU, written once at submit.
 * Every submit fills the chunks from the first one in the same order, so a loop that records the
 * same work each step puts each block at the same (chunk, offset) each time: with the offset
 * dynamic, the bind groups that name the chunk can be cached and reused (see Dispatcher.run).
 */
export class UniformArena {
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
