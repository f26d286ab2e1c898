// Tools shared by the agent tests: a lookup that counts its runs and concurrency, and a tool with a long result.
import { Effect, Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"
import { Tools } from "effect-agent-os"

const Lookup = Tool.make("lookup", {
  description: "Looks a key up",
  parameters: Schema.Struct({ key: Schema.String }),
  success: Schema.String
})
const Big = Tool.make("big", {
  description: "A long text",
  parameters: Schema.Struct({ size: Schema.Int }),
  success: Schema.String
})
export const toolkit = Toolkit.make(Lookup, Big)
export const definitions = Tools.definitions(toolkit)

/** Tools whose implementations count their runs per key and the most calls in flight at once. */
export const makeTools = () => {
  const runs: Record<string, number> = {}
  const stats = { inFlight: 0, maxInFlight: 0, total: 0 }
  const driver = Tools.make(toolkit, {
    lookup: ({ key }) =>
      Effect.gen(function* () {
        runs[key] = (runs[key] ?? 0) + 1
        stats.total++
        stats.inFlight++
        stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight)
        for (let i = 0; i < 5; i++) yield* Effect.yieldNow
        stats.inFlight--
        return `value-of-${key}`
      }),
    big: ({ size }) => Effect.succeed("x".repeat(size))
  })
  return { runs, stats, driver }
}

export type TestTools = ReturnType<typeof makeTools>
