/**
 * Serves a scripted OpenAI-compatible chat-completions API on the loopback interface, for tests.
 *
 * A test starts the server inside a scope (`OpenAiServer.make`), points a real client (the `openai` SDK, or the LLM
 * driver) at `server.baseURL`, and scripts the answers: each `POST /v1/chat/completions` takes the next reply from a
 * queue. A reply is a completion (text, tool calls, or both; served as JSON, or as server-sent events when the request
 * asks for `stream: true`) or an HTTP error (429 with `Retry-After`, 500, 400 …), optionally after a delay. Every
 * request is recorded (its body, the status sent, whether the client went away before the answer: `aborted`), so a
 * test can assert on what the client sent and prove that cancelling a call aborts the HTTP request.
 *
 * Rules a test can rely on:
 *
 * - The server never hangs a test: a request that finds the queue empty is answered at once with a 500 whose message
 *   says so (`OpenAiServer: no scripted reply left …`).
 * - A completion carries `usage`: the scripted counts, or estimates (`ContextMemory.estimateTokens`), unless the
 *   script leaves it out (`usage: null`, or one count `null`), as many local OpenAI-compatible servers do.
 * - A streamed answer follows OpenAI's format: `data:` chunks with `choices[0].delta` (first the role, then text
 *   fragments, then tool-call fragments, then an empty delta with `finish_reason`), a final chunk with `usage` and no
 *   choices when the request sets `stream_options.include_usage`, then `data: [DONE]`.
 * - A client that disconnects while its answer is delayed (or mid-stream) is recorded as `aborted: true`; the timer is
 *   cancelled and nothing more is written. The server does not crash.
 * - The server, its timers and its open connections are closed when the scope closes.
 *
 * `GET /v1/models` lists `options.models` (default `["test-model"]`); other paths answer 404.
 *
 * @example
 * ```ts
 * it.live("answers", () =>
 *   Effect.gen(function* () {
 *     const server = yield* OpenAiServer.make([OpenAiServer.text("hello")])
 *     const client = new OpenAI({ baseURL: server.baseURL, apiKey: "test" })
 *     // …
 *     assert.strictEqual((yield* server.requests).length, 1)
 *   }))
 * ```
 *
 * @since 0.1.0
 */
import * as Http from "node:http"
import { Effect, type Scope } from "effect"
import { estimateTokens } from "../services/ContextMemory.ts"

/**
 * Token counts a reply reports. Absent counts are estimated: the prompt from the request's messages, the completion
 * from the reply's text and tool-call arguments. A count given as `null` is left out of `usage` (a server that reports
 * only part of it). `total_tokens` is the sum of the counts sent.
 *
 * @category models
 */
export interface UsageScript {
  readonly promptTokens?: number | null | undefined
  readonly completionTokens?: number | null | undefined
}

/**
 * A tool call the model "makes". `arguments` given as a string is sent verbatim (script invalid JSON this way);
 * anything else is sent as its JSON text. `id` defaults to `call_<n>`, n counted per server from 1.
 *
 * @category models
 */
export interface ToolCallScript {
  readonly id?: string | undefined
  readonly name: string
  readonly arguments: unknown
}

/**
 * A successful answer. Sent as one JSON completion, or as server-sent events when the request sets `stream: true`:
 * then the text goes out in `chunks` (default: the whole text in one chunk), `intervalMs` apart.
 *
 * @category models
 */
export interface Completion {
  readonly _tag: "Completion"
  readonly text: string
  readonly chunks?: ReadonlyArray<string> | undefined
  readonly toolCalls?: ReadonlyArray<ToolCallScript> | undefined
  /** Default: `"tool_calls"` when there are tool calls, else `"stop"`. */
  readonly finishReason?: string | undefined
  /** `null`: the answer carries no `usage` at all (streamed: no usage chunk). */
  readonly usage?: UsageScript | null | undefined
  /** Default: the model the request named. */
  readonly model?: string | undefined
  /** Wait this long before answering (headers included). */
  readonly delayMs?: number | undefined
  /** Wait this long between streamed chunks. */
  readonly intervalMs?: number | undefined
}

/**
 * An HTTP error with an OpenAI-style body `{ error: { message, type, param, code } }`.
 *
 * @category models
 */
export interface Failure {
  readonly _tag: "Failure"
  readonly status: number
  readonly message: string
  /** The `error.type` field; default by status: `requests` (429), `server_error` (5xx), `invalid_request_error`. */
  readonly type?: string | undefined
  readonly code?: string | undefined
  /** Sent as the `Retry-After` header, in seconds. */
  readonly retryAfterSeconds?: number | undefined
  readonly delayMs?: number | undefined
}

/**
 * One scripted answer.
 *
 * @category models
 */
export type Reply = Completion | Failure

/**
 * What the server recorded about one request. `body` is the parsed JSON body (`undefined` when there was none or it
 * was not JSON). `status` is the status sent, `undefined` while the answer is pending or when the client went away
 * first (`aborted`). `completed` is true once the whole answer was written. `stream` says whether the request asked
 * for server-sent events.
 *
 * @category models
 */
export interface RecordedRequest {
  readonly index: number
  readonly method: string
  readonly path: string
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  readonly body: any
  readonly stream: boolean
  readonly status: number | undefined
  readonly aborted: boolean
  readonly completed: boolean
}

/**
 * A running scripted server.
 *
 * @category models
 */
export interface OpenAiServer {
  /** The API base, `http://127.0.0.1:<port>/v1`: pass it as the SDK's `baseURL`. */
  readonly baseURL: string
  /** Appends replies to the script. */
  readonly enqueue: (...replies: ReadonlyArray<Reply>) => Effect.Effect<void>
  /** A snapshot of every request received (any path), in arrival order. */
  readonly requests: Effect.Effect<ReadonlyArray<RecordedRequest>>
  /** The JSON bodies of the `POST /v1/chat/completions` requests received, in arrival order. */
  readonly received: Effect.Effect<ReadonlyArray<any>>
  /** How many scripted replies are still queued. */
  readonly pending: Effect.Effect<number>
  /**
   * Waits until the recorded requests satisfy `predicate` (checked now, and again on every arrival, answer and
   * abort), then returns them. Use it to wait for "the request arrived" or "the request was aborted" without sleeping.
   */
  readonly awaitRequests: (
    predicate: (requests: ReadonlyArray<RecordedRequest>) => boolean
  ) => Effect.Effect<ReadonlyArray<RecordedRequest>>
}

/**
 * Options of `make`.
 *
 * @category models
 */
export interface Options {
  /** Model ids listed by `GET /v1/models`. Default `["test-model"]`. */
  readonly models?: ReadonlyArray<string> | undefined
}

/**
 * A text answer.
 *
 * @category replies
 */
export const text = (text: string, options?: Omit<Completion, "_tag" | "text">): Completion => ({
  ...options,
  _tag: "Completion",
  text
})

/**
 * An answer that calls tools (with optional accompanying text in `options.text`).
 *
 * @category replies
 */
export const toolCalls = (
  calls: ReadonlyArray<ToolCallScript>,
  options?: Omit<Completion, "_tag" | "toolCalls">
): Completion => ({ text: "", ...options, _tag: "Completion", toolCalls: calls })

/**
 * A text answer delivered in these chunks when the request streams (their concatenation otherwise).
 *
 * @category replies
 */
export const stream = (chunks: ReadonlyArray<string>, options?: Omit<Completion, "_tag" | "text" | "chunks">) =>
  text(chunks.join(""), { ...options, chunks })

/**
 * An HTTP error answer.
 *
 * @category replies
 */
export const failure = (
  status: number,
  message: string,
  options?: Omit<Failure, "_tag" | "status" | "message">
): Failure => ({ ...options, _tag: "Failure", status, message })

/**
 * A 429 answer with `Retry-After: <seconds>` (no header when `retryAfterSeconds` is undefined).
 *
 * @category replies
 */
export const rateLimited = (retryAfterSeconds?: number, options?: { readonly delayMs?: number }): Failure =>
  failure(429, "Rate limit reached for requests", { ...options, retryAfterSeconds, code: "rate_limit_exceeded" })

/**
 * A 500 answer.
 *
 * @category replies
 */
export const serverError = (message = "The server had an error while processing your request.") => failure(500, message)

/**
 * A 400 answer (`invalid_request_error`).
 *
 * @category replies
 */
export const badRequest = (message = "Invalid request.", code?: string) => failure(400, message, { code })

/**
 * Starts a scripted server on `127.0.0.1` at an ephemeral port, closed with the scope.
 *
 * @category constructors
 */
export const make = (
  script: ReadonlyArray<Reply> = [],
  options?: Options
): Effect.Effect<OpenAiServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Running>((resume) => {
      const running = start(script, options?.models ?? ["test-model"])
      running.server.once("error", (error) => resume(Effect.die(error)))
      running.server.listen(0, "127.0.0.1", () => resume(Effect.succeed(running)))
      return running.close
    }),
    (running) => running.close
  ).pipe(Effect.map((running): OpenAiServer => ({ ...running.api, baseURL: baseURLOf(running.server) })))

// ---------------------------------------------------------------------------------------------------------------------
// node:http edge: plain mutable state, touched only from Node's event loop callbacks and the `Effect.sync`s above.

interface Running {
  readonly server: Http.Server
  readonly api: Omit<OpenAiServer, "baseURL">
  readonly close: Effect.Effect<void>
}

const baseURLOf = (server: Http.Server): string => {
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  return `http://127.0.0.1:${port}/v1`
}

interface MutableRecord {
  index: number
  method: string
  path: string
  headers: Record<string, string | ReadonlyArray<string> | undefined>
  body: any
  stream: boolean
  status: number | undefined
  aborted: boolean
  completed: boolean
}

const start = (script: ReadonlyArray<Reply>, models: ReadonlyArray<string>): Running => {
  const queue: Array<Reply> = [...script]
  const records: Array<MutableRecord> = []
  const timers = new Set<NodeJS.Timeout>()
  const watchers = new Set<() => void>()
  let toolCallCount = 0
  let completionCount = 0

  const changed = () => {
    for (const watcher of [...watchers]) watcher()
  }
  const snapshot = (): ReadonlyArray<RecordedRequest> => records.map((r) => ({ ...r }))
  const later = (ms: number, f: () => void): NodeJS.Timeout => {
    const timer = setTimeout(() => {
      timers.delete(timer)
      f()
    }, ms)
    timers.add(timer)
    return timer
  }

  const server = Http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("error", () => {})
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8")
      let body: any = undefined
      try {
        body = raw.length === 0 ? undefined : JSON.parse(raw)
      } catch {
        body = undefined
      }
      const url = new URL(req.url ?? "/", "http://127.0.0.1")
      const record: MutableRecord = {
        index: records.length,
        method: req.method ?? "GET",
        path: url.pathname,
        headers: { ...req.headers },
        body,
        stream: typeof body === "object" && body !== null && body.stream === true,
        status: undefined,
        aborted: false,
        completed: false
      }
      records.push(record)
      let pendingTimer: NodeJS.Timeout | undefined
      res.on("close", () => {
        if (!res.writableFinished) {
          record.aborted = true
          if (pendingTimer !== undefined) {
            clearTimeout(pendingTimer)
            timers.delete(pendingTimer)
          }
          changed()
        }
      })
      res.on("error", () => {})
      res.on("finish", () => {
        record.completed = true
        changed()
      })
      changed()

      const gone = () => record.aborted || res.destroyed
      const sendJson = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
        if (gone()) return
        record.status = status
        res.writeHead(status, { "content-type": "application/json", ...headers })
        res.end(JSON.stringify(payload))
      }
      const afterDelay = (ms: number | undefined, f: () => void) => {
        if (ms === undefined || ms <= 0) return f()
        pendingTimer = later(ms, () => {
          pendingTimer = undefined
          if (!gone()) f()
        })
      }

      if (record.method === "GET" && record.path === "/v1/models") {
        return sendJson(200, {
          object: "list",
          data: models.map((id) => ({ id, object: "model", created: 0, owned_by: "openai-server" }))
        })
      }
      if (record.method !== "POST" || record.path !== "/v1/chat/completions") {
        return sendJson(404, errorBody(404, `OpenAiServer: no route ${record.method} ${record.path}`))
      }
      if (typeof body !== "object" || body === null) {
        return sendJson(400, errorBody(400, "OpenAiServer: the request body is not a JSON object"))
      }
      const reply = queue.shift()
      if (reply === undefined) {
        return sendJson(
          500,
          errorBody(500, `OpenAiServer: no scripted reply left for request #${record.index} (chat completion)`)
        )
      }
      if (reply._tag === "Failure") {
        return afterDelay(reply.delayMs, () =>
          sendJson(
            reply.status,
            errorBody(reply.status, reply.message, reply.type, reply.code),
            reply.retryAfterSeconds === undefined ? {} : { "retry-after": String(reply.retryAfterSeconds) }
          )
        )
      }
      completionCount += 1
      const id = `chatcmpl-${completionCount}`
      const calls = (reply.toolCalls ?? []).map((call) => ({
        id: call.id ?? `call_${++toolCallCount}`,
        type: "function" as const,
        function: {
          name: call.name,
          arguments: typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments)
        }
      }))
      const model = reply.model ?? (typeof body.model === "string" ? body.model : "test-model")
      const finishReason = reply.finishReason ?? (calls.length > 0 ? "tool_calls" : "stop")
      const promptTokens =
        reply.usage?.promptTokens === undefined
          ? estimateTokens(JSON.stringify(body.messages ?? []))
          : reply.usage.promptTokens
      const completionTokens =
        reply.usage?.completionTokens === undefined
          ? estimateTokens(reply.text + calls.map((c) => c.function.name + c.function.arguments).join(""))
          : reply.usage.completionTokens
      const usage =
        reply.usage === null
          ? undefined
          : {
              ...(promptTokens === null ? {} : { prompt_tokens: promptTokens }),
              ...(completionTokens === null ? {} : { completion_tokens: completionTokens }),
              total_tokens: (promptTokens ?? 0) + (completionTokens ?? 0)
            }
      if (!record.stream) {
        return afterDelay(reply.delayMs, () =>
          sendJson(200, {
            id,
            object: "chat.completion",
            created: 0,
            model,
            choices: [
              {
                index: 0,
                message: {
                  role: "assistant",
                  content: calls.length > 0 && reply.text === "" ? null : reply.text,
                  refusal: null,
                  ...(calls.length > 0 ? { tool_calls: calls } : {})
                },
                logprobs: null,
                finish_reason: finishReason
              }
            ],
            ...(usage === undefined ? {} : { usage })
          })
        )
      }
      const chunk = (choices: ReadonlyArray<unknown>, extra: Record<string, unknown> = {}) =>
        `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created: 0, model, choices, ...extra })}\n\n`
      const delta = (d: Record<string, unknown>, finish: string | null = null) =>
        chunk([{ index: 0, delta: d, logprobs: null, finish_reason: finish }])
      const events: Array<string> = [delta({ role: "assistant", content: "" })]
      const pieces = reply.chunks ?? (reply.text === "" ? [] : [reply.text])
      for (const piece of pieces) events.push(delta({ content: piece }))
      calls.forEach((call, index) => {
        events.push(
          delta({
            tool_calls: [
              { index, id: call.id, type: "function", function: { name: call.function.name, arguments: "" } }
            ]
          })
        )
        // arguments in two fragments, as real servers split them
        const half = Math.ceil(call.function.arguments.length / 2)
        for (const part of [call.function.arguments.slice(0, half), call.function.arguments.slice(half)]) {
          if (part !== "") events.push(delta({ tool_calls: [{ index, function: { arguments: part } }] }))
        }
      })
      events.push(delta({}, finishReason))
      if (body.stream_options?.include_usage === true && usage !== undefined) events.push(chunk([], { usage }))
      events.push("data: [DONE]\n\n")
      afterDelay(reply.delayMs, () => {
        record.status = 200
        res.writeHead(200, {
          "content-type": "text/event-stream",
          "cache-control": "no-cache",
          connection: "keep-alive"
        })
        changed()
        const interval = reply.intervalMs ?? 0
        const next = (i: number) => {
          if (gone()) return
          if (i === events.length - 1) return void res.end(events[i])
          res.write(events[i])
          if (interval > 0) pendingTimer = later(interval, () => next(i + 1))
          else next(i + 1)
        }
        next(0)
      })
    })
  })
  server.on("clientError", (_error, socket) => socket.destroy())

  const api: Omit<OpenAiServer, "baseURL"> = {
    enqueue: (...replies) => Effect.sync(() => void queue.push(...replies)),
    requests: Effect.sync(snapshot),
    received: Effect.sync(() =>
      records.filter((r) => r.method === "POST" && r.path === "/v1/chat/completions").map((r) => r.body)
    ),
    pending: Effect.sync(() => queue.length),
    awaitRequests: (predicate) =>
      Effect.callback<ReadonlyArray<RecordedRequest>>((resume) => {
        const check = () => {
          const current = snapshot()
          if (!predicate(current)) return
          watchers.delete(check)
          resume(Effect.succeed(current))
        }
        watchers.add(check)
        check()
        return Effect.sync(() => void watchers.delete(check))
      })
  }

  return {
    server,
    api,
    close: Effect.callback<void>((resume) => {
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
      watchers.clear()
      server.close(() => resume(Effect.void))
      server.closeAllConnections()
    })
  }
}

const errorBody = (status: number, message: string, type?: string, code?: string) => ({
  error: {
    message,
    type: type ?? (status === 429 ? "requests" : status >= 500 ? "server_error" : "invalid_request_error"),
    param: null,
    code: code ?? null
  }
})
