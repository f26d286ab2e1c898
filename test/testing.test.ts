import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { Kernel, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

layer(TestKernel.layer())((it) => {
  it.effect("a kernel shared by a describe block runs on the test clock", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const pid = yield* kernel.boot(Process.make("sleeper", () => Effect.sleep("1 hour")))
      yield* TestClock.adjust("1 hour")
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.normal)
    })
  )
})

layer(TestKernel.layer())("runProcess", (it) => {
  it.effect("returns the body's value, fails with its error, or ProcessEnded when the process is ended first", () =>
    Effect.gen(function* () {
      assert.strictEqual(yield* TestKernel.runProcess(() => Sys.self().pipe(Effect.map((pid) => pid > 0))), true)
      const failed = yield* Effect.flip(TestKernel.runProcess(() => Effect.fail("nope" as const)))
      assert.strictEqual(failed, "nope")
      const ended = yield* Effect.flip(TestKernel.runProcess(() => Sys.charge({ tokens: 5 }), { quota: { tokens: 1 } }))
      assert.deepInclude(ended, { _tag: "ProcessEnded", reason: Process.quota("tokens") })
    })
  )
})
