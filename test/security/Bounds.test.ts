/**
 * Issue 8, part 7: a limit on everything a process can make the kernel keep. Log fields and message bodies are
 * bounded, kernel messages cannot flood a mailbox past its bound, caps on a message that is never delivered are
 * revoked, a snapshot of unserialisable state is a typed error, and context memory is measured, not taken on trust.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import {
  assertArgumentError,
  assertCapabilityError,
  deaf,
  outcome,
  range,
  rowOf,
  run,
  runOn,
  show,
  tagOf
} from "./harness.ts"

interface LogEvent {
  readonly _tag: "Log"
  readonly pid: number
  readonly message: string
  readonly fields?: Readonly<Record<string, unknown>>
}

const logsOf = (events: ReadonlyArray<{ readonly _tag: string }>): ReadonlyArray<LogEvent> =>
  events.filter((event): event is LogEvent => event._tag === "Log")

describe("Sys.log fields are bounded by KernelConfig.logFieldsBytesMax", () => {
  it.effect("small fields are kept in the trace as given", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        yield* Sys.log("debug", "small", { user: "ada", attempt: 2, tags: ["a", "b"] })
        const [event] = logsOf(yield* kernel.trace()).filter((e) => e.message === "small")
        assert.deepStrictEqual(event!.fields, { user: "ada", attempt: 2, tags: ["a", "b"] })
      })
    )
  )

  it.effect("a 10 MB field does not end up in the trace: the fields become a small marker", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        yield* Sys.log("debug", "big", { blob: "x".repeat(10_000_000) })
        const events = logsOf(yield* kernel.trace()).filter((e) => e.message === "big")
        assert.strictEqual(events.length, 1, "the Log event is still there")
        const size = JSON.stringify(events[0]!.fields ?? null).length
        assert.isBelow(size, 1024, `the Log event's fields are ${size} characters`)
      })
    )
  )

  it.effect("the bound is configurable: fields over 256 bytes are replaced, under it kept", () =>
    runOn((_, kernel) =>
      Effect.gen(function* () {
        yield* Sys.log("debug", "over", { text: "y".repeat(1000) })
        yield* Sys.log("debug", "under", { text: "z".repeat(50) })
        const logs = logsOf(yield* kernel.trace())
        const over = logs.find((e) => e.message === "over")!
        assert.notInclude(JSON.stringify(over.fields ?? null), "y".repeat(300))
        assert.isBelow(JSON.stringify(over.fields ?? null).length, 256)
        assert.deepStrictEqual(logs.find((e) => e.message === "under")!.fields, { text: "z".repeat(50) })
      })
    ).pipe(Effect.provide(TestKernel.layer({ limits: { logFieldsBytesMax: 256 } })))
  )
})

describe("Sys.send bodies are bounded by KernelConfig.messageBytesMax", () => {
  const small = TestKernel.layer({ limits: { messageBytesMax: 1024 } })

  it.effect("a body under the bound is delivered", () =>
    runOn(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const body = { text: "a".repeat(100), list: [1, 2, 3] }
        yield* Sys.send(me, body)
        assert.deepStrictEqual((yield* Sys.recv()).body, body)
      })
    ).pipe(Effect.provide(small))
  )

  it.effect("a body over the bound is an ArgumentError of send and is not delivered", () =>
    runOn(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        assertArgumentError(yield* outcome(Sys.send(me, "b".repeat(2000))), "send")
        assertArgumentError(yield* outcome(Sys.send(me, { nested: [{ deep: "c".repeat(2000) }] })), "send")
        assertArgumentError(yield* outcome(Sys.send(me, range(1000))), "send")
        yield* Sys.send(me, "after")
        assert.strictEqual((yield* Sys.recv()).body, "after", "an oversized body was delivered")
      })
    ).pipe(Effect.provide(small))
  )
})

describe("kernel messages cannot flood a mailbox", () => {
  it.effect("5000 Sys.term at a process with mailbox 16 that never receives: its mailbox stays at most 32", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const { cap, pid } = yield* Sys.spawn(deaf, { quota: { mailbox: 16 } })
        for (let i = 0; i < 5000; i++) yield* Sys.term(cap)
        const row = yield* rowOf(kernel, pid)
        assert.isDefined(row, "the target is still running")
        assert.isAtMost(row!.mailbox, 32, `its mailbox holds ${row!.mailbox} messages`)
      })
    )
  )
})

describe("caps on a message that is never delivered are revoked", () => {
  it.effect("receiver dead: the caps gauge goes back down and the sender cannot use them", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(Process.make("brief", () => Effect.void))
        yield* Sys.waitpid(cap)
        const me = yield* Sys.selfCap()
        const before = (yield* kernel.metrics()).caps
        const given = yield* Sys.derive(me, ["send"])
        yield* Sys.send(cap, "anyone?", { caps: [given] })
        assert.strictEqual((yield* kernel.metrics()).caps, before)
        assertCapabilityError(yield* outcome(Sys.send(given, "back?")), "revoked", "not-held", "moved")
      })
    )
  )

  it.effect("message deadline passed: the caps gauge goes back down and the sender cannot use them", () => {
    const got: Array<unknown> = []
    const late = Process.make("late", () =>
      Effect.gen(function* () {
        const [back] = yield* Sys.caps()
        yield* Effect.sleep("2 seconds")
        const message = yield* Sys.recv()
        got.push(message.body, message.caps.length)
        yield* Sys.send(back!, "read")
        yield* Effect.never
      })
    )
    return run((_, kernel) =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const { cap } = yield* Sys.spawn(late, { caps: [yield* Sys.derive(me, ["send"])] })
        const before = (yield* kernel.metrics()).caps
        const given = yield* Sys.derive(me, ["send"])
        yield* Sys.send(cap, "stale", { caps: [given], deadline: "1 second" })
        yield* Sys.send(cap, "fresh")
        yield* TestClock.adjust("2 seconds")
        assert.strictEqual((yield* Sys.recv()).body, "read")
        assert.deepStrictEqual(got, ["fresh", 0])
        assert.strictEqual((yield* kernel.metrics()).caps, before, "the dropped message's cap is still live")
        assertCapabilityError(yield* outcome(Sys.send(given, "back?")), "revoked", "not-held", "moved")
      })
    )
  })

  it.effect("receiver ended with the message queued: the caps gauge goes back down", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const { cap } = yield* Sys.spawn(deaf)
        const before = (yield* kernel.metrics()).caps
        const given = yield* Sys.derive(me, ["send"])
        yield* Sys.send(cap, "queued", { caps: [given] })
        yield* Sys.kill(cap)
        assert.strictEqual((yield* kernel.metrics()).caps, before)
        assertCapabilityError(yield* outcome(Sys.send(given, "back?")), "revoked", "not-held", "moved")
      })
    )
  )
})

describe("kernel.snapshot of unserialisable state", () => {
  it.effect("a snapshot with plain messages waiting succeeds and keeps them", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const { cap, pid } = yield* Sys.spawn(deaf)
        yield* Sys.send(cap, { n: 1 })
        const snapshot = yield* kernel.snapshot(pid)
        assert.deepStrictEqual(
          snapshot.mailbox.map((m) => m.body),
          [{ n: 1 }]
        )
      })
    )
  )

  it.effect("a bigint in a waiting message fails with SnapshotError naming the message, not a defect", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const { cap, pid } = yield* Sys.spawn(deaf)
        yield* Sys.send(cap, { n: 1 })
        const sent = yield* outcome(Sys.send(cap, { amount: 10n }))
        assert.strictEqual(sent, "succeeded", `a bigint body is data: ${show(sent)}`)
        // a defect here would fail the whole body, not reach the assertion
        const result = yield* outcome(kernel.snapshot(pid))
        assert.strictEqual(tagOf(result), "SnapshotError", `the snapshot gave ${show(result)}`)
        assert.match((result as { readonly message: string }).message, /message/i)
      })
    )
  )
})

describe("context memory is measured, not taken on trust", () => {
  it.effect("remember within the mem quota works, pinned or not", () => {
    const ids: Array<number> = []
    const rememberer = Process.make("rememberer", () =>
      Effect.gen(function* () {
        ids.push(yield* Sys.remember("a short note", { pin: true }))
        ids.push(yield* Sys.remember("another", { tokens: 3 }))
      })
    )
    return run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(rememberer, { quota: { mem: 100 } })
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
        assert.strictEqual(ids.length, 2)
      })
    )
  })

  it.effect("remember of 2 MB claimed as 1 token, pinned, under mem 100 ends the process with Quota mem", () => {
    const rememberer = Process.make("rememberer", () =>
      Effect.asVoid(Sys.remember("x".repeat(2_000_000), { tokens: 1, pin: true }))
    )
    return run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(rememberer, { quota: { mem: 100 } })
        const reason = yield* Sys.waitpid(cap)
        assert.deepStrictEqual(reason, Process.quota("mem"), `ended ${show(reason)}`)
      })
    )
  })
})
