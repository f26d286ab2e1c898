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

const tagKey = "$agentos"

/** Nesting depth past which a value is refused: the encoders recurse, and a journal line is bounded anyway. */
const depthMax = 512

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
    throw error
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
 * image. Unlike `encode` it refuses nothing — a typed array is rendered as its bytes, another object by its
 * constructor name and own enumerable properties, a cycle as a marker — so that any request a process makes has a
 * digest.
 */
export const canonical = (value: unknown): string => {
  const seen = new Set<object>()
  const walk = (value: unknown, depth: number): string => {
    switch (typeof value) {
      case "string":
        return JSON.stringify(value)
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
    if (depth > depthMax || seen.has(object)) return `{"${tagKey}":"cycle"}`
    if (object instanceof Date) {
      const time = object.getTime()
      return `{"${tagKey}":"Date","iso":${Number.isNaN(time) ? "null" : JSON.stringify(object.toISOString())}}`
    }
    if (ArrayBuffer.isView(object)) {
      const bytes = new Uint8Array(object.buffer, object.byteOffset, object.byteLength)
      return `{"${tagKey}":${JSON.stringify(object.constructor.name)},"bytes":"${Buffer.from(bytes).toString("base64")}"}`
    }
    seen.add(object)
    let out: string
    if (Array.isArray(object)) {
      const items: Array<string> = []
      for (let i = 0; i < object.length; i++)
        items.push(i in object ? walk(object[i], depth + 1) : `{"${tagKey}":"hole"}`)
      out = `[${items.join(",")}]`
    } else {
      const keys = Object.keys(object).sort()
      const parts: Array<string> = []
      for (const key of keys)
        parts.push(`${JSON.stringify(key)}:${walk((object as Record<string, unknown>)[key], depth + 1)}`)
      const body = `{${parts.join(",")}}`
      // the same wrapping as `encode`'s, so that no object renders like a tag
      if (!isPlain(object))
        out = `{"${tagKey}":${JSON.stringify(object.constructor?.name ?? "object")},"entries":${body}}`
      else out = keys.includes(tagKey) ? `{"${tagKey}":"object","entries":${body}}` : body
    }
    seen.delete(object)
    return out
  }
  return walk(value, 0)
}
