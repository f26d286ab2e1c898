/**
 * Issue 8, part 8: ownership. A message body is data the kernel copies at send (the sender keeps no handle on what
 * the receiver reads); a `Sys` acts only for its own process, wherever the object ends up; and a process whose wall
 * time is up can do nothing more, even before its timer fires.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { Capability, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { assertArgumentError, attempt, idle, isAlive, outcome, rowOf, run, runOn, show } from "./harness.ts"

describe("message bodies are data, copied at send", () => {
  it.effect("plain data is delivered equal: objects, arrays, strings, numbers, booleans, null, a CapRef", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const body = {
          text: "hi",
          n: 1.5,
          ok: true,
          none: null,
          list: [1, "two", [3], { four: 4 }],
          nested: { deeper: { deepest: "yes" } }
        }
        yield* Sys.send(me, body)
        assert.deepStrictEqual((yield* Sys.recv()).body, body)
        for (const scalar of ["text", 42, false, null]) {
          yield* Sys.send(me, scalar)
          assert.strictEqual((yield* Sys.recv()).body, scalar)
        }
        yield* Sys.send(me, { ref: me })
        const withRef = yield* Sys.recv<{ readonly ref: unknown }>()
        assert.isTrue(Capability.isCapRef(withRef.body.ref), "a CapRef in a body stays a CapRef")
      })
    )
  )

  it.effect("the receiver never sees the sender's later mutation of a body", () => {
    const received: Array<unknown> = []
    const reader = Process.make("reader", () =>
      Effect.gen(function* () {
        const [back] = yield* Sys.caps()
        const message = yield* Sys.recv()
        received.push(JSON.parse(JSON.stringify(message.body)))
        yield* Sys.send(back!, "read")
      })
    )
    return run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        // to itself: the very object must not come back
        const body = { list: [1, 2], inner: { a: 1 } }
        yield* Sys.send(me, body)
        body.list.push(3)
        body.inner.a = 2
        ;(body as Record<string, unknown>).extra = true
        const mine = yield* Sys.recv()
        assert.notStrictEqual(mine.body, body, "the receiver got the sender's object")
        assert.deepStrictEqual(mine.body, { list: [1, 2], inner: { a: 1 } })
        // to another process, mutated before it runs
        const { cap } = yield* Sys.spawn(reader, { caps: [yield* Sys.derive(me, ["send"])] })
        const other = { list: ["x"], inner: { b: "before" } }
        yield* Sys.send(cap, other)
        other.list.push("y")
        other.inner.b = "after"
        assert.strictEqual((yield* Sys.recv()).body, "read")
        assert.deepStrictEqual(received, [{ list: ["x"], inner: { b: "before" } }])
      })
    )
  })

  it.effect("a function in a body is an ArgumentError of send; nothing is delivered", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        assertArgumentError(yield* outcome(Sys.send(me, () => 1)), "send")
        assertArgumentError(yield* outcome(Sys.send(me, { callback: () => 1 })), "send")
        assertArgumentError(yield* outcome(Sys.send(me, [1, [2, { f: function named() {} }]])), "send")
        yield* Sys.send(me, "after")
        assert.strictEqual((yield* Sys.recv()).body, "after")
      })
    )
  )

  it.effect("mutable containers (Map, Set, typed arrays) and class instances are copied", () =>
    run(() =>
      Effect.gen(function* () {
        class Point {
          readonly x: number
          constructor(x: number) {
            this.x = x
          }
        }
        const me = yield* Sys.selfCap()
        const point = new Point(1)
        const map = new Map([["k", { v: 1 }]])
        const set = new Set([1, 2])
        const bytes = new Uint8Array([1, 2, 3])
        yield* Sys.send(me, { point, map, set, bytes })
        map.get("k")!.v = 99
        map.set("other", { v: 2 })
        set.add(3)
        bytes[0] = 42
        const body = (yield* Sys.recv<{
          point: Point
          map: Map<string, { v: number }>
          set: Set<number>
          bytes: Uint8Array
        }>()).body
        assert.notStrictEqual(body.point, point, "the receiver got the sender's very instance")
        assert.instanceOf(body.point, Point, "the copy keeps its class")
        assert.strictEqual(body.point.x, 1)
        assert.deepStrictEqual(Array.from(body.map.entries()), [["k", { v: 1 }]])
        assert.deepStrictEqual(Array.from(body.set), [1, 2])
        assert.deepStrictEqual(Array.from(body.bytes), [1, 2, 3])
      })
    )
  )

  it.effect("a cycle in a body is an ArgumentError of send", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const loop: Record<string, unknown> = { name: "loop" }
        loop.self = loop
        assertArgumentError(yield* outcome(Sys.send(me, loop)), "send")
        const list: Array<unknown> = [1]
        list.push({ back: list })
        assertArgumentError(yield* outcome(Sys.send(me, list)), "send")
        // shared (not cyclic) structure is fine
        const shared = { v: 1 }
        yield* Sys.send(me, { a: shared, b: shared })
        assert.deepStrictEqual((yield* Sys.recv()).body, { a: { v: 1 }, b: { v: 1 } })
      })
    )
  )
})

describe("a Sys acts only for its own process", () => {
  it.effect("A's Sys leaked to B: send, kill and charge through it take no effect", () => {
    const leak: { sys?: Sys.SysShape; caps?: ReadonlyArray<Capability.CapRef> } = {}
    const outcomes: Record<string, unknown> = {}
    const a = Process.make("a", () =>
      Effect.gen(function* () {
        leak.sys = yield* Sys.Sys
        leak.caps = yield* Sys.caps()
        yield* Sys.send(leak.caps[0]!, "a ready")
        yield* Effect.never
      })
    )
    const b = Process.make("b", () =>
      Effect.gen(function* () {
        const [back] = yield* Sys.caps()
        const sys = leak.sys!
        const [aToRoot, aKillsT] = leak.caps!
        outcomes.send = yield* attempt(sys.send(aToRoot!, "forged"))
        outcomes.kill = yield* attempt(sys.kill(aKillsT!))
        outcomes.charge = yield* attempt(sys.charge({ tokens: 50 }))
        outcomes.spawnCaps = yield* attempt(sys.caps())
        yield* Sys.send(back!, "b done")
      })
    )
    return run((_, kernel) =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const t = yield* Sys.spawn(idle)
        const killT = yield* Sys.derive(t.cap, ["kill"])
        const aSpawned = yield* Sys.spawn(a, { caps: [yield* Sys.derive(me, ["send"]), killT] })
        assert.strictEqual((yield* Sys.recv()).body, "a ready")
        const bSpawned = yield* Sys.spawn(b, { caps: [yield* Sys.derive(me, ["send"])] })
        yield* Sys.monitor(bSpawned.cap)
        // everything that reaches the root until B is done (or gone)
        const bodies: Array<unknown> = []
        for (;;) {
          const message = yield* Sys.recv()
          bodies.push(message.body)
          if (message.body === "b done") break
          if (Process.isKernelMessage(message) && message.body._tag === "Down") break
        }
        assert.notInclude(bodies, "forged", "a message went out as A")
        assert.isTrue(yield* isAlive(kernel, t.pid), "T was killed through A's Sys")
        assert.strictEqual((yield* rowOf(kernel, aSpawned.pid))!.budget.used.tokens, 0, "A was charged")
        assert.strictEqual((yield* Sys.budget()).used.tokens, 0, "the root was charged")
        for (const [call, result] of Object.entries(outcomes)) {
          assert.notStrictEqual(result, "succeeded", `${call} through A's Sys succeeded in B: ${show(outcomes)}`)
        }
      })
    )
  })

  it.effect("baseline: a process's own Sys, also from its forked fibers, acts for it", () =>
    run(() =>
      Effect.gen(function* () {
        const sys = yield* Sys.Sys
        const me = yield* Sys.selfCap()
        yield* Effect.forkChild(sys.send(me, "from a fiber")).pipe(Effect.flatMap(Fiber.join))
        assert.strictEqual((yield* Sys.recv()).body, "from a fiber")
        yield* sys.charge({ tokens: 3 })
        assert.strictEqual((yield* Sys.budget()).used.tokens, 3)
      })
    )
  )
})

describe("a process whose wall time is up can do nothing more", () => {
  it.live("a send after a 200 ms busy loop under wall 50 ms is not delivered; the process ends Quota wall", () =>
    runOn(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const busy = Process.make("busy", () =>
          Effect.gen(function* () {
            const [back] = yield* Sys.caps()
            // a synchronous loop: no timer can fire while it runs
            const start = Date.now()
            while (Date.now() - start < 200) {
              // spin
            }
            yield* Sys.send(back!, "too late")
          })
        )
        const { cap } = yield* Sys.spawn(busy, { caps: [yield* Sys.derive(me, ["send"])], quota: { wall: 50 } })
        const reason = yield* Sys.waitpid(cap)
        assert.deepStrictEqual(reason, Process.quota("wall"), `ended ${show(reason)}`)
        yield* Sys.send(me, "probe")
        assert.strictEqual((yield* Sys.recv()).body, "probe", "the late send was delivered")
      })
    ).pipe(Effect.provide(TestKernel.layer()))
  )

  it.live("baseline: within its wall time a process's sends are delivered", () =>
    runOn(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const quick = Process.make("quick", () =>
          Effect.gen(function* () {
            const [back] = yield* Sys.caps()
            yield* Sys.send(back!, "in time")
          })
        )
        const { cap } = yield* Sys.spawn(quick, { caps: [yield* Sys.derive(me, ["send"])], quota: { wall: 5000 } })
        assert.strictEqual((yield* Sys.recv()).body, "in time")
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
      })
    ).pipe(Effect.provide(TestKernel.layer()))
  )
})
