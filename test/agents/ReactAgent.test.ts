import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { type Accounts, Journal, Kernel, Llm, Process, ReactAgent, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { OpenAiServer, ScriptedLlm } from "effect-agent-os/testing"
import { definitions, makeTools, type TestTools as Tools } from "./fixtures.ts"

/**
 * Spawns `image` from a root process with start caps [llm, tools, reply], monitors it, and collects what it sends
 * until its `Down`.
 */
const spawnAgent = (image: Process.Image<ReactAgent.Args>, task: string, quota?: Accounts.Quota) =>
  Effect.gen(function* () {
    const outcome = yield* TestKernel.runProcess(
      (grant) =>
        Effect.gen(function* () {
          const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          const { cap, pid } = yield* Sys.spawn(image, {
            args: { task },
            caps: [grant.devices.llm!, grant.devices.tools!, replyTo],
            quota
          })
          yield* Sys.monitor(cap)
          const replies: Array<ReactAgent.Reply> = []
          while (true) {
            const message = yield* Sys.recv()
            if (!Process.isKernelMessage(message)) replies.push(message.body as ReactAgent.Reply)
            else if (message.body._tag === "Down" && message.body.pid === pid) {
              return { replies, reason: message.body.reason, pid }
            }
          }
        }),
      { grant: ["llm", "tools"] }
    )
    const kernel = yield* Kernel.Kernel
    return { ...outcome, trace: yield* kernel.trace() }
  })

const runScripted = (
  options: ReactAgent.Options,
  script: ReadonlyArray<ScriptedLlm.Step | ((request: Llm.LlmRequest) => ScriptedLlm.Step)>,
  task = "the task",
  quota?: Accounts.Quota
) =>
  Effect.gen(function* () {
    const llm = ScriptedLlm.make(script)
    const tools = makeTools()
    const result = yield* spawnAgent(ReactAgent.make({ tools: definitions, ...options }), task, quota).pipe(
      Effect.provide(TestKernel.layer({ drivers: [llm, tools.driver] }))
    )
    return { ...result, llm, tools }
  })

const lookup = (...keys: ReadonlyArray<string>): ScriptedLlm.Step => ({
  toolCalls: keys.map((key) => ({ name: "lookup", arguments: { key } }))
})

const toolMessages = (request: Llm.LlmRequest) => request.messages.filter((m) => m.role === "tool")

/** Every assistant tool call is followed at once by its results, and every result follows its call. */
const assertPaired = (request: Llm.LlmRequest) => {
  const messages = request.messages
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]!
    if (message.role === "assistant" && message.toolCalls !== undefined) {
      message.toolCalls.forEach((call, j) => {
        const result = messages[i + 1 + j]
        assert.isTrue(result?.role === "tool" && result.toolCallId === call.id, `call ${call.id} has its result`)
      })
      i += message.toolCalls.length
    } else {
      assert.notStrictEqual(message.role, "tool", "a tool result without its call")
    }
  }
}

const result = (replies: ReadonlyArray<ReactAgent.Reply>) => {
  assert.strictEqual(replies.length, 1)
  const reply = replies[0]!
  assert.strictEqual(reply._tag, "Result")
  return reply as Extract<ReactAgent.Reply, { _tag: "Result" }>
}

describe("ReactAgent", () => {
  it.effect("uses tools over several steps, then answers and exits Normal", () =>
    Effect.gen(function* () {
      const run = yield* runScripted({}, [
        lookup("a"),
        (request) => {
          const seen = toolMessages(request).map((m) => (m.role === "tool" ? m.content : ""))
          return seen.includes("value-of-a") ? lookup("b") : { text: "wrong" }
        },
        (request) => ({ text: `answer from ${toolMessages(request).length} results` })
      ])
      assert.deepStrictEqual(run.reason, Process.normal)
      assert.deepStrictEqual(result(run.replies), { _tag: "Result", answer: "answer from 2 results", steps: 3 })
      assert.deepStrictEqual(run.tools.runs, { a: 1, b: 1 })
      const first = run.llm.requests[0]!
      assert.strictEqual(first.messages[0]!.role, "system")
      assert.deepStrictEqual(first.messages[1], { role: "user", content: "the task" })
      assert.deepStrictEqual(
        first.tools?.map((t) => t.name),
        ["lookup", "big"]
      )
      assert.isUndefined(first.toolChoice)
      assert.isUndefined(first.stream)
    })
  )

  it.effect("runs the calls of a turn in parallel with one readAll, identical calls once", () =>
    Effect.gen(function* () {
      const run = yield* runScripted({}, [lookup("a", "b", "a", "c"), { text: "done" }])
      assert.deepStrictEqual(run.reason, Process.normal)
      assert.deepStrictEqual(run.tools.runs, { a: 1, b: 1, c: 1 }, "the duplicate call ran once")
      assert.strictEqual(run.tools.stats.maxInFlight, 3, "the three distinct calls were in flight together")
      // a readAll is one `read` syscall: two model calls and one for the four tool calls
      const reads = run.trace.filter((e) => e._tag === "Syscall" && e.pid === run.pid && e.call === "read")
      assert.strictEqual(reads.length, 3)
      const results = toolMessages(run.llm.requests[1]!)
      assert.strictEqual(results.length, 4, "every call id has a result")
      assert.deepStrictEqual(
        results.map((m) => (m.role === "tool" ? m.content : "")),
        ["value-of-a", "value-of-b", "value-of-a", "value-of-c"]
      )
      assertPaired(run.llm.requests[1]!)
    })
  )

  it.effect("truncates long tool results with a marker", () =>
    Effect.gen(function* () {
      const run = yield* runScripted({ toolResultCharsMax: 20 }, [
        { toolCalls: [{ name: "big", arguments: { size: 100 } }] },
        { text: "done" }
      ])
      const [message] = toolMessages(run.llm.requests[1]!)
      assert.strictEqual(
        message?.role === "tool" ? message.content : "",
        `${"x".repeat(20)}\n[truncated: 20 of 100 characters shown]`
      )
      assert.isTrue(ReactAgent.truncationMarker(20, 100).includes("truncated"))
      const short = yield* runScripted({}, [{ toolCalls: [{ name: "big", arguments: { size: 100 } }] }, { text: "ok" }])
      const [full] = toolMessages(short.llm.requests[1]!)
      assert.strictEqual(full?.role === "tool" ? full.content : "", "x".repeat(100))
    })
  )

  it.effect("is ended with Quota mid-task when its token budget runs out; the parent sees the Down", () =>
    Effect.gen(function* () {
      const usage = { inputTokens: 30, outputTokens: 10 }
      const step = (key: string): ScriptedLlm.Step => ({ ...lookup(key), usage })
      const run = yield* runScripted({}, [step("a"), step("b"), step("c"), step("d"), { text: "done" }], "task", {
        tokens: 100
      })
      assert.deepStrictEqual(run.reason, Process.quota("tokens"))
      assert.deepStrictEqual(run.replies, [], "no answer was sent")
      // 40 + 40 tokens fit, the third call brings the spend to 120 > 100: charged, then the agent is ended
      assert.strictEqual(run.llm.requests.length, 3)
      assert.deepStrictEqual(run.tools.runs, { a: 1, b: 1 }, "the third turn's tool never ran")
    })
  )

  it.effect("pages its transcript under a small mem quota; prompts never hold a call without its result", () =>
    Effect.gen(function* () {
      const keys = ["a", "b", "c", "d", "e", "f"]
      const script = [
        ...keys.map((key): ScriptedLlm.Step => ({
          toolCalls: [{ name: "big", arguments: { size: 300 + key.charCodeAt(0) } }]
        })),
        { text: "done" }
      ]
      const run = yield* runScripted({ steps: 10 }, script, "the task", { mem: 400 })
      assert.deepStrictEqual(run.reason, Process.normal)
      assert.strictEqual(result(run.replies).answer, "done")
      assert.strictEqual(run.llm.requests.length, 7)
      for (const request of run.llm.requests) {
        assertPaired(request)
        assert.isTrue(
          request.messages.some((m) => m.role === "user" && m.content === "the task"),
          "the task is pinned"
        )
      }
      const last = run.llm.requests.at(-1)!
      assert.isTrue(toolMessages(last).length < keys.length, "older results were paged out")
      assert.isTrue(
        last.messages.some((m) => m.role === "system" && m.content.includes("paged out")),
        "the paged-out note is kept"
      )
    })
  )

  it("rebuilds the prompt in pairs: calls without results and results without calls are dropped", () => {
    const entry = (id: number, message: Llm.Message, pinned = false) => ({
      id,
      body: { _tag: "Transcript", message },
      tokens: 1,
      pinned
    })
    const prompt = ReactAgent.promptOf([
      entry(1, { role: "system", content: "sys" }, true),
      entry(2, { role: "user", content: "task" }, true),
      { id: 9, body: { _tag: "PagedOut", ids: [3, 4], count: 2 }, tokens: 1, pinned: false },
      entry(5, { role: "tool", toolCallId: "orphan", content: "r0" }),
      entry(6, {
        role: "assistant",
        content: "",
        toolCalls: [
          { id: "c1", name: "lookup", arguments: { key: "a" } },
          { id: "c2", name: "lookup", arguments: { key: "b" } }
        ]
      }),
      entry(7, { role: "tool", toolCallId: "c2", content: "r2" }),
      entry(8, { role: "assistant", content: "", toolCalls: [{ id: "c3", name: "lookup", arguments: { key: "c" } }] })
    ])
    assert.deepStrictEqual(prompt, [
      { role: "system", content: "sys" },
      {
        role: "system",
        content: "Note: 2 earlier transcript entries were paged out of context memory and are not shown."
      },
      { role: "user", content: "task" },
      { role: "assistant", content: "", toolCalls: [{ id: "c2", name: "lookup", arguments: { key: "b" } }] },
      { role: "tool", toolCallId: "c2", content: "r2" }
    ])
  })

  it.effect("forces the final answer when a turn repeats the previous turn's calls", () =>
    Effect.gen(function* () {
      const run = yield* runScripted({}, [lookup("a", "b"), lookup("b", "a"), { text: "forced" }, { text: "unused" }])
      assert.deepStrictEqual(result(run.replies), { _tag: "Result", answer: "forced", steps: 3 })
      assert.deepStrictEqual(run.tools.runs, { a: 1, b: 1 }, "the repeated calls did not run")
      const forced = run.llm.requests[2]!
      assert.strictEqual(forced.toolChoice, "none")
      assert.deepStrictEqual(forced.messages.at(-1), { role: "user", content: ReactAgent.finalAnswerNote })
      assertPaired(forced)
    })
  )

  it.effect("forces the final answer after turns with no new information", () =>
    Effect.gen(function* () {
      const run = yield* runScripted({ staleTurnsMax: 2 }, [
        lookup("a"),
        lookup("b"),
        lookup("a"),
        lookup("b"),
        { text: "forced" },
        lookup("c")
      ])
      assert.deepStrictEqual(result(run.replies), { _tag: "Result", answer: "forced", steps: 5 })
      assert.strictEqual(run.llm.requests[4]!.toolChoice, "none")
      assert.strictEqual(run.llm.requests.length, 5)
    })
  )

  it.effect("grows the step limit while progress is made, up to stepsMax", () =>
    Effect.gen(function* () {
      let n = 0
      const endless = (request: Llm.LlmRequest): ScriptedLlm.Step =>
        request.toolChoice === "none" ? { text: `stopped after ${request.messages.length}` } : lookup(`k${++n}`)
      const script = Array.from({ length: 40 }, () => endless)
      const fixed = yield* runScripted({ steps: 3, stepsGrowth: 0 }, script)
      assert.strictEqual(result(fixed.replies).steps, 3)
      assert.strictEqual(fixed.llm.requests[2]!.toolChoice, "none")
      const growing = yield* runScripted({ steps: 3, stepsGrowth: 1, stepsMax: 6 }, script)
      assert.strictEqual(result(growing.replies).steps, 6, "grew from 3 to the ceiling 6")
      assert.deepStrictEqual(
        growing.llm.requests.map((r) => r.toolChoice ?? "auto"),
        ["auto", "auto", "auto", "auto", "auto", "none"]
      )
      const ceiling = yield* runScripted({ steps: 2, stepsGrowth: 100 }, script)
      assert.strictEqual(result(ceiling.replies).steps, 20, "stepsMax defaults to 20")
    })
  )

  it.effect(
    "reflection: Revise rewrites without tools, Continue goes back to the tools, bounded by reflectionsMax",
    () =>
      Effect.gen(function* () {
        const verdicts: Array<string> = []
        const revise = yield* runScripted(
          {
            reflect: (answer) =>
              Effect.sync(() => {
                verdicts.push(answer)
                return answer === "draft" ? { _tag: "Revise", note: "be precise" } : { _tag: "Accept" }
              })
          },
          [{ text: "draft" }, { text: "precise" }]
        )
        assert.deepStrictEqual(result(revise.replies), { _tag: "Result", answer: "precise", steps: 2 })
        assert.deepStrictEqual(verdicts, ["draft", "precise"])
        const rewrite = revise.llm.requests[1]!
        assert.strictEqual(rewrite.toolChoice, "none")
        assert.deepStrictEqual(rewrite.messages.slice(-2), [
          { role: "assistant", content: "draft" },
          { role: "user", content: "be precise" }
        ])

        let reflections = 0
        const continued = yield* runScripted(
          {
            reflect: () =>
              Effect.sync(() => {
                reflections++
                return { _tag: "Continue", note: "look up more" } as const
              })
          },
          [{ text: "first" }, lookup("x"), { text: "second" }, lookup("y"), { text: "third" }, { text: "unused" }]
        )
        assert.strictEqual(reflections, 2, "reflectionsMax defaults to 2")
        assert.deepStrictEqual(result(continued.replies), { _tag: "Result", answer: "third", steps: 5 })
        assert.deepStrictEqual(continued.tools.runs, { x: 1, y: 1 })

        let revisions = 0
        const bounded = yield* runScripted(
          {
            reflectionsMax: 1,
            reflect: () =>
              Effect.sync(() => {
                revisions++
                return { _tag: "Revise", note: "again" } as const
              })
          },
          [{ text: "one" }, { text: "two" }, { text: "three" }]
        )
        assert.strictEqual(revisions, 1)
        assert.deepStrictEqual(result(bounded.replies), { _tag: "Result", answer: "two", steps: 2 })
      })
  )

  it.effect("replies Error and exits with a Fault on an LLM DeviceError", () =>
    Effect.gen(function* () {
      const run = yield* runScripted({}, [lookup("a")])
      assert.strictEqual(run.reason._tag, "Fault")
      assert.strictEqual(run.replies.length, 1)
      const reply = run.replies[0]!
      assert.strictEqual(reply._tag, "Error")
      assert.include(reply._tag === "Error" ? reply.message : "", "the script has 1 steps")
      assert.include(run.reason._tag === "Fault" ? run.reason.error : "", "the script has 1 steps")
    })
  )

  it.live("replays a recorded run from the journal: identical trace, no model or tool called", () =>
    Effect.gen(function* () {
      const store = Journal.makeMemoryStore()
      const image = ReactAgent.make({ tools: definitions })
      const record = (llm: ScriptedLlm.ScriptedLlm, tools: Tools, mode: Journal.Mode, s: Journal.JournalStore) =>
        spawnAgent(image, "the task", { tokens: 10_000 }).pipe(
          Effect.provide(TestKernel.layer({ drivers: [llm, tools.driver], journal: mode, virtualTime: true })),
          Effect.provide(Layer.succeed(Journal.JournalStoreService)(s))
        )
      const liveLlm = ScriptedLlm.make([lookup("a", "b"), lookup("c"), { text: "done" }])
      const liveTools = makeTools()
      const recorded = yield* record(liveLlm, liveTools, "record", store)
      assert.deepStrictEqual(result(recorded.replies).answer, "done")
      assert.strictEqual(liveTools.stats.total, 3)

      const replayLlm = ScriptedLlm.make([])
      const replayTools = makeTools()
      const replayed = yield* record(replayLlm, replayTools, "replay", Journal.makeMemoryStore(store.records))
      assert.deepStrictEqual(replayed.replies, recorded.replies)
      assert.deepStrictEqual(replayed.reason, Process.normal)
      assert.strictEqual(replayLlm.requests.length, 0, "no model call on replay")
      assert.strictEqual(replayTools.stats.total, 0, "no tool ran on replay")
      assert.deepStrictEqual(replayed.trace, recorded.trace)
    })
  )

  it.effect("runs with the real openai SDK against the loopback server (streamed, parallel calls)", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([
        OpenAiServer.toolCalls(
          [
            { name: "lookup", arguments: { key: "a" } },
            { name: "lookup", arguments: { key: "b" } }
          ],
          { text: "" }
        ),
        OpenAiServer.stream(["a is ", "value-of-a"])
      ])
      const deltas: Array<string> = []
      const tools = makeTools()
      const run = yield* spawnAgent(ReactAgent.make({ tools: definitions, stream: true }), "what is a?").pipe(
        Effect.provide(
          TestKernel.layer({
            drivers: [
              Llm.make({
                baseURL: server.baseURL,
                apiKey: "test",
                model: "test-model",
                retry: { times: 0 },
                onDelta: (text) => void deltas.push(text)
              }),
              tools.driver
            ]
          })
        )
      )
      assert.deepStrictEqual(result(run.replies), { _tag: "Result", answer: "a is value-of-a", steps: 2 })
      assert.deepStrictEqual(tools.runs, { a: 1, b: 1 })
      assert.strictEqual(tools.stats.maxInFlight, 2)
      assert.deepStrictEqual(deltas, ["a is ", "value-of-a"])
      const received = yield* server.received
      assert.strictEqual(received.length, 2)
      assert.strictEqual(received[1]!.stream, true)
      const messages = received[1]!.messages as ReadonlyArray<{ role: string; tool_call_id?: string }>
      assert.deepStrictEqual(
        messages.map((m) => m.role),
        ["system", "user", "assistant", "tool", "tool"]
      )
    })
  )
})

describe("ReactAgent without tools", () => {
  it.effect("needs no tools device: start caps [llm, reply]; a tool call anyway reads back unknown-tool", () =>
    Effect.gen(function* () {
      const llm = ScriptedLlm.make([{ toolCalls: [{ name: "lookup", arguments: { key: "a" } }] }, { text: "plain" }])
      const outcome = yield* TestKernel.runProcess(
        (grant) =>
          Effect.gen(function* () {
            const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
            const { cap } = yield* Sys.spawn(ReactAgent.make(), {
              args: { task: "say something" },
              caps: [grant.devices.llm!, replyTo]
            })
            const reply = yield* Sys.recv<ReactAgent.Reply>()
            return { reply: reply.body, reason: yield* Sys.waitpid(cap) }
          }),
        { grant: ["llm"] }
      ).pipe(Effect.provide(TestKernel.layer({ drivers: [llm] })))
      assert.deepStrictEqual(outcome, { reply: { _tag: "Result", answer: "plain", steps: 2 }, reason: Process.normal })
      assert.isUndefined(llm.requests[0]!.tools, "no tools are offered to the model")
      const [result] = toolMessages(llm.requests[1]!)
      assert.include(result!.content, "unknown-tool")
    })
  )

  it.effect("an agent with tools still needs its tools cap", () =>
    Effect.gen(function* () {
      const reason = yield* TestKernel.runProcess(
        (grant) =>
          Effect.gen(function* () {
            const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
            const { cap } = yield* Sys.spawn(ReactAgent.make({ tools: definitions }), {
              args: { task: "t" },
              caps: [grant.devices.llm!, replyTo]
            })
            return yield* Sys.waitpid(cap)
          }),
        { grant: ["llm"] }
      ).pipe(Effect.provide(TestKernel.layer({ drivers: [ScriptedLlm.make([])] })))
      assert.strictEqual(reason._tag, "Fault")
      assert.include(JSON.stringify(reason), "[llm, tools, reply]")
    })
  )
})
