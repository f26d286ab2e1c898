/**
 * Issue 8, part 7: a limit on everything a process can make the kernel keep. Log fields and message bodies are
 * bounded, kernel messages cannot flood a mailbox past its bound, caps on a message that is never delivered are
 * revoked, a snapshot of unserialisable state is a typed error, and context memory is measured, not taken on trust.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { Kernel, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import {
  assertArgumentError,
  assertCapabilityError,
  deaf,
  endOf,
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

  /** Runs `body` as a process with `quota`, and gives how it ended. */
  it.effect("a body grown after remember is not what the kernel keeps: the segment is a copy taken at the call", () => {
    const seen: Array<unknown> = []
    return Effect.gen(function* () {
      const reason = yield* endOf(
        () =>
          Effect.gen(function* () {
            const body = { notes: ["short"] }
            yield* Sys.remember(body, { pin: true })
            // grown to 20 M characters after it was counted: under mem 100 this would be an undercount
            body.notes.push("x".repeat(20_000_000))
            const [segment] = yield* Sys.workingSet()
            seen.push(segment!.body)
          }),
        { mem: 100 }
      )
      assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
      assert.deepStrictEqual(seen, [{ notes: ["short"] }])
    })
  })

  it.effect(
    "a segment taken from workingSet or recall cannot be grown: plain data is frozen, the rest is a copy",
    () => {
      const seen: Array<unknown> = []
      const refused: Array<boolean> = []
      /** Tries `grow`; records whether it threw (a frozen body) rather than took effect. */
      const tryTo = (grow: () => void) => {
        try {
          grow()
          refused.push(false)
        } catch {
          refused.push(true)
        }
      }
      return Effect.gen(function* () {
        const reason = yield* endOf(
          () =>
            Effect.gen(function* () {
              yield* Sys.remember({ notes: ["alpha"] }, { pin: true })
              yield* Sys.remember(new Map([["k", "alpha"]]), { pin: true })
              const [plain, map] = yield* Sys.workingSet()
              tryTo(() => (plain!.body as { notes: Array<string> }).notes.push("x".repeat(20_000_000)))
              tryTo(() => (map!.body as Map<string, string>).set("big", "x".repeat(20_000_000)))
              for (const s of yield* Sys.recall("alpha", 3)) {
                tryTo(() => (s.body as { notes: Array<string> }).notes.push("y".repeat(20_000_000)))
              }
              for (const s of yield* Sys.workingSet()) seen.push(s.body)
            }),
          { mem: 100 }
        )
        assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
        assert.deepStrictEqual(
          refused,
          [true, false],
          "the plain body is frozen; the Map was a copy, so it took the set"
        )
        assert.deepStrictEqual(seen, [{ notes: ["alpha"] }, new Map([["k", "alpha"]])])
      })
    }
  )

  it.effect("a segment paged back in by recall is frozen too: growing it throws and changes nothing kept", () => {
    const out: Array<unknown> = []
    return Effect.gen(function* () {
      const reason = yield* endOf(
        () =>
          Effect.gen(function* () {
            yield* Sys.remember({ notes: ["alpha"] })
            // 80 tokens more passes the high watermark (80 of 100): the coldest segments page out
            yield* Sys.remember("z".repeat(320))
            const [found] = yield* Sys.recall("alpha", 1)
            out.push(found?.body)
            try {
              ;(found!.body as { notes: Array<string> }).notes.push("y".repeat(20_000_000))
              out.push("grown")
            } catch {
              out.push("refused")
            }
            const kept = (yield* Sys.workingSet()).find((s) => s.id === found!.id)
            out.push(kept?.body)
          }),
        { mem: 100 }
      )
      assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
      assert.deepStrictEqual(out, [{ notes: ["alpha"] }, "refused", { notes: ["alpha"] }])
    })
  })

  it.effect(
    "a body whose text says little is counted for what it holds: Map, bigint beside a string, short content",
    () =>
      Effect.gen(function* () {
        const big = "x".repeat(2_000_000)
        const bodies: ReadonlyArray<unknown> = [
          new Map([["k", big]]),
          { n: 1n, big },
          { content: "short", big },
          new Set([big])
        ]
        for (const body of bodies) {
          const reason = yield* endOf(() => Sys.remember(body, { tokens: 1, pin: true }), { mem: 100 })
          assert.deepStrictEqual(reason, Process.quota("mem"), `${show(body).slice(0, 40)}: ended ${show(reason)}`)
        }
      })
  )

  it.effect("the same bodies small are remembered, and read back as what was given", () => {
    const seen: Array<unknown> = []
    return Effect.gen(function* () {
      const reason = yield* endOf(
        () =>
          Effect.gen(function* () {
            yield* Sys.remember(new Map([["k", "v"]]), { pin: true })
            yield* Sys.remember({ n: 1n, s: "ok" }, { pin: true })
            yield* Sys.remember({ content: "short", extra: [1, 2] }, { pin: true })
            for (const s of yield* Sys.workingSet()) seen.push(s.body)
          }),
        { mem: 100 }
      )
      assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
      assert.deepStrictEqual(seen, [new Map([["k", "v"]]), { n: 1n, s: "ok" }, { content: "short", extra: [1, 2] }])
    })
  })

  it.effect(
    "a body that cannot be copied (a throwing getter, a function, a cycle) is an ArgumentError of remember",
    () =>
      run(() =>
        Effect.gen(function* () {
          const cycle: Record<string, unknown> = {}
          cycle.self = cycle
          const bodies: ReadonlyArray<unknown> = [
            {
              get boom(): string {
                throw new Error("boom")
              }
            },
            { f: () => 1 },
            cycle
          ]
          for (const body of bodies) assertArgumentError(yield* outcome(Sys.remember(body)), "remember")
          assert.deepStrictEqual(yield* Sys.workingSet(), [], "nothing was kept")
        })
      )
  )

  it.effect("a two-faced getter is read once: what is kept and counted is the value it gave then", () =>
    run(() =>
      Effect.gen(function* () {
        let reads = 0
        yield* Sys.remember({
          get two() {
            reads++
            return reads > 1 ? "x".repeat(20_000_000) : "safe"
          }
        })
        const [segment] = yield* Sys.workingSet()
        assert.deepStrictEqual(segment!.body, { two: "safe" })
        assert.strictEqual(reads, 1)
      })
    )
  )

  describe("swap is bounded by KernelConfig.swapTokensMax", () => {
    const swapper = (segments: number) =>
      Process.make("swapper", () =>
        Effect.gen(function* () {
          // 25 tokens each (100 characters), unpinned: under mem 100 they page out to swap as more come
          for (let i = 0; i < segments; i++) yield* Sys.remember(`note ${i} `.padEnd(100, "z"))
        })
      )
    const endOfSwapper = (segments: number) =>
      Effect.gen(function* () {
        const kernel = yield* Kernel.Kernel
        const pid = yield* kernel.boot(swapper(segments), { quota: { mem: 100 } })
        return yield* kernel.waitExit(pid)
      }).pipe(Effect.provide(TestKernel.layer({ limits: { swapTokensMax: 1000 } })))

    it.effect("under the bound, paging goes on and the process ends normally", () =>
      Effect.map(endOfSwapper(30), (reason) => assert.deepStrictEqual(reason, Process.normal, show(reason)))
    )

    it.effect(
      "past it (200 segments of 25 tokens paged out under a bound of 1000) the process ends with Quota mem",
      () =>
        Effect.map(endOfSwapper(200), (reason) => assert.deepStrictEqual(reason, Process.quota("mem"), show(reason)))
    )
  })

  it.effect("a body larger than the whole mem quota ends the process, pinned or not; the copy stops at the bound", () =>
    Effect.gen(function* () {
      let reads = 0
      const huge = new Proxy([] as Array<string>, {
        get: (target, key) => {
          if (key === "length") return 1_000_000
          if (typeof key === "string" && /^[0-9]+$/.test(key)) {
            reads++
            return "x"
          }
          return Reflect.get(target, key)
        }
      })
      for (const body of ["x".repeat(1000), huge]) {
        const reason = yield* run(() =>
          Effect.gen(function* () {
            const { cap } = yield* Sys.spawn(
              Process.make("big", () => Effect.asVoid(Sys.remember(body))),
              { quota: { mem: 100 } }
            )
            return yield* Sys.waitpid(cap)
          })
        )
        assert.deepStrictEqual(reason, Process.quota("mem"), show(reason))
      }
      assert.strictEqual(reads, 0, "an array whose length passes the bound is refused from its length")
    })
  )
})
