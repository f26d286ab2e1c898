import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option } from "effect"
import { TestClock } from "effect/testing"
import { Kernel, Nursery, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

const run = <A, E>(body: (grant: Kernel.BootGrant) => Effect.Effect<A, E, Sys.Sys>) =>
  TestKernel.runProcess(body).pipe(Effect.provide(TestKernel.layer()))

/** Registers under `name`, sleeps `ms`, then ends as `end` says. */
const sleeper = Process.make<{ readonly name: string; readonly ms: number; readonly end: "normal" | "fail" }>(
  "sleeper",
  ({ end, ms, name }) =>
    Effect.gen(function* () {
      yield* Sys.register(name)
      yield* Effect.sleep(ms)
      if (end === "fail") return yield* Effect.fail(`${name} failed`)
    })
)

const child = (name: string, ms: number, end: "normal" | "fail" = "normal") =>
  Nursery.child({ image: sleeper, args: { name, ms, end } })

const registered = (names: ReadonlyArray<string>) =>
  Effect.forEach(names, (name) => Sys.lookup(name).pipe(Effect.map(Option.isSome)))

describe("Nursery.run", () => {
  it.effect("waits for every child and succeeds with their reasons, in order, when all end Normal", () =>
    run(() =>
      Effect.gen(function* () {
        const fiber = yield* Effect.forkChild(Nursery.run([child("a", 3000), child("b", 1000), child("c", 2000)]))
        yield* TestClock.adjust(2999)
        assert.isUndefined(fiber.pollUnsafe(), "still waiting for a")
        assert.deepStrictEqual(yield* registered(["a", "b", "c"]), [true, false, false])
        yield* TestClock.adjust(1)
        assert.deepStrictEqual(yield* Fiber.join(fiber), [Process.normal, Process.normal, Process.normal])
      })
    )
  )

  it.effect("an empty nursery succeeds at once", () =>
    run(() => Nursery.run([]).pipe(Effect.map((reasons) => assert.deepStrictEqual(reasons, []))))
  )

  it.effect("the first abnormal exit kills the others and fails with its pid and reason", () =>
    run(() =>
      Effect.gen(function* () {
        const fiber = yield* Effect.forkChild(
          Effect.flip(Nursery.run([child("a", 5000), child("b", 1000, "fail"), child("c", 3000, "fail")]))
        )
        yield* Effect.yieldNow
        const b = yield* Sys.lookup("b")
        assert.isTrue(Option.isSome(b))
        yield* TestClock.adjust(999)
        assert.isUndefined(fiber.pollUnsafe())
        yield* TestClock.adjust(1)
        const error = yield* Fiber.join(fiber)
        assert.instanceOf(error, Nursery.NurseryError)
        assert.strictEqual(error._tag, "NurseryError")
        if (error._tag !== "NurseryError") return
        assert.strictEqual(error.index, 1)
        assert.strictEqual(error.pid, (yield* Sys.self()) + 2)
        assert.deepStrictEqual(error.reason, Process.fault("b failed"))
        assert.deepStrictEqual(yield* registered(["a", "b", "c"]), [false, false, false], "all ended by then")
      })
    )
  )

  it.effect("the others end Killed by the caller", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const parent = Process.make<Kernel.BootGrant>("parent", () =>
        Effect.ignore(Nursery.run([child("a", 5000), child("b", 1000, "fail"), child("c", 5000)]))
      )
      const pid = yield* kernel.boot(parent)
      yield* TestClock.adjust(1000)
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.normal)
      const exits = (yield* kernel.trace()).flatMap((e) => (e._tag === "Exit" ? [[e.pid, e.reason, e.at]] : []))
      assert.deepStrictEqual(exits, [
        [pid + 2, Process.fault("b failed"), 1000],
        [pid + 3, Process.killed(pid), 1000],
        [pid + 1, Process.killed(pid), 1000],
        [pid, Process.normal, 1000]
      ])
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("an interrupted nursery kills its children before the interruption completes", () =>
    run(() =>
      Effect.gen(function* () {
        const result = yield* Effect.timeoutOption(Nursery.run([child("a", 5000), child("b", 5000)]), 1000).pipe(
          Effect.forkChild
        )
        yield* TestClock.adjust(1000)
        assert.isTrue(Option.isNone(yield* Fiber.join(result)))
        assert.deepStrictEqual(yield* registered(["a", "b"]), [false, false])
      })
    )
  )

  it.effect("a refused spawn kills the children already spawned and fails with the spawn's error", () =>
    run(() =>
      Effect.gen(function* () {
        const exit = yield* Effect.exit(
          Nursery.run([child("a", 5000), { ...child("b", 5000), quota: { tokens: Number.NaN } }])
        )
        assert.isTrue(Exit.isFailure(exit))
        const error = yield* Effect.flip(exit)
        assert.strictEqual(error._tag, "QuotaError")
        assert.deepStrictEqual(yield* registered(["a", "b"]), [false, false])
      })
    )
  )
})
