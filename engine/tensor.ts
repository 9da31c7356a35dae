/**
 * A tensor: a shape, a dtype and a GPU buffer from the engine's pool. Data lives on the GPU;
 * `read()` is the only way back to the CPU. Feature maps inside the engine are NHWC (see README:
 * "Layout"); conversion from PyTorch's NCHW/OIHW happens at the file and API boundary only.
 */
import { EngineClosedError, fmtShape } from './errors.js';
import type { Engine } from './engine.js';
import type { GradNode } from './autograd.js';

export type DType = 'f32' | 'i32' | 'u32';
export type TypedArrayFor<D extends DType> = D extends 'f32' ? Float32Array : D extends 'i32' ? Int32Array : Uint32Array;

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  readonly size: number;
  /** Set by autograd: this tensor's gradient accumulates into `grad` on backward. */
  requiresGrad = false;
  /** Accumulated gradient (leaves that require grad only), owned by this tensor. */
  grad: Tensor | null = null;
  /** The op that produced this tensor, while a graph is being recorded. */
  node: GradNode | null = null;
  /**
   * Advances whenever a kernel binds the tensor read_write or writeTensor overwrites it: caches
   * derived from the data (a folded BatchNorm) compare it. Raw buffer copies do not count.
   */
  version = 0;
  /** A name used in error messages (parameters get their state_dict name). */
  name: string;
  private _buffer: GPUBuffer | null;

  constructor(
    readonly engine: Engine,
    readonly shape: readonly number[],
    readonly dtype: DType,
    buffer: GPUBuffer,
    name?: string,
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
    this._buffer = buffer;
    this.name = name ?? `tensor#${this.id}`;
  }

  get rank(): number {
    return this.shape.length;
  }
  /** Bytes of data (the buffer may be larger: pool buckets). */
  get byteLength(): number {
    return this.size * 4;
  }
  get disposed(): boolean {
    return this._buffer === null;
  }
  /** The GPU buffer; throws if the tensor was disposed. */
  get buffer(): GPUBuffer {
    if (!this._buffer) throw new EngineClosedError(`${this.name} ${fmtShape(this.shape)} was disposed`);
    return this._buffer;
  }

  /** Copies the data back to the CPU (flushes pending GPU work first). */
  read(): Promise<Float32Array | Int32Array | Uint32Array> {
    return this.engine.readTensor(this);
  }

  /** Returns the buffer to the pool (idempotent). Gradients owned by this tensor go too. */
  dispose(): void {
    if (!this._buffer) return;
    this.engine.releaseTensor(this, this._buffer);
    this._buffer = null;
    this.node = null;
    this.grad?.dispose();
    this.grad = null;
  }

  /** Exempts this tensor from disposal by the enclosing scope(s); it is the caller's to dispose. */
  keep(): this {
    this.engine.untrack(this);
    return this;
  }

  toString(): string {
    return `Tensor(${this.name}, ${fmtShape(this.shape)}, ${this.dtype})`;
  }
}
