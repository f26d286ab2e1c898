/**
 * Connects processes to a chat model: one `read` on the device is one model call, metered in tokens and dollars.
 *
 * Two backends give the same device:
 *
 * - `make(options)`: the `openai` SDK against any OpenAI-compatible chat-completions API (OpenAI, Azure-style
 *   proxies, vLLM, Ollama, llama.cpp, the test kit's `OpenAiServer`);
 * - `fromLanguageModel(name)`: any `effect/ai` `LanguageModel` service, so an effect/ai provider layer plugs in.
 *
 * A read request is data (it is journaled): an `LlmRequest`, decoded with `Schema` before anything is sent. A request
 * that does not decode fails with `DeviceError` `invalid-request` and never reaches the server. The reply (`LlmReply`)
 * is JSON-safe: `{ text, toolCalls, finishReason, usage, model }`; the call costs
 * `{ tokens: input + output, usd }`, `usd` from the price table (0 for a model without a price). When the server
 * reports no usage, or only part of it, the missing counts are estimated (`estimatePromptTokens`,
 * `estimateCompletionTokens`, both on `ContextMemory.estimateTokens`) and charged: never 0. Before a call starts the
 * kernel reserves the driver's `reservation` of it (the prompt estimate plus the output ceiling, at the model's
 * price) against the caller's budget, and settles to the actual cost when it ends.
 *
 * How `make`'s calls end:
 *
 * - each attempt is bounded by `timeout` (default 60 s): past it, the HTTP request is aborted and the call fails with
 *   `timeout` (retryable, not retried here: the caller decides);
 * - 429 and 5xx answers and network failures are retried with an Effect `Schedule`: the server's `Retry-After`
 *   (seconds, or OpenAI's `retry-after-ms`) when it sent one, else exponential backoff from `retry.base`
 *   (default 500 ms, doubling, at most `retry.maxDelay`, default 30 s), at most `retry.times` times (default 3); when
 *   they run out the call fails with `rate-limited` or `unavailable`, `retryable: true`;
 * - other HTTP errors are not retried: 400/422 `invalid-request`, 401/403 `unauthorized`, 404 `not-found`, anything
 *   else `failed`, all `retryable: false` (408 and 409 are `timeout` and `conflict`, `retryable: true`);
 * - an answer without a choice is `bad-response`;
 * - interrupting the read (the kernel does it when the caller is killed, suspended past its deadline, …) aborts the
 *   HTTP request at once, retries and backoff included.
 *
 * Streaming: a request with `stream: true` is sent as an SSE request; each text fragment is handed to the driver's
 * `onDelta(text, context)` option as it arrives, and the read still resolves once, with the whole reply and its usage.
 * The callback lives in the driver options, not in the request, because requests are journaled data and a function is
 * neither; `context` (`pid`, `op`) tells the host whose call a fragment belongs to. Deltas are a live side channel: a
 * replayed call returns its journaled reply and emits no deltas. A throwing `onDelta` is ignored (a display callback
 * must not fail a paid call).
 *
 * `pager(options)` is a context-memory pager that summarises paged-out segments through the process's own llm device.
 *
 * @since 0.1.0
 */
import { Config, Data, Duration, Effect, Option, Redacted, Schedule, Schema } from "effect"
import { LanguageModel, type Prompt, Tool, Toolkit } from "effect/ai"
import type { Policy } from "../services/InferenceScheduler.ts"
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError } from "openai"
import type { Cost } from "../services/Accounts.ts"
import * as ContextMemory from "../services/ContextMemory.ts"
import * as Device from "../services/Device.ts"
import * as Sys from "../services/Sys.ts"
import { durationMillis } from "../services/internal/duration.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Request and reply

/**
 * A tool call, as the model made it. `arguments` is the parsed JSON object; when the model sent text that is not a
 * JSON object, `arguments` is that raw text and `argumentsInvalid` is `true` (give the model an error result rather
 * than calling the tool). An assistant message in a request carries the same shape, so a reply's tool calls can be
 * sent back as they are.
 *
 * @category schemas
 */
export const ToolCall = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  arguments: Schema.Union([Schema.Record(Schema.String, Schema.Unknown), Schema.String]),
  argumentsInvalid: Schema.optionalKey(Schema.Literal(true))
})
/** @category models */
export type ToolCall = typeof ToolCall.Type

/**
 * A text part of a user message.
 *
 * @category schemas
 */
export const TextPart = Schema.Struct({ type: Schema.Literal("text"), text: Schema.String })

/**
 * An image part of a user message, for vision models: an `https:` or `data:` URL, sent as OpenAI's `image_url`.
 *
 * @category schemas
 */
export const ImagePart = Schema.Struct({
  type: Schema.Literal("image"),
  url: Schema.String.check(
    Schema.makeFilter((url: string) => URL.canParse(url) || "an absolute URL", { expected: "an absolute URL" })
  ),
  detail: Schema.optionalKey(Schema.Literals(["auto", "low", "high"]))
})

/**
 * One message of the conversation. `tool` messages answer the assistant's tool call `toolCallId`.
 *
 * @category schemas
 */
export const Message = Schema.Union([
  Schema.Struct({ role: Schema.Literal("system"), content: Schema.String }),
  Schema.Struct({
    role: Schema.Literal("user"),
    content: Schema.Union([Schema.String, Schema.Array(Schema.Union([TextPart, ImagePart]))])
  }),
  Schema.Struct({
    role: Schema.Literal("assistant"),
    content: Schema.optionalKey(Schema.String),
    toolCalls: Schema.optionalKey(Schema.Array(ToolCall))
  }),
  Schema.Struct({ role: Schema.Literal("tool"), toolCallId: Schema.String, content: Schema.String })
])
/** @category models */
export type Message = typeof Message.Type

/**
 * A tool the model may call: `parameters` is a JSON Schema object (default: an object with no properties).
 *
 * @category schemas
 */
export const ToolDefinition = Schema.Struct({
  name: Schema.String,
  description: Schema.optionalKey(Schema.String),
  parameters: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
})
/** @category models */
export type ToolDefinition = typeof ToolDefinition.Type

/**
 * A read request: one model call.
 *
 * - `messages`: at least one;
 * - `tools`, `toolChoice` (`auto` when tools are given, `none`, `required`);
 * - `maxTokens`: a ceiling on output tokens (sent as `max_completion_tokens`);
 * - `temperature`: 0–2;
 * - `model`: overrides the driver's model for this call;
 * - `stream`: deliver text fragments to the driver's `onDelta` as they arrive (the reply is the same).
 *
 * `fromLanguageModel` ignores `maxTokens`, `temperature`, `model` and `stream`: configure them on the provider layer.
 *
 * @category schemas
 */
export const LlmRequest = Schema.Struct({
  messages: Schema.Array(Message).check(Schema.isMinLength(1)),
  tools: Schema.optionalKey(Schema.Array(ToolDefinition)),
  toolChoice: Schema.optionalKey(Schema.Literals(["auto", "none", "required"])),
  maxTokens: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThan(0))),
  temperature: Schema.optionalKey(Schema.Number.check(Schema.isBetween({ minimum: 0, maximum: 2 }))),
  model: Schema.optionalKey(Schema.String),
  stream: Schema.optionalKey(Schema.Boolean)
})
/** @category models */
export type LlmRequest = typeof LlmRequest.Type

/**
 * What a read returns. `finishReason` uses OpenAI's words (`stop`, `length`, `tool_calls`, `content_filter`, …;
 * `unknown` when the server sent none). `model` is the model that answered, as the server named it. `usage` holds the
 * server's counts; a count the server did not report (many local OpenAI-compatible servers send no `usage`) is the
 * driver's estimate, marked `estimated: true`, so a call is never free for want of a count.
 *
 * @category schemas
 */
export const LlmReply = Schema.Struct({
  text: Schema.String,
  toolCalls: Schema.Array(ToolCall),
  finishReason: Schema.String,
  usage: Schema.Struct({
    inputTokens: Schema.Number,
    outputTokens: Schema.Number,
    /** Some count is the driver's estimate: the server did not report it (see `estimatePromptTokens`). */
    estimated: Schema.optionalKey(Schema.Literal(true))
  }),
  model: Schema.String
})
/** @category models */
export type LlmReply = typeof LlmReply.Type

// ---------------------------------------------------------------------------------------------------------------------
// Options

/**
 * Dollars per million tokens.
 *
 * @category models
 */
export interface Price {
  readonly inputPerMTok: number
  readonly outputPerMTok: number
}

/**
 * Options of `make`. Absent `baseURL`, `apiKey`, `model` are read through Effect `Config` from `OPENAI_BASE_URL`
 * (default `https://api.openai.com/v1`), `OPENAI_API_KEY` and `OPENAI_MODEL` (the model is required when not given
 * here: `make` fails with a `ConfigError` naming it). The key is required only for OpenAI's own endpoint: with another
 * base URL and no key (a local Ollama, vLLM or llama.cpp server), requests are sent without an `Authorization`
 * header. Invalid options (a negative duration, a fractional `retry.times`) are defects.
 *
 * @category models
 */
export interface Options {
  /** The device name (default `"llm"`). */
  readonly name?: string | undefined
  readonly baseURL?: string | undefined
  readonly apiKey?: string | Redacted.Redacted<string> | undefined
  readonly model?: string | undefined
  /** Prices by model id: the requested model's price, else the answering model's. No price: `usd` 0. */
  readonly prices?: Readonly<Record<string, Price>> | undefined
  /** Per attempt, default 60 seconds. */
  readonly timeout?: Duration.Input | undefined
  readonly retry?:
    | {
        /** Retries after the first attempt (default 3; 0 disables retrying). */
        readonly times?: number | undefined
        /** First backoff delay, doubled at each retry (default 500 ms). */
        readonly base?: Duration.Input | undefined
        /** Ceiling on a backoff delay (default 30 s). A server's `Retry-After` is honoured as sent. */
        readonly maxDelay?: Duration.Input | undefined
      }
    | undefined
  /**
   * Receives the text fragments of streamed calls (`stream: true`), with the calling process's context (`pid`, `op`).
   * Called synchronously as fragments arrive; not called on replay.
   */
  readonly onDelta?: ((text: string, context: Device.CallContext) => void) | undefined
  /** The inference-scheduler policy for this device (default: the scheduler's defaults). */
  readonly schedule?: Policy | undefined
  /**
   * Ceiling on output tokens of a call whose request sets no `maxTokens`: sent as `max_completion_tokens`, and what
   * the call reserves for its output (see `reservation`). Default: none sent; the reservation then assumes
   * `defaultReservedOutputTokens`. A positive integer.
   */
  readonly maxTokens?: number | undefined
}

const defaults = {
  name: "llm",
  baseURL: "https://api.openai.com/v1",
  timeout: Duration.seconds(60),
  retryTimes: 3,
  retryBase: Duration.millis(500),
  retryMaxDelay: Duration.seconds(30)
} as const

// ---------------------------------------------------------------------------------------------------------------------
// Token estimates

/**
 * Tokens an image part is estimated at: its URL (a `data:` URL can be megabytes) is not text the model reads. 1 445 is
 * what OpenAI's vision models count for the largest high-detail image (85 + 170 per 512-px tile, 8 tiles).
 *
 * @category tokens
 */
export const imagePartTokens = 1_445

/**
 * Tokens each message adds for its role and separators (OpenAI's chat format adds 3 to 4).
 *
 * @category tokens
 */
export const messageOverheadTokens = 4

const estimateTokens = ContextMemory.estimateTokens

const toolCallsText = (calls: ReadonlyArray<ToolCall>): string =>
  calls
    .map((call) => call.name + (typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments)))
    .join("")

const messageTokens = (message: Message): number => {
  switch (message.role) {
    case "user":
      return typeof message.content === "string"
        ? estimateTokens(message.content)
        : message.content.reduce(
            (sum, part) => sum + (part.type === "text" ? estimateTokens(part.text) : imagePartTokens),
            0
          )
    case "assistant":
      return estimateTokens((message.content ?? "") + toolCallsText(message.toolCalls ?? []))
    case "tool":
      return estimateTokens(message.toolCallId + message.content)
    case "system":
      return estimateTokens(message.content)
  }
}

/**
 * Estimates the prompt tokens of a request with the project's token estimator (`ContextMemory.estimateTokens`): each
 * message's text (content, tool calls' names and arguments) plus `messageOverheadTokens`, `imagePartTokens` per image,
 * and each tool definition as the JSON sent. Charged when a server reports no prompt count, and reserved before a call.
 *
 * @category tokens
 */
export const estimatePromptTokens = (request: LlmRequest): number => {
  let tokens = 0
  for (const message of request.messages) tokens += messageOverheadTokens + messageTokens(message)
  for (const tool of request.tools ?? []) tokens += estimateTokens(JSON.stringify(tool))
  return tokens
}

/**
 * Estimates the completion tokens of a reply: its text and its tool calls' names and arguments (at least 1). Charged
 * when a server reports no completion count.
 *
 * @category tokens
 */
export const estimateCompletionTokens = (reply: Pick<LlmReply, "text" | "toolCalls">): number =>
  estimateTokens(reply.text + toolCallsText(reply.toolCalls))

/**
 * Output tokens a call reserves when neither its request nor its driver sets `maxTokens`: a typical agent turn. With no
 * ceiling sent, the model may write more; the call is then charged what it used when it ends.
 *
 * @category tokens
 */
export const defaultReservedOutputTokens = 256

/**
 * What the driver knows when it reserves a call: its model, its output ceiling and its price table.
 *
 * @category models
 */
export interface ReservationSettings {
  readonly model?: string | undefined
  readonly maxTokens?: number | undefined
  readonly prices?: Readonly<Record<string, Price>> | undefined
}

const isLlmRequest = Schema.is(LlmRequest)

/**
 * What one call may cost, reserved by the kernel against the caller's budget before the call starts (the driver's
 * `reserve`): `tokens` = `estimatePromptTokens(request)` + the output ceiling (the request's `maxTokens`, else the
 * driver's, else `defaultReservedOutputTokens`); `usd` = that many tokens at the price of the requested model (the
 * request's `model`, else the driver's), when the price table has it. A pure function of the request. A request that
 * does not decode reserves nothing: it fails with `invalid-request` before it reaches the model.
 *
 * The reservation is a bound when a ceiling is sent (the request's or the driver's `maxTokens`) and the server
 * reports honest usage; otherwise it is an estimate, and the kernel settles to the actual cost when the call ends.
 *
 * @category tokens
 */
export const reservation = (request: unknown, settings: ReservationSettings = {}): Cost => {
  if (!isLlmRequest(request)) return {}
  const input = estimatePromptTokens(request)
  const output = request.maxTokens ?? settings.maxTokens ?? defaultReservedOutputTokens
  const price = priceOf(settings.prices, request.model ?? settings.model)
  return price === undefined
    ? { tokens: input + output }
    : { tokens: input + output, usd: (input * price.inputPerMTok + output * price.outputPerMTok) / 1_000_000 }
}

/** The reply with every count the server did not report estimated, and marked so. */
const withUsage = (request: LlmRequest, reported: Reported): LlmReply => {
  const { inputTokens, outputTokens } = reported.usage
  if (inputTokens !== undefined && outputTokens !== undefined) {
    return { ...reported, usage: { inputTokens, outputTokens } }
  }
  return {
    ...reported,
    usage: {
      inputTokens: inputTokens ?? estimatePromptTokens(request),
      outputTokens: outputTokens ?? estimateCompletionTokens(reported),
      estimated: true
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The openai SDK driver

/**
 * Makes the LLM driver on the `openai` SDK (one client per driver, shared by every handle).
 *
 * @example
 * ```ts
 * const driver = yield* Llm.make({
 *   model: "gpt-4o-mini",
 *   prices: { "gpt-4o-mini": { inputPerMTok: 0.15, outputPerMTok: 0.6 } }
 * })
 * const handle = yield* driver.open({ pid: 1 })
 * const { value } = yield* handle.read({ messages: [{ role: "user", content: "hi" }] }, context)
 * ```
 *
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Device.Driver, Config.ConfigError> =>
  Effect.gen(function* () {
    const name = options.name ?? defaults.name
    const baseURL =
      options.baseURL ?? (yield* Config.String("OPENAI_BASE_URL").pipe(Config.withDefault(defaults.baseURL)))
    // OpenAI's own endpoint needs a key (a missing one is a ConfigError naming OPENAI_API_KEY); a server of the
    // user's own often needs none, so there an absent key means no Authorization header.
    const apiKey =
      options.apiKey !== undefined
        ? typeof options.apiKey === "string"
          ? Redacted.make(options.apiKey)
          : options.apiKey
        : baseURL.replace(/\/+$/, "") === defaults.baseURL
          ? yield* Config.Redacted("OPENAI_API_KEY")
          : Option.getOrUndefined(yield* Config.option(Config.Redacted("OPENAI_API_KEY")))
    const model = options.model ?? (yield* Config.String("OPENAI_MODEL"))
    const timeout = millisOption(options.timeout, "timeout") ?? Duration.toMillis(defaults.timeout)
    const retryTimes = options.retry?.times ?? defaults.retryTimes
    if (!Number.isInteger(retryTimes) || retryTimes < 0) {
      return yield* Effect.die(new RangeError(`Llm.make: retry.times must be an integer ≥ 0, got ${retryTimes}`))
    }
    if (options.maxTokens !== undefined && !(Number.isSafeInteger(options.maxTokens) && options.maxTokens > 0)) {
      return yield* Effect.die(
        new RangeError(`Llm.make: maxTokens must be a positive integer, got ${options.maxTokens}`)
      )
    }
    const retryBase = millisOption(options.retry?.base, "retry.base") ?? Duration.toMillis(defaults.retryBase)
    const retryMaxDelay =
      millisOption(options.retry?.maxDelay, "retry.maxDelay") ?? Duration.toMillis(defaults.retryMaxDelay)
    // Each plain call passes its own timeout to the SDK (see `call`); this client default is a backstop.
    const client = new OpenAI({
      baseURL,
      // the SDK insists on a key; without one, a placeholder is set and the header it would fill is removed
      ...(apiKey === undefined
        ? { apiKey: "none", defaultHeaders: { Authorization: null } }
        : { apiKey: Redacted.value(apiKey) }),
      maxRetries: 0,
      timeout: timeout + 1_000
    })
    const prices = options.prices ?? {}
    const reserveSettings: ReservationSettings = { model, maxTokens: options.maxTokens, prices }
    const call = makeCall({
      name,
      client,
      model,
      maxTokens: options.maxTokens,
      prices,
      timeout,
      retryTimes,
      retryBase,
      retryMaxDelay,
      onDelta: options.onDelta
    })
    return Device.make({
      name,
      meters: ["tokens", "usd"],
      scheduled: options.schedule ?? true,
      reserve: (request) => reservation(request, reserveSettings),
      open: () =>
        Effect.succeed<Device.Handle>({
          read: (request, context) => decodeRequest(name, request).pipe(Effect.flatMap((r) => call(r, context)))
        })
    })
  })

const millisOption = (input: Duration.Input | undefined, option: string): number | undefined => {
  if (input === undefined) return undefined
  const ms = durationMillis(input)
  if (Number.isNaN(ms)) throw new RangeError(`Llm.make: ${option} is not a duration ≥ 0`)
  return ms
}

const decodeRequest = (device: string, request: unknown): Effect.Effect<LlmRequest, Device.DeviceError> =>
  Schema.decodeUnknownEffect(LlmRequest)(request).pipe(
    Effect.mapError(
      (error) => new Device.DeviceError({ device, reason: "invalid-request", message: error.message, retryable: false })
    )
  )

interface CallSettings {
  readonly name: string
  readonly client: OpenAI
  readonly model: string
  readonly maxTokens: number | undefined
  readonly prices: Readonly<Record<string, Price>>
  readonly timeout: number
  readonly retryTimes: number
  readonly retryBase: number
  readonly retryMaxDelay: number
  readonly onDelta: ((text: string, context: Device.CallContext) => void) | undefined
}

/** One failed attempt: the error to report, whether to retry, and the delay the server asked for. */
class AttemptError extends Data.TaggedError("AttemptError")<{
  readonly error: Device.DeviceError
  readonly retry: boolean
  readonly retryAfterMs: number | undefined
}> {}

const makeCall = (settings: CallSettings) => {
  const { client, name } = settings
  const schedule = Schedule.exponential(Duration.millis(settings.retryBase)).pipe(
    Schedule.setInputType<AttemptError>(),
    Schedule.modifyDelay(({ duration, input }) =>
      Effect.succeed(
        input.retryAfterMs !== undefined
          ? Duration.millis(input.retryAfterMs)
          : Duration.min(duration, Duration.millis(settings.retryMaxDelay))
      )
    )
  )
  const timedOut = new AttemptError({
    error: new Device.DeviceError({
      device: name,
      reason: "timeout",
      message: `no answer within ${settings.timeout} ms`,
      retryable: true
    }),
    retry: false,
    retryAfterMs: undefined
  })

  return (request: LlmRequest, context: Device.CallContext): Effect.Effect<Device.DeviceResult, Device.DeviceError> => {
    const model = request.model ?? settings.model
    const body = toChatBody(model, request, settings.maxTokens)
    // A plain call is bounded by the SDK's own per-request timeout (it aborts the request and raises a timeout
    // error): an Effect timeout around every call would cost a fiber race per call (~0.1 ms). A streamed reply is
    // read long after the SDK returns, so it is bounded by an Effect timeout as a whole.
    // the kernel's `(pid, op)` key, the same on every retry and on a re-run after `recover`, so that a server that
    // deduplicates by `Idempotency-Key` does the work once
    const headers =
      context.idempotencyKey === undefined ? undefined : { "Idempotency-Key": `agentos-${context.idempotencyKey}` }
    const attempt =
      request.stream === true
        ? Effect.tryPromise({
            try: (signal) => streamed(client, body, signal, headers, (text) => settings.onDelta?.(text, context)),
            catch: (error) => classify(name, error)
          }).pipe(
            Effect.timeoutOrElse({ duration: Duration.millis(settings.timeout), orElse: () => Effect.fail(timedOut) })
          )
        : Effect.tryPromise({
            try: (signal) =>
              client.chat.completions
                .create(
                  { ...body, stream: false },
                  headers === undefined
                    ? { signal, timeout: settings.timeout }
                    : { signal, timeout: settings.timeout, headers }
                )
                .then(fromCompletion),
            catch: (error) => classify(name, error)
          })
    return attempt.pipe(
      Effect.retry({ schedule, times: settings.retryTimes, while: (failure) => failure.retry }),
      Effect.mapError((failure) => failure.error),
      Effect.map((reported): Device.DeviceResult<LlmReply> => {
        const reply = withUsage(request, reported)
        return {
          value: reply,
          cost: costOf(reply, priceOf(settings.prices, model) ?? priceOf(settings.prices, reply.model))
        }
      })
    )
  }
}

/**
 * The table's own price for a model: a model id is request data, and `"constructor"` or `"__proto__"` must not find
 * `Object.prototype`'s members (an `NaN` price would make the call's cost invalid, and the call free).
 */
const priceOf = (prices: Readonly<Record<string, Price>> | undefined, model: string | undefined): Price | undefined =>
  prices !== undefined && model !== undefined && Object.hasOwn(prices, model) ? prices[model] : undefined

const costOf = (reply: LlmReply, price: Price | undefined): Cost => ({
  tokens: reply.usage.inputTokens + reply.usage.outputTokens,
  usd:
    price === undefined
      ? 0
      : (reply.usage.inputTokens * price.inputPerMTok + reply.usage.outputTokens * price.outputPerMTok) / 1_000_000
})

type ChatBody = Omit<OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming, "stream">

/** The chat-completions body; `maxTokens` is the driver's output ceiling, for a request that sets none. */
const toChatBody = (model: string, request: LlmRequest, maxTokens: number | undefined): ChatBody => {
  const ceiling = request.maxTokens ?? maxTokens
  return {
    model,
    messages: request.messages.map(toChatMessage),
    ...(request.tools !== undefined && request.tools.length > 0
      ? {
          tools: request.tools.map((tool): OpenAI.Chat.Completions.ChatCompletionTool => ({
            type: "function",
            function: {
              name: tool.name,
              ...(tool.description === undefined ? {} : { description: tool.description }),
              parameters: tool.parameters ?? { type: "object", properties: {} }
            }
          }))
        }
      : {}),
    ...(request.toolChoice === undefined ? {} : { tool_choice: request.toolChoice }),
    ...(ceiling === undefined ? {} : { max_completion_tokens: ceiling }),
    ...(request.temperature === undefined ? {} : { temperature: request.temperature })
  }
}

const toChatMessage = (message: Message): OpenAI.Chat.Completions.ChatCompletionMessageParam => {
  switch (message.role) {
    case "system":
      return { role: "system", content: message.content }
    case "user":
      return {
        role: "user",
        content:
          typeof message.content === "string"
            ? message.content
            : message.content.map((part): OpenAI.Chat.Completions.ChatCompletionContentPart =>
                part.type === "text"
                  ? { type: "text", text: part.text }
                  : {
                      type: "image_url",
                      image_url: { url: part.url, ...(part.detail === undefined ? {} : { detail: part.detail }) }
                    }
              )
      }
    case "assistant":
      return {
        role: "assistant",
        content: message.content ?? null,
        ...(message.toolCalls === undefined || message.toolCalls.length === 0
          ? {}
          : {
              tool_calls: message.toolCalls.map((call) => ({
                id: call.id,
                type: "function" as const,
                function: {
                  name: call.name,
                  arguments: typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments)
                }
              }))
            })
      }
    case "tool":
      return { role: "tool", tool_call_id: message.toolCallId, content: message.content }
  }
}

/** Parses tool-call arguments: a JSON object, or the raw text marked invalid. */
const parseToolCall = (id: string, name: string, raw: string): ToolCall => {
  try {
    const parsed: unknown = JSON.parse(raw === "" ? "{}" : raw)
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
      return { id, name, arguments: parsed as Record<string, unknown> }
    }
  } catch {
    // falls through: kept raw, marked invalid
  }
  return { id, name, arguments: raw, argumentsInvalid: true }
}

class BadResponse extends Error {}

/** A reply as the server sent it: a count it did not report is `undefined`. */
interface Reported extends Omit<LlmReply, "usage"> {
  readonly usage: { readonly inputTokens: number | undefined; readonly outputTokens: number | undefined }
}

/** A count the server reported: a finite number ≥ 0 (absent, `null` or garbage is not a count). */
const countOf = (n: unknown): number | undefined =>
  typeof n === "number" && Number.isFinite(n) && n >= 0 ? n : undefined

const usageOf = (
  usage: { readonly prompt_tokens?: unknown; readonly completion_tokens?: unknown } | null | undefined
) => ({
  inputTokens: countOf(usage?.prompt_tokens),
  outputTokens: countOf(usage?.completion_tokens)
})

const fromCompletion = (completion: OpenAI.Chat.Completions.ChatCompletion): Reported => {
  const choice = completion.choices?.[0]
  if (choice === undefined) throw new BadResponse("the answer has no choice")
  return {
    text: choice.message.content ?? "",
    toolCalls: (choice.message.tool_calls ?? []).flatMap((call) =>
      call.type === "function" ? [parseToolCall(call.id, call.function.name, call.function.arguments)] : []
    ),
    finishReason: choice.finish_reason ?? "unknown",
    usage: usageOf(completion.usage),
    model: completion.model ?? ""
  }
}

/** Runs a streamed call to its end, handing text fragments to `onDelta`, and assembles the whole reply. */
const streamed = async (
  client: OpenAI,
  body: ChatBody,
  signal: AbortSignal,
  headers: Record<string, string> | undefined,
  onDelta: (text: string) => void
): Promise<Reported> => {
  const stream = await client.chat.completions.create(
    { ...body, stream: true, stream_options: { include_usage: true } },
    headers === undefined ? { signal } : { signal, headers }
  )
  let text = ""
  let finishReason = "unknown"
  let model = ""
  let usage: Reported["usage"] = { inputTokens: undefined, outputTokens: undefined }
  let sawChoice = false
  const calls: Array<{ id: string; name: string; arguments: string }> = []
  for await (const chunk of stream) {
    if (chunk.model) model = chunk.model
    if (chunk.usage) usage = usageOf(chunk.usage)
    const choice = chunk.choices?.[0]
    if (choice === undefined) continue
    sawChoice = true
    const delta = choice.delta
    if (typeof delta?.content === "string" && delta.content !== "") {
      text += delta.content
      try {
        onDelta(delta.content)
      } catch {
        // a display callback must not fail a paid call
      }
    }
    for (const fragment of delta?.tool_calls ?? []) {
      const call = (calls[fragment.index] ??= { id: "", name: "", arguments: "" })
      if (fragment.id) call.id = fragment.id
      if (fragment.function?.name && call.name === "") call.name = fragment.function.name
      if (fragment.function?.arguments) call.arguments += fragment.function.arguments
    }
    if (choice.finish_reason) finishReason = choice.finish_reason
  }
  if (!sawChoice) throw new BadResponse("the stream carried no choice")
  return {
    text,
    // a sparse index (a server skipping one) leaves holes: skip them
    toolCalls: calls
      .filter((call) => call !== undefined)
      .map((call) => parseToolCall(call.id, call.name, call.arguments)),
    finishReason,
    usage,
    model
  }
}

/** Reads a server's requested delay: OpenAI's `retry-after-ms`, else `Retry-After` in seconds. */
const retryAfterMillis = (headers: Headers | undefined): number | undefined => {
  const ms = Number(headers?.get("retry-after-ms") ?? NaN)
  if (Number.isFinite(ms) && ms >= 0) return ms
  const seconds = Number(headers?.get("retry-after") ?? NaN)
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1_000
  return undefined
}

const classify = (device: string, error: unknown): AttemptError => {
  const fail = (reason: string, retryable: boolean, retry: boolean, retryAfterMs?: number) =>
    new AttemptError({
      error: new Device.DeviceError({ device, reason, message: messageOf(error), retryable }),
      retry,
      retryAfterMs
    })
  if (error instanceof APIConnectionTimeoutError) return fail("timeout", true, false)
  if (error instanceof APIConnectionError) return fail("unavailable", true, true)
  if (error instanceof APIError && typeof error.status === "number") {
    const status = error.status
    const retryAfter = retryAfterMillis(error.headers)
    if (status === 429) return fail("rate-limited", true, true, retryAfter)
    if (status >= 500) return fail("unavailable", true, true, retryAfter)
    if (status === 400 || status === 422) return fail("invalid-request", false, false)
    if (status === 401 || status === 403) return fail("unauthorized", false, false)
    if (status === 404) return fail("not-found", false, false)
    if (status === 408) return fail("timeout", true, false)
    if (status === 409) return fail("conflict", true, false)
    return fail("failed", false, false)
  }
  if (error instanceof BadResponse) return fail("bad-response", false, false)
  return fail("failed", false, false)
}

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

// ---------------------------------------------------------------------------------------------------------------------
// The effect/ai driver

/**
 * Makes the LLM driver from the `effect/ai` `LanguageModel` in context, so any effect/ai provider layer (OpenAI,
 * Anthropic, a test model) backs the device.
 *
 * The same `LlmRequest` maps to `LanguageModel.generateText`: messages to a `Prompt` (an image part becomes a file
 * part with media type `image/*`), tools to dynamic JSON-Schema tools whose calls are returned, not run
 * (`disableToolCallResolution`); `maxTokens`, `temperature`, `model` and `stream` are not passed (set them on the
 * provider). The reply has the same shape as `make`'s (`finishReason` in OpenAI's words, `model` empty), and costs
 * `{ tokens }`; a call reserves `reservation(request)` (an estimate: the provider sets its own output ceiling).
 * Retries and timeouts are the provider's; an `AiError` becomes a `DeviceError` (`rate-limited`,
 * `unauthorized`, `invalid-request`, `unavailable`, …) with the error's own `isRetryable`.
 *
 * @category constructors
 */
export const fromLanguageModel = (
  name: string = defaults.name
): Effect.Effect<Device.Driver, never, LanguageModel.LanguageModel> =>
  Effect.gen(function* () {
    const model = yield* LanguageModel.LanguageModel
    const generate = (request: LlmRequest): Effect.Effect<Device.DeviceResult<LlmReply>, Device.DeviceError> => {
      const prompt = toPrompt(request.messages)
      const toolChoice = request.toolChoice ?? "auto"
      // Tool calls are returned, not run: the process decides (and pays for) what to do with them.
      const generated = model.generateText({
        prompt,
        toolChoice,
        toolkit: Toolkit.make(
          ...(request.tools ?? []).map((tool) =>
            Tool.dynamic(tool.name, {
              ...(tool.description === undefined ? {} : { description: tool.description }),
              parameters: tool.parameters ?? { type: "object", properties: {} }
            })
          )
        ),
        disableToolCallResolution: true,
        toolCallValidation: "deferred"
      })
      return generated.pipe(
        Effect.map((response): Device.DeviceResult<LlmReply> => {
          const reply = withUsage(request, {
            text: response.text,
            toolCalls: response.toolCalls.map((call) =>
              typeof call.params === "object" && call.params !== null && !Array.isArray(call.params)
                ? { id: call.id, name: call.name, arguments: call.params as Record<string, unknown> }
                : { id: call.id, name: call.name, arguments: JSON.stringify(call.params), argumentsInvalid: true }
            ),
            finishReason: finishReasons[response.finishReason] ?? response.finishReason,
            usage: {
              inputTokens: countOf(response.usage.inputTokens.total),
              outputTokens: countOf(response.usage.outputTokens.total)
            },
            model: ""
          })
          return { value: reply, cost: { tokens: reply.usage.inputTokens + reply.usage.outputTokens } }
        }),
        Effect.mapError(
          (error) =>
            new Device.DeviceError({
              device: name,
              reason: aiReasons[error.reason._tag] ?? "failed",
              message: error.message,
              retryable: error.isRetryable
            })
        )
      )
    }
    return Device.make({
      name,
      meters: ["tokens"],
      scheduled: true,
      reserve: (request) => reservation(request),
      open: () =>
        Effect.succeed<Device.Handle>({
          read: (request) => decodeRequest(name, request).pipe(Effect.flatMap(generate))
        })
    })
  })

const finishReasons: Record<string, string> = {
  "tool-calls": "tool_calls",
  "content-filter": "content_filter"
}

const aiReasons: Record<string, string> = {
  RateLimitError: "rate-limited",
  QuotaExhaustedError: "quota-exhausted",
  AuthenticationError: "unauthorized",
  InvalidRequestError: "invalid-request",
  InvalidUserInputError: "invalid-request",
  NetworkError: "unavailable",
  InternalProviderError: "unavailable",
  InvalidResponseError: "bad-response",
  InvalidOutputError: "bad-response"
}

const toPrompt = (messages: ReadonlyArray<Message>): Array<Prompt.MessageEncoded> => {
  const toolNames = new Map<string, string>()
  return messages.map((message): Prompt.MessageEncoded => {
    switch (message.role) {
      case "system":
        return { role: "system", content: message.content }
      case "user":
        return {
          role: "user",
          content:
            typeof message.content === "string"
              ? message.content
              : message.content.map((part): Prompt.UserMessagePartEncoded =>
                  part.type === "text"
                    ? { type: "text", text: part.text }
                    : { type: "file", mediaType: imageMediaType(part.url), data: new URL(part.url) }
                )
        }
      case "assistant": {
        const parts: Array<Prompt.AssistantMessagePartEncoded> = []
        if (message.content !== undefined && message.content !== "") parts.push({ type: "text", text: message.content })
        for (const call of message.toolCalls ?? []) {
          toolNames.set(call.id, call.name)
          parts.push({ type: "tool-call", id: call.id, name: call.name, params: call.arguments })
        }
        return { role: "assistant", content: parts }
      }
      case "tool":
        return {
          role: "tool",
          content: [
            {
              type: "tool-result",
              id: message.toolCallId,
              name: toolNames.get(message.toolCallId) ?? "unknown",
              isFailure: false,
              result: message.content
            }
          ]
        }
    }
  })
}

/** The media type of a `data:` URL, else `image/*`. */
const imageMediaType = (url: string): string => {
  const match = /^data:([^;,]+)[;,]/.exec(url)
  return match?.[1] ?? "image/*"
}

// ---------------------------------------------------------------------------------------------------------------------
// Context-memory pager

const isLlmReply = Schema.is(LlmReply)

/**
 * A context-memory pager that summarises paged-out segments with a model, through an llm device cap the process holds
 * (`Sys.caps()[device]`): the call is an ordinary read, metered and charged to the paging process, and journaled like
 * any other. If the call cannot be made (no such cap, a device error) or the device does not answer with an
 * `LlmReply`, the pager falls back to `ContextMemory.markerPager`. The handle it opens is revoked when the call ends.
 *
 * @example
 * ```ts
 * Kernel.layer({ drivers: [llm], memory: { pager: Llm.pager({ device: 0 }) } })
 * ```
 *
 * @category pagers
 */
export const pager =
  (options: {
    /** The index of an llm device cap among the process's start caps. */
    readonly device: number
    /** Ceiling on the summary's length (default 200 tokens). */
    readonly maxTokens?: number | undefined
    readonly instructions?: string | undefined
  }): ContextMemory.Pager =>
  (paged) =>
    Effect.gen(function* () {
      const device = (yield* Sys.caps())[options.device]
      if (device === undefined) return ContextMemory.markerPager(paged)
      const handle = yield* Sys.open(device)
      const text = paged.map((segment) => `[${segment.id}] ${ContextMemory.textOf(segment.body)}`).join("\n")
      const reply = yield* Sys.read(handle, {
        messages: [
          {
            role: "system",
            content:
              options.instructions ??
              "Summarise these notes in a few short sentences, keeping names, numbers and decisions."
          },
          { role: "user", content: text }
        ],
        maxTokens: options.maxTokens ?? 200
      }).pipe(Effect.ensuring(Effect.ignore(Sys.revoke(handle))))
      if (!isLlmReply(reply)) return ContextMemory.markerPager(paged)
      const ids = paged.map((segment) => segment.id)
      return { body: { _tag: "Summary", ids, text: reply.text }, tokens: ContextMemory.estimateTokens(reply.text) + 4 }
    }).pipe(Effect.catch(() => Effect.succeed(ContextMemory.markerPager(paged))))
