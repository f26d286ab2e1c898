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
 * @since 0.1.0
 */
import { Cause, Effect, Exit, Option, Schema } from "effect"
import type { Rpc, RpcGroup } from "effect/rpc"
import { Rpc as RpcModule, RpcMessage } from "effect/rpc"
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

let clients = 0

/**
 * A JSON-RPC 2.0 handler for `group`, over the handlers in context: `(line) => the line to answer, or undefined`.
 *
 * @category constructors
 */
export const make = <R extends Rpc.Any>(
  group: RpcGroup.RpcGroup<R>,
  options?: Options
): Effect.Effect<(line: string) => Effect.Effect<string | undefined>, never, Rpc.ToHandler<R>> =>
  Effect.gen(function* () {
    const context = yield* Effect.context<Rpc.ToHandler<R>>()
    const errorCodes = options?.errorCodes ?? {}
    const batchMax = options?.batchMax ?? 100
    const client = new RpcModule.ServerClient(++clients)
    let requestIds = 0

    const call = (request: unknown): Effect.Effect<Response | undefined> =>
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
        if (Array.isArray(params)) {
          return answer(errorResponse(id, codes.invalidParams, "Invalid params: params are named (an object)"))
        }
        const decoded = yield* Effect.exit(
          Schema.decodeUnknownEffect(rpc.payloadSchema as Schema.Codec<unknown, unknown>)(params ?? {}, {
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
        const handler = yield* Effect.provide(
          group.accessHandler(request.method as R["_tag"]) as unknown as Effect.Effect<
            (payload: unknown, options: unknown) => Effect.Effect<unknown, unknown>,
            never,
            Rpc.ToHandler<R>
          >,
          context
        )
        const result = yield* Effect.exit(
          Effect.suspend(() =>
            handler(decoded.value, {
              client,
              requestId: RpcMessage.RequestId(String(++requestIds)),
              headers: Headers.empty
            })
          )
        )
        if (Exit.isSuccess(result)) {
          const encoded = yield* Effect.exit(
            Schema.encodeUnknownEffect(rpc.successSchema as Schema.Codec<unknown, unknown>)(result.value)
          )
          if (Exit.isFailure(encoded)) return answer(errorResponse(id, codes.internalError, "Internal error"))
          return answer({ jsonrpc: "2.0", id, result: encoded.value ?? null })
        }
        const failure = Cause.findErrorOption(result.cause)
        if (Option.isNone(failure)) return answer(errorResponse(id, codes.internalError, "Internal error"))
        const error = failure.value
        const tag = isObject(error) && typeof error._tag === "string" ? error._tag : undefined
        const code = tag !== undefined && hasOwn(errorCodes, tag) ? errorCodes[tag]! : codes.applicationError
        const data = yield* Effect.orElseSucceed(
          Schema.encodeUnknownEffect(rpc.errorSchema as Schema.Codec<unknown, unknown>)(error),
          () => ({ _tag: tag })
        )
        const message = error instanceof Error && error.message !== "" ? error.message : (tag ?? "error")
        return answer(errorResponse(id, code, message, data))
      })

    return (line: string) =>
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
          const responses = yield* Effect.forEach(parsed, call, { concurrency: "unbounded" })
          const answered = responses.filter((r): r is Response => r !== undefined)
          return answered.length === 0 ? undefined : JSON.stringify(answered)
        }
        const response = yield* call(parsed)
        return response === undefined ? undefined : JSON.stringify(response)
      })
  })
