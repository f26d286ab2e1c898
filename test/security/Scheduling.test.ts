/**
 * Issue 8, part 6: scheduling cannot be abused. `Sys.sched` only ever moves a deadline earlier, and a priority lies in
 * `[KernelConfig.priorityMin, priorityMax]` and never above the ceiling the parent gave at spawn (`priorityMax`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { assertArgumentError, idle, isAlive, outcome, rowOf, run, runOn, show } from "./harness.ts"

describe("Sys.sched({ deadline }) only moves a deadline earlier", () => {
  it.effect("earlier is accepted: the process ends with Deadline at the earlier time", () => {
    const results: Array<unknown> = []
    const hurried = Process.make("hurried", () =>
      Effect.gen(function* () {
        const [back] = yield* Sys.caps()
        results.push(yield* outcome(Sys.sched({ deadline: "5 seconds" })))
        yield* Sys.send(back!, "ready")
        yield* Effect.never
      })
    )
    return run((_, kernel) =>
      Effect.gen(function* () {
        const back = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
        const { pid } = yield* Sys.spawn(hurried, { caps: [back], deadline: "10 seconds" })
        assert.strictEqual((yield* Sys.recv()).body, "ready")
        assert.deepStrictEqual(results, ["succeeded"])
        yield* TestClock.adjust("4999 millis")
        assert.isTrue(yield* isAlive(kernel, pid), "ended before its deadline")
        yield* TestClock.adjust("1 millis")
        assert.isFalse(yield* isAlive(kernel, pid), "still running past its deadline")
        assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.deadline)
      })
    )
  })

  it.effect(
    "later is an ArgumentError, also by re-arming the same length after time passed; the old deadline holds",
    () => {
      const results: Array<unknown> = []
      const stalling = Process.make("stalling", () =>
        Effect.gen(function* () {
          const [back] = yield* Sys.caps()
          results.push(yield* outcome(Sys.sched({ deadline: "20 seconds" })))
          yield* Sys.send(back!, "tried")
          yield* Effect.sleep("6 seconds")
          // 6 s in, 10 s from now would end at 16 s: later than 10 s
          results.push(yield* outcome(Sys.sched({ deadline: "10 seconds" })))
          yield* Sys.send(back!, "tried again")
          yield* Effect.never
        })
      )
      return run((_, kernel) =>
        Effect.gen(function* () {
          const back = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          const { pid } = yield* Sys.spawn(stalling, { caps: [back], deadline: "10 seconds" })
          assert.strictEqual((yield* Sys.recv()).body, "tried")
          yield* TestClock.adjust("6 seconds")
          assert.strictEqual((yield* Sys.recv()).body, "tried again")
          assert.strictEqual(results.length, 2)
          assertArgumentError(results[0], "sched")
          assertArgumentError(results[1], "sched")
          yield* TestClock.adjust("4 seconds")
          assert.isFalse(yield* isAlive(kernel, pid), "its deadline was extended")
          assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.deadline)
        })
      )
    }
  )

  it.effect("a process without a deadline may set one", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const { pid } = yield* Sys.spawn(
          Process.make("self-limiting", () => Effect.andThen(Sys.sched({ deadline: "1 second" }), Effect.never))
        )
        yield* Sys.yield()
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.deadline)
      })
    )
  )
})

describe("priority lies in [priorityMin, priorityMax] and under the parent's ceiling", () => {
  it.effect("priorities in the default range 0..10 are accepted and show in ps", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        yield* Sys.sched({ priority: 10 })
        yield* Sys.sched({ priority: 0 })
        const { pid } = yield* Sys.spawn(idle, { priority: 7 })
        assert.strictEqual((yield* rowOf(kernel, pid))!.priority, 7)
        const capped = yield* Sys.spawn(idle, { priority: 2, priorityMax: 3 })
        assert.strictEqual((yield* rowOf(kernel, capped.pid))!.priority, 2)
      })
    )
  )

  it.effect("outside the range is an ArgumentError of sched and of spawn", () =>
    run(() =>
      Effect.gen(function* () {
        for (const priority of [11, -1, 1.5, Number.NaN, 1e9]) {
          assertArgumentError(yield* outcome(Sys.sched({ priority })), "sched")
          assertArgumentError(yield* outcome(Sys.spawn(idle, { priority })), "spawn")
        }
        assertArgumentError(yield* outcome(Sys.spawn(idle, { priorityMax: 11 })), "spawn")
      })
    )
  )

  it.effect("limits can widen the range", () =>
    runOn(() =>
      Effect.gen(function* () {
        yield* Sys.sched({ priority: 15 })
        assertArgumentError(yield* outcome(Sys.sched({ priority: 21 })), "sched")
      })
    ).pipe(Effect.provide(TestKernel.layer({ limits: { priorityMax: 20 } })))
  )

  it.effect("a child spawned with priorityMax 3 cannot sched above 3, nor give its own child more", () => {
    const results: Record<string, unknown> = {}
    const grandchild = Process.make("grandchild", () =>
      Effect.gen(function* () {
        results.grandchild4 = yield* outcome(Sys.sched({ priority: 4 }))
        results.grandchild3 = yield* outcome(Sys.sched({ priority: 3 }))
      })
    )
    const child = Process.make("child", () =>
      Effect.gen(function* () {
        results.sched4 = yield* outcome(Sys.sched({ priority: 4 }))
        results.sched3 = yield* outcome(Sys.sched({ priority: 3 }))
        results.spawnCeiling5 = yield* outcome(Sys.spawn(idle, { priorityMax: 5 }))
        results.spawnPriority4 = yield* outcome(Sys.spawn(idle, { priority: 4 }))
        const { cap } = yield* Sys.spawn(grandchild)
        yield* Sys.waitpid(cap)
      })
    )
    return run((grant) =>
      Effect.gen(function* () {
        const spawnCap = yield* Sys.derive(grant.spawn, ["spawn"])
        const { cap } = yield* Sys.spawn(child, { caps: [spawnCap], priority: 2, priorityMax: 3 })
        const reason = yield* Sys.waitpid(cap)
        assert.deepStrictEqual(reason, Process.normal, `the child ended ${show(reason)}: ${show(results)}`)
        assertArgumentError(results.sched4, "sched")
        assert.strictEqual(results.sched3, "succeeded")
        assertArgumentError(results.spawnCeiling5, "spawn")
        assertArgumentError(results.spawnPriority4, "spawn")
        // the grandchild's ceiling defaults to its parent's
        assertArgumentError(results.grandchild4, "sched")
        assert.strictEqual(results.grandchild3, "succeeded")
      })
    )
  })

  it.effect("a priority above the ceiling given at the same spawn is an ArgumentError", () =>
    run(() =>
      Effect.gen(function* () {
        assertArgumentError(yield* outcome(Sys.spawn(idle, { priority: 5, priorityMax: 3 })), "spawn")
      })
    )
  )
})
