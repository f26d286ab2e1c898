import { assert, describe, it } from "@effect/vitest"
import { Clock, ConfigProvider, Effect, Fiber, Stream } from "effect"
import { AiError, LanguageModel } from "effect/ai"
import { ContextMemory, type Device, Llm } from "effect-agent-os"
import { OpenAiServer } from "effect-agent-os/testing"

const context: Device.CallContext = { pid: 1, op: 1, priority: 0, deadline: undefined }

const hello: Llm.LlmRequest = { messages: [{ role: "user", content: "hi" }] }

/** A loopback server with `script`, an LLM driver pointed at it (fast backoff), and an open handle. */
const setup = (script: ReadonlyArray<OpenAiServer.Reply>, options: Llm.Options = {}) =>
  Effect.gen(function* () {
    const server = yield* OpenAiServer.make(script)
    const driver = yield* Llm.make({
      baseURL: server.baseURL,
      apiKey: "test-key",
      model: "test-model",
      ...options,
      retry: { base: "10 millis", ...options.retry }
    })
    const handle = yield* driver.open({ pid: 1 })
    const read = (request: unknown) =>
      handle
        .read(request, context)
        .pipe(Effect.map((result) => ({ value: result.value as Llm.LlmReply, cost: result.cost })))
    return { server, driver, read }
  })

const isDeviceError = (error: unknown, reason: string, retryable: boolean) =>
  assert.deepInclude(error as object, { _tag: "DeviceError", device: "llm", reason, retryable })

describe("Llm.make", () => {
  it.live("a text reply: text, usage, finish reason; cost in tokens and usd 0 without a price table", () =>
    Effect.gen(function* () {
      const { driver, read, server } = yield* setup([
        OpenAiServer.text("Hello!", { usage: { promptTokens: 12, completionTokens: 3 } })
      ])
      assert.strictEqual(driver.name, "llm")
      assert.isTrue(driver.scheduled)
      assert.deepStrictEqual(driver.meters, ["tokens", "usd"])
      const { cost, value } = yield* read({
        messages: [
          { role: "system", content: "be brief" },
          { role: "user", content: "hi" }
        ],
        maxTokens: 50,
        temperature: 0
      })
      assert.deepStrictEqual(value, {
        text: "Hello!",
        toolCalls: [],
        finishReason: "stop",
        usage: { inputTokens: 12, outputTokens: 3 },
        model: "test-model"
      })
      assert.deepStrictEqual(cost, { tokens: 15, usd: 0 })
      const [body] = yield* server.received
      assert.deepStrictEqual(body, {
        model: "test-model",
        messages: [
          { role: "system", content: "be brief" },
          { role: "user", content: "hi" }
        ],
        max_completion_tokens: 50,
        temperature: 0,
        stream: false
      })
    })
  )

  it.live("usd comes from the price table of the requested model", () =>
    Effect.gen(function* () {
      const usage = { promptTokens: 1_000, completionTokens: 500 }
      const { read, server } = yield* setup([OpenAiServer.text("a", { usage }), OpenAiServer.text("b", { usage })], {
        prices: {
          "test-model": { inputPerMTok: 2, outputPerMTok: 8 },
          "big-model": { inputPerMTok: 10, outputPerMTok: 30 }
        }
      })
      const first = yield* read(hello)
      assert.strictEqual(first.cost?.tokens, 1_500)
      assert.closeTo(first.cost!.usd!, 0.006, 1e-12)
      const second = yield* read({ ...hello, model: "big-model" })
      assert.closeTo(second.cost!.usd!, 0.025, 1e-12)
      assert.deepStrictEqual(
        (yield* server.received).map((body) => body.model),
        ["test-model", "big-model"]
      )
    })
  )

  it.live("tool calls: tools are sent as functions, arguments parsed, unparsable ones kept raw and marked", () =>
    Effect.gen(function* () {
      const { read, server } = yield* setup([
        OpenAiServer.toolCalls([
          { id: "call_w", name: "weather", arguments: { city: "Paris", days: 2 } },
          { id: "call_x", name: "weather", arguments: '{"city": ' }
        ]),
        OpenAiServer.text("Sunny.")
      ])
      const weather = {
        name: "weather",
        description: "Forecast for a city",
        parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
      }
      const { value } = yield* read({ messages: hello.messages, tools: [weather], toolChoice: "auto" })
      assert.strictEqual(value.finishReason, "tool_calls")
      assert.deepStrictEqual(value.toolCalls, [
        { id: "call_w", name: "weather", arguments: { city: "Paris", days: 2 } },
        { id: "call_x", name: "weather", arguments: '{"city": ', argumentsInvalid: true }
      ])
      const [first] = yield* server.received
      assert.deepStrictEqual(first.tools, [{ type: "function", function: weather }])
      assert.strictEqual(first.tool_choice, "auto")
      // the reply's tool calls go back as they are, answered by tool messages
      const followUp = yield* read({
        messages: [
          ...hello.messages,
          { role: "assistant", toolCalls: value.toolCalls },
          { role: "tool", toolCallId: "call_w", content: "sunny" },
          { role: "tool", toolCallId: "call_x", content: "error: invalid arguments" }
        ],
        tools: [weather]
      })
      assert.strictEqual(followUp.value.text, "Sunny.")
      const second = (yield* server.received)[1]
      assert.deepStrictEqual(second.messages.slice(1), [
        {
          role: "assistant",
          content: null,
          tool_calls: [
            {
              id: "call_w",
              type: "function",
              function: { name: "weather", arguments: '{"city":"Paris","days":2}' }
            },
            { id: "call_x", type: "function", function: { name: "weather", arguments: '{"city": ' } }
          ]
        },
        { role: "tool", tool_call_id: "call_w", content: "sunny" },
        { role: "tool", tool_call_id: "call_x", content: "error: invalid arguments" }
      ])
    })
  )

  it.live("vision: an image part is sent as image_url", () =>
    Effect.gen(function* () {
      const { read, server } = yield* setup([OpenAiServer.text("A cat.")])
      yield* read({
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "What is this?" },
              { type: "image", url: "https://example.com/cat.png", detail: "low" }
            ]
          }
        ]
      })
      const [body] = yield* server.received
      assert.deepStrictEqual(body.messages, [
        {
          role: "user",
          content: [
            { type: "text", text: "What is this?" },
            { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "low" } }
          ]
        }
      ])
    })
  )

  it.live("streaming: deltas reach onDelta with the caller's context; the read resolves once with text and usage", () =>
    Effect.gen(function* () {
      const deltas: Array<[string, number]> = []
      const { read, server } = yield* setup(
        [
          OpenAiServer.stream(["Hel", "lo, ", "world"], {
            usage: { promptTokens: 4, completionTokens: 3 },
            intervalMs: 5
          })
        ],
        { onDelta: (text, callContext) => deltas.push([text, callContext.pid]) }
      )
      const { cost, value } = yield* read({ ...hello, stream: true })
      assert.deepStrictEqual(deltas, [
        ["Hel", 1],
        ["lo, ", 1],
        ["world", 1]
      ])
      assert.deepStrictEqual(value, {
        text: "Hello, world",
        toolCalls: [],
        finishReason: "stop",
        usage: { inputTokens: 4, outputTokens: 3 },
        model: "test-model"
      })
      assert.deepStrictEqual(cost, { tokens: 7, usd: 0 })
      const [body] = yield* server.received
      assert.strictEqual(body.stream, true)
      assert.deepStrictEqual(body.stream_options, { include_usage: true })
    })
  )

  it.live("streaming: tool-call fragments are assembled; a throwing onDelta does not fail the call", () =>
    Effect.gen(function* () {
      const { read } = yield* setup(
        [OpenAiServer.toolCalls([{ id: "c1", name: "add", arguments: { a: 1, b: 2 } }], { text: "Adding." })],
        {
          onDelta: () => {
            throw new Error("display broke")
          }
        }
      )
      const { value } = yield* read({ ...hello, stream: true })
      assert.strictEqual(value.text, "Adding.")
      assert.deepStrictEqual(value.toolCalls, [{ id: "c1", name: "add", arguments: { a: 1, b: 2 } }])
      assert.strictEqual(value.finishReason, "tool_calls")
    })
  )

  it.live("a server that sends no usage: the call is charged the estimate of prompt and completion, never 0", () =>
    Effect.gen(function* () {
      const price = { inputPerMTok: 2, outputPerMTok: 8 }
      const { read } = yield* setup([OpenAiServer.text("Four score and seven years ago", { usage: null })], {
        prices: { "test-model": price }
      })
      const request: Llm.LlmRequest = {
        messages: [
          { role: "system", content: "You are a historian." },
          { role: "user", content: "How does the Gettysburg Address begin?" }
        ]
      }
      const { cost, value } = yield* read(request)
      const inputTokens = Llm.estimatePromptTokens(request)
      const outputTokens = ContextMemory.estimateTokens("Four score and seven years ago")
      assert.deepStrictEqual(value.usage, { inputTokens, outputTokens, estimated: true })
      assert.isAbove(inputTokens, 0)
      assert.strictEqual(cost?.tokens, inputTokens + outputTokens)
      assert.closeTo(cost!.usd!, (inputTokens * 2 + outputTokens * 8) / 1_000_000, 1e-15)
    })
  )

  it.live("partial usage: the count the server sent is kept, the missing one estimated", () =>
    Effect.gen(function* () {
      const { read } = yield* setup([
        OpenAiServer.text("done", { usage: { promptTokens: 40, completionTokens: null } }),
        OpenAiServer.text("done", { usage: { promptTokens: null, completionTokens: 9 } })
      ])
      const first = yield* read(hello)
      assert.deepStrictEqual(first.value.usage, { inputTokens: 40, outputTokens: 1, estimated: true })
      assert.strictEqual(first.cost?.tokens, 41)
      const second = yield* read(hello)
      assert.deepStrictEqual(second.value.usage, {
        inputTokens: Llm.estimatePromptTokens(hello),
        outputTokens: 9,
        estimated: true
      })
    })
  )

  it.live("streaming with no usage chunk: the estimate is charged", () =>
    Effect.gen(function* () {
      const { read } = yield* setup([OpenAiServer.stream(["Hel", "lo"], { usage: null })])
      const { cost, value } = yield* read({ ...hello, stream: true })
      assert.strictEqual(value.text, "Hello")
      assert.deepStrictEqual(value.usage, {
        inputTokens: Llm.estimatePromptTokens(hello),
        outputTokens: ContextMemory.estimateTokens("Hello"),
        estimated: true
      })
      assert.isAbove(cost!.tokens!, 0)
    })
  )

  it.live("a reply with neither text nor usage still costs at least one completion token", () =>
    Effect.gen(function* () {
      const { read } = yield* setup([OpenAiServer.text("", { usage: null })])
      const { value } = yield* read(hello)
      assert.strictEqual(value.usage.outputTokens, 1)
    })
  )

  it.live("429 with Retry-After: waits what the server asked, then succeeds", () =>
    Effect.gen(function* () {
      const { read, server } = yield* setup([OpenAiServer.rateLimited(1), OpenAiServer.text("ok")])
      const started = yield* Clock.currentTimeMillis
      const { value } = yield* read(hello)
      const elapsed = (yield* Clock.currentTimeMillis) - started
      assert.strictEqual(value.text, "ok")
      assert.isAtLeast(elapsed, 1_000, "Retry-After: 1 honoured (backoff alone would be 10 ms)")
      assert.deepStrictEqual(
        (yield* server.requests).map((r) => r.status),
        [429, 200]
      )
    })
  )

  it.live("500 twice, then success", () =>
    Effect.gen(function* () {
      const { read, server } = yield* setup([
        OpenAiServer.serverError(),
        OpenAiServer.serverError(),
        OpenAiServer.text("up")
      ])
      const { value } = yield* read(hello)
      assert.strictEqual(value.text, "up")
      assert.deepStrictEqual(
        (yield* server.requests).map((r) => r.status),
        [500, 500, 200]
      )
    })
  )

  it.live("retries exhausted: the last error, retryable", () =>
    Effect.gen(function* () {
      const { read, server } = yield* setup(
        [OpenAiServer.serverError(), OpenAiServer.serverError(), OpenAiServer.serverError(), OpenAiServer.text("late")],
        { retry: { times: 2 } }
      )
      const error = yield* Effect.flip(read(hello))
      isDeviceError(error, "unavailable", true)
      assert.strictEqual((yield* server.requests).length, 3, "first attempt + 2 retries")
      assert.strictEqual(yield* server.pending, 1)

      const limited = yield* setup([OpenAiServer.rateLimited(0), OpenAiServer.rateLimited(0)], { retry: { times: 1 } })
      isDeviceError(yield* Effect.flip(limited.read(hello)), "rate-limited", true)
      assert.strictEqual((yield* limited.server.requests).length, 2)
    })
  )

  it.live("400: invalid-request, not retried", () =>
    Effect.gen(function* () {
      const { read, server } = yield* setup([
        OpenAiServer.badRequest("Invalid 'messages[0].content'"),
        OpenAiServer.text("never")
      ])
      const error = yield* Effect.flip(read(hello))
      isDeviceError(error, "invalid-request", false)
      assert.include(error.message, "Invalid 'messages[0].content'")
      assert.strictEqual((yield* server.requests).length, 1)
    })
  )

  it.live("a request that does not decode is invalid-request and never reaches the server", () =>
    Effect.gen(function* () {
      const { read, server } = yield* setup([OpenAiServer.text("never")])
      const invalid: ReadonlyArray<unknown> = [
        undefined,
        "hi",
        { messages: [] },
        { messages: [{ role: "wizard", content: "hi" }] },
        { messages: [{ role: "user" }] },
        { messages: hello.messages, maxTokens: 0 },
        { messages: hello.messages, tools: [{ description: "no name" }] },
        { messages: [{ role: "user", content: [{ type: "image" }] }] },
        { messages: [{ role: "user", content: [{ type: "image", url: "cat.png" }] }] }
      ]
      for (const request of invalid) isDeviceError(yield* Effect.flip(read(request)), "invalid-request", false)
      assert.strictEqual((yield* server.requests).length, 0)
    })
  )

  it.live("interrupting the read aborts the HTTP request", () =>
    Effect.gen(function* () {
      const { read, server } = yield* setup([OpenAiServer.text("too late", { delayMs: 5_000 })])
      const started = yield* Clock.currentTimeMillis
      const fiber = yield* Effect.forkChild(read(hello))
      yield* server.awaitRequests((requests) => requests.length === 1)
      yield* Effect.sleep("100 millis")
      yield* Fiber.interrupt(fiber)
      // bounded: a request that is never aborted fails here, not at vitest's 60 s timeout
      const [request] = yield* server
        .awaitRequests((requests) => requests[0]?.aborted === true)
        .pipe(Effect.timeout("2 seconds"))
      assert.deepInclude(request, { aborted: true, status: undefined })
      assert.isBelow((yield* Clock.currentTimeMillis) - started, 2_000)
    })
  )

  it.live("interrupting a streamed read mid-stream aborts the HTTP request", () =>
    Effect.gen(function* () {
      const deltas: Array<string> = []
      const { read, server } = yield* setup([OpenAiServer.stream(["first", "second"], { intervalMs: 5_000 })], {
        onDelta: (text) => deltas.push(text)
      })
      const fiber = yield* Effect.forkChild(read({ ...hello, stream: true }))
      yield* server.awaitRequests((requests) => requests[0]?.status === 200)
      yield* Effect.sleep("100 millis")
      yield* Fiber.interrupt(fiber)
      const [request] = yield* server
        .awaitRequests((requests) => requests[0]?.aborted === true)
        .pipe(Effect.timeout("2 seconds"))
      assert.deepInclude(request, { aborted: true, completed: false })
      assert.deepStrictEqual(deltas, [], "the first text chunk is 5 s away: nothing was delivered")
    })
  )

  it.live("an attempt past the timeout fails with timeout and aborts the request", () =>
    Effect.gen(function* () {
      const { read, server } = yield* setup([OpenAiServer.text("slow", { delayMs: 3_000 })], { timeout: "200 millis" })
      const started = yield* Clock.currentTimeMillis
      const error = yield* Effect.flip(read(hello).pipe(Effect.timeout("2 seconds")))
      isDeviceError(error, "timeout", true)
      assert.isBelow((yield* Clock.currentTimeMillis) - started, 2_000)
      const [request] = yield* server
        .awaitRequests((requests) => requests[0]?.aborted === true)
        .pipe(Effect.timeout("2 seconds"))
      assert.isTrue(request!.aborted)
      assert.strictEqual((yield* server.requests).length, 1, "a timeout is not retried by the driver")
    })
  )

  it.live("reads base URL, key and model through Config when not given", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([OpenAiServer.text("from env")])
      const env = ConfigProvider.fromEnvRecord({
        OPENAI_BASE_URL: server.baseURL,
        OPENAI_API_KEY: "env-key",
        OPENAI_MODEL: "env-model"
      })
      const driver = yield* Llm.make().pipe(Effect.provideService(ConfigProvider.ConfigProvider, env))
      const handle = yield* driver.open({ pid: 1 })
      const { value } = yield* handle.read(hello, context)
      assert.strictEqual((value as Llm.LlmReply).text, "from env")
      const [request] = yield* server.requests
      assert.strictEqual(request!.body.model, "env-model")
      assert.strictEqual(request!.headers.authorization, "Bearer env-key")

      const missing = yield* Effect.flip(
        Llm.make({ baseURL: server.baseURL, apiKey: "k" }).pipe(
          Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnvRecord({}))
        )
      )
      assert.include(String(missing), "OPENAI_MODEL")
    })
  )
})

describe("token estimates", () => {
  it("the prompt estimate counts every message's text with its overhead, images by a fixed count, and tools", () => {
    const text = (content: string): Llm.LlmRequest => ({ messages: [{ role: "user", content }] })
    assert.strictEqual(Llm.estimatePromptTokens(text("hi")), Llm.messageOverheadTokens + 1)
    assert.strictEqual(
      Llm.estimatePromptTokens(text("東京の人口")),
      Llm.messageOverheadTokens + ContextMemory.estimateTokens("東京の人口")
    )
    // a data: URL of a megabyte is one image, not 250 000 tokens
    const image: Llm.LlmRequest = {
      messages: [{ role: "user", content: [{ type: "image", url: `data:image/png;base64,${"A".repeat(1_000_000)}` }] }]
    }
    assert.strictEqual(Llm.estimatePromptTokens(image), Llm.messageOverheadTokens + Llm.imagePartTokens)
    const tool = { name: "weather", parameters: { type: "object", properties: { city: { type: "string" } } } }
    assert.strictEqual(
      Llm.estimatePromptTokens({ ...text("hi"), tools: [tool] }),
      Llm.messageOverheadTokens + 1 + ContextMemory.estimateTokens(JSON.stringify(tool))
    )
    const call = { id: "c", name: "weather", arguments: { city: "Oslo" } }
    assert.strictEqual(
      Llm.estimateCompletionTokens({ text: "", toolCalls: [call] }),
      ContextMemory.estimateTokens(`weather${JSON.stringify({ city: "Oslo" })}`)
    )
  })
})

describe("reservation", () => {
  const prices = { "test-model": { inputPerMTok: 2, outputPerMTok: 8 }, big: { inputPerMTok: 10, outputPerMTok: 30 } }

  it("tokens: the prompt estimate plus the request's maxTokens, else the driver's, else the default", () => {
    const prompt = Llm.estimatePromptTokens(hello)
    assert.deepStrictEqual(Llm.reservation({ ...hello, maxTokens: 50 }, { maxTokens: 900 }), { tokens: prompt + 50 })
    assert.deepStrictEqual(Llm.reservation(hello, { maxTokens: 900 }), { tokens: prompt + 900 })
    assert.deepStrictEqual(Llm.reservation(hello), { tokens: prompt + Llm.defaultReservedOutputTokens })
    const withTools: Llm.LlmRequest = { ...hello, tools: [{ name: "weather", description: "forecast" }], maxTokens: 10 }
    assert.strictEqual(Llm.reservation(withTools).tokens, Llm.estimatePromptTokens(withTools) + 10)
    assert.isAbove(Llm.estimatePromptTokens(withTools), prompt, "tool schemas are part of the prompt")
  })

  it("usd: that many tokens at the requested model's price, when the table has one", () => {
    const prompt = Llm.estimatePromptTokens(hello)
    const own = Llm.reservation({ ...hello, maxTokens: 100 }, { model: "test-model", prices })
    assert.strictEqual(own.tokens, prompt + 100)
    assert.closeTo(own.usd!, (prompt * 2 + 100 * 8) / 1_000_000, 1e-15)
    const overridden = Llm.reservation({ ...hello, maxTokens: 100, model: "big" }, { model: "test-model", prices })
    assert.closeTo(overridden.usd!, (prompt * 10 + 100 * 30) / 1_000_000, 1e-15)
    assert.deepStrictEqual(Llm.reservation({ ...hello, maxTokens: 100 }, { model: "unpriced", prices }), {
      tokens: prompt + 100
    })
  })

  it("a model id is data: 'constructor' or '__proto__' finds no price", () => {
    for (const model of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
      const reserved = Llm.reservation({ ...hello, model, maxTokens: 10 }, { prices })
      assert.deepStrictEqual(reserved, { tokens: Llm.estimatePromptTokens(hello) + 10 }, model)
    }
  })

  it("a request that does not decode reserves nothing (it never reaches the model)", () => {
    assert.deepStrictEqual(Llm.reservation({ messages: [] }), {})
    assert.deepStrictEqual(Llm.reservation("hi"), {})
    assert.deepStrictEqual(Llm.reservation({ messages: [{ role: "user", content: "x" }], maxTokens: -1 }), {})
  })

  it.live(
    "the driver reserves with its model, ceiling and prices, and sends its ceiling when the request has none",
    () =>
      Effect.gen(function* () {
        const { driver, read, server } = yield* setup([OpenAiServer.text("a"), OpenAiServer.text("b")], {
          prices,
          maxTokens: 300
        })
        assert.deepStrictEqual(
          driver.reserve!(hello),
          Llm.reservation(hello, { model: "test-model", maxTokens: 300, prices })
        )
        yield* read(hello)
        yield* read({ ...hello, maxTokens: 20 })
        assert.deepStrictEqual(
          (yield* server.received).map((body) => body.max_completion_tokens),
          [300, 20]
        )
      })
  )

  it.live("a request naming 'constructor' as its model is still charged a valid cost", () =>
    Effect.gen(function* () {
      const { read } = yield* setup([OpenAiServer.text("ok", { usage: { promptTokens: 10, completionTokens: 2 } })], {
        prices
      })
      const { cost } = yield* read({ ...hello, model: "constructor" })
      assert.deepStrictEqual(cost, { tokens: 12, usd: 0 })
    })
  )
})

describe("Llm.fromLanguageModel", () => {
  /** A LanguageModel that records the provider options it got and answers with `parts`. */
  const fakeModel = (parts: ReadonlyArray<unknown>, seen: Array<LanguageModel.ProviderOptions>) =>
    LanguageModel.make({
      generateText: (options) => Effect.sync(() => (seen.push(options), parts as any)),
      streamText: () => Stream.empty
    })

  it.effect("maps the request to a prompt and tools, and the response to a reply with tokens", () =>
    Effect.gen(function* () {
      const seen: Array<LanguageModel.ProviderOptions> = []
      const model = yield* fakeModel(
        [
          { type: "text", text: "Let me check." },
          { type: "tool-call", id: "t1", name: "weather", params: { city: "Oslo" } },
          { type: "finish", reason: "tool-calls", usage: { inputTokens: { total: 20 }, outputTokens: { total: 5 } } }
        ],
        seen
      )
      const driver = yield* Llm.fromLanguageModel("ai").pipe(Effect.provideService(LanguageModel.LanguageModel, model))
      assert.strictEqual(driver.name, "ai")
      const handle = yield* driver.open({ pid: 1 })
      const { cost, value } = yield* handle.read(
        {
          messages: [
            { role: "system", content: "sys" },
            {
              role: "user",
              content: [
                { type: "text", text: "look" },
                { type: "image", url: "https://x.test/a.png" }
              ]
            },
            {
              role: "assistant",
              content: "earlier",
              toolCalls: [{ id: "t0", name: "weather", arguments: { city: "Rome" } }]
            },
            { role: "tool", toolCallId: "t0", content: "rain" }
          ],
          tools: [{ name: "weather", parameters: { type: "object", properties: { city: { type: "string" } } } }]
        },
        context
      )
      assert.deepStrictEqual(value, {
        text: "Let me check.",
        toolCalls: [{ id: "t1", name: "weather", arguments: { city: "Oslo" } }],
        finishReason: "tool_calls",
        usage: { inputTokens: 20, outputTokens: 5 },
        model: ""
      })
      assert.deepStrictEqual(cost, { tokens: 25 })
      const options = seen[0]!
      assert.deepStrictEqual(
        options.prompt.content.map((m) => m.role),
        ["system", "user", "assistant", "tool"]
      )
      const user = options.prompt.content[1]!
      assert.strictEqual(user.role === "user" && user.content[1]?.type, "file")
      const tool = options.prompt.content[3]!
      assert.deepInclude(tool.role === "tool" ? tool.content[0] : {}, { id: "t0", name: "weather", result: "rain" })
      assert.deepStrictEqual(
        options.tools.map((t) => t.name),
        ["weather"]
      )
    })
  )

  it.effect("a response without usage is charged the estimate", () =>
    Effect.gen(function* () {
      const model = yield* fakeModel(
        [
          { type: "text", text: "Twelve." },
          { type: "finish", reason: "stop", usage: { inputTokens: {}, outputTokens: { total: undefined } } }
        ],
        []
      )
      const driver = yield* Llm.fromLanguageModel().pipe(Effect.provideService(LanguageModel.LanguageModel, model))
      const handle = yield* driver.open({ pid: 1 })
      const { cost, value } = yield* handle.read(hello, context)
      const reply = value as Llm.LlmReply
      const inputTokens = Llm.estimatePromptTokens(hello)
      assert.deepStrictEqual(reply.usage, { inputTokens, outputTokens: 2, estimated: true })
      assert.deepStrictEqual(cost, { tokens: inputTokens + 2 })
    })
  )

  it.effect("an AiError becomes a DeviceError with its retryability; a bad request never reaches the model", () =>
    Effect.gen(function* () {
      const seen: Array<LanguageModel.ProviderOptions> = []
      const model = yield* LanguageModel.make({
        generateText: (options) =>
          Effect.sync(() => seen.push(options)).pipe(
            Effect.andThen(
              Effect.fail(
                new AiError.AiError({ module: "Test", method: "generateText", reason: new AiError.RateLimitError({}) })
              )
            )
          ),
        streamText: () => Stream.empty
      })
      const driver = yield* Llm.fromLanguageModel().pipe(Effect.provideService(LanguageModel.LanguageModel, model))
      const handle = yield* driver.open({ pid: 1 })
      isDeviceError(yield* Effect.flip(handle.read(hello, context)), "rate-limited", true)
      isDeviceError(yield* Effect.flip(handle.read({ messages: [] }, context)), "invalid-request", false)
      assert.strictEqual(seen.length, 1)
    })
  )
})
