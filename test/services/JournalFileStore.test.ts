import { NodeServices } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import { Cause, ConfigProvider, Effect, Exit, FileSystem, Path, Queue } from "effect"
import { TestClock } from "effect/testing"
import { Journal, JournalFileStore, KernelConfig } from "effect-agent-os"

const { JournalError, JournalStoreService } = Journal
type JournalError = Journal.JournalError
type JournalRecord = Journal.JournalRecord
type JournalStoreService = Journal.JournalStoreService

/** Every shape a record takes: Success with and without cost fields, Failure with and without `retryable`. */
const shapes: ReadonlyArray<JournalRecord> = [
  { pid: 1, op: 1, device: "llm", call: "open", result: { _tag: "Success", value: null, cost: {} } },
  {
    pid: 1,
    op: 2,
    device: "llm",
    call: "read",
    result: {
      _tag: "Success",
      value: { text: "héllo\nwörld ✓ \u2028", nested: [1, 2.5, true, null, { deep: "x" }] },
      cost: { tokens: 12, toolCalls: 1, usd: 0.0003 }
    }
  },
  { pid: 2, op: 1, device: "fs", call: "write", result: { _tag: "Success", value: "a\nb", cost: { tokens: 3 } } },
  { pid: 2, op: 2, device: "fs", call: "write", result: { _tag: "Success", value: 42, cost: { usd: 0 } } },
  {
    pid: 2,
    op: 3,
    device: "net",
    call: "read",
    result: { _tag: "Failure", reason: "Timeout", message: "took too long", retryable: true }
  },
  {
    pid: 3,
    op: 1,
    device: "net",
    call: "read",
    result: { _tag: "Failure", reason: "Denied", message: "no", retryable: false }
  },
  { pid: 3, op: 2, device: "net", call: "open", result: { _tag: "Failure", reason: "Gone", message: "" } }
]

const record = (pid: number, op: number): JournalRecord => ({
  pid,
  op,
  device: "dev",
  call: "write",
  result: { _tag: "Success", value: { pid, op }, cost: { tokens: op } }
})

const line = (r: JournalRecord) => `${JSON.stringify(r)}\n`

/** The header line of an unkeyed format-2 journal (line 1 of every file). */
const header = `${JSON.stringify({ journal: "effect-agent-os", version: 2, abi: 1, program: "", nonce: "test" })}\n`

/** A fresh journal path inside a temporary directory removed when the test ends. */
const tempJournal = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const dir = yield* fs.makeTempDirectoryScoped({ prefix: "journal-file-store-" })
  return { fs, path, dir, file: path.join(dir, "journal.jsonl") }
})

/** Opens a store, runs `f` with it and closes the store's scope. */
const session = <A, E>(
  options: JournalFileStore.Options,
  f: (store: JournalStoreService["Service"]) => Effect.Effect<A, E, FileSystem.FileSystem | Path.Path>
) => Effect.scoped(Effect.flatMap(JournalFileStore.make(options), f))

const loadAll = (options: JournalFileStore.Options) => session(options, (store) => store.load)

/** The record lines of a journal file, after its header line. */
const readLines = (fs: FileSystem.FileSystem, file: string) =>
  Effect.map(fs.readFileString(file), (text) => {
    assert.isTrue(text.endsWith("\n"), "the file ends on a complete line")
    const [first, ...lines] = text.slice(0, -1).split("\n")
    assert.strictEqual(JSON.parse(first!).journal, "effect-agent-os", "line 1 is the header")
    return lines
  })

const failureOf = <A>(exit: Exit.Exit<A, JournalError>): JournalError => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  if (Exit.isSuccess(exit)) throw new Error("unreachable")
  const error = Cause.squash(exit.cause)
  assert.instanceOf(error, JournalError)
  return error as JournalError
}

/**
 * A FileSystem whose file handles count fsyncs (`started` when one begins, `completed` gets one item per success) and,
 * with `splitWrites`, write every buffer in two pieces, as a short write does.
 */
const makeProbe = (options: { readonly splitWrites: boolean }) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const completed = yield* Queue.unbounded<void>()
    let started = 0
    const wrap = (file: FileSystem.File): FileSystem.File => ({
      [FileSystem.FileTypeId]: FileSystem.FileTypeId,
      get stat() {
        return file.stat
      },
      seek: (offset, from) => file.seek(offset, from),
      get sync() {
        return Effect.suspend(() => {
          started++
          return file.sync
        }).pipe(Effect.andThen(Queue.offer(completed, undefined)))
      },
      read: (buffer, options) => file.read(buffer, options),
      readAlloc: (size, options) => file.readAlloc(size, options),
      truncate: (length) => file.truncate(length),
      write: (buffer) => file.write(buffer),
      writeAll: (buffer) =>
        options.splitWrites
          ? file
              .writeAll(buffer.subarray(0, buffer.length >> 1))
              .pipe(Effect.andThen(Effect.yieldNow), Effect.andThen(file.writeAll(buffer.subarray(buffer.length >> 1))))
          : file.writeAll(buffer)
    })
    const fileSystem = FileSystem.FileSystem.of({
      ...fs,
      open: (path, options) => Effect.map(fs.open(path, options), wrap)
    })
    return {
      started: () => started,
      awaitSync: Queue.take(completed),
      provide: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.provideService(effect, FileSystem.FileSystem, fileSystem)
    }
  })

const syncProbe = makeProbe({ splitWrites: false })

layer(NodeServices.layer)("JournalFileStore", (it) => {
  describe("round trip", () => {
    it.effect("loads back records of every shape, one encoded record per line", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* session({ path: file }, (store) => Effect.forEach(shapes, store.append, { discard: true }))
        assert.deepStrictEqual(yield* loadAll({ path: file }), shapes)
        const lines = yield* readLines(fs, file)
        assert.strictEqual(lines.length, shapes.length)
        assert.deepStrictEqual(
          lines.map((l): unknown => JSON.parse(l)),
          [...shapes]
        )
      })
    )

    it.effect("load sees appends of the same session", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        const loaded = yield* session({ path: file }, (store) =>
          Effect.gen(function* () {
            assert.deepStrictEqual(yield* store.load, [])
            yield* store.append(record(1, 1))
            yield* store.append(record(1, 2))
            return yield* store.load
          })
        )
        assert.deepStrictEqual(loaded, [record(1, 1), record(1, 2)])
      })
    )

    it.effect("append after load continues the same file", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* session({ path: file }, (store) =>
          Effect.andThen(store.append(record(1, 1)), store.append(record(1, 2)))
        )
        yield* session({ path: file }, (store) =>
          Effect.gen(function* () {
            assert.deepStrictEqual(yield* store.load, [record(1, 1), record(1, 2)])
            yield* store.append(record(1, 3))
          })
        )
        assert.deepStrictEqual(yield* loadAll({ path: file }), [record(1, 1), record(1, 2), record(1, 3)])
        assert.strictEqual((yield* readLines(fs, file)).length, 3)
      })
    )

    it.effect("works as the JournalStoreService layer", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        const options = { path: file }
        yield* Effect.gen(function* () {
          const store = yield* JournalStoreService
          yield* store.append(record(7, 1))
        }).pipe(Effect.provide(JournalFileStore.layer(options)))
        const loaded = yield* Effect.gen(function* () {
          const store = yield* JournalStoreService
          return yield* store.load
        }).pipe(Effect.provide(JournalFileStore.layer(options)))
        assert.deepStrictEqual(loaded, [record(7, 1)])
      })
    )
  })

  describe("missing and empty files", () => {
    it.effect("a missing file loads as [] and is not created; the first append creates it (and its directory)", () =>
      Effect.gen(function* () {
        const { fs, path, dir } = yield* tempJournal
        const file = path.join(dir, "nested", "deeper", "journal.jsonl")
        assert.deepStrictEqual(yield* loadAll({ path: file }), [])
        assert.isFalse(yield* fs.exists(path.join(dir, "nested")), "loading writes nothing")
        yield* session({ path: file }, (store) => store.append(record(1, 1)))
        assert.deepStrictEqual(yield* loadAll({ path: file }), [record(1, 1)])
      })
    )

    it.effect("an empty file loads as []", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* fs.writeFileString(file, "")
        assert.deepStrictEqual(yield* loadAll({ path: file }), [])
      })
    )

    it.effect("the default path is .agentos/journal.jsonl under the working directory", () =>
      Effect.gen(function* () {
        const { fs, path, dir } = yield* tempJournal
        // A Path whose working directory is the temporary directory, so the test never writes into the project.
        const rooted = Path.Path.of({ ...path, resolve: (...segments) => path.resolve(dir, ...segments) })
        yield* session({}, (store) => store.append(record(1, 1))).pipe(Effect.provideService(Path.Path, rooted))
        const lines = yield* readLines(fs, path.join(dir, ".agentos", "journal.jsonl"))
        assert.deepStrictEqual(
          lines.map((l) => JSON.parse(l)),
          [record(1, 1)]
        )
      })
    )
  })

  describe("torn last line", () => {
    it.effect("a partial last line is ignored, truncated, and the next append yields a clean file", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        const whole = header + line(record(1, 1)) + line(record(1, 2))
        const torn = whole + line(record(1, 3)).slice(0, 25)
        yield* fs.writeFileString(file, torn)
        yield* session({ path: file }, (store) =>
          Effect.gen(function* () {
            assert.deepStrictEqual(yield* store.load, [record(1, 1), record(1, 2)])
            // Loading writes nothing: the tail is cut by the first append.
            assert.strictEqual(yield* fs.readFileString(file), torn)
            yield* store.append(record(1, 4))
          })
        )
        assert.strictEqual(yield* fs.readFileString(file), whole + line(record(1, 4)))
        assert.deepStrictEqual(yield* loadAll({ path: file }), [record(1, 1), record(1, 2), record(1, 4)])
      })
    )

    it.effect("a complete last line without its newline is torn too", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* fs.writeFileString(file, header + line(record(1, 1)) + JSON.stringify(record(1, 2)))
        assert.deepStrictEqual(yield* loadAll({ path: file }), [record(1, 1)])
        yield* session({ path: file }, (store) => store.append(record(1, 3)))
        assert.strictEqual(yield* fs.readFileString(file), header + line(record(1, 1)) + line(record(1, 3)))
      })
    )

    it.effect("a newline-terminated last line that does not decode is corrupt, not torn, and is kept", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        const text = header + line(record(1, 1)) + '{"pid":1,"op\n'
        yield* fs.writeFileString(file, text)
        const error = failureOf(yield* Effect.exit(loadAll({ path: file })))
        assert.strictEqual(error.reason, "corrupt")
        assert.strictEqual(error.line, 3)
        const refused = failureOf(yield* Effect.exit(session({ path: file }, (store) => store.append(record(1, 2)))))
        assert.strictEqual(refused.reason, "corrupt")
        assert.strictEqual(yield* fs.readFileString(file), text)
      })
    )

    it.effect("an append with no load first repairs the tail before writing", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* fs.writeFileString(file, header + line(record(1, 1)) + '{"pid":1,')
        yield* session({ path: file }, (store) => store.append(record(1, 2)))
        assert.strictEqual(yield* fs.readFileString(file), header + line(record(1, 1)) + line(record(1, 2)))
      })
    )

    it.effect("a file holding only a torn line loads as []; the first append replaces it with a header", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* fs.writeFileString(file, '{"pid":')
        assert.deepStrictEqual(yield* loadAll({ path: file }), [])
        assert.strictEqual(yield* fs.readFileString(file), '{"pid":')
        yield* session({ path: file }, (store) => store.append(record(1, 1)))
        assert.deepStrictEqual(yield* readLines(fs, file), [JSON.stringify(record(1, 1))])
      })
    )
  })

  describe("corrupt lines", () => {
    it.effect("a corrupt middle line fails with corrupt naming the 1-based line, and the file is kept", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        const text = header + line(record(1, 1)) + line(record(1, 2)) + "garbage\n" + line(record(1, 4))
        yield* fs.writeFileString(file, text)
        const error = failureOf(yield* Effect.exit(loadAll({ path: file })))
        assert.strictEqual(error.reason, "corrupt")
        assert.strictEqual(error.line, 4)
        // Appending is refused too: nothing is ever written after a hole.
        const refused = failureOf(yield* Effect.exit(session({ path: file }, (store) => store.append(record(1, 5)))))
        assert.strictEqual(refused.reason, "corrupt")
        assert.strictEqual(refused.line, 4)
        assert.strictEqual(yield* fs.readFileString(file), text)
      })
    )

    it.effect("a valid-JSON line that is not a record is corrupt", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        const notRecord = { ...record(1, 2), call: "delete" }
        yield* fs.writeFileString(
          file,
          header + line(record(1, 1)) + `${JSON.stringify(notRecord)}\n` + line(record(1, 3))
        )
        const error = failureOf(yield* Effect.exit(loadAll({ path: file })))
        assert.strictEqual(error.reason, "corrupt")
        assert.strictEqual(error.line, 3)
      })
    )

    it.effect("a record with a negative or infinite cost, or a fractional op, is corrupt: the Schema's checks", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        const negative = JSON.stringify({ ...record(1, 2), result: { _tag: "Success", cost: { usd: -1 } } })
        // JSON has no Infinity, but 1e999 parses to it
        const infinite = line(record(1, 2)).replace('"tokens":2', '"tokens":1e999').trimEnd()
        const fractional = JSON.stringify({ ...record(1, 2), op: 2.5 })
        for (const bad of [negative, infinite, fractional]) {
          yield* fs.writeFileString(file, header + line(record(1, 1)) + `${bad}\n` + line(record(1, 3)))
          const error = failureOf(yield* Effect.exit(loadAll({ path: file })))
          assert.strictEqual(error.reason, "corrupt", bad)
          assert.strictEqual(error.line, 3, bad)
        }
      })
    )

    it.effect("a first line that is JSON but not a header is corrupt at line 1", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* fs.writeFileString(file, '{"hello":1}\n' + line(record(1, 1)))
        const error = failureOf(yield* Effect.exit(loadAll({ path: file })))
        assert.strictEqual(error.reason, "corrupt")
        assert.strictEqual(error.line, 1)
      })
    )

    it.effect("a file without a header (format 1) is incompatible, for load and append alike", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        const text = line(record(1, 1)) + line(record(1, 2))
        yield* fs.writeFileString(file, text)
        assert.strictEqual(failureOf(yield* Effect.exit(loadAll({ path: file }))).reason, "incompatible")
        const refused = failureOf(yield* Effect.exit(session({ path: file }, (store) => store.append(record(1, 3)))))
        assert.strictEqual(refused.reason, "incompatible")
        assert.strictEqual(yield* fs.readFileString(file), text)
      })
    )

    it.effect("an empty middle line is corrupt", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* fs.writeFileString(file, header + line(record(1, 1)) + "\n" + line(record(1, 2)))
        const error = failureOf(yield* Effect.exit(loadAll({ path: file })))
        assert.strictEqual(error.reason, "corrupt")
        assert.strictEqual(error.line, 3)
      })
    )

    it.effect("a record that would not load back is refused as unencodable and the file stays clean", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        const noValue: JournalRecord = { ...record(2, 1), result: { _tag: "Success", cost: {} } }
        // a Map has no faithful JSON form (JSON.stringify would write {} and lose its entries)
        const mapValue: JournalRecord = {
          ...record(2, 2),
          result: { _tag: "Success", value: new Map([[1, 2]]), cost: {} }
        }
        const cyclic: Record<string, unknown> = {}
        cyclic.self = cyclic
        const cycleValue: JournalRecord = { ...record(2, 4), result: { _tag: "Success", value: cyclic, cost: {} } }
        yield* session({ path: file }, (store) =>
          Effect.gen(function* () {
            yield* store.append(noValue)
            for (const bad of [mapValue, cycleValue]) {
              const error = failureOf(yield* Effect.exit(store.append(bad)))
              assert.strictEqual(error.reason, "unencodable")
              assert.strictEqual(error.pid, bad.pid)
              assert.strictEqual(error.op, bad.op)
            }
            yield* store.append(record(2, 3))
          })
        )
        assert.deepStrictEqual(yield* loadAll({ path: file }), [noValue, record(2, 3)])
      })
    )
  })

  describe("errors and options", () => {
    it.effect("an I/O failure is JournalError io with the platform's message", () =>
      Effect.gen(function* () {
        const { dir } = yield* tempJournal
        // The path is a directory: opening it for appending fails.
        const error = failureOf(yield* Effect.exit(loadAll({ path: dir })))
        assert.strictEqual(error.reason, "io")
        assert.isTrue(error.message.length > 0)
      })
    )

    it.effect("a non-positive intervalMs is a defect", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        const exit = yield* Effect.exit(loadAll({ path: file, sync: "interval", intervalMs: 0 }))
        assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
      })
    )
  })

  describe("concurrency", () => {
    it.effect("1000 concurrent appends load back, each exactly once, each line valid", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        const count = 1000
        const all = Array.from({ length: count }, (_, i) => record(1 + (i % 10), i))
        yield* session({ path: file }, (store) =>
          Effect.forEach(all, store.append, { concurrency: "unbounded", discard: true })
        )
        const loaded = yield* loadAll({ path: file })
        assert.strictEqual(loaded.length, count)
        const ops = new Set(loaded.map((r) => r.op))
        assert.strictEqual(ops.size, count)
        for (const r of loaded) assert.deepStrictEqual(r, record(1 + (r.op % 10), r.op))
        const lines = yield* readLines(fs, file)
        assert.strictEqual(lines.length, count)
        for (const l of lines) assert.deepStrictEqual(JSON.parse(l), record(JSON.parse(l).pid, JSON.parse(l).op))
      })
    )

    it.effect("appends written in pieces (short writes), with loads among them, never interleave", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        const probe = yield* makeProbe({ splitWrites: true })
        const all = Array.from({ length: 200 }, (_, i) => record(1, i))
        yield* session({ path: file, sync: "none" }, (store) =>
          Effect.all(
            [
              Effect.forEach(all, store.append, { concurrency: "unbounded", discard: true }),
              // A load must never see (and cut off as torn) half of a line still being written.
              Effect.forEach(all.slice(0, 50), () => store.load, { discard: true })
            ],
            { concurrency: "unbounded" }
          )
        ).pipe(probe.provide)
        const lines = yield* readLines(fs, file)
        assert.strictEqual(lines.length, all.length)
        const ops = new Set(lines.map((l) => (JSON.parse(l) as JournalRecord).op))
        assert.strictEqual(ops.size, all.length)
      })
    )

    it.effect("concurrent first appends over a torn tail repair it once and lose nothing", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* fs.writeFileString(file, header + line(record(1, 0)) + '{"pid":1,')
        const all = Array.from({ length: 200 }, (_, i) => record(2, i))
        yield* session({ path: file, sync: "none" }, (store) =>
          Effect.forEach(all, store.append, { concurrency: "unbounded", discard: true })
        )
        const loaded = yield* loadAll({ path: file })
        assert.strictEqual(loaded.length, all.length + 1)
        assert.deepStrictEqual(loaded[0], record(1, 0))
        assert.strictEqual(new Set(loaded.map((r) => `${r.pid}/${r.op}`)).size, all.length + 1)
      })
    )
  })

  describe("sync policies", () => {
    it.effect("every: one fsync per append, before append returns", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        const probe = yield* syncProbe
        yield* session({ path: file, sync: "every" }, (store) =>
          Effect.gen(function* () {
            for (let op = 1; op <= 5; op++) {
              yield* store.append(record(1, op))
              assert.strictEqual(probe.started(), op)
            }
          })
        ).pipe(probe.provide)
        assert.strictEqual(probe.started(), 5)
        assert.strictEqual((yield* loadAll({ path: file })).length, 5)
      })
    )

    it.effect("every is the default", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        const probe = yield* syncProbe
        yield* session({ path: file }, (store) => store.append(record(1, 1))).pipe(probe.provide)
        assert.strictEqual(JournalFileStore.defaultSync, "every")
        assert.strictEqual(probe.started(), 1)
      })
    )

    it.effect("none: never fsyncs, not even on close, and the records are still there", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        const probe = yield* syncProbe
        yield* session({ path: file, sync: "none" }, (store) =>
          Effect.forEach([1, 2, 3, 4, 5], (op) => store.append(record(1, op)), { discard: true })
        ).pipe(probe.provide)
        assert.strictEqual(probe.started(), 0)
        assert.strictEqual((yield* loadAll({ path: file })).length, 5)
      })
    )

    it.effect("interval: fsyncs at most once per interval when something was written, and on close", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        const probe = yield* syncProbe
        yield* session({ path: file, sync: "interval", intervalMs: 1000 }, (store) =>
          Effect.gen(function* () {
            yield* store.append(record(1, 1))
            yield* store.append(record(1, 2))
            yield* store.append(record(1, 3))
            assert.strictEqual(probe.started(), 0, "appends do not fsync")
            yield* TestClock.adjust(999)
            assert.strictEqual(probe.started(), 0, "not before the interval")
            yield* TestClock.adjust(1)
            yield* probe.awaitSync
            assert.strictEqual(probe.started(), 1, "one fsync for three appends")
            yield* TestClock.adjust(1000)
            yield* TestClock.adjust(1000)
            assert.strictEqual(probe.started(), 1, "nothing written: no fsync")
            yield* store.append(record(1, 4))
            assert.strictEqual(probe.started(), 1)
          })
        ).pipe(probe.provide)
        assert.strictEqual(probe.started(), 2, "closing the scope fsyncs the last append")
        assert.strictEqual((yield* loadAll({ path: file })).length, 4)
      })
    )

    it.effect("interval: closing with nothing unsynced does not fsync", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        const probe = yield* syncProbe
        yield* session({ path: file, sync: "interval", intervalMs: 50 }, (store) =>
          Effect.gen(function* () {
            yield* store.append(record(1, 1))
            yield* TestClock.adjust(50)
            yield* probe.awaitSync
          })
        ).pipe(probe.provide)
        assert.strictEqual(probe.started(), 1)
      })
    )
  })
})

const valueRecord = (op: number, value: unknown) =>
  ({ pid: 9, op, device: "dev", call: "read", result: { _tag: "Success", value, cost: {} } }) as JournalRecord

/** The record lines of a file as JSON objects. */
const recordJson = (fs: FileSystem.FileSystem, file: string) =>
  Effect.map(readLines(fs, file), (lines) => lines.map((l) => JSON.parse(l) as Record<string, any>))

const rewrite = (fs: FileSystem.FileSystem, file: string, edit: (lines: Array<string>) => Array<string>) =>
  Effect.gen(function* () {
    const text = yield* fs.readFileString(file)
    const lines = text.slice(0, -1).split("\n")
    yield* fs.writeFileString(file, `${edit(lines).join("\n")}\n`)
  })

layer(NodeServices.layer)("JournalFileStore format 2", (it) => {
  describe("faithful values", () => {
    it.effect(
      "NaN, ±Infinity, −0, Dates, undefined (in arrays and objects), bigints and $agentos keys come back as they were",
      () =>
        Effect.gen(function* () {
          const { file } = yield* tempJournal
          const values: ReadonlyArray<unknown> = [
            NaN,
            Infinity,
            -Infinity,
            -0,
            new Date("2026-12-02T10:00:00.000Z"),
            new Date(NaN),
            [undefined, 1, undefined],
            { a: undefined, b: [NaN, { c: -0 }] },
            12345678901234567890123n,
            -1n,
            { $agentos: "NaN" },
            { $agentos: { nested: 1 }, other: [Infinity] },
            "plain",
            [1, "two", null, true]
          ]
          const records = values.map((value, i) => valueRecord(i + 1, value))
          yield* session({ path: file }, (store) => Effect.forEach(records, store.append, { discard: true }))
          const loaded = yield* loadAll({ path: file })
          assert.strictEqual(loaded.length, values.length)
          for (let i = 0; i < values.length; i++) {
            const got = (loaded[i]!.result as { readonly value: unknown }).value
            const want = values[i]
            assert.deepStrictEqual(got, want, `value ${i}`)
            if (typeof want === "number") assert.isTrue(Object.is(got, want), `value ${i} is ${String(want)} exactly`)
          }
          assert.isTrue(Object.is(((loaded[7]!.result as any).value.b[1] as { c: number }).c, -0), "nested -0")
          assert.isTrue(Object.hasOwn((loaded[7]!.result as any).value, "a"), "an undefined property is kept")
        })
    )

    it.effect("a value with no faithful JSON form is refused at append; a malformed tag in a file is corrupt", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* session({ path: file }, (store) =>
          Effect.gen(function* () {
            for (const bad of [() => 1, Symbol("s"), new Uint8Array([1]), new Set([1]), [1, , 3]]) {
              const error = failureOf(yield* Effect.exit(store.append(valueRecord(1, bad))))
              assert.strictEqual(error.reason, "unencodable", String(bad))
            }
            yield* store.append(valueRecord(2, 1))
          })
        )
        yield* rewrite(fs, file, (lines) => [
          ...lines,
          JSON.stringify({
            ...valueRecord(3, null),
            result: { _tag: "Success", value: { $agentos: "Nope" }, cost: {} }
          })
        ])
        const error = failureOf(yield* Effect.exit(loadAll({ path: file })))
        assert.strictEqual(error.reason, "corrupt")
        assert.strictEqual(error.line, 3)
      })
    )
  })

  describe("read-only replay and bounded reads", () => {
    it.effect("load opens read-only: a 0444 journal loads and its bytes (a torn tail included) are unchanged", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* session({ path: file }, (store) =>
          Effect.andThen(store.append(record(1, 1)), store.append(record(1, 2)))
        )
        yield* Effect.promise(() => import("node:fs/promises").then((m) => m.appendFile(file, '{"pid":1,"op"')))
        yield* fs.chmod(file, 0o444)
        const before = yield* fs.readFile(file)
        // every open made by load is read-only (this proves it even where root could write a 0444 file)
        const flags: Array<string | undefined> = []
        const spying = FileSystem.FileSystem.of({
          ...fs,
          open: (path, options) => {
            flags.push(options?.flag)
            return fs.open(path, options)
          }
        })
        const loaded = yield* loadAll({ path: file }).pipe(Effect.provideService(FileSystem.FileSystem, spying))
        assert.deepStrictEqual(loaded, [record(1, 1), record(1, 2)])
        assert.deepStrictEqual(flags, ["r"])
        assert.deepStrictEqual(yield* fs.readFile(file), before)
        // appending is what needs write access (root writes a 0444 file all the same)
        if (process.getuid?.() !== 0) {
          const refused = failureOf(yield* Effect.exit(session({ path: file }, (store) => store.append(record(1, 3)))))
          assert.strictEqual(refused.reason, "io")
          assert.deepStrictEqual(yield* fs.readFile(file), before)
        }
      })
    )

    it.effect("a character device or a FIFO is an io error at once, not an unbounded or blocking read", () =>
      Effect.gen(function* () {
        const { path, dir } = yield* tempJournal
        const fifo = path.join(dir, "fifo")
        yield* Effect.promise(() =>
          import("node:child_process").then(
            (m) =>
              new Promise<void>((resolve, reject) => m.execFile("mkfifo", [fifo], (e) => (e ? reject(e) : resolve())))
          )
        )
        for (const special of ["/dev/zero", "/dev/urandom", fifo]) {
          const error = failureOf(yield* Effect.exit(loadAll({ path: special })))
          assert.strictEqual(error.reason, "io", special)
          assert.match(error.message, /not a regular file/)
          const refused = failureOf(yield* Effect.exit(session({ path: special }, (s) => s.append(record(1, 1)))))
          assert.strictEqual(refused.reason, "io", special)
        }
      })
    )

    it.effect("fileBytesMax and lineBytesMax bound reads (io, corrupt) and appends (io, unencodable)", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        yield* session({ path: file }, (store) => Effect.forEach([1, 2, 3], (op) => store.append(record(1, op))))
        const big = failureOf(yield* Effect.exit(loadAll({ path: file, fileBytesMax: 100 })))
        assert.strictEqual(big.reason, "io")
        assert.match(big.message, /journalFileBytesMax/)
        const long = failureOf(yield* Effect.exit(loadAll({ path: file, lineBytesMax: 40 })))
        assert.strictEqual(long.reason, "corrupt")
        assert.match(long.message, /journalLineBytesMax/)
        assert.strictEqual((yield* loadAll({ path: file })).length, 3, "within the defaults it loads")
        const tooLong = failureOf(
          yield* Effect.exit(
            session({ path: file, lineBytesMax: 200 }, (store) => store.append(valueRecord(1, "x".repeat(300))))
          )
        )
        assert.strictEqual(tooLong.reason, "unencodable")
        const full = failureOf(
          yield* Effect.exit(session({ path: file, fileBytesMax: 500 }, (store) => store.append(record(1, 4))))
        )
        assert.strictEqual(full.reason, "io")
        assert.strictEqual((yield* loadAll({ path: file })).length, 3, "nothing was written past a limit")
      })
    )

    it.effect("the limits come from KernelConfig when it is in context", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        yield* session({ path: file }, (store) => store.append(record(1, 1)))
        const limits = yield* KernelConfig.make({ journalFileBytesMax: 10 })
        const error = failureOf(
          yield* Effect.exit(loadAll({ path: file }).pipe(Effect.provideService(KernelConfig.KernelConfig, limits)))
        )
        assert.strictEqual(error.reason, "io")
      })
    )
  })

  describe("header and integrity", () => {
    const key = "correct horse battery staple"

    it.effect(
      "line 1 is a header: format version, kernel ABI, program; another program or version is incompatible",
      () =>
        Effect.gen(function* () {
          const { fs, file } = yield* tempJournal
          yield* session({ path: file, program: "team" }, (store) => store.append(record(1, 1)))
          const head = JSON.parse((yield* fs.readFileString(file)).split("\n")[0]!)
          assert.strictEqual(head.journal, "effect-agent-os")
          assert.strictEqual(head.version, JournalFileStore.formatVersion)
          assert.strictEqual(head.abi, 1)
          assert.strictEqual(head.program, "team")
          assert.deepStrictEqual(yield* loadAll({ path: file, program: "team" }), [record(1, 1)])
          assert.strictEqual(
            failureOf(yield* Effect.exit(loadAll({ path: file, program: "other" }))).reason,
            "incompatible"
          )
          yield* rewrite(fs, file, ([h, ...rest]) => [JSON.stringify({ ...JSON.parse(h!), version: 3 }), ...rest])
          assert.strictEqual(failureOf(yield* Effect.exit(loadAll({ path: file }))).reason, "incompatible")
        })
    )

    it.effect("with a key, every line carries a MAC and the journal loads back under the same key", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* session({ path: file, integrityKey: key }, (store) => Effect.forEach(shapes, store.append))
        assert.deepStrictEqual(yield* loadAll({ path: file, integrityKey: key }), shapes)
        for (const json of yield* recordJson(fs, file)) assert.isString(json.mac)
      })
    )

    it.effect("an edited value, cost, pid, seq or device, a stripped or moved MAC, another key: tampered", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        const records = [record(1, 1), { ...record(1, 2), seq: 1 }, record(2, 1)]
        yield* session({ path: file, integrityKey: key }, (store) => Effect.forEach(records, store.append))
        const pristine = yield* fs.readFileString(file)
        const edits: ReadonlyArray<readonly [string, (json: Record<string, any>) => Record<string, any>]> = [
          ["value", (j) => ({ ...j, result: { ...j.result, value: { pid: 1, op: 99 } } })],
          ["cost up", (j) => ({ ...j, result: { ...j.result, cost: { tokens: 1e9 } } })],
          ["cost zero", (j) => ({ ...j, result: { ...j.result, cost: {} } })],
          ["pid", (j) => ({ ...j, pid: 3 })],
          ["seq", (j) => ({ ...j, seq: 2 })],
          ["device", (j) => ({ ...j, device: "other" })],
          ["call", (j) => ({ ...j, call: "read" })],
          ["digest", (j) => ({ ...j, digest: "x" })],
          ["no mac", ({ mac: _mac, ...j }) => j]
        ]
        for (const [name, edit] of edits) {
          yield* fs.writeFileString(file, pristine)
          yield* rewrite(fs, file, (lines) => lines.map((l, i) => (i === 2 ? JSON.stringify(edit(JSON.parse(l))) : l)))
          const error = failureOf(yield* Effect.exit(loadAll({ path: file, integrityKey: key })))
          assert.strictEqual(error.reason, "tampered", name)
          assert.strictEqual(error.line, 3, name)
        }
        // a MAC copied from another line does not verify either
        yield* fs.writeFileString(file, pristine)
        yield* rewrite(fs, file, (lines) => {
          const mac = JSON.parse(lines[1]!).mac
          return lines.map((l, i) => (i === 2 ? JSON.stringify({ ...JSON.parse(l), mac }) : l))
        })
        assert.strictEqual(failureOf(yield* Effect.exit(loadAll({ path: file, integrityKey: key }))).reason, "tampered")
        yield* fs.writeFileString(file, pristine)
        assert.strictEqual(
          failureOf(yield* Effect.exit(loadAll({ path: file, integrityKey: "wrong" }))).reason,
          "tampered"
        )
        assert.strictEqual(
          failureOf(yield* Effect.exit(loadAll({ path: file }))).reason,
          "tampered",
          "keyed, read without key"
        )
        assert.strictEqual((yield* loadAll({ path: file, integrityKey: key })).length, 3, "the pristine file loads")
      })
    )

    it.effect("a key given to an unkeyed journal is tampered (its MACs could have been stripped)", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        yield* session({ path: file }, (store) => store.append(record(1, 1)))
        const error = failureOf(yield* Effect.exit(loadAll({ path: file, integrityKey: key })))
        assert.strictEqual(error.reason, "tampered")
      })
    )

    it.effect("the key is read from AGENTOS_JOURNAL_KEY when integrityKey is not given", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        const env = ConfigProvider.fromUnknown({ [JournalFileStore.integrityKeyVariable]: key })
        yield* session({ path: file }, (store) => store.append(record(1, 1))).pipe(
          Effect.provideService(ConfigProvider.ConfigProvider, env)
        )
        assert.isString((yield* recordJson(fs, file))[0]!.mac)
        assert.deepStrictEqual(yield* loadAll({ path: file, integrityKey: key }), [record(1, 1)])
        assert.strictEqual(failureOf(yield* Effect.exit(loadAll({ path: file }))).reason, "tampered")
      })
    )
  })
})

describe("JournalFileStore on the real clock", () => {
  it.live("interval: a short real interval fsyncs without anyone closing the store", () =>
    Effect.gen(function* () {
      const { file } = yield* tempJournal
      const probe = yield* syncProbe
      yield* session({ path: file, sync: "interval", intervalMs: 20 }, (store) =>
        Effect.gen(function* () {
          yield* store.append(record(1, 1))
          yield* probe.awaitSync.pipe(Effect.timeout("2 seconds"))
          assert.strictEqual(probe.started(), 1)
        })
      ).pipe(probe.provide)
      assert.deepStrictEqual(yield* loadAll({ path: file }), [record(1, 1)])
    }).pipe(Effect.provide(NodeServices.layer))
  )
})
