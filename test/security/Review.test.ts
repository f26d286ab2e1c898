/**
 * Review of issue 8: further attacks from the public API only.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { assertArgumentError, attempt, isAlive, outcome, rowOf, run, runOn, show } from "./harness.ts"

const small = TestKernel.layer({ limits: { messageBytesMax: 1024 } })

describe("review: message bodies that are not plain objects", () => {
  it.effect("a class instance body: the receiver never sees the sender's later mutation", () =>
    run(() =>
      Effect.gen(function* () {
        class Box {
          value = "before"
        }
        const me = yield* Sys.selfCap()
        const body = new Box()
        const sent = yield* outcome(Sys.send(me, body))
        if (sent !== "succeeded") return assertArgumentError(sent, "send")
        body.value = "after"
        const got = (yield* Sys.recv<Box>()).body
        assert.notStrictEqual(got, body, "the receiver got the sender's very object")
        assert.strictEqual(got.value, "before")
      })
    )
  )

  it.effect("an object with a non-Object prototype carrying a function is refused or copied", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const body = Object.create({ inherited: 1 }) as Record<string, unknown>
        body.fn = () => "a function smuggled in a body"
        const sent = yield* outcome(Sys.send(me, body))
        if (sent !== "succeeded") return assertArgumentError(sent, "send")
        const got = (yield* Sys.recv<Record<string, unknown>>()).body
        assert.notStrictEqual(got, body, "the receiver got the sender's very object")
        assert.notStrictEqual(typeof got.fn, "function", "a function was delivered")
      })
    )
  )

  it.effect("a class instance holding 200 KB is bound by messageBytesMax 1024", () =>
    runOn(() =>
      Effect.gen(function* () {
        class Holder {
          readonly data: string
          constructor(data: string) {
            this.data = data
          }
        }
        const me = yield* Sys.selfCap()
        const sent = yield* outcome(Sys.send(me, { wrapped: new Holder("x".repeat(100_000)) }))
        assertArgumentError(sent, "send")
      })
    ).pipe(Effect.provide(small))
  )

  it.effect("a Uint8Array subclass lying about byteLength is bound by messageBytesMax 1024", () =>
    runOn(() =>
      Effect.gen(function* () {
        class Liar extends Uint8Array {
          override get byteLength() {
            return 0
          }
        }
        const me = yield* Sys.selfCap()
        const sent = yield* outcome(Sys.send(me, { bytes: new Liar(100_000) }))
        assertArgumentError(sent, "send")
      })
    ).pipe(Effect.provide(small))
  )

  it.effect("a Uint8Array subclass whose slice returns itself: the receiver never sees later mutation", () =>
    run(() =>
      Effect.gen(function* () {
        class Same extends Uint8Array {
          override slice() {
            return this as never
          }
        }
        const me = yield* Sys.selfCap()
        const bytes = new Same(4)
        const sent = yield* outcome(Sys.send(me, { bytes }))
        if (sent !== "succeeded") return assertArgumentError(sent, "send")
        bytes[0] = 99
        const got = (yield* Sys.recv<{ readonly bytes: Uint8Array }>()).body
        assert.notStrictEqual(got.bytes, bytes, "the receiver got the sender's very array")
        assert.strictEqual(got.bytes[0], 0)
      })
    )
  )

  it.effect("a Uint8Array subclass whose slice returns a function: no function is delivered", () =>
    run(() =>
      Effect.gen(function* () {
        class Fn extends Uint8Array {
          override slice() {
            return (() => "smuggled") as never
          }
        }
        const me = yield* Sys.selfCap()
        const sent = yield* outcome(Sys.send(me, { bytes: new Fn(4) }))
        if (sent !== "succeeded") return assertArgumentError(sent, "send")
        const got = (yield* Sys.recv<{ readonly bytes: unknown }>()).body
        assert.notStrictEqual(typeof got.bytes, "function", "a function was delivered")
      })
    )
  )

  it.effect("a Proxy of a plain object whose get trap changes is copied once (refused case passes too)", () =>
    run(() =>
      Effect.gen(function* () {
        let reads = 0
        const me = yield* Sys.selfCap()
        const body = new Proxy({ a: 1 }, { get: () => (reads++ === 0 ? "first" : "later") })
        const sent = yield* outcome(Sys.send(me, body))
        if (sent !== "succeeded") return assertArgumentError(sent, "send")
        const got = (yield* Sys.recv<{ readonly a: unknown }>()).body
        assert.strictEqual(got.a, "first")
        assert.notStrictEqual(got, body, "the proxy itself was delivered")
      })
    )
  )

  it.effect("a fake Date / fake Map (Object.create of the prototype) is an ArgumentError, not a defect", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        assertArgumentError(yield* attempt(Sys.send(me, { d: Object.create(Date.prototype) })), "send")
        assertArgumentError(yield* attempt(Sys.send(me, { m: Object.create(Map.prototype) })), "send")
        yield* Sys.send(me, "after")
        assert.strictEqual((yield* Sys.recv()).body, "after")
      })
    )
  )
})

describe("review: lookalike inputs", () => {
  it.effect("a Duration lookalike with throwing getters as send deadline / attenuate expiresIn / sched deadline", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const evil = new Proxy(
          {},
          {
            get: () => {
              throw new Error("boom")
            },
            has: () => {
              throw new Error("boom")
            },
            getPrototypeOf: () => {
              throw new Error("boom")
            }
          }
        )
        assertArgumentError(yield* attempt(Sys.send(me, "x", { deadline: evil as never })), "send")
        assertArgumentError(yield* attempt(Sys.attenuate(me, { expiresIn: evil as never } as never)), "attenuate")
        assertArgumentError(yield* attempt(Sys.sched({ deadline: evil as never })), "sched")
        yield* Sys.send(me, "after")
        assert.strictEqual((yield* Sys.recv()).body, "after")
      })
    )
  )

  it.effect("exit Fault with a 10 MB error string is truncated in the exit reason", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const { cap, pid } = yield* Sys.spawn(
          Process.make("faulty", () => Sys.exit(Process.fault("e".repeat(10_000_000))))
        )
        const reason = (yield* Sys.waitpid(cap)) as { readonly _tag: string; readonly error: string }
        assert.strictEqual(reason._tag, "Fault")
        assert.isBelow(reason.error.length, 100_000)
        void kernel
        void pid
      })
    )
  )

  it.effect("Sys.log with a non-string level and a Symbol message does not fail or break", () =>
    run(() =>
      Effect.gen(function* () {
        const r = yield* attempt(Sys.log({ toString: () => "error" } as never, Symbol("x") as never))
        assert.strictEqual(r, "succeeded", show(r))
      })
    )
  )

  it.effect("an image with a 10 MB name: ps and the trace hold a bounded name", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const image = Process.make("n".repeat(10_000_000), () => Effect.never)
        const spawned = yield* outcome(Sys.spawn(image))
        if (typeof spawned === "object" && spawned !== null && (spawned as { _tag?: string })._tag === "ArgumentError")
          return
        const self = yield* Sys.self()
        const rows = yield* kernel.ps()
        for (const row of rows) {
          if (row.pid !== self) assert.isBelow(row.name.length, 10_000, "ps holds a 10 MB name")
        }
      })
    )
  )

  it.effect("an image whose main getter changes between reads runs the main that was checked", () =>
    run(() =>
      Effect.gen(function* () {
        let reads = 0
        let ran = "none"
        const good = () =>
          Effect.sync(() => {
            ran = "good"
          })
        const image = {
          _tag: "Image" as const,
          name: "shifty",
          get main() {
            return reads++ === 0
              ? good
              : () =>
                  Effect.sync(() => {
                    ran = "bad"
                  })
          }
        }
        const { cap } = yield* Sys.spawn(image as Process.Image)
        yield* Sys.waitpid(cap)
        assert.isAtMost(reads, 1)
        assert.strictEqual(ran, "good")
      })
    )
  )
})

describe("review: a process's Sys after it ends", () => {
  it.live("a fiber forked with forkDetach cannot send after its process exited", () => {
    const leaker = Process.make("leaker", () =>
      Effect.gen(function* () {
        const [target] = yield* Sys.caps()
        yield* Effect.forkDetach(
          Effect.gen(function* () {
            yield* Effect.yieldNow
            yield* Effect.yieldNow
            yield* Effect.sleep("10 millis")
            yield* Sys.send(target!, "from beyond")
          })
        )
      })
    )
    return run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const { cap } = yield* Sys.spawn(leaker, { caps: [yield* Sys.derive(me, ["send"])] })
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
        yield* Effect.sleep("50 millis")
        yield* Sys.send(me, "mine")
        assert.strictEqual((yield* Sys.recv()).body, "mine", "a dead process's fiber got a send out")
      })
    )
  })

  it.effect("kill with a Proxy reason whose traps throw is an ArgumentError; the target lives", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const { cap, pid } = yield* Sys.spawn(Process.make("idle", () => Effect.forever(Sys.recv())))
        const evil = new Proxy(
          {},
          {
            get: () => {
              throw new Error("boom")
            }
          }
        )
        assertArgumentError(yield* attempt(Sys.kill(cap, evil as never)), "kill")
        assert.isTrue(yield* isAlive(kernel, pid))
        void rowOf
      })
    )
  )
})
