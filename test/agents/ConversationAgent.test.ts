import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { type Accounts, ConversationAgent, Journal, Kernel, Llm, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { OpenAiServer, ScriptedLlm } from "effect-agent-os/testing"
import { definitions, makeTools, type TestTools as Tools } from "./fixtures.ts"

type Turn = { readonly body: unknown; readonly corr?: number; readonly noReplyCap?: boolean }

/**
 * Spawns the agent from a root process with start caps [llm, tools] and monitors it; sends each turn with a fresh
 * reply cap and waits for its answer (a turn without a reply cap is followed by the next at once), then sends `Term`.
 * Stops early when the agent ends.
 */
const converse = (
  image: Process.Image<ConversationAgent.Args>,
  turns: ReadonlyArray<Turn>,
  args: ConversationAgent.Args = {},
  quota?: Accounts.Quota
) =>
  Effect.gen(function* () {
    const outcome = yield* TestKernel.runProcess(
      (grant) =>
        Effect.gen(function* () {
          const { cap, pid } = yield* Sys.spawn(image, {
            args,
            caps: [grant.devices.llm!, grant.devices.tools!],
            quota
          })
          yield* Sys.monitor(cap)
          const replies: Array<{ readonly body: ConversationAgent.Reply; readonly corr: unknown }> = []
          const next = Effect.gen(function* () {
            while (true) {
              const message = yield* Sys.recv()
              if (!Process.isKernelMessage(message)) {
                replies.push({ body: message.body as ConversationAgent.Reply, corr: message.corr })
                return undefined
              }
              if (message.body._tag === "Down" && message.body.pid === pid) return message.body.reason
            }
          })
          for (const turn of turns) {
            const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
            yield* Sys.send(cap, turn.body, {
              caps: turn.noReplyCap === true ? [] : [replyTo],
              ...(turn.corr === undefined ? {} : { corr: turn.corr })
            })
            if (turn.noReplyCap === true) continue
            const ended = yield* next
            if (ended !== undefined) return { replies, reason: ended, pid }
          }
          yield* Sys.term(cap)
          while (true) {
            const ended = yield* next
            if (ended !== undefined) return { replies, reason: ended, pid }
          }
        }),
      { grant: ["llm", "tools"] }
    )
    const kernel = yield* Kernel.Kernel
    return { ...outcome, trace: yield* kernel.trace() }
  })

const runScripted = (
  options: ConversationAgent.Options,
  script: ReadonlyArray<ScriptedLlm.Step | ((request: Llm.LlmRequest) => ScriptedLlm.Step)>,
  turns: ReadonlyArray<Turn>,
  args: ConversationAgent.Args = {},
  quota?: Accounts.Quota
) =>
  Effect.gen(function* () {
    const llm = ScriptedLlm.make(script)
    const tools = makeTools()
    const result = yield* converse(ConversationAgent.make({ tools: definitions, ...options }), turns, args, quota).pipe(
      Effect.provide(TestKernel.layer({ drivers: [llm, tools.driver] }))
    )
    return { ...result, llm, tools }
  })

const user = (text: string, more?: Partial<ConversationAgent.User>): Turn => ({
  body: { _tag: "User", text, ...more }
})

const lookup = (...keys: ReadonlyArray<string>): ScriptedLlm.Step => ({
  toolCalls: keys.map((key) => ({ name: "lookup", arguments: { key } }))
})

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

describe("ConversationAgent", () => {
  it.effect("answers several user turns with tools, remembering earlier turns, and stops on Term", () =>
    Effect.gen(function* () {
      const run = yield* runScripted(
        {},
        [lookup("a"), { text: "a is value-of-a" }, lookup("a", "b", "a"), { text: "b is value-of-b" }],
        [user("what is a?"), user("and b?")]
      )
      assert.deepStrictEqual(run.reason, Process.normal)
      assert.deepStrictEqual(
        run.replies.map((r) => r.body),
        [
          { _tag: "Result", answer: "a is value-of-a", steps: 2 },
          { _tag: "Result", answer: "b is value-of-b", steps: 2 }
        ]
      )
      assert.deepStrictEqual(run.tools.runs, { a: 2, b: 1 }, "the duplicate call of turn 2 ran once")
      assert.strictEqual(run.tools.stats.maxInFlight, 2, "turn 2's calls ran in parallel")
      const turn2 = run.llm.requests[2]!
      assert.deepStrictEqual(
        turn2.messages.map((m) => m.role),
        ["system", "user", "assistant", "tool", "assistant", "user"]
      )
      assert.deepStrictEqual(turn2.messages[4], { role: "assistant", content: "a is value-of-a" })
      assert.deepStrictEqual(turn2.messages[5], { role: "user", content: "and b?" })
      for (const request of run.llm.requests) assertPaired(request)
    })
  )

  it.effect("starts from the initial history", () =>
    Effect.gen(function* () {
      const history: ReadonlyArray<Llm.Message> = [
        { role: "user", content: "my name is Ada" },
        { role: "assistant", content: "hello Ada" }
      ]
      const run = yield* runScripted({ system: "be brief" }, [{ text: "Ada" }], [user("what is my name?")], {
        history
      })
      assert.deepStrictEqual(run.llm.requests[0]!.messages, [
        { role: "system", content: "be brief" },
        ...history,
        { role: "user", content: "what is my name?" }
      ])
      assert.deepStrictEqual(run.replies[0]!.body, { _tag: "Result", answer: "Ada", steps: 1 })
    })
  )

  it.effect("reports failed turns as Error and goes on; sends images; echoes reply and corr", () =>
    Effect.gen(function* () {
      const run = yield* runScripted(
        {},
        [{ text: "a cat" }],
        [
          { ...user("what is this?", { images: ["not a url"], reply: 1 }), corr: 7 },
          user("what is this?", { images: ["https://example.com/cat.png"], reply: 2 }),
          user("and now?", { reply: 3 }),
          { body: { _tag: "Other" }, noReplyCap: true },
          user("still there?")
        ]
      )
      assert.deepStrictEqual(run.reason, Process.normal, "the loop never crashed")
      const bodies = run.replies.map((r) => r.body)
      assert.deepStrictEqual(bodies[0], { _tag: "Error", message: "invalid image URL: not a url", reply: 1 })
      assert.strictEqual(run.replies[0]!.corr, 7)
      assert.deepStrictEqual(bodies[1], { _tag: "Result", answer: "a cat", steps: 1, reply: 2 })
      assert.strictEqual(bodies[2]!._tag, "Error", "the model failed: script exhausted")
      assert.include(bodies[2]!._tag === "Error" ? bodies[2]!.message : "", "the script has 1 steps")
      assert.strictEqual(bodies[2]!.reply, 3)
      assert.strictEqual(bodies[3]!._tag, "Error", "the Other message was ignored; the next turn was answered")
      assert.strictEqual(bodies.length, 4)
      assert.deepStrictEqual(run.llm.requests[0]!.messages.at(-1), {
        role: "user",
        content: [
          { type: "text", text: "what is this?" },
          { type: "image", url: "https://example.com/cat.png" }
        ]
      })
      assert.isFalse(
        run.llm.requests.some((r) =>
          r.messages.some(
            (m) =>
              m.role === "user" &&
              Array.isArray(m.content) &&
              m.content.length === 2 &&
              JSON.stringify(m.content).includes("not a url")
          )
        ),
        "the invalid turn never reached the model"
      )
    })
  )

  it.effect("pages earlier turns out under a small mem quota; prompts stay paired", () =>
    Effect.gen(function* () {
      const big = (size: number): ScriptedLlm.Step => ({ toolCalls: [{ name: "big", arguments: { size } }] })
      const run = yield* runScripted(
        {},
        [big(300), { text: "one" }, big(310), big(320), { text: "two" }, big(330), { text: "three" }],
        [user("first"), user("second"), user("third")],
        {},
        { mem: 400 }
      )
      assert.deepStrictEqual(run.reason, Process.normal)
      assert.deepStrictEqual(
        run.replies.map((r) => (r.body._tag === "Result" ? r.body.answer : r.body.message)),
        ["one", "two", "three"]
      )
      for (const request of run.llm.requests) assertPaired(request)
      const last = run.llm.requests.at(-1)!
      assert.isTrue(
        last.messages.some((m) => m.role === "user" && m.content === "third"),
        "the current turn is pinned"
      )
      assert.isFalse(
        last.messages.some((m) => m.role === "user" && m.content === "first"),
        "the first turn was paged out"
      )
      assert.isTrue(last.messages.some((m) => m.role === "system" && m.content.includes("paged out")))
    })
  )

  it.effect("is ended with Quota when its token budget runs out mid-conversation; the parent sees the Down", () =>
    Effect.gen(function* () {
      const usage = { inputTokens: 30, outputTokens: 10 }
      const run = yield* runScripted(
        {},
        [
          { text: "one", usage },
          { ...lookup("a"), usage },
          { ...lookup("b"), usage },
          { text: "two", usage }
        ],
        [user("first"), user("second"), user("third")],
        {},
        { tokens: 100 }
      )
      assert.deepStrictEqual(run.reason, Process.quota("tokens"))
      assert.deepStrictEqual(
        run.replies.map((r) => r.body),
        [{ _tag: "Result", answer: "one", steps: 1 }],
        "the second turn got no answer"
      )
      assert.strictEqual(run.llm.requests.length, 3)
    })
  )

  it.live("replays a recorded conversation from the journal: identical trace, no model or tool called", () =>
    Effect.gen(function* () {
      const store = Journal.makeMemoryStore()
      const image = ConversationAgent.make({ tools: definitions })
      const turns = [user("what is a?"), user("and b and c?")]
      const run = (llm: ScriptedLlm.ScriptedLlm, tools: Tools, mode: Journal.Mode, s: Journal.JournalStore) =>
        converse(image, turns).pipe(
          Effect.provide(TestKernel.layer({ drivers: [llm, tools.driver], journal: mode, virtualTime: true })),
          Effect.provide(Layer.succeed(Journal.JournalStoreService)(s))
        )
      const liveLlm = ScriptedLlm.make([lookup("a"), { text: "one" }, lookup("b", "c"), { text: "two" }])
      const liveTools = makeTools()
      const recorded = yield* run(liveLlm, liveTools, "record", store)
      assert.strictEqual(recorded.replies.length, 2)
      assert.strictEqual(liveTools.stats.total, 3)

      const replayLlm = ScriptedLlm.make([])
      const replayTools = makeTools()
      const replayed = yield* run(replayLlm, replayTools, "replay", Journal.makeMemoryStore(store.records))
      assert.deepStrictEqual(replayed.replies, recorded.replies)
      assert.strictEqual(replayLlm.requests.length, 0, "no model call on replay")
      assert.strictEqual(replayTools.stats.total, 0, "no tool ran on replay")
      assert.deepStrictEqual(replayed.trace, recorded.trace)
    })
  )

  it.effect("converses with the real openai SDK against the loopback server", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([
        OpenAiServer.toolCalls([{ name: "lookup", arguments: { key: "a" } }], { text: "" }),
        OpenAiServer.text("a is value-of-a"),
        OpenAiServer.text("you asked about a")
      ])
      const tools = makeTools()
      const run = yield* converse(ConversationAgent.make({ tools: definitions }), [
        user("what is a?"),
        user("what did I ask?", { images: ["https://example.com/a.png"] })
      ]).pipe(
        Effect.provide(
          TestKernel.layer({
            drivers: [
              Llm.make({ baseURL: server.baseURL, apiKey: "test", model: "test-model", retry: { times: 0 } }),
              tools.driver
            ]
          })
        )
      )
      assert.deepStrictEqual(run.reason, Process.normal)
      assert.deepStrictEqual(
        run.replies.map((r) => r.body),
        [
          { _tag: "Result", answer: "a is value-of-a", steps: 2 },
          { _tag: "Result", answer: "you asked about a", steps: 1 }
        ]
      )
      const received = yield* server.received
      assert.strictEqual(received.length, 3)
      const roles = (received[2]!.messages as ReadonlyArray<{ role: string }>).map((m) => m.role)
      assert.deepStrictEqual(roles, ["system", "user", "assistant", "tool", "assistant", "user"])
      const last = received[2]!.messages.at(-1) as { content: ReadonlyArray<{ type: string }> }
      assert.deepStrictEqual(
        last.content.map((part) => part.type),
        ["text", "image_url"]
      )
    })
  )
})

describe("ConversationAgent without tools", () => {
  it.effect("needs no tools device: start caps [llm]", () =>
    Effect.gen(function* () {
      const llm = ScriptedLlm.make([{ text: "hello back" }])
      const answer = yield* TestKernel.runProcess(
        (grant) =>
          Effect.gen(function* () {
            const { cap } = yield* Sys.spawn(ConversationAgent.make(), { caps: [grant.devices.llm!] })
            const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
            yield* Sys.send(cap, { _tag: "User", text: "hello" } satisfies ConversationAgent.User, { caps: [replyTo] })
            const reply = yield* Sys.recv<ConversationAgent.Reply>()
            yield* Sys.term(cap)
            assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
            return reply.body
          }),
        { grant: ["llm"] }
      ).pipe(Effect.provide(TestKernel.layer({ drivers: [llm] })))
      assert.deepStrictEqual(answer, { _tag: "Result", answer: "hello back", steps: 1 })
    })
  )
})
