/**
 * Persists journal records in a JSON-lines file and recovers the complete prefix after a crash mid-write.
 *
 * Format: one `JournalRecord` per line, encoded with its Schema and `JSON.stringify`, each line ended by `"\n"`.
 * The file is opened once, in append mode, for the lifetime of the store's `Scope`.
 *
 * Crash recovery (done by `load`, or by the first `append` when nothing was loaded since the file was opened):
 * - a torn last line — bytes after the last `"\n"`, or a last line that does not decode — is ignored and the file
 *   is truncated back to the end of the last complete record, so the next append starts on a clean line;
 * - any other line that does not decode (not JSON, not UTF-8, or JSON that is not a `JournalRecord`) fails with
 *   `JournalError { reason: "corrupt", line }`, `line` counted from 1; the file is left untouched and appends are
 *   refused until it is repaired by hand, so no record is ever written after a hole.
 *
 * Durability follows the `sync` option (see `SyncPolicy`; default `"every"`). Appends are serialized by one permit:
 * concurrent appends never interleave bytes, and a write and its fsync are not interrupted half-way. One store owns
 * one file: two stores (or processes) appending to the same file are not coordinated.
 *
 * Every file-system failure becomes `JournalError { reason: "io", message }`. Needs `FileSystem` and `Path`, e.g.
 * `NodeServices.layer` from `@effect/platform-node`.
 *
 * @since 0.1.0
 */
import {
  Effect,
  Exit,
  FileSystem,
  Layer,
  Option,
  Path,
  type PlatformError,
  Schema,
  type Scope,
  Semaphore
} from "effect"
import { JournalError, JournalRecord, type JournalStore, JournalStoreService } from "./Journal.ts"

/**
 * When appended bytes are forced to stable storage with fsync:
 *
 * - `every` (the default): after each append, before `append` succeeds. A record that `append` acknowledged survives
 *   a power loss. The journal records driver results so that `recover` does not redo side effects; a lost record
 *   means a repeated side effect (a second tool call, a second paid model call). Driver calls take milliseconds to
 *   seconds, an fsync on a local disk well under that, so the safe policy costs little;
 * - `interval`: a background fiber fsyncs at most once every `intervalMs` when something was written since the last
 *   fsync, and closing the scope fsyncs what is left. A crash of the machine (not only of the process) can lose up
 *   to `intervalMs` of acknowledged appends. A failed background fsync fails the next `append`;
 * - `none`: never fsync; the operating system writes the pages back when it chooses. A process crash loses nothing
 *   that `append` acknowledged; a machine crash can lose anything recent.
 *
 * Whatever the policy, a machine crash can at worst tear the last line, which the next `load` drops.
 *
 * @category models
 */
export const SyncPolicy = Schema.Literals(["every", "interval", "none"])
export type SyncPolicy = typeof SyncPolicy.Type

/**
 * The file used when `path` is not given, resolved against the working directory.
 *
 * @category constants
 */
export const defaultPath = ".agentos/journal.jsonl"

/**
 * @category constants
 */
export const defaultSync: SyncPolicy = "every"

/**
 * The fsync period of the `interval` policy when `intervalMs` is not given.
 *
 * @category constants
 */
export const defaultIntervalMs = 1_000

/**
 * @category models
 */
export interface Options {
  /** The journal file; relative paths resolve against the working directory. Default `defaultPath`. */
  readonly path?: string | undefined
  /** The fsync policy. Default `defaultSync` (`"every"`). */
  readonly sync?: SyncPolicy | undefined
  /** The fsync period of the `interval` policy, a positive number of milliseconds. Default `defaultIntervalMs`. */
  readonly intervalMs?: number | undefined
}

/** How many bytes one read of the file asks for. */
const readChunkBytes = 65_536

const newlineByte = 0x0a

// `fatal` so that bytes that are not UTF-8 make a line corrupt instead of decoding to U+FFFD.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true })
const utf8Encoder = new TextEncoder()

const decodeRecord = Schema.decodeUnknownExit(JournalRecord)
const encodeRecord = Schema.encodeUnknownExit(JournalRecord)

const ioError = (error: PlatformError.PlatformError) => new JournalError({ reason: "io", message: error.message })

/** Decodes one line (without its `"\n"`); a string says why it is not a record. */
const decodeLine = (text: string): JournalRecord | string => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return `not JSON: ${String(error)}`
  }
  const exit = decodeRecord(json)
  return Exit.isSuccess(exit) ? exit.value : `not a JournalRecord: ${String(exit.cause)}`
}

interface Parsed {
  readonly records: ReadonlyArray<JournalRecord>
  /** Bytes up to the end of the last complete record: the length the file must have before the next append. */
  readonly completeBytes: number
}

/** Splits the file into records; only the last line may be torn. */
const parse = (bytes: Uint8Array): Parsed | JournalError => {
  const records: Array<JournalRecord> = []
  let start = 0
  let line = 0
  while (start < bytes.length) {
    line++
    const end = bytes.indexOf(newlineByte, start)
    // No "\n": the write of the last line was cut short.
    if (end === -1) break
    let decoded: JournalRecord | string
    try {
      decoded = decodeLine(utf8Decoder.decode(bytes.subarray(start, end)))
    } catch (error) {
      decoded = `not UTF-8: ${String(error)}`
    }
    if (typeof decoded === "string") {
      // A last line that does not decode is torn too (its bytes reached the disk out of order).
      if (end + 1 === bytes.length) break
      return new JournalError({ reason: "corrupt", message: `journal line ${line} is ${decoded}`, line })
    }
    records.push(decoded)
    start = end + 1
  }
  return { records, completeBytes: start }
}

/**
 * Encodes a record as one line, and checks that the line loads back: `value` must be JSON-safe. A `value` of
 * `undefined` (dropped by `JSON.stringify`) or a `bigint` would otherwise write a line that poisons the file.
 */
const encodeLine = (record: JournalRecord): Effect.Effect<Uint8Array, JournalError> =>
  Effect.suspend(() => {
    const refuse = (why: string) =>
      Effect.fail(
        new JournalError({
          reason: "unencodable",
          message: `record for pid ${record.pid} op ${record.op} cannot be stored: ${why}`,
          pid: record.pid,
          op: record.op
        })
      )
    const encoded = encodeRecord(record)
    if (Exit.isFailure(encoded)) return refuse(`not a JournalRecord: ${String(encoded.cause)}`)
    let text: string
    try {
      text = JSON.stringify(encoded.value)
    } catch (error) {
      return refuse(`not JSON-safe: ${String(error)}`)
    }
    const loaded = decodeLine(text)
    if (typeof loaded === "string") return refuse(`it would not load back (${loaded})`)
    return Effect.succeed(utf8Encoder.encode(`${text}\n`))
  })

/** Reads the whole file through the handle, from byte 0, whatever the cursor. */
const readAll = (handle: FileSystem.File): Effect.Effect<Uint8Array, JournalError> =>
  Effect.gen(function* () {
    const chunks: Array<Uint8Array> = []
    let position = 0
    // Bounded by the file's size: every pass reads at least one byte or stops.
    while (true) {
      const chunk = yield* handle.readAlloc(readChunkBytes, { position: BigInt(position) })
      if (Option.isNone(chunk) || chunk.value.length === 0) break
      chunks.push(chunk.value)
      position += chunk.value.length
    }
    const bytes = new Uint8Array(position)
    let offset = 0
    for (const chunk of chunks) {
      bytes.set(chunk, offset)
      offset += chunk.length
    }
    return bytes
  }).pipe(Effect.mapError(ioError))

/**
 * Opens (creating it and its directory if absent) the journal file and builds a store over it. The file handle lives
 * in the current `Scope`: closing the scope stops the `interval` fiber, fsyncs unsynced appends (unless `sync` is
 * `"none"`) and closes the file. Records are read only by `load`; opening does not read the file.
 *
 * A non-positive or non-finite `intervalMs` is a defect.
 *
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<JournalStore, JournalError, FileSystem.FileSystem | Path.Path | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const sync = options.sync ?? defaultSync
    const intervalMs = options.intervalMs ?? defaultIntervalMs
    if (!(Number.isFinite(intervalMs) && intervalMs > 0)) {
      return yield* Effect.die(new RangeError(`JournalFileStore: intervalMs must be positive, got ${intervalMs}`))
    }
    const file = path.resolve(options.path ?? defaultPath)
    yield* fs.makeDirectory(path.dirname(file), { recursive: true }).pipe(Effect.mapError(ioError))

    const writer = yield* Semaphore.make(1)
    const exclusive = writer.withPermits(1)
    // Whether the file's tail was checked (and repaired) since it was opened; reset when a write fails half-way.
    let checked = false
    // Whether bytes were written since the last successful fsync.
    let unsynced = false
    // A failed background fsync of the `interval` policy, reported by the next append.
    let backgroundFailure: JournalError | undefined

    const fsync = (handle: FileSystem.File) =>
      handle.sync.pipe(
        Effect.mapError(ioError),
        Effect.tap(() =>
          Effect.sync(() => {
            unsynced = false
          })
        )
      )

    const handle = yield* Effect.acquireRelease(
      fs.open(file, { flag: "a+" }).pipe(Effect.mapError(ioError)),
      (handle) =>
        exclusive(Effect.suspend(() => (sync !== "none" && unsynced ? fsync(handle) : Effect.void))).pipe(
          Effect.catch((error) => Effect.logWarning(`JournalFileStore: fsync on close of ${file} failed`, error))
        )
    )

    const afterWrite = Effect.suspend(() => {
      unsynced = true
      return sync === "every" ? fsync(handle) : Effect.void
    })

    const scan = Effect.gen(function* () {
      const bytes = yield* readAll(handle)
      const parsed = parse(bytes)
      if (parsed instanceof JournalError) return yield* parsed
      if (parsed.completeBytes < bytes.length) {
        yield* Effect.logWarning(
          `JournalFileStore: dropped a torn last line of ${bytes.length - parsed.completeBytes} bytes in ${file}`
        )
        yield* Effect.uninterruptible(
          handle.truncate(parsed.completeBytes).pipe(Effect.mapError(ioError), Effect.andThen(afterWrite))
        )
      }
      checked = true
      return parsed.records
    })

    if (sync === "interval") {
      const tick = exclusive(Effect.suspend(() => (unsynced ? fsync(handle) : Effect.void))).pipe(
        Effect.catch((failure) =>
          Effect.sync(() => {
            backgroundFailure = failure
          })
        )
      )
      yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(intervalMs), tick)))
    }

    const append = (record: JournalRecord): Effect.Effect<void, JournalError> =>
      exclusive(
        Effect.gen(function* () {
          if (backgroundFailure !== undefined) {
            const failure = backgroundFailure
            backgroundFailure = undefined
            return yield* failure
          }
          const line = yield* encodeLine(record)
          if (!checked) yield* scan
          yield* Effect.uninterruptible(
            handle.writeAll(line).pipe(
              Effect.mapError(ioError),
              Effect.tapError(() =>
                Effect.sync(() => {
                  // Part of the line may be on disk: check the tail again before the next append.
                  checked = false
                })
              ),
              Effect.andThen(afterWrite)
            )
          )
        })
      )

    return { load: exclusive(scan), append } satisfies JournalStore
  })

/**
 * The file store as the kernel's `JournalStoreService`; the file stays open for the layer's lifetime.
 *
 * @category layers
 */
export const layer = (
  options?: Options
): Layer.Layer<JournalStoreService, JournalError, FileSystem.FileSystem | Path.Path> =>
  Layer.effect(JournalStoreService)(make(options))
