/**
 * A JSON-RPC 2.0 client of `agentd` over its Unix socket, speaking the wire exactly as an outside client does (one
 * JSON message per line), so that `agentctl` and tests go through the same parser, limits and errors as `socat`.
 *
 * Every call opens its own connection and closes it when the answer came, the call failed, or the calling fiber was
 * interrupted (a stream — `kernel.trace { follow: true }` — then stops on the daemon's side too, as the daemon sees
 * the client go). Answers are bounded (`lineBytesMax`); nothing is retried.
 *
 * @since 0.1.0
 */
import * as Net from "node:net"
import { Effect, Queue, Schema, Stream } from "effect"

/**
 * A call that did not get a result:
 *
 * - `connect`: the socket could not be reached (no daemon, a wrong path, no permission);
 * - `closed`: the daemon closed the connection before answering;
 * - `protocol`: the daemon answered something that is not JSON-RPC 2.0, or a line longer than `lineBytesMax`;
 * - `rpc`: the daemon answered with an error object (`code`, `message`, `data` as it sent them).
 *
 * @category errors
 */
export class ClientError extends Schema.TaggedError<ClientError>()("ClientError", {
  reason: Schema.Literals(["connect", "closed", "protocol", "rpc"]),
  message: Schema.String,
  code: Schema.optionalKey(Schema.Number),
  data: Schema.optionalKey(Schema.Unknown)
}) {}

/**
 * Options of `make`.
 *
 * @category models
 */
export interface Options {
  /** The daemon's socket. */
  readonly socket: string
  /** The longest answer line accepted, in bytes (default 64 MiB). */
  readonly lineBytesMax?: number | undefined
}

/**
 * @category models
 */
export interface Client {
  /** Calls `method` with named `params` and answers its `result`. */
  readonly call: (method: string, params?: Record<string, unknown>) => Effect.Effect<unknown, ClientError>
  /**
   * Calls a stream method: its items as they come; the stream ends with the final response (or fails with its
   * error). Ending the stream early closes the connection.
   */
  readonly stream: (method: string, params?: Record<string, unknown>) => Stream.Stream<unknown, ClientError>
}

const NEWLINE = 0x0a

type Event =
  | { readonly _tag: "Line"; readonly line: string }
  | { readonly _tag: "Closed" }
  | { readonly _tag: "Error"; readonly error: ClientError }

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** Opens a connection, writes `request`, and hands every answer line to the queue until the connection ends. */
const connect = (options: Options, request: string) =>
  Effect.gen(function* () {
    const lineBytesMax = options.lineBytesMax ?? 64 * 1024 * 1024
    const events = yield* Queue.unbounded<Event>()
    const socket = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const socket = Net.createConnection({ path: options.socket })
        let chunks: Array<Buffer> = []
        let buffered = 0
        let connected = false
        socket.on("connect", () => {
          connected = true
          socket.write(`${request}\n`)
        })
        socket.on("data", (data: Buffer) => {
          let start = 0
          while (start < data.length) {
            const end = data.indexOf(NEWLINE, start)
            if (end === -1) {
              chunks.push(data.subarray(start))
              buffered += data.length - start
              if (buffered > lineBytesMax) {
                Queue.offerUnsafe(events, {
                  _tag: "Error",
                  error: new ClientError({ reason: "protocol", message: `an answer longer than ${lineBytesMax} bytes` })
                })
                socket.destroy()
              }
              return
            }
            const piece = data.subarray(start, end)
            const line = chunks.length === 0 ? piece : Buffer.concat([...chunks, piece])
            chunks = []
            buffered = 0
            Queue.offerUnsafe(events, { _tag: "Line", line: line.toString("utf8") })
            start = end + 1
          }
        })
        socket.on("error", (error: NodeJS.ErrnoException) => {
          Queue.offerUnsafe(events, {
            _tag: "Error",
            error: new ClientError({
              reason: connected ? "closed" : "connect",
              message: connected
                ? `the connection to ${options.socket} failed: ${error.message}`
                : `cannot reach agentd at ${options.socket}: ${error.code ?? error.message} (is the daemon running?)`
            })
          })
        })
        socket.on("close", () => {
          Queue.offerUnsafe(events, { _tag: "Closed" })
        })
        return socket
      }),
      (socket) => Effect.sync(() => socket.destroy())
    )
    return { socket, events }
  })

/** The error an error response stands for. */
const rpcError = (error: unknown): ClientError => {
  if (!isObject(error) || typeof error.code !== "number" || typeof error.message !== "string") {
    return new ClientError({ reason: "protocol", message: "an error response without code and message" })
  }
  return new ClientError({
    reason: "rpc",
    message: error.message,
    code: error.code,
    ...(error.data === undefined ? {} : { data: error.data })
  })
}

const parse = (line: string): Record<string, unknown> | ClientError => {
  try {
    const json: unknown = JSON.parse(line)
    if (isObject(json) && json.jsonrpc === "2.0") return json
  } catch {
    // below
  }
  return new ClientError({ reason: "protocol", message: `not a JSON-RPC 2.0 message: ${line.slice(0, 200)}` })
}

/**
 * A client of the daemon on `options.socket`. Nothing is opened until a call.
 *
 * @category constructors
 */
export const make = (options: Options): Client => {
  let ids = 0
  const requestOf = (method: string, params: Record<string, unknown> | undefined) => {
    const id = ++ids
    return { id, text: JSON.stringify({ jsonrpc: "2.0", id, method, ...(params === undefined ? {} : { params }) }) }
  }

  const stream = (method: string, params?: Record<string, unknown>): Stream.Stream<unknown, ClientError> =>
    Stream.unwrap(
      Effect.gen(function* () {
        const { id, text } = requestOf(method, params)
        const { events } = yield* connect(options, text)
        // one step per answer line: an item, the end (the final response), or a failure
        const next: Effect.Effect<
          { readonly _tag: "Item"; readonly item: unknown } | { readonly _tag: "End" },
          ClientError
        > = Effect.gen(function* () {
          while (true) {
            const event = yield* Queue.take(events)
            if (event._tag === "Error") return yield* event.error
            if (event._tag === "Closed") {
              return yield* new ClientError({ reason: "closed", message: "agentd closed the connection" })
            }
            const message = parse(event.line)
            if (message instanceof ClientError) return yield* message
            if (message.method === "stream" && isObject(message.params) && message.params.id === id) {
              return { _tag: "Item", item: message.params.item } as const
            }
            if (message.id === id || message.id === null) {
              if ("error" in message) return yield* rpcError(message.error)
              return { _tag: "End" } as const
            }
          }
        })
        return Stream.unfold(undefined, () =>
          Effect.map(next, (step) => (step._tag === "Item" ? ([step.item, undefined] as const) : undefined))
        )
      })
    )

  const call = (method: string, params?: Record<string, unknown>): Effect.Effect<unknown, ClientError> =>
    Effect.scoped(
      Effect.gen(function* () {
        const { id, text } = requestOf(method, params)
        const { events } = yield* connect(options, text)
        while (true) {
          const event = yield* Queue.take(events)
          if (event._tag === "Error") return yield* event.error
          if (event._tag === "Closed") {
            return yield* new ClientError({ reason: "closed", message: "agentd closed the connection" })
          }
          const message = parse(event.line)
          if (message instanceof ClientError) return yield* message
          if (message.id !== id && message.id !== null) continue
          if ("error" in message) return yield* rpcError(message.error)
          return message.result
        }
      })
    )

  return { call, stream }
}
