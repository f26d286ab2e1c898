// A driver whose read throws (instead of failing) is a driver-error, and the reservation of the call is released:
// a throwing driver cannot leak its callers' budgets away.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Device, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

const throwing = Device.make({
  name: "thrower",
  meters: ["toolCalls"],
  reserve: () => ({ toolCalls: 1 }),
  open: () =>
    Effect.succeed({
      read: () => {
        throw new Error("boom")
      }
    })
})

describe("a driver that throws", () => {
  it.effect("each call reads back a driver-error and releases its reservation", () =>
    TestKernel.runProcess(
      (grant) =>
        Effect.gen(function* () {
          const handle = yield* Sys.open(grant.devices.thrower!)
          const reasons: Array<string> = []
          // more calls than the quota: were a reservation leaked, the third would end the process
          for (let i = 0; i < 5; i++) {
            const error = yield* Effect.flip(Sys.read(handle, { n: i }))
            reasons.push((error as { readonly reason?: string }).reason ?? error._tag)
          }
          assert.deepStrictEqual(reasons, [
            "driver-error",
            "driver-error",
            "driver-error",
            "driver-error",
            "driver-error"
          ])
          const budget = yield* Sys.budget()
          assert.strictEqual(budget.used.toolCalls, 0)
        }),
      { grant: ["thrower"], quota: { toolCalls: 2 } }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [throwing] })))
  )
})
