/**
 * Serves an `effect/rpc` `RpcGroup` as real JSON-RPC 2.0 (the wire outside clients speak: `socat`, `nc -U`, any
 * language's JSON-RPC library), one message per line.
 *
 * The group stays the one typed definition of the API (Effect clients can use `RpcClient` on it); this module maps
 * its procedures to JSON-RPC 2.0 exactly: `-32700` parse error, `-32600` invalid request, `-32601` method not found,
 * `-32602` invalid params (with the Schema's message in `data`), `-32603` internal error (a defect; its details are
 * not sent), application errors with their own code (by the error's `_tag`, from `codes`; `-32000` by default) and
 * the encoded error as `data`; a batch answered as one array; notifications (no `id`) run and are not answered, and a
 * batch of notifications gets no answer at all. Params are named (an object); by-position params are `-32602`.
 *
 * Streams (an `Rpc` made with `stream: true`, whose handler returns a `Stream`) need an `Emitter`, the transport's
 * way to write lines before the answer: each element goes out at once as a notification
 * `{"jsonrpc":"2.0","method":"stream","params":{"id":<request id>,"item":<encoded element>}}`, then the answer is
 * the final response `{"jsonrpc":"2.0","id":<id>,"result":null}` when the stream ends, or an error response (coded
 * as above) when it fails. The rules that keep a stream from outliving its reader:
 *
 * - a stream is interrupted when the emitter's `closed` completes (the client went away or ended its side); its
 *   finalizers run and nothing more is answered;
 * - a stream in a batch is answered `-32600` "streams cannot be batched" (the batch's other requests run): a batch
 *   is one answer, and collecting a stream into it could wait forever (a `follow`);
 * - a stream request that is a notification runs nothing: nobody would read it, and nothing could stop it;
 * - without an emitter (a transport that cannot stream), a stream request is answered `-32600`.
 *
 * @since 0.1.0
 */
import { Cause, Effect, Exit, Option, Schema, Stream } from "effect"
import type { Rpc, RpcGroup } from "effect/rpc"
import { Rpc as RpcModule, RpcMessage, RpcSchema } from "effect/rpc"
import * as Headers from "effect/http/Headers"

/**
 * The JSON-RPC 2.0 error codes this server uses.
 *
 * @category codes
 */
export const codes = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
  applicationError: -32000
} as const

/**
 * Options of `make`.
 *
 * @category models
 */
export interface Options {
  /** The JSON-RPC code of each application error, by its `_tag` (default `-32000`). */
  readonly errorCodes?: Readonly<Record<string, number>> | undefined
  /** The most requests one batch may hold (default 100); a larger batch is one `-32600`. */
  readonly batchMax?: number | undefined
}

/**
 * How a transport lets a handler write ahead of its answer (a stream's items), and tells it that the client left.
 *
 * @category models
 */
export interface Emitter {
  /** Writes one line (no newline in it) to the client at once, ahead of the answer; waits while the buffer is full. */
  readonly emit: (line: string) => Effect.Effect<void>
  /** Completes when the client has gone (or ended its side): a running stream is interrupted then. */
  readonly closed: Effect.Effect<void>
  /** Called once as a stream starts, before its first item (HTTP sends its `application/x-ndjson` head then). */
  readonly start?: (() => Effect.Effect<void>) | undefined
}

/**
 * A JSON-RPC 2.0 handler: a message (one request or a batch) in, the text to answer (or nothing) out. Stream
 * items go through `emitter` before the answer.
 *
 * @category models
 */
export type Handler = (line: string, emitter?: Emitter) => Effect.Effect<string | undefined>

type Id = string | number | null

interface Response {
  readonly jsonrpc: "2.0"
  readonly id: Id
  readonly result?: unknown
  readonly error?: { readonly code: number; readonly message: string; readonly data?: unknown }
}

const errorResponse = (id: Id, code: number, message: string, data?: unknown): Response => ({
  jsonrpc: "2.0",
  id,
  error: data === undefined ? { code, message } : { code, message, data }
})

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)
const hasOwn = (o: object, key: string) => Object.prototype.hasOwnProperty.call(o, key)

type AnyCodec = Schema.Codec<unknown, unknown>
type AnyHandler = (payload: unknown, options: unknown) => unknown

let clients = 0

/**
 * A JSON-RPC 2.0 handler for `group`, over the handlers in context: `(line, emitter?) => the line to answer, or
 * undefined`.
 *
 * @category constructors
 */
export const make = <R extends Rpc.Any>(
  group: RpcGroup.RpcGroup<R>,
  options?: Options
): Effect.Effect<Handler, never, Rpc.ToHandler<R>> =>
  Effect.gen(function* () {
    const context = yield* Effect.context<Rpc.ToHandler<R>>()
    const errorCodes = options?.errorCodes ?? {}
    const batchMax = options?.batchMax ?? 100
    const client = new RpcModule.ServerClient(++clients)
    let requestIds = 0

    /** The error response for a handler's failure: its own code and encoded error, or -32603 for a defect. */
    const failure = (id: Id, cause: Cause.Cause<unknown>, errorSchema: AnyCodec): Effect.Effect<Response> =>
      Effect.gen(function* () {
        const found = Cause.findErrorOption(cause)
        if (Option.isNone(found)) return errorResponse(id, codes.internalError, "Internal error")
        const error = found.value
        const tag = isObject(error) && typeof error._tag === "string" ? error._tag : undefined
        const code = tag !== undefined && hasOwn(errorCodes, tag) ? errorCodes[tag]! : codes.applicationError
        const data = yield* Effect.orElseSucceed(Schema.encodeUnknownEffect(errorSchema)(error), () => ({ _tag: tag }))
        const message = error instanceof Error && error.message !== "" ? error.message : (tag ?? "error")
        return errorResponse(id, code, message, data)
      })

    const handlerOf = (method: string) =>
      Effect.provide(
        group.accessHandler(method as R["_tag"]) as unknown as Effect.Effect<AnyHandler, never, Rpc.ToHandler<R>>,
        context
      )

    const metadata = () => ({
      client,
      requestId: RpcMessage.RequestId(String(++requestIds)),
      headers: Headers.empty
    })

    /** Runs a stream request: each element emitted as it comes, then the final response (none once closed). */
    const runStream = (
      id: Id,
      schemas: { readonly success: AnyCodec; readonly error: AnyCodec },
      run: () => unknown,
      emitter: Emitter
    ): Effect.Effect<Response | undefined> =>
      Effect.gen(function* () {
        const encodeItem = Schema.encodeUnknownEffect(schemas.success)
        const stream: Stream.Stream<unknown, unknown> = Stream.unwrap(
          Effect.sync(() => {
            const out = run()
            // a handler may return a Stream, or an Effect of a queue (`Rpc.ResultFrom`)
            return Effect.isEffect(out)
              ? Stream.unwrap(Effect.map(out as Effect.Effect<any, unknown>, (queue) => Stream.fromQueue(queue)))
              : (out as Stream.Stream<unknown, unknown>)
          })
        )
        const items = Stream.runForEach(stream, (item) =>
          Effect.flatMap(Effect.orDie(encodeItem(item)), (encoded) =>
            emitter.emit(JSON.stringify({ jsonrpc: "2.0", method: "stream", params: { id, item: encoded ?? null } }))
          )
        )
        const started = emitter.start === undefined ? items : Effect.andThen(emitter.start(), items)
        const outcome = yield* Effect.raceFirst(
          Effect.map(Effect.exit(started), Option.some),
          Effect.as(emitter.closed, Option.none())
        )
        if (Option.isNone(outcome)) return undefined
        if (Exit.isSuccess(outcome.value)) return { jsonrpc: "2.0", id, result: null } satisfies Response
        return yield* failure(id, outcome.value.cause, schemas.error)
      })

    const call = (
      request: unknown,
      emitter: Emitter | undefined,
      inBatch: boolean
    ): Effect.Effect<Response | undefined> =>
      Effect.gen(function* () {
        if (!isObject(request)) return errorResponse(null, codes.invalidRequest, "Invalid Request")
        const notification = !hasOwn(request, "id")
        const rawId = request.id
        const validId =
          rawId === null || typeof rawId === "string" || (typeof rawId === "number" && Number.isFinite(rawId))
        const id: Id = validId ? (rawId as Id) : null
        if (request.jsonrpc !== "2.0" || typeof request.method !== "string" || (!notification && !validId)) {
          return errorResponse(id, codes.invalidRequest, "Invalid Request")
        }
        const params = hasOwn(request, "params") ? request.params : undefined
        if (params !== undefined && !isObject(params) && !Array.isArray(params)) {
          return errorResponse(id, codes.invalidRequest, "Invalid Request: params must be an object")
        }
        const answer = (response: Response) => (notification ? undefined : response)
        // a Map: inherited names (`constructor`, `__proto__`) are not procedures
        const rpc = group.requests.get(request.method) as Rpc.AnyWithProps | undefined
        if (rpc === undefined) {
          return answer(errorResponse(id, codes.methodNotFound, "Method not found", { method: request.method }))
        }
        const streamSchema = RpcSchema.isStreamSchema(rpc.successSchema) ? rpc.successSchema : undefined
        if (streamSchema !== undefined) {
          // nobody reads a notification's items, and nothing could stop a `follow`: run nothing
          if (notification) return undefined
          if (inBatch) return errorResponse(id, codes.invalidRequest, "Invalid Request: streams cannot be batched")
          if (emitter === undefined) {
            return errorResponse(id, codes.invalidRequest, "Invalid Request: this transport cannot stream")
          }
        }
        if (Array.isArray(params)) {
          return answer(errorResponse(id, codes.invalidParams, "Invalid params: params are named (an object)"))
        }
        const decoded = yield* Effect.exit(
          Schema.decodeUnknownEffect(rpc.payloadSchema as AnyCodec)(params ?? {}, {
            errors: "all",
            onExcessProperty: "error"
          })
        )
        if (Exit.isFailure(decoded)) {
          const message = Option.match(Cause.findErrorOption(decoded.cause), {
            onNone: () => "invalid params",
            onSome: (e) => (e instanceof Error ? e.message : String(e))
          })
          return answer(errorResponse(id, codes.invalidParams, "Invalid params", { message }))
        }
        const handler = yield* handlerOf(request.method)
        if (streamSchema !== undefined) {
          return yield* runStream(
            id,
            { success: streamSchema.success as AnyCodec, error: streamSchema.error as AnyCodec },
            () => handler(decoded.value, metadata()),
            emitter!
          )
        }
        const result = yield* Effect.exit(
          Effect.suspend(() => handler(decoded.value, metadata()) as Effect.Effect<unknown, unknown>)
        )
        if (Exit.isSuccess(result)) {
          const encoded = yield* Effect.exit(Schema.encodeUnknownEffect(rpc.successSchema as AnyCodec)(result.value))
          if (Exit.isFailure(encoded)) return answer(errorResponse(id, codes.internalError, "Internal error"))
          return answer({ jsonrpc: "2.0", id, result: encoded.value ?? null })
        }
        return answer(yield* failure(id, result.cause, rpc.errorSchema as AnyCodec))
      })

    return (line: string, emitter?: Emitter) =>
      Effect.gen(function* () {
        let parsed: unknown
        try {
          parsed = JSON.parse(line)
        } catch {
          return JSON.stringify(errorResponse(null, codes.parseError, "Parse error"))
        }
        if (Array.isArray(parsed)) {
          if (parsed.length === 0 || parsed.length > batchMax) {
            return JSON.stringify(
              errorResponse(
                null,
                codes.invalidRequest,
                parsed.length === 0
                  ? "Invalid Request: empty batch"
                  : `Invalid Request: a batch holds at most ${batchMax}`
              )
            )
          }
          const responses = yield* Effect.forEach(parsed, (request) => call(request, undefined, true), {
            concurrency: "unbounded"
          })
          const answered = responses.filter((r): r is Response => r !== undefined)
          return answered.length === 0 ? undefined : JSON.stringify(answered)
        }
        const response = yield* call(parsed, emitter, false)
        return response === undefined ? undefined : JSON.stringify(response)
      })
  })
