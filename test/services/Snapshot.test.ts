import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { TestClock } from "effect/testing"
import { Kernel, Process, Snapshot, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

/** Remembers a few things (some paged out), spends some budget, then waits: its state is what gets snapshotted. */
const worker = (ready: Deferred.Deferred<void>) =>
  Process.make("worker", () =>
    Effect.gen(function* () {
      yield* Sys.sched({ priority: 3, deadline: "1 hour" })
      yield* Sys.remember("the task: count the apples", { tokens: 10, pin: true })
      for (let i = 0; i < 9; i++) yield* Sys.remember(`apple note ${i}`, { tokens: 10 })
      yield* Sys.charge({ tokens: 40, toolCalls: 2 })
      // two messages wait in its own mailbox (it never receives them here), one with a deadline
      const me = yield* Sys.selfCap()
      yield* Sys.send(me, { hello: "world" }, { corr: "c1" })
      yield* Sys.send(me, "later", { deadline: "1 hour" })
      yield* Deferred.succeed(ready, undefined)
      yield* Effect.never
    })
  )

/** Reports its restored state to `out`, then reads its waiting messages. */
const resumed = (out: Deferred.Deferred<unknown>) =>
  Process.make("resumed", () =>
    Effect.gen(function* () {
      const set = yield* Sys.workingSet()
      const recalled = yield* Sys.recall("apple note 0", 1)
      const budget = yield* Sys.budget()
      const first = yield* Sys.recv()
      const second = yield* Sys.recv()
      yield* Deferred.succeed(out, {
        working: set.length,
        pinned: set.filter((s) => s.pinned).map((s) => s.body),
        recalled: recalled.map((s) => s.body),
        remaining: budget.remaining,
        mem: budget.limits.mem,
        messages: [first, second].map((m) => [m.from, m.body, m.caps.length, m.corr])
      })
      yield* Effect.never
    })
  )

describe("snapshot and restore", () => {
  it.effect(
    "a snapshot is JSON-safe and resumes on another kernel with its memory, messages, budget and deadline",
    () =>
      Effect.gen(function* () {
        const ready = yield* Deferred.make<void>()
        const json = yield* Effect.gen(function* () {
          const kernel = yield* Kernel.Kernel
          const pid = yield* kernel.boot(worker(ready), { quota: { tokens: 100, toolCalls: 5, mem: 100 } })
          yield* Deferred.await(ready)
          yield* TestClock.adjust("10 minutes")
          const snapshot = yield* kernel.snapshot(pid)
          assert.strictEqual(snapshot.abi, Snapshot.abi)
          assert.strictEqual(snapshot.priority, 3)
          assert.strictEqual(snapshot.deadlineInMs, 50 * 60_000)
          assert.deepStrictEqual(snapshot.budget, {
            tokens: 60,
            toolCalls: 3,
            usd: null,
            mem: 100,
            mailbox: 1024,
            wallMs: null
          })
          assert.isAbove(snapshot.memory.swap.length, 0, "paging left some segments in swap")
          assert.deepStrictEqual(snapshot.mailbox, [
            { from: pid, body: { hello: "world" }, corr: "c1" },
            { from: pid, body: "later", deadlineInMs: 50 * 60_000 }
          ])
          return JSON.stringify(snapshot)
        }).pipe(Effect.provide(TestKernel.layer()))

        const out = yield* Deferred.make<unknown>()
        const report = yield* Effect.gen(function* () {
          const kernel = yield* Kernel.Kernel
          const pid = yield* kernel.restore(JSON.parse(json), resumed(out))
          const value = yield* Deferred.await(out)
          const row = (yield* kernel.ps()).find((p) => p.pid === pid)
          return { value, priority: row?.priority }
        }).pipe(Effect.provide(TestKernel.layer()))
        assert.strictEqual(report.priority, 3)
        assert.deepInclude(report.value as object, {
          pinned: ["the task: count the apples"],
          recalled: ["apple note 0"],
          remaining: { tokens: 60, toolCalls: 3, usd: Infinity },
          mem: 100,
          messages: [
            [1, { hello: "world" }, 0, "c1"],
            [1, "later", 0, undefined]
          ]
        })
      })
  )

  it.effect("restore refuses another ABI and a value that is not a snapshot; snapshot refuses a dead process", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const image = Process.make("x", () => Effect.void)
      const mismatch = yield* Effect.flip(
        kernel.restore(
          {
            abi: 99,
            name: "x",
            memory: { working: [], swap: [] },
            mailbox: [],
            budget: { tokens: null, toolCalls: null, usd: null, mem: null, mailbox: 8, wallMs: null },
            priority: 0,
            deadlineInMs: null
          },
          image
        )
      )
      assert.deepInclude(mismatch, { _tag: "SnapshotError", reason: "abi-mismatch" })
      const invalid = yield* Effect.flip(kernel.restore({ abi: 1 }, image))
      assert.deepInclude(invalid, { _tag: "SnapshotError", reason: "invalid" })
      const pid = yield* kernel.boot(image)
      yield* kernel.waitExit(pid)
      const dead = yield* Effect.flip(kernel.snapshot(pid))
      assert.deepInclude(dead, { _tag: "SnapshotError", reason: "unknown-process" })
    }).pipe(Effect.provide(TestKernel.layer()))
  )
})
