/**
 * Keeps every kernel event on disk, one JSON line each, in rotated files that can be read back and followed.
 *
 * `make({ dir })` subscribes to the kernel and appends each event to `<dir>/audit.jsonl`, encoded with
 * `Schema.toCodecJson(KernelEvent)` (so a number like `Infinity` is written as a string and decodes back). The kernel
 * calls its listeners synchronously, so the listener only encodes the event and queues its line; one fiber writes
 * the queued lines in order. The queue is bounded (`queueBytesMax`): past it, lines are dropped and counted, and an
 * `{"_tag":"AuditDrop","dropped":n,"firstSeq":a,"lastSeq":b}` marker line takes their place once there is room
 * again (a failed write is counted and marked the same way) — the audit never slows or stops the kernel, and a gap
 * is never silent.
 *
 * When the next line would take the file past `fileBytesMax`, it rotates: `audit.jsonl` becomes `audit.1.jsonl`,
 * `audit.1.jsonl` becomes `audit.2.jsonl`, …, keeping `files` old files (the oldest is deleted). Files are created
 * 0600 in a directory made 0700. Lines are not fsynced one by one (a crash of the process loses nothing written; a
 * crash of the machine may lose the last lines); closing the scope writes what is queued and fsyncs. A torn last
 * line (the process killed mid-write) is skipped when reading, and a newline is added before appending after it.
 *
 * `read` answers the persisted events, oldest first (rotated files, then the current one), and `follow` the same
 * followed by every new event as it comes: subscribed before reading, it passes each live event the writer had not
 * yet handled when the files were read (by `seq`), so none is missed or repeated. A directory may hold several kernel
 * runs; `seq` starts again with each, so `since` filters by `seq` within whatever the files hold.
 *
 * @since 0.1.0
 */
import { constants } from "node:fs"
import * as Fs from "node:fs/promises"
import { join } from "node:path"
import { Cause, Effect, Latch, Queue, Schema, Semaphore, Stream, type Scope } from "effect"
import { KernelEvent } from "../services/EventLog.ts"
import { Kernel } from "../services/Kernel.ts"

/**
 * The audit directory could not be opened, read or written (`reason`), or a follower fell too far behind
 * (`overflow`: start again with `since` the last `seq` it got; the files have the rest).
 *
 * @category errors
 */
export class AuditLogError extends Schema.TaggedError<AuditLogError>()("AuditLogError", {
  reason: Schema.Literals(["open", "read", "write", "overflow"]),
  message: Schema.String
}) {}

/**
 * Options of `make`.
 *
 * @category models
 */
export interface Options {
  /** The directory of the files (made 0700 when missing). */
  readonly dir: string
  /** The size past which the current file rotates, in bytes (default 16 MiB). */
  readonly fileBytesMax?: number | undefined
  /** How many rotated files are kept (default 5). */
  readonly files?: number | undefined
  /** The most bytes of lines waiting to be written (default 8 MiB); lines past it are dropped and counted. */
  readonly queueBytesMax?: number | undefined
  /** The most live events a follower may have waiting (default 65536); past it, its stream fails with `overflow`. */
  readonly followEventsMax?: number | undefined
}

/**
 * Which events `read` and `follow` answer: of process `pid`, with `seq` greater than `since`.
 *
 * @category models
 */
export interface Filter {
  readonly pid?: number | undefined
  readonly since?: number | undefined
}

/**
 * What the writer has done so far.
 *
 * @category models
 */
export interface Stats {
  /** Event lines written. */
  readonly written: number
  /** Event lines dropped (queue full, or a failed write). */
  readonly dropped: number
  /** The last write error, if any. */
  readonly lastError?: string | undefined
}

/**
 * A running audit log.
 *
 * @category models
 */
export interface AuditLog {
  /** The current file, `<dir>/audit.jsonl`. */
  readonly path: string
  /** The persisted events, oldest first (after writing what is queued). */
  readonly read: (filter?: Filter) => Effect.Effect<ReadonlyArray<KernelEvent>, AuditLogError>
  /** The persisted events, then each new one as it is emitted; ends only with the stream's consumer or the scope. */
  readonly follow: (filter?: Filter) => Stream.Stream<KernelEvent, AuditLogError>
  /** Waits until every line queued so far is written. */
  readonly flush: Effect.Effect<void>
  readonly stats: () => Stats
}

/** Every default, once. */
export const defaults = {
  fileBytesMax: 16 * 1024 * 1024,
  files: 5,
  queueBytesMax: 8 * 1024 * 1024,
  followEventsMax: 65536
} as const

const codec = Schema.toCodecJson(KernelEvent)
const encodeEvent = Schema.encodeSync(codec)
const decodeEvent = Schema.decodeUnknownExit(codec)

/** A `Log` event's `fields` may hold anything; what JSON cannot hold is made JSON-safe first, or left out. */
const encodeLine = (event: KernelEvent): string => {
  // the hot events (every send and recv): with finite numbers the codec would write exactly this, five times slower
  if (
    (event._tag === "Syscall" || event._tag === "Spawn") &&
    Number.isFinite(event.seq) &&
    Number.isFinite(event.at) &&
    Number.isFinite(event.pid) &&
    (event._tag === "Spawn"
      ? Number.isFinite(event.parent)
      : event.target === undefined || Number.isFinite(event.target))
  ) {
    return JSON.stringify(event)
  }
  try {
    return JSON.stringify(encodeEvent(event))
  } catch {
    if (event._tag !== "Log" || event.fields === undefined) throw new Error("unencodable event")
    const { fields, ...rest } = event
    try {
      const safe = JSON.parse(JSON.stringify(fields, (_, v) => (typeof v === "bigint" ? v.toString() : v)))
      return JSON.stringify(encodeEvent({ ...rest, fields: safe }))
    } catch {
      return JSON.stringify(encodeEvent(rest))
    }
  }
}

/**
 * The event as it can go on the wire: a `Log` event whose `fields` JSON cannot hold gets them made JSON-safe (a
 * `bigint` as its digits) or left out; every other event is returned as it is.
 *
 * @category encoding
 */
export const jsonSafe = (event: KernelEvent): KernelEvent => {
  if (event._tag !== "Log" || event.fields === undefined) return event
  try {
    encodeEvent(event)
    JSON.stringify(event.fields)
    return event
  } catch {
    const { fields, ...rest } = event
    try {
      const safe = JSON.parse(JSON.stringify(fields, (_, v) => (typeof v === "bigint" ? v.toString() : v)))
      encodeEvent({ ...rest, fields: safe })
      return { ...rest, fields: safe }
    } catch {
      return rest
    }
  }
}

interface Gap {
  readonly dropped: number
  readonly firstSeq: number
  readonly lastSeq: number
}

/** The marker line written where events were dropped. */
const gapLine = (gap: Gap) => JSON.stringify({ _tag: "AuditDrop", ...gap })
const isGapLine = (line: string) => line.startsWith('{"_tag":"AuditDrop"')

const appendFlags = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT

const keep = (filter: Filter | undefined) => (event: KernelEvent) =>
  (filter?.pid === undefined || event.pid === filter.pid) && (filter?.since === undefined || event.seq > filter.since)

const fileName = (index: number) => (index === 0 ? "audit.jsonl" : `audit.${index}.jsonl`)

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** The largest audit file read back, in bytes (a file past it is refused, not read). */
const readBytesMax = 1024 * 1024 * 1024

/**
 * One audit file's text, or `undefined` when there is none: opened without following a link and without blocking
 * (a FIFO, a device, a directory or a link is refused), and bounded.
 */
const readAuditFile = async (path: string): Promise<string | undefined> => {
  let handle: Fs.FileHandle
  try {
    handle = await Fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === "ENOENT") return undefined
    if (code === "ELOOP") throw new Error(`${path} is a symbolic link`)
    throw error
  }
  try {
    const stat = await handle.stat()
    if (!stat.isFile()) throw new Error(`${path} is not a regular file`)
    if (stat.size > readBytesMax) throw new Error(`${path} is larger than ${readBytesMax} bytes`)
    return await handle.readFile("utf8")
  } finally {
    await handle.close()
  }
}

/** The events and drop markers of the given files (newest index first in `indices`: oldest events first). */
const readFiles = (dir: string, indices: ReadonlyArray<number>, filter: Filter | undefined) =>
  Effect.tryPromise({
    try: async () => {
      const keepIt = keep(filter)
      const events: Array<KernelEvent> = []
      let gaps = 0
      for (const i of indices) {
        const text = await readAuditFile(join(dir, fileName(i)))
        if (text === undefined) continue
        for (const line of text.split("\n")) {
          if (line.length === 0) continue
          if (isGapLine(line)) {
            gaps++
            continue
          }
          let parsed: unknown
          try {
            parsed = JSON.parse(line)
          } catch {
            // a torn line: the process was killed while writing it
            continue
          }
          const decoded = decodeEvent(parsed)
          if (decoded._tag === "Success" && keepIt(decoded.value)) events.push(decoded.value)
        }
      }
      return { events, gaps }
    },
    catch: (error) => new AuditLogError({ reason: "read", message: errorText(error) })
  })

/** Every event the files of `dir` hold (rotated ones up to `audit.<files>.jsonl`), oldest first. */
const readEvents = (dir: string, files: number, filter: Filter | undefined) => {
  const indices: Array<number> = []
  for (let i = files; i >= 0; i--) indices.push(i)
  return Effect.map(readFiles(dir, indices, filter), (read) => read.events)
}

/**
 * Reads the audit trail a (running or stopped) daemon left in `dir`, without a kernel: every event its files hold,
 * oldest first, and whether they hold a gap (a drop marker: events were lost). A missing directory reads as none.
 * Only the files that are there are read (`audit.jsonl`, `audit.<n>.jsonl`), each a regular file (a link, a FIFO
 * or a directory in their place is an error, never followed or waited on).
 *
 * @category reading
 */
export const readDir = (
  dir: string,
  filter?: Filter
): Effect.Effect<{ readonly events: ReadonlyArray<KernelEvent>; readonly gaps: number }, AuditLogError> =>
  Effect.gen(function* () {
    const names = yield* Effect.tryPromise({
      try: () =>
        Fs.readdir(dir).catch((error) =>
          (error as NodeJS.ErrnoException).code === "ENOENT" ? [] : Promise.reject(error)
        ),
      catch: (error) => new AuditLogError({ reason: "read", message: errorText(error) })
    })
    const indices: Array<number> = []
    for (const name of names) {
      const match = /^audit(?:\.([1-9]\d{0,8}))?\.jsonl$/.exec(name)
      if (match !== null) indices.push(match[1] === undefined ? 0 : Number(match[1]))
    }
    indices.sort((a, b) => b - a)
    return yield* readFiles(dir, indices, filter)
  })

/**
 * Starts the audit log for the kernel in context, for the lifetime of the scope.
 *
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<AuditLog, AuditLogError, Kernel | Scope.Scope> =>
  Effect.gen(function* () {
    const kernel = yield* Kernel
    const dir = options.dir
    const fileBytesMax = options.fileBytesMax ?? defaults.fileBytesMax
    const files = options.files ?? defaults.files
    const queueBytesMax = options.queueBytesMax ?? defaults.queueBytesMax
    const followEventsMax = options.followEventsMax ?? defaults.followEventsMax
    const path = join(dir, fileName(0))
    // the writer and readers take turns: a read never sees a rotation half done
    const lock = Semaphore.makeUnsafe(1)

    const opened = yield* Effect.tryPromise({
      try: async () => {
        await Fs.mkdir(dir, { recursive: true, mode: 0o700 })
        const handle = await Fs.open(path, appendFlags, 0o600)
        const { size } = await handle.stat()
        let bytes = size
        if (size > 0) {
          // a torn last line (killed mid-write) stays a line of its own: the next one must not be glued to it
          const last = Buffer.alloc(1)
          const reader = await Fs.open(path, "r")
          try {
            await reader.read(last, 0, 1, size - 1)
          } finally {
            await reader.close()
          }
          if (last[0] !== 0x0a) {
            await handle.write("\n")
            bytes++
          }
        }
        return { handle, bytes }
      },
      catch: (error) => new AuditLogError({ reason: "open", message: errorText(error) })
    })
    let handle = opened.handle
    let fileBytes = opened.bytes

    // the queue the listener fills and the writer empties, in order
    let pending: Array<string> = []
    let pendingBytes = 0
    let pendingEvents = 0
    let pendingFirstSeq = 0
    let pendingLastSeq = 0
    let accepted = 0
    let done = 0
    // the newest seq the writer has handled (written, or lost in a failed write): a follower's live events start
    // after it. Set under the lock, with the write, so a reader sees the files and it agree.
    let handledSeq = 0
    let gap: Gap | undefined
    let written = 0
    let dropped = 0
    let lastError: string | undefined
    const wake = Latch.makeUnsafe(false)
    const flushWaiters: Array<{ readonly upTo: number; readonly resume: () => void }> = []

    const lose = (count: number, firstSeq: number, lastSeq: number) => {
      dropped += count
      gap =
        gap === undefined
          ? { dropped: count, firstSeq, lastSeq }
          : {
              dropped: gap.dropped + count,
              firstSeq: Math.min(gap.firstSeq, firstSeq),
              lastSeq: Math.max(gap.lastSeq, lastSeq)
            }
    }
    const enqueue = (line: string) => {
      pending.push(line)
      pendingBytes += line.length + 1
      accepted++
    }

    // synchronous, inside the kernel's critical sections: encode, queue, wake the writer; never wait
    const listener = (event: KernelEvent) => {
      let line: string
      try {
        line = encodeLine(event)
      } catch {
        return lose(1, event.seq, event.seq)
      }
      if (pendingBytes + line.length + 1 > queueBytesMax) return lose(1, event.seq, event.seq)
      if (gap !== undefined) {
        enqueue(gapLine(gap))
        gap = undefined
      }
      enqueue(line)
      if (pendingEvents === 0) pendingFirstSeq = event.seq
      pendingEvents++
      pendingLastSeq = event.seq
      wake.openUnsafe()
    }

    const rotate = async () => {
      await handle.close()
      if (files === 0) await Fs.rm(path, { force: true })
      else {
        for (let i = files - 1; i >= 1; i--) {
          await Fs.rename(join(dir, fileName(i)), join(dir, fileName(i + 1))).catch((error) => {
            if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error
          })
        }
        await Fs.rename(path, join(dir, fileName(1)))
      }
      handle = await Fs.open(path, appendFlags, 0o600)
      fileBytes = 0
    }

    /** Appends `lines`, rotating before a line that would take the file past the bound (a longer line goes alone). */
    const writeLines = async (lines: ReadonlyArray<string>) => {
      let chunk: Array<string> = []
      let chunkBytes = 0
      for (const line of lines) {
        const bytes = Buffer.byteLength(line) + 1
        if (fileBytes + chunkBytes > 0 && fileBytes + chunkBytes + bytes > fileBytesMax) {
          if (chunk.length > 0) await handle.write(chunk.join("\n") + "\n")
          fileBytes += chunkBytes
          await rotate()
          chunk = []
          chunkBytes = 0
        }
        chunk.push(line)
        chunkBytes += bytes
      }
      if (chunk.length > 0) await handle.write(chunk.join("\n") + "\n")
      fileBytes += chunkBytes
    }

    /** Writes what is queued now, under the lock; a failed write counts its events as dropped (and marks them). */
    const writeBatch: Effect.Effect<void> = lock
      .withPermit(
        Effect.gen(function* () {
          const lines = pending
          const events = pendingEvents
          const firstSeq = pendingFirstSeq
          const lastSeq = pendingLastSeq
          const upTo = accepted
          pending = []
          pendingBytes = 0
          pendingEvents = 0
          if (lines.length > 0) {
            const exit = yield* Effect.exit(Effect.tryPromise(() => writeLines(lines)))
            if (exit._tag === "Success") written += events
            else {
              lastError = errorText(Cause.squash(exit.cause))
              if (events > 0) lose(events, firstSeq, lastSeq)
            }
            if (events > 0) handledSeq = Math.max(handledSeq, lastSeq)
          }
          done = upTo
          for (let i = flushWaiters.length - 1; i >= 0; i--) {
            if (flushWaiters[i]!.upTo <= done) flushWaiters.splice(i, 1)[0]!.resume()
          }
        })
      )
      .pipe(
        // a write in flight finishes before anything else touches the file (closing the scope waits for it)
        Effect.uninterruptible
      )

    const writer = Effect.forever(
      Effect.gen(function* () {
        yield* wake.await
        wake.closeUnsafe()
        yield* writeBatch
      })
    )

    const flush: Effect.Effect<void> = Effect.suspend(() => {
      const upTo = accepted
      if (done >= upTo) return Effect.void
      return Effect.callback<void>((resume) => {
        flushWaiters.push({ upTo, resume: () => resume(Effect.void) })
      })
    })

    // finalizers run last first: unsubscribe, stop the writer, then write what is left and fsync
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        if (gap !== undefined) {
          enqueue(gapLine(gap))
          gap = undefined
        }
        yield* writeBatch
        yield* Effect.promise(async () => {
          await handle.sync().catch(() => undefined)
          await handle.close().catch(() => undefined)
        })
      })
    )
    yield* Effect.forkScoped(writer)
    yield* kernel.subscribe(listener)

    /** Every event the files hold, oldest first; run under the lock. */
    const readFiles = (filter: Filter | undefined) => readEvents(dir, Math.max(files, 0), filter)

    const read = (filter?: Filter) => Effect.andThen(flush, lock.withPermit(readFiles(filter)))

    const follow = (filter?: Filter): Stream.Stream<KernelEvent, AuditLogError> =>
      Stream.unwrap(
        Effect.gen(function* () {
          const keepIt = keep(filter)
          const live = yield* Queue.make<KernelEvent, AuditLogError>({ capacity: followEventsMax })
          // subscribed before the files are read: an event is in the files, or comes live, or both (then by seq)
          let after: number | undefined
          let held: Array<KernelEvent> = []
          let overflowed = false
          const overflow = () => {
            if (overflowed) return
            overflowed = true
            held = []
            const message = `a follower fell ${followEventsMax} events behind`
            Queue.failCauseUnsafe(live, Cause.fail(new AuditLogError({ reason: "overflow", message })))
          }
          const offer = (event: KernelEvent) => {
            if (overflowed || !keepIt(event)) return
            if (!Queue.offerUnsafe(live, event)) overflow()
          }
          yield* kernel.subscribe((event) => {
            if (after !== undefined) {
              if (event.seq > after) offer(event)
            } else if (!overflowed && keepIt(event)) {
              held.push(event)
              if (held.length > followEventsMax) overflow()
            }
          })
          yield* flush
          const past = yield* lock.withPermit(
            Effect.map(readFiles(filter), (events) => ({ events, handled: handledSeq }))
          )
          after = past.handled
          for (const event of held) if (event.seq > past.handled) offer(event)
          held = []
          return Stream.concat(Stream.fromIterable(past.events), Stream.fromQueue(live))
        })
      )

    return {
      path,
      read,
      follow,
      flush,
      stats: () => (lastError === undefined ? { written, dropped } : { written, dropped, lastError })
    } satisfies AuditLog
  })
