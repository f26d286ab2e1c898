/**
 * Persists journal records in a JSON-lines file and recovers the complete prefix after a crash mid-write.
 *
 * Format (version 2): the first line is a header, `{ journal: "effect-agent-os", version, abi, program, nonce, mac? }`
 * (journal format version, kernel ABI, the program name given as `program`, a random nonce naming this journal); then
 * one `JournalRecord` per line, encoded with its Schema and `JSON.stringify`, its `value` in the faithful encoding of
 * `internal/canonical.ts` (NaN, ±Infinity, −0, a `Date`, `undefined`, a `bigint` come back as they were; a value
 * JSON cannot carry faithfully is refused at append as `unencodable`). Every line ends with `"\n"`.
 *
 * Integrity: with an integrity key (`integrityKey`, else the environment variable `AGENTOS_JOURNAL_KEY`), the header
 * and every record carry `mac`, an HMAC-SHA256 under the key of the nonce and the line's canonical JSON; a line whose
 * MAC does not verify is `JournalError { reason: "tampered", line }`, and so is a keyed journal read without its key
 * or an unkeyed one read with a key (its MACs could have been stripped). Without a key, what is caught is structure:
 * a line that is not a record, an invalid cost, and (in `Journal`) two records for one `(pid, op)`, a repeated or
 * missing `seq`, a record for another device, call or request; an edited value or a changed but valid cost is not.
 * A header of another format version, kernel ABI or program (when `program` is given) is `incompatible`, and so is a
 * file without a header (format 1).
 *
 * Reading never writes: `load` opens the file read-only (a missing file loads as `[]` and is not created), so a
 * `replay` leaves the journal's bytes as they were and replays a read-only (0444) file. The file must be a regular
 * file (a FIFO or a character device is an `io` error, not an unbounded read), at most `journalFileBytesMax` bytes,
 * each line at most `journalLineBytesMax` (`KernelConfig`, when in context, else its defaults; `Options` override).
 * The first `append` opens the file for appending (creating it and its directory), writes the header to an empty
 * file, and repairs a torn tail.
 *
 * Crash recovery:
 * - a torn last line — bytes after the last `"\n"` — is ignored by `load`, and the first `append` truncates the file
 *   back to the end of the last complete line, so the next append starts on a clean line;
 * - any complete line that does not decode (not JSON, not UTF-8, not a `JournalRecord`, too long), the last one
 *   included, fails with `JournalError { reason: "corrupt", line }`, `line` counted from 1 (the header is line 1); the
 *   file is left untouched and appends are refused until it is repaired by hand, so no record is ever written after
 *   a hole. (A crash tears only the unfinished last line: a line with its `"\n"` was written whole.)
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
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import {
  Config,
  Effect,
  Exit,
  FileSystem,
  Layer,
  Option,
  Path,
  type PlatformError,
  Schema,
  Scope,
  Semaphore
} from "effect"
import * as Canonical from "./internal/canonical.ts"
import { JournalError, JournalRecord, type JournalStore, JournalStoreService } from "./Journal.ts"
import { defaults as limitDefaults, KernelConfig } from "./KernelConfig.ts"
import { abi } from "./Snapshot.ts"

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
  /**
   * The key of the records' MACs. Default: the environment variable `AGENTOS_JOURNAL_KEY` when it is set, else no
   * key (no MACs). An empty key is a defect.
   */
  readonly integrityKey?: string | Uint8Array | undefined
  /**
   * The program's name, written in the header of a new journal; given, a journal whose header names another program
   * is `incompatible`. Default `""` (not checked).
   */
  readonly program?: string | undefined
  /** Overrides `KernelConfig`'s `journalLineBytesMax`. */
  readonly lineBytesMax?: number | undefined
  /** Overrides `KernelConfig`'s `journalFileBytesMax`. */
  readonly fileBytesMax?: number | undefined
}

/**
 * The journal format this store writes and reads.
 *
 * @category constants
 */
export const formatVersion = 2

/**
 * The environment variable holding the integrity key when `integrityKey` is not given.
 *
 * @category constants
 */
export const integrityKeyVariable = "AGENTOS_JOURNAL_KEY"

/** How many bytes one read of the file asks for. */
const readChunkBytes = 65_536

const newlineByte = 0x0a

// `fatal` so that bytes that are not UTF-8 make a line corrupt instead of decoding to U+FFFD; `ignoreBOM` so that a
// byte order mark is kept (and the line does not parse) rather than silently dropped.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
const utf8Encoder = new TextEncoder()

const decodeRecord = Schema.decodeUnknownExit(JournalRecord)
const encodeRecord = Schema.encodeUnknownExit(JournalRecord)

const Header = Schema.Struct({
  journal: Schema.Literal("effect-agent-os"),
  version: Schema.Number,
  abi: Schema.Number,
  program: Schema.String,
  nonce: Schema.String,
  mac: Schema.optionalKey(Schema.String)
})
type Header = typeof Header.Type
const decodeHeader = Schema.decodeUnknownExit(Header)

const ioError = (error: PlatformError.PlatformError) => new JournalError({ reason: "io", message: error.message })

/** HMAC-SHA256 of the nonce and a line's canonical JSON (its `mac` left out). */
const macOf = (key: Uint8Array, nonce: string, json: unknown): string =>
  createHmac("sha256", key).update(nonce).update("\n").update(Canonical.canonical(json)).digest("base64url")

const macMatches = (key: Uint8Array, nonce: string, json: unknown, mac: unknown): boolean => {
  if (typeof mac !== "string") return false
  const expected = Buffer.from(macOf(key, nonce, json))
  const given = Buffer.from(mac)
  return expected.length === given.length && timingSafeEqual(expected, given)
}

const withoutMac = (json: Record<string, unknown>): Record<string, unknown> => {
  const { mac: _mac, ...rest } = json
  return rest
}

const isObject = (json: unknown): json is Record<string, unknown> =>
  typeof json === "object" && json !== null && !Array.isArray(json)

/** What the reader of a file is given. */
interface ReadSettings {
  readonly key: Uint8Array | undefined
  readonly program: string
  readonly lineBytesMax: number
}

interface Parsed {
  /** The header, or `undefined` for an empty file. */
  readonly header: Header | undefined
  readonly records: ReadonlyArray<JournalRecord>
  /** Bytes up to the end of the last complete line: the length the file must have before the next append. */
  readonly completeBytes: number
}

const corruptLine = (line: number, why: string) =>
  new JournalError({ reason: "corrupt", message: `journal line ${line} is ${why}`, line })

/**
 * Parses one line's JSON; nesting deeper than `Canonical.jsonDepthMax` is corrupt before anything recurses over it
 * (a hostile line nested 200 000 deep would overflow the stack of every decoder).
 */
const parseLine = (text: string, line: number): { readonly json: unknown } | JournalError => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return corruptLine(line, `not JSON: ${String(error)}`)
  }
  if (text.length > Canonical.jsonDepthMax && Canonical.deeperThan(json, Canonical.jsonDepthMax)) {
    return corruptLine(line, `nested deeper than ${Canonical.jsonDepthMax}`)
  }
  return { json }
}

/** Checks a header against the reader's settings. */
const checkHeader = (header: Header, settings: ReadSettings): JournalError | undefined => {
  if (header.version !== formatVersion) {
    return new JournalError({
      reason: "incompatible",
      message: `journal format ${header.version}; this kernel reads format ${formatVersion}`
    })
  }
  if (header.abi !== abi) {
    return new JournalError({ reason: "incompatible", message: `journal for kernel ABI ${header.abi}; this is ${abi}` })
  }
  if (settings.program !== "" && header.program !== settings.program) {
    return new JournalError({
      reason: "incompatible",
      message: `journal of program ${JSON.stringify(header.program)}, not ${JSON.stringify(settings.program)}`
    })
  }
  if (settings.key === undefined) {
    return header.mac === undefined
      ? undefined
      : new JournalError({
          reason: "tampered",
          message: "journal records carry MACs but no integrity key was given to check them",
          line: 1
        })
  }
  if (header.mac === undefined) {
    return new JournalError({
      reason: "tampered",
      message: "an integrity key was given but the journal carries no MACs (written without a key, or stripped)",
      line: 1
    })
  }
  return macMatches(settings.key, header.nonce, withoutMac(header as never), header.mac)
    ? undefined
    : new JournalError({ reason: "tampered", message: "journal header's MAC does not verify under the key", line: 1 })
}

/** Decodes one complete record line; a JournalError names the line. */
const decodeRecordLine = (
  text: string,
  line: number,
  header: Header,
  settings: ReadSettings
): JournalRecord | JournalError => {
  const parsed = parseLine(text, line)
  if (parsed instanceof JournalError) return parsed
  const json = parsed.json
  if (!isObject(json)) return corruptLine(line, "not a JournalRecord (not an object)")
  const body = withoutMac(json)
  if (settings.key !== undefined && !macMatches(settings.key, header.nonce, body, json.mac)) {
    return new JournalError({ reason: "tampered", message: `journal line ${line}: its MAC does not verify`, line })
  }
  const exit = decodeRecord(body)
  if (Exit.isFailure(exit)) return corruptLine(line, `not a JournalRecord: ${String(exit.cause)}`)
  const record = exit.value
  if (record.result._tag !== "Success" || !("value" in record.result)) return record
  const value = Canonical.decode(record.result.value)
  if (value instanceof Canonical.Unencodable) return corruptLine(line, `not a JournalRecord: ${value.reason}`)
  return { ...record, result: { ...record.result, value } }
}

/** Splits the file into its header and records; only the last line may be torn (no `"\n"`). */
const parse = (bytes: Uint8Array, settings: ReadSettings): Parsed | JournalError => {
  const records: Array<JournalRecord> = []
  let header: Header | undefined
  let start = 0
  let line = 0
  while (start < bytes.length) {
    line++
    const end = bytes.indexOf(newlineByte, start)
    // No "\n": the write of the last line was cut short.
    if (end === -1) break
    if (end - start > settings.lineBytesMax) {
      return corruptLine(line, `longer than journalLineBytesMax (${settings.lineBytesMax} bytes)`)
    }
    let text: string
    try {
      text = utf8Decoder.decode(bytes.subarray(start, end))
    } catch (error) {
      return corruptLine(line, `not UTF-8: ${String(error)}`)
    }
    if (header === undefined) {
      const parsed = parseLine(text, line)
      if (parsed instanceof JournalError) return parsed
      const json = parsed.json
      const decoded = decodeHeader(json)
      if (Exit.isFailure(decoded)) {
        return Exit.isSuccess(decodeRecord(json))
          ? new JournalError({
              reason: "incompatible",
              message: `journal format 1 (no header); this kernel reads format ${formatVersion}: record it again`,
              line
            })
          : corruptLine(line, `not a journal header: ${String(decoded.cause)}`)
      }
      const refused = checkHeader(decoded.value, settings)
      if (refused !== undefined) return refused
      header = decoded.value
    } else {
      const record = decodeRecordLine(text, line, header, settings)
      if (record instanceof JournalError) return record
      records.push(record)
    }
    start = end + 1
  }
  return { header, records, completeBytes: start }
}

/** The faithful, JSON-safe image of a record, or why it has none. */
const encodeRecordJson = (record: JournalRecord): Record<string, unknown> | string => {
  const encoded = encodeRecord(record)
  if (Exit.isFailure(encoded)) return `not a JournalRecord: ${String(encoded.cause)}`
  const json = encoded.value as Record<string, unknown> & { readonly result: Record<string, unknown> }
  if (!("value" in json.result)) return json
  const value = Canonical.encode(json.result.value)
  if (value instanceof Canonical.Unencodable)
    return `its value holds ${value.reason}, which JSON cannot carry faithfully`
  return { ...json, result: { ...json.result, value } }
}

/** Reads the whole file through the handle, from byte 0, whatever the cursor; more than `limit` bytes is an error. */
const readAll = (handle: FileSystem.File, file: string, limit: number): Effect.Effect<Uint8Array, JournalError> =>
  Effect.gen(function* () {
    const chunks: Array<Uint8Array> = []
    let position = 0
    // Bounded by `limit`: every pass reads at least one byte or stops.
    while (true) {
      const chunk = yield* handle
        .readAlloc(readChunkBytes, { position: BigInt(position) })
        .pipe(Effect.mapError(ioError))
      if (Option.isNone(chunk) || chunk.value.length === 0) break
      chunks.push(chunk.value)
      position += chunk.value.length
      if (position > limit) {
        return yield* new JournalError({
          reason: "io",
          message: `journal ${file} is larger than journalFileBytesMax (${limit} bytes)`
        })
      }
    }
    const bytes = new Uint8Array(position)
    let offset = 0
    for (const chunk of chunks) {
      bytes.set(chunk, offset)
      offset += chunk.length
    }
    return bytes
  })

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}

const keyOf = (given: string | Uint8Array | undefined): Effect.Effect<Uint8Array | undefined, JournalError> =>
  Effect.gen(function* () {
    if (given !== undefined) {
      const bytes = typeof given === "string" ? utf8Encoder.encode(given) : Uint8Array.from(given)
      if (bytes.length === 0) return yield* Effect.die(new RangeError("JournalFileStore: the integrity key is empty"))
      return bytes
    }
    const fromEnv = Option.getOrUndefined(
      yield* Config.option(Config.String(integrityKeyVariable)).pipe(Effect.orElseSucceed(() => Option.none<string>()))
    )
    if (fromEnv === undefined) return undefined
    // set but empty: a mistake in the environment, never "no key" (which would write and read without MACs)
    if (fromEnv.length === 0) {
      return yield* new JournalError({
        reason: "incompatible",
        message: `${integrityKeyVariable} is set but empty: give the key, or unset it`
      })
    }
    return utf8Encoder.encode(fromEnv)
  })

/**
 * Builds a store over the journal file. Nothing is opened yet: `load` opens the file read-only each time, the first
 * `append` opens it for appending (creating it and its directory) for the lifetime of the current `Scope`. Closing the
 * scope stops the `interval` fiber, fsyncs unsynced appends (unless `sync` is `"none"`) and closes the file.
 *
 * A non-positive or non-finite `intervalMs`, or an empty integrity key, is a defect.
 *
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<JournalStore, JournalError, FileSystem.FileSystem | Path.Path | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const scope = yield* Scope.Scope
    const sync = options.sync ?? defaultSync
    const intervalMs = options.intervalMs ?? defaultIntervalMs
    if (!(Number.isFinite(intervalMs) && intervalMs > 0)) {
      return yield* Effect.die(new RangeError(`JournalFileStore: intervalMs must be positive, got ${intervalMs}`))
    }
    const limits = Option.getOrElse(yield* Effect.serviceOption(KernelConfig), () => limitDefaults)
    const settings: ReadSettings = {
      key: yield* keyOf(options.integrityKey),
      program: options.program ?? "",
      lineBytesMax: options.lineBytesMax ?? limits.journalLineBytesMax
    }
    const fileBytesMax = options.fileBytesMax ?? limits.journalFileBytesMax
    const file = path.resolve(options.path ?? defaultPath)

    const writer = yield* Semaphore.make(1)
    const exclusive = writer.withPermits(1)
    // The header of the file as the appender knows it, once its tail was checked (and repaired) since it was opened;
    // `undefined` until then, and again when a write fails half-way.
    let checked: { readonly header: Header; bytes: number; prefix: Uint8Array | undefined } | undefined
    // Whether bytes were written since the last successful fsync.
    let unsynced = false
    // A failed background fsync of the `interval` policy, reported by the next append.
    let backgroundFailure: JournalError | undefined
    // The append handle, opened by the first append.
    let appendHandle: FileSystem.File | undefined

    const fsync = (handle: FileSystem.File) =>
      handle.sync.pipe(
        Effect.mapError(ioError),
        Effect.tap(() =>
          Effect.sync(() => {
            unsynced = false
          })
        )
      )

    /** Only a regular file is read: a FIFO or a device would block or never end. */
    const regularFile = (info: FileSystem.File.Info): JournalError | undefined =>
      info.type === "File"
        ? Number(info.size) > fileBytesMax
          ? new JournalError({
              reason: "io",
              message: `journal ${file} is larger than journalFileBytesMax (${fileBytesMax} bytes)`
            })
          : undefined
        : new JournalError({ reason: "io", message: `journal ${file} is a ${info.type}, not a regular file` })

    const load = exclusive(
      Effect.gen(function* () {
        const info = yield* fs.stat(file).pipe(
          Effect.map(Option.some),
          Effect.catch((error) =>
            error.reason._tag === "NotFound" ? Effect.succeed(Option.none()) : Effect.fail(ioError(error))
          )
        )
        if (Option.isNone(info)) return []
        const refused = regularFile(info.value)
        if (refused !== undefined) return yield* refused
        const bytes = yield* Effect.scoped(
          Effect.flatMap(fs.open(file, { flag: "r" }).pipe(Effect.mapError(ioError)), (handle) =>
            readAll(handle, file, fileBytesMax)
          )
        )
        const parsed = parse(bytes, settings)
        if (parsed instanceof JournalError) return yield* parsed
        if (parsed.completeBytes < bytes.length) {
          yield* Effect.logWarning(
            `JournalFileStore: ignored a torn last line of ${bytes.length - parsed.completeBytes} bytes in ${file}`
          )
        }
        return parsed.records
      })
    )

    // `durable: false` for a `Started` record: losing one in a machine crash only drops a call from the `Recover`
    // event (the call runs again all the same), so it is not worth an fsync; the result's fsync covers it anyway
    const afterWrite = (handle: FileSystem.File, durable = true) =>
      Effect.suspend(() => {
        unsynced = true
        return sync === "every" && durable ? fsync(handle) : Effect.void
      })

    const openForAppend = Effect.gen(function* () {
      if (appendHandle !== undefined) return appendHandle
      yield* fs.makeDirectory(path.dirname(file), { recursive: true }).pipe(Effect.mapError(ioError))
      const handle = yield* Effect.acquireRelease(
        fs.open(file, { flag: "a+", mode: 0o600 }).pipe(Effect.mapError(ioError)),
        (handle) =>
          exclusive(Effect.suspend(() => (sync !== "none" && unsynced ? fsync(handle) : Effect.void))).pipe(
            Effect.catch((error) => Effect.logWarning(`JournalFileStore: fsync on close of ${file} failed`, error))
          )
      ).pipe(Effect.provideService(Scope.Scope, scope))
      const refused = regularFile(yield* handle.stat.pipe(Effect.mapError(ioError)))
      if (refused !== undefined) return yield* refused
      appendHandle = handle
      return handle
    })

    const writeLine = (handle: FileSystem.File, line: Uint8Array, durable = true) =>
      Effect.uninterruptible(
        handle.writeAll(line).pipe(
          Effect.mapError(ioError),
          Effect.tapError(() =>
            Effect.sync(() => {
              // Part of the line may be on disk: check the tail again before the next append.
              checked = undefined
            })
          ),
          Effect.andThen(afterWrite(handle, durable))
        )
      )

    /** Reads the file through the append handle, drops a torn tail, and writes the header to an empty file. */
    const scan = (handle: FileSystem.File) =>
      Effect.gen(function* () {
        const bytes = yield* readAll(handle, file, fileBytesMax)
        const parsed = parse(bytes, settings)
        if (parsed instanceof JournalError) return yield* parsed
        if (parsed.completeBytes < bytes.length) {
          yield* Effect.logWarning(
            `JournalFileStore: dropped a torn last line of ${bytes.length - parsed.completeBytes} bytes in ${file}`
          )
          yield* Effect.uninterruptible(
            handle.truncate(parsed.completeBytes).pipe(Effect.mapError(ioError), Effect.andThen(afterWrite(handle)))
          )
        }
        if (parsed.header !== undefined) {
          return { header: parsed.header, bytes: parsed.completeBytes, prefix: undefined as Uint8Array | undefined }
        }
        const fields = {
          journal: "effect-agent-os" as const,
          version: formatVersion,
          abi,
          program: settings.program,
          nonce: randomBytes(16).toString("base64url")
        }
        const header: Header =
          settings.key === undefined ? fields : { ...fields, mac: macOf(settings.key, fields.nonce, fields) }
        // written with the first record, in one write (and one fsync)
        return { header, bytes: 0, prefix: utf8Encoder.encode(`${JSON.stringify(header)}\n`) as Uint8Array | undefined }
      })

    if (sync === "interval") {
      const tick = exclusive(
        Effect.suspend(() => (unsynced && appendHandle !== undefined ? fsync(appendHandle) : Effect.void))
      ).pipe(
        Effect.catch((failure) =>
          Effect.sync(() => {
            backgroundFailure = failure
          })
        )
      )
      yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(intervalMs), tick)))
    }

    const refuse = (record: JournalRecord, why: string) =>
      new JournalError({
        reason: "unencodable",
        message: `record for pid ${record.pid} op ${record.op} cannot be stored: ${why}`,
        pid: record.pid,
        op: record.op
      })

    const append = (record: JournalRecord): Effect.Effect<void, JournalError> =>
      exclusive(
        Effect.gen(function* () {
          if (backgroundFailure !== undefined) {
            const failure = backgroundFailure
            backgroundFailure = undefined
            return yield* failure
          }
          const json = encodeRecordJson(record)
          if (typeof json === "string") return yield* refuse(record, json)
          const handle = yield* openForAppend
          if (checked === undefined) checked = yield* scan(handle)
          const state = checked
          let body: Record<string, unknown> = json
          if (settings.key !== undefined) {
            try {
              body = { ...json, mac: macOf(settings.key, state.header.nonce, json) }
            } catch (error) {
              return yield* refuse(record, error instanceof Canonical.Unencodable ? error.reason : String(error))
            }
          }
          const text = JSON.stringify(body)
          const encoded = utf8Encoder.encode(`${text}\n`)
          if (encoded.length - 1 > settings.lineBytesMax) {
            return yield* refuse(record, `its line of ${encoded.length - 1} bytes is over journalLineBytesMax`)
          }
          // the line must load back as the record it stores
          const loaded = decodeRecordLine(text, 0, state.header, settings)
          if (loaded instanceof JournalError) return yield* refuse(record, `it would not load back (${loaded.message})`)
          if (state.bytes + (state.prefix?.length ?? 0) + encoded.length > fileBytesMax) {
            return yield* new JournalError({
              reason: "io",
              message: `journal ${file} would pass journalFileBytesMax (${fileBytesMax} bytes)`,
              pid: record.pid,
              op: record.op
            })
          }
          const line = state.prefix === undefined ? encoded : concat(state.prefix, encoded)
          yield* writeLine(handle, line, record.result._tag !== "Started")
          state.prefix = undefined
          state.bytes += line.length
        })
      )

    return { load, append } satisfies JournalStore
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
