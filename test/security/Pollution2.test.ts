/**
 * More attacks on the body copy at `Sys.send` and on the kernel under a polluted realm (a second pass after
 * `Pollution.test.ts`): proxies as bodies, species constructors, patched accessors of built-in prototypes, shared
 * prototypes, huge sparse arrays, quota getters on `Object.prototype`, and image code that runs inside another
 * process's fiber (a polluted getter the other process's syscall reaches).
 *
 * Every test asserts the secure outcome: it fails when the attack works.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { Device, Process, Sys } from "effect-agent-os"
import type { Capability } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { assertArgumentError, attempt, idle, isAlive, outcome, pollute, run, runOn, show, tagOf } from "./harness.ts"

type CapRef = Capability.CapRef

const small = TestKernel.layer({ limits: { messageBytesMax: 1000 } })

/** Sends `body` to self and receives it back (the copy). */
const roundTrip = <A>(body: A, options?: Sys.SendOptions) =>
  Effect.gen(function* () {
    const me = yield* Sys.selfCap()
    yield* Sys.send(me, body, options)
    return (yield* Sys.recv<A>()).body
  })

const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object
const SECRET_BYTES = [0x70, 0x77, 0x2d, 0x37, 0x66, 0x33, 0x61, 0x39]
const holdsSecretBytes = (v: unknown): boolean => {
  try {
    const bytes =
      v instanceof ArrayBuffer ? new Uint8Array(v) : ArrayBuffer.isView(v) ? new Uint8Array(v.buffer) : undefined
    if (bytes === undefined || bytes.length < SECRET_BYTES.length) return false
    return SECRET_BYTES.every((b, i) => bytes[i] === b)
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------------------------------------------------

describe("running inside another process's fiber", () => {
  // The thief's stolen fibers and its restore, at module level: the thief's image and the test share them.
  const stolen: Array<Fiber.Fiber<unknown, unknown>> = []
  let restoreThief: (() => void) | undefined

  /** Defines an `Object.prototype.deadline` getter: every `Sys.send(to, body, { … })` without a deadline reaches it. */
  const thief = Process.make("thief", () =>
    Effect.gen(function* () {
      const root = (yield* Sys.recv()).caps[0]!
      const mine = Fiber.getCurrent()
      restoreThief = pollute(Object.prototype, "deadline", {
        get() {
          const fiber = Fiber.getCurrent()
          if (fiber !== undefined && fiber !== mine && !stolen.includes(fiber)) stolen.push(fiber)
          return undefined
        },
        set() {}
      })
      yield* Sys.send(root, "ready")
      yield* Sys.recv() // the victim has made its syscall
      restoreThief()
      // act as the victim: its context holds its Sys and its process token
      const got: Array<CapRef> = []
      const kills: Array<unknown> = []
      for (const fiber of stolen) {
        const caps = yield* Effect.exit(Effect.provideContext(Sys.caps(), fiber.context))
        if (Exit.isSuccess(caps)) {
          for (const cap of caps.value) {
            got.push(cap)
            kills.push(yield* outcome(Effect.provideContext(Sys.kill(cap), fiber.context)))
          }
        }
      }
      yield* Sys.send(root, { stolenFibers: stolen.length, caps: got.length, kills: kills.map(show) })
    })
  )

  const victim = Process.make("victim", () =>
    Effect.gen(function* () {
      const [, root] = yield* Sys.caps()
      yield* Sys.recv()
      // an ordinary send with options: `options.deadline` is read, and reaches Object.prototype
      yield* Sys.send(yield* Sys.selfCap(), "note", { corr: 1 })
      yield* Sys.send(root!, "done")
      yield* Effect.never
    })
  )

  // open realm only: a getter image code put on Object.prototype runs on whichever fiber reads the property it
  // shadows, another process's included, and can take that fiber's context with it; hardened mode (ses lockdown)
  // closes it, and test/hardened/Hardened.test.ts runs this attack there
  it.effect.skip("a getter on Object.prototype, reached by another's syscall, cannot act as that process", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        stolen.length = 0
        try {
          const vault = yield* Sys.spawn(idle)
          const me = yield* Sys.selfCap()
          const v = yield* Sys.spawn(victim, { caps: [vault.cap, yield* Sys.derive(me, ["send"])] })
          const t = yield* Sys.spawn(thief)
          yield* Sys.send(t.cap, null, { caps: [yield* Sys.derive(me, ["send"])] })
          assert.strictEqual((yield* Sys.recv()).body, "ready")
          yield* Sys.send(v.cap, "go")
          assert.strictEqual((yield* Sys.recv()).body, "done")
          yield* Sys.send(t.cap, "go")
          const report = (yield* Sys.recv()).body as { stolenFibers: number; caps: number; kills: Array<string> }
          assert.deepStrictEqual(
            { caps: report.caps, kills: report.kills, vaultAlive: yield* isAlive(kernel, vault.pid) },
            { caps: 0, kills: [], vaultAlive: true },
            `the thief captured ${report.stolenFibers} fibers of other processes and used their caps`
          )
        } finally {
          restoreThief?.()
        }
      })
    )
  )
})

// ---------------------------------------------------------------------------------------------------------------------

describe("species constructors on typed arrays and buffers", () => {
  /** A constructor whose `new` answers `keep` (an object returned from a constructor replaces `this`). */
  const speciesOf = (keep: object) => {
    const Species = function () {
      return keep
    }
    return { [Symbol.species]: Species }
  }

  it.effect("a Uint8Array's own constructor[Symbol.species] does not make the receiver get the sender's object", () =>
    run(() =>
      Effect.gen(function* () {
        const keep = new Uint8Array(8)
        const body = new Uint8Array(8).fill(1)
        Object.defineProperty(body, "constructor", { value: speciesOf(keep) })
        const result = yield* attempt(roundTrip(body))
        if (tagOf(result) === "ArgumentError") return
        const me = yield* Sys.selfCap()
        yield* Sys.send(me, body)
        const got = (yield* Sys.recv<Uint8Array>()).body
        keep[0] = 99 // the sender's later mutation
        assert.notStrictEqual(got, keep, "the receiver got the sender's very typed array")
        assert.strictEqual(got[0], 1, "the receiver observed the sender's later mutation")
      })
    )
  )

  it.effect("an ArrayBuffer's own constructor[Symbol.species] does not make the receiver get the sender's object", () =>
    run(() =>
      Effect.gen(function* () {
        const keep = new ArrayBuffer(8)
        const body = new Uint8Array(8).fill(1).buffer
        Object.defineProperty(body, "constructor", { value: speciesOf(keep) })
        const me = yield* Sys.selfCap()
        const sent = yield* outcome(Sys.send(me, body))
        if (tagOf(sent) === "ArgumentError") return
        const got = (yield* Sys.recv<ArrayBuffer>()).body
        new Uint8Array(keep)[0] = 99
        assert.notStrictEqual(got, keep, "the receiver got the sender's very ArrayBuffer")
        assert.strictEqual(new Uint8Array(got)[0], 1, "the receiver observed the sender's later mutation")
      })
    )
  )

  it.effect("a species result with an own byteLength of 0 does not pass messageBytesMax (typed array)", () =>
    runOn(() =>
      Effect.gen(function* () {
        const keep = new Uint8Array(100_000)
        Object.defineProperty(keep, "byteLength", { value: 0 })
        const body = new Uint8Array(100_000)
        Object.defineProperty(body, "constructor", { value: speciesOf(keep) })
        const me = yield* Sys.selfCap()
        assertArgumentError(yield* outcome(Sys.send(me, body)), "send")
      })
    ).pipe(Effect.provide(small))
  )

  it.effect("a species result with an own byteLength of 0 does not pass messageBytesMax (ArrayBuffer)", () =>
    runOn(() =>
      Effect.gen(function* () {
        const keep = new ArrayBuffer(100_000)
        Object.defineProperty(keep, "byteLength", { value: 0 })
        const body = new ArrayBuffer(100_000)
        Object.defineProperty(body, "constructor", { value: speciesOf(keep) })
        const me = yield* Sys.selfCap()
        assertArgumentError(yield* outcome(Sys.send(me, body)), "send")
      })
    ).pipe(Effect.provide(small))
  )
})

// ---------------------------------------------------------------------------------------------------------------------

describe("patched accessors of built-in prototypes", () => {
  const sender = Process.make("sender", (kind: "view" | "buffer") =>
    Effect.gen(function* () {
      const [to] = yield* Sys.caps()
      const view = new Uint8Array(SECRET_BYTES)
      yield* Sys.send(to!, kind === "view" ? view : view.buffer)
    })
  )
  const receiver = Process.make("receiver", () => Effect.asVoid(Sys.recv()))

  for (const [kind, target] of [
    ["view", typedArrayPrototype],
    ["buffer", ArrayBuffer.prototype]
  ] as const) {
    it.effect(`a patched byteLength getter (${kind}) never sees another process's body`, () =>
      run(() =>
        Effect.gen(function* () {
          const seen: Array<unknown> = []
          const original = Reflect.getOwnPropertyDescriptor(target, "byteLength")!.get!
          const restore = pollute(target, "byteLength", {
            get(this: unknown) {
              seen[seen.length] = this
              return Reflect.apply(original, this, [])
            }
          })
          try {
            const r = yield* Sys.spawn(receiver)
            const s = yield* Sys.spawn(sender, { args: kind, caps: [yield* Sys.derive(r.cap, ["send"])] })
            yield* Sys.waitpid(s.cap)
            yield* Sys.waitpid(r.cap)
          } finally {
            restore()
          }
          assert.isFalse(
            seen.some(holdsSecretBytes),
            `a byteLength getter on ${kind === "view" ? "%TypedArray%" : "ArrayBuffer"}.prototype saw the secret`
          )
        })
      )
    )
  }
})

// ---------------------------------------------------------------------------------------------------------------------

describe("shared prototypes", () => {
  const proxyReads = { count: 0 }
  const dataProtoSender = Process.make("data-proto", () =>
    Effect.gen(function* () {
      const [to] = yield* Sys.caps()
      const proto: { secret: string } = { secret: "v1" }
      yield* Sys.send(to!, Object.create(proto))
      proto.secret = "v2" // after the send
    })
  )
  const proxyProtoSender = Process.make("proxy-proto", () =>
    Effect.gen(function* () {
      const [to] = yield* Sys.caps()
      const proto = new Proxy(
        {},
        {
          get(target, key, receiver) {
            proxyReads.count++
            return Reflect.get(target, key, receiver)
          }
        }
      )
      // refused (an ArgumentError) is a secure outcome too: then the receiver is told so
      const sent = yield* Effect.exit(Sys.send(to!, Object.create(proto)))
      if (sent._tag === "Failure") yield* Sys.send(to!, { refused: true })
    })
  )

  // by design (README, "Trust model"): a copied instance keeps its prototype, its type, shared as code; a prototype
  // that holds data the sender changes later is seen changed by the receiver, in a hardened realm too
  it.effect.skip("a body over a data prototype: the receiver never observes the sender's later mutation", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const s = yield* Sys.spawn(dataProtoSender, { caps: [yield* Sys.derive(me, ["send"])] })
        yield* Sys.waitpid(s.cap)
        const got = (yield* Sys.recv<{ secret: string }>()).body
        assert.notStrictEqual(got.secret, "v2", "the copy's prototype is the sender's live object")
      })
    )
  )

  it.effect("a body over a Proxy prototype: the receiver's reads never run the sender's trap", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const s = yield* Sys.spawn(proxyProtoSender, { caps: [yield* Sys.derive(me, ["send"])] })
        yield* Sys.waitpid(s.cap)
        const got = (yield* Sys.recv<Record<string, unknown>>()).body
        if (Object.hasOwn(got, "refused")) return
        const before = proxyReads.count
        void got.anything
        void got.whatever
        assert.strictEqual(proxyReads.count, before, "the receiver's reads ran the sender's proxy trap")
      })
    )
  )
})

// ---------------------------------------------------------------------------------------------------------------------

describe("proxies as bodies", () => {
  it.effect("a getPrototypeOf trap answering Map.prototype for a plain object is an ArgumentError", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const body = new Proxy({ a: 1 }, { getPrototypeOf: () => Map.prototype })
        assertArgumentError(yield* outcome(Sys.send(me, body)), "send")
      })
    )
  )

  it.effect("a getPrototypeOf trap answering Date/Uint8Array/ArrayBuffer prototypes is an ArgumentError", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        for (const proto of [Date.prototype, Uint8Array.prototype, ArrayBuffer.prototype, Set.prototype]) {
          const body = new Proxy({ a: 1 }, { getPrototypeOf: () => proto })
          assertArgumentError(yield* outcome(Sys.send(me, body)), "send")
        }
      })
    )
  )

  it.effect("lying ownKeys / getOwnPropertyDescriptor traps: the receiver gets a plain copy, not the proxy", () =>
    run(() =>
      Effect.gen(function* () {
        let calls = 0
        const target: Record<string, unknown> = { a: 1, b: 2 }
        const body = new Proxy(target, {
          ownKeys: () => (calls++ % 2 === 0 ? ["a", "b"] : ["zzz"]),
          getOwnPropertyDescriptor: (t, k) =>
            calls % 3 === 0 ? undefined : { value: Reflect.get(t, k), enumerable: true, configurable: true },
          get: (t, k) => {
            calls++
            return Reflect.get(t, k)
          }
        })
        const result = yield* attempt(roundTrip(body))
        if (tagOf(result) === "ArgumentError") return
        const me = yield* Sys.selfCap()
        yield* Sys.send(me, body)
        const got = (yield* Sys.recv<Record<string, unknown>>()).body
        const before = calls
        target.a = 99
        void got.a
        void Object.keys(got)
        assert.strictEqual(calls, before, "the receiver's reads reached the sender's proxy")
        assert.notStrictEqual(got.a, 99)
        assert.strictEqual(Object.getPrototypeOf(got), Object.prototype)
      })
    )
  )

  it.effect("an instance whose prototype chain is a Proxy answering forever is copied or refused, bounded", () =>
    run(() =>
      Effect.gen(function* () {
        let steps = 0
        const endless: object = new Proxy(
          {},
          {
            getPrototypeOf: () => {
              steps++
              return endless
            }
          }
        )
        const body = Object.create(endless) as object
        const me = yield* Sys.selfCap()
        yield* outcome(Sys.send(me, body))
        assert.isBelow(steps, 1000, "the kernel walked an endless prototype chain")
      })
    )
  )

  it.effect("a proxy array of length 1e9: the kernel reads no more elements than messageBytesMax allows", () =>
    runOn(() =>
      Effect.gen(function* () {
        let reads = 0
        const body = new Proxy([] as Array<unknown>, {
          get(target, key) {
            if (key === "length") return 1e9
            if (typeof key === "string" && /^\d+$/.test(key)) {
              reads++
              // stops the test from allocating a billion elements (a plain sparse array would)
              if (reads >= 200_000) throw new Error("still reading")
              return undefined
            }
            return Reflect.get(target, key)
          }
        })
        const me = yield* Sys.selfCap()
        assertArgumentError(yield* outcome(Sys.send(me, body)), "send")
        // messageBytesMax is 1000 bytes, eight for each element: the copy should stop after ~125 of them
        assert.isAtMost(reads, 1000, `the kernel read ${reads} elements of a body it must refuse`)
      })
    ).pipe(Effect.provide(small))
  )
})

// ---------------------------------------------------------------------------------------------------------------------

describe("messageBytesMax counts what is copied", () => {
  class Box {
    readonly n: number
    constructor(n: number) {
      this.n = n
    }
  }

  it.effect("symbol keys, non-enumerable props, Map keys, Set items, nested depth, Error stacks", () =>
    runOn(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const big = "x".repeat(2000)
        const symbols = new Box(1)
        for (let i = 0; i < 500; i++) Object.defineProperty(symbols, Symbol(String(i)), { value: i, enumerable: true })
        const hidden = new Box(1)
        Object.defineProperty(hidden, "h", { value: big, enumerable: false })
        const error = new Error("small")
        error.stack = big
        let deep: unknown = 0
        for (let i = 0; i < 100_000; i++) deep = [deep]
        const bodies: ReadonlyArray<readonly [string, unknown]> = [
          ["symbol keys on an instance", symbols],
          ["a non-enumerable prop on an instance", hidden],
          ["a Map key", new Map([[big, 1]])],
          ["a Set item", new Set([big])],
          ["an Error's stack", error],
          ["nesting 100000 deep", deep],
          ["a Date with a big own prop?", { d: new Date(0), big }],
          ["many small keys", Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i]))]
        ]
        for (const [name, body] of bodies) {
          const result = yield* attempt(Sys.send(me, body))
          assert.strictEqual(tagOf(result), "ArgumentError", `${name}: ${show(result)}`)
        }
      })
    ).pipe(Effect.provide(small))
  )

  it.effect(
    "a non-enumerable big prop on a plain object is not delivered (nothing uncounted reaches the receiver)",
    () =>
      runOn(() =>
        Effect.gen(function* () {
          const body = {}
          Object.defineProperty(body, "h", { value: "x".repeat(2000), enumerable: false })
          const result = yield* attempt(roundTrip(body))
          if (tagOf(result) === "ArgumentError") return
          const got = yield* roundTrip(body)
          assert.isFalse(Object.hasOwn(got, "h"))
        })
      ).pipe(Effect.provide(small))
  )
})

// ---------------------------------------------------------------------------------------------------------------------

describe("hostile bodies", () => {
  class Holder {
    readonly f: unknown
    constructor(f: unknown) {
      this.f = f
    }
  }

  it.effect("class instances holding functions (string or symbol key) are refused", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        assertArgumentError(yield* outcome(Sys.send(me, new Holder(() => 1))), "send")
        const hidden = new Holder(1)
        Object.defineProperty(hidden, Symbol("s"), { value: () => 1, enumerable: false })
        assertArgumentError(yield* outcome(Sys.send(me, hidden)), "send")
        const getter = new Holder(1)
        Object.defineProperty(getter, "g", { get: () => () => 1 })
        assertArgumentError(yield* outcome(Sys.send(me, getter)), "send")
        assertArgumentError(yield* outcome(Sys.send(me, { nested: [new Map([[1, new Holder(Symbol())]])] })), "send")
      })
    )
  )

  it.effect("a getter mutating the body during the copy: the copy is one consistent snapshot", () =>
    run(() =>
      Effect.gen(function* () {
        const list = [1, 2]
        const body = {
          list,
          get later() {
            list.push(3)
            ;(body as Record<string, unknown>).extra = "added"
            return 1
          }
        }
        const got = yield* roundTrip(body)
        assert.deepStrictEqual(got.list, [1, 2])
        assert.isFalse(Object.hasOwn(got, "extra"))
        list.push(4)
        assert.deepStrictEqual(got.list, [1, 2])
      })
    )
  )

  it.effect("a getter that makes a cycle during the copy: refused or a tree", () =>
    run(() =>
      Effect.gen(function* () {
        const inner: Record<string, unknown> = {}
        const body = {
          get a() {
            inner.back = body
            return inner
          }
        }
        const result = yield* attempt(roundTrip(body))
        if (tagOf(result) === "ArgumentError") return
        assert.strictEqual(result, "succeeded")
      })
    )
  )

  it.effect("array and typed-array subclasses, fake typed arrays, bodies that throw are ArgumentErrors", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        class List extends Array<number> {}
        class Bytes extends Uint8Array {}
        const fakeView = Object.create(Uint8Array.prototype) as object
        const throwing = new Proxy(
          {},
          {
            ownKeys: () => {
              throw new Error("boom")
            }
          }
        )
        const swapped = new Uint8Array(4)
        Object.setPrototypeOf(swapped, Float64Array.prototype)
        for (const body of [
          List.from([1]),
          new Bytes(2),
          fakeView,
          throwing,
          [throwing],
          new DataView(new ArrayBuffer(2))
        ]) {
          assertArgumentError(yield* outcome(Sys.send(me, body)), "send")
        }
        // a typed array whose prototype was swapped for another typed array's: refused or copied as what it is
        const result = yield* attempt(roundTrip(swapped))
        assert.include(["succeeded", "ArgumentError"], tagOf(result) ?? result)
      })
    )
  )

  it.effect("Symbol.toStringTag spoofing does not change how a body is copied", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const body = { [Symbol.toStringTag]: "Map", a: 1 }
        const got = yield* roundTrip(body)
        assert.strictEqual(got.a, 1)
        assert.notInstanceOf(got, Map)
        const fake = new Holder(1)
        Object.defineProperty(fake, Symbol.toStringTag, { value: "CapRef" })
        const copy = yield* roundTrip(fake)
        assert.notStrictEqual(copy, fake)
        // a Promise dressed as an Object is still refused
        const p = Promise.resolve(1)
        Object.defineProperty(p, Symbol.toStringTag, { value: "Object" })
        assertArgumentError(yield* outcome(Sys.send(me, { p })), "send")
      })
    )
  )

  it.effect("a forged CapRef (a plain object shaped like one, over CapRef's prototype) grants nothing", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const target = yield* Sys.spawn(idle)
        const forged = Object.create(Object.getPrototypeOf(target.cap)) as CapRef
        Object.defineProperty(forged, "id", { value: (target.cap as unknown as { id: number }).id })
        const got = yield* roundTrip(forged)
        assert.notStrictEqual(got, target.cap)
        yield* Sys.send(yield* Sys.selfCap(), null, { caps: [] })
        yield* Sys.recv()
        const result = yield* attempt(Sys.kill(got))
        assert.strictEqual(tagOf(result), "CapabilityError", show(result))
        assert.isTrue(yield* isAlive(kernel, target.pid))
      })
    )
  )
})

// ---------------------------------------------------------------------------------------------------------------------

describe("budgets and quotas under pollution", () => {
  const reporter = Process.make("reporter", () =>
    Effect.gen(function* () {
      const [parent] = yield* Sys.caps()
      const budget = yield* Sys.budget()
      yield* Sys.send(parent!, {
        tokens: budget.limits.tokens,
        children: budget.limits.children,
        mem: budget.limits.mem,
        mailbox: budget.limits.mailbox,
        wallEndsAt: budget.wallEndsAt,
        usd: budget.limits.usd,
        toolCalls: budget.limits.toolCalls
      })
    })
  )

  /** Spawned with a small quota, it pollutes Object.prototype with quota-named getters and spawns a child. */
  const lifter = Process.make("lifter", () =>
    Effect.gen(function* () {
      const [parent] = yield* Sys.caps()
      const own = yield* Sys.budget()
      const lift: Record<string, unknown> = {
        tokens: 1e12,
        toolCalls: 1e12,
        usd: 1e12,
        children: 1e6,
        wall: 1e15,
        mem: 1e15,
        mailbox: 1e6
      }
      const restores = Object.keys(lift).map((key) =>
        pollute(Object.prototype, key, { get: () => lift[key], set() {} })
      )
      let spawned: unknown
      let reports: Array<unknown> = []
      let charge: unknown
      try {
        for (const quota of [{}, { tokens: 1 }, undefined]) {
          const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          const result = yield* attempt(
            Sys.spawn(reporter, quota === undefined ? { caps: [me] } : { caps: [me], quota: quota as never })
          )
          spawned = result
          if (result === "succeeded") reports.push((yield* Sys.recv()).body)
        }
      } finally {
        restores.forEach((restore) => restore())
      }
      // a cost with a polluted negative meter
      const restoreNegative = pollute(Object.prototype, "tokens", { get: () => -1000, set() {} })
      try {
        charge = yield* attempt(Sys.charge({ usd: 0 }))
      } finally {
        restoreNegative()
      }
      const after = yield* Sys.budget()
      yield* Sys.send(parent!, {
        own: {
          tokens: own.limits.tokens,
          children: own.limits.children,
          mailbox: own.limits.mailbox,
          wallEndsAt: own.wallEndsAt,
          mem: own.limits.mem
        },
        reports,
        spawned: show(spawned),
        charge: show(charge),
        usedTokens: after.used.tokens,
        ownedBefore: own.used.tokens
      })
    })
  )

  it.effect("quota-named getters on Object.prototype never lift a child's limits past its parent's", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
        const l = yield* Sys.spawn(lifter, {
          caps: [me],
          quota: { tokens: 10, toolCalls: 3, usd: 1, children: 4, mailbox: 8, mem: 1_000_000, wall: "10 minutes" }
        })
        yield* Sys.waitpid(l.cap)
        const r = (yield* Sys.recv()).body as {
          own: { tokens: number; children: number; mailbox: number; wallEndsAt: number; mem: number }
          reports: Array<{
            tokens: number
            children: number
            mem: number
            mailbox: number
            wallEndsAt: number
            usd: number
            toolCalls: number
          }>
          charge: string
          usedTokens: number
          ownedBefore: number
        }
        for (const report of r.reports) {
          assert.isAtMost(report.tokens, 10, show(report))
          assert.isAtMost(report.toolCalls, 3, show(report))
          assert.isAtMost(report.usd, 1, show(report))
          assert.isAtMost(report.children, 4, show(report))
          assert.isAtMost(report.mailbox, 8, show(report))
          assert.isAtMost(report.mem, 1_000_000, show(report))
          assert.isAtMost(report.wallEndsAt, r.own.wallEndsAt, show(report))
        }
        assert.isAtLeast(r.usedTokens, r.ownedBefore, `a polluted negative meter refunded tokens (${r.charge})`)
      })
    )
  )
})

// ---------------------------------------------------------------------------------------------------------------------

describe("kernel messages, budget and trace under pollution", () => {
  const termWatcher = Process.make("term-watcher", () =>
    Effect.gen(function* () {
      const [parent] = yield* Sys.caps()
      const m = yield* Sys.recv()
      yield* Sys.send(parent!, { tag: (m.body as { _tag?: unknown })._tag, kernel: Process.isKernelMessage(m) })
    })
  )

  // open realm only: a `then` on Object.prototype makes every object a thenable, so the host's own promises
  // (vitest's included) never settle; hardened mode refuses the patch (test/hardened/Hardened.test.ts)
  it.effect.skip(
    "Object.prototype.then, Object.prototype[Symbol.iterator] and index getters do not break Down, Term, budget, trace",
    () =>
      run((_, kernel) =>
        Effect.gen(function* () {
          const restores = [
            pollute(Object.prototype, "then", { value: function (this: unknown) {}, writable: true }),
            pollute(Object.prototype, Symbol.iterator, {
              value: function* () {
                yield "polluted"
              },
              writable: true
            }),
            pollute(Object.prototype, "_tag", { get: () => "Down", set() {} }),
            pollute(Object.prototype, "reason", { get: () => ({ _tag: "Normal" }), set() {} }),
            pollute(Object.prototype, "pid", { get: () => 1, set() {} }),
            pollute(Array.prototype, "0", { get: () => "polluted", set() {} })
          ]
          let facts: Record<string, unknown>
          try {
            const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
            const victim = yield* Sys.spawn(idle)
            yield* Sys.monitor(victim.cap)
            yield* Sys.kill(victim.cap)
            const down = yield* Sys.recv()
            const w = yield* Sys.spawn(termWatcher, { caps: [me] })
            yield* Sys.term(w.cap)
            const term = (yield* Sys.recv()).body as Record<string, unknown>
            const budget = yield* Sys.budget()
            facts = {
              downKernel: Process.isKernelMessage(down),
              downTag: Object.getOwnPropertyDescriptor(down.body, "_tag")?.value,
              downPid: Object.getOwnPropertyDescriptor(down.body, "pid")?.value,
              downReason: Object.getOwnPropertyDescriptor(
                Object.getOwnPropertyDescriptor(down.body, "reason")?.value ?? {},
                "_tag"
              )?.value,
              termTag: Object.getOwnPropertyDescriptor(term, "tag")?.value,
              termKernel: Object.getOwnPropertyDescriptor(term, "kernel")?.value,
              budgetTokens: Object.getOwnPropertyDescriptor(budget.limits, "tokens")?.value,
              victimPid: victim.pid
            }
          } finally {
            restores.reverse().forEach((restore) => restore())
          }
          const trace = yield* kernel.trace()
          assert.deepStrictEqual(facts, {
            downKernel: true,
            downTag: "Down",
            downPid: facts.victimPid,
            downReason: "Killed",
            termTag: "Term",
            termKernel: true,
            budgetTokens: Infinity,
            victimPid: facts.victimPid
          })
          assert.isAbove(trace.length, 0)
        })
      )
  )
})

// ---------------------------------------------------------------------------------------------------------------------

describe("patched array iteration in device calls", () => {
  let calls = 0
  const meter = Device.make({
    name: "meter",
    meters: ["tokens"],
    open: () =>
      Effect.succeed({
        read: (request: unknown) => {
          calls++
          return Effect.succeed({ value: request, cost: { tokens: 5 } })
        }
      })
  })
  const vault = Device.make({
    name: "vault",
    meters: [],
    open: () => Effect.succeed({ read: () => Effect.succeed({ value: { secret: "pw-7f3a9c" } }) })
  })

  const isMeterList = (a: unknown): boolean =>
    Array.isArray(a) &&
    a.length > 0 &&
    a.length <= 3 &&
    a.every((m) => m === "tokens" || m === "toolCalls" || m === "usd")

  it.effect("a patched Array.prototype[Symbol.iterator] does not let a call start with its meter used up", () =>
    runOn(
      (grant) =>
        Effect.gen(function* () {
          calls = 0
          const spender = Process.make("spender", () =>
            Effect.gen(function* () {
              const [parent, device] = yield* Sys.caps()
              const handle = yield* Sys.open(device!)
              yield* Sys.read(handle, 1) // uses up its 5 tokens
              const original = Array.prototype[Symbol.iterator]
              const restore = pollute(Array.prototype, Symbol.iterator, {
                writable: true,
                value: function (this: Array<unknown>) {
                  return isMeterList(this) ? [][Symbol.iterator]() : Reflect.apply(original, this, [])
                }
              })
              try {
                yield* Sys.send(parent!, "about to read")
                yield* Sys.read(handle, 2)
              } finally {
                restore()
              }
            })
          )
          const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          const s = yield* Sys.spawn(spender, { caps: [me, grant.devices.meter!], quota: { tokens: 5 } })
          const reason = yield* Sys.waitpid(s.cap)
          assert.strictEqual(tagOf(reason), "Quota", show(reason))
          assert.strictEqual(calls, 1, "a device call started on a used-up meter")
        }),
      { grant: ["meter"] }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [meter] })))
  )

  // open realm only: readAll runs its calls with Effect.forEach, whose own loops use the realm's array iterator (and
  // every Effect.gen the generator prototype's next), so a patched one sees the exits on their way back; hardened
  // mode refuses the patch (test/hardened/Hardened.test.ts)
  it.effect.skip("a patched array iterator / push never sees another process's readAll results", () =>
    runOn(
      (grant) =>
        Effect.gen(function* () {
          const seen: Array<unknown> = []
          const victim = Process.make("reader", () =>
            Effect.gen(function* () {
              const [device] = yield* Sys.caps()
              const handle = yield* Sys.open(device!)
              yield* Sys.readAll(handle, [1, 2])
            })
          )
          const arrayIterator = Object.getPrototypeOf([][Symbol.iterator]()) as { next: () => IteratorResult<unknown> }
          const next = arrayIterator.next
          const push = Array.prototype.push
          let busy = false
          const restores = [
            pollute(arrayIterator, "next", {
              writable: true,
              value: function (this: unknown) {
                const step = Reflect.apply(next, this, []) as IteratorResult<unknown>
                if (!busy) {
                  busy = true
                  Reflect.defineProperty(seen, seen.length, {
                    value: step.value,
                    enumerable: true,
                    configurable: true,
                    writable: true
                  })
                  busy = false
                }
                return step
              }
            }),
            pollute(Array.prototype, "push", {
              writable: true,
              value: function (this: Array<unknown>, ...args: Array<unknown>) {
                if (!busy) {
                  busy = true
                  for (const a of args)
                    Reflect.defineProperty(seen, seen.length, {
                      value: a,
                      enumerable: true,
                      configurable: true,
                      writable: true
                    })
                  busy = false
                }
                return Reflect.apply(push, this, args)
              }
            })
          ]
          try {
            const r = yield* Sys.spawn(victim, { caps: [grant.devices.vault!] })
            yield* Sys.waitpid(r.cap)
          } finally {
            restores.reverse().forEach((restore) => restore())
          }
          const leaks = (v: unknown, depth = 0): boolean => {
            if (v === "pw-7f3a9c") return true
            if (depth > 4 || typeof v !== "object" || v === null) return false
            try {
              return Reflect.ownKeys(v).some((k) => {
                const d = Reflect.getOwnPropertyDescriptor(v, k)
                return d !== undefined && "value" in d && leaks(d.value, depth + 1)
              })
            } catch {
              return false
            }
          }
          assert.isFalse(
            seen.some((v) => leaks(v)),
            "a patched array built-in saw another process's device results"
          )
        }),
      { grant: ["vault"] }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [vault] })))
  )
})
