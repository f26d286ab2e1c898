/**
 * Device caps narrowed to some tools (`Sys.attenuate(cap, { tools })`) and calls that wait for a human's approval:
 * each grant beside its refusal, checked by the kernel, not by the tools device.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"
import { TestClock } from "effect/testing"
import { Device, Journal, Kernel, Process, Sys, Tools } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

type CallContext = Device.CallContext
import { assertCapabilityError, outcome, runOn, within } from "../security/harness.ts"

const Echo = Tool.make("echo", { parameters: Schema.Struct({ text: Schema.String }), success: Schema.String })
const Secret = Tool.make("secret", { parameters: Schema.Struct({}), success: Schema.String })
const Write = Tool.make("write", { parameters: Schema.Struct({ text: Schema.String }), success: Schema.String })

/** A tools device whose implementations record what they ran and the call context they got. */
const makeTools = () => {
  const ran: Array<{ tool: string; context: CallContext }> = []
  const driver = Tools.make(Toolkit.make(Echo, Secret, Write), {
    echo: (params, context) => Effect.sync(() => (ran.push({ tool: "echo", context }), params.text)),
    secret: (_params, context) => Effect.sync(() => (ran.push({ tool: "secret", context }), "the secret")),
    write: (params, context) => Effect.sync(() => (ran.push({ tool: "write", context }), `wrote ${params.text}`))
  })
  return { ran, driver }
}

const withTools = <A, E>(
  body: (ran: Array<{ tool: string; context: CallContext }>) => Effect.Effect<A, E, Kernel.Kernel>
) =>
  Effect.gen(function* () {
    const { ran, driver } = makeTools()
    const tools = yield* driver
    return yield* body(ran).pipe(Effect.provide(TestKernel.layer({ drivers: [tools] })))
  })

const echo = (text: string) => ({ tool: "echo", input: { text } })

describe("tools narrowing", () => {
  it.effect("a cap narrowed to echo runs echo and refuses every other tool, in the kernel", () =>
    withTools((ran) =>
      runOn(
        (grant) =>
          Effect.gen(function* () {
            const narrowed = yield* Sys.attenuate(grant.devices.tools!, { tools: { echo: {} } })
            const handle = yield* Sys.open(narrowed)
            assert.strictEqual(yield* Sys.read(handle, echo("hi")), "hi")
            assertCapabilityError(yield* outcome(Sys.read(handle, { tool: "secret", input: {} })), "out-of-scope")
            // the JSON-text form too, and a request that names no tool
            assertCapabilityError(yield* outcome(Sys.read(handle, { tool: "secret", arguments: "{}" })), "out-of-scope")
            assertCapabilityError(yield* outcome(Sys.read(handle, { input: {} })), "out-of-scope")
            assertCapabilityError(yield* outcome(Sys.read(handle, "secret")), "out-of-scope")
            // readAll: one tool out of scope and none runs
            const before = ran.length
            assertCapabilityError(
              yield* outcome(Sys.readAll(handle, [echo("a"), { tool: "secret", input: {} }])),
              "out-of-scope"
            )
            assert.strictEqual(ran.length, before)
            // the unnarrowed cap still reaches every tool
            const full = yield* Sys.open(grant.devices.tools!)
            assert.strictEqual(yield* Sys.read(full, { tool: "secret", input: {} }), "the secret")
            assert.deepStrictEqual(
              ran.map((r) => r.tool),
              ["echo", "secret"]
            )
          }),
        { grant: ["tools"] }
      )
    )
  )

  it.effect("narrowings stack: a tool passes only if every layer grants it; a layer cannot add one back", () =>
    withTools(() =>
      runOn(
        (grant) =>
          Effect.gen(function* () {
            const two = yield* Sys.attenuate(grant.devices.tools!, { tools: { echo: {}, write: {} } })
            const one = yield* Sys.attenuate(two, { tools: { write: {} } })
            const widened = yield* Sys.attenuate(one, { tools: { echo: {}, write: {}, secret: {} } })
            const h = yield* Sys.open(widened)
            assertCapabilityError(yield* outcome(Sys.read(h, echo("x"))), "out-of-scope")
            assertCapabilityError(yield* outcome(Sys.read(h, { tool: "secret", input: {} })), "out-of-scope")
            assert.strictEqual(yield* Sys.read(h, { tool: "write", input: { text: "ok" } }), "wrote ok")
            // a derive keeps the narrowing
            const derived = yield* Sys.derive(one, ["open"])
            const h2 = yield* Sys.open(derived)
            assertCapabilityError(yield* outcome(Sys.read(h2, echo("x"))), "out-of-scope")
            // a handle can be narrowed too
            const wide = yield* Sys.open(grant.devices.tools!)
            const narrowHandle = yield* Sys.attenuate(wide, { tools: { echo: {} } })
            assert.strictEqual(yield* Sys.read(narrowHandle, echo("h")), "h")
            assertCapabilityError(
              yield* outcome(Sys.read(narrowHandle, { tool: "write", input: { text: "" } })),
              "out-of-scope"
            )
          }),
        { grant: ["tools"] }
      )
    )
  )

  it.effect("the narrowing moves with the cap: a child given it cannot reach other tools", () =>
    withTools(() =>
      runOn(
        (grant) =>
          Effect.gen(function* () {
            const narrowed = yield* Sys.attenuate(grant.devices.tools!, { tools: { echo: {} } })
            const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
            const child = Process.make("child", () =>
              Effect.gen(function* () {
                const [tools, reply] = yield* Sys.caps()
                const h = yield* Sys.open(tools!)
                const r = yield* Effect.match(Sys.read(h, { tool: "secret", input: {} }), {
                  onFailure: (e) => (e as { reason?: string }).reason ?? "?",
                  onSuccess: () => "ran"
                })
                yield* Sys.send(reply!, r)
              })
            )
            yield* Sys.spawn(child, { caps: [narrowed, me] })
            assert.strictEqual((yield* Sys.recv()).body, "out-of-scope")
          }),
        { grant: ["tools"] }
      )
    )
  )

  it.effect("the tool checked is the tool run: a getter or proxy that changes its answer is read once, copied", () =>
    withTools((ran) =>
      runOn(
        (grant) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(yield* Sys.attenuate(grant.devices.tools!, { tools: { echo: {} } }))
            let reads = 0
            const shifty = {
              get tool() {
                return reads++ === 0 ? "echo" : "secret"
              },
              input: { text: "once" }
            }
            const result = yield* Sys.read(h, shifty)
            assert.strictEqual(result, "once")
            assert.strictEqual(reads, 1)
            let proxyReads = 0
            const proxy = new Proxy(
              { tool: "echo", input: { text: "p" } },
              {
                get: (target, key) => (key === "tool" && proxyReads++ > 0 ? "secret" : Reflect.get(target, key))
              }
            )
            assert.strictEqual(yield* Sys.read(h, proxy), "p")
            assert.deepStrictEqual(
              ran.map((r) => r.tool),
              ["echo", "echo"]
            )
          }),
        { grant: ["tools"] }
      )
    )
  )

  it.effect("each layer's scope reaches the driver, outermost first, frozen; an unnarrowed call has none", () =>
    withTools((ran) =>
      runOn(
        (grant) =>
          Effect.gen(function* () {
            const scope = { paths: ["/data/*"] }
            const a = yield* Sys.attenuate(grant.devices.tools!, { tools: { echo: { scope } } })
            scope.paths.push("/etc/*") // the kernel kept a copy
            const b = yield* Sys.attenuate(a, { tools: { echo: { scope: { paths: ["/data/x"] } } } })
            yield* Sys.read(yield* Sys.open(b), echo("s"))
            const context = ran[0]!.context
            assert.strictEqual(context.tool, "echo")
            assert.deepStrictEqual(context.scopes, [{ paths: ["/data/*"] }, { paths: ["/data/x"] }])
            assert.isTrue(Object.isFrozen(context.scopes![0]))
            assert.isTrue(Object.isFrozen((context.scopes![0] as { paths: Array<string> }).paths))
            yield* Sys.read(yield* Sys.open(grant.devices.tools!), echo("u"))
            assert.strictEqual(ran[1]!.context.scopes, undefined)
          }),
        { grant: ["tools"] }
      )
    )
  )

  it.effect("bad narrowings are typed ArgumentErrors; a tools narrowing of a process cap is wrong-resource", () =>
    withTools(() =>
      runOn(
        (grant) =>
          Effect.gen(function* () {
            const tools = grant.devices.tools!
            const bad: Array<unknown> = [
              "echo",
              ["echo"],
              { echo: true },
              { "": {} },
              { "bad name": {} },
              { echo: { approval: "yes" } },
              { echo: { approval: { timeout: "soon" } } },
              { echo: { scope: () => 1 } },
              {
                get echo() {
                  throw new Error("boom")
                }
              }
            ]
            for (const input of bad) {
              const error = yield* outcome(Sys.attenuate(tools, { tools: input as never }))
              assert.strictEqual((error as { _tag?: string })._tag, "ArgumentError", `accepted ${String(input)}`)
            }
            const self = yield* Sys.selfCap()
            assertCapabilityError(yield* outcome(Sys.attenuate(self, { tools: { echo: {} } })), "wrong-resource")
          }),
        { grant: ["tools"] }
      )
    )
  )
})

/** A process that reads one tool call through `tools` and sends back what it read (or how it failed). */
const caller = Process.make<{ readonly request: unknown }>("caller", (args) =>
  Effect.gen(function* () {
    const [tools, reply] = yield* Sys.caps()
    const h = yield* Sys.open(tools!)
    const result = yield* Effect.match(Sys.read(h, args.request), {
      onFailure: (e): unknown => ({ failed: String(e) }),
      onSuccess: (ok): unknown => ({ ok })
    })
    yield* Sys.send(reply!, result)
  })
)

/** Waits (yielding) until some approval is pending; returns them. */
const pendingApprovals = (kernel: Kernel.KernelShape) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1000; i++) {
      const pending = yield* kernel.approvals()
      if (pending.length > 0) return pending
      yield* Sys.yield()
    }
    return assert.fail("no approval was requested")
  })

const spawnCaller = (
  grant: Kernel.BootGrant,
  approval: unknown,
  request: unknown = { tool: "write", input: { text: "x" } }
) =>
  Effect.gen(function* () {
    const narrowed = yield* Sys.attenuate(grant.devices.tools!, {
      tools: { echo: {}, write: { approval: approval as never } }
    })
    const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
    return yield* Sys.spawn(caller, { args: { request }, caps: [narrowed, me] })
  })

describe("approvals", () => {
  it.effect("a call that needs approval waits (waiting-approval), runs when approved, and both are events", () =>
    withTools((ran) =>
      runOn(
        (grant, kernel) =>
          Effect.gen(function* () {
            const { pid } = yield* spawnCaller(grant, true)
            const [pending] = yield* pendingApprovals(kernel)
            assert.strictEqual(pending!.id, `${pid}:1`)
            assert.strictEqual(pending!.pid, pid)
            assert.strictEqual(pending!.name, "caller")
            assert.strictEqual(pending!.tool, "write")
            assert.strictEqual(pending!.device, "tools")
            assert.deepStrictEqual(pending!.request, { tool: "write", input: { text: "x" } })
            assert.strictEqual((yield* kernel.ps()).find((p) => p.pid === pid)!.status, "waiting-approval")
            assert.strictEqual(ran.length, 0, "nothing ran before the answer")
            yield* kernel.respond(pending!.id, { approve: true, by: "alice" })
            assert.deepStrictEqual((yield* Sys.recv()).body, { ok: "wrote x" })
            assert.strictEqual(ran.length, 1)
            assert.deepStrictEqual(yield* kernel.approvals(), [])
            const events = (yield* kernel.trace()).filter((e) => e._tag === "Approval")
            assert.deepStrictEqual(
              events.map((e) => e._tag === "Approval" && [e.id, e.decision, e.by]),
              [
                [`${pid}:1`, "requested", undefined],
                [`${pid}:1`, "approved", "alice"]
              ]
            )
            // an id answered is gone
            const again = yield* Effect.flip(kernel.respond(pending!.id, { approve: true, by: "alice" }))
            assert.strictEqual(again.reason, "unknown-approval")
            // a tool of the same cap without approval does not wait
            yield* spawnCaller(grant, true, echo("free"))
            assert.deepStrictEqual((yield* Sys.recv()).body, { ok: "free" })
          }),
        { grant: ["tools"] }
      )
    )
  )

  it.effect("denied: the call reads back a ToolError naming who and why, and the tool never runs", () =>
    withTools((ran) =>
      runOn(
        (grant, kernel) =>
          Effect.gen(function* () {
            yield* spawnCaller(grant, true)
            const [pending] = yield* pendingApprovals(kernel)
            yield* kernel.respond(pending!.id, { approve: false, by: "bob", reason: "not today" })
            const body = (yield* Sys.recv()).body as { ok: Tools.ToolError }
            assert.isTrue(Tools.isToolError(body.ok), JSON.stringify(body))
            assert.strictEqual(body.ok.reason, "denied")
            assert.strictEqual(body.ok.tool, "write")
            assert.include(body.ok.message, "bob")
            assert.include(body.ok.message, "not today")
            assert.deepStrictEqual(body.ok.error, { by: "bob", reason: "not today" })
            assert.strictEqual(ran.length, 0)
            const denied = (yield* kernel.trace()).find((e) => e._tag === "Approval" && e.decision === "denied")
            assert.deepInclude(denied, { by: "bob", reason: "not today" })
          }),
        { grant: ["tools"] }
      )
    )
  )

  it.effect("a timeout denies (by timeout); the shortest timeout of the layers applies", () =>
    withTools((ran) =>
      Effect.gen(function* () {
        const kernel = yield* Kernel.Kernel
        const fiber = yield* Effect.forkChild(
          within(
            TestKernel.runProcess(
              (grant) =>
                Effect.gen(function* () {
                  const outer = yield* Sys.attenuate(grant.devices.tools!, {
                    tools: { write: { approval: { timeout: "1 hour" } } }
                  })
                  const inner = yield* Sys.attenuate(outer, {
                    tools: { write: { approval: { timeout: "5 minutes" } } }
                  })
                  const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
                  yield* Sys.spawn(caller, {
                    args: { request: { tool: "write", input: { text: "t" } } },
                    caps: [inner, me]
                  })
                  return (yield* Sys.recv()).body
                }),
              { grant: ["tools"], stallTimeout: "10 seconds" }
            ),
            "5 seconds"
          )
        )
        // wait for the request, then move time past the shorter timeout only
        for (let i = 0; i < 100 && (yield* kernel.approvals()).length === 0; i++) yield* Effect.yieldNow
        assert.strictEqual((yield* kernel.approvals()).length, 1)
        yield* TestClock.adjust("5 minutes")
        const body = (yield* Fiber.join(fiber)) as { ok: Tools.ToolError }
        assert.strictEqual(body.ok.reason, "denied")
        assert.deepInclude(body.ok.error as object, { by: "timeout" })
        assert.strictEqual(ran.length, 0)
        assert.deepStrictEqual(yield* kernel.approvals(), [])
      })
    )
  )

  it.effect("a caller that ends while it waits leaves no pending approval", () =>
    withTools(() =>
      runOn(
        (grant, kernel) =>
          Effect.gen(function* () {
            const { cap } = yield* spawnCaller(grant, true)
            yield* pendingApprovals(kernel)
            yield* Sys.kill(cap)
            assert.deepStrictEqual(yield* kernel.approvals(), [])
            const late = yield* Effect.flip(kernel.respond("2:1", { approve: true, by: "late" }))
            assert.strictEqual(late.reason, "unknown-approval")
          }),
        { grant: ["tools"] }
      )
    )
  )

  it.effect("without a denied hook, a denied call fails with DeviceError denied", () =>
    Effect.gen(function* () {
      const plain = Device.make({
        name: "plain",
        open: () => Effect.succeed({ read: () => Effect.succeed({ value: "ran" }) })
      })
      const result = yield* runOn(
        (grant, kernel) =>
          Effect.gen(function* () {
            const narrowed = yield* Sys.attenuate(grant.devices.plain!, { tools: { x: { approval: true } } })
            const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
            yield* Sys.spawn(caller, { args: { request: { tool: "x" } }, caps: [narrowed, me] })
            const [pending] = yield* pendingApprovals(kernel)
            yield* kernel.respond(pending!.id, { approve: false, by: "carol" })
            return (yield* Sys.recv()).body as { failed: string }
          }),
        { grant: ["plain"] }
      ).pipe(Effect.provide(TestKernel.layer({ drivers: [plain] })))
      assert.include(result.failed, "denied")
      assert.include(result.failed, "carol")
    })
  )

  it.effect("the answer is journaled with the result: a replay asks nobody and reads the same", () =>
    Effect.gen(function* () {
      const store = Journal.makeMemoryStore()
      const session = (mode: Journal.Mode, answer: boolean) =>
        Effect.gen(function* () {
          const { driver, ran } = makeTools()
          const tools = yield* driver
          const got = yield* runOn(
            (grant, kernel) =>
              Effect.gen(function* () {
                yield* spawnCaller(grant, true)
                if (answer) {
                  const [pending] = yield* pendingApprovals(kernel)
                  yield* kernel.respond(pending!.id, { approve: false, by: "dave", reason: "r" })
                }
                return (yield* Sys.recv()).body
              }),
            { grant: ["tools"] }
          ).pipe(
            Effect.provide(TestKernel.layer({ drivers: [tools], journal: mode })),
            Effect.provide(Layer.succeed(Journal.JournalStoreService)(store))
          )
          return { got, ran: ran.length }
        })
      const recorded = yield* session("record", true)
      const replayed = yield* session("replay", false)
      assert.deepStrictEqual(replayed.got, recorded.got)
      assert.strictEqual((replayed.got as { ok: Tools.ToolError }).ok.reason, "denied")
      assert.strictEqual(replayed.ran, 0)
    })
  )
})
