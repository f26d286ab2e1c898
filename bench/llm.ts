/**
 * The kernel's overhead per LLM call: the same chat completion against the loopback OpenAI-compatible server, once
 * with the `openai` SDK called directly and once as a metered, scheduled `Sys.read` on the LLM device (request
 * decoding, capability check, scheduler, charge and events included). Reports the difference of the medians, in µs.
 */
import { Effect } from "effect"
import OpenAI from "openai"
import { Kernel, Llm, Process, Sys } from "effect-agent-os"
import { OpenAiServer } from "effect-agent-os/testing"

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const messages = [{ role: "user" as const, content: "Say hi." }]

/** `n` direct SDK calls and `n` kernel calls, alternating in blocks of 10 from one process; both medians in ms. */
const round = (n: number) =>
  Effect.gen(function* () {
    const server = yield* OpenAiServer.make(Array.from({ length: 2 * n }, () => OpenAiServer.text("hi")))
    const client = new OpenAI({ baseURL: server.baseURL, apiKey: "bench", maxRetries: 0 })
    const direct: Array<number> = []
    const viaKernel: Array<number> = []
    const directCall = Effect.promise(async () => {
      const t0 = performance.now()
      await client.chat.completions.create({ model: "test-model", messages })
      direct.push(performance.now() - t0)
    })
    const caller = Process.make<Kernel.BootGrant>("caller", (grant) =>
      Effect.gen(function* () {
        const llm = yield* Sys.open(grant.devices.llm!)
        for (let block = 0; block < n / 10; block++) {
          for (let i = 0; i < 10; i++) yield* directCall
          for (let i = 0; i < 10; i++) {
            const t0 = performance.now()
            yield* Sys.read(llm, { messages })
            viaKernel.push(performance.now() - t0)
          }
        }
      })
    )
    const driver = Llm.make({ baseURL: server.baseURL, apiKey: "bench", model: "test-model", retry: { times: 0 } })
    yield* Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      yield* kernel.waitExit(yield* kernel.boot(caller, { grant: ["llm"] }))
    }).pipe(Effect.provide(Kernel.layer({ drivers: [driver] })))
    return { direct: median(direct), kernel: median(viaKernel) }
  }).pipe(Effect.scoped)

/** Overhead per call in µs (kernel median minus direct median), the best of `rounds`. */
export const overheadMicros = (n = 200, rounds = 3): Promise<number> =>
  Effect.runPromise(
    Effect.gen(function* () {
      let best = Infinity
      for (let r = 0; r < rounds; r++) {
        const { direct, kernel } = yield* round(n)
        best = Math.min(best, (kernel - direct) * 1000)
      }
      return Math.round(best)
    })
  )
