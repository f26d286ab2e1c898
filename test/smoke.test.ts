import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
import { Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

const echo = Process.make("echo", () =>
  Effect.gen(function* () {
    for (;;) {
      const m = yield* Sys.recv<number>()
      if (m.caps[0]) yield* Sys.send(m.caps[0], m.body * 2)
    }
  }))

it.effect("echo", () =>
  TestKernel.runProcess(() =>
    Effect.gen(function* () {
      const { cap } = yield* Sys.spawn(echo)
      const me = yield* Sys.selfCap()
      const me2 = yield* Sys.derive(me, ["send"])
      yield* Sys.send(cap, 21, { caps: [me2] })
      const m = yield* Sys.recv<number>()
      return m.body
    })
  ).pipe(Effect.map((x) => assert.strictEqual(x, 42)), Effect.provide(TestKernel.layer())))
