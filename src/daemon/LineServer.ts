/**
 * A newline-delimited server on a Unix socket: each line a client sends is handed to `handle`, and what it answers
 * (if anything) is written back as one line, in order, per connection.
 *
 * Stays up under bad input: a line longer than `lineBytesMax` is answered with `tooLong(bytes)` (a JSON-RPC error
 * line, for the daemon) and the connection is closed — what was buffered is dropped, so memory per connection is
 * bounded by the limit; a client that goes away (half-open, abandoned, reset) costs nothing afterwards; a handler
 * that fails or dies answers nothing for that line and the connection goes on. The socket file is created with mode
 * 0600 (owner only), replacing a stale one; it is removed when the scope closes, and every connection is destroyed.
 *
 * A handler may write lines ahead of its answer with `connection.emit` (a stream's items; a write waits while the
 * socket's buffer is full, and does nothing once the client is gone), and learns that the client left from
 * `connection.closed`: it completes when the client closes, resets or ends its side (after an end, what the client
 * sent is still answered, but a stream has nobody left to stop it: a client that follows keeps its side open).
 * Lines are answered one at a time per connection, so a line behind a stream waits for the stream to end.
 *
 * @since 0.1.0
 */
import { chmodSync, existsSync, lstatSync, unlinkSync } from "node:fs"
import { createServer, type Server, type Socket } from "node:net"
import { Effect, Exit, Fiber, Latch, Schema, type Scope } from "effect"

/**
 * The server could not listen (the path is taken by a live server or is not a socket, or cannot be created).
 *
 * @category errors
 */
export class LineServerError extends Schema.TaggedError<LineServerError>()("LineServerError", {
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * Options of `serve`.
 *
 * @category models
 */
export interface Options {
  readonly path: string
  /** The longest line accepted, in bytes (default 1 MiB). */
  readonly lineBytesMax?: number | undefined
  /** What to answer (one line) before closing a connection whose line is too long. */
  readonly tooLong?: ((bytes: number) => string) | undefined
  /** The most connections open at once (default 1024); more are closed at once. */
  readonly connectionsMax?: number | undefined
}

/**
 * A running server: its path and how many connections are open.
 *
 * @category models
 */
export interface LineServer {
  readonly path: string
  readonly connections: () => number
}

/**
 * What a handler gets besides its line: a way to write ahead of its answer, and a signal that the client left.
 *
 * @category models
 */
export interface Connection {
  /** Writes one line (a newline is added) now, waiting while the socket's buffer is full; nothing once closed. */
  readonly emit: (line: string) => Effect.Effect<void>
  /** Completes when the client has closed, reset, or ended its side of the connection. */
  readonly closed: Effect.Effect<void>
}

const NEWLINE = 0x0a

/**
 * Listens on `options.path` for the lifetime of the scope.
 *
 * @category constructors
 */
export const serve = <R>(
  options: Options,
  handle: (line: string, connection: Connection) => Effect.Effect<string | undefined, never, R>
): Effect.Effect<LineServer, LineServerError, R | Scope.Scope> =>
  Effect.gen(function* () {
    const path = options.path
    const lineBytesMax = options.lineBytesMax ?? 1024 * 1024
    const connectionsMax = options.connectionsMax ?? 1024
    const context = yield* Effect.context<R>()
    const sockets = new Set<Socket>()
    const fibers = new Set<Fiber.Fiber<unknown, unknown>>()

    const onConnection = (socket: Socket) => {
      if (sockets.size >= connectionsMax) {
        socket.destroy()
        return
      }
      sockets.add(socket)
      let chunks: Array<Buffer> = []
      let buffered = 0
      let closed = false
      // lines are answered in order: each waits for the one before it
      let tail: Promise<void> = Promise.resolve()
      const gone = Latch.makeUnsafe(false)
      const close = () => {
        closed = true
        chunks = []
        buffered = 0
        gone.openUnsafe()
        socket.destroy()
      }
      const emit = (line: string) =>
        Effect.callback<void>((resume) => {
          if (closed || !socket.writable) return resume(Effect.void)
          if (socket.write(line + "\n")) return resume(Effect.void)
          // backpressure: the OS socket buffer is full; wait until it drains (or the client is gone)
          const done = () => {
            socket.off("drain", done)
            socket.off("close", done)
            resume(Effect.void)
          }
          socket.on("drain", done)
          socket.on("close", done)
          return Effect.sync(() => {
            socket.off("drain", done)
            socket.off("close", done)
          })
        })
      const connection: Connection = { emit, closed: gone.await }
      const enqueue = (line: string) => {
        tail = tail.then(
          () =>
            new Promise<void>((resolve) => {
              if (closed) return resolve()
              const fiber = Effect.runForkWith(context)(handle(line, connection))
              fibers.add(fiber)
              fiber.addObserver((exit) => {
                fibers.delete(fiber)
                if (!closed && Exit.isSuccess(exit) && exit.value !== undefined && socket.writable) {
                  socket.write(exit.value + "\n")
                }
                resolve()
              })
            })
        )
      }
      socket.on("data", (data: Buffer) => {
        if (closed) return
        let start = 0
        for (let i = data.indexOf(NEWLINE); i !== -1; i = data.indexOf(NEWLINE, start)) {
          const piece = data.subarray(start, i)
          const size = buffered + piece.length
          if (size > lineBytesMax) return tooLong(size)
          const line = chunks.length === 0 ? piece.toString("utf8") : Buffer.concat([...chunks, piece]).toString("utf8")
          chunks = []
          buffered = 0
          start = i + 1
          if (line.trim().length > 0) enqueue(line)
        }
        const rest = data.subarray(start)
        if (rest.length > 0) {
          buffered += rest.length
          if (buffered > lineBytesMax) return tooLong(buffered)
          chunks.push(Buffer.from(rest))
        }
      })
      const tooLong = (bytes: number) => {
        const answer = options.tooLong?.(bytes)
        chunks = []
        buffered = 0
        closed = true
        gone.openUnsafe()
        tail.then(() => {
          if (answer !== undefined && socket.writable) socket.end(answer + "\n")
          else socket.destroy()
        })
      }
      socket.on("error", () => close())
      socket.on("close", () => {
        closed = true
        chunks = []
        gone.openUnsafe()
        sockets.delete(socket)
      })
      // a client that half-closes still gets its answers, then the connection ends; its streams stop (a fully closed
      // client looks the same as a half-closed one until a write fails, and a quiet stream may never write)
      socket.on("end", () => {
        gone.openUnsafe()
        tail.then(() => socket.end())
      })
    }

    const server: Server = yield* Effect.acquireRelease(
      Effect.callback<Server, LineServerError>((resume) => {
        if (existsSync(path)) {
          const stat = lstatSync(path)
          if (!stat.isSocket()) {
            return resume(Effect.fail(new LineServerError({ path, message: "the path exists and is not a socket" })))
          }
          // a stale socket (a daemon that was killed) is replaced; a live one refuses below (EADDRINUSE)
          try {
            unlinkSync(path)
          } catch {
            // raced: listen reports it
          }
        }
        const s = createServer({ allowHalfOpen: true }, onConnection)
        s.once("error", (error) => resume(Effect.fail(new LineServerError({ path, message: error.message }))))
        // the bind happens inside `listen`, synchronously: the socket file is born 0600, then chmod makes sure
        const umask = process.umask(0o177)
        try {
          s.listen(path, () => {
            try {
              chmodSync(path, 0o600)
            } catch (error) {
              s.close()
              return resume(Effect.fail(new LineServerError({ path, message: String(error) })))
            }
            resume(Effect.succeed(s))
          })
        } catch (error) {
          resume(Effect.fail(new LineServerError({ path, message: String(error) })))
        } finally {
          process.umask(umask)
        }
      }),
      (s) =>
        Effect.gen(function* () {
          for (const socket of sockets) socket.destroy()
          yield* Effect.forEach([...fibers], (fiber) => Fiber.interrupt(fiber), { discard: true })
          yield* Effect.callback<void>((resume) => {
            s.close(() => resume(Effect.void))
          })
          try {
            unlinkSync(path)
          } catch {
            // already gone
          }
        })
    )
    void server
    return { path, connections: () => sockets.size }
  })
