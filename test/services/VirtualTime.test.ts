import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Kernel, Process, Sys } from "effect-agent-os"
// the virtual clock is kernel-internal (users ask for `Kernel.layer({ virtualTime: true })`)
import * as VirtualTime from "../../src/services/VirtualTime.ts"
import * as TestKernel from "effect-agent-os/testing"

const HOUR = 3_600_000

/** A small team: a napper sleeping for hours, a pinger on a 30-minute beat, one child past its deadline. */
const program = Effect.gen(function* () {
  const kernel = yield* Kernel.Kernel
  const napper = Process.make<number>("napper", (hours) =>
    Effect.gen(function* () {
      for (let i = 0; i < hours; i++) {
        yield* Effect.sleep("1 hour")
        yield* Sys.log("info", `napped ${i + 1}h`)
      }
    })
  )
  const pinger = Process.make("pinger", () =>
    Effect.gen(function* () {
      const [target] = yield* Sys.caps()
      for (;;) {
        yield* Effect.sleep("30 minutes")
        yield* Sys.send(target!, "ping")
      }
    })
  )
  const init = Process.make<Kernel.BootGrant>("init", () =>
    Effect.gen(function* () {
      const nap = yield* Sys.spawn(napper, { args: 5 })
      yield* Sys.spawn(pinger, { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
      const late = yield* Sys.spawn(
        Process.make("late", () => Effect.never),
        { deadline: "90 minutes" }
      )
      yield* Sys.waitpid(late.cap)
      yield* Sys.waitpid(nap.cap)
      for (let i = 0; i < 3; i++) yield* Sys.recv()
    })
  )
  const pid = yield* kernel.boot(init, { quota: { wall: "12 hours" } })
  const reason = yield* kernel.waitExit(pid)
  return { reason, trace: yield* kernel.trace() }
})

const run = program.pipe(Effect.provide(TestKernel.layer({ virtualTime: true })))

describe("virtual time", () => {
  it.live("hours of sleeping complete at once, with every timer exactly on time", () =>
    Effect.gen(function* () {
      const { reason, trace } = yield* run
      assert.deepStrictEqual(reason, Process.normal)
      const at = (tag: string, pid: number) => trace.find((e) => e._tag === tag && e.pid === pid)?.at
      assert.strictEqual(at("Exit", 4), 1.5 * HOUR, "the deadline fired at 90 minutes")
      assert.strictEqual(at("Exit", 2), 5 * HOUR, "the napper woke five times")
      assert.deepStrictEqual(
        trace.filter((e) => e._tag === "Log").map((e) => e.at),
        [1, 2, 3, 4, 5].map((h) => h * HOUR)
      )
      assert.strictEqual(at("Exit", 1), 5 * HOUR)
    })
  )

  it.live("the same program gives the same trace every time", () =>
    Effect.gen(function* () {
      const a = yield* run
      const b = yield* run
      assert.deepStrictEqual(a.trace, b.trace)
      assert.isAbove(a.trace.length, 20)
    })
  )

  it.live("a wall quota ends a sleeper on virtual time", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const pid = yield* kernel.boot(
        Process.make("sleeper", () => Effect.sleep("100 days")),
        {
          quota: { wall: "2 days" }
        }
      )
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.quota("wall"))
      const exit = (yield* kernel.trace()).find((e) => e._tag === "Exit")!
      assert.strictEqual(exit.at, 48 * HOUR)
    }).pipe(Effect.provide(TestKernel.layer({ virtualTime: true })))
  )

  it("the clock wakes sleeps due at one instant in registration order", () => {
    const clock = VirtualTime.makeUnsafe(0)
    const woke: Array<string> = []
    for (const [name, ms] of [
      ["b", 20],
      ["a", 10],
      ["c", 20]
    ] as const) {
      Effect.runFork(clock.sleep(ms as never).pipe(Effect.andThen(Effect.sync(() => woke.push(name)))))
    }
    assert.strictEqual(clock.nextWakeUp(), 10)
    assert.isTrue(clock.advance())
    assert.strictEqual(clock.currentTimeMillisUnsafe(), 10)
    assert.isTrue(clock.advance())
    assert.strictEqual(clock.currentTimeMillisUnsafe(), 20)
    assert.isFalse(clock.advance())
    assert.deepStrictEqual(woke, ["a", "b", "c"])
  })
})
