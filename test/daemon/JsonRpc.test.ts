import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Fiber, Latch, Queue, Schema, Stream } from "effect"
import { Rpc, RpcGroup } from "effect/rpc"
import { JsonRpc } from "effect-agent-os"

class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { pid: Schema.Number }) {}

const Api = RpcGroup.make(
  Rpc.make("kernel.kill", { payload: { pid: Schema.Int }, success: Schema.Boolean, error: NotFound }),
  Rpc.make("agent.list", { success: Schema.Array(Schema.Struct({ pid: Schema.Number, name: Schema.String })) }),
  Rpc.make("boom", {})
)

const calls: Array<number> = []
const handlers = Api.toLayer({
  "kernel.kill": ({ pid }) => {
    calls.push(pid)
    return pid === 7 ? Effect.succeed(true) : Effect.fail(new NotFound({ pid }))
  },
  "agent.list": () => Effect.succeed([{ pid: 1, name: "init" }]),
  boom: () => Effect.die(new Error("secret internals"))
})

const serve = (line: string) =>
  Effect.gen(function* () {
    const handle = yield* JsonRpc.make(Api, { errorCodes: { NotFound: 404 } })
    const out = yield* handle(line)
    return out === undefined ? undefined : JSON.parse(out)
  }).pipe(Effect.provide(handlers))

const req = (o: unknown) => JSON.stringify(o)

describe("JsonRpc: an RpcGroup as JSON-RPC 2.0", () => {
  it.effect("a call answers its result with the same id (number or string)", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* serve(req({ jsonrpc: "2.0", id: 1, method: "kernel.kill", params: { pid: 7 } })), {
        jsonrpc: "2.0",
        id: 1,
        result: true
      })
      assert.deepStrictEqual(yield* serve(req({ jsonrpc: "2.0", id: "abc", method: "agent.list" })), {
        jsonrpc: "2.0",
        id: "abc",
        result: [{ pid: 1, name: "init" }]
      })
    })
  )

  it.effect("-32700 for text that is not JSON, with id null", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* serve("{ not json"), {
        jsonrpc: "2.0",
        id: null,
        error: { code: -32700, message: "Parse error" }
      })
    })
  )

  it.effect("-32600 for requests that are not JSON-RPC 2.0", () =>
    Effect.gen(function* () {
      for (const bad of [
        1,
        "x",
        null,
        { id: 1, method: "agent.list" },
        { jsonrpc: "1.0", id: 1, method: "agent.list" },
        { jsonrpc: "2.0", id: 1, method: 5 },
        { jsonrpc: "2.0", id: { x: 1 }, method: "agent.list" },
        { jsonrpc: "2.0", id: 1, method: "agent.list", params: 3 }
      ]) {
        const out = yield* serve(req(bad))
        assert.strictEqual(out.error.code, -32600, req(bad))
      }
      const empty = yield* serve("[]")
      assert.strictEqual(empty.error.code, -32600)
    })
  )

  it.effect("-32601 for an unknown method, inherited names included", () =>
    Effect.gen(function* () {
      for (const method of ["nope", "constructor", "__proto__", "toString", "hasOwnProperty"]) {
        const out = yield* serve(req({ jsonrpc: "2.0", id: 2, method }))
        assert.deepStrictEqual(out.error.code, -32601, method)
        assert.strictEqual(out.id, 2)
      }
    })
  )

  it.effect(
    "-32602 for params that do not decode (with the Schema's message), extra fields, or positional params",
    () =>
      Effect.gen(function* () {
        const wrongType = yield* serve(req({ jsonrpc: "2.0", id: 3, method: "kernel.kill", params: { pid: "x" } }))
        assert.strictEqual(wrongType.error.code, -32602)
        assert.match(wrongType.error.data.message, /pid/)
        const extra = yield* serve(
          req({ jsonrpc: "2.0", id: 4, method: "kernel.kill", params: { pid: 7, force: true } })
        )
        assert.strictEqual(extra.error.code, -32602)
        const positional = yield* serve(req({ jsonrpc: "2.0", id: 5, method: "kernel.kill", params: [7] }))
        assert.strictEqual(positional.error.code, -32602)
        const before = calls.length
        void before
      })
  )

  it.effect(
    "an application error has its own code and the encoded error as data; a defect is -32603 without details",
    () =>
      Effect.gen(function* () {
        const notFound = yield* serve(req({ jsonrpc: "2.0", id: 6, method: "kernel.kill", params: { pid: 9 } }))
        assert.deepStrictEqual(notFound.error.code, 404)
        assert.deepStrictEqual(notFound.error.data, { _tag: "NotFound", pid: 9 })
        const boom = yield* serve(req({ jsonrpc: "2.0", id: 7, method: "boom" }))
        assert.deepStrictEqual(boom, { jsonrpc: "2.0", id: 7, error: { code: -32603, message: "Internal error" } })
        assert.notInclude(JSON.stringify(boom), "secret")
      })
  )

  it.effect("a batch is answered as one array, notifications left out; a batch of notifications gets no answer", () =>
    Effect.gen(function* () {
      const before = calls.length
      const out = yield* serve(
        req([
          { jsonrpc: "2.0", id: 1, method: "agent.list" },
          { jsonrpc: "2.0", method: "kernel.kill", params: { pid: 7 } },
          { jsonrpc: "2.0", id: 2, method: "nope" },
          5
        ])
      )
      assert.deepStrictEqual(
        out.map((r: { id: unknown; error?: { code: number } }) => [r.id, r.error?.code]),
        [
          [1, undefined],
          [2, -32601],
          [null, -32600]
        ]
      )
      assert.strictEqual(calls.length, before + 1, "the notification ran")
      assert.isUndefined(yield* serve(req([{ jsonrpc: "2.0", method: "agent.list" }])))
      assert.isUndefined(yield* serve(req({ jsonrpc: "2.0", method: "kernel.kill", params: { pid: 7 } })))
    })
  )

  it.effect("a batch larger than batchMax is one -32600", () =>
    Effect.gen(function* () {
      const big = Array.from({ length: 101 }, (_, i) => ({ jsonrpc: "2.0", id: i, method: "agent.list" }))
      const out = yield* serve(req(big))
      assert.strictEqual(out.error.code, -32600)
    })
  )
})

class Broken extends Schema.TaggedError<Broken>()("Broken", { after: Schema.Number }) {}

const Streams = RpcGroup.make(
  Rpc.make("count", { payload: { to: Schema.Int }, success: Schema.Number, error: Broken, stream: true }),
  Rpc.make("count.queue", { payload: { to: Schema.Int }, success: Schema.Number, stream: true }),
  Rpc.make("follow", { success: Schema.Number, stream: true }),
  Rpc.make("ping", { success: Schema.String })
)

let followFinalized = 0
let followStarted = 0
const streamHandlers = Streams.toLayer({
  count: ({ to }) =>
    Stream.range(1, Math.abs(to)).pipe(Stream.concat(to < 0 ? Stream.fail(new Broken({ after: -to })) : Stream.empty)),
  "count.queue": ({ to }) =>
    Effect.gen(function* () {
      const queue = yield* Queue.unbounded<number, Cause.Done>()
      for (let i = 1; i <= to; i++) Queue.offerUnsafe(queue, i)
      yield* Queue.end(queue)
      return queue
    }),
  follow: () =>
    Stream.fromEffect(Effect.sync(() => followStarted++)).pipe(
      Stream.concat(Stream.never),
      Stream.ensuring(Effect.sync(() => followFinalized++))
    ),
  ping: () => Effect.succeed("pong")
})

/** An emitter that records lines; `close()` makes `closed` complete. */
const recorder = () => {
  const lines: Array<unknown> = []
  const latch = Latch.makeUnsafe(false)
  const emitter: JsonRpc.Emitter = {
    emit: (line) => Effect.sync(() => void lines.push(JSON.parse(line))),
    closed: latch.await,
    start: () => Effect.sync(() => void lines.push("start"))
  }
  return { lines, emitter, close: () => latch.openUnsafe() }
}

const item = (id: unknown, value: unknown) => ({ jsonrpc: "2.0", method: "stream", params: { id, item: value } })

describe("JsonRpc: streams", () => {
  it.effect("each item is a notification emitted before the final response (result null)", () =>
    Effect.gen(function* () {
      const handle = yield* JsonRpc.make(Streams)
      const { lines, emitter } = recorder()
      const out = yield* handle(req({ jsonrpc: "2.0", id: 9, method: "count", params: { to: 3 } }), emitter)
      assert.deepStrictEqual(lines, ["start", item(9, 1), item(9, 2), item(9, 3)])
      assert.deepStrictEqual(JSON.parse(out!), { jsonrpc: "2.0", id: 9, result: null })
    }).pipe(Effect.provide(streamHandlers))
  )

  it.effect("a handler that answers a queue streams it the same way", () =>
    Effect.gen(function* () {
      const handle = yield* JsonRpc.make(Streams)
      const { lines, emitter } = recorder()
      const out = yield* handle(req({ jsonrpc: "2.0", id: "q", method: "count.queue", params: { to: 2 } }), emitter)
      assert.deepStrictEqual(lines, ["start", item("q", 1), item("q", 2)])
      assert.deepStrictEqual(JSON.parse(out!), { jsonrpc: "2.0", id: "q", result: null })
    }).pipe(Effect.provide(streamHandlers))
  )

  it.effect("a stream that fails ends with the error response (its code and encoded error), after its items", () =>
    Effect.gen(function* () {
      const handle = yield* JsonRpc.make(Streams, { errorCodes: { Broken: -32050 } })
      const { lines, emitter } = recorder()
      const out = JSON.parse(
        (yield* handle(req({ jsonrpc: "2.0", id: 1, method: "count", params: { to: -2 } }), emitter))!
      )
      assert.deepStrictEqual(lines, ["start", item(1, 1), item(1, 2)])
      assert.strictEqual(out.error.code, -32050)
      assert.deepStrictEqual(out.error.data, { _tag: "Broken", after: 2 })
    }).pipe(Effect.provide(streamHandlers))
  )

  it.effect("the emitter closing interrupts the stream (its finalizer runs) and nothing is answered", () =>
    Effect.gen(function* () {
      const handle = yield* JsonRpc.make(Streams)
      const { lines, emitter, close } = recorder()
      const before = followFinalized
      const fiber = yield* Effect.forkChild(handle(req({ jsonrpc: "2.0", id: 2, method: "follow" }), emitter))
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow
      close()
      const out = yield* Fiber.join(fiber)
      assert.isUndefined(out)
      // the one item came out before the close
      assert.deepStrictEqual(lines, ["start", item(2, followStarted - 1)])
      assert.strictEqual(followFinalized, before + 1)
    }).pipe(Effect.provide(streamHandlers))
  )

  it.effect("refused in a batch (-32600, the rest run), without an emitter (-32600); a notification runs nothing", () =>
    Effect.gen(function* () {
      const handle = yield* JsonRpc.make(Streams)
      const { lines, emitter } = recorder()
      const batch = JSON.parse(
        (yield* handle(
          req([
            { jsonrpc: "2.0", id: 1, method: "count", params: { to: 2 } },
            { jsonrpc: "2.0", id: 2, method: "ping" }
          ]),
          emitter
        ))!
      )
      assert.deepStrictEqual(batch[0], {
        jsonrpc: "2.0",
        id: 1,
        error: { code: -32600, message: "Invalid Request: streams cannot be batched" }
      })
      assert.deepStrictEqual(batch[1], { jsonrpc: "2.0", id: 2, result: "pong" })
      assert.deepStrictEqual(lines, [])
      const bare = JSON.parse((yield* handle(req({ jsonrpc: "2.0", id: 3, method: "count", params: { to: 2 } })))!)
      assert.strictEqual(bare.error.code, -32600)
      const started = followStarted
      assert.isUndefined(yield* handle(req({ jsonrpc: "2.0", method: "follow" }), emitter))
      assert.strictEqual(followStarted, started, "nothing ran")
      assert.deepStrictEqual(lines, [])
      // params are still checked for a stream request
      const bad = JSON.parse(
        (yield* handle(req({ jsonrpc: "2.0", id: 4, method: "count", params: { to: "x" } }), emitter))!
      )
      assert.strictEqual(bad.error.code, -32602)
    }).pipe(Effect.provide(streamHandlers))
  )
})
