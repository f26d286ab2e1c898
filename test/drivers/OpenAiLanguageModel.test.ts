import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer, Schema, Stream } from "effect"
import { AiError, LanguageModel, Tool, Toolkit } from "effect/ai"
import { FetchHttpClient } from "effect/http"
import { type Device, Llm, OpenAiLanguageModel } from "effect-agent-os"
import { OpenAiServer } from "effect-agent-os/testing"

const context: Device.CallContext = { pid: 1, op: 1, priority: 0, deadline: undefined }

/** A loopback server with `script` and the adapter's layer pointed at it. */
const setup = (script: ReadonlyArray<OpenAiServer.Reply>, options?: Partial<OpenAiLanguageModel.Options>) =>
  Effect.gen(function* () {
    const server = yield* OpenAiServer.make(script)
    const model = OpenAiLanguageModel.layer({ baseURL: server.baseURL, model: "test-model", ...options }).pipe(
      Layer.provide(FetchHttpClient.layer)
    )
    return { server, model }
  })

describe("OpenAiLanguageModel", () => {
  it.live("generateText: the text and usage; the model, messages and options sent; no key, no Authorization", () =>
    Effect.gen(function* () {
      const { server, model } = yield* setup(
        [OpenAiServer.text("Hello!", { usage: { promptTokens: 12, completionTokens: 3 } })],
        { maxTokens: 50, temperature: 0.2 }
      )
      const response = yield* LanguageModel.generateText({
        prompt: [
          { role: "system", content: "Be brief." },
          { role: "user", content: "hi" }
        ]
      }).pipe(Effect.provide(model))
      assert.strictEqual(response.text, "Hello!")
      assert.strictEqual(response.finishReason, "stop")
      assert.strictEqual(response.usage.inputTokens.total, 12)
      assert.strictEqual(response.usage.outputTokens.total, 3)
      const [request] = yield* server.requests
      assert.strictEqual(request!.path, "/v1/chat/completions")
      assert.isUndefined(request!.headers.authorization)
      assert.deepInclude(request!.body, { model: "test-model", max_completion_tokens: 50, temperature: 0.2 })
      assert.deepStrictEqual(request!.body.messages, [
        { role: "system", content: "Be brief." },
        { role: "user", content: "hi" }
      ])
    })
  )

  it.live("sends the key as a bearer token", () =>
    Effect.gen(function* () {
      const { server, model } = yield* setup([OpenAiServer.text("ok")], { apiKey: "secret" })
      yield* LanguageModel.generateText({ prompt: "hi" }).pipe(Effect.provide(model))
      assert.strictEqual((yield* server.requests)[0]!.headers.authorization, "Bearer secret")
    })
  )

  it.live("streamText: text deltas as the server sends them, then finish with the usage", () =>
    Effect.gen(function* () {
      const { server, model } = yield* setup([
        OpenAiServer.stream(["Hel", "lo", "!"], { usage: { promptTokens: 5, completionTokens: 2 } })
      ])
      const parts = yield* LanguageModel.streamText({ prompt: "hi" }).pipe(Stream.runCollect, Effect.provide(model))
      const deltas = parts.flatMap((part) => (part.type === "text-delta" ? [part.delta] : []))
      assert.deepStrictEqual(deltas, ["Hel", "lo", "!"])
      const finish = parts.find((part) => part.type === "finish")
      assert.strictEqual(finish?.type === "finish" ? finish.usage.outputTokens.total : undefined, 2)
      assert.isTrue((yield* server.requests)[0]!.stream)
    })
  )

  it.live("streamText: tool calls are assembled from their fragments", () =>
    Effect.gen(function* () {
      const { model } = yield* setup([
        OpenAiServer.toolCalls([{ id: "call_a", name: "lookup", arguments: { key: "a" } }])
      ])
      const lookup = Tool.dynamic("lookup", {
        parameters: { type: "object", properties: { key: { type: "string" } } }
      })
      const parts = yield* LanguageModel.streamText({
        prompt: "hi",
        toolkit: Toolkit.make(lookup),
        disableToolCallResolution: true
      }).pipe(Stream.runCollect, Effect.provide(model))
      const call = parts.find((part) => part.type === "tool-call")
      assert.deepInclude(call, { id: "call_a", name: "lookup", params: { key: "a" } })
    })
  )

  it.live("behind Llm.fromLanguageModel: a kernel LLM device with tools, tool calls and their results", () =>
    Effect.gen(function* () {
      const { server, model } = yield* setup([
        OpenAiServer.toolCalls([{ id: "call_1", name: "add", arguments: { a: 1, b: 2 } }], {
          text: "",
          usage: { promptTokens: 20, completionTokens: 5 }
        }),
        OpenAiServer.text("3")
      ])
      const driver = yield* Llm.fromLanguageModel().pipe(Effect.provide(model))
      const handle = yield* driver.open({ pid: 1 })
      const add = {
        name: "add",
        description: "Adds a and b",
        parameters: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } } }
      }
      const first = yield* handle.read({ messages: [{ role: "user", content: "1 + 2?" }], tools: [add] }, context)
      const reply = first.value as Llm.LlmReply
      assert.deepStrictEqual(reply.toolCalls, [{ id: "call_1", name: "add", arguments: { a: 1, b: 2 } }])
      assert.strictEqual(reply.finishReason, "tool_calls")
      assert.deepStrictEqual(first.cost, { tokens: 25 })
      const second = yield* handle.read(
        {
          messages: [
            { role: "user", content: "1 + 2?" },
            { role: "assistant", content: "", toolCalls: reply.toolCalls },
            { role: "tool", toolCallId: "call_1", content: "3" }
          ],
          tools: [add]
        },
        context
      )
      assert.strictEqual((second.value as Llm.LlmReply).text, "3")
      const [one, two] = yield* server.requests
      assert.deepStrictEqual(one!.body.tools, [
        { type: "function", function: { name: "add", description: "Adds a and b", parameters: add.parameters } }
      ])
      assert.strictEqual(one!.body.tool_choice, "auto")
      assert.deepStrictEqual(two!.body.messages.slice(1), [
        {
          role: "assistant",
          content: "",
          tool_calls: [{ id: "call_1", type: "function", function: { name: "add", arguments: '{"a":1,"b":2}' } }]
        },
        { role: "tool", tool_call_id: "call_1", content: "3" }
      ])
    })
  )

  it.live("HTTP errors are AiErrors: 429 RateLimitError with Retry-After (retryable), 401 AuthenticationError", () =>
    Effect.gen(function* () {
      const { model } = yield* setup([OpenAiServer.rateLimited(7), OpenAiServer.failure(401, "bad key")])
      const limited = yield* Effect.flip(LanguageModel.generateText({ prompt: "hi" }).pipe(Effect.provide(model)))
      assert.isTrue(AiError.isAiError(limited))
      assert.strictEqual(limited.reason._tag, "RateLimitError")
      assert.isTrue(limited.isRetryable)
      if (limited.reason._tag === "RateLimitError") {
        assert.strictEqual(Duration.toMillis(limited.reason.retryAfter ?? Duration.zero), 7_000)
      }
      const unauthorized = yield* Effect.flip(LanguageModel.generateText({ prompt: "hi" }).pipe(Effect.provide(model)))
      assert.strictEqual(unauthorized.reason._tag, "AuthenticationError")
    })
  )

  it.live("generateObject: a JSON-Schema response format, the answer decoded with the Schema", () =>
    Effect.gen(function* () {
      const { server, model } = yield* setup([OpenAiServer.text('{"city":"Paris","population":2102650}')])
      const City = Schema.Struct({ city: Schema.String, population: Schema.Number })
      const response = yield* LanguageModel.generateObject({ prompt: "Paris?", schema: City, objectName: "city" }).pipe(
        Effect.provide(model)
      )
      assert.deepStrictEqual(response.value, { city: "Paris", population: 2102650 })
      assert.strictEqual((yield* server.requests)[0]!.body.response_format.type, "json_schema")
    })
  )

  it.live("a refused connection is a NetworkError", () =>
    Effect.gen(function* () {
      const model = OpenAiLanguageModel.layer({ baseURL: "http://127.0.0.1:9/v1", model: "m" }).pipe(
        Layer.provide(FetchHttpClient.layer)
      )
      const error = yield* Effect.flip(LanguageModel.generateText({ prompt: "hi" }).pipe(Effect.provide(model)))
      assert.strictEqual(error.reason._tag, "NetworkError")
    })
  )
})
