import { assert, describe, it } from "@effect/vitest"
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Fiber, Stream } from "effect"
import { AuditLog, Kernel, Process, Sys } from "effect-agent-os"

const tempDir = () => join(mkdtempSync(join(tmpdir(), "agentos-audit-")), "audit")

/** A process that logs `count` lines (as `name`), then exits. */
const logger = (name: string, count: number) =>
  Process.make(name, () =>
    Effect.forEach(
      Array.from({ length: count }, (_, i) => i),
      (i) => Sys.log("info", `${name} ${i}`, { i }),
      {
        discard: true
      }
    )
  )

/** Boots `logger(name, count)` and waits for it to end; answers its pid. */
const runLogger = (name: string, count: number) =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    const pid = yield* kernel.boot(logger(name, count))
    yield* kernel.waitExit(pid)
    return pid
  })

const kernelLayer = Kernel.layer({ limits: { eventRingMax: 100_000 } })

/** Runs `body` with a fresh kernel and an audit log over `options`, in a scope of its own. */
const withAudit = <A, E>(
  options: AuditLog.Options,
  body: (audit: AuditLog.AuditLog, kernel: Kernel.KernelShape) => Effect.Effect<A, E, Kernel.Kernel>
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const audit = yield* AuditLog.make(options)
      return yield* body(audit, kernel)
    })
  ).pipe(Effect.provide(kernelLayer))

const seqs = (events: ReadonlyArray<{ readonly seq: number }>) => events.map((e) => e.seq)

describe("AuditLog", () => {
  it.live("read answers exactly what kernel.trace() holds; files are 0600 in a 0700 directory", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      yield* withAudit({ dir }, (audit, kernel) =>
        Effect.gen(function* () {
          yield* runLogger("a", 50)
          yield* runLogger("b", 50)
          const trace = yield* kernel.trace()
          const read = yield* audit.read()
          assert.isAbove(trace.length, 100)
          assert.deepStrictEqual(read, trace)
          assert.strictEqual(audit.stats().dropped, 0)
        })
      )
      assert.strictEqual(statSync(dir).mode & 0o777, 0o700)
      assert.strictEqual(statSync(join(dir, "audit.jsonl")).mode & 0o777, 0o600)
    })
  )

  it.live("rotates before a file passes fileBytesMax, keeping `files` old ones; read spans them in order", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      yield* withAudit({ dir, fileBytesMax: 4096, files: 2 }, (audit, kernel) =>
        Effect.gen(function* () {
          yield* runLogger("a", 400)
          const trace = yield* kernel.trace()
          const read = yield* audit.read()
          assert.deepStrictEqual(readdirSync(dir).sort(), ["audit.1.jsonl", "audit.2.jsonl", "audit.jsonl"])
          for (const file of readdirSync(dir)) {
            const size = statSync(join(dir, file)).size
            assert.isAtMost(size, 4096, file)
            assert.isTrue(readFileSync(join(dir, file), "utf8").endsWith("\n"))
          }
          // the oldest files are gone: what is read is the newest part of the trace, whole and in order
          assert.isAbove(read.length, 10)
          assert.isBelow(read.length, trace.length)
          assert.deepStrictEqual(read, trace.slice(trace.length - read.length))
          // the files hold about three bounds' worth of lines
          const bytes = readdirSync(dir).reduce((n, file) => n + statSync(join(dir, file)).size, 0)
          assert.isAbove(bytes, 2 * 4096)
        })
      )
    })
  )

  it.live("pid and since filter read and follow", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      yield* withAudit({ dir }, (audit, kernel) =>
        Effect.gen(function* () {
          const a = yield* runLogger("a", 10)
          yield* runLogger("b", 10)
          const trace = yield* kernel.trace()
          const ofA = trace.filter((e) => e.pid === a)
          assert.isAbove(ofA.length, 10)
          assert.deepStrictEqual(yield* audit.read({ pid: a }), ofA)
          const middle = trace[Math.floor(trace.length / 2)]!.seq
          assert.deepStrictEqual(
            yield* audit.read({ since: middle }),
            trace.filter((e) => e.seq > middle)
          )
          assert.deepStrictEqual(yield* audit.read({ pid: a, since: ofA[3]!.seq }), ofA.slice(4))
          const followed = yield* Stream.runCollect(Stream.take(audit.follow({ pid: a, since: ofA[3]!.seq }), 3))
          assert.deepStrictEqual(followed, ofA.slice(4, 7))
        })
      )
    })
  )

  it.live("follow answers the persisted events then the live ones, with no gap and no repeat", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      yield* withAudit({ dir }, (audit, kernel) =>
        Effect.gen(function* () {
          yield* runLogger("past", 30)
          const pastCount = (yield* kernel.trace()).length
          // the kernel keeps emitting while the follower reads the files
          const busy = yield* Effect.forkChild(runLogger("during", 200))
          const fiber = yield* Effect.forkChild(Stream.runCollect(Stream.take(audit.follow(), pastCount + 300)))
          yield* Fiber.join(busy)
          yield* runLogger("after", 200)
          const followed = yield* Fiber.join(fiber)
          const trace = yield* kernel.trace()
          assert.deepStrictEqual(seqs(followed), seqs(trace.slice(0, pastCount + 300)))
          assert.deepStrictEqual(followed, trace.slice(0, pastCount + 300))
        })
      )
    })
  )

  it.live("a follower's stream ends with its consumer; closing the scope writes what is still queued", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const lastSeq = yield* withAudit({ dir }, (audit, kernel) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.forkChild(Stream.runDrain(audit.follow()))
          yield* runLogger("a", 20)
          yield* Fiber.interrupt(fiber)
          // emitted just before the scope closes, with nothing waiting for the writer
          yield* runLogger("b", 20)
          return (yield* kernel.trace()).at(-1)!.seq
        })
      )
      const lines = readFileSync(join(dir, "audit.jsonl"), "utf8").trim().split("\n")
      assert.strictEqual(JSON.parse(lines.at(-1)!).seq, lastSeq)
      assert.strictEqual(lines.length, lastSeq)
    })
  )

  it.live("a torn last line is skipped, and the next run appends after it", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const first = yield* withAudit({ dir }, (audit) =>
        Effect.gen(function* () {
          yield* runLogger("a", 5)
          return yield* audit.read()
        })
      )
      // killed mid-write: half a line, no newline
      appendFileSync(join(dir, "audit.jsonl"), '{"_tag":"Log","seq":999,"at":1,"pid":1,"level":"in')
      yield* withAudit({ dir }, (audit, kernel) =>
        Effect.gen(function* () {
          yield* runLogger("b", 5)
          const second = yield* kernel.trace()
          const read = yield* audit.read()
          // a directory holds both runs (seq starts again with each kernel)
          assert.deepStrictEqual(read, [...first, ...second])
          assert.deepStrictEqual(
            yield* audit.read({ since: first.length }),
            second.filter((e) => e.seq > first.length)
          )
        })
      )
    })
  )

  it.live("past its queue bound, lines are dropped, counted, and marked in the file; the kernel never waits", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      yield* withAudit({ dir, queueBytesMax: 2048 }, (audit, kernel) =>
        Effect.gen(function* () {
          yield* runLogger("a", 2000)
          const read = yield* audit.read()
          const trace = yield* kernel.trace()
          const { dropped, written } = audit.stats()
          assert.isAbove(dropped, 0)
          assert.strictEqual(dropped + written, trace.length)
          assert.strictEqual(read.length, written)
          // what was kept is in order and is what the kernel emitted
          const bySeq = new Map(trace.map((e) => [e.seq, e]))
          for (const e of read) assert.deepStrictEqual(e, bySeq.get(e.seq))
          const text = readFileSync(join(dir, "audit.jsonl"), "utf8")
          const markers = text
            .split("\n")
            .filter((l) => l.includes('"AuditDrop"'))
            .map((l) => JSON.parse(l))
          assert.isAbove(markers.length, 0)
          assert.strictEqual(
            markers.reduce((n, m) => n + m.dropped, 0),
            dropped
          )
        })
      )
    })
  )

  it.live("a follower that falls followEventsMax behind fails with overflow (the files have the rest)", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      yield* withAudit({ dir, followEventsMax: 10 }, (audit) =>
        Effect.gen(function* () {
          const slow = audit.follow().pipe(
            Stream.tap(() => Effect.sleep("20 millis")),
            Stream.runDrain,
            Effect.flip
          )
          const fiber = yield* Effect.forkChild(slow)
          yield* Effect.sleep("20 millis")
          yield* runLogger("a", 200)
          const error = yield* Fiber.join(fiber)
          assert.strictEqual(error._tag, "AuditLogError")
          assert.strictEqual(error.reason, "overflow")
        })
      )
    })
  )

  it.live("Log fields JSON cannot hold are made JSON-safe rather than lost", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      yield* withAudit({ dir }, (audit, kernel) =>
        Effect.gen(function* () {
          const pid = yield* kernel.boot(
            Process.make("charge", () => Sys.log("info", "fields", { n: 1, nested: { s: "x" }, big: 10n }))
          )
          yield* kernel.waitExit(pid)
          const read = yield* audit.read({ pid })
          const log = read.find((e) => e._tag === "Log")!
          assert.deepStrictEqual(log._tag === "Log" ? log.fields : undefined, { n: 1, nested: { s: "x" }, big: "10" })
          assert.isTrue(existsSync(audit.path))
        })
      )
    })
  )
})
