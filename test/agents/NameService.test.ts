import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type Capability, type Kernel, NameService, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

const run = <A, E>(body: (grant: Kernel.BootGrant) => Effect.Effect<A, E, Sys.Sys>) =>
  TestKernel.runProcess(body).pipe(Effect.provide(TestKernel.layer()))

/** Replies to every message with its body, on the cap it carries. */
const echo = Process.make("echo", () =>
  Effect.forever(
    Effect.gen(function* () {
      const m = yield* Sys.recv()
      if (m.caps[0] !== undefined) yield* Sys.send(m.caps[0], m.body)
    })
  )
)

/** Sends `body` to the name service with `caps` and a reply cap to the caller last, and returns the reply. */
const call = (service: Capability.CapRef, body: unknown, caps: ReadonlyArray<Capability.CapRef> = []) =>
  Effect.gen(function* () {
    const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
    yield* Sys.send(service, body, { caps: [...caps, replyTo] })
    return yield* Sys.recv<NameService.Reply>()
  })

const setup = Effect.gen(function* () {
  const service = (yield* Sys.spawn(NameService.make())).cap
  const owner = (yield* Sys.spawn(echo)).cap
  return { service, owner }
})

const isCapError = (effect: Effect.Effect<unknown, unknown, Sys.Sys>, reason: Capability.CapabilityFailure) =>
  Effect.flip(effect).pipe(Effect.map((e) => assert.deepInclude(e as object, { _tag: "CapabilityError", reason })))

describe("NameService", () => {
  it.effect("register, then lookup gives a send-only cap: it sends, but cannot kill or monitor", () =>
    run(() =>
      Effect.gen(function* () {
        const { owner, service } = yield* setup
        const registered = yield* call(service, { _tag: "Register", name: "echo" }, [
          yield* Sys.derive(owner, ["send", "monitor", "kill"])
        ])
        assert.deepStrictEqual(registered.body, { _tag: "Registered", name: "echo" })
        const found = yield* call(service, { _tag: "Lookup", name: "echo" })
        assert.deepStrictEqual(found.body, { _tag: "Found", name: "echo" })
        assert.strictEqual(found.caps.length, 1)
        const cap = found.caps[0]!
        yield* isCapError(Sys.kill(cap), "missing-right")
        yield* isCapError(Sys.monitor(cap), "missing-right")
        const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
        yield* Sys.send(cap, "ping", { caps: [replyTo] })
        assert.strictEqual((yield* Sys.recv()).body, "ping")
        const missing = yield* call(service, { _tag: "Lookup", name: "nobody" })
        assert.deepStrictEqual(missing.body, { _tag: "NotFound", name: "nobody" })
        assert.deepStrictEqual(missing.caps, [])
      })
    )
  )

  it.effect("a cap without monitor is refused and not registered", () =>
    run(() =>
      Effect.gen(function* () {
        const { owner, service } = yield* setup
        const refused = yield* call(service, { _tag: "Register", name: "echo" }, [yield* Sys.derive(owner, ["send"])])
        assert.deepStrictEqual(refused.body, {
          _tag: "Refused",
          name: "echo",
          reason: "the registered cap must carry send and monitor"
        })
        assert.strictEqual((yield* call(service, { _tag: "Lookup", name: "echo" })).body._tag, "NotFound")
      })
    )
  )

  it.effect("the entry drops when the registered process dies, and the handed-out caps die with it", () =>
    run(() =>
      Effect.gen(function* () {
        const { owner, service } = yield* setup
        yield* call(service, { _tag: "Register", name: "echo" }, [yield* Sys.derive(owner, ["send", "monitor"])])
        const found = (yield* call(service, { _tag: "Lookup", name: "echo" })).caps[0]!
        yield* Sys.kill(owner)
        // without any request, the service's watcher drops the entry and revokes its cap, and so the copies
        for (let i = 0; i < 10; i++) yield* Sys.yield()
        yield* isCapError(Sys.send(found, "anyone?"), "revoked")
        assert.deepStrictEqual((yield* call(service, { _tag: "Lookup", name: "echo" })).body, {
          _tag: "NotFound",
          name: "echo"
        })
        // the name is free again
        const again = (yield* Sys.spawn(echo)).cap
        const registered = yield* call(service, { _tag: "Register", name: "echo" }, [again])
        assert.strictEqual(registered.body._tag, "Registered")
      })
    )
  )

  it.effect("a lookup sent right after the registered process died finds nothing", () =>
    run(() =>
      Effect.gen(function* () {
        const { owner, service } = yield* setup
        yield* call(service, { _tag: "Register", name: "echo" }, [yield* Sys.derive(owner, ["send", "monitor"])])
        yield* Sys.kill(owner)
        assert.strictEqual((yield* call(service, { _tag: "Lookup", name: "echo" })).body._tag, "NotFound")
      })
    )
  )

  it.effect("a taken name is refused; only the registrant may unregister", () =>
    run(() =>
      Effect.gen(function* () {
        const { owner, service } = yield* setup
        yield* call(service, { _tag: "Register", name: "echo" }, [yield* Sys.derive(owner, ["send", "monitor"])])
        const taken = yield* call(service, { _tag: "Register", name: "echo" }, [
          yield* Sys.derive(owner, ["send", "monitor"])
        ])
        assert.deepStrictEqual(taken.body, { _tag: "Refused", name: "echo", reason: "name taken" })
        // another process asks to unregister: refused, the answer comes to us
        const intruder = Process.make("intruder", () =>
          Effect.gen(function* () {
            const [to, replyTo] = yield* Sys.caps()
            yield* Sys.send(to!, { _tag: "Unregister", name: "echo" }, { caps: [replyTo!] })
          })
        )
        yield* Sys.spawn(intruder, {
          caps: [yield* Sys.derive(service, ["send"]), yield* Sys.derive(yield* Sys.selfCap(), ["send"])]
        })
        assert.deepStrictEqual((yield* Sys.recv()).body, {
          _tag: "Refused",
          name: "echo",
          reason: "not the registrant"
        })
        assert.strictEqual((yield* call(service, { _tag: "Lookup", name: "echo" })).body._tag, "Found")
        assert.deepStrictEqual((yield* call(service, { _tag: "Unregister", name: "echo" })).body, {
          _tag: "Unregistered",
          name: "echo"
        })
        assert.strictEqual((yield* call(service, { _tag: "Lookup", name: "echo" })).body._tag, "NotFound")
      })
    )
  )

  it.effect("bad messages are ignored and never crash it", () =>
    run(() =>
      Effect.gen(function* () {
        const { owner, service } = yield* setup
        const bad: ReadonlyArray<unknown> = [
          "register me",
          null,
          42,
          { _tag: "Register" },
          { _tag: "Lookup", name: 7 },
          { _tag: "Delete", name: "echo" },
          { _tag: "Down", pid: 2, reason: { _tag: "Normal" } },
          { _tag: "Term", from: 1 }
        ]
        for (const body of bad) {
          yield* Sys.send(service, body, { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
        }
        yield* Sys.send(service, { _tag: "Register", name: "echo" })
        const registered = yield* call(service, { _tag: "Register", name: "echo" }, [
          yield* Sys.derive(owner, ["send", "monitor"])
        ])
        assert.deepStrictEqual(registered.body, { _tag: "Registered", name: "echo" }, "no reply to a bad message came")
        assert.strictEqual((yield* call(service, { _tag: "Lookup", name: "echo" })).body._tag, "Found")
      })
    )
  )

  it.effect("Term ends it Normal", () =>
    run(() =>
      Effect.gen(function* () {
        const { service } = yield* setup
        yield* Sys.term(service)
        assert.deepStrictEqual(yield* Sys.waitpid(service), Process.normal)
      })
    )
  )
})
