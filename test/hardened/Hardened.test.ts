/**
 * Hardened mode (`effect-agent-os/hardened`, `ses` lockdown): the realm attacks README's trust model leaves open in an
 * unhardened realm — a getter on `Object.prototype` that runs on another process's fiber, `Object.prototype.then`,
 * a patched array iterator — fail at the attacker, and the kernel works as before. This file runs in its own
 * worker (vitest isolates each file), so the lockdown reaches no other test.
 *
 * Every test asserts the secure outcome: it fails when the attack works.
 */
import "effect-agent-os/hardened"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Schema } from "effect"
import { type Capability, Device, Process, Sys } from "effect-agent-os"
import { isHardened } from "effect-agent-os/hardened"
import * as TestKernel from "effect-agent-os/testing"
import { idle, isAlive, run, runOn, show } from "../security/harness.ts"

/** What defining `key` on `target` gives an image: `true` only if the realm let it. */
const plant = (target: object, key: PropertyKey, descriptor: PropertyDescriptor): boolean => {
  try {
    return Reflect.defineProperty(target, key, { configurable: true, ...descriptor })
  } catch {
    return false
  }
}

describe("hardened realm", () => {
  it("freezes the intrinsics an image would patch", () => {
    assert.isTrue(isHardened())
    for (const target of [
      Object.prototype,
      Array.prototype,
      Function.prototype,
      Promise.prototype,
      Set.prototype,
      Map.prototype,
      Object.getPrototypeOf([][Symbol.iterator]()),
      Object.getPrototypeOf(Object.getPrototypeOf((function* () {})()))
    ]) {
      assert.isTrue(Object.isFrozen(target), show(target))
    }
  })

  it.effect("the kernel runs processes, messages, drivers and typed errors as before", () =>
    runOn(
      (grant) =>
        Effect.gen(function* () {
          class Oops extends Schema.TaggedError<Oops>()("Oops", { why: Schema.String }) {}
          const echo = Process.make("echo", () =>
            Effect.gen(function* () {
              const m = yield* Sys.recv<{ readonly n: number; readonly o: Option.Option<number> }>()
              const [parent] = yield* Sys.caps()
              yield* Sys.send(parent!, { n: m.body.n + 1, o: Option.map(m.body.o, (x) => x * 2) })
            })
          )
          const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          const child = yield* Sys.spawn(echo, { caps: [me] })
          yield* Sys.send(child.cap, { n: 1, o: Option.some(21) })
          const back = (yield* Sys.recv<{ readonly n: number; readonly o: Option.Option<number> }>()).body
          assert.deepStrictEqual(back, { n: 2, o: Option.some(42) })
          assert.strictEqual((yield* Sys.waitpid(child.cap))._tag, "Normal")
          const handle = yield* Sys.open(grant.devices.upper!)
          assert.strictEqual(yield* Sys.read(handle, "abc"), "ABC")
          const failed = yield* Effect.flip(Effect.fail(new Oops({ why: "x" })))
          assert.strictEqual(failed.why, "x")
          const forked = yield* Effect.forkChild(Effect.succeed(3))
          assert.strictEqual(yield* Fiber.join(forked), 3)
        }),
      { grant: ["upper"] }
    ).pipe(
      Effect.provide(
        TestKernel.layer({
          drivers: [
            Device.make({
              name: "upper",
              open: () => Effect.succeed({ read: (s: unknown) => Effect.succeed({ value: String(s).toUpperCase() }) })
            })
          ]
        })
      )
    )
  )
})

describe("the realm attacks an unhardened kernel leaves open", () => {
  const report: { planted: Array<boolean>; stolen: number } = { planted: [], stolen: 0 }

  /** Tries to plant an `Object.prototype.deadline` getter, then to act with any fiber it caught. */
  const thief = Process.make("thief", () =>
    Effect.gen(function* () {
      const root = (yield* Sys.recv()).caps[0]!
      const mine = Fiber.getCurrent()
      const stolen: Array<Fiber.Fiber<unknown, unknown>> = []
      report.planted.push(
        plant(Object.prototype, "deadline", {
          get() {
            const fiber = Fiber.getCurrent()
            if (fiber !== undefined && fiber !== mine && !stolen.includes(fiber)) stolen.push(fiber)
            return undefined
          }
        })
      )
      yield* Sys.send(root, "ready")
      yield* Sys.recv()
      report.stolen = stolen.length
      let kills = 0
      for (const fiber of stolen) {
        const caps = yield* Effect.exit(Effect.provideContext(Sys.caps(), fiber.context))
        if (Exit.isSuccess(caps)) {
          for (const cap of caps.value) {
            if (Exit.isSuccess(yield* Effect.exit(Effect.provideContext(Sys.kill(cap), fiber.context)))) kills++
          }
        }
      }
      yield* Sys.send(root, kills)
    })
  )

  const victim = Process.make("victim", () =>
    Effect.gen(function* () {
      const [, root] = yield* Sys.caps()
      yield* Sys.recv()
      yield* Sys.send(yield* Sys.selfCap(), "note", { corr: 1 })
      yield* Sys.send(root!, "done")
      yield* Effect.never
    })
  )

  it.effect("a getter planted on Object.prototype cannot be planted, so it never runs on another's fiber", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const vault = yield* Sys.spawn(idle)
        const me = yield* Sys.selfCap()
        const v = yield* Sys.spawn(victim, { caps: [vault.cap, yield* Sys.derive(me, ["send"])] })
        const t = yield* Sys.spawn(thief)
        yield* Sys.send(t.cap, null, { caps: [yield* Sys.derive(me, ["send"])] })
        assert.strictEqual((yield* Sys.recv()).body, "ready")
        yield* Sys.send(v.cap, "go")
        assert.strictEqual((yield* Sys.recv()).body, "done")
        yield* Sys.send(t.cap, "go")
        const kills = (yield* Sys.recv()).body
        assert.deepStrictEqual(
          { planted: report.planted, stolen: report.stolen, kills, vaultAlive: yield* isAlive(kernel, vault.pid) },
          { planted: [false], stolen: 0, kills: 0, vaultAlive: true }
        )
      })
    )
  )

  it.effect(
    "setters for a typed pipe's fields cannot be planted, so its decode (Effect's Schema) shows no one the message",
    () =>
      run(() =>
        Effect.gen(function* () {
          const seen: Array<unknown> = []
          const planted = plant(Object.prototype, "secretField", {
            set: (value: unknown) => void seen.push(value)
          })
          const me = yield* Sys.selfCap()
          const pipe = yield* Sys.attenuate(me, { message: Schema.Struct({ secretField: Schema.String }) })
          const { cap } = yield* Sys.spawn(
            Process.make<Capability.CapRef>("talker", (to) => Sys.send(to, { secretField: "pw" })),
            { args: pipe, caps: [pipe] }
          )
          yield* Sys.waitpid(cap)
          const got = (yield* Sys.recv<{ readonly secretField: string }>()).body
          assert.deepStrictEqual({ planted, seen, got: got.secretField }, { planted: false, seen: [], got: "pw" })
        })
      )
  )

  it.effect("accessors for _tag, call and message cannot be planted, so an invalid send stays an ArgumentError", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const cycle: Record<string, unknown> = {}
        cycle.self = cycle
        const planted = ["_tag", "call", "message"].map((key) => plant(Object.prototype, key, { get: () => "forged" }))
        const error = yield* Effect.flip(Sys.send(me, cycle))
        assert.deepStrictEqual(
          { planted, tag: error._tag, call: (error as { readonly call?: unknown }).call },
          { planted: [false, false, false], tag: "ArgumentError", call: "send" }
        )
      })
    )
  )

  it.effect("Object.prototype.then, patched iterators, push, Set.add and Map.get cannot be planted", () =>
    run(() =>
      Effect.gen(function* () {
        const arrayIterator = Object.getPrototypeOf([][Symbol.iterator]()) as object
        // every `yield*` of every Effect.gen passes its value through %GeneratorPrototype%.next
        const generator = Object.getPrototypeOf(Object.getPrototypeOf((function* () {})())) as object
        const planted = [
          plant(generator, "next", { value: () => ({ done: true, value: undefined }), writable: true }),
          plant(Object.prototype, "then", { value: function () {}, writable: true }),
          plant(arrayIterator, "next", { value: () => ({ done: true, value: undefined }), writable: true }),
          plant(Array.prototype, "push", { value: () => 0, writable: true }),
          plant(Set.prototype, "add", { value: () => undefined, writable: true }),
          plant(Map.prototype, "get", { value: () => undefined, writable: true })
        ]
        assert.deepStrictEqual(planted, [false, false, false, false, false, false])
        // and a plain assignment (sloppy code's way) changes nothing either
        try {
          ;(Object.prototype as Record<string, unknown>).then = () => {}
        } catch {
          // strict mode: a TypeError
        }
        assert.isFalse(Object.hasOwn(Object.prototype, "then"))
        const child = yield* Sys.spawn(idle)
        yield* Sys.kill(child.cap)
        assert.strictEqual((yield* Sys.waitpid(child.cap))._tag, "Killed")
      })
    )
  )

  it.effect("an image's own objects stay its own: the override of a frozen prototype's property still works", () =>
    run(() =>
      Effect.gen(function* () {
        const o: Record<string, unknown> = {}
        o.toString = () => "mine"
        const e = new Error("x")
        e.name = "Mine"
        assert.deepStrictEqual([String(o), e.name], ["mine", "Mine"])
      })
    )
  )
})
