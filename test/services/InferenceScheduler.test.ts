import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, type Duration, Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { Device, Kernel, KernelConfig, Process, Sys } from "effect-agent-os"
// the scheduler is kernel-internal (drivers opt in with `scheduled`): its own unit tests use its source path
import * as InferenceScheduler from "../../src/services/InferenceScheduler.ts"
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
const scenario = (
  policy: InferenceScheduler.Policy,
  callers: ReadonlyArray<Caller>,
  runFor: Duration.Input,
  limits?: Partial<KernelConfig.KernelLimits>
) =>
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
    yield* body.pipe(Effect.provide(TestKernel.layer({ drivers: [llmLike(started, policy)], limits })))
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

  describe("the aging bound", () => {
    const agingMs = 1_000
    const t0 = 1_000

    /**
     * A one-slot driver; a priority-`max` call arrives every 100 ms from 0 for `floodMs` (each takes 500 ms: five
     * arrive for every one served), and one priority-`min` call at `t0`. Returns when the low call started and the
     * arrival times of the flood calls that started before it.
     */
    const flood = (range: { readonly min: number; readonly max: number }, deadline?: Duration.Input) =>
      Effect.gen(function* () {
        const floodMs = 12 * (range.max - range.min + 2) * agingMs
        const callers: Array<Caller> = [{ label: "low", priority: range.min, at: t0, ms: 500 }]
        for (let at = 0; at < floodMs; at += 100) {
          callers.push({
            label: `flood@${at}`,
            priority: range.max,
            at,
            ms: 500,
            ...(deadline === undefined ? {} : { deadline })
          })
        }
        const started = yield* scenario({ concurrency: 1, agingMs }, callers, floodMs + 60_000, {
          priorityMin: range.min,
          priorityMax: range.max
        })
        const low = started.find((s) => s.label === "low")
        assert.isDefined(low, "the low-priority call is admitted")
        const passers = started
          .filter((s) => s.label !== "low" && s.at < low!.at)
          .map((s) => Number(s.label.slice("flood@".length)))
        return { lowAt: low!.at, passers, floodMs }
      })

    it.effect(
      "a priority-0 call under a priority-10 flood: no flood call arriving at t0 + 10 × agingMs or later passes it",
      () =>
        Effect.gen(function* () {
          const { lowAt, passers, floodMs } = yield* flood({ min: 0, max: 10 })
          const bound = t0 + 10 * agingMs
          const latest = Math.max(...passers)
          assert.isBelow(latest, bound, "nothing that arrived after the bound passed the low call")
          // and the bound is where it bites: the flood passes the low call for (nearly) the whole of it
          assert.isAtLeast(latest, bound - agingMs)
          assert.isBelow(lowAt, floodMs, "admitted while the flood still arrives")
        })
    )

    it.effect("with earlier deadlines the flood also wins ties: the bound is t0 + 11 × agingMs", () =>
      Effect.gen(function* () {
        const { passers } = yield* flood({ min: 0, max: 10 }, "1 hour")
        const latest = Math.max(...passers)
        assert.isBelow(latest, t0 + 11 * agingMs)
        assert.isAtLeast(latest, t0 + 10 * agingMs, "ties won by deadline take the flood past the 10 × agingMs bound")
      })
    )

    it.effect("the bound follows the kernel's priority range (priorityMin 2, priorityMax 5: 3 × agingMs)", () =>
      Effect.gen(function* () {
        const { passers } = yield* flood({ min: 2, max: 5 })
        const latest = Math.max(...passers)
        assert.isBelow(latest, t0 + 3 * agingMs)
        assert.isAtLeast(latest, t0 + 2 * agingMs)
      })
    )
  })

  describe("tickets outside the range (a direct caller of run)", () => {
    const policy = { concurrency: 1, agingMs: 1_000 }

    /** A scheduler on a hand-moved clock, a holder occupying its one slot, and a way to queue labelled calls. */
    const setup = Effect.gen(function* () {
      const clock = { now: 0 }
      const scheduler = InferenceScheduler.makeUnsafe(
        () => clock.now,
        () => {},
        { min: 0, max: 10 }
      )
      const order: Array<string> = []
      const gate = yield* Deferred.make<void>()
      const call = (label: string, priority: number, body: Effect.Effect<void> = Effect.void) =>
        scheduler.run(
          "llm",
          policy,
          { pid: 1, priority, deadline: undefined },
          Effect.andThen(
            Effect.sync(() => order.push(label)),
            body
          ),
          () => 0
        )
      const fibers: Array<Fiber.Fiber<void>> = []
      const enqueue = (label: string, priority: number, body?: Effect.Effect<void>) =>
        Effect.gen(function* () {
          const before = scheduler.load("llm")
          fibers.push(yield* Effect.forkChild(call(label, priority, body), { startImmediately: true }))
          const after = scheduler.load("llm")
          assert.strictEqual(after.running + after.waiting, before.running + before.waiting + 1, `${label} queued`)
        })
      yield* enqueue("holder", 0, Deferred.await(gate))
      const release = Effect.gen(function* () {
        yield* Deferred.succeed(gate, undefined)
        for (const fiber of fibers) yield* Fiber.join(fiber)
        return order
      })
      return { clock, scheduler, enqueue, release }
    })

    it.effect("priority 1e9 is treated as priorityMax: it cannot pass a call that waited past the bound", () =>
      Effect.gen(function* () {
        const { clock, enqueue, release } = yield* setup
        yield* enqueue("old", 0)
        clock.now = 10_000 // t0 + (max - min) × agingMs
        yield* enqueue("huge", 1e9)
        // the adversarial phase: 999 ms into an aging period (old: 0 + 20, huge: 10 + 10)
        clock.now = 20_999
        assert.deepStrictEqual(yield* release, ["holder", "old", "huge"])
      })
    )

    it.effect("priorities below the range, -Infinity and NaN count as priorityMin: arrival order among equals", () =>
      Effect.gen(function* () {
        const { enqueue, release } = yield* setup
        yield* enqueue("negative", -1e9)
        yield* enqueue("nan", NaN)
        yield* enqueue("minus-infinity", -Infinity)
        yield* enqueue("zero", 0)
        assert.deepStrictEqual(yield* release, ["holder", "negative", "nan", "minus-infinity", "zero"])
      })
    )

    it.effect("a policy PolicySchema refuses is a defect, not a hang", () =>
      Effect.gen(function* () {
        const scheduler = InferenceScheduler.makeUnsafe(
          () => 0,
          () => {}
        )
        for (const bad of [{ concurrency: 0 }, { agingMs: 0 }, { agingMs: NaN }, { concurrency: 1.5 }]) {
          const exit = yield* Effect.exit(
            scheduler.run("llm", bad, { pid: 1, priority: 0, deadline: undefined }, Effect.void, () => 0)
          )
          assert.isTrue(Exit.isFailure(exit) && exit.cause.reasons.some((r) => r._tag === "Die"), JSON.stringify(bad))
        }
      })
    )
  })
})
