/**
 * The agent workload: the kernel's cost per ReAct step. A `ReactAgent` runs `n` steps against the scripted LLM
 * (`n - 1` turns each calling a trivial `id` tool with a new argument, so every turn is progress, then an answer);
 * the figure is the wall time from spawn to the agent's `Result`, divided by the steps it reports, in µs. It covers
 * everything but a model: the loop's context memory and prompt rebuilding, the metered, scheduled LLM read, the
 * Schema-guarded tool read, charges, events and IPC. Usage is scripted, so the scripted model does no token counting.
 */
import { Effect, Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"
import { Kernel, Process, ReactAgent, Sys, Tools } from "effect-agent-os"
import { ScriptedLlm } from "effect-agent-os/testing"

const Id = Tool.make("id", { parameters: Schema.Struct({ x: Schema.Finite }), success: Schema.Finite })
const toolkit = Toolkit.make(Id)
const toolset = Tools.make(toolkit, { id: ({ x }) => Effect.succeed(x) })
const usage = { inputTokens: 10, outputTokens: 5 }

/** One run of `n` steps; µs per step (total time / steps reported by the agent). */
const run = (n: number): Promise<number> => {
  const llm = ScriptedLlm.make([
    ...Array.from({ length: n - 1 }, (_, i) => ({ toolCalls: [{ name: "id", arguments: { x: i } }], usage })),
    { text: "done", usage }
  ])
  const agent = ReactAgent.make({
    tools: Tools.definitions({ tools: toolkit.tools }),
    steps: n,
    stepsMax: n,
    staleTurnsMax: n
  })
  let micros = NaN
  const init = Process.make<Kernel.BootGrant>("bench", (grant) =>
    Effect.gen(function* () {
      const reply = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
      const t0 = performance.now()
      yield* Sys.spawn(agent, { args: { task: "count" }, caps: [grant.devices.llm!, grant.devices.tools!, reply] })
      const result = yield* Sys.recv<ReactAgent.Reply>()
      const elapsed = performance.now() - t0
      if (result.body._tag !== "Result") return yield* Effect.die(new Error(result.body.message))
      if (result.body.steps !== n) return yield* Effect.die(new Error(`${result.body.steps} steps, not ${n}`))
      micros = (elapsed * 1000) / result.body.steps
    })
  )
  return Effect.runPromise(
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const exit = yield* kernel.waitExit(yield* kernel.boot(init, { grant: ["llm", "tools"] }))
      if (exit._tag !== "Normal") return yield* Effect.die(new Error(`bench exited ${JSON.stringify(exit)}`))
      return Math.round(micros)
    }).pipe(Effect.scoped, Effect.provide(Kernel.layer({ drivers: [llm, toolset] })))
  )
}

export const ours = {
  /** µs of kernel work per ReAct step with the scripted LLM (lower is better); one warm-up run, then the best of 3. */
  reactStep: async (n = 200): Promise<number> => {
    await run(n)
    let best = Infinity
    for (let r = 0; r < 3; r++) best = Math.min(best, await run(n))
    return best
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const n = Number(process.env.N ?? 200)
  console.log(`react_step: ${await ours.reactStep(n)} µs/step (n = ${n})`)
}
