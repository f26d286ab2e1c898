/**
 * A supervised team: a `Supervisor` (one_for_one) runs a `ReactAgent` "researcher" and a `ConversationAgent`
 * "assistant", each with its own budget (child `quota`, carved from the supervisor's), over one LLM device and one
 * Schema-guarded tools device. Every driver result is journaled to `.agentos/team.jsonl`; `--replay` runs the same
 * program from that journal alone (no model, no tool called) and checks the event trace is identical to the recorded
 * one (`.agentos/team-trace.json`). It runs on virtual time.
 *
 * The model is scripted (offline) unless OPENAI_API_KEY or OPENAI_BASE_URL is set; then it is the OpenAI-compatible
 * endpoint they name (model OPENAI_MODEL, default gpt-4o-mini).
 *
 * How init (the host's process) talks to the supervised agents:
 *
 * - init spawns the supervisor itself (it is the supervisor's parent) with the start caps
 *   `[spawn, llm, tools, reply]`, where `reply` is a send-only derivation of init's own cap (`Sys.derive(selfCap,
 *   ["send"])`). The researcher's child spec takes `[llm, tools, reply]` from them (`caps: [{ from, rights }]`), so
 *   its `Result` comes straight back to init.
 * - The assistant is started by the supervisor, so init holds no cap to it. A tiny wrapper image registers the name
 *   `"assistant"` (`Sys.register`) and then runs the `ConversationAgent` image's main; init finds it with
 *   `Sys.lookup("assistant")` (a send-only cap) and sends it one user turn with a reply cap attached. Names clear when
 *   the holder dies, and a restarted assistant registers again, so a lookup always reaches the current one. (No
 *   `NameService` process is needed: the kernel's name registry is enough for one host.)
 * - At the end init sends the supervisor `Term`: it shuts its children down in reverse start order and exits.
 *
 * It prints each process's log lines once, as they happen, the spend of each process, the answer and a compact trace
 * (spawns, driver calls, charges, signals, exits); `--trace` prints every event.
 *
 * Run: npm start (record, then replay), npm run replay, npm run replay -- --trace
 */
import { Console, Effect, Option, Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"
import { ConversationAgent, Kernel, Llm, Process, ReactAgent, Supervisor, Sys, Tools } from "effect-agent-os"
import { ScriptedLlm } from "effect-agent-os/testing"
import { live, runJournaled } from "./lib/journaled.ts"

// ---- tools -----------------------------------------------------------------------------------------------------------

const populations: Record<string, number> = { paris: 2_102_650, berlin: 3_878_100, rome: 2_748_109 }

const Population = Tool.make("population", {
  description: "The population of a city",
  parameters: Schema.Struct({ city: Schema.String }),
  success: Schema.Finite
})
const Subtract = Tool.make("subtract", {
  description: "Subtracts b from a",
  parameters: Schema.Struct({ a: Schema.Finite, b: Schema.Finite }),
  success: Schema.Finite
})
const toolkit = Toolkit.make(Population, Subtract)
const tools = Tools.make(toolkit, {
  population: ({ city }) => {
    const n = populations[city.toLowerCase()]
    return n === undefined ? Effect.fail(new Tools.ToolFailure({ message: `no data for ${city}` })) : Effect.succeed(n)
  },
  subtract: ({ a, b }) => Effect.succeed(a - b)
})
const definitions = Tools.definitions({ tools: toolkit.tools })

// ---- the model: live when configured, else a script (the researcher's three calls, then the assistant's one) ------

const toolResults = (request: Llm.LlmRequest) =>
  request.messages.flatMap((m) => (m.role === "tool" ? [Number(m.content)] : []))
const scripted = ScriptedLlm.make([
  // researcher
  {
    toolCalls: [
      { name: "population", arguments: { city: "Paris" } },
      { name: "population", arguments: { city: "Berlin" } }
    ]
  },
  (request) => {
    const [paris = 0, berlin = 0] = toolResults(request)
    return { toolCalls: [{ name: "subtract", arguments: { a: berlin, b: paris } }] }
  },
  (request) => {
    const difference = toolResults(request).at(-1) ?? NaN
    return { text: `Berlin is larger than Paris, by ${difference.toLocaleString("en")} inhabitants.` }
  },
  // assistant: one user turn, answered without tools
  (request) => {
    const last = request.messages.at(-1)
    const text = typeof last?.content === "string" ? last.content : ""
    const finding = text.split("Finding: ")[1] ?? text
    return { text: `Newsletter line: ${finding} (Source: the team's researcher.)` }
  }
])
const llm = live ? Llm.make({ model: process.env.OPENAI_MODEL ?? "gpt-4o-mini" }) : Effect.succeed(scripted)

// ---- the team --------------------------------------------------------------------------------------------------------

const researcher = ReactAgent.make({
  name: "researcher",
  system: "You are a researcher. Use the tools; call independent tools in the same turn. Answer in one sentence.",
  tools: definitions,
  stepsMax: 8
})

const conversation = ConversationAgent.make({
  system: "You are an assistant writing for a newsletter. Answer in one sentence.",
  tools: definitions
})
/** The conversation agent under a name, so that init (which did not start it) can find it with `Sys.lookup`. */
const assistant = Process.make<ConversationAgent.Args>("assistant", (args) =>
  Effect.andThen(Sys.register("assistant"), conversation.main(args))
)

const team = Supervisor.make({
  name: "team",
  strategy: "one_for_one",
  intensity: 2,
  period: "1 minute",
  children: [
    Supervisor.child({
      id: "researcher",
      image: researcher,
      args: { task: "Which city has more inhabitants, Paris or Berlin, and by how many?" },
      restart: "transient",
      caps: [
        { from: 1, rights: ["open"] },
        { from: 2, rights: ["open"] },
        { from: 3, rights: ["send"] }
      ],
      quota: { tokens: 20_000, toolCalls: 10, usd: 0.05 }
    }),
    Supervisor.child({
      id: "assistant",
      image: assistant,
      args: {},
      restart: "permanent",
      caps: [
        { from: 1, rights: ["open"] },
        { from: 2, rights: ["open"] }
      ],
      quota: { tokens: 10_000, toolCalls: 5, usd: 0.02 },
      shutdown: "1 second"
    })
  ]
})

const init = Process.make<Kernel.BootGrant>("init", (grant) =>
  Effect.gen(function* () {
    const reply = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
    const { cap: supervisor } = yield* Sys.spawn(team, {
      caps: [grant.spawn, grant.devices.llm!, grant.devices.tools!, reply],
      quota: { tokens: 40_000, toolCalls: 20, usd: 0.1, wall: "5 minutes" }
    })
    yield* Sys.log("info", "team started: researcher and assistant under a one_for_one supervisor")

    const research = yield* Sys.recv<ReactAgent.Reply>()
    if (research.body._tag !== "Result") return yield* Sys.log("error", `researcher failed: ${research.body.message}`)
    yield* Sys.log("info", `researcher (${research.body.steps} steps): ${research.body.answer}`)

    let found = yield* Sys.lookup("assistant")
    for (let i = 0; i < 100 && Option.isNone(found); i++) {
      yield* Sys.yield()
      found = yield* Sys.lookup("assistant")
    }
    if (Option.isNone(found)) return yield* Sys.log("error", "no process registered as assistant")
    yield* Sys.send(
      found.value,
      {
        _tag: "User",
        text: `Turn this into one newsletter sentence. Finding: ${research.body.answer}`
      } satisfies ConversationAgent.User,
      { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] }
    )
    const turn = yield* Sys.recv<ConversationAgent.Reply>()
    yield* Sys.log(
      "info",
      turn.body._tag === "Result" ? `assistant: ${turn.body.answer}` : `assistant failed: ${turn.body.message}`
    )

    yield* Sys.term(supervisor)
    const reason = yield* Sys.waitpid(supervisor)
    yield* Sys.log("info", `team exited: ${JSON.stringify(reason)}`)
  })
)

// ---- the host program ----------------------------------------------------------------------------------------------

const program = Effect.gen(function* () {
  const kernel = yield* Kernel.Kernel
  const pid = yield* kernel.boot(init, { grant: ["llm", "tools"] })
  yield* kernel.waitExit(pid)
  const trace = yield* kernel.trace()

  const names = new Map<number, string>([[pid, "init"]])
  for (const e of trace) if (e._tag === "Spawn") names.set(e.pid, e.name)
  const spend = new Map<number, { tokens: number; toolCalls: number; usd: number }>()
  for (const e of trace) {
    if (e._tag !== "Charge") continue
    const s = spend.get(e.pid) ?? { tokens: 0, toolCalls: 0, usd: 0 }
    spend.set(e.pid, { tokens: s.tokens + e.tokens, toolCalls: s.toolCalls + e.toolCalls, usd: s.usd + e.usd })
  }
  yield* Console.log("\nspend per process (Charge events):")
  for (const [p, s] of [...spend].sort(([a], [b]) => a - b)) {
    yield* Console.log(
      `  pid ${p} ${(names.get(p) ?? "?").padEnd(12)} ${String(s.tokens).padStart(6)} tokens, ` +
        `${s.toolCalls} tool calls, $${s.usd.toFixed(4)}`
    )
  }
  const answer = [...trace].reverse().find((e) => e._tag === "Log" && e.message.startsWith("assistant: "))
  yield* Console.log(`\nanswer: ${answer?._tag === "Log" ? answer.message.slice("assistant: ".length) : "(none)"}`)
  return trace
})

runJournaled({
  journalPath: ".agentos/team.jsonl",
  tracePath: ".agentos/team-trace.json",
  replayCommand: "npm run replay",
  drivers: [llm, tools],
  // on replay the model is never called: the scripted one only stands in for the device name
  replayDrivers: [Effect.succeed(scripted), tools],
  program
})
