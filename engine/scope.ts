/**
 * Scopes: `engine.scope(fn)` disposes every tensor created inside `fn` except those it returns
 * (like tf.tidy). Which scope is "current" is kept by a ScopeContext: in Node an AsyncLocalStorage,
 * so overlapping async scopes each see their own; in browsers a stack (exact for synchronous
 * scopes; async scopes that interleave on one engine share the innermost one).
 */
import type { Tensor } from './tensor.js';

export class Scope {
  readonly tensors = new Set<Tensor>();
  constructor(readonly parent: Scope | undefined) {}
}

export interface ScopeContext {
  current(): Scope | undefined;
  run<T>(scope: Scope, fn: () => T): T;
}

/** Stack-based context (browsers, and anywhere without AsyncLocalStorage). */
export class StackScopeContext implements ScopeContext {
  private stack: Scope[] = [];
  current(): Scope | undefined {
    return this.stack[this.stack.length - 1];
  }
  run<T>(scope: Scope, fn: () => T): T {
    this.stack.push(scope);
    const pop = () => {
      const i = this.stack.lastIndexOf(scope);
      if (i >= 0) this.stack.splice(i, 1);
    };
    let result: T;
    try {
      result = fn();
    } catch (e) {
      pop();
      throw e;
    }
    if (result instanceof Promise) return result.finally(pop) as T;
    pop();
    return result;
  }
}

/** Every tensor reachable from a returned value (tensors, arrays, plain objects, Maps). */
export function collectTensors(value: unknown, into: Set<Tensor>, isTensor: (v: unknown) => v is Tensor): Set<Tensor> {
  if (isTensor(value)) into.add(value);
  else if (Array.isArray(value)) for (const v of value) collectTensors(v, into, isTensor);
  else if (value instanceof Map) for (const v of value.values()) collectTensors(v, into, isTensor);
  else if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype)
    for (const v of Object.values(value)) collectTensors(v, into, isTensor);
  return into;
}
