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
import { durationMillis } from "./duration.ts"

/** A syscall input that could not be read: the reason, for the `ArgumentError` message. */
class Unreadable {
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

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
    : isObject(input) && !Array.isArray(input)
      ? input
      : new Unreadable(`${field} must be an object`)

/** Copies an array's elements by index (the length read once), bounded by `max`; never calls its iterator. */
const arrayOf = (field: string, input: unknown, max: number): Array<unknown> | Unreadable => {
  if (!Array.isArray(input)) return new Unreadable(`${field} must be an array`)
  const length: unknown = input.length
  if (typeof length !== "number" || !Number.isInteger(length) || length < 0) {
    return new Unreadable(`${field} has no valid length`)
  }
  if (length > max) return new Unreadable(`${field}: more than ${max} entries`)
  const out: Array<unknown> = new Array(length)
  for (let i = 0; i < length; i++) out[i] = input[i]
  return out
}

const amount = (field: string, value: unknown): number | undefined | Unreadable =>
  value === undefined
    ? undefined
    : typeof value === "number" && Number.isFinite(value) && value >= 0
      ? value
      : new Unreadable(`${field} must be a finite number ≥ 0`)

/** A cost: `tokens`, `toolCalls`, `usd`, each absent or a finite number ≥ 0. */
export const costOf = (field: string, input: unknown): Accounts.Cost | Unreadable => {
  if (!isObject(input) || Array.isArray(input)) return new Unreadable(`${field} must be an object`)
  const tokens = amount(`${field}.tokens`, input.tokens)
  if (tokens instanceof Unreadable) return tokens
  const toolCalls = amount(`${field}.toolCalls`, input.toolCalls)
  if (toolCalls instanceof Unreadable) return toolCalls
  const usd = amount(`${field}.usd`, input.usd)
  if (usd instanceof Unreadable) return usd
  const cost: { tokens?: number; toolCalls?: number; usd?: number } = {}
  if (tokens !== undefined) cost.tokens = tokens
  if (toolCalls !== undefined) cost.toolCalls = toolCalls
  if (usd !== undefined) cost.usd = usd
  return Object.freeze(cost)
}

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
  const quota: Record<string, unknown> = {}
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
  return Number.isNaN(ms) ? new Unreadable(`${field} is not a duration ≥ 0`) : ms
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
    : typeof input === "number" && Number.isInteger(input) && input >= min && input <= max
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
  if (tag === "Shutdown") return Process.shutdown
  if (tag === "Fault") {
    const error = input.error
    if (typeof error !== "string") return new Unreadable(`${field}: Fault needs an error string`)
    return Process.fault(error.length > errorLengthMax ? error.slice(0, errorLengthMax) : error)
  }
  return new Unreadable(
    `${field}: a process may end itself or another only with Normal, Shutdown or Fault (${String(tag).slice(0, 32)} is the kernel's)`
  )
}

/** Send options, copied. */
export interface SendInput {
  readonly caps: ReadonlyArray<unknown> | undefined
  readonly corr: string | number | undefined
  readonly deadlineMs: number | undefined
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
  return { caps: caps?.length === 0 ? undefined : caps, corr, deadlineMs }
}

const noSendOptions: SendInput = Object.freeze({ caps: undefined, corr: undefined, deadlineMs: undefined })

/** Spawn options, copied (`args` is handed to the child's image as given). */
export interface SpawnInput {
  readonly args: unknown
  readonly caps: ReadonlyArray<unknown> | undefined
  readonly quota: Accounts.Quota | undefined
  readonly link: boolean
  readonly priority: number | undefined
  readonly priorityMax: number | undefined
  readonly deadlineMs: number | undefined
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
  return {
    args,
    caps: caps?.length === 0 ? undefined : caps,
    quota,
    link: link === true,
    priority,
    priorityMax,
    deadlineMs
  }
}

const noSpawnOptions: SpawnInput = Object.freeze({
  args: undefined,
  caps: undefined,
  quota: undefined,
  link: false,
  priority: undefined,
  priorityMax: undefined,
  deadlineMs: undefined
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

const isCapRef = (u: object, capRefClass: Function): boolean => u instanceof capRefClass

const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object
const typedArraySlice = Reflect.get(typedArrayPrototype, "slice") as (this: unknown) => ArrayBufferView
const viewPrototypes: ReadonlySet<object> = new Set([
  Int8Array.prototype,
  Uint8Array.prototype,
  Uint8ClampedArray.prototype,
  Int16Array.prototype,
  Uint16Array.prototype,
  Int32Array.prototype,
  Uint32Array.prototype,
  Float32Array.prototype,
  Float64Array.prototype,
  BigInt64Array.prototype,
  BigUint64Array.prototype
])
const viewSetHas = Set.prototype.has

/** A copy of a built-in typed array (not a subclass, not a DataView), made by the captured built-in `slice`. */
const copyView = (value: ArrayBufferView): ArrayBufferView | undefined =>
  Reflect.apply(viewSetHas, viewPrototypes, [Object.getPrototypeOf(value)])
    ? Reflect.apply(typedArraySlice, value, [])
    : undefined

/**
 * Copies a message body. Plain data is copied deeply — arrays, plain objects (own enumerable string keys, each read
 * once), `Map`s, `Set`s, typed arrays and `Date`s — so nothing the sender does with its objects later reaches the
 * receiver. Primitives cost nothing. A `CapRef` is kept as it is (a ref in a body grants nothing; only `caps` move
 * authority), and so is any other class instance (an Effect data type such as `Exit` or `Option`, a Schema class, an
 * error: values meant to be immutable). A function, a symbol, a cycle, an array subclass, nesting deeper than
 * `depthMax`, or a body whose size (strings at two bytes a code unit, typed arrays by their bytes, eight bytes for
 * anything else) passes `bytesMax` is refused.
 */
export const bodyOf = (
  field: string,
  body: unknown,
  bytesMax: number,
  capRefClass: Function,
  depthMax = 64
): { readonly value: unknown; readonly bytes: number } | Unreadable => {
  let bytes = 0
  const path: Array<object> = []
  const copy = (value: unknown, depth: number): unknown => {
    switch (typeof value) {
      case "string":
        bytes += 2 * value.length
        if (bytes > bytesMax) throw new Unreadable(`${field} is larger than ${bytesMax} bytes`)
        return value
      case "number":
      case "boolean":
      case "undefined":
      case "bigint":
        bytes += 8
        if (bytes > bytesMax) throw new Unreadable(`${field} is larger than ${bytesMax} bytes`)
        return value
      case "object": {
        if (value === null) return null
        bytes += 8
        if (bytes > bytesMax) throw new Unreadable(`${field} is larger than ${bytesMax} bytes`)
        if (isCapRef(value, capRefClass)) return value
        if (depth >= depthMax) throw new Unreadable(`${field} is nested deeper than ${depthMax}`)
        if (path.includes(value)) throw new Unreadable(`${field} has a cycle`)
        if (value instanceof Date) return new Date(value.getTime())
        const proto = Object.getPrototypeOf(value)
        if (Array.isArray(value)) {
          if (proto !== Array.prototype) throw new Unreadable(`${field}: not plain data (an array subclass)`)
          const items = arrayOf(field, value, Infinity)
          if (items instanceof Unreadable) throw items
          path.push(value)
          for (let i = 0; i < items.length; i++) items[i] = copy(items[i], depth + 1)
          path.pop()
          return items
        }
        if (proto !== Object.prototype && proto !== null) {
          if (value instanceof Map) {
            const out = new Map<unknown, unknown>()
            path.push(value)
            for (const [key, item] of value) out.set(copy(key, depth + 1), copy(item, depth + 1))
            path.pop()
            return out
          }
          if (value instanceof Set) {
            const out = new Set<unknown>()
            path.push(value)
            for (const item of value) out.add(copy(item, depth + 1))
            path.pop()
            return out
          }
          if (ArrayBuffer.isView(value)) {
            // the length and the copy come from built-ins captured at load, never from the value's own (possibly
            // overridden) methods
            const copied = copyView(value)
            if (copied === undefined) throw new Unreadable(`${field}: not plain data (a view subclass)`)
            bytes += copied.byteLength
            if (bytes > bytesMax) throw new Unreadable(`${field} is larger than ${bytesMax} bytes`)
            return copied
          }
          // any other class instance (an Effect data type, a Schema class, an error) is a value the sender hands
          // over as it is: it is not copied, so give immutable ones
          return value
        }
        const keys = Object.keys(value)
        const out: Record<string, unknown> = {}
        path.push(value)
        for (let i = 0; i < keys.length; i++) {
          const key = keys[i]!
          bytes += 2 * key.length
          const item = copy((value as Record<string, unknown>)[key], depth + 1)
          if (key === "__proto__")
            Object.defineProperty(out, key, { value: item, enumerable: true, writable: true, configurable: true })
          else out[key] = item
        }
        path.pop()
        return out
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
 * Log fields, copied and bounded: a record that is not plain data, or that passes `bytesMax`, is replaced by a small
 * marker saying so (a log call never fails).
 */
export const logFieldsOf = (
  input: unknown,
  bytesMax: number,
  capRefClass: Function
): Record<string, unknown> | undefined => {
  if (input === undefined) return undefined
  try {
    if (!isObject(input) || Array.isArray(input)) return { dropped: "fields must be a record" }
    const copied = bodyOf("fields", input, bytesMax, capRefClass, 16)
    return copied instanceof Unreadable ? { dropped: copied.message } : (copied.value as Record<string, unknown>)
  } catch (error) {
    return { dropped: `unreadable: ${describe(error)}` }
  }
}

export { Unreadable }
