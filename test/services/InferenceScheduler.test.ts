import { assert, describe, it } from "@effect/vitest"
import { Clock, type Duration, Effect } from "effect"
import { TestClock } from "effect/testing"
import { Device, InferenceScheduler, Kernel, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

interface Started {
  readonly label: string
  readonly at: number
}

/** A scheduled driver whose calls take `ms` of kernel time and cost `tokens`; it records when each call started. */
const llmLike = (started: Array<Started>, policy: InferenceScheduler.Policy) =>
  Device.make({
    name: "llm",
    scheduled: policy,
    open: () =>
      Effect.succeed({
        read: (request: unknown) =>
          Effect.gen(function* () {
            const r = request as { readonly label: string; readonly ms: number; readonly tokens?: number }
            started.push({ label: r.label, at: yield* Clock.currentTimeMillis })
            yield* Effect.sleep(r.ms)
            return { value: r.label, cost: { tokens: r.tokens ?? 0 } }
          })
      })
  })

interface Caller {
  readonly label: string
  readonly priority?: number
  readonly deadline?: Duration.Input
  /** Kernel time at which it makes its call. */
  readonly at?: number
  readonly ms?: number
  readonly tokens?: number
}

/** Boots one root process per caller; each sleeps until its `at`, then makes one call. */
const scenario = (policy: InferenceScheduler.Policy, callers: ReadonlyArray<Caller>, runFor: Duration.Input) =>
  Effect.gen(function* () {
    const started: Array<Started> = []
    const body = Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      for (const c of callers) {
        yield* kernel.boot(
          Process.make<Kernel.BootGrant>(c.label, (grant) =>
            Effect.gen(function* () {
              if (c.priority !== undefined || c.deadline !== undefined) {
                yield* Sys.sched({ priority: c.priority, deadline: c.deadline })
              }
              const handle = yield* Sys.open(grant.devices.llm!)
              if (c.at !== undefined) yield* Effect.sleep(c.at)
              yield* Sys.read(handle, { label: c.label, ms: c.ms ?? 10_000, tokens: c.tokens })
            })
          ),
          { grant: ["llm"] }
        )
      }
      yield* TestClock.adjust(runFor)
    })
    yield* body.pipe(Effect.provide(TestKernel.layer({ drivers: [llmLike(started, policy)] })))
    return started
  })

describe("InferenceScheduler", () => {
  it.effect("one slot: the highest priority waiting goes next", () =>
    Effect.gen(function* () {
      const started = yield* scenario(
        { concurrency: 1, agingMs: 1_000_000 },
        [
          { label: "first" },
          { label: "low", priority: 1 },
          { label: "high", priority: 5 },
          { label: "mid", priority: 3 }
        ],
        "1 minute"
      )
      assert.deepStrictEqual(started, [
        { label: "first", at: 0 },
        { label: "high", at: 10_000 },
        { label: "mid", at: 20_000 },
        { label: "low", at: 30_000 }
      ])
    })
  )

  it.effect("equal priority: earliest deadline first, then arrival", () =>
    Effect.gen(function* () {
      const started = yield* scenario(
        { concurrency: 1 },
        [
          { label: "first" },
          { label: "late", deadline: "5 minutes" },
          { label: "none" },
          { label: "soon", deadline: "2 minutes" },
          { label: "none-2" }
        ],
        "2 minutes"
      )
      assert.deepStrictEqual(
        started.map((s) => s.label),
        ["first", "soon", "late", "none", "none-2"]
      )
    })
  )

  it.effect("aging: a long wait lifts a low priority above newer high-priority calls", () =>
    Effect.gen(function* () {
      const callers: ReadonlyArray<Caller> = [
        { label: "holder", ms: 10_000 },
        { label: "old-low", priority: 0 },
        { label: "new-high", priority: 3, at: 5_000 }
      ]
      const aged = yield* scenario({ concurrency: 1, agingMs: 1_000 }, callers, "1 minute")
      assert.deepStrictEqual(
        aged.map((s) => s.label),
        ["holder", "old-low", "new-high"]
      )
      // without aging the newcomer would win
      const unaged = yield* scenario({ concurrency: 1, agingMs: 10_000_000 }, callers, "1 minute")
      assert.deepStrictEqual(
        unaged.map((s) => s.label),
        ["holder", "new-high", "old-low"]
      )
    })
  )

  it.effect("concurrency bound: never more calls running than the slots", () =>
    Effect.gen(function* () {
      const callers = Array.from({ length: 7 }, (_, i) => ({ label: `c${i}`, ms: 1_000 }))
      const started = yield* scenario({ concurrency: 3 }, callers, "10 seconds")
      assert.deepStrictEqual(
        started.map((s) => s.at),
        [0, 0, 0, 1_000, 1_000, 1_000, 2_000]
      )
    })
  )

  it.effect("requests per minute: the call past the limit starts when the window frees", () =>
    Effect.gen(function* () {
      const callers = Array.from({ length: 3 }, (_, i) => ({ label: `r${i}`, ms: 100 }))
      const started = yield* scenario({ concurrency: 10, requestsPerMinute: 2 }, callers, "2 minutes")
      assert.deepStrictEqual(
        started.map((s) => s.at),
        [0, 0, 60_000]
      )
    })
  )

  it.effect("tokens per minute: counted from finished calls; the next waits until enough tokens leave the window", () =>
    Effect.gen(function* () {
      const callers = Array.from({ length: 3 }, (_, i) => ({ label: `t${i}`, ms: 1_000, tokens: 60 }))
      const started = yield* scenario({ concurrency: 1, tokensPerMinute: 100 }, callers, "3 minutes")
      // t0 runs 0–1 s (60 tokens), t1 1–2 s (120 in the window): t2 waits until t0's tokens leave it at 61 s
      assert.deepStrictEqual(
        started.map((s) => s.at),
        [0, 1_000, 61_000]
      )
    })
  )

  it.effect("a caller ended while waiting leaves the queue", () =>
    Effect.gen(function* () {
      const started: Array<Started> = []
      yield* Effect.gen(function* () {
        const kernel = yield* Kernel.Kernel
        const call = (label: string, quota?: object) =>
          kernel.boot(
            Process.make<Kernel.BootGrant>(label, (grant) =>
              Effect.gen(function* () {
                const handle = yield* Sys.open(grant.devices.llm!)
                yield* Sys.read(handle, { label, ms: 10_000 })
              })
            ),
            { grant: ["llm"], ...quota }
          )
        yield* call("holder")
        yield* call("impatient", { quota: { wall: "5 seconds" } })
        yield* call("patient")
        yield* TestClock.adjust("30 seconds")
      }).pipe(Effect.provide(TestKernel.layer({ drivers: [llmLike(started, { concurrency: 1 })] })))
      assert.deepStrictEqual(
        started.map((s) => s.label),
        ["holder", "patient"]
      )
    })
  )
})
