/**
 * An agent task through the kernel: a tool-using agent answers a question with an LLM device and a Schema-guarded
 * tools device, metered and journaled to `.agentos/journal.jsonl`. Then `npm run replay` runs the same program
 * from that journal alone — no model, no tool touched — and checks that the trace is identical.
 *
 * The model is scripted (offline) unless OPENAI_API_KEY or OPENAI_BASE_URL is set; then it is the OpenAI-compatible
 * endpoint they name (model OPENAI_MODEL, default gpt-4o-mini).
 *
 * Run: npm start            (record)
 *      npm run replay       (replay the journal)
 */
import { Console, Effect, Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"
import { Kernel, Llm, Process, Sys, Tools } from "effect-agent-os"
import { ScriptedLlm } from "effect-agent-os/testing"
import { live, runJournaled } from "./lib/journaled.ts"

// ---- tools: declared with Schemas, implemented separately --------------------------------------------------------

const populations: Record<string, number> = { paris: 2_102_650, berlin: 3_878_100, rome: 2_748_109 }

const Population = Tool.make("population", {
  description: "The population of a city",
  parameters: Schema.Struct({ city: Schema.String }),
  success: Schema.Finite
})
const Add = Tool.make("add", {
  description: "Adds two numbers",
  parameters: Schema.Struct({ a: Schema.Finite, b: Schema.Finite }),
  success: Schema.Finite
})
const toolkit = Toolkit.make(Population, Add)
const tools = Tools.make(toolkit, {
  population: ({ city }) => {
    const n = populations[city.toLowerCase()]
    return n === undefined ? Effect.fail(new Tools.ToolFailure({ message: `no data for ${city}` })) : Effect.succeed(n)
  },
  add: ({ a, b }) => Effect.succeed(a + b)
})

// ---- the model: live when configured, else a script that plays a plausible run -----------------------------------

const scripted = ScriptedLlm.make([
  {
    toolCalls: [
      { name: "population", arguments: { city: "Paris" } },
      { name: "population", arguments: { city: "Berlin" } }
    ]
  },
  (request) => {
    const results = request.messages.filter((m) => m.role === "tool").map((m) => Number(m.content))
    return { toolCalls: [{ name: "add", arguments: { a: results[0] ?? 0, b: results[1] ?? 0 } }] }
  },
  (request) => {
    const sum = request.messages.filter((m) => m.role === "tool").at(-1)?.content ?? "?"
    return { text: `Paris and Berlin have ${Number(sum).toLocaleString("en")} inhabitants together.` }
  }
])
const llm = live ? Llm.make({ model: process.env.OPENAI_MODEL ?? "gpt-4o-mini" }) : Effect.succeed(scripted)

// ---- the agent: think, call tools in parallel, observe, answer -----------------------------------------------------

const agent = Process.make<{ readonly question: string }>("agent", ({ question }) =>
  Effect.gen(function* () {
    const [llmCap, toolsCap] = yield* Sys.caps()
    const model = yield* Sys.open(llmCap!)
    const toolbox = yield* Sys.open(toolsCap!)
    const messages: Array<Llm.Message> = [
      { role: "system", content: "Answer with the tools. Call independent tools in the same turn." },
      { role: "user", content: question }
    ]
    for (let step = 1; step <= 6; step++) {
      const reply = yield* Sys.read<Llm.LlmReply>(model, {
        messages,
        tools: Tools.definitions({ tools: toolkit.tools })
      })
      if (reply.toolCalls.length === 0) return yield* Sys.log("info", `answer: ${reply.text}`, { step })
      yield* Sys.log(
        "info",
        `step ${step}: ${reply.toolCalls.map((c) => `${c.name}(${JSON.stringify(c.arguments)})`).join(", ")}`
      )
      messages.push({ role: "assistant", content: reply.text, toolCalls: reply.toolCalls })
      const results = yield* Sys.readAll(
        toolbox,
        reply.toolCalls.map((c) => ({ tool: c.name, input: c.arguments }))
      )
      reply.toolCalls.forEach((c, i) =>
        messages.push({ role: "tool", toolCallId: c.id, content: JSON.stringify(results[i]) })
      )
    }
    yield* Sys.log("warn", "no answer within 6 steps")
  })
)

const init = Process.make<Kernel.BootGrant>("init", (grant) =>
  Effect.gen(function* () {
    const { cap } = yield* Sys.spawn(agent, {
      args: { question: "How many people live in Paris and Berlin together?" },
      caps: [grant.devices.llm!, grant.devices.tools!],
      quota: { tokens: 20_000, toolCalls: 10, usd: 0.05, wall: "2 minutes" }
    })
    const reason = yield* Sys.waitpid(cap)
    yield* Sys.log("info", `agent exited: ${JSON.stringify(reason)}`)
  })
)

// ---- the host program ----------------------------------------------------------------------------------------------

const program = Effect.gen(function* () {
  const kernel = yield* Kernel.Kernel
  const pid = yield* kernel.boot(init, { grant: ["llm", "tools"] })
  yield* kernel.waitExit(pid)
  const trace = yield* kernel.trace()
  const charges = trace.flatMap((e) => (e._tag === "Charge" ? [e] : []))
  const spent = charges.reduce((s, c) => ({ tokens: s.tokens + c.tokens, toolCalls: s.toolCalls + c.toolCalls }), {
    tokens: 0,
    toolCalls: 0
  })
  yield* Console.log(`\nspent: ${spent.tokens} tokens, ${spent.toolCalls} tool calls`)
  return trace
})

runJournaled({
  journalPath: ".agentos/journal.jsonl",
  tracePath: ".agentos/trace.json",
  replayCommand: "npm run agent:replay",
  drivers: [llm, tools],
  // on replay the model is never called: the scripted one only stands in for the device name
  replayDrivers: [Effect.succeed(scripted), tools],
  program
})
