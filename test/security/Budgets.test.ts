/**
 * Issue 8, parts 4 and 5: budgets bind the whole subtree (orphans included: init adopts them with a cap, and their
 * dead parent's limits still hold), every quota field is carved from what the parent has left, a process holds a
 * bounded number of caps, and a driver call never starts beyond what is left (reservations).
 */
import * as Http from "node:http"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"
import { TestClock } from "effect/testing"
import { Device, Llm, Process, Sys, Tools } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { assertCapabilityError, assertQuotaError, idle, outcome, range, rowOf, run, runOn, show } from "./harness.ts"

describe("an orphan stays bound by its ancestors", () => {
  it.effect(
    "parent with tokens 100 spawns an unlimited child and exits: the child's 60 + 60 ends it with Quota",
    () => {
      let orphanPid = 0
      const orphan = Process.make("orphan", () =>
        Effect.gen(function* () {
          yield* Effect.sleep("1 second")
          yield* Sys.charge({ tokens: 60 })
          yield* Sys.charge({ tokens: 60 })
        })
      )
      const parent = Process.make("parent", () =>
        Effect.map(Sys.spawn(orphan), ({ pid }) => {
          orphanPid = pid
        })
      )
      return run((grant, kernel) =>
        Effect.gen(function* () {
          const spawnCap = yield* Sys.derive(grant.spawn, ["spawn"])
          const { cap } = yield* Sys.spawn(parent, { caps: [spawnCap], quota: { tokens: 100 } })
          assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
          assert.isAbove(orphanPid, 0)
          yield* TestClock.adjust("1 second")
          const reason = yield* kernel.waitExit(orphanPid)
          assert.deepStrictEqual(reason, Process.quota("tokens"), `the orphan ended ${show(reason)}`)
          assert.isAtMost((yield* Sys.budget()).used.tokens, 120)
        })
      )
    }
  )

  it.effect("init gets Adopted { pid } from the kernel with a monitor+kill cap on the orphan", () => {
    let orphanPid = 0
    const parent = Process.make("parent", () =>
      Effect.map(Sys.spawn(idle), ({ pid }) => {
        orphanPid = pid
      })
    )
    return run((grant) =>
      Effect.gen(function* () {
        const spawnCap = yield* Sys.derive(grant.spawn, ["spawn"])
        const { cap } = yield* Sys.spawn(parent, { caps: [spawnCap] })
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
        const message = yield* Sys.recv()
        assert.strictEqual(message.from, 0)
        assert.deepStrictEqual(message.body, { _tag: "Adopted", pid: orphanPid })
        assert.isTrue(Process.isKernelMessage(message), "Adopted is a kernel message")
        assert.strictEqual(message.caps.length, 1)
        const adopted = message.caps[0]!
        // exactly monitor + kill
        yield* Sys.derive(adopted, ["monitor", "kill"])
        assertCapabilityError(yield* outcome(Sys.derive(adopted, ["send"])), "amplification")
        yield* Sys.kill(adopted)
        assert.deepStrictEqual(yield* Sys.waitpid(adopted), Process.killed(1))
      })
    )
  })

  it.effect("a body shaped like Adopted from a process is not a kernel message", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        yield* Sys.send(me, { _tag: "Adopted", pid: 7 }, { caps: [yield* Sys.derive(me, ["send"])] })
        const message = yield* Sys.recv()
        assert.strictEqual(message.from, 1)
        assert.isFalse(Process.isKernelMessage(message))
      })
    )
  )
})

describe("every quota field is carved from the parent's", () => {
  it.effect("children and mailbox within the parent's are granted", () =>
    run(
      () =>
        Effect.gen(function* () {
          const { cap } = yield* Sys.spawn(idle, { quota: { children: 1, mailbox: 8 } })
          yield* Sys.send(cap, "hello")
        }),
      { quota: { children: 2, mailbox: 16 } }
    )
  )

  it.effect("children above what the parent has left is QuotaError exceeds-parent", () =>
    run(
      () =>
        Effect.gen(function* () {
          assertQuotaError(yield* outcome(Sys.spawn(idle, { quota: { children: 5 } })), "children", "exceeds-parent")
        }),
      { quota: { children: 2 } }
    )
  )

  it.effect("mailbox above the parent's is QuotaError exceeds-parent", () =>
    run(
      () =>
        Effect.gen(function* () {
          assertQuotaError(yield* outcome(Sys.spawn(idle, { quota: { mailbox: 100 } })), "mailbox", "exceeds-parent")
        }),
      { quota: { mailbox: 16 } }
    )
  )
})

describe("KernelConfig.capsPerProcessMax", () => {
  const limited = TestKernel.layer({ limits: { capsPerProcessMax: 8 } })

  it.effect("deriving past 8 held caps fails with CapabilityError limit; a revoke makes room", () =>
    runOn(
      (grant, kernel) =>
        Effect.gen(function* () {
          // the root holds its spawn cap: 7 more make 8
          const derived = []
          for (let i = 0; i < 7; i++) derived.push(yield* Sys.derive(grant.spawn, ["spawn"]))
          assertCapabilityError(yield* outcome(Sys.derive(grant.spawn, ["spawn"])), "limit")
          assert.isAtMost((yield* rowOf(kernel, 1))!.caps, 8)
          yield* Sys.revoke(derived[0]!)
          yield* Sys.derive(grant.spawn, ["spawn"])
        }),
      undefined
    ).pipe(Effect.provide(limited))
  )

  it.effect("a send that would take the receiver past its limit fails for the sender; the caps stay with it", () => {
    // holds its start cap and 7 derivations of it: 8, then waits
    const full = Process.make("full", () =>
      Effect.gen(function* () {
        const [back] = yield* Sys.caps()
        for (let i = 0; i < 7; i++) yield* Sys.derive(back!, ["send"])
        yield* Sys.send(back!, "full")
        yield* Effect.forever(Sys.recv())
      })
    )
    return runOn((_, kernel) =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const receiver = yield* Sys.spawn(full, { caps: [yield* Sys.derive(me, ["send"])] })
        assert.strictEqual((yield* Sys.recv()).body, "full")
        const a = yield* Sys.derive(me, ["send"])
        const b = yield* Sys.derive(me, ["send"])
        assertCapabilityError(yield* outcome(Sys.send(receiver.cap, "more", { caps: [a, b] })), "limit")
        assert.isAtMost((yield* rowOf(kernel, receiver.pid))!.caps, 8)
        // still the sender's
        yield* Sys.send(a, "still mine", { caps: [b] })
        const back = yield* Sys.recv()
        assert.strictEqual(back.body, "still mine")
        assert.deepStrictEqual(back.caps, [b])
        // a receiver with room takes caps as usual
        const roomy = yield* Sys.spawn(idle)
        yield* Sys.send(roomy.cap, "one", { caps: [b] })
      })
    ).pipe(Effect.provide(limited))
  })
})

// ---------------------------------------------------------------------------------------------------------------------
// Driver calls

const Ping = Tool.make("ping", { parameters: Schema.Struct({ n: Schema.Finite }), success: Schema.Finite })

/** A tool set whose one tool counts its runs (on entry) and yields once, so that concurrent calls overlap. */
const pingTools = (runs: { count: number }) =>
  Tools.make(Toolkit.make(Ping), {
    ping: ({ n }) =>
      Effect.suspend(() => {
        runs.count++
        return Effect.as(Effect.yieldNow, n)
      })
  })

describe("tool calls never start beyond what is left", () => {
  it.effect("calls within the quota run and are charged one tool call each", () => {
    const runs = { count: 0 }
    const worker = Process.make("worker", () =>
      Effect.gen(function* () {
        const [tools] = yield* Sys.caps()
        const handle = yield* Sys.open(tools!)
        const results = yield* Sys.readAll(handle, [
          { tool: "ping", input: { n: 1 } },
          { tool: "ping", input: { n: 2 } }
        ])
        assert.deepStrictEqual(results, [1, 2])
      })
    )
    return runOn(
      (grant) =>
        Effect.gen(function* () {
          const { cap } = yield* Sys.spawn(worker, { caps: [grant.devices.tools!], quota: { toolCalls: 3 } })
          assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
          assert.strictEqual(runs.count, 2)
          assert.strictEqual((yield* Sys.budget()).used.toolCalls, 2)
        }),
      { grant: ["tools"] }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [pingTools(runs)] })))
  })

  it.effect("readAll of 50 calls under toolCalls 2 runs the tool at most twice and ends the caller with Quota", () => {
    const runs = { count: 0 }
    const worker = Process.make("worker", () =>
      Effect.gen(function* () {
        const [tools] = yield* Sys.caps()
        const handle = yield* Sys.open(tools!)
        yield* Sys.readAll(
          handle,
          range(50).map((n) => ({ tool: "ping", input: { n } }))
        )
      })
    )
    return runOn(
      (grant) =>
        Effect.gen(function* () {
          const { cap } = yield* Sys.spawn(worker, { caps: [grant.devices.tools!], quota: { toolCalls: 2 } })
          const reason = yield* Sys.waitpid(cap)
          assert.isAtMost(runs.count, 2, "tool runs")
          assert.isAtMost((yield* Sys.budget()).used.toolCalls, 2, "toolCalls used")
          assert.deepStrictEqual(reason, Process.quota("toolCalls"))
        }),
      { grant: ["tools"] }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [pingTools(runs)] })))
  })

  it.effect("10 forked fibers each reading once under toolCalls 2: the tool runs at most twice", () => {
    const runs = { count: 0 }
    const worker = Process.make("worker", () =>
      Effect.gen(function* () {
        const [tools] = yield* Sys.caps()
        const handle = yield* Sys.open(tools!)
        const fibers = []
        for (const n of range(10))
          fibers.push(yield* Effect.forkChild(Sys.read(handle, { tool: "ping", input: { n } })))
        yield* Fiber.joinAll(fibers)
      })
    )
    return runOn(
      (grant) =>
        Effect.gen(function* () {
          const { cap } = yield* Sys.spawn(worker, { caps: [grant.devices.tools!], quota: { toolCalls: 2 } })
          const reason = yield* Sys.waitpid(cap)
          assert.isAtMost(runs.count, 2, "tool runs")
          assert.isAtMost((yield* Sys.budget()).used.toolCalls, 2, "toolCalls used")
          assert.deepStrictEqual(reason, Process.quota("toolCalls"))
        }),
      { grant: ["tools"] }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [pingTools(runs)] })))
  })
})

describe("a driver's reservation", () => {
  /** Reserves 100 tokens a call, sleeps `ms` (from the request) and settles at 10 tokens. */
  const reserving = (starts: { count: number }): Device.Driver => ({
    name: "metered",
    meters: ["tokens"],
    reserve: () => ({ tokens: 100 }),
    open: () =>
      Effect.succeed({
        read: (request) =>
          Effect.suspend(() => {
            starts.count++
            const ms = (request as { readonly ms?: number }).ms ?? 0
            return Effect.as(Effect.sleep(ms), { value: "done", cost: { tokens: 10 } })
          })
      })
  })

  it.effect("under tokens 250 two calls start at once; a third ends the caller before the driver sees it", () => {
    const starts = { count: 0 }
    const worker = Process.make("worker", () =>
      Effect.gen(function* () {
        const [device] = yield* Sys.caps()
        const handle = yield* Sys.open(device!)
        yield* Effect.forEach(range(3), () => Sys.read(handle, { ms: 1000 }), { concurrency: "unbounded" })
      })
    )
    return runOn(
      (grant) =>
        Effect.gen(function* () {
          const { cap } = yield* Sys.spawn(worker, { caps: [grant.devices.metered!], quota: { tokens: 250 } })
          yield* Sys.yield()
          yield* TestClock.adjust("1 second")
          const reason = yield* Sys.waitpid(cap)
          assert.strictEqual(starts.count, 2, "driver calls started")
          assert.deepStrictEqual(reason, Process.quota("tokens"))
        }),
      { grant: ["metered"] }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [reserving(starts)] })))
  })

  it.effect("a settled call releases its reservation: ten calls in a row run at their actual cost", () => {
    const starts = { count: 0 }
    const used: Array<number> = []
    const worker = Process.make("worker", () =>
      Effect.gen(function* () {
        const [device] = yield* Sys.caps()
        const handle = yield* Sys.open(device!)
        for (let i = 0; i < 10; i++) yield* Sys.read(handle, {})
        used.push((yield* Sys.budget()).used.tokens)
      })
    )
    return runOn(
      (grant) =>
        Effect.gen(function* () {
          const { cap } = yield* Sys.spawn(worker, { caps: [grant.devices.metered!], quota: { tokens: 250 } })
          assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
          assert.strictEqual(starts.count, 10)
          assert.deepStrictEqual(used, [100])
          assert.strictEqual((yield* Sys.budget()).used.tokens, 100)
        }),
      { grant: ["metered"] }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [reserving(starts)] })))
  })
})

describe("an LLM reply without usage", () => {
  /** A loopback chat-completions endpoint that answers every request without a `usage` field. */
  const serverWithoutUsage = Effect.acquireRelease(
    Effect.callback<Http.Server>((resume) => {
      const server = Http.createServer((request, response) => {
        request.resume()
        request.on("end", () => {
          response.writeHead(200, { "content-type": "application/json" })
          response.end(
            JSON.stringify({
              id: "chatcmpl-1",
              object: "chat.completion",
              created: 0,
              model: "test-model",
              choices: [
                {
                  index: 0,
                  message: { role: "assistant", content: "Hello there, and a good day to the whole wide world!" },
                  finish_reason: "stop",
                  logprobs: null
                }
              ]
            })
          )
        })
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

  it.live("is charged a token estimate above 0", () =>
    Effect.gen(function* () {
      const server = yield* serverWithoutUsage
      const address = server.address() as { readonly port: number }
      const driver = Llm.make({
        baseURL: `http://127.0.0.1:${address.port}/v1`,
        apiKey: "test-key",
        model: "test-model",
        retry: { times: 0 }
      })
      yield* runOn(
        (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.llm!)
            const reply = yield* Sys.read<Llm.LlmReply>(handle, {
              messages: [{ role: "user", content: "Say hello to everyone in the whole wide world, please." }]
            })
            assert.include(reply.text, "Hello")
            assert.isAbove((yield* Sys.budget()).used.tokens, 0, "an answer without usage was charged nothing")
          }),
        { grant: ["llm"] }
      ).pipe(Effect.provide(TestKernel.layer({ drivers: [driver] })))
    })
  )
})
