/**
 * Records every driver result (and error) by `(pid, op)` and serves them back for replay and recovery.
 *
 * Modes:
 * - `live`: nothing is journaled;
 * - `record`: every result is appended to the store;
 * - `replay`: results come only from the store; no driver is touched; a call with no entry fails with
 *   `JournalError { reason: "missing" }`;
 * - `recover`: the persisted prefix is replayed, then calls go live and are appended to the same store.
 *
 * A store is a small contract (`load` the persisted records, `append` one), so memory, file and SQL stores plug in.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Schema } from "effect"
import { digest } from "./internal/canonical.ts"

/**
 * @category models
 */
export const Mode = Schema.Literals(["live", "record", "replay", "recover"])
export type Mode = typeof Mode.Type

/** A charge: finite and never negative, so a stored record cannot refund a budget or make it unlimited. */
const Amount = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))

const CostSchema = Schema.Struct({
  tokens: Schema.optionalKey(Amount),
  toolCalls: Schema.optionalKey(Amount),
  usd: Schema.optionalKey(Amount)
})

/**
 * One journaled driver call. `value` is the driver's JSON-safe result; a failure keeps the `DeviceError` fields.
 * `pid` and `op` are non-negative safe integers, `seq` a positive one, and every cost is finite and ≥ 0: the checks are part of the
 * Schema, so every store that decodes with it, and the journal when it loads any store, refuses a record that breaks
 * them.
 *
 * @category models
 */
export const JournalRecord = Schema.Struct({
  pid: Schema.Natural,
  op: Schema.Natural,
  /** The order in which results were handed back to processes (kernel-wide, from 1): replay keeps it. */
  seq: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  device: Schema.String,
  call: Schema.Literals(["open", "read", "write"]),
  /**
   * `requestDigest(device, call, request)` of the call as it was made. A replay computes it again for the call the
   * program makes now and refuses a record whose digest differs (`mismatch`), so a program that sends other requests
   * cannot replay the old answers. The kernel writes it on every record; a replayed record without one (a journal
   * from before digests) is refused as `corrupt`: it cannot prove which request it answers.
   */
  digest: Schema.optionalKey(Schema.String),
  result: Schema.Union([
    // `value` is absent when the driver returned `undefined` (JSON has no undefined)
    Schema.TaggedStruct("Success", { value: Schema.optionalKey(Schema.Unknown), cost: CostSchema }),
    Schema.TaggedStruct("Failure", {
      reason: Schema.String,
      message: Schema.String,
      retryable: Schema.optionalKey(Schema.Boolean)
    }),
    // Written before a live call starts (persistent stores only): a `Started` with no result after it is a call that
    // was in flight when the kernel stopped, which `recover` runs again. It is never replayed as a result.
    Schema.TaggedStruct("Started", {})
  ])
})
export type JournalRecord = typeof JournalRecord.Type

/**
 * A journal operation failed:
 *
 * - `missing`: replay found no entry for `(pid, op)`;
 * - `mismatch`: replay found an entry for another device, call or request (its digest) than the one made (the
 *   program changed), or a replay waits for a result its process never asks for;
 * - `corrupt`: a stored record did not decode (`line` names it in a file, counted from 1; `pid` and `op` name a
 *   loaded record that breaks the `JournalRecord` checks), or the loaded records do not fit together: two records
 *   for one `(pid, op)`, two with one `seq`, or a `seq` missing below the highest;
 * - `unencodable`: a driver result cannot be stored faithfully (a function, a cycle, a class instance…), so it was
 *   not recorded;
 * - `io`: the store could not be read or written (or the path is not a regular file, or it is over a size limit);
 * - `tampered`: a record's MAC does not verify under the integrity key (see `JournalFileStore`), or a keyed journal
 *   is read without its key, or a key is given for a journal whose records carry no MAC;
 * - `incompatible`: the journal was written in another format version, for another kernel ABI, or by another program.
 *
 * @category errors
 */
export class JournalError extends Schema.TaggedError<JournalError>()("JournalError", {
  reason: Schema.Literals(["missing", "mismatch", "corrupt", "unencodable", "io", "tampered", "incompatible"]),
  message: Schema.String,
  pid: Schema.optionalKey(Schema.Number),
  op: Schema.optionalKey(Schema.Number),
  line: Schema.optionalKey(Schema.Number)
}) {}

/**
 * Where records persist.
 *
 * @category models
 */
export interface JournalStore {
  /** Every complete record persisted so far, in append order. */
  readonly load: Effect.Effect<ReadonlyArray<JournalRecord>, JournalError>
  /** Appends one record (durability follows the store's documented policy). */
  readonly append: (record: JournalRecord) => Effect.Effect<void, JournalError>
  /** For stores that keep records in memory: appends at once, so the kernel need not wait on an effect. */
  readonly appendUnsafe?: ((record: JournalRecord) => void) | undefined
}

/**
 * The journal store the kernel uses. Absent, the kernel keeps records in memory.
 *
 * @category services
 */
export class JournalStoreService extends Context.Service<JournalStoreService, JournalStore>()(
  "effect-agent-os/JournalStore"
) {}

/**
 * An in-memory store; `records` shows what was appended.
 *
 * @category stores
 */
export const makeMemoryStore = (
  initial: ReadonlyArray<JournalRecord> = []
): JournalStore & { readonly records: ReadonlyArray<JournalRecord> } => {
  const records: Array<JournalRecord> = [...initial]
  return {
    records,
    load: Effect.sync(() => records.slice()),
    append: (record) =>
      Effect.sync(() => {
        records.push(record)
      }),
    appendUnsafe: (record) => {
      records.push(record)
    }
  }
}

/**
 * @category layers
 */
export const layerMemory = (initial?: ReadonlyArray<JournalRecord>): Layer.Layer<JournalStoreService> =>
  Layer.sync(JournalStoreService)(() => makeMemoryStore(initial))

/**
 * How a replay ends where a process's journal does (`end`):
 *
 * - `"run"` (default): a call with no record ends every process of the run with `Fault` (a `JournalError`), so
 *   nothing waits for what the journal does not have and a replay never hangs;
 * - `"call"`: a call that was in flight when the recording stopped (a `Started` record, no result) fails with
 *   `JournalError { reason: "missing" }` in its own process only, and every other process replays as far as its own
 *   records go. A process may then wait for ever on one that ended: the host decides when the replay is over (as
 *   `agentctl replay` does once no event comes). A call with no record at all still ends the run.
 *
 * @category models
 */
export interface JournalOptions {
  readonly end?: "run" | "call" | undefined
}

/**
 * The kernel's view of the journal: in each mode, whether a call is served from the journal, and where results go.
 *
 * @category models
 */
export interface JournalShape {
  readonly mode: Mode
  /** The journaled record for `(pid, op)` when it must be replayed; `undefined` when the call goes live. */
  readonly replayed: (pid: number, op: number) => JournalRecord | undefined | JournalError
  /**
   * Records a live result (nothing in `live` and `replay` mode). Returns the effect to wait on, or `undefined` when
   * the record is already stored (an in-memory store, or nothing to record).
   */
  readonly record: (record: JournalRecord) => Effect.Effect<void, JournalError> | undefined
  /** Records loaded at start. */
  readonly size: () => number
  /** The highest `seq` among the records loaded at start (0 for none). */
  readonly lastSeq: () => number
  /** The loaded record with this `seq`, to name it in an error. */
  readonly bySeq: (seq: number) => JournalRecord | undefined
  /**
   * Whether a `missing` call ends only itself (`JournalOptions.end` is `"call"`) because it was in flight when the
   * recording stopped (a `Started` record and no result): that process's journal ends there, the others' go on.
   */
  readonly inFlight: (pid: number, op: number) => boolean
  /** In `replay`, a loaded record no call has asked for yet (the one with the lowest `seq` first), if any. */
  readonly unconsumed: () => JournalRecord | undefined
  /**
   * In `recover`, the calls that were in flight when the recorded run stopped (a `Started` record and no result):
   * they run again, live. Journaling is at least once; `CallContext.idempotencyKey` lets a driver deduplicate.
   */
  readonly rerun: () => ReadonlyArray<RerunCall>
  /** Whether a live call writes a `Started` record first: in `record` and `recover`, over a persistent store. */
  readonly intents: boolean
  /** Records are stored at once (an in-memory store): `record` never returns an effect to wait on. */
  readonly synchronous: boolean
}

/**
 * A call run again by `recover`.
 *
 * @category models
 */
export interface RerunCall {
  readonly pid: number
  readonly op: number
  readonly device: string
  readonly call: "open" | "read" | "write"
}

/**
 * The kernel's journal.
 *
 * @category services
 */
export class Journal extends Context.Service<Journal, JournalShape>()("effect-agent-os/Journal") {}

const decodeRecord = Schema.decodeUnknownEffect(JournalRecord, { errors: "all" })

/**
 * The digest a record carries of its request: a 64-bit structural hash (16 hex digits) of `device`, `call` and the
 * request, whatever the request's key order, telling apart every value JSON would confuse (NaN and null, −0 and 0,
 * a `Date` and its ISO string, `undefined` and a missing key). Not cryptographic: it catches a program that changed,
 * not a forger (see `internal/canonical.ts`; against a forger the file store's MAC covers the whole record).
 *
 * @category constructors
 */
export const requestDigest = (device: string, call: string, request: unknown): string => digest(device, call, request)

const corrupt = (message: string, record?: JournalRecord) =>
  new JournalError({
    reason: "corrupt",
    message,
    ...(record === undefined ? {} : { pid: record.pid, op: record.op })
  })

/** A number field of a record that did not decode, to name it. */
const numberField = (stored: unknown, name: "pid" | "op"): number | undefined => {
  const value = typeof stored === "object" && stored !== null ? (stored as Record<string, unknown>)[name] : undefined
  return typeof value === "number" ? value : undefined
}

/** A loaded record that passes the `JournalRecord` Schema, or a `corrupt` error naming its pid and op. */
const checked = (stored: unknown): Effect.Effect<JournalRecord, JournalError> =>
  Effect.mapError(decodeRecord(stored), (error) => {
    const pid = numberField(stored, "pid")
    const op = numberField(stored, "op")
    return new JournalError({
      reason: "corrupt",
      message: `journal record for pid ${pid ?? "?"} op ${op ?? "?"} is not a valid JournalRecord: ${error.message}`,
      ...(pid === undefined ? {} : { pid }),
      ...(op === undefined ? {} : { op })
    })
  })

/**
 * Builds the journal over a store in a mode: loads the persisted records for `replay` and `recover`.
 *
 * @category constructors
 */
export const make = (
  mode: Mode,
  store: JournalStore,
  options?: JournalOptions
): Effect.Effect<JournalShape, JournalError> =>
  Effect.gen(function* () {
    const loaded = mode === "replay" || mode === "recover" ? yield* store.load : []
    // by pid, then op: one key per pair whatever the numbers (a single `pid * 2^32 + op` key loses precision once
    // pids pass 2^21, and two calls would then share a record)
    const index = new Map<number, Map<number, JournalRecord>>()
    let size = 0
    let lastSeq = 0
    // Records that do not fit together are refused at load, before any process runs: a second record for one
    // `(pid, op)` (which would be served instead of the first), two records with one `seq` (the completion gate would
    // hand back one of them and leave the other's caller waiting forever), or a `seq` missing below the highest (the
    // gate would wait for it). A recording numbers its completions from 1 without gaps: a number is taken only when
    // its record is written, in the same uninterruptible step.
    const seqs = new Map<number, JournalRecord>()
    // calls started (a `Started` record); several for one call when it was re-run after more than one crash
    const started: Array<JournalRecord> = []
    const startedOps = new Map<number, Set<number>>()
    for (const stored of loaded) {
      // every store gets the Schema's checks, also one that hands back records it never decoded (memory, SQL rows)
      const record = yield* checked(stored)
      if (record.result._tag === "Started") {
        started.push(record)
        let ops = startedOps.get(record.pid)
        if (ops === undefined) {
          ops = new Set()
          startedOps.set(record.pid, ops)
        }
        ops.add(record.op)
        continue
      }
      let ops = index.get(record.pid)
      if (ops === undefined) {
        ops = new Map()
        index.set(record.pid, ops)
      }
      if (ops.has(record.op)) {
        return yield* corrupt(`journal holds two records for pid ${record.pid} op ${record.op}`, record)
      }
      size++
      ops.set(record.op, record)
      if (record.seq !== undefined) {
        if (seqs.has(record.seq)) {
          return yield* corrupt(
            `journal holds two records with seq ${record.seq} (pid ${record.pid} op ${record.op})`,
            record
          )
        }
        seqs.set(record.seq, record)
        if (record.seq > lastSeq) lastSeq = record.seq
      }
    }
    if (seqs.size !== lastSeq) {
      let hole = 1
      while (seqs.has(hole)) hole++
      return yield* corrupt(`journal has no record with seq ${hole} (records run to seq ${lastSeq})`)
    }
    // what a replay has served, to tell a replay that stands still with results nobody asked for
    const consumed = new Set<JournalRecord>()
    return {
      mode,
      replayed: (pid, op) => {
        if (mode === "live" || mode === "record") return undefined
        const found = index.get(pid)?.get(op)
        if (found !== undefined) {
          if (mode === "replay") consumed.add(found)
          return found
        }
        if (mode === "recover") return undefined
        return new JournalError({ reason: "missing", message: `no journal entry for pid ${pid} op ${op}`, pid, op })
      },
      record: (record) => {
        if (mode === "live" || mode === "replay") return undefined
        if (store.appendUnsafe === undefined) return store.append(record)
        store.appendUnsafe(record)
        return undefined
      },
      size: () => size,
      lastSeq: () => lastSeq,
      bySeq: (seq) => seqs.get(seq),
      rerun: () => {
        if (mode !== "recover") return []
        const seen = new Set<string>()
        const calls: Array<RerunCall> = []
        for (const record of started) {
          const key = `${record.pid}:${record.op}`
          if (seen.has(key) || index.get(record.pid)?.has(record.op) === true) continue
          seen.add(key)
          calls.push({ pid: record.pid, op: record.op, device: record.device, call: record.call })
        }
        return calls
      },
      intents: (mode === "record" || mode === "recover") && store.appendUnsafe === undefined,
      inFlight: (pid, op) => {
        if (index.get(pid)?.has(op) === true) return false
        return mode === "replay" && options?.end === "call" && startedOps.get(pid)?.has(op) === true
      },
      unconsumed: () => {
        if (mode !== "replay" || consumed.size === size) return undefined
        for (let seq = 1; seq <= lastSeq; seq++) if (!consumed.has(seqs.get(seq)!)) return seqs.get(seq)
        for (const ops of index.values()) for (const record of ops.values()) if (!consumed.has(record)) return record
        return undefined
      },
      synchronous: store.appendUnsafe !== undefined
    }
  })

/**
 * The journal in `mode` over the `JournalStoreService` in context, or over a fresh in-memory store when there is none.
 *
 * @category layers
 */
export const layer = (mode: Mode = "live", options?: JournalOptions): Layer.Layer<Journal, JournalError> =>
  Layer.effect(Journal)(
    Effect.gen(function* () {
      const store = yield* Effect.serviceOption(JournalStoreService)
      return yield* make(mode, store._tag === "Some" ? store.value : makeMemoryStore(), options)
    })
  )
