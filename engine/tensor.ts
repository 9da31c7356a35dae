/**
 * A tensor: a shape, a dtype and a GPU buffer from the engine's pool. Data lives on the GPU;
 * `read()` is the only way back to the CPU. Feature maps inside the engine are NHWC (see docs/architecture.md:
 * "Layout"); conversion from PyTorch's NCHW/OIHW happens at the file and API boundary only.
 */
import { EngineClosedError, fmtShape } from './errors.js';
import type { Engine } from './engine.js';
import type { GradNode } from './autograd.js';

/**
 * Element types. 'f16' (half precision, 2 bytes) exists only on adapters with `shader-f16` and
 * serves the f16 inference path (CANet.half()); on the CPU its data reads and writes as
 * Float32Array (converted, rounding to nearest even).
 */
export type DType = 'f32' | 'f16' | 'i32' | 'u32';
export type TypedArrayFor<D extends DType> = D extends 'f32' | 'f16' ? Float32Array : D extends 'i32' ? Int32Array : Uint32Array;

/** Bytes per element of a dtype. */
export const dtypeBytes = (d: DType): number => (d === 'f16' ? 2 : 4);

let nextId = 1;

/**
 * Several tensors sharing one GPU buffer (see Engine.arena): the buffer returns to the pool when
 * the last of them is disposed.
 */
export interface ArenaBuffer {
  buffer: GPUBuffer;
  members: number;
}

export class Tensor {
  readonly id = nextId++;
  readonly size: number;
  /** Set by autograd: this tensor's gradient accumulates into `grad` on backward. */
  requiresGrad = false;
  /** Accumulated gradient (leaves that require grad only), owned by this tensor unless it is `gradSlot`. */
  grad: Tensor | null = null;
  /**
   * Where backward should put this leaf's gradient: a slot of an optimizer's gradient arena, so
   * one fused update covers every parameter. Owned by the optimizer, not by this tensor.
   */
  gradSlot: Tensor | null = null;
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
  private _offset = 0;
  private _arena: ArenaBuffer | null = null;

  constructor(
    readonly engine: Engine,
    readonly shape: readonly number[],
    readonly dtype: DType,
    buffer: GPUBuffer,
    name?: string,
    arena?: { arena: ArenaBuffer; offset: number },
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
    this._buffer = buffer;
    this.name = name ?? `tensor#${this.id}`;
    if (arena) this.joinArena(arena.arena, arena.offset);
  }

  /** Byte offset of the data in `buffer` (0 unless the tensor lives in an arena). */
  get offset(): number {
    return this._offset;
  }
  /** The arena this tensor lives in, if any. */
  get arena(): ArenaBuffer | null {
    return this._arena;
  }

  /** @internal Engine use: moves this tensor's storage into an arena slot (the data must have been copied there). */
  joinArena(arena: ArenaBuffer, offset: number): void {
    this._buffer = arena.buffer;
    this._offset = offset;
    this._arena = arena;
    arena.members++;
  }

  get rank(): number {
    return this.shape.length;
  }
  /** Bytes of data (the buffer may be larger: pool buckets). */
  get byteLength(): number {
    return this.size * dtypeBytes(this.dtype);
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

  /** read() of an f32 tensor, typed as such (logits, features); throws naming the tensor if it is not f32. */
  async readFloat32(): Promise<Float32Array> {
    return this.readAs('f32', Float32Array);
  }

  /** read() of an i32 tensor, typed as such (class ids from segment()); throws naming the tensor if it is not i32. */
  async readInt32(): Promise<Int32Array> {
    return this.readAs('i32', Int32Array);
  }

  private async readAs<A extends Float32Array | Int32Array>(dtype: DType, type: { new (...args: never[]): A }): Promise<A> {
    if (this.dtype !== dtype) throw new TypeError(`${this.name} ${fmtShape(this.shape)} is ${this.dtype}, not ${dtype}: use read()`);
    const data = await this.read();
    if (!(data instanceof type)) throw new TypeError(`${this.name}: read() returned ${data.constructor.name} for dtype ${dtype}`);
    return data;
  }

  /** Returns the buffer to the pool (idempotent). Gradients owned by this tensor go too. */
  dispose(): void {
    if (!this._buffer) return;
    this.engine.releaseTensor(this, this._buffer);
    this._buffer = null;
    this._arena = null;
    this.node = null;
    if (this.grad !== this.gradSlot) this.grad?.dispose();
    this.grad = null;
    this.gradSlot = null;
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
