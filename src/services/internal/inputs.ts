/**
 * Reads what a process hands a syscall: each field once, into a fresh object the kernel owns, then validated.
 *
 * A process may pass getters that answer differently on each read, proxies whose traps run arbitrary code, arrays with
 * their own iterator, or values that throw when touched. So the kernel never reads a process's object twice and never
 * keeps it: every reader here takes one pass over the input (property reads in a fixed order, arrays by index up to a
 * length read once), copies plain values out, and returns the copy or an `ArgumentError`. A throw while reading is an
 * `ArgumentError` too, so no process-supplied value can abort a syscall half-way.
 *
 * Private to the package.
 */
import type * as Accounts from "../Accounts.ts"
import { rightsMaskOf } from "../Capability.ts"
import * as Process from "../Process.ts"
import { ArgumentError } from "../Sys.ts"
import { types } from "node:util"
import { durationMillis } from "./duration.ts"
import type { MessageLayer, ToolLayer, ToolLayerEntry } from "./capRef.ts"
import { Schema } from "effect"
import { isPolicySet, type PolicySet } from "../Policy.ts"
import { freeze, includes, intrinsics, own, push, put, putFresh, SafeMap } from "./primordials.ts"

// captured at load: image code that replaces them later is never asked about a kernel input
const isArray = Array.isArray
const isProxy = types.isProxy
const isInteger = Number.isInteger
const isFiniteNumber = Number.isFinite
const isNotANumber = Number.isNaN
const isFrozen = Object.isFrozen

/** A syscall input that could not be read: the reason, for the `ArgumentError` message. */
class Unreadable {
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

/** An input larger than its bound (see `bodyOf`): unreadable, and also a size the caller may answer differently. */
export class TooLarge extends Unreadable {}

/**
 * What a thrown value says, without running its code (a process may throw anything: an object with no prototype, a
 * proxy, an error whose `message` is a getter that throws): an own string `message` of a plain error, else its type.
 */
const describe = (error: unknown): string => {
  if (typeof error === "string") return error
  if (typeof error !== "object" || error === null) return typeof error
  try {
    const message = getOwnPropertyDescriptor(error, "message")
    return message !== undefined && typeof message.value === "string" ? message.value : "an object"
  } catch {
    return "an object"
  }
}

/** Runs a reader; a throw (from a getter, a proxy trap, a `toString`) becomes an `ArgumentError`. */
export const read = <A>(call: string, reader: () => A | Unreadable): A | ArgumentError => {
  try {
    const result = reader()
    return result instanceof Unreadable ? new ArgumentError({ call, message: result.message }) : result
  } catch (error) {
    return new ArgumentError({ call, message: `unreadable argument: ${describe(error)}` })
  }
}

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** An options bag: `undefined`, or an object that is not an array. */
const optionsOf = (field: string, input: unknown): Record<string, unknown> | undefined | Unreadable =>
  input === undefined
    ? undefined
    : isObject(input) && !isArray(input)
      ? input
      : new Unreadable(`${field} must be an object`)

/** Copies an array's elements by index (the length read once), bounded by `max`; never calls its iterator. */
const arrayOf = (field: string, input: unknown, max: number): Array<unknown> | Unreadable => {
  if (!isArray(input)) return new Unreadable(`${field} must be an array`)
  const length: unknown = input.length
  if (typeof length !== "number" || !isInteger(length) || length < 0) {
    return new Unreadable(`${field} has no valid length`)
  }
  if (length > max) return new TooLarge(`${field}: more than ${max} entries`)
  const out: Array<unknown> = []
  // defined, not assigned: an index setter image code put on Array.prototype never sees or swallows an element
  for (let i = 0; i < length; i++) push(out, input[i])
  return out
}

const amount = (field: string, value: unknown): number | undefined | Unreadable =>
  value === undefined
    ? undefined
    : typeof value === "number" && isFiniteNumber(value) && value >= 0
      ? value
      : new Unreadable(`${field} must be a finite number ≥ 0`)

/** A cost: `tokens`, `toolCalls`, `usd`, each absent or a finite number ≥ 0. */
export const costOf = (field: string, input: unknown): Accounts.Cost | Unreadable => {
  if (!isObject(input) || isArray(input)) return new Unreadable(`${field} must be an object`)
  const tokens = amount(`${field}.tokens`, input.tokens)
  if (tokens instanceof Unreadable) return tokens
  const toolCalls = amount(`${field}.toolCalls`, input.toolCalls)
  if (toolCalls instanceof Unreadable) return toolCalls
  const usd = amount(`${field}.usd`, input.usd)
  if (usd instanceof Unreadable) return usd
  // one shape for every cost (a meter not named is an own `undefined`), defined by a literal: no assignment that
  // could run a setter image code put on Object.prototype, no read that could reach one
  return freeze({ tokens, toolCalls, usd })
}

/**
 * A driver's reported cost, copied (each meter read once) and validated, for the hot path of a settled driver call:
 * `undefined` when it is not a valid cost (or throws while read). The copy stays inside the kernel, so it is not
 * frozen.
 */
export const driverCostOf = (input: unknown): Accounts.Cost | undefined => {
  try {
    if (!isObject(input) || isArray(input)) return undefined
    const tokens = input.tokens
    const toolCalls = input.toolCalls
    const usd = input.usd
    return isMeter(tokens) && isMeter(toolCalls) && isMeter(usd) ? { tokens, toolCalls, usd } : undefined
  } catch {
    return undefined
  }
}

const isMeter = (value: unknown): value is number | undefined =>
  value === undefined || (typeof value === "number" && isFiniteNumber(value) && value >= 0)

const quotaFields: ReadonlyArray<keyof Accounts.Quota> = [
  "tokens",
  "toolCalls",
  "usd",
  "children",
  "wall",
  "mem",
  "mailbox"
]

/** A quota, copied field by field (its values are validated when the account is carved). */
export const quotaOf = (input: unknown): Accounts.Quota | undefined | Unreadable => {
  const options = optionsOf("quota", input)
  if (options === undefined || options instanceof Unreadable) return options
  // no prototype: a write never runs a setter image code put on Object.prototype, a read never reaches one
  const quota: Record<string, unknown> = { __proto__: null } as never
  // each field read once, in a fixed order (the values are checked when the account is carved)
  for (let i = 0; i < quotaFields.length; i++) {
    const field = quotaFields[i]!
    const value = options[field]
    if (value !== undefined) quota[field] = value
  }
  return quota as Accounts.Quota
}

/** A duration in millis (`undefined` stays `undefined`): a `Duration.Input` read once, ≥ 0. */
export const millisOf = (field: string, input: unknown): number | undefined | Unreadable => {
  if (input === undefined) return undefined
  const ms = durationMillis(input as never)
  return isNotANumber(ms) ? new Unreadable(`${field} is not a duration ≥ 0`) : ms
}

/** A rights list as the kernel's bit mask; an unknown name (`"constructor"`, `"__proto__"`) is refused. */
export const rightsOf = (field: string, input: unknown): number | Unreadable => {
  const names = arrayOf(field, input, 16)
  if (names instanceof Unreadable) return names
  const mask = rightsMaskOf(names)
  return mask === undefined
    ? new Unreadable(`${field} must be right names (${"send monitor open read write spawn kill"})`)
    : mask
}

/** A list of caps to move: the entries copied (not yet checked), at most `max`. */
export const refsOf = (field: string, input: unknown, max: number): ReadonlyArray<unknown> | Unreadable =>
  arrayOf(field, input, max)

/** A name: a string (its length is checked by the name registry). */
export const nameOf = (input: unknown): string | Unreadable =>
  typeof input === "string" ? input : new Unreadable("a name must be a string")

/** An integer in `[min, max]`, or `undefined`. */
export const integerIn = (field: string, input: unknown, min: number, max: number): number | undefined | Unreadable =>
  input === undefined
    ? undefined
    : typeof input === "number" && isInteger(input) && input >= min && input <= max
      ? input
      : new Unreadable(`${field} must be an integer in [${min}, ${max}]`)

/**
 * An exit reason a process may state itself: `Normal`, `Shutdown` or `Fault { error }`. `Killed`, `Quota`,
 * `Deadline` and `Policy` are the kernel's to set. Returns the kernel's own (frozen) reason object.
 */
export const exitReasonOf = (
  field: string,
  input: unknown,
  errorLengthMax: number
): Process.ExitReason | Unreadable => {
  if (!isObject(input)) return new Unreadable(`${field} must be an exit reason`)
  const tag = input._tag
  if (tag === "Normal") return Process.normal
  if (tag === "Shutdown") {
    const reason = own(input, "reason")
    if (reason === undefined) return Process.shutdown
    if (typeof reason !== "string") return new Unreadable(`${field}: a Shutdown reason must be a string`)
    return Process.shutdownWith(reason.length > errorLengthMax ? reason.slice(0, errorLengthMax) : reason)
  }
  if (tag === "Fault") {
    const error = input.error
    if (typeof error !== "string") return new Unreadable(`${field}: Fault needs an error string`)
    return Process.fault(error.length > errorLengthMax ? error.slice(0, errorLengthMax) : error)
  }
  return new Unreadable(
    `${field}: a process may end itself or another only with Normal, Shutdown or Fault (${String(tag).slice(0, 32)} is the kernel's)`
  )
}

/**
 * A selective receive's match, copied: `corr` a string or number, `from` and `ref` safe integers, `sender` whatever
 * was given (the kernel resolves it as a cap); at least one of them, and not both `from` and `sender`.
 */
export const matchOf = (
  field: string,
  input: unknown
):
  | { readonly corr?: string | number; readonly from?: number; readonly ref?: number; readonly sender?: unknown }
  | Unreadable => {
  const options = optionsOf(field, input)
  if (options instanceof Unreadable) return options
  if (options === undefined) return new Unreadable(`${field} must name a corr, a sender or a ref`)
  const corr = own(options, "corr")
  const from = own(options, "from")
  const ref = own(options, "ref")
  const sender = own(options, "sender")
  if (corr !== undefined && typeof corr !== "string" && typeof corr !== "number") {
    return new Unreadable(`${field}.corr must be a string or a number`)
  }
  if (from !== undefined && !(typeof from === "number" && Number.isSafeInteger(from) && from >= 0)) {
    return new Unreadable(`${field}.from must be a pid`)
  }
  if (ref !== undefined && !(typeof ref === "number" && Number.isSafeInteger(ref) && ref >= 1)) {
    return new Unreadable(`${field}.ref must be a monitor ref`)
  }
  if (from !== undefined && sender !== undefined) return new Unreadable(`${field}: from and sender are exclusive`)
  if (corr === undefined && ref === undefined && from === undefined && sender === undefined) {
    return new Unreadable(`${field} must name a corr, a sender or a ref`)
  }
  return freeze({
    ...(corr === undefined ? {} : { corr }),
    ...(from === undefined ? {} : { from }),
    ...(ref === undefined ? {} : { ref }),
    ...(sender === undefined ? {} : { sender })
  }) as { readonly corr?: string | number; readonly from?: number; readonly ref?: number; readonly sender?: unknown }
}

/** Send options, copied. */
export interface SendInput {
  readonly caps: ReadonlyArray<unknown> | undefined
  readonly corr: string | number | undefined
  readonly deadlineMs: number | undefined
  readonly nosuspend: boolean
}

export const sendOptionsOf = (input: unknown, capsMax: number): SendInput | Unreadable => {
  const options = optionsOf("options", input)
  if (options instanceof Unreadable) return options
  if (options === undefined) return noSendOptions
  const capsInput = options.caps
  const caps = capsInput === undefined ? undefined : refsOf("caps", capsInput, capsMax)
  if (caps instanceof Unreadable) return caps
  const corr = options.corr
  if (corr !== undefined && typeof corr !== "string" && typeof corr !== "number") {
    return new Unreadable("corr must be a string or a number")
  }
  const deadlineMs = millisOf("deadline", options.deadline)
  if (deadlineMs instanceof Unreadable) return deadlineMs
  const nosuspend = options.nosuspend
  if (nosuspend !== undefined && typeof nosuspend !== "boolean") return new Unreadable("nosuspend must be a boolean")
  return { caps: caps?.length === 0 ? undefined : caps, corr, deadlineMs, nosuspend: nosuspend === true }
}

const noSendOptions: SendInput = freeze({ caps: undefined, corr: undefined, deadlineMs: undefined, nosuspend: false })

/** Spawn options, copied (`args` is handed to the child's image as given). */
export interface SpawnInput {
  readonly args: unknown
  readonly caps: ReadonlyArray<unknown> | undefined
  readonly quota: Accounts.Quota | undefined
  readonly link: boolean
  readonly priority: number | undefined
  readonly priorityMax: number | undefined
  readonly deadlineMs: number | undefined
  readonly policies: ReadonlyArray<PolicySet> | undefined
}

/** The most policy sets one process's chain holds (its ancestors' included). */
export const policyChainMax = 256

/** `policies`: one set made by `Policy.make`, or a list of them, copied. */
export const policiesOf = (input: unknown): ReadonlyArray<PolicySet> | undefined | Unreadable => {
  if (input === undefined) return undefined
  if (isPolicySet(input)) return freeze([input])
  if (!isArray(input)) return new Unreadable("policies must be a Policy set or a list of them (Policy.make)")
  const list = refsOf("policies", input, policyChainMax)
  if (list instanceof Unreadable) return list
  for (let i = 0; i < list.length; i++) {
    if (!isPolicySet(list[i])) return new Unreadable(`policies[${i}] is not a Policy set made by Policy.make`)
  }
  return list.length === 0 ? undefined : (list as ReadonlyArray<PolicySet>)
}

export const spawnOptionsOf = (
  input: unknown,
  capsMax: number,
  priorityMin: number,
  ceiling: number
): SpawnInput | Unreadable => {
  const options = optionsOf("options", input)
  if (options instanceof Unreadable) return options
  if (options === undefined) return noSpawnOptions
  const args = options.args
  const capsInput = options.caps
  const caps = capsInput === undefined ? undefined : refsOf("caps", capsInput, capsMax)
  if (caps instanceof Unreadable) return caps
  const quota = quotaOf(options.quota)
  if (quota instanceof Unreadable) return quota
  const link = options.link
  if (link !== undefined && typeof link !== "boolean") return new Unreadable("link must be a boolean")
  const priorityMax = integerIn("priorityMax", options.priorityMax, priorityMin, ceiling)
  if (priorityMax instanceof Unreadable) return priorityMax
  const priority = integerIn("priority", options.priority, priorityMin, priorityMax ?? ceiling)
  if (priority instanceof Unreadable) return priority
  const deadlineMs = millisOf("deadline", options.deadline)
  if (deadlineMs instanceof Unreadable) return deadlineMs
  const policies = policiesOf(options.policies)
  if (policies instanceof Unreadable) return policies
  return {
    args,
    caps: caps?.length === 0 ? undefined : caps,
    quota,
    link: link === true,
    priority,
    priorityMax,
    deadlineMs,
    policies
  }
}

const noSpawnOptions: SpawnInput = freeze({
  args: undefined,
  caps: undefined,
  quota: undefined,
  link: false,
  priority: undefined,
  priorityMax: undefined,
  deadlineMs: undefined,
  policies: undefined
})

/** `sched` options, copied. */
export const schedOptionsOf = (
  input: unknown,
  priorityMin: number,
  ceiling: number
): { readonly priority: number | undefined; readonly deadlineMs: number | undefined } | Unreadable => {
  const options = optionsOf("options", input)
  if (options instanceof Unreadable) return options
  if (options === undefined) return { priority: undefined, deadlineMs: undefined }
  const priority = integerIn("priority", options.priority, priorityMin, ceiling)
  if (priority instanceof Unreadable) return priority
  const deadlineMs = millisOf("deadline", options.deadline)
  if (deadlineMs instanceof Unreadable) return deadlineMs
  return { priority, deadlineMs }
}

/** `remember` options, copied. */
export const rememberOptionsOf = (
  input: unknown
): { readonly tokens: number | undefined; readonly pin: boolean } | Unreadable => {
  const options = optionsOf("options", input)
  if (options instanceof Unreadable) return options
  if (options === undefined) return { tokens: undefined, pin: false }
  const tokens = amount("tokens", options.tokens)
  if (tokens instanceof Unreadable) return tokens
  const pin = options.pin
  if (pin !== undefined && typeof pin !== "boolean") return new Unreadable("pin must be a boolean")
  return { tokens, pin: pin === true }
}

// Built-ins the body copy calls, captured when this module loads (before any image runs): image code that replaces
// `Object.keys`, `Map.prototype.set` or an iterator's `next` never sees another process's message through them.
const apply = Reflect.apply
const getPrototypeOf = Reflect.getPrototypeOf
const ownKeys = Reflect.ownKeys
const getOwnPropertyDescriptor = Reflect.getOwnPropertyDescriptor
const hasOwn = Object.hasOwn
const objectKeys = Object.keys
const objectCreate = Object.create as (proto: object | null) => Record<PropertyKey, unknown>
const isView = ArrayBuffer.isView
const MapConstructor = Map
const SetConstructor = Set
const DateConstructor = Date
const ObjectPrototype = Object.prototype
const ArrayPrototype = Array.prototype
const MapPrototype = Map.prototype
const SetPrototype = Set.prototype
const DatePrototype = Date.prototype
const ArrayBufferPrototype = ArrayBuffer.prototype
const ErrorPrototype = Error.prototype
const dateGetTime = Date.prototype.getTime
const mapEntries = Map.prototype.entries
const mapSet = Map.prototype.set
const setValues = Set.prototype.values
const setAdd = Set.prototype.add
const mapIteratorNext = (getPrototypeOf(new Map().entries()) as { next: unknown }).next as (
  this: unknown
) => IteratorResult<unknown>
const setIteratorNext = (getPrototypeOf(new Set().values()) as { next: unknown }).next as (
  this: unknown
) => IteratorResult<unknown>
const typedArrayPrototype = getPrototypeOf(Uint8Array.prototype) as object
const viewConstructors: ReadonlyArray<new (length: number) => ArrayBufferView> = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array
]
const viewPrototypes: ReadonlyArray<object> = viewConstructors.map((constructor) => constructor.prototype as object)
const viewNames: ReadonlyArray<string> = viewConstructors.map((constructor) => constructor.name)
// a typed array's own type, from its internal slot (a swapped prototype does not change it)
const { typedArrayTag, bigintToString } = intrinsics
// the copies are made without `slice` (which asks the value's `constructor[Symbol.species]` what to build) and
// measured by the captured getters (never a `byteLength` image code redefined)
const typedArrayLength = (Reflect.getOwnPropertyDescriptor(typedArrayPrototype, "length") as PropertyDescriptor)
  .get as () => number
const typedArrayByteLength = (Reflect.getOwnPropertyDescriptor(typedArrayPrototype, "byteLength") as PropertyDescriptor)
  .get as () => number
const typedArraySet = Reflect.get(typedArrayPrototype, "set") as (this: unknown, source: unknown) => void
const arrayBufferByteLength = (
  Reflect.getOwnPropertyDescriptor(ArrayBuffer.prototype, "byteLength") as PropertyDescriptor
).get as () => number
const ArrayBufferConstructor = ArrayBuffer
const Uint8ArrayConstructor = Uint8Array

/** Built-ins whose state lives in internal slots a copy cannot carry: a body holding one is refused. */
const slotted: ReadonlyArray<readonly [object, string]> = [
  [Promise.prototype, "a Promise"],
  [WeakMap.prototype, "a WeakMap"],
  [WeakSet.prototype, "a WeakSet"],
  [WeakRef.prototype, "a WeakRef"],
  [FinalizationRegistry.prototype, "a FinalizationRegistry"],
  [RegExp.prototype, "a RegExp"],
  [SharedArrayBuffer.prototype, "a SharedArrayBuffer"],
  [DataView.prototype, "a DataView"],
  [Boolean.prototype, "a Boolean object"],
  [Number.prototype, "a Number object"],
  [String.prototype, "a String object"],
  [Symbol.prototype, "a Symbol object"],
  [BigInt.prototype, "a BigInt object"],
  [Function.prototype, "a function"]
]

const indexOf = (list: ReadonlyArray<object>, value: object): number => {
  for (let i = 0; i < list.length; i++) if (list[i] === value) return i
  return -1
}

/** What a non-plain object is, from its prototype chain (bounded: a proxy may answer forever). */
type Kind = "map" | "set" | "date" | "view" | "buffer" | "instance" | string
const kindOf = (proto: object): Kind => {
  let p: object | null = proto
  for (let steps = 0; p !== null && steps < 64; steps++) {
    // a copy keeps its prototype; a proxy there would run the sender's traps on every read the receiver makes
    if (isProxy(p)) return "an object whose prototype is a proxy"
    if (p === MapPrototype) return "map"
    if (p === SetPrototype) return "set"
    if (p === DatePrototype) return "date"
    if (p === typedArrayPrototype) return "view"
    if (p === ArrayBufferPrototype) return "buffer"
    if (p === ObjectPrototype || p === ErrorPrototype) return "instance"
    for (let i = 0; i < slotted.length; i++) if (slotted[i]![0] === p) return slotted[i]![1]
    p = getPrototypeOf(p)
  }
  return "instance"
}

/**
 * Copies a message body. Everything is copied, deeply, so nothing the sender does with its objects later reaches the
 * receiver and nothing the receiver does reaches the sender; primitives cost nothing. Arrays and plain objects (own
 * enumerable string keys) become fresh arrays and objects; `Map`s, `Set`s, `Date`s, `ArrayBuffer`s and typed arrays
 * fresh built-ins. Any other object — a class instance, an Effect data type such as `Option` or `Exit`, a Schema
 * class, an error — is copied as its own properties (every own key, each read once) on a fresh object with the same
 * prototype: the prototype is the type (its code), shared; the state is the copy. A `CapRef` is kept as it is (a ref
 * in a body grants nothing; only `caps` move authority). A function, a symbol, a cycle, an array or typed-array
 * subclass, a built-in whose state a copy cannot carry (Promise, WeakMap, RegExp, …), nesting deeper than
 * `depthMax`, or a body whose size (strings at two bytes a code unit, buffers by their bytes, eight bytes for
 * anything else, and eight for each array slot besides what it holds) passes `bytesMax` is refused (a `TooLarge`).
 * With `frozen`, each array and plain object of the copy
 * is frozen once everything it holds is (primitives, `CapRef`s, frozen copies): a copy whose top is frozen is plain
 * data frozen whole. Every built-in the copy calls was captured when the kernel loaded.
 */
export const bodyOf = (
  field: string,
  body: unknown,
  bytesMax: number,
  isCapRef: (value: object) => boolean,
  depthMax = 64,
  frozen = false
): { readonly value: unknown; readonly bytes: number } | Unreadable =>
  typeof body === "object" && body !== null && depthMax > 0 && getPrototypeOf(body) === ObjectPrototype
    ? recordOf(field, body as Record<string, unknown>, bytesMax, isCapRef, depthMax, frozen)
    : walk(field, body, bytesMax, isCapRef, depthMax, frozen)

/** `bodyOf`'s walk, for any value. */
const walk = (
  field: string,
  body: unknown,
  bytesMax: number,
  isCapRef: (value: object) => boolean,
  depthMax: number,
  frozen: boolean
): { readonly value: unknown; readonly bytes: number } | Unreadable => {
  let bytes = 0
  const path: Array<object> = []
  const count = (n: number) => {
    bytes += n
    if (bytes > bytesMax) throw new TooLarge(`${field} is larger than ${bytesMax} bytes`)
  }
  // `path[0..depth)` are the objects being copied around the one at `depth` (entries past it are stale: overwritten
  // on the next entry at their depth, never read)
  const enter = (value: object, depth: number) => {
    if (depth >= depthMax) throw new Unreadable(`${field} is nested deeper than ${depthMax}`)
    for (let i = 0; i < depth; i++) if (path[i] === value) throw new Unreadable(`${field} has a cycle`)
    // an own index is overwritten (no setter can run); a new one is defined by `push`
    if (depth < path.length) path[depth] = value
    else push(path, value)
  }
  const copy = (value: unknown, depth: number): unknown => {
    switch (typeof value) {
      case "string":
        count(2 * value.length)
        return value
      case "number":
      case "boolean":
      case "undefined":
        count(8)
        return value
      case "bigint":
        // a bigint holds its magnitude: half a byte a hex digit
        count(8 + Math.ceil((apply(bigintToString, value, [16]) as string).length / 2))
        return value
      case "object": {
        if (value === null) return null
        count(8)
        const proto = getPrototypeOf(value)
        // a `CapRef` is frozen with its own prototype: an array or an object of `Object.prototype` (or none) is not one
        if (proto !== ObjectPrototype && proto !== null && proto !== ArrayPrototype && isCapRef(value)) return value
        if (isArray(value)) {
          if (proto !== ArrayPrototype) throw new Unreadable(`${field}: not plain data (an array subclass)`)
          // bounded before any element is read: each costs at least 8 bytes, so a length past what is left of
          // `bytesMax` is refused from the length alone (a sparse array of length 1e9 is never walked)
          const items = arrayOf(field, value, Math.floor((bytesMax - bytes) / 8))
          if (items instanceof Unreadable) throw items
          // each slot costs 8 bytes whatever it holds (a `null` or `""` element is not free: one array shared many
          // times would otherwise make a small body copy into many slots)
          count(8 * items.length)
          enter(value, depth)
          let whole = frozen
          for (let i = 0; i < items.length; i++) {
            const item = copy(items[i], depth + 1)
            items[i] = item
            if (whole && typeof item === "object" && item !== null && !isFrozen(item)) whole = false
          }
          if (whole) freeze(items)
          return items
        }
        if (proto === ObjectPrototype || proto === null) {
          const keys = objectKeys(value)
          const out = proto === null ? objectCreate(null) : {}
          enter(value, depth)
          let whole = frozen
          for (let i = 0; i < keys.length; i++) {
            const key = keys[i]!
            count(2 * key.length)
            // a null-prototype object inherits nothing an assignment could run
            const item = copy((value as Record<string, unknown>)[key], depth + 1)
            if (proto === null) out[key] = item
            else putFresh(out as Record<string, unknown>, key, item)
            if (whole && typeof item === "object" && item !== null && !isFrozen(item)) whole = false
          }
          if (whole) freeze(out)
          return out
        }
        const kind = kindOf(proto)
        switch (kind) {
          case "map": {
            // a brand check as much as a read: the captured built-ins throw on anything that is not a Map
            const iterator = apply(mapEntries, value, [])
            const out = new MapConstructor<unknown, unknown>()
            enter(value, depth)
            for (;;) {
              const step = apply(mapIteratorNext, iterator, []) as IteratorResult<readonly [unknown, unknown]>
              if (step.done === true) break
              apply(mapSet, out, [copy(step.value[0], depth + 1), copy(step.value[1], depth + 1)])
            }
            return out
          }
          case "set": {
            const iterator = apply(setValues, value, [])
            const out = new SetConstructor<unknown>()
            enter(value, depth)
            for (;;) {
              const step = apply(setIteratorNext, iterator, []) as IteratorResult<unknown>
              if (step.done === true) break
              apply(setAdd, out, [copy(step.value, depth + 1)])
            }
            return out
          }
          case "date":
            return new DateConstructor(apply(dateGetTime, value, []) as number)
          case "view": {
            // the length and the copy come from built-ins captured at load, never from the value's own (possibly
            // overridden) methods
            if (!isView(value) || indexOf(viewPrototypes, proto) === -1) {
              throw new Unreadable(`${field}: not plain data (a typed-array subclass)`)
            }
            const at = indexOf(viewPrototypes, proto)
            // the copy is built as what the value is; one dressed in another typed array's prototype is refused (a
            // Uint8Array of 500 bytes copied as a Float64Array of 500 elements would be eight times larger)
            if (apply(typedArrayTag, value, []) !== viewNames[at]) {
              throw new Unreadable(`${field}: not plain data (a typed array with another type's prototype)`)
            }
            const Constructor = viewConstructors[at]!
            count(apply(typedArrayByteLength, value, []) as number)
            const copied = new Constructor(apply(typedArrayLength, value, []) as number)
            apply(typedArraySet, copied, [value])
            return copied
          }
          case "buffer": {
            if (proto !== ArrayBufferPrototype)
              throw new Unreadable(`${field}: not plain data (an ArrayBuffer subclass)`)
            const length = apply(arrayBufferByteLength, value, []) as number
            count(length)
            const copied = new ArrayBufferConstructor(length)
            apply(typedArraySet, new Uint8ArrayConstructor(copied), [new Uint8ArrayConstructor(value as ArrayBuffer)])
            return copied
          }
          case "instance": {
            const keys = ownKeys(value)
            const out = objectCreate(proto)
            enter(value, depth)
            for (let i = 0; i < keys.length; i++) {
              const key = keys[i]!
              const descriptor = getOwnPropertyDescriptor(value, key)
              if (descriptor === undefined) continue
              count(typeof key === "string" ? 2 * key.length : 8)
              // one read: a data property's value, or what an own getter answers once
              const item = hasOwn(descriptor, "value") ? descriptor.value : (value as Record<PropertyKey, unknown>)[key]
              put(out, key, copy(item, depth + 1), descriptor.enumerable === true)
            }
            return out
          }
          default:
            throw new Unreadable(`${field}: not plain data (${kind})`)
        }
      }
      default:
        throw new Unreadable(`${field}: not plain data (a ${typeof value})`)
    }
  }
  try {
    const value = copy(body, 0)
    return { value, bytes }
  } catch (error) {
    if (error instanceof Unreadable) return error
    throw error
  }
}

/**
 * `bodyOf` for an object of `Object.prototype`, the most common body: its keys copied here, without the walk's set-up
 * (a third of the cost of a small record), and each value that is an object copied by `bodyOf` with what is left of
 * the bounds (a cycle through the record is found one level down, when the record is met again).
 */
const recordOf = (
  field: string,
  record: Record<string, unknown>,
  bytesMax: number,
  isCapRef: (value: object) => boolean,
  depthMax: number,
  frozen: boolean
): { readonly value: unknown; readonly bytes: number } | Unreadable => {
  let bytes = 8
  if (bytes > bytesMax) return new TooLarge(`${field} is larger than ${bytesMax} bytes`)
  const keys = objectKeys(record)
  const out: Record<string, unknown> = {}
  let whole = frozen
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!
    let item = record[key]
    switch (typeof item) {
      case "string":
        bytes += 2 * key.length + 2 * item.length
        break
      case "number":
      case "boolean":
      case "undefined":
        bytes += 2 * key.length + 8
        break
      default: {
        bytes += 2 * key.length
        if (bytes > bytesMax) return new TooLarge(`${field} is larger than ${bytesMax} bytes`)
        // the walk, not `bodyOf`: a record met again below is then on the walk's path (a cycle), not copied afresh
        const copied = walk(field, item, bytesMax - bytes, isCapRef, depthMax - 1, frozen)
        if (copied instanceof Unreadable) {
          return copied instanceof TooLarge ? new TooLarge(`${field} is larger than ${bytesMax} bytes`) : copied
        }
        item = copied.value
        bytes += copied.bytes
        if (whole && typeof item === "object" && item !== null && !isFrozen(item)) whole = false
      }
    }
    if (bytes > bytesMax) return new TooLarge(`${field} is larger than ${bytesMax} bytes`)
    putFresh(out, key, item)
  }
  if (whole) freeze(out)
  return { value: out, bytes }
}

/**
 * Log fields, copied and bounded: a record that is not plain data, or that passes `bytesMax`, is replaced by a small
 * marker saying so (a log call never fails).
 */
export const logFieldsOf = (
  input: unknown,
  bytesMax: number,
  isCapRef: (value: object) => boolean
): Record<string, unknown> | undefined => {
  if (input === undefined) return undefined
  try {
    if (!isObject(input) || isArray(input)) return { dropped: "fields must be a record" }
    const copied = bodyOf("fields", input, bytesMax, isCapRef, 16)
    return copied instanceof Unreadable ? { dropped: copied.message } : (copied.value as Record<string, unknown>)
  } catch (error) {
    return { dropped: `unreadable: ${describe(error)}` }
  }
}

const TOOL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/
const regExpTest = RegExp.prototype.test
const reflectApply = Reflect.apply
const isToolName = (name: string): boolean => reflectApply(regExpTest, TOOL_NAME, [name]) as boolean

/** Freezes a fresh copy (plain data made by `bodyOf`) all the way down. */
const deepFreeze = (value: unknown): unknown => {
  if (typeof value !== "object" || value === null || isFrozen(value)) return value
  freeze(value)
  const keys = objectKeys(value)
  for (let i = 0; i < keys.length; i++) deepFreeze((value as Record<string, unknown>)[keys[i]!])
  return value
}

/**
 * A `message` caveat (`Sys.attenuate(cap, { message, invalid })`): a Schema (no services) every body sent through
 * the cap must decode as; `invalid` `fail` (default) or `drop`. The decoder is made here, once; what it does at send
 * is caught (a Schema whose code throws makes the body invalid, never the kernel fail).
 */
export const messageLayerOf = (schema: unknown, invalid: unknown): MessageLayer | Unreadable => {
  if (!Schema.isSchema(schema)) return new Unreadable("message must be a Schema")
  if (invalid !== undefined && invalid !== "fail" && invalid !== "drop") {
    return new Unreadable('invalid must be "fail" or "drop"')
  }
  let decode: (input: unknown) => import("effect").Exit.Exit<unknown, unknown>
  try {
    decode = Schema.decodeUnknownExit(schema as Schema.Decoder<unknown>, { errors: "all" })
  } catch (error) {
    return new Unreadable(`message: the Schema cannot decode: ${describe(error)}`)
  }
  return freeze({
    invalid: invalid === "drop" ? ("drop" as const) : ("fail" as const),
    decode: (body: unknown) => {
      try {
        const exit = decode(body)
        if (exit._tag === "Success") return freeze({ ok: true as const, value: exit.value })
        const cause = exit.cause as { readonly reasons?: ReadonlyArray<{ readonly error?: unknown }> }
        const error = cause.reasons?.[0]?.error
        return freeze({ ok: false as const, why: error instanceof Error ? error.message : "it does not decode" })
      } catch (error) {
        return freeze({ ok: false as const, why: `the Schema threw: ${describe(error)}` })
      }
    }
  })
}

/** The most tools one `tools` narrowing may name. */
export const toolGrantsMax = 1024
/** The most bytes one tool's `scope` may take. */
export const toolScopeBytesMax = 65536

/**
 * A `tools` caveat (`Sys.attenuate(cap, { tools })`): a record of tool names (letters, digits, `_ . : -`, at most
 * 128) to grants `{ scope?, approval? }`, each read once; the scope copied like a message body and frozen.
 */
export const toolGrantsOf = (input: unknown, isCapRef: (value: object) => boolean): ToolLayer | Unreadable => {
  if (!isObject(input) || isArray(input)) return new Unreadable("tools must be a record of tool names to grants")
  const names = objectKeys(input)
  if (names.length > toolGrantsMax) return new Unreadable(`tools: more than ${toolGrantsMax} tools`)
  const layer: ToolLayer = new SafeMap()
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!
    if (typeof name !== "string" || !isToolName(name))
      return new Unreadable(`tools: "${String(name)}" is not a tool name`)
    const grant: unknown = input[name]
    if (!isObject(grant) || isArray(grant))
      return new Unreadable(`tools.${name} must be an object { scope?, approval? }`)
    const scopeInput: unknown = grant.scope
    const approvalInput: unknown = grant.approval
    let scope: unknown = undefined
    if (scopeInput !== undefined) {
      const copied = bodyOf(`tools.${name}.scope`, scopeInput, toolScopeBytesMax, isCapRef, 16)
      if (copied instanceof Unreadable) return copied
      scope = deepFreeze(copied.value)
    }
    let approvalMs: number | undefined
    if (approvalInput === undefined || approvalInput === false) approvalMs = undefined
    else if (approvalInput === true) approvalMs = Infinity
    else if (isObject(approvalInput) && !isArray(approvalInput)) {
      const timeout = millisOf(`tools.${name}.approval.timeout`, approvalInput.timeout)
      if (timeout instanceof Unreadable) return timeout
      approvalMs = timeout ?? Infinity
    } else return new Unreadable(`tools.${name}.approval must be a boolean or { timeout }`)
    const entry: ToolLayerEntry = freeze({ scope, approvalMs })
    layer.set(name, entry)
  }
  return layer
}

/**
 * A request on a handle narrowed to some tools (or judged by policies), copied (so what the kernel checks is what the
 * driver gets) and its `tool` read from the copy; `undefined` tool when it has none. Its plain parts are frozen: no
 * one can change the request between the check and the driver, whatever reaches it on the way.
 */
export const toolRequestOf = (
  input: unknown,
  bytesMax: number,
  isCapRef: (value: object) => boolean
): { readonly request: unknown; readonly tool: string | undefined } | Unreadable => {
  const copied = bodyOf("request", input, bytesMax, isCapRef, 64, true)
  if (copied instanceof Unreadable) return copied
  const request = copied.value
  const tool = isObject(request) && !isArray(request) ? own(request, "tool") : undefined
  return { request, tool: typeof tool === "string" ? tool : undefined }
}

export { Unreadable }

const objectPrototype = Object.prototype
/**
 * The built-in values a request may hold whole: the kernel's copy makes them afresh (a `Date`, bytes, a cap), so they
 * have exactly these prototypes and no own properties a policy would have to see.
 */
const leafPrototypes: ReadonlyArray<object> = [
  Date.prototype,
  ArrayBuffer.prototype,
  DataView.prototype,
  Uint8Array.prototype,
  Uint8ClampedArray.prototype,
  Int8Array.prototype,
  Uint16Array.prototype,
  Int16Array.prototype,
  Uint32Array.prototype,
  Int32Array.prototype,
  Float32Array.prototype,
  Float64Array.prototype,
  BigInt64Array.prototype,
  BigUint64Array.prototype
]

/**
 * Whether `value` is plain data: primitives, arrays and objects of `Object.prototype` (or none) whose own properties
 * are all string-keyed data properties holding plain data, and (whole) dates, bytes and caps. Bounded: the copy it
 * runs on already is.
 */
const plainData = (value: unknown, isCapRef: (value: object) => boolean, depth: number): boolean => {
  if (typeof value !== "object" || value === null) return typeof value !== "function" && typeof value !== "symbol"
  if (depth > 64) return false
  if (isCapRef(value)) return true
  const proto = getPrototypeOf(value)
  if (proto !== null && includes(leafPrototypes, proto)) return ownKeys(value).length === 0 || isTypedIndexOnly(value)
  const array = isArray(value)
  if (!array && proto !== objectPrototype && proto !== null) return false
  const keys = ownKeys(value)
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!
    if (typeof key !== "string") return false
    const descriptor = getOwnPropertyDescriptor(value, key)!
    if (!("value" in descriptor)) return false
    if (array && key === "length") continue
    if (!plainData(descriptor.value, isCapRef, depth + 1)) return false
  }
  return true
}

/** A typed array's own keys are its indices (data the driver reads as bytes); anything else is not plain. */
const isTypedIndexOnly = (value: object): boolean => {
  const keys = ownKeys(value)
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!
    if (typeof key !== "string" || key.length === 0 || (key.length > 1 && key.charCodeAt(0) === 48)) return false
    // digits only, read by char code (no RegExp: image code may have patched its prototype)
    for (let c = 0; c < key.length; c++) {
      const code = key.charCodeAt(c)
      if (code < 48 || code > 57) return false
    }
  }
  return true
}

/**
 * Whether a (copied) request is plain data, as the policies need it: what they judge and what the driver reads must
 * be one thing (see `plainData`).
 */
export const isPlainData = (value: unknown, isCapRef: (value: object) => boolean): boolean =>
  plainData(value, isCapRef, 0)
