/**
 * Encodes journaled values faithfully as JSON, and renders any value as one canonical string (for digests and MACs).
 *
 * JSON changes some JavaScript values silently: `NaN`, `±Infinity` become `null`, `-0` becomes `0`, a `Date` becomes
 * its ISO string, `undefined` in an array becomes `null` and in an object disappears, a `bigint` throws. A journal that
 * replays a changed value is wrong without saying so, so `encode` tags each of these
 * (`{ "$agentos": "NaN" }`, `{ "$agentos": "bigint", "digits": "12" }`, …) and `decode` turns the tags back; an object
 * whose own key is `$agentos` is itself wrapped (`{ "$agentos": "object", "entries": … }`), so no value can pass for a
 * tag. Anything else JSON cannot carry faithfully — a function, a symbol, a cycle, a sparse array, an object with
 * another prototype than `Object.prototype` or `null` (a `Map`, a class instance, a typed array) — is refused with a
 * reason, never changed.
 *
 * Private to the package.
 */
import { includes, intrinsics, push } from "./primordials.ts"

const tagKey = "$agentos"

/** Nesting depth past which a value is refused: the encoders recurse, and a journal line is bounded anyway. */
const depthMax = 512

/**
 * Nesting depth past which a JSON text (a journal line, once parsed) is refused before anything recurses over it:
 * room for a value at `depthMax` whose every level is wrapped (`{ "$agentos": "object", "entries": … }` adds one
 * level), inside a record. `canonical` refuses (throws `Unencodable`) past it rather than render two values alike.
 */
export const jsonDepthMax = 2 * depthMax + 16

/**
 * Whether parsed JSON nests deeper than `max`, found without recursion (a line of a hostile file may nest hundreds of
 * thousands deep). A text no longer than `max` characters cannot nest deeper than `max`: the caller may skip it.
 */
export const deeperThan = (json: unknown, max: number): boolean => {
  if (typeof json !== "object" || json === null) return false
  const stack: Array<unknown> = [json]
  const depths: Array<number> = [1]
  while (stack.length > 0) {
    const value = stack.pop() as object
    const depth = depths.pop()!
    if (depth > max) return true
    const children = Array.isArray(value) ? value : Object.values(value)
    for (let i = 0; i < children.length; i++) {
      const child = children[i]
      if (typeof child === "object" && child !== null) {
        stack.push(child)
        depths.push(depth + 1)
      }
    }
  }
  return false
}

/** What an exception thrown while reading a value says, without trusting it to say anything. */
const describeThrown = (error: unknown): string => {
  try {
    return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  } catch {
    return "an exception"
  }
}

/** Why a value cannot be encoded faithfully. */
export class Unencodable {
  readonly reason: string
  constructor(reason: string) {
    this.reason = reason
  }
}

const objectPrototype = Object.prototype
const isPlain = (value: object): boolean => {
  const prototype = Object.getPrototypeOf(value)
  return prototype === objectPrototype || prototype === null
}

const tagged = (tag: string, fields?: Record<string, unknown>) => ({ [tagKey]: tag, ...fields })

const encodeNumber = (value: number): unknown => {
  if (Number.isNaN(value)) return tagged("NaN")
  if (value === Infinity) return tagged("Infinity")
  if (value === -Infinity) return tagged("-Infinity")
  if (Object.is(value, -0)) return tagged("-0")
  return value
}

/**
 * A JSON-safe image of `value` that `decode` turns back into an equal value, or `Unencodable` saying why there is
 * none. Values that JSON keeps as they are (strings, finite numbers, booleans, null, plain objects and dense arrays of
 * them) come back as the same object graph shape.
 */
export const encode = (value: unknown): unknown => {
  const seen = new Set<object>()
  const walk = (value: unknown, depth: number): unknown => {
    switch (typeof value) {
      case "string":
      case "boolean":
        return value
      case "number":
        return encodeNumber(value)
      case "bigint":
        return tagged("bigint", { digits: value.toString() })
      case "undefined":
        return tagged("undefined")
      case "function":
        throw new Unencodable("a function")
      case "symbol":
        throw new Unencodable("a symbol")
    }
    if (value === null) return null
    const object = value as object
    if (depth > depthMax) throw new Unencodable(`nested deeper than ${depthMax}`)
    if (seen.has(object)) throw new Unencodable("a cycle")
    if (object instanceof Date) {
      const time = object.getTime()
      return tagged("Date", { iso: Number.isNaN(time) ? null : object.toISOString() })
    }
    seen.add(object)
    let out: unknown
    if (Array.isArray(object)) {
      const items: Array<unknown> = []
      for (let i = 0; i < object.length; i++) {
        if (!(i in object)) throw new Unencodable("a sparse array")
        items.push(walk(object[i], depth + 1))
      }
      out = items
    } else {
      if (!isPlain(object)) throw new Unencodable(`a ${object.constructor?.name ?? "non-plain"} object`)
      if (Object.getOwnPropertySymbols(object).length > 0) throw new Unencodable("an object with symbol keys")
      const entries: Record<string, unknown> = {}
      let wrap = false
      for (const key of Object.keys(object)) {
        if (key === tagKey) wrap = true
        Object.defineProperty(entries, key, {
          value: walk((object as Record<string, unknown>)[key], depth + 1),
          enumerable: true,
          writable: true,
          configurable: true
        })
      }
      out = wrap ? tagged("object", { entries }) : entries
    }
    seen.delete(object)
    return out
  }
  try {
    return walk(value, 0)
  } catch (error) {
    if (error instanceof Unencodable) return error
    // a getter that throws, a revoked proxy, a proxy trap that throws: the value cannot be read, so not stored
    return new Unencodable(`a value whose reading threw (${describeThrown(error)})`)
  }
}

/** Turns an image made by `encode` back into its value; a malformed tag is `Unencodable` (the line is corrupt). */
export const decode = (json: unknown): unknown => {
  const walk = (json: unknown): unknown => {
    if (typeof json !== "object" || json === null) return json
    if (Array.isArray(json)) return json.map(walk)
    const record = json as Record<string, unknown>
    if (!Object.hasOwn(record, tagKey)) {
      const out: Record<string, unknown> = {}
      for (const key of Object.keys(record)) {
        Object.defineProperty(out, key, {
          value: walk(record[key]),
          enumerable: true,
          writable: true,
          configurable: true
        })
      }
      return out
    }
    const tag = record[tagKey]
    switch (tag) {
      case "NaN":
        return NaN
      case "Infinity":
        return Infinity
      case "-Infinity":
        return -Infinity
      case "-0":
        return -0
      case "undefined":
        return undefined
      case "bigint":
        if (typeof record.digits === "string" && /^-?\d+$/.test(record.digits)) return BigInt(record.digits)
        break
      case "Date":
        if (record.iso === null) return new Date(NaN)
        if (typeof record.iso === "string" && !Number.isNaN(Date.parse(record.iso))) return new Date(record.iso)
        break
      case "object": {
        const entries = record.entries
        if (typeof entries === "object" && entries !== null && !Array.isArray(entries)) {
          const out: Record<string, unknown> = {}
          for (const key of Object.keys(entries)) {
            Object.defineProperty(out, key, {
              value: walk((entries as Record<string, unknown>)[key]),
              enumerable: true,
              writable: true,
              configurable: true
            })
          }
          return out
        }
        break
      }
    }
    throw new Unencodable(`a malformed ${tagKey} tag ${JSON.stringify(tag)}`)
  }
  try {
    return walk(json)
  } catch (error) {
    if (error instanceof Unencodable) return error
    throw error
  }
}

/**
 * One string for a value, the same for equal values whatever their key order: JSON with sorted keys over the tagged
 * image. Unlike `encode` it refuses nothing but nesting deeper than `jsonDepthMax` (throws `Unencodable`) — a typed array is rendered as its bytes, another object by its
 * constructor name and own enumerable properties, a cycle as a marker — so that any request a process makes has a
 * digest.
 */
export const canonical = (value: unknown): string => {
  // the objects being rendered, outermost first: a cycle leads back to one of them (an array, not a Set: the path is
  // short, and this runs on every journaled call)
  const path: Array<object> = []
  const walk = (value: unknown): string => {
    switch (typeof value) {
      case "string":
        return plainString.test(value) ? `"${value}"` : JSON.stringify(value)
      case "boolean":
        return value ? "true" : "false"
      case "number": {
        const encoded = encodeNumber(value)
        return typeof encoded === "number" ? String(encoded) : JSON.stringify(encoded)
      }
      case "bigint":
        return `{"${tagKey}":"bigint","digits":"${value.toString()}"}`
      case "undefined":
        return `{"${tagKey}":"undefined"}`
      case "function":
        return `{"${tagKey}":"function"}`
      case "symbol":
        return `{"${tagKey}":"symbol",${JSON.stringify(String(value.description))}}`
    }
    if (value === null) return "null"
    const object = value as object
    // past the bound a render would have to stop and two values would render alike: refused instead
    if (path.length >= jsonDepthMax) throw new Unencodable(`nested deeper than ${jsonDepthMax}`)
    if (path.includes(object)) return `{"${tagKey}":"cycle"}`
    const prototype = Object.getPrototypeOf(object)
    const array = Array.isArray(object)
    if (!array && prototype !== objectPrototype && prototype !== null) {
      if (object instanceof Date) {
        const time = object.getTime()
        return `{"${tagKey}":"Date","iso":${Number.isNaN(time) ? "null" : JSON.stringify(object.toISOString())}}`
      }
      if (ArrayBuffer.isView(object)) {
        const bytes = new Uint8Array(object.buffer, object.byteOffset, object.byteLength)
        return `{"${tagKey}":${JSON.stringify(object.constructor.name)},"bytes":"${Buffer.from(bytes).toString("base64")}"}`
      }
    }
    path.push(object)
    let out: string
    if (array) {
      out = "["
      for (let i = 0; i < object.length; i++) {
        if (i > 0) out += ","
        out += i in object ? walk(object[i]) : `{"${tagKey}":"hole"}`
      }
      out += "]"
    } else {
      const keys = objectKeysD(object)
      if (keys.length > 1) reflectApply(arraySort, keys, [])
      let body = "{"
      let wrap = false
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i]!
        if (key === tagKey) wrap = true
        if (i > 0) body += ","
        body += `${plainString.test(key) ? `"${key}"` : JSON.stringify(key)}:${walk((object as Record<string, unknown>)[key])}`
      }
      body += "}"
      // the same wrapping as `encode`'s, so that no object renders like a tag
      if (prototype !== objectPrototype && prototype !== null) {
        out = `{"${tagKey}":${JSON.stringify(object.constructor?.name ?? "object")},"entries":${body}}`
      } else out = wrap ? `{"${tagKey}":"object","entries":${body}}` : body
    }
    path.pop()
    return out
  }
  return walk(value)
}

// a number's two 32-bit words, read through one buffer made once (two typed arrays per digest cost more than the
// rest of it); written and read with no code of anyone's in between
const float = new Float64Array(1)
const words = new Int32Array(float.buffer)

const getPrototypeOfD = Reflect.getPrototypeOf
const isArrayD = Array.isArray
const objectKeysD = Object.keys
const isViewD = ArrayBuffer.isView
const arraySort = Array.prototype.sort
const {
  apply: reflectApply,
  bigintToString: bigintToStringD,
  DatePrototype: DatePrototypeD,
  dateGetTime: dateGetTimeD,
  TypedArrayPrototype: typedArrayPrototypeD,
  typedArrayTag: typedArrayTagD
} = intrinsics
const typedArrayBufferD = Reflect.getOwnPropertyDescriptor(typedArrayPrototypeD, "buffer")!.get!
const typedArrayOffsetD = Reflect.getOwnPropertyDescriptor(typedArrayPrototypeD, "byteOffset")!.get!
const typedArrayLengthD = Reflect.getOwnPropertyDescriptor(typedArrayPrototypeD, "byteLength")!.get!
const dataViewBufferD = Reflect.getOwnPropertyDescriptor(DataView.prototype, "buffer")!.get!
const dataViewOffsetD = Reflect.getOwnPropertyDescriptor(DataView.prototype, "byteOffset")!.get!
const dataViewLengthD = Reflect.getOwnPropertyDescriptor(DataView.prototype, "byteLength")!.get!
const Uint8ArrayD = Uint8Array
const ownDescriptor = Reflect.getOwnPropertyDescriptor

/** The name of the class `prototype` belongs to, read from own data properties only (no getter runs). */
const typeName = (prototype: object): string => {
  const constructor = ownDescriptor(prototype, "constructor")?.value as unknown
  if (typeof constructor !== "function") return "object"
  const name = ownDescriptor(constructor, "name")?.value as unknown
  return typeof name === "string" ? name : "object"
}

/** A string JSON writes as it is, between quotes. */
const plainString = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/

const hexDigits = "0123456789abcdef"

/** `n` (an unsigned 32-bit integer) as eight hex digits, a nibble at a time (`toString(16)` is ten times slower). */
const hex8 = (n: number): string => {
  let text = ""
  for (let shift = 28; shift >= 0; shift -= 4) text += hexDigits[(n >>> shift) & 15]
  return text
}

/**
 * A 64-bit digest of a value's structure, equal for values `canonical` renders the same, computed without building
 * that string: the kernel digests every journaled request, and a SHA-256 over the canonical JSON cost more than the
 * rest of a recorded driver call. It is a good non-cryptographic hash (two multiply-rotate lanes, finalised like
 * MurmurHash3): two lanes of 32 bits, so an accidental collision is vanishingly unlikely, but it does not
 * stop someone who crafts a collision — against an adversary, the journal's MAC is the defence. It calls only
 * built-ins captured at load (the kernel's copy of a request never passes through a method image code patched).
 */
export const digest = (...values: ReadonlyArray<unknown>): string => {
  let h1 = 0x9747b28c
  let h2 = 0x2f8a3c41
  const mix = (word: number) => {
    let k = Math.imul(word, 0xcc9e2d51)
    k = (k << 15) | (k >>> 17)
    h1 ^= Math.imul(k, 0x1b873593)
    h1 = ((h1 << 13) | (h1 >>> 19)) + 0xe6546b64
    h1 |= 0
    let j = Math.imul(word ^ 0x5bd1e995, 0x85ebca6b)
    j = (j << 17) | (j >>> 15)
    h2 ^= Math.imul(j, 0xc2b2ae35)
    h2 = Math.imul((h2 << 11) | (h2 >>> 21), 5) + 0x52dce729
    h2 |= 0
  }
  const mixString = (text: string) => {
    mix(text.length)
    for (let i = 0; i < text.length; i++) mix(text.charCodeAt(i))
  }
  const path: Array<object> = []
  const walk = (value: unknown): void => {
    switch (typeof value) {
      case "string":
        mix(1)
        return mixString(value)
      case "boolean":
        return mix(value ? 2 : 3)
      case "number":
        if ((value | 0) === value && !Object.is(value, -0)) {
          mix(4)
          return mix(value)
        }
        mix(5)
        float[0] = Number.isNaN(value) ? NaN : value
        mix(words[0]!)
        return mix(words[1]!)
      case "bigint":
        mix(6)
        return mixString(reflectApply(bigintToStringD, value, []) as string)
      case "undefined":
        return mix(7)
      case "function":
        return mix(8)
      case "symbol":
        mix(9)
        return mixString(String(value.description))
    }
    if (value === null) return mix(10)
    const object = value as object
    if (path.length > depthMax || includes(path, object)) return mix(11)
    const prototype = getPrototypeOfD(object)
    const array = isArrayD(object)
    if (!array && prototype !== objectPrototype && prototype !== null) {
      if (prototype === DatePrototypeD) {
        mix(12)
        float[0] = reflectApply(dateGetTimeD, object, []) as number
        mix(words[0]!)
        return mix(words[1]!)
      }
      if (isViewD(object)) {
        mix(13)
        // the view's own type and bytes, from its internal slots (never a getter or a `constructor` it was given)
        const tag = reflectApply(typedArrayTagD, object, []) as string | undefined
        mixString(tag ?? "DataView")
        const slots =
          tag === undefined
            ? [dataViewBufferD, dataViewOffsetD, dataViewLengthD]
            : [typedArrayBufferD, typedArrayOffsetD, typedArrayLengthD]
        const bytes = new Uint8ArrayD(
          reflectApply(slots[0]!, object, []) as ArrayBuffer,
          reflectApply(slots[1]!, object, []) as number,
          reflectApply(slots[2]!, object, []) as number
        )
        mix(bytes.length)
        for (let i = 0; i < bytes.length; i++) mix(bytes[i]!)
        return
      }
    }
    push(path, object)
    if (array) {
      mix(14)
      mix(object.length)
      for (let i = 0; i < object.length; i++) {
        if (i in object) walk(object[i])
        else mix(15)
      }
    } else {
      if (prototype !== objectPrototype && prototype !== null) {
        mix(16)
        mixString(typeName(prototype))
      } else mix(17)
      const keys = objectKeysD(object)
      if (keys.length > 1) reflectApply(arraySort, keys, [])
      mix(keys.length)
      for (let i = 0; i < keys.length; i++) {
        mixString(keys[i]!)
        walk((object as Record<string, unknown>)[keys[i]!])
      }
    }
    path.length--
  }
  for (let i = 0; i < values.length; i++) walk(values[i])
  const finish = (h: number, other: number) => {
    h ^= other
    h ^= h >>> 16
    h = Math.imul(h, 0x85ebca6b)
    h ^= h >>> 13
    h = Math.imul(h, 0xc2b2ae35)
    h ^= h >>> 16
    return hex8(h >>> 0)
  }
  return finish(h1, h2 >>> 3) + finish(h2, h1 >>> 5)
}
