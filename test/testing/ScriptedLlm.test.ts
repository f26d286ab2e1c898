import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type Llm, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

describe("ScriptedLlm", () => {
  it.effect("answers from its script through the kernel, charges tokens, records requests, fails past the end", () => {
    const llm = TestKernel.ScriptedLlm.make([
      { toolCalls: [{ name: "add", arguments: { a: 1, b: 2 } }], usage: { inputTokens: 10, outputTokens: 5 } },
      (request) => ({ text: `you said ${request.messages.length} things` })
    ])
    return TestKernel.runProcess(
      (grant) =>
        Effect.gen(function* () {
          const model = yield* Sys.open(grant.devices.llm!)
          const first = yield* Sys.read<Llm.LlmReply>(model, { messages: [{ role: "user", content: "add" }] })
          assert.deepStrictEqual(first.toolCalls, [{ id: "call_1", name: "add", arguments: { a: 1, b: 2 } }])
          assert.strictEqual(first.finishReason, "tool_calls")
          assert.strictEqual((yield* Sys.budget()).used.tokens, 15)
          const second = yield* Sys.read<Llm.LlmReply>(model, {
            messages: [
              { role: "user", content: "a" },
              { role: "assistant", content: "b" }
            ]
          })
          assert.strictEqual(second.text, "you said 2 things")
          assert.isAbove(second.usage.inputTokens, 0)
          const over = yield* Effect.flip(Sys.read(model, { messages: [{ role: "user", content: "more" }] }))
          assert.deepInclude(over, { _tag: "DeviceError", reason: "unavailable" })
          const bad = yield* Effect.flip(Sys.read(model, { messages: [] }))
          assert.deepInclude(bad, { _tag: "DeviceError", reason: "invalid-request" })
          assert.strictEqual(llm.requests.length, 3, "decoded requests are recorded; the invalid one is not")
        }),
      { grant: ["llm"] }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [llm] })))
  })

  it.effect("parallel calls through a one-slot scheduler are answered in order", () =>
    TestKernel.runProcess(
      (grant) =>
        Effect.gen(function* () {
          const model = yield* Sys.open(grant.devices.llm!)
          const replies = yield* Sys.readAll<Llm.LlmReply>(model, [
            { messages: [{ role: "user", content: "one" }] },
            { messages: [{ role: "user", content: "two" }] }
          ])
          assert.deepStrictEqual(
            replies.map((r) => r.text),
            ["1", "2"]
          )
        }),
      { grant: ["llm"] }
    ).pipe(
      Effect.provide(
        TestKernel.layer({
          drivers: [TestKernel.ScriptedLlm.make([{ text: "1" }, { text: "2" }], { schedule: { concurrency: 1 } })]
        })
      )
    )
  )
})
