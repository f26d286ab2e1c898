/**
 * Plugs an effect/ai `LanguageModel` into the kernel's LLM device: `Llm.fromLanguageModel()` over
 * `OpenAiLanguageModel.layer` — this package's small chat-completions adapter on Effect's `HttpClient` (the published
 * `@effect/ai-openai` betas do not load on effect 4.1). Any other `LanguageModel` layer plugs in the same way.
 *
 * Offline (the default) the adapter talks to a scripted loopback server from the test kit; with OPENAI_BASE_URL
 * and/or OPENAI_API_KEY set, to that endpoint (model OPENAI_MODEL, default gpt-4o-mini).
 *
 * Run: npm run language-model
 */
import { Console, Effect, Layer, Logger } from "effect"
import { FetchHttpClient } from "effect/http"
import { Kernel, Llm, OpenAiLanguageModel, Process, Sys } from "effect-agent-os"
import { OpenAiServer } from "effect-agent-os/testing"

const live = process.env.OPENAI_BASE_URL !== undefined || process.env.OPENAI_API_KEY !== undefined

const asker = Process.make<Kernel.BootGrant>("asker", (grant) =>
  Effect.gen(function* () {
    const model = yield* Sys.open(grant.devices.llm!)
    const reply = yield* Sys.read<Llm.LlmReply>(model, {
      messages: [
        { role: "system", content: "Answer in one short sentence." },
        { role: "user", content: "What is an operating system kernel?" }
      ]
    })
    yield* Sys.log("info", reply.text, { tokens: reply.usage.inputTokens + reply.usage.outputTokens })
  })
)

const program = Effect.gen(function* () {
  const baseURL = live
    ? (process.env.OPENAI_BASE_URL ?? "https://api.openai.com/v1")
    : (yield* OpenAiServer.make([OpenAiServer.text("The part of an OS that owns the machine and lends it out.")]))
        .baseURL
  yield* Console.log(`model: ${live ? "live" : "scripted loopback server"}, ${baseURL}`)

  // The LanguageModel: the adapter over fetch. Llm.fromLanguageModel turns whatever LanguageModel is in context
  // into the kernel's metered, journaled "llm" device.
  const languageModel = OpenAiLanguageModel.layer({
    baseURL,
    model: process.env.OPENAI_MODEL ?? "gpt-4o-mini",
    apiKey: process.env.OPENAI_API_KEY
  }).pipe(Layer.provide(FetchHttpClient.layer))
  const llm = Llm.fromLanguageModel().pipe(Effect.provide(languageModel))

  const trace = yield* Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    const pid = yield* kernel.boot(asker, { grant: ["llm"] })
    yield* kernel.waitExit(pid)
    return yield* kernel.trace()
  }).pipe(Effect.provide(Kernel.layer({ drivers: [llm] })))
  for (const event of trace) {
    if (event._tag === "Log") yield* Console.log(`answer: ${event.message}`)
    if (event._tag === "Charge") yield* Console.log(`charged: ${event.tokens} tokens`)
  }
})

// the answer is printed from the trace; without loggers Sys.log does not print it a second time
Effect.runPromise(Effect.scoped(program).pipe(Effect.provide(Logger.layer([])))).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
