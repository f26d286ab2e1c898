/**
 * Captures a process as a JSON-safe value and describes how it is resumed on any kernel.
 *
 * A snapshot holds what a process is besides its code: its context memory (working set and swap), the messages
 * waiting in its mailbox (without caps: capabilities never leave their kernel), what is left of its budget, its
 * priority and what is left of its deadline, and the ABI version. `kernel.restore(snapshot, image, options)` boots a
 * new root process from it — on the same kernel, another kernel, or another program — with its memory restored, its
 * messages waiting and its quota set to what was left. Restoring a snapshot of another ABI fails with
 * `SnapshotError`.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * The snapshot format's version; `restore` refuses any other.
 *
 * @category constants
 */
export const abi = 1

const Limit = Schema.NullOr(Schema.Number) // `null` for no limit (JSON has no Infinity)

const SegmentSchema = Schema.Struct({
  id: Schema.Number,
  body: Schema.Unknown,
  tokens: Schema.Number,
  pinned: Schema.Boolean
})

/**
 * @category schemas
 */
export const Snapshot = Schema.Struct({
  abi: Schema.Number,
  name: Schema.String,
  memory: Schema.Struct({ working: Schema.Array(SegmentSchema), swap: Schema.Array(SegmentSchema) }),
  mailbox: Schema.Array(
    Schema.Struct({
      from: Schema.Number,
      body: Schema.Unknown,
      corr: Schema.optionalKey(Schema.Union([Schema.String, Schema.Number])),
      /** Millis the message had left before its deadline. */
      deadlineInMs: Schema.optionalKey(Schema.Number)
    })
  ),
  budget: Schema.Struct({
    tokens: Limit,
    toolCalls: Limit,
    usd: Limit,
    mem: Limit,
    mailbox: Schema.Number,
    wallMs: Limit
  }),
  priority: Schema.Number,
  deadlineInMs: Limit
})
export type Snapshot = typeof Snapshot.Type

/**
 * `snapshot` of a process that is not running or that holds a value JSON cannot carry faithfully (`unencodable`:
 * the message names the message or segment and the path), or `restore` of a value that is not a snapshot of this ABI.
 *
 * @category errors
 */
export class SnapshotError extends Schema.TaggedError<SnapshotError>()("SnapshotError", {
  reason: Schema.Literals(["unknown-process", "invalid", "abi-mismatch", "unencodable"]),
  message: Schema.String
}) {}

/** `Infinity` as `null`, for JSON. */
export const limitOf = (n: number): number | null => (n === Infinity ? null : n)

/** `null` back to `undefined` (no limit) for a quota. */
export const quotaOf = (n: number | null): number | undefined => (n === null ? undefined : n)

/**
 * Where `value` holds something JSON would drop or change (a bigint, a function, a symbol, a non-finite number, a
 * cycle), as a path from `at`; `undefined` when it is JSON-safe.
 *
 * @category utils
 */
export const unencodableAt = (value: unknown, at: string): string | undefined => {
  const path: Array<object> = []
  const walk = (v: unknown, where: string): string | undefined => {
    switch (typeof v) {
      case "bigint":
      case "function":
      case "symbol":
        return `a ${typeof v} at ${where}`
      case "number":
        return Number.isFinite(v) ? undefined : `${v} at ${where}`
      case "object": {
        if (v === null) return undefined
        if (path.includes(v)) return `a cycle at ${where}`
        path.push(v)
        try {
          if (Array.isArray(v)) {
            for (let i = 0; i < v.length; i++) {
              const found = walk(v[i], `${where}[${i}]`)
              if (found !== undefined) return found
            }
            return undefined
          }
          for (const key of Object.keys(v)) {
            const found = walk((v as Record<string, unknown>)[key], `${where}.${key}`)
            if (found !== undefined) return found
          }
          return undefined
        } finally {
          path.pop()
        }
      }
      default:
        return undefined
    }
  }
  return walk(value, at)
}
