import { NodeServices } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import { Cause, Effect, Exit, FileSystem, Path, Queue } from "effect"
import { TestClock } from "effect/testing"
import { Journal, JournalFileStore } from "effect-agent-os"

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

const readLines = (fs: FileSystem.FileSystem, file: string) =>
  Effect.map(fs.readFileString(file), (text) => {
    assert.isTrue(text === "" || text.endsWith("\n"), "the file ends on a complete line")
    return text === "" ? [] : text.slice(0, -1).split("\n")
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
    it.effect("a missing file (and directory) loads as [] and is created", () =>
      Effect.gen(function* () {
        const { fs, path, dir } = yield* tempJournal
        const file = path.join(dir, "nested", "deeper", "journal.jsonl")
        assert.deepStrictEqual(yield* loadAll({ path: file }), [])
        assert.isTrue(yield* fs.exists(file))
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
        const whole = line(record(1, 1)) + line(record(1, 2))
        yield* fs.writeFileString(file, whole + line(record(1, 3)).slice(0, 25))
        yield* session({ path: file }, (store) =>
          Effect.gen(function* () {
            assert.deepStrictEqual(yield* store.load, [record(1, 1), record(1, 2)])
            // Truncated back to the last complete record as soon as it was seen.
            assert.strictEqual(yield* fs.readFileString(file), whole)
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
        yield* fs.writeFileString(file, line(record(1, 1)) + JSON.stringify(record(1, 2)))
        assert.deepStrictEqual(yield* loadAll({ path: file }), [record(1, 1)])
        assert.strictEqual(yield* fs.readFileString(file), line(record(1, 1)))
      })
    )

    it.effect("a newline-terminated last line that does not decode is torn, not corrupt", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* fs.writeFileString(file, line(record(1, 1)) + '{"pid":1,"op\n')
        assert.deepStrictEqual(yield* loadAll({ path: file }), [record(1, 1)])
        assert.strictEqual(yield* fs.readFileString(file), line(record(1, 1)))
      })
    )

    it.effect("an append with no load first repairs the tail before writing", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* fs.writeFileString(file, line(record(1, 1)) + '{"pid":1,')
        yield* session({ path: file }, (store) => store.append(record(1, 2)))
        assert.strictEqual(yield* fs.readFileString(file), line(record(1, 1)) + line(record(1, 2)))
      })
    )

    it.effect("a file holding only a torn line loads as [] and is emptied", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* fs.writeFileString(file, '{"pid":')
        assert.deepStrictEqual(yield* loadAll({ path: file }), [])
        assert.strictEqual(yield* fs.readFileString(file), "")
      })
    )
  })

  describe("corrupt lines", () => {
    it.effect("a corrupt middle line fails with corrupt naming the 1-based line, and the file is kept", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        const text = line(record(1, 1)) + line(record(1, 2)) + "garbage\n" + line(record(1, 4))
        yield* fs.writeFileString(file, text)
        const error = failureOf(yield* Effect.exit(loadAll({ path: file })))
        assert.strictEqual(error.reason, "corrupt")
        assert.strictEqual(error.line, 3)
        // Appending is refused too: nothing is ever written after a hole.
        const refused = failureOf(yield* Effect.exit(session({ path: file }, (store) => store.append(record(1, 5)))))
        assert.strictEqual(refused.reason, "corrupt")
        assert.strictEqual(refused.line, 3)
        assert.strictEqual(yield* fs.readFileString(file), text)
      })
    )

    it.effect("a valid-JSON line that is not a record is corrupt", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        const notRecord = { ...record(1, 2), call: "delete" }
        yield* fs.writeFileString(file, line(record(1, 1)) + `${JSON.stringify(notRecord)}\n` + line(record(1, 3)))
        const error = failureOf(yield* Effect.exit(loadAll({ path: file })))
        assert.strictEqual(error.reason, "corrupt")
        assert.strictEqual(error.line, 2)
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
          yield* fs.writeFileString(file, line(record(1, 1)) + `${bad}\n` + line(record(1, 3)))
          const error = failureOf(yield* Effect.exit(loadAll({ path: file })))
          assert.strictEqual(error.reason, "corrupt", bad)
          assert.strictEqual(error.line, 2, bad)
        }
      })
    )

    it.effect("a first line that is JSON but not a record is corrupt at line 1", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* fs.writeFileString(file, '{"hello":1}\n' + line(record(1, 1)))
        const error = failureOf(yield* Effect.exit(loadAll({ path: file })))
        assert.strictEqual(error.reason, "corrupt")
        assert.strictEqual(error.line, 1)
      })
    )

    it.effect("an empty middle line is corrupt", () =>
      Effect.gen(function* () {
        const { fs, file } = yield* tempJournal
        yield* fs.writeFileString(file, line(record(1, 1)) + "\n" + line(record(1, 2)))
        const error = failureOf(yield* Effect.exit(loadAll({ path: file })))
        assert.strictEqual(error.reason, "corrupt")
        assert.strictEqual(error.line, 2)
      })
    )

    it.effect("a record that would not load back is refused as unencodable and the file stays clean", () =>
      Effect.gen(function* () {
        const { file } = yield* tempJournal
        const noValue: JournalRecord = { ...record(2, 1), result: { _tag: "Success", cost: {} } }
        const bigintValue: JournalRecord = { ...record(2, 2), result: { _tag: "Success", value: 1n, cost: {} } }
        const cyclic: Record<string, unknown> = {}
        cyclic.self = cyclic
        const cycleValue: JournalRecord = { ...record(2, 4), result: { _tag: "Success", value: cyclic, cost: {} } }
        yield* session({ path: file }, (store) =>
          Effect.gen(function* () {
            yield* store.append(noValue)
            for (const bad of [bigintValue, cycleValue]) {
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
        yield* fs.writeFileString(file, line(record(1, 0)) + '{"pid":1,')
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
