import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { KernelConfig } from "effect-agent-os"

describe("KernelConfig.make", () => {
  it.effect("without options gives the defaults", () =>
    Effect.gen(function* () {
      const limits = yield* KernelConfig.make()
      assert.deepStrictEqual(limits, KernelConfig.defaults)
      assert.strictEqual(limits.mailboxMessagesMax, 1024)
      assert.deepStrictEqual(yield* KernelConfig.make({}), KernelConfig.defaults)
    })
  )

  it.effect("partial overrides are merged over the defaults", () =>
    Effect.gen(function* () {
      const limits = yield* KernelConfig.make({ mailboxMessagesMax: 8, namesMax: 3 })
      assert.deepStrictEqual(limits, { ...KernelConfig.defaults, mailboxMessagesMax: 8, namesMax: 3 })
      assert.strictEqual(KernelConfig.defaults.mailboxMessagesMax, 1024)
      assert.strictEqual(KernelConfig.defaults.namesMax, 10_000)
      assert.strictEqual((yield* KernelConfig.make({ shutdownTimeoutMs: 1 })).shutdownTimeoutMs, 1)
    })
  )

  it.effect('0, -1, 1.5 and "10" fail with KernelConfigError', () =>
    Effect.gen(function* () {
      for (const value of [0, -1, 1.5, "10"]) {
        const exit = yield* Effect.exit(KernelConfig.make({ eventRingMax: value as number }))
        assert.isTrue(Exit.isFailure(exit), `eventRingMax ${JSON.stringify(value)} accepted`)
        const error = yield* Effect.flip(KernelConfig.make({ processesMax: value as number }))
        assert.instanceOf(error, KernelConfig.KernelConfigError)
        assert.strictEqual(error._tag, "KernelConfigError")
        assert.include(error.message, "invalid kernel limits")
        assert.include(error.message, "processesMax")
      }
    })
  )

  it.effect("one invalid field fails the whole config", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(KernelConfig.make({ namesMax: 5, nameLengthMax: 0 }))
      assert.instanceOf(error, KernelConfig.KernelConfigError)
      assert.include(error.message, "nameLengthMax")
    })
  )

  const read = Effect.gen(function* () {
    return yield* KernelConfig.KernelConfig
  })

  it.effect("the layer provides the merged limits, or fails with KernelConfigError", () =>
    Effect.gen(function* () {
      const limits = yield* read.pipe(Effect.provide(KernelConfig.layer({ spawnDepthMax: 2 })))
      assert.strictEqual(limits.spawnDepthMax, 2)
      assert.strictEqual(limits.processesMax, KernelConfig.defaults.processesMax)
      const error = yield* Effect.flip(read.pipe(Effect.provide(KernelConfig.layer({ spawnDepthMax: -1 }))))
      assert.instanceOf(error, KernelConfig.KernelConfigError)
    })
  )
})
