/**
 * Provides an effect/ai `LanguageModel` over any OpenAI-compatible chat-completions API, on Effect's `HttpClient`.
 *
 * The published `@effect/ai-openai` and `@effect/ai-openai-compat` 4.x betas do not load on effect 4.1 (they import
 * `effect/unstable/...`), so this small adapter built with `LanguageModel.make` stands in. With
 * `Llm.fromLanguageModel()` it backs the kernel's LLM device; any other `LanguageModel` (a provider package that
 * loads, a test model) plugs in the same way:
 *
 * ```ts
 * const llm = Llm.fromLanguageModel().pipe(
 *   Effect.provide(OpenAiLanguageModel.layer({ baseURL: "http://localhost:11434/v1", model: "llama3.2" })),
 *   Effect.provide(FetchHttpClient.layer)
 * )
 * const kernel = Kernel.layer({ drivers: [llm] })
 * ```
 *
 * What it sends and reads:
 *
 * - one `POST {baseURL}/chat/completions` per `generateText`, with the prompt as chat messages (system, user text and
 *   image parts, assistant text and tool calls, tool results), the toolkit's tools as functions (their JSON Schemas),
 *   the tool choice, a JSON-Schema response format for `generateObject`, and the options' `maxTokens` (as
 *   `max_completion_tokens`) and `temperature`;
 * - `streamText` sends `stream: true` (with `stream_options.include_usage`) and turns the server-sent events into
 *   text, tool-parameter and tool-call parts, then one `finish` part with the usage;
 * - the answer is decoded with a Schema: the text, the tool calls (arguments parsed as JSON; arguments that are not
 *   JSON are passed on as their text), the finish reason and the usage.
 *
 * How calls fail (an `AiError` whose `reason` says why, with `isRetryable`): a transport failure is a
 * `NetworkError`; an HTTP error status maps with `AiError.reasonFromHttpStatus` (429 `RateLimitError` with the
 * server's `Retry-After`, 401/403 `AuthenticationError`, 400 `InvalidRequestError`, 5xx `InternalProviderError`, …);
 * an answer that does not decode is an `InvalidResponseError`; a file part that is not an image is an
 * `InvalidUserInputError`. There are no retries and no timeout here: wrap the `HttpClient` (`HttpClient.retry`,
 * `Effect.timeout`) or rely on the caller.
 *
 * Without `apiKey` no `Authorization` header is sent (a local Ollama, vLLM or llama.cpp server needs none).
 *
 * @since 0.1.0
 */
import { Duration, Effect, Layer, Redacted, Schema, Stream } from "effect"
import { AiError, LanguageModel, type Prompt, type Response, Tool } from "effect/ai"
import * as Base64 from "effect/encoding/Base64"
import * as Sse from "effect/encoding/Sse"
import { HttpClient, HttpClientRequest, type HttpClientResponse } from "effect/http"

/**
 * @category models
 */
export interface Options {
  /** The model id sent with every request. */
  readonly model: string
  /** Default `https://api.openai.com/v1`. */
  readonly baseURL?: string | undefined
  /** Sent as `Authorization: Bearer …`; absent, no `Authorization` header. */
  readonly apiKey?: string | Redacted.Redacted<string> | undefined
  /** A ceiling on output tokens (`max_completion_tokens`). Default: not sent. */
  readonly maxTokens?: number | undefined
  /** 0–2. Default: not sent. */
  readonly temperature?: number | undefined
}

const defaultBaseURL = "https://api.openai.com/v1"
const module = "OpenAiLanguageModel"

/**
 * Makes the `LanguageModel` service over the `HttpClient` in context.
 *
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<LanguageModel.LanguageModel, never, HttpClient.HttpClient> =>
  Effect.gen(function* () {
    const client = yield* HttpClient.HttpClient
    const url = `${(options.baseURL ?? defaultBaseURL).replace(/\/+$/, "")}/chat/completions`
    const apiKey = typeof options.apiKey === "string" ? Redacted.make(options.apiKey) : options.apiKey

    const send = (method: string, body: Record<string, unknown>) =>
      Effect.gen(function* () {
        const request = HttpClientRequest.post(url).pipe(
          HttpClientRequest.bodyJsonUnsafe(body),
          apiKey === undefined ? (r) => r : HttpClientRequest.bearerToken(Redacted.value(apiKey))
        )
        const response = yield* client
          .execute(request)
          .pipe(
            Effect.mapError((error) =>
              error.reason._tag === "TransportError" ||
              error.reason._tag === "EncodeError" ||
              error.reason._tag === "InvalidUrlError"
                ? failure(method, AiError.NetworkError.fromRequestError(error.reason))
                : invalidResponse(method, error.message)
            )
          )
        if (response.status >= 400) return yield* Effect.fail(yield* statusFailure(method, response))
        return response
      })

    return yield* LanguageModel.make({
      generateText: (provider) =>
        Effect.gen(function* () {
          const body = yield* requestBody("generateText", provider, options)
          const response = yield* send("generateText", body)
          const json = yield* response.json.pipe(
            Effect.mapError(() => invalidResponse("generateText", "the answer is not JSON"))
          )
          const completion = yield* Schema.decodeUnknownEffect(Completion)(json).pipe(
            Effect.mapError((error) => failure("generateText", AiError.InvalidResponseError.fromSchemaError(error)))
          )
          return completionParts(completion)
        }),
      streamText: (provider) =>
        Stream.unwrap(
          Effect.gen(function* () {
            const body = yield* requestBody("streamText", provider, options)
            const response = yield* send("streamText", {
              ...body,
              stream: true,
              stream_options: { include_usage: true }
            })
            return chunkParts(response)
          })
        )
    })
  })

/**
 * The `LanguageModel` layer over the `HttpClient` in context (`FetchHttpClient.layer`, `NodeHttpClient.layerUndici`…).
 *
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LanguageModel.LanguageModel, never, HttpClient.HttpClient> =>
  Layer.effect(LanguageModel.LanguageModel)(make(options))

// ---------------------------------------------------------------------------------------------------------------------
// Request

const requestBody = (method: string, provider: LanguageModel.ProviderOptions, options: Options) =>
  Effect.gen(function* () {
    const messages: Array<unknown> = []
    for (const message of provider.prompt.content) messages.push(...(yield* wireMessages(method, message)))
    const tools = provider.tools.map((tool) => ({
      type: "function",
      function: {
        name: tool.name,
        ...(Tool.getDescription(tool) === undefined ? {} : { description: Tool.getDescription(tool) }),
        parameters: Tool.getJsonSchema(tool)
      }
    }))
    const format = provider.responseFormat
    return {
      model: options.model,
      messages,
      ...(tools.length === 0 ? {} : { tools, tool_choice: wireToolChoice(provider.toolChoice) }),
      ...(format.type === "json"
        ? {
            response_format: {
              type: "json_schema",
              json_schema: { name: format.objectName, schema: Tool.getJsonSchemaFromSchema(format.schema) }
            }
          }
        : {}),
      ...(options.maxTokens === undefined ? {} : { max_completion_tokens: options.maxTokens }),
      ...(options.temperature === undefined ? {} : { temperature: options.temperature })
    } satisfies Record<string, unknown>
  })

const wireToolChoice = (choice: LanguageModel.ToolChoice<string>): unknown => {
  if (typeof choice === "string") return choice
  if ("tool" in choice) return { type: "function", function: { name: choice.tool } }
  // a subset of the tools: chat completions cannot name several, so the mode applies to all of them
  return choice.mode ?? "auto"
}

/** One prompt message as chat-completions messages (a tool message holds several results: one message each). */
const wireMessages = (
  method: string,
  message: Prompt.Message
): Effect.Effect<ReadonlyArray<unknown>, AiError.AiError> =>
  Effect.gen(function* () {
    switch (message.role) {
      case "system":
        return [{ role: "system", content: message.content }]
      case "user": {
        const parts: Array<unknown> = []
        for (const part of message.content) {
          if (part.type === "text") parts.push({ type: "text", text: part.text })
          else parts.push({ type: "image_url", image_url: { url: yield* imageUrl(method, part) } })
        }
        const textOnly = message.content.every((part) => part.type === "text")
        return [
          {
            role: "user",
            content: textOnly ? message.content.map((part) => (part.type === "text" ? part.text : "")).join("") : parts
          }
        ]
      }
      case "assistant": {
        const text = message.content.flatMap((part) => (part.type === "text" ? [part.text] : [])).join("")
        const calls = message.content.flatMap((part) =>
          part.type === "tool-call"
            ? [
                {
                  id: part.id,
                  type: "function",
                  function: {
                    name: part.name,
                    arguments: typeof part.params === "string" ? part.params : JSON.stringify(part.params)
                  }
                }
              ]
            : []
        )
        return [{ role: "assistant", content: text, ...(calls.length === 0 ? {} : { tool_calls: calls }) }]
      }
      case "tool":
        return message.content.flatMap((part) =>
          part.type === "tool-result"
            ? [
                {
                  role: "tool",
                  tool_call_id: part.id,
                  content: typeof part.result === "string" ? part.result : JSON.stringify(part.result)
                }
              ]
            : []
        )
    }
  })

const imageUrl = (method: string, part: Prompt.FilePart): Effect.Effect<string, AiError.AiError> => {
  if (!part.mediaType.startsWith("image/")) {
    return Effect.fail(
      failure(
        method,
        new AiError.InvalidUserInputError({ description: `a ${part.mediaType} file part: only images are sent` })
      )
    )
  }
  if (part.data instanceof URL) return Effect.succeed(part.data.href)
  if (typeof part.data === "string" && /^(https?|data):/.test(part.data)) return Effect.succeed(part.data)
  return Effect.succeed(`data:${part.mediaType};base64,${Base64.encode(part.data)}`)
}

// ---------------------------------------------------------------------------------------------------------------------
// Answer

const Usage = Schema.NullOr(Schema.Struct({ prompt_tokens: Schema.Number, completion_tokens: Schema.Number }))
const FinishReason = Schema.NullOr(Schema.String)

const Completion = Schema.Struct({
  id: Schema.optionalKey(Schema.String),
  model: Schema.optionalKey(Schema.String),
  choices: Schema.Array(
    Schema.Struct({
      message: Schema.Struct({
        content: Schema.optionalKey(Schema.NullOr(Schema.String)),
        tool_calls: Schema.optionalKey(
          Schema.NullOr(
            Schema.Array(
              Schema.Struct({
                id: Schema.String,
                function: Schema.Struct({ name: Schema.String, arguments: Schema.String })
              })
            )
          )
        )
      }),
      finish_reason: Schema.optionalKey(FinishReason)
    })
  ),
  usage: Schema.optionalKey(Usage)
})

const Chunk = Schema.Struct({
  id: Schema.optionalKey(Schema.String),
  model: Schema.optionalKey(Schema.String),
  choices: Schema.optionalKey(
    Schema.Array(
      Schema.Struct({
        delta: Schema.optionalKey(
          Schema.Struct({
            content: Schema.optionalKey(Schema.NullOr(Schema.String)),
            tool_calls: Schema.optionalKey(
              Schema.NullOr(
                Schema.Array(
                  Schema.Struct({
                    index: Schema.Number,
                    id: Schema.optionalKey(Schema.String),
                    function: Schema.optionalKey(
                      Schema.Struct({
                        name: Schema.optionalKey(Schema.String),
                        arguments: Schema.optionalKey(Schema.String)
                      })
                    )
                  })
                )
              )
            )
          })
        ),
        finish_reason: Schema.optionalKey(FinishReason)
      })
    )
  ),
  usage: Schema.optionalKey(Usage)
})

const finishReasons: Readonly<Record<string, Response.FinishReason>> = {
  stop: "stop",
  length: "length",
  tool_calls: "tool-calls",
  function_call: "tool-calls",
  content_filter: "content-filter"
}
const finishReason = (reason: string | null | undefined): Response.FinishReason =>
  reason === null || reason === undefined ? "unknown" : (finishReasons[reason] ?? "other")

const usageOf = (usage: typeof Usage.Type | undefined) => ({
  inputTokens: { total: usage?.prompt_tokens ?? 0 },
  outputTokens: { total: usage?.completion_tokens ?? 0 }
})

/** Arguments as the model sent them: parsed JSON, or the text itself when it is not JSON. */
const parseArguments = (text: string): unknown => {
  try {
    return JSON.parse(text === "" ? "{}" : text)
  } catch {
    return text
  }
}

const metadataPart = (id: string | undefined, model: string | undefined): Response.PartEncoded => ({
  type: "response-metadata",
  ...(id === undefined ? {} : { id }),
  ...(model === undefined ? {} : { modelId: model })
})

const completionParts = (completion: typeof Completion.Type): Array<Response.PartEncoded> => {
  const choice = completion.choices[0]
  const parts: Array<Response.PartEncoded> = [metadataPart(completion.id, completion.model)]
  const text = choice?.message.content ?? ""
  if (text !== "") parts.push({ type: "text", text })
  for (const call of choice?.message.tool_calls ?? []) {
    parts.push({
      type: "tool-call",
      id: call.id,
      name: call.function.name,
      params: parseArguments(call.function.arguments)
    })
  }
  parts.push({ type: "finish", reason: finishReason(choice?.finish_reason), usage: usageOf(completion.usage) })
  return parts
}

/** The stream parts of a streamed answer: text and tool calls as they come, then one `finish` with the usage. */
const chunkParts = (
  response: HttpClientResponse.HttpClientResponse
): Stream.Stream<Response.StreamPartEncoded, AiError.AiError> =>
  Stream.suspend(() => {
    let started = false
    let textOpen = false
    let reason: string | null | undefined = undefined
    let usage: typeof Usage.Type | undefined = undefined
    const calls = new Map<number, { id: string; name: string; arguments: string }>()
    const onChunk = (chunk: typeof Chunk.Type): Array<Response.StreamPartEncoded> => {
      const out: Array<Response.StreamPartEncoded> = []
      if (!started) {
        started = true
        out.push(metadataPart(chunk.id, chunk.model) as Response.StreamPartEncoded)
      }
      if (chunk.usage !== undefined && chunk.usage !== null) usage = chunk.usage
      for (const choice of chunk.choices ?? []) {
        if (choice.finish_reason !== undefined && choice.finish_reason !== null) reason = choice.finish_reason
        const content = choice.delta?.content
        if (content !== undefined && content !== null && content !== "") {
          if (!textOpen) {
            textOpen = true
            out.push({ type: "text-start", id: "text" })
          }
          out.push({ type: "text-delta", id: "text", delta: content })
        }
        for (const delta of choice.delta?.tool_calls ?? []) {
          let call = calls.get(delta.index)
          if (call === undefined) {
            call = { id: delta.id ?? `call_${delta.index}`, name: delta.function?.name ?? "", arguments: "" }
            calls.set(delta.index, call)
            out.push({ type: "tool-params-start", id: call.id, name: call.name })
          }
          const fragment = delta.function?.arguments ?? ""
          if (fragment !== "") {
            call.arguments += fragment
            out.push({ type: "tool-params-delta", id: call.id, delta: fragment })
          }
        }
      }
      return out
    }
    const onEnd = (): Array<Response.StreamPartEncoded> => [
      ...(textOpen ? [{ type: "text-end", id: "text" } as const] : []),
      ...[...calls.values()].flatMap((call): Array<Response.StreamPartEncoded> => [
        { type: "tool-params-end", id: call.id },
        { type: "tool-call", id: call.id, name: call.name, params: parseArguments(call.arguments) }
      ]),
      { type: "finish", reason: finishReason(reason), usage: usageOf(usage) }
    ]
    const decodeChunk = Schema.decodeUnknownEffect(Schema.fromJsonString(Chunk))
    return response.stream.pipe(
      Stream.decodeText,
      Stream.pipeThroughChannel(Sse.decode()),
      Stream.takeUntil((event) => event.data === "[DONE]"),
      Stream.filter((event) => event.data !== "[DONE]"),
      Stream.mapEffect((event) => decodeChunk(event.data)),
      Stream.map(onChunk),
      Stream.concat(Stream.suspend(() => Stream.make(onEnd()))),
      Stream.flattenIterable,
      Stream.mapError((error) =>
        AiError.isAiError(error) ? error : invalidResponse("streamText", `the event stream: ${String(error)}`)
      )
    )
  })

// ---------------------------------------------------------------------------------------------------------------------
// Errors

const failure = (method: string, reason: AiError.AiErrorReason): AiError.AiError =>
  AiError.make({ module, method, reason })

const invalidResponse = (method: string, description: string): AiError.AiError =>
  failure(method, new AiError.InvalidResponseError({ description }))

/** An HTTP error status as an `AiError`, with the server's message and, on 429, its `Retry-After`. */
const statusFailure = (method: string, response: HttpClientResponse.HttpClientResponse) =>
  Effect.gen(function* () {
    const text = yield* response.text.pipe(Effect.orElseSucceed(() => ""))
    const description = `HTTP ${response.status}${text === "" ? "" : `: ${text.slice(0, 500)}`}`
    const reason = AiError.reasonFromHttpStatus({ status: response.status, description })
    const retryAfter = Number(response.headers["retry-after"])
    if (reason._tag === "RateLimitError" && Number.isFinite(retryAfter) && retryAfter >= 0) {
      return failure(method, new AiError.RateLimitError({ retryAfter: Duration.seconds(retryAfter) }))
    }
    return failure(method, reason)
  })
