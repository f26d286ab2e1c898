import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FileSystem, Layer, Schema, Scope } from "effect"
import { Tool, Toolkit } from "effect/ai"
import { Journal, JournalFileStore, Kernel, Llm, Process, Sys, Tools } from "effect-agent-os"
import { OpenAiServer } from "effect-agent-os/testing"
import { TestClock } from "effect/testing"

const Add = Tool.make("add", {
  description: "Adds two numbers",
  parameters: Schema.Struct({ a: Schema.Finite, b: Schema.Finite }),
  success: Schema.Finite
})
const toolkit = Toolkit.make(Add)

/** A tool set whose implementation counts its runs (to prove replayed calls are not executed again). */
const makeTools = () => {
  const runs = { add: 0 }
  const driver = Tools.make(toolkit, {
    add: ({ a, b }) =>
      Effect.sync(() => {
        runs.add++
        return a + b
      })
  })
  return { runs, driver }
}

/** A small tool-using agent: asks the model, runs the tool calls of a turn in parallel, answers with the text. */
const agent = Process.make<Kernel.BootGrant>("agent", (grant) =>
  Effect.gen(function* () {
    const llm = yield* Sys.open(grant.devices.llm!)
    const tools = yield* Sys.open(grant.devices.tools!)
    const messages: Array<Llm.Message> = [
      { role: "system", content: "You add numbers with the add tool." },
      { role: "user", content: "What are 2+3 and 10+20?" }
    ]
    for (let turn = 0; turn < 5; turn++) {
      const reply = yield* Sys.read<Llm.LlmReply>(llm, {
        messages,
        tools: Tools.definitions({ tools: toolkit.tools })
      })
      if (reply.toolCalls.length === 0) {
        yield* Sys.log("info", `answer: ${reply.text}`)
        return
      }
      messages.push({ role: "assistant", content: reply.text, toolCalls: reply.toolCalls })
      const results = yield* Sys.readAll(
        tools,
        reply.toolCalls.map((c) => ({ tool: c.name, input: c.arguments }))
      )
      reply.toolCalls.forEach((c, i) =>
        messages.push({ role: "tool", toolCallId: c.id, content: JSON.stringify(results[i]) })
      )
    }
    yield* Sys.log("error", "no answer")
  })
)

const script = [
  OpenAiServer.toolCalls([{ name: "add", arguments: { a: 2, b: 3 } }], {
    text: "",
    usage: { promptTokens: 30, completionTokens: 10 }
  }),
  OpenAiServer.toolCalls([{ name: "add", arguments: { a: 10, b: 20 } }], {
    text: "",
    usage: { promptTokens: 40, completionTokens: 10 }
  }),
  OpenAiServer.text("2+3 is 5 and 10+20 is 30.", { usage: { promptTokens: 50, completionTokens: 12 } })
]

/** Boots the agent on a kernel with the LLM (SDK against `baseURL`) and the tools, journaled in `mode` over `store`. */
const runAgent = <E, R>(
  baseURL: string,
  tools: ReturnType<typeof makeTools>,
  mode: Journal.Mode,
  store: Layer.Layer<Journal.JournalStoreService, E, R>
) =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    const pid = yield* kernel.boot(agent, { grant: ["llm", "tools"], quota: { tokens: 1000 } })
    const reason = yield* kernel.waitExit(pid)
    return { reason, trace: yield* kernel.trace() }
  }).pipe(
    Effect.provide(
      Kernel.layer({
        drivers: [Llm.make({ baseURL, apiKey: "test", model: "test-model", retry: { times: 0 } }), tools.driver],
        journal: mode
      })
    ),
    Effect.provide(store)
  )

const answerOf = (trace: ReadonlyArray<{ readonly _tag: string }>) =>
  (trace.find((e) => e._tag === "Log") as { readonly message: string } | undefined)?.message

describe("a journaled agent run", () => {
  it.effect("record with the real SDK, then replay with the server gone: same results, identical trace", () =>
    Effect.gen(function* () {
      const store = Journal.makeMemoryStore()
      const storeLayer = Layer.succeed(Journal.JournalStoreService)(store)
      const scope = yield* Scope.make()
      const server = yield* OpenAiServer.make(script).pipe(Scope.provide(scope))
      const liveTools = makeTools()
      const recorded = yield* runAgent(server.baseURL, liveTools, "record", storeLayer)
      assert.deepStrictEqual(recorded.reason, Process.normal)
      assert.strictEqual(answerOf(recorded.trace), "answer: 2+3 is 5 and 10+20 is 30.")
      assert.strictEqual((yield* server.received).length, 3)
      assert.strictEqual(liveTools.runs.add, 2)
      const baseURL = server.baseURL
      yield* Scope.close(scope, undefined as never)

      const replayTools = makeTools()
      const replayed = yield* runAgent(
        baseURL,
        replayTools,
        "replay",
        Layer.succeed(Journal.JournalStoreService)(Journal.makeMemoryStore(store.records))
      )
      assert.deepStrictEqual(replayed.reason, Process.normal)
      assert.strictEqual(replayTools.runs.add, 0, "no tool ran again")
      assert.deepStrictEqual(replayed.trace, recorded.trace)
      const charges = replayed.trace.filter((e) => e._tag === "Charge")
      assert.strictEqual(charges.length, 5, "3 model calls and 2 tool calls, charged again from the journal")
    })
  )

  it.effect("a recording ended mid-way recovers from its file: nothing journaled is lost or executed again", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped()
      const path = `${dir}/journal.jsonl`
      const fileStore = JournalFileStore.layer({ path })

      // the first run: the third model call hangs; the run is ended (kernel shut down) while it is in flight
      const slow = [script[0]!, script[1]!, OpenAiServer.text("never sent", { delayMs: 60_000 })]
      const crashScope = yield* Scope.make()
      const first = yield* OpenAiServer.make(slow).pipe(Scope.provide(crashScope))
      const firstTools = makeTools()
      const crashed = Effect.gen(function* () {
        const kernel = yield* Kernel.Kernel
        yield* kernel.boot(agent, { grant: ["llm", "tools"], quota: { tokens: 1000 } })
        yield* first.awaitRequests((requests) => requests.length === 3)
      }).pipe(
        Effect.provide(
          Kernel.layer({
            drivers: [Llm.make({ baseURL: first.baseURL, apiKey: "test", model: "test-model" }), firstTools.driver],
            journal: "record"
          })
        ),
        Effect.provide(fileStore)
      )
      yield* crashed
      assert.strictEqual(firstTools.runs.add, 2)
      // the in-flight call was cancelled: the server sees its connection dropped (bounded wait, no sleep)
      const seen = yield* first
        .awaitRequests((requests) => requests[2]?.aborted === true)
        .pipe(Effect.timeoutOption("5 seconds"), TestClock.withLive)
      assert.isTrue(seen._tag === "Some", "the in-flight call was cancelled")
      yield* Scope.close(crashScope, undefined as never)
      // line 1 is the journal's header; each call has a Started line before its result
      const records = (text: string) => text.trim().split("\n").slice(1)
      const isResult = (line: string) => JSON.parse(line).result._tag !== "Started"
      const lines = records(yield* fs.readFileString(path))
      assert.strictEqual(lines.filter(isResult).length, 4, "two model calls and two tool calls were journaled")
      assert.strictEqual(lines.length - 4, 5, "five calls started: the last one was in flight")

      // the recovery: a fresh server that only knows the last answer
      const second = yield* OpenAiServer.make([script[2]!])
      const secondTools = makeTools()
      const recovered = yield* runAgent(second.baseURL, secondTools, "recover", fileStore)
      assert.deepStrictEqual(recovered.reason, Process.normal)
      assert.strictEqual(answerOf(recovered.trace), "answer: 2+3 is 5 and 10+20 is 30.")
      assert.strictEqual(secondTools.runs.add, 0, "the journaled tool calls were not executed again")
      const received = yield* second.received
      assert.strictEqual(received.length, 1, "only the call after the journaled prefix went to the model")
      assert.strictEqual(received[0].messages.length, 6, "with the whole conversation rebuilt from the journal")
      assert.strictEqual(records(yield* fs.readFileString(path)).filter(isResult).length, 5)
      // the call in flight at the crash ran again, and the run said so once, before any process started
      const recover = recovered.trace.filter((e) => e._tag === "Recover")
      assert.strictEqual(recover.length, 1)
      assert.deepStrictEqual((recover[0] as { readonly calls: unknown }).calls, [
        { pid: 1, op: 5, device: "llm", call: "read" }
      ])
    }).pipe(Effect.provide(NodeServices.layer))
  )
})
