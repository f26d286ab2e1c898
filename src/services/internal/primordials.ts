/**
 * Keeps the kernel's records out of reach of patched JavaScript built-ins.
 *
 * Image code runs in the kernel's realm and may replace `Set.prototype.add`, `Map.prototype.get`, the iterators'
 * `next`, `Array.prototype.push` or `Object.freeze` with functions that record what they see. Kernel code that put
 * a process record or a capability record into a plain `Set` would hand it to such a function. So the collections
 * that hold kernel records are these wrappers, which call the built-ins captured when this module loaded (before any
 * image runs) through a captured `Reflect.apply`, and never the prototype methods in place at call time.
 *
 * Private to the package.
 */

const apply = Reflect.apply
const hasOwn = Object.hasOwn
const arrayFrom = Array.from
const defineProperty = Reflect.defineProperty
const getPrototypeOf = Reflect.getPrototypeOf
const ArrayPrototype = Array.prototype
const ObjectPrototype = Object.prototype
const freezeObject = Object.freeze
const SetConstructor = Set
const MapConstructor = Map
const setAdd = Set.prototype.add
const setHas = Set.prototype.has
const setDelete = Set.prototype.delete
const setValues = Set.prototype.values
const setSize = Object.getOwnPropertyDescriptor(Set.prototype, "size")!.get!
const mapGet = Map.prototype.get
const mapSet = Map.prototype.set
const mapHas = Map.prototype.has
const mapDelete = Map.prototype.delete
const mapValues = Map.prototype.values
const mapKeys = Map.prototype.keys
const mapSize = Object.getOwnPropertyDescriptor(Map.prototype, "size")!.get!
const setIteratorNext = Object.getPrototypeOf(new Set().values()).next as (
  this: Iterator<unknown>
) => IteratorResult<unknown>
const mapIteratorNext = Object.getPrototypeOf(new Map().values()).next as (
  this: Iterator<unknown>
) => IteratorResult<unknown>

/**
 * Built-ins the kernel's walks over values call (the copy, the digest, the text of a body), captured here once: call
 * them with `Reflect.apply` (`intrinsics.apply`), never through the value.
 */
export const intrinsics = freezeObject({
  apply,
  ObjectPrototype,
  ArrayPrototype,
  MapPrototype: Map.prototype,
  SetPrototype: Set.prototype,
  DatePrototype: Date.prototype,
  ArrayBufferPrototype: ArrayBuffer.prototype,
  /** `%TypedArray%.prototype`. */
  TypedArrayPrototype: getPrototypeOf(Uint8Array.prototype) as object,
  /** A typed array's own type (`"Uint8Array"`, …) from its internal slot, `undefined` for anything else. */
  typedArrayTag: Object.getOwnPropertyDescriptor(getPrototypeOf(Uint8Array.prototype) as object, Symbol.toStringTag)!
    .get! as (this: unknown) => string | undefined,
  bigintToString: BigInt.prototype.toString,
  dateGetTime: Date.prototype.getTime,
  dateToISOString: Date.prototype.toISOString,
  mapEntries: Map.prototype.entries,
  setValues,
  /** `next` of every Map iterator (entries, keys, values share it). */
  mapIteratorNext,
  /** `next` of every Set iterator. */
  setIteratorNext
})

/** Drains a built-in iterator with a captured `next` into an array (indexed writes only). */
const drain = <A>(iterator: Iterator<A>, next: (this: Iterator<unknown>) => IteratorResult<unknown>): Array<A> => {
  const out: Array<A> = []
  for (;;) {
    const step = apply(next, iterator, []) as IteratorResult<A>
    if (step.done === true) return out
    push(out, step.value)
  }
}

/**
 * `record[key]` if `record` has it as an own property, else `undefined`: a read that never reaches a prototype, so a
 * getter image code defined on `Object.prototype` cannot answer for a field a kernel record leaves out.
 */
export const own = <R extends object, K extends keyof R>(record: R, key: K): R[K] | undefined =>
  hasOwn(record, key) ? record[key] : undefined

/** `Object.freeze` as it was at load. */
export const freeze = <A>(value: A): Readonly<A> => freezeObject(value)

/** `Object.isFrozen` as it was at load. */
export const isFrozen = Object.isFrozen

/**
 * A `Set` whose operations are the built-ins captured at load: its own prototype holds them (as Node's primordials
 * do), so a patched `Set.prototype` is never consulted, and calls stay direct (no wrapper, no `Reflect.apply`).
 * Instances never leave the kernel, so image code cannot reach `SafeSet.prototype`. Iterate with `toArray` only: a
 * `for…of`, `forEach` or `values()` would reach the (patchable) `Set.prototype` and its iterator.
 */
export class SafeSet<A> extends SetConstructor<A> {
  /** The members, in insertion order, as an array (a copy: safe to change the set while looping over it). */
  toArray(): Array<A> {
    return drain(apply(setValues, this, []) as Iterator<A>, setIteratorNext)
  }
}

/** A `Map` whose operations are the built-ins captured at load (see `SafeSet`). */
export class SafeMap<K, V> extends MapConstructor<K, V> {
  /** The values, in insertion order, as an array. */
  toValues(): Array<V> {
    return drain(apply(mapValues, this, []) as Iterator<V>, mapIteratorNext)
  }
  /** The first key in insertion order. */
  firstKey(): K | undefined {
    const step = apply(mapIteratorNext, apply(mapKeys, this, []), []) as IteratorResult<K>
    return step.done === true ? undefined : step.value
  }
}

const method = (value: unknown): PropertyDescriptor =>
  ({ __proto__: null, value, writable: false, enumerable: false, configurable: false }) as PropertyDescriptor
const getter = (get: () => unknown): PropertyDescriptor =>
  ({ __proto__: null, get, enumerable: false, configurable: false }) as PropertyDescriptor
defineProperty(SafeSet.prototype, "add", method(setAdd))
defineProperty(SafeSet.prototype, "has", method(setHas))
defineProperty(SafeSet.prototype, "delete", method(setDelete))
defineProperty(SafeSet.prototype, "size", getter(setSize))
defineProperty(SafeMap.prototype, "get", method(mapGet))
defineProperty(SafeMap.prototype, "set", method(mapSet))
defineProperty(SafeMap.prototype, "has", method(mapHas))
defineProperty(SafeMap.prototype, "delete", method(mapDelete))
defineProperty(SafeMap.prototype, "size", getter(mapSize))
freezeObject(SafeSet.prototype)
freezeObject(SafeMap.prototype)

/** `array.includes(value)` without `Array.prototype`. */
export const includes = <A>(array: ReadonlyArray<A>, value: A): boolean => {
  for (let i = 0; i < array.length; i++) if (array[i] === value) return true
  return false
}

/**
 * `array.push(value)` without `Array.prototype`, and as a definition rather than an assignment (an assignment to a
 * new index would run a setter that image code defined on `Array.prototype`).
 */
export const push = <A>(array: Array<A>, value: A): void => {
  const index = array.length
  // an assignment to a new index runs a setter only if a prototype has that index: an array of `Array.prototype`
  // where neither it nor `Object.prototype` has one takes a plain assignment (about ten times cheaper)
  if (getPrototypeOf(array) === ArrayPrototype && !hasOwn(ArrayPrototype, index) && !hasOwn(ObjectPrototype, index)) {
    array[index] = value
    return
  }
  // one descriptor, reused (it has no prototype, so setting its `value` runs no setter); cleared after use so it
  // keeps no value alive
  element.value = value
  defineProperty(array, array.length, element)
  element.value = undefined
}

const element: PropertyDescriptor = {
  __proto__: null,
  value: undefined,
  writable: true,
  enumerable: true,
  configurable: true
} as PropertyDescriptor

/**
 * An array of `length` own `undefined` elements: later writes to its indexes are writes to own properties, which
 * never run a setter image code put on `Array.prototype` (a write to a hole of `new Array(n)` would).
 */
export const filled = <A>(length: number): Array<A | undefined> => {
  // `Array.from` defines each element; the array-like has no prototype, so no iterator or index getter is looked up
  return arrayFrom({ __proto__: null, length } as unknown as ArrayLike<A | undefined>)
}

/** Defines `record[key] = value` as an own data property (an assignment could run a setter on a prototype). */
export const put = (record: object, key: PropertyKey, value: unknown, enumerable = true): void => {
  defineProperty(record, key, {
    __proto__: null,
    value,
    writable: true,
    enumerable,
    configurable: true
  } as PropertyDescriptor)
}

/**
 * Defines `record[key] = value` on a fresh plain object (one of `Object.prototype` with no own `key`): a plain
 * assignment where `Object.prototype` has no `key` (nothing inherited to run), else a definition like `put`.
 */
export const putFresh = (record: Record<string, unknown>, key: string, value: unknown): void => {
  if (key === "__proto__" || hasOwn(ObjectPrototype, key)) put(record, key, value)
  else record[key] = value
}

/** `array.map(f)` without `Array.prototype`. */
export const map = <A, B>(array: ReadonlyArray<A>, f: (a: A) => B): Array<B> => {
  const out: Array<B> = []
  for (let i = 0; i < array.length; i++) push(out, f(array[i]!))
  return out
}
