// The README's test example, verbatim in substance: it must keep compiling and passing.
import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
import { Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

const doubler = Process.make("doubler", () =>
  Effect.forever(
    Effect.gen(function* () {
      const m = yield* Sys.recv<number>()
      yield* Sys.charge({ tokens: 10 })
      yield* Sys.send(m.caps[0]!, m.body * 2)
    })
  )
)

it.effect("a send-only cap cannot kill", () =>
  TestKernel.runProcess(() =>
    Effect.gen(function* () {
      const { cap } = yield* Sys.spawn(doubler)
      const sendOnly = yield* Sys.derive(cap, ["send"])
      const error = yield* Effect.flip(Sys.kill(sendOnly))
      assert.strictEqual(error.reason, "missing-right")
    })
  ).pipe(Effect.provide(TestKernel.layer()))
)

it.effect("the quick start's doubler answers, then runs out of tokens on its third charge", () =>
  TestKernel.runProcess(() =>
    Effect.gen(function* () {
      const { cap } = yield* Sys.spawn(doubler, { quota: { tokens: 25 } })
      const me = yield* Sys.selfCap()
      for (const n of [1, 2]) {
        yield* Sys.send(cap, n, { caps: [yield* Sys.derive(me, ["send"])] })
        assert.strictEqual((yield* Sys.recv<number>()).body, n * 2)
      }
      yield* Sys.send(cap, 3, { caps: [yield* Sys.derive(me, ["send"])] })
      assert.deepStrictEqual(yield* Sys.waitpid(cap), { _tag: "Quota", resource: "tokens" })
    })
  ).pipe(Effect.provide(TestKernel.layer()))
)
