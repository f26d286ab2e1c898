import { assert, describe, it } from "@effect/vitest"
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs"
import { connect, createServer, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Scope, Exit, Schema, Stream } from "effect"
import { Rpc, RpcGroup } from "effect/rpc"
import { JsonRpc, LineServer } from "effect-agent-os"

const dir = () => mkdtempSync(join(tmpdir(), "agentos-sock-"))

/** A raw client: writes `chunks`, then collects answer lines until it has `expect` of them or the server closes. */
const talk = (path: string, chunks: ReadonlyArray<string | Buffer>, expect: number, endAfter = false) =>
  Effect.promise(
    () =>
      new Promise<{ lines: Array<string>; closed: boolean }>((resolve) => {
        const socket = connect(path)
        let buffer = ""
        const lines: Array<string> = []
        let done = false
        const finish = (closed: boolean) => {
          if (done) return
          done = true
          socket.destroy()
          resolve({ lines, closed })
        }
        socket.on("connect", () => {
          for (const c of chunks) socket.write(c)
          if (endAfter) socket.end()
          // expecting nothing: an abandoned client, gone once its bytes are out
          if (expect === 0) socket.write("", () => finish(false))
        })
        socket.on("data", (d) => {
          buffer += d.toString()
          let i: number
          while ((i = buffer.indexOf("\n")) !== -1) {
            lines.push(buffer.slice(0, i))
            buffer = buffer.slice(i + 1)
          }
          if (lines.length >= expect && !endAfter) finish(false)
        })
        socket.on("error", () => finish(true))
        socket.on("close", () => finish(true))
        setTimeout(() => finish(false), 5000)
      })
  )

const echo = (line: string) =>
  line === "die" ? Effect.die("boom") : line === "quiet" ? Effect.succeed(undefined) : Effect.succeed(`got ${line}`)

describe("LineServer", () => {
  it.live("answers each line in order, lines split across and packed into chunks; the socket is 0600", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const d = dir()
        const path = join(d, "a.sock")
        yield* LineServer.serve({ path }, echo)
        assert.strictEqual(statSync(path).mode & 0o777, 0o600)
        const { lines } = yield* talk(path, ["one\ntw", "o\nthr", "ee\n"], 3)
        assert.deepStrictEqual(lines, ["got one", "got two", "got three"])
        rmSync(d, { recursive: true, force: true })
      })
    )
  )

  it.live("a handler that dies or answers nothing skips that line; the connection goes on", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const d = dir()
        const path = join(d, "a.sock")
        yield* LineServer.serve({ path }, echo)
        const { lines } = yield* talk(path, ["die\nquiet\nafter\n"], 1)
        assert.deepStrictEqual(lines, ["got after"])
      })
    )
  )

  it.live("a line past the bound is answered with tooLong and the connection closed; others are unaffected", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const d = dir()
        const path = join(d, "a.sock")
        const server = yield* LineServer.serve(
          { path, lineBytesMax: 1024 * 1024, tooLong: (n) => `too long: ${n > 1024 * 1024}` },
          echo
        )
        const big = Buffer.alloc(100 * 1024 * 1024, 0x61)
        const [flood, normal] = yield* Effect.all([talk(path, ["ok\n", big, "\n"], 10), talk(path, ["fine\n"], 1)], {
          concurrency: "unbounded"
        })
        assert.deepStrictEqual(flood.lines, ["got ok", "too long: true"])
        assert.isTrue(flood.closed)
        assert.deepStrictEqual(normal.lines, ["got fine"])
        yield* Effect.sleep("50 millis")
        assert.strictEqual(server.connections(), 0)
      })
    )
  )

  it.live("100 concurrent clients each get their own answers; abandoned and half-open connections are let go", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const d = dir()
        const path = join(d, "a.sock")
        const server = yield* LineServer.serve({ path }, echo)
        const results = yield* Effect.forEach(
          Array.from({ length: 100 }, (_, i) => i),
          (i) =>
            talk(
              path,
              Array.from({ length: 10 }, (_, j) => `${i}-${j}\n`),
              10
            ),
          { concurrency: "unbounded" }
        )
        results.forEach((r, i) =>
          assert.deepStrictEqual(
            r.lines,
            Array.from({ length: 10 }, (_, j) => `got ${i}-${j}`)
          )
        )
        // abandoned mid-line, and half-open (the client ends its side after a line: it still gets its answer)
        yield* Effect.forEach(Array.from({ length: 20 }), () => talk(path, ["half a li"], 0), { concurrency: 20 })
        const halfOpen = yield* talk(path, ["last\n"], 1, true)
        assert.deepStrictEqual(halfOpen.lines, ["got last"])
        yield* Effect.sleep("100 millis")
        assert.strictEqual(server.connections(), 0)
      })
    )
  )

  it.live("a stale socket file is replaced; a path that is not a socket is refused; close removes the socket", () =>
    Effect.gen(function* () {
      const d = dir()
      const path = join(d, "a.sock")
      // a stale socket: a server that was not closed properly leaves its file behind
      yield* Effect.promise(
        () =>
          new Promise<void>((resolve) => {
            const s = createServer()
            s.listen(path, () => {
              ;(s as unknown as { _handle: { close: () => void } })._handle.close()
              resolve()
            })
          })
      )
      const scope = yield* Scope.make()
      yield* LineServer.serve({ path }, echo).pipe(Scope.provide(scope))
      assert.deepStrictEqual((yield* talk(path, ["x\n"], 1)).lines, ["got x"])
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(existsSync(path))
      const file = join(d, "plain")
      writeFileSync(file, "not a socket")
      const refused = yield* Effect.flip(Effect.scoped(LineServer.serve({ path: file }, echo)))
      assert.strictEqual(refused._tag, "LineServerError")
      assert.strictEqual(statSync(file).isFile(), true)
    })
  )
})

class Streams extends RpcGroup.make(
  Rpc.make("count", { payload: { to: Schema.Int }, success: Schema.Number, stream: true }),
  Rpc.make("big", { payload: { n: Schema.Int }, success: Schema.String, stream: true }),
  Rpc.make("follow", { success: Schema.Number, stream: true }),
  Rpc.make("ping", { success: Schema.String })
) {}

const state = { produced: 0, followers: 0, finalized: 0 }
const streamHandlers = Streams.toLayer({
  count: ({ to }) => Stream.range(1, to),
  big: ({ n }) =>
    Stream.range(1, n).pipe(
      Stream.map((i) => {
        state.produced = i
        return "x".repeat(1000)
      }),
      Stream.ensuring(Effect.sync(() => state.finalized++))
    ),
  follow: () =>
    Stream.fromEffect(Effect.sync(() => ++state.followers)).pipe(
      Stream.concat(Stream.never),
      Stream.ensuring(Effect.sync(() => state.finalized++))
    ),
  ping: () => Effect.succeed("pong")
})

/** Serves `Streams` over JSON-RPC on a fresh socket path. */
const serveStreams = Effect.gen(function* () {
  const path = join(dir(), "s.sock")
  const handle = yield* JsonRpc.make(Streams)
  const server = yield* LineServer.serve({ path }, handle)
  return { path, server }
}).pipe(Effect.provide(streamHandlers))

/** A raw client kept open: `lines` fills as answers come; `waitFor(n)` until it holds `n` lines. */
const openClient = (path: string) =>
  Effect.promise(
    () =>
      new Promise<{
        socket: Socket
        lines: Array<string>
        waitFor: (n: number) => Promise<void>
      }>((resolve) => {
        const socket = connect(path)
        const lines: Array<string> = []
        let buffer = ""
        const waiters: Array<() => void> = []
        socket.on("data", (d) => {
          buffer += d.toString()
          let i: number
          while ((i = buffer.indexOf("\n")) !== -1) {
            lines.push(buffer.slice(0, i))
            buffer = buffer.slice(i + 1)
          }
          waiters.splice(0).forEach((w) => w())
        })
        socket.on("error", () => {})
        const waitFor = (n: number): Promise<void> =>
          lines.length >= n ? Promise.resolve() : new Promise((r) => waiters.push(() => r(waitFor(n))))
        socket.on("connect", () => resolve({ socket, lines, waitFor }))
      })
  )

const until = (check: () => boolean) =>
  Effect.promise(
    () =>
      new Promise<void>((resolve, reject) => {
        const started = Date.now()
        const poll = () =>
          check() ? resolve() : Date.now() - started > 5000 ? reject(new Error("timed out")) : setTimeout(poll, 5)
        poll()
      })
  )

describe("LineServer: JSON-RPC streams", () => {
  it.live("a stream's items arrive as notifications before its final response; the next line waits for it", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const { path } = yield* serveStreams
        const { lines } = yield* talk(
          path,
          [
            JSON.stringify({ jsonrpc: "2.0", id: 1, method: "count", params: { to: 3 } }) + "\n",
            JSON.stringify({ jsonrpc: "2.0", id: 2, method: "ping" }) + "\n"
          ],
          5
        )
        assert.deepStrictEqual(
          lines.map((l) => JSON.parse(l)),
          [
            { jsonrpc: "2.0", method: "stream", params: { id: 1, item: 1 } },
            { jsonrpc: "2.0", method: "stream", params: { id: 1, item: 2 } },
            { jsonrpc: "2.0", method: "stream", params: { id: 1, item: 3 } },
            { jsonrpc: "2.0", id: 1, result: null },
            { jsonrpc: "2.0", id: 2, result: "pong" }
          ]
        )
      })
    )
  )

  it.live("a follow stream is interrupted when its client disconnects (its finalizer runs, no fiber left)", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const { path, server } = yield* serveStreams
        const client = yield* openClient(path)
        const before = state.finalized
        client.socket.write(JSON.stringify({ jsonrpc: "2.0", id: "f", method: "follow" }) + "\n")
        yield* Effect.promise(() => client.waitFor(1))
        assert.deepStrictEqual(JSON.parse(client.lines[0]!).params.id, "f")
        assert.strictEqual(state.finalized, before)
        client.socket.destroy()
        yield* until(() => state.finalized === before + 1 && server.connections() === 0)
        // and one that only ends its side: its streams stop too, its other lines are answered
        const half = yield* openClient(path)
        half.socket.write(
          JSON.stringify({ jsonrpc: "2.0", id: 1, method: "follow" }) +
            "\n" +
            JSON.stringify({ jsonrpc: "2.0", id: 2, method: "ping" }) +
            "\n"
        )
        yield* Effect.promise(() => half.waitFor(1))
        half.socket.end()
        yield* Effect.promise(() => half.waitFor(2))
        assert.deepStrictEqual(JSON.parse(half.lines[1]!), { jsonrpc: "2.0", id: 2, result: "pong" })
        yield* until(() => state.finalized === before + 2 && server.connections() === 0)
      })
    )
  )

  it.live("a stream waits for a client that does not read (backpressure), and stops when it leaves", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const { path, server } = yield* serveStreams
        const client = yield* openClient(path)
        client.socket.pause()
        const before = state.finalized
        client.socket.write(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "big", params: { n: 100_000 } }) + "\n")
        yield* until(() => state.produced > 0)
        yield* Effect.sleep("300 millis")
        // ~100 MB in all; what the socket buffers is a small part of it
        assert.isBelow(state.produced, 20_000)
        client.socket.resume()
        yield* Effect.promise(() => client.waitFor(1000))
        client.socket.destroy()
        yield* until(() => state.finalized === before + 1 && server.connections() === 0)
        assert.isBelow(state.produced, 100_000)
      })
    )
  )

  it.live("closing the server ends a follow stream", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const { path } = yield* serveStreams.pipe(Scope.provide(scope))
      const client = yield* openClient(path)
      const before = state.finalized
      client.socket.write(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "follow" }) + "\n")
      yield* Effect.promise(() => client.waitFor(1))
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(state.finalized, before + 1)
      client.socket.destroy()
    })
  )
})
