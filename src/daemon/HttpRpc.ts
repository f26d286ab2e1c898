/**
 * Serves a JSON-RPC handler (`JsonRpc.make`) over HTTP on the loopback interface, behind a bearer token.
 *
 * One route: `POST /rpc` with `Authorization: Bearer <token>` and `Content-Type: application/json`; the body is one
 * JSON-RPC message (a request or a batch) and the response is the handler's answer:
 *
 * - `200 application/json` with the answer; `204` (no body) when there is none (notifications only);
 * - a stream method: `200 application/x-ndjson`, sent as the stream starts, then each item's notification line as
 *   it comes and the final response line last; a client that goes away interrupts the stream;
 * - `401` (a JSON body, `WWW-Authenticate: Bearer`) for a missing or wrong token: nothing is read or run. Tokens are
 *   compared in constant time (their SHA-256 digests, so the length does not show either);
 * - `404` for another path, `405` (with `Allow: POST`) for another method on `/rpc`, `415` for another content type;
 * - `413` for a body past `bodyBytesMax`: refused at once when `Content-Length` says so, else as soon as the bytes
 *   read pass it; nothing more is read and the connection is closed.
 *
 * Every refusal is answered before the body is read and closes the connection, so an unread body is never parsed
 * as the next request. The server binds `127.0.0.1` only (any other `host` is refused with `HttpRpcError`); port `0`
 * picks a free port, which `serve` returns. It lives as long as its scope: closing it ends every connection and
 * interrupts what runs.
 *
 * `ensureToken(path)` makes the token file a daemon and its clients share.
 *
 * @since 0.1.0
 */
import { createHash, timingSafeEqual } from "node:crypto"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { Socket } from "node:net"
import { dirname } from "node:path"
import { Effect, Exit, Fiber, Latch, Schema, type Scope } from "effect"
import type { Emitter } from "./JsonRpc.ts"
import * as StateFiles from "./StateFiles.ts"

/**
 * What went wrong: `host` (a host other than 127.0.0.1, or a bad port), `listen` (the port is taken, …), `token-unsafe`
 * (the token file is readable or writable by others, not a regular file, or not ours), `token-invalid` (it holds no
 * usable token) or `token-io` (it cannot be read or created).
 *
 * @category errors
 */
export class HttpRpcError extends Schema.TaggedError<HttpRpcError>()("HttpRpcError", {
  reason: Schema.Literals(["host", "listen", "token-unsafe", "token-invalid", "token-io"]),
  message: Schema.String
}) {}

/**
 * Options of `serve`.
 *
 * @category models
 */
export interface Options {
  /** Must be `"127.0.0.1"`: the API is for this machine's users, and the token is its only lock. */
  readonly host: string
  /** The port; `0` picks a free one. */
  readonly port: number
  /** The bearer token every request must carry. */
  readonly token: string
  /** The largest body accepted, in bytes (default 1 MiB). */
  readonly bodyBytesMax?: number | undefined
  /** The most connections open at once (default 1024); more are closed at once. */
  readonly connectionsMax?: number | undefined
}

/**
 * A running server.
 *
 * @category models
 */
export interface HttpRpc {
  readonly host: string
  readonly port: number
  /** `http://127.0.0.1:<port>/rpc`. */
  readonly url: string
}

const defaults = {
  bodyBytesMax: 1024 * 1024,
  connectionsMax: 1024
} as const

const digest = (text: string) => createHash("sha256").update(text, "utf8").digest()

/** True when `header` is `Bearer <token>`: compared as digests, in constant time. */
const authorized = (expected: Buffer, header: string | undefined): boolean => {
  if (header === undefined) return false
  const match = /^Bearer[ ]+(\S+)[ ]*$/i.exec(header)
  return match !== null && timingSafeEqual(digest(match[1]!), expected)
}

const refuse = (res: ServerResponse, status: number, error: string, headers: Record<string, string> = {}) => {
  const body = JSON.stringify({ error })
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(body),
    // the body (if any) is left unread: the connection cannot carry another request
    Connection: "close",
    ...headers
  })
  res.end(body)
}

/**
 * Listens on `127.0.0.1:<port>` for the lifetime of the scope, answering `POST /rpc` with `handle`.
 *
 * @category constructors
 */
export const serve = <R>(
  options: Options,
  handle: (body: string, emitter: Emitter) => Effect.Effect<string | undefined, never, R>
): Effect.Effect<HttpRpc, HttpRpcError, R | Scope.Scope> =>
  Effect.gen(function* () {
    if (options.host !== "127.0.0.1") {
      return yield* new HttpRpcError({ reason: "host", message: `only 127.0.0.1 is served, not ${options.host}` })
    }
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
      return yield* new HttpRpcError({ reason: "host", message: `not a port: ${options.port}` })
    }
    if (options.token.length === 0) return yield* new HttpRpcError({ reason: "token-invalid", message: "empty token" })
    const bodyBytesMax = options.bodyBytesMax ?? defaults.bodyBytesMax
    const expected = digest(options.token)
    const context = yield* Effect.context<R>()
    const fibers = new Set<Fiber.Fiber<unknown, unknown>>()
    const sockets = new Set<Socket>()

    const run = (body: string, res: ServerResponse) => {
      const gone = Latch.makeUnsafe(false)
      let streaming = false
      res.on("close", () => gone.openUnsafe())
      const emitter: Emitter = {
        start: () =>
          Effect.sync(() => {
            if (streaming || res.destroyed) return
            streaming = true
            res.writeHead(200, { "Content-Type": "application/x-ndjson", "Cache-Control": "no-store" })
            // the head goes out now: a client following a quiet stream knows it is connected
            res.flushHeaders()
          }),
        emit: (line) =>
          Effect.callback<void>((resume) => {
            if (res.destroyed || res.writableEnded) return resume(Effect.void)
            if (!streaming) {
              streaming = true
              res.writeHead(200, { "Content-Type": "application/x-ndjson", "Cache-Control": "no-store" })
            }
            if (res.write(line + "\n")) return resume(Effect.void)
            // backpressure: wait until the socket drains (or the client is gone)
            const done = () => {
              res.off("drain", done)
              res.off("close", done)
              resume(Effect.void)
            }
            res.on("drain", done)
            res.on("close", done)
            return Effect.sync(() => {
              res.off("drain", done)
              res.off("close", done)
            })
          }),
        closed: gone.await
      }
      const fiber = Effect.runForkWith(context)(handle(body, emitter))
      fibers.add(fiber)
      fiber.addObserver((exit) => {
        fibers.delete(fiber)
        if (res.destroyed || res.writableEnded) return
        if (streaming) {
          if (Exit.isSuccess(exit) && exit.value !== undefined) res.end(exit.value + "\n")
          else res.destroy()
        } else if (Exit.isFailure(exit)) {
          refuse(res, 500, "internal error")
        } else if (exit.value === undefined) {
          res.writeHead(204)
          res.end()
        } else {
          res.writeHead(200, {
            "Content-Type": "application/json",
            "Content-Length": Buffer.byteLength(exit.value),
            "Cache-Control": "no-store"
          })
          res.end(exit.value)
        }
      })
    }

    const onRequest = (req: IncomingMessage, res: ServerResponse) => {
      const path = (req.url ?? "").split("?")[0]
      if (path !== "/rpc") return refuse(res, 404, "not found")
      if (req.method !== "POST") return refuse(res, 405, "method not allowed", { Allow: "POST" })
      if (!authorized(expected, req.headers.authorization)) {
        return refuse(res, 401, "unauthorized", { "WWW-Authenticate": "Bearer" })
      }
      const mediaType = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()
      if (mediaType !== "application/json") return refuse(res, 415, "the body must be application/json")
      const declared = Number(req.headers["content-length"])
      if (Number.isFinite(declared) && declared > bodyBytesMax) return refuse(res, 413, "body too large")
      const chunks: Array<Buffer> = []
      let size = 0
      let refused = false
      req.on("data", (chunk: Buffer) => {
        if (refused) return
        size += chunk.length
        if (size > bodyBytesMax) {
          refused = true
          chunks.length = 0
          // stop reading: answered at once, then the connection closes under the rest
          req.pause()
          refuse(res, 413, "body too large")
          return
        }
        chunks.push(chunk)
      })
      req.on("end", () => {
        if (!refused) run(Buffer.concat(chunks).toString("utf8"), res)
      })
      req.on("error", () => res.destroy())
    }

    const server = yield* Effect.acquireRelease(
      Effect.callback<Server, HttpRpcError>((resume) => {
        const server = createServer(onRequest)
        server.maxConnections = options.connectionsMax ?? defaults.connectionsMax
        server.on("connection", (socket: Socket) => {
          sockets.add(socket)
          socket.on("close", () => sockets.delete(socket))
        })
        server.once("error", (error) =>
          resume(Effect.fail(new HttpRpcError({ reason: "listen", message: error.message })))
        )
        server.listen({ host: "127.0.0.1", port: options.port }, () => {
          // once listening, a server error (rare: out of descriptors) must not crash the process
          server.on("error", () => {})
          resume(Effect.succeed(server))
        })
      }),
      (server) =>
        Effect.gen(function* () {
          // stop accepting first, then end every connection and what runs for it
          let closed = false
          let onClosed: (() => void) | undefined
          server.close(() => {
            closed = true
            onClosed?.()
          })
          for (const socket of sockets) socket.destroy()
          yield* Effect.forEach([...fibers], (fiber) => Fiber.interrupt(fiber), { discard: true })
          yield* Effect.callback<void>((resume) => {
            if (closed) return resume(Effect.void)
            onClosed = () => resume(Effect.void)
          })
        })
    )
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : options.port
    return { host: "127.0.0.1", port, url: `http://127.0.0.1:${port}/rpc` } satisfies HttpRpc
  })

/**
 * The token in the file at `path`, made first when there is none: 32 random bytes as hex, in a file created with
 * mode 0600 (and its directory 0700 when it creates that too).
 *
 * A token file that others may read or write (any mode bit past 0600), that is not a regular file (a symlink is not
 * followed), or that another user owns is refused with `token-unsafe` rather than fixed: a token others could read
 * may have been read, so the operator decides (delete it and a new one is made, or `chmod 600` it). A file that holds
 * no token (it must be at least 32 visible ASCII characters, no spaces) is `token-invalid`.
 *
 * @category tokens
 */
export const ensureToken = (path: string): Effect.Effect<string, HttpRpcError> =>
  Effect.try({
    try: () => StateFiles.ensureSecret(path, dirname(path)),
    catch: (error) =>
      error instanceof StateFiles.StateFilesError
        ? new HttpRpcError({
            reason:
              error.reason === "unsafe" ? "token-unsafe" : error.reason === "invalid" ? "token-invalid" : "token-io",
            message: error.message
          })
        : new HttpRpcError({ reason: "token-io", message: String(error) })
  })
