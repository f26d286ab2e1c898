import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Exit, Fiber, Scope } from "effect"
import OpenAI, { type APIError } from "openai"
import { OpenAiServer } from "effect-agent-os/testing"

const clientFor = (server: OpenAiServer.OpenAiServer) =>
  new OpenAI({ baseURL: server.baseURL, apiKey: "test-key", maxRetries: 0 })

/** Runs an SDK call; a rejection becomes the error value. */
const call = <A>(f: (signal: AbortSignal) => Promise<A>) =>
  Effect.tryPromise({ try: (signal) => f(signal), catch: (error) => error })

const user = (content: string) => [{ role: "user" as const, content }]

describe("OpenAiServer", () => {
  it.live("answers a text reply with the scripted usage and records the request body", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([
        OpenAiServer.text("hello there", { usage: { promptTokens: 7, completionTokens: 3 } })
      ])
      const client = clientFor(server)
      const completion = yield* call((signal) =>
        client.chat.completions.create({ model: "m-1", messages: user("hi") }, { signal })
      )
      assert.strictEqual(completion.choices[0]!.message.content, "hello there")
      assert.strictEqual(completion.choices[0]!.finish_reason, "stop")
      assert.strictEqual(completion.model, "m-1")
      assert.deepStrictEqual(completion.usage, { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 })
      const received = yield* server.received
      assert.strictEqual(received.length, 1)
      assert.deepStrictEqual(received[0].messages, user("hi"))
      const [request] = yield* server.requests
      assert.deepInclude(request, { method: "POST", path: "/v1/chat/completions", status: 200, aborted: false })
      assert.strictEqual(request!.headers.authorization, "Bearer test-key")
    })
  )

  it.live("estimates usage when none is scripted", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([OpenAiServer.text("abcdefgh")])
      const completion = yield* call((signal) =>
        clientFor(server).chat.completions.create({ model: "m", messages: user("x") }, { signal })
      )
      const usage = completion.usage!
      assert.strictEqual(usage.completion_tokens, 2)
      assert.isAtLeast(usage.prompt_tokens, 1)
      assert.strictEqual(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)
    })
  )

  it.live("leaves usage out when scripted null, or one count of it, as local servers do", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([
        OpenAiServer.text("a", { usage: null }),
        OpenAiServer.text("b", { usage: { promptTokens: 6, completionTokens: null } }),
        OpenAiServer.stream(["c"], { usage: null })
      ])
      const client = clientFor(server)
      const none = yield* call((signal) =>
        client.chat.completions.create({ model: "m", messages: user("x") }, { signal })
      )
      assert.isUndefined(none.usage)
      const partial = yield* call((signal) =>
        client.chat.completions.create({ model: "m", messages: user("x") }, { signal })
      )
      assert.deepStrictEqual(partial.usage as unknown, { prompt_tokens: 6, total_tokens: 6 })
      const chunks = yield* call(async (signal) => {
        const stream = await client.chat.completions.create(
          { model: "m", messages: user("x"), stream: true, stream_options: { include_usage: true } },
          { signal }
        )
        const seen: Array<unknown> = []
        for await (const chunk of stream) seen.push(chunk.usage)
        return seen
      })
      assert.isTrue(
        chunks.every((usage) => usage === undefined || usage === null),
        "no usage chunk"
      )
    })
  )

  it.live("answers tool calls: ids, names and JSON arguments; a string argument is sent verbatim", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([
        OpenAiServer.toolCalls([
          { id: "call_a", name: "search", arguments: { query: "effect" } },
          { name: "broken", arguments: "{not json" }
        ])
      ])
      const completion = yield* call((signal) =>
        clientFor(server).chat.completions.create({ model: "m", messages: user("go") }, { signal })
      )
      const choice = completion.choices[0]!
      assert.strictEqual(choice.finish_reason, "tool_calls")
      assert.isNull(choice.message.content)
      const calls = choice.message.tool_calls!.map((c) => (c.type === "function" ? c : undefined))
      assert.deepStrictEqual(
        calls.map((c) => [c?.id, c?.function.name, c?.function.arguments]),
        [
          ["call_a", "search", '{"query":"effect"}'],
          ["call_1", "broken", "{not json"]
        ]
      )
    })
  )

  it.live("streams in OpenAI's SSE format: role, text deltas, finish, then usage when asked, then [DONE]", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([
        OpenAiServer.stream(["Hel", "lo", "!"], { usage: { promptTokens: 5, completionTokens: 2 } }),
        OpenAiServer.stream(["a", "b"])
      ])
      const client = clientFor(server)
      const collect = (includeUsage: boolean) =>
        call(async (signal) => {
          const stream = await client.chat.completions.create(
            {
              model: "m",
              messages: user("hi"),
              stream: true,
              ...(includeUsage ? { stream_options: { include_usage: true } } : {})
            },
            { signal }
          )
          const chunks: Array<OpenAI.Chat.Completions.ChatCompletionChunk> = []
          for await (const chunk of stream) chunks.push(chunk)
          return chunks
        })
      const withUsage = yield* collect(true)
      const deltas = withUsage.flatMap((c) => c.choices.map((choice) => choice.delta.content ?? ""))
      assert.strictEqual(deltas.join(""), "Hello!")
      assert.deepStrictEqual(
        deltas.filter((d) => d !== ""),
        ["Hel", "lo", "!"]
      )
      assert.strictEqual(withUsage.at(-2)!.choices[0]!.finish_reason, "stop")
      const last = withUsage.at(-1)!
      assert.deepStrictEqual(last.choices, [])
      assert.deepStrictEqual(last.usage, { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 })
      const withoutUsage = yield* collect(false)
      assert.isTrue(withoutUsage.every((c) => c.usage === undefined && c.choices.length === 1))
      assert.isTrue((yield* server.requests).every((r) => r.stream && r.status === 200))
    })
  )

  it.live("streams tool calls as indexed fragments", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([
        OpenAiServer.toolCalls([{ id: "c1", name: "add", arguments: { a: 1, b: 2 } }])
      ])
      const chunks = yield* call(async (signal) => {
        const stream = await clientFor(server).chat.completions.create(
          { model: "m", messages: user("hi"), stream: true },
          { signal }
        )
        const all: Array<OpenAI.Chat.Completions.ChatCompletionChunk> = []
        for await (const chunk of stream) all.push(chunk)
        return all
      })
      const fragments = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? [])
      assert.strictEqual(fragments[0]!.id, "c1")
      assert.strictEqual(fragments[0]!.function!.name, "add")
      assert.strictEqual(fragments.map((f) => f.function?.arguments ?? "").join(""), '{"a":1,"b":2}')
      assert.isTrue(fragments.every((f) => f.index === 0))
      assert.strictEqual(chunks.at(-1)!.choices[0]!.finish_reason, "tool_calls")
    })
  )

  it.live("answers scripted errors: 429 with Retry-After, 500, 400 with an OpenAI error body", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([
        OpenAiServer.rateLimited(2),
        OpenAiServer.serverError(),
        OpenAiServer.badRequest("messages must not be empty", "empty_messages")
      ])
      const client = clientFor(server)
      const fail = () =>
        Effect.flip(call((signal) => client.chat.completions.create({ model: "m", messages: user("x") }, { signal })))
      const limited = yield* fail()
      assert.instanceOf(limited, OpenAI.RateLimitError)
      assert.strictEqual((limited as APIError).headers?.get("retry-after"), "2")
      const crashed = yield* fail()
      assert.instanceOf(crashed, OpenAI.InternalServerError)
      const bad = (yield* fail()) as APIError
      assert.instanceOf(bad, OpenAI.BadRequestError)
      assert.strictEqual(bad.code, "empty_messages")
      assert.strictEqual(bad.type, "invalid_request_error")
      assert.include(bad.message, "messages must not be empty")
      assert.deepStrictEqual(
        (yield* server.requests).map((r) => r.status),
        [429, 500, 400]
      )
    })
  )

  it.live("an empty script answers 500 at once with a message that says so", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make()
      const error = yield* Effect.flip(
        call((signal) => clientFor(server).chat.completions.create({ model: "m", messages: user("x") }, { signal }))
      )
      assert.instanceOf(error, OpenAI.InternalServerError)
      assert.include((error as Error).message, "no scripted reply left")
      yield* server.enqueue(OpenAiServer.text("late"))
      assert.strictEqual(yield* server.pending, 1)
      const completion = yield* call((signal) =>
        clientFor(server).chat.completions.create({ model: "m", messages: user("x") }, { signal })
      )
      assert.strictEqual(completion.choices[0]!.message.content, "late")
      assert.strictEqual(yield* server.pending, 0)
    })
  )

  it.live("a client that goes away during the delay is recorded as aborted; the server keeps serving", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([OpenAiServer.text("slow", { delayMs: 5_000 }), OpenAiServer.text("ok")])
      const client = clientFor(server)
      const started = yield* Clock.currentTimeMillis
      const fiber = yield* Effect.forkChild(
        call((signal) => client.chat.completions.create({ model: "m", messages: user("x") }, { signal }))
      )
      yield* server.awaitRequests((requests) => requests.length === 1)
      yield* Fiber.interrupt(fiber)
      const [aborted] = yield* server
        .awaitRequests((requests) => requests[0]?.aborted === true)
        .pipe(Effect.timeout("2 seconds"))
      assert.deepInclude(aborted, { aborted: true, status: undefined, completed: false })
      assert.isBelow((yield* Clock.currentTimeMillis) - started, 4_000)
      const completion = yield* call((signal) =>
        client.chat.completions.create({ model: "m", messages: user("x") }, { signal })
      )
      assert.strictEqual(completion.choices[0]!.message.content, "ok")
    })
  )

  it.live("a client that goes away mid-stream is recorded as aborted (the headers were sent: status 200)", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([OpenAiServer.stream(["a", "b"], { intervalMs: 5_000 })])
      const fiber = yield* Effect.forkChild(
        call(async (signal) => {
          const stream = await clientFor(server).chat.completions.create(
            { model: "m", messages: user("x"), stream: true },
            { signal }
          )
          for await (const _ of stream) {
            // drain
          }
        })
      )
      yield* server.awaitRequests((requests) => requests[0]?.status === 200).pipe(Effect.timeout("2 seconds"))
      yield* Fiber.interrupt(fiber)
      const [request] = yield* server
        .awaitRequests((requests) => requests[0]?.aborted === true)
        .pipe(Effect.timeout("2 seconds"))
      assert.deepInclude(request, { status: 200, aborted: true, completed: false })
    })
  )

  it.live("lists models", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([], { models: ["a", "b"] })
      const page = yield* call((signal) => clientFor(server).models.list({ signal }))
      assert.deepStrictEqual(
        page.data.map((m) => m.id),
        ["a", "b"]
      )
    })
  )

  it.live("closes with its scope: the port refuses connections afterwards", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const server = yield* OpenAiServer.make([OpenAiServer.text("once")]).pipe(Scope.provide(scope))
      const client = clientFor(server)
      yield* call((signal) => client.chat.completions.create({ model: "m", messages: user("x") }, { signal }))
      yield* Scope.close(scope, Exit.void)
      const error = yield* Effect.flip(
        call((signal) => client.chat.completions.create({ model: "m", messages: user("x") }, { signal }))
      )
      assert.instanceOf(error, OpenAI.APIConnectionError)
    })
  )
})
