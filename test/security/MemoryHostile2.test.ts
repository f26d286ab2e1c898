/**
 * A second hostile pass over the body copy (`bodyOf`: its fast path for plain records, `recordOf`, beside the general
 * walk; `putFresh`/`push`, which assign plainly where no prototype has the key) and over what context memory hands
 * back. `bodyOf` copies every `Sys.send` body, `Sys.remember` body, log field record, tool scope and kernel-device
 * request, so each attack is tried on several of them.
 *
 * - pollution planted DURING the copy, by a getter of the body being copied: setters, getter-only accessors and
 *   read-only values on `Object.prototype` / `Array.prototype` for keys and indexes the copy has not reached yet;
 * - keys that name `Object.prototype`'s own members (`__proto__`, `constructor`, `toString`, …);
 * - proxies whose `getPrototypeOf` answers `Object.prototype` first and something else later;
 * - cycles across the fast path / walk boundary, nesting past the depth bound, huge sparse arrays in a record;
 * - whether the fast path and the walk measure the same body the same (bytes, depth), and whether the length bound
 *   ("each element costs at least 8 bytes") holds for elements that are counted as nothing (`null`, `""`);
 * - a thrown value the kernel cannot describe (it must stay an ArgumentError, never a defect);
 * - frozen-looking bodies given back to the kernel (a segment re-remembered, re-sent; a frozen top over mutable
 *   children; a patched `Object.isFrozen`).
 *
 * Every test asserts the SECURE outcome: a test that fails is an attack that worked. At the time of writing these fail:
 * a thrown value `describe` cannot turn into text (`Object.create(null)`, a throwing `message`/`toString`, a symbol
 * message) is a defect of send/remember/spawn/charge/log/attenuate/write; `null` and `""` elements cost 0 bytes, so
 * an array shared N times carries ~N²/4 slots past the "8 bytes an element" length bound (send, log, remember,
 * kernel-device requests: quadratic work in one syscall); an empty record passes a bound below 8 bytes on the fast
 * path; Effect's Schema (typed pipes, the VFS request decoder) writes the kernel's copy through prototype setters;
 * an accessor on `Object.prototype._tag`/`call` breaks the kernel's ArgumentError.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"
import { KeyValueStore } from "effect/persistence"
import { types } from "node:util"
import { type Capability, Device, Journal, Kernel, Policy, Process, Sys, Tools, Vfs } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import {
  assertArgumentError,
  assertCapabilityError,
  attempt,
  endOf as endOfChild,
  outcome,
  pollute,
  run,
  runOn,
  show,
  tagOf
} from "./harness.ts"

type CapRef = Capability.CapRef

// ---------------------------------------------------------------------------------------------------------------------
// helpers

const SECRET = "pw-51d0e"

const define = Reflect.defineProperty

/** Whether `value` is, or holds within a few levels (own data properties), the secret. */
const holds = (value: unknown, depth = 0): boolean => {
  if (value === SECRET) return true
  if (depth > 4 || typeof value !== "object" || value === null) return false
  try {
    return Reflect.ownKeys(value).some((key) => {
      const d = Reflect.getOwnPropertyDescriptor(value, key)
      return d !== undefined && "value" in d && holds(d.value, depth + 1)
    })
  } catch {
    return false
  }
}

/**
 * Planted pollution, undone by `unplant` (always, in an `Effect.ensuring`). Spy setters record every value written
 * through them (by definition, so a spy on an index never runs itself) and then define it on the object written to,
 * as the write would have without the setter: the realm keeps working, the spy sees every write that reaches a
 * prototype.
 */
const planted: Array<() => void> = []
const seen: Array<unknown> = []
const note = (value: unknown) => {
  define(seen, seen.length, { value, writable: true, enumerable: true, configurable: true })
}
const plantSetter = (target: object, key: string) => {
  planted.push(
    pollute(target, key, {
      get: () => undefined,
      set(this: object, value: unknown) {
        note(value)
        define(this, key, { value, writable: true, enumerable: true, configurable: true })
      }
    })
  )
}
/** A getter-only accessor: a plain assignment of `key` throws (strict) or is lost (sloppy). */
const plantGetterOnly = (target: object, key: string) => {
  planted.push(pollute(target, key, { get: () => "inherited" }))
}
/** A read-only value: a plain assignment of `key` throws (strict) or is lost (sloppy). */
const plantReadOnly = (target: object, key: string) => {
  planted.push(pollute(target, key, { value: "inherited", writable: false }))
}
const unplant = () => {
  while (planted.length > 0) planted.pop()!()
}
/** Runs `effect` with the spies cleared before and every planted patch undone after, whatever happens. */
const planting = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    seen.length = 0
    return Effect.ensuring(effect, Effect.sync(unplant))
  })

/** Applies the patches `patch` makes (each returning its undo) only while `effect` runs; undone whatever happens. */
const patchedDuring = <A, E, R>(patch: () => ReadonlyArray<() => void>, effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const undos = patch()
    return Effect.ensuring(
      effect,
      Effect.sync(() => {
        for (let i = undos.length - 1; i >= 0; i--) undos[i]!()
      })
    )
  })

/** Sends `body` to self and receives it back (the receiver's copy). */
const roundTrip = (body: unknown) =>
  Effect.gen(function* () {
    const me = yield* Sys.selfCap()
    yield* Sys.send(me, body)
    return (yield* Sys.recv()).body
  })

/**
 * What `effect` succeeded with, or (as `attempt` gives it) its typed error, `"interrupted"` or `"died: …"`, wrapped
 * so that a success is never mistaken for a failure.
 */
const settled = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(
    Effect.exit(effect),
    (exit): { readonly ok: true; readonly value: A } | { readonly ok: false; readonly error: unknown } => {
      if (Exit.isSuccess(exit)) return { ok: true, value: exit.value }
      if (Cause.hasInterruptsOnly(exit.cause)) return { ok: false, error: "interrupted" }
      const found = Cause.findError(exit.cause)
      return {
        ok: false,
        error: found._tag === "Success" ? found.success : `died: ${String(Cause.squash(exit.cause))}`
      }
    }
  )

/** The last segment's body in the working set. */
const lastBody = Effect.map(Sys.workingSet(), (segments) => segments[segments.length - 1]!.body)

interface LogEvent {
  readonly _tag: "Log"
  readonly message: string
  readonly fields?: Readonly<Record<string, unknown>>
}
const logFields = (events: ReadonlyArray<{ readonly _tag: string }>, message: string) =>
  events.filter((e): e is LogEvent => e._tag === "Log" && (e as LogEvent).message === message).map((e) => e.fields)

/** Whether a log's fields were replaced by the kernel's marker (`{ dropped: why }`). */
const isDropped = (fields: unknown) =>
  typeof fields === "object" && fields !== null && typeof (fields as { dropped?: unknown }).dropped === "string"

/** Every object reachable from `value` (own data properties), each once. */
const objectsIn = (value: unknown, out: Array<object> = []): Array<object> => {
  if (typeof value !== "object" || value === null || out.includes(value)) return out
  out.push(value)
  for (const key of Reflect.ownKeys(value)) {
    const d = Reflect.getOwnPropertyDescriptor(value, key)
    if (d !== undefined && "value" in d) objectsIn(d.value, out)
  }
  return out
}

/** Array slots in `value`, counted along every path (what a copy of it holds). */
const slots = (value: unknown): number => {
  if (!Array.isArray(value)) {
    if (typeof value !== "object" || value === null) return 0
    let n = 0
    for (const key of Object.keys(value)) n += slots((value as Record<string, unknown>)[key])
    return n
  }
  let n = value.length
  for (let i = 0; i < value.length; i++) n += slots(value[i])
  return n
}

/** An array of `length` holding `fill`, whose index reads are counted in `reads.n`. */
const countedArray = (length: number, fill: unknown, reads: { n: number }) =>
  new Proxy(
    Array.from({ length }, () => fill),
    {
      get(target, key, receiver) {
        if (typeof key === "string" && /^\d+$/.test(key)) reads.n++
        return Reflect.get(target, key, receiver)
      }
    }
  )

const vfsLayer = () => TestKernel.layer({ drivers: [Vfs.driver()] })

/** Runs `body` as root with a VFS handle (a kernel device: its requests are copied by `bodyOf`). */
const withVfs = <A, E>(body: (vfs: CapRef) => Effect.Effect<A, E, Sys.Sys>) =>
  TestKernel.runProcess(
    (grant) =>
      Effect.gen(function* () {
        const vfs = yield* Sys.open(grant.devices.vfs!)
        return yield* body(vfs)
      }),
    { grant: ["vfs"] }
  ).pipe(Effect.provide(vfsLayer()), Effect.provide(KeyValueStore.layerMemory))

const Echo = Tool.make("echo", { parameters: Schema.Struct({ text: Schema.String }), success: Schema.String })

/** Runs `body` as root on a kernel with a tools device (echo) whose calls record their context. */
const withTools = <A, E>(body: (tools: CapRef, contexts: Array<Device.CallContext>) => Effect.Effect<A, E, Sys.Sys>) =>
  Effect.gen(function* () {
    const contexts: Array<Device.CallContext> = []
    const driver = yield* Tools.make(Toolkit.make(Echo), {
      echo: (params, context) => Effect.sync(() => (contexts.push(context), params.text))
    })
    return yield* runOn((grant) => body(grant.devices.tools!, contexts), { grant: ["tools"] }).pipe(
      Effect.provide(TestKernel.layer({ drivers: [driver] }))
    )
  })

/** Runs `body` in a child with a `mem` quota; how it ended. */
const endOf = (body: () => Effect.Effect<unknown, unknown, Sys.Sys>, mem: number) => endOfChild(body, { mem })

const small = () => TestKernel.layer({ limits: { messageBytesMax: 1024 } })

// =====================================================================================================================
// A. pollution planted during the copy, by the body's own getter
// =====================================================================================================================

/**
 * A body whose first getter plants spy setters for keys and indexes the copy reaches later, at the top (the fast
 * path), one level down (the walk), in arrays, and in a record after a nested one.
 */
const plantingBody = () => ({
  get first() {
    plantSetter(Object.prototype, "laterKey")
    plantSetter(Object.prototype, "otherKey")
    plantSetter(Array.prototype, "0")
    plantSetter(Array.prototype, "1")
    return "first"
  },
  laterKey: SECRET,
  nested: { laterKey: SECRET, otherKey: { laterKey: SECRET }, list: [SECRET, SECRET] },
  otherKey: [SECRET],
  tail: SECRET
})

const assertPlantingCopy = (got: unknown, where: string) => {
  const body = got as Record<string, unknown>
  assert.isFalse(
    seen.some((v) => holds(v)),
    `${where}: a setter planted during the copy saw the secret (${show(seen.length)} writes)`
  )
  assert.strictEqual(body.laterKey, SECRET, `${where}: laterKey`)
  assert.isTrue(Object.hasOwn(body, "laterKey"), `${where}: laterKey is own`)
  const nested = body.nested as Record<string, unknown>
  assert.isTrue(Object.hasOwn(nested, "laterKey") && nested.laterKey === SECRET, `${where}: nested.laterKey`)
  assert.deepStrictEqual(nested.otherKey, { laterKey: SECRET }, `${where}: nested.otherKey`)
  assert.deepStrictEqual(nested.list, [SECRET, SECRET], `${where}: nested.list`)
  assert.deepStrictEqual(body.otherKey, [SECRET], `${where}: otherKey`)
}

describe("MemoryHostile2: pollution planted by a getter of the body while it is copied", () => {
  it.effect("send: setters planted on Object.prototype / Array.prototype mid-copy never see the later values", () =>
    run(() =>
      Effect.gen(function* () {
        const got = yield* planting(roundTrip(plantingBody()))
        assertPlantingCopy(got, "send")
      })
    )
  )

  it.effect("send: a getter deep in the walk plants a setter for a key the fast path has not reached yet", () =>
    run(() =>
      Effect.gen(function* () {
        const body = {
          outer: {
            inner: [
              {
                get g() {
                  plantSetter(Object.prototype, "afterWalk")
                  plantSetter(Array.prototype, "2")
                  return 1
                }
              }
            ]
          },
          afterWalk: SECRET,
          list: ["a", "b", SECRET],
          again: { afterWalk: SECRET }
        }
        const got = (yield* planting(roundTrip(body))) as Record<string, unknown>
        assert.isFalse(
          seen.some((v) => holds(v)),
          "a setter planted during the walk saw the secret"
        )
        assert.isTrue(Object.hasOwn(got, "afterWalk") && got.afterWalk === SECRET)
        assert.deepStrictEqual(got.list, ["a", "b", SECRET])
        assert.deepStrictEqual(got.again, { afterWalk: SECRET })
      })
    )
  )

  it.effect("send: a getter-only accessor or a read-only value planted mid-copy neither drops nor refuses a key", () =>
    run(() =>
      Effect.gen(function* () {
        const body = {
          get first() {
            plantGetterOnly(Object.prototype, "accessorKey")
            plantReadOnly(Object.prototype, "readOnlyKey")
            plantGetterOnly(Array.prototype, "0")
            return "first"
          },
          accessorKey: SECRET,
          readOnlyKey: SECRET,
          nested: { accessorKey: SECRET, readOnlyKey: SECRET },
          list: [SECRET]
        }
        const result = yield* planting(
          Effect.gen(function* () {
            const me = yield* Sys.selfCap()
            return yield* attempt(Sys.send(me, body))
          })
        )
        assert.strictEqual(result, "succeeded", `send: ${show(result)}`)
        const got = (yield* Sys.recv()).body as Record<string, unknown>
        assert.isTrue(Object.hasOwn(got, "accessorKey") && got.accessorKey === SECRET, "accessorKey")
        assert.isTrue(Object.hasOwn(got, "readOnlyKey") && got.readOnlyKey === SECRET, "readOnlyKey")
        assert.deepStrictEqual({ ...(got.nested as object) }, { accessorKey: SECRET, readOnlyKey: SECRET })
        assert.isTrue(Object.hasOwn(got.list as object, "0") && (got.list as Array<unknown>)[0] === SECRET, "list[0]")
      })
    )
  )

  it.effect("remember: setters planted mid-copy never see the kept copy's values; the segment holds them own", () =>
    run(() =>
      Effect.gen(function* () {
        yield* planting(Sys.remember(plantingBody()))
        // read with nothing planted: what was kept
        assertPlantingCopy(yield* lastBody, "remember")
        // and read again with the spies back in place: handing out plants nothing either
        yield* planting(
          Effect.gen(function* () {
            plantSetter(Object.prototype, "laterKey")
            plantSetter(Array.prototype, "0")
            const again = yield* lastBody
            assert.strictEqual((again as Record<string, unknown>).laterKey, SECRET)
          })
        )
        assert.isFalse(
          seen.some((v) => holds(v)),
          "handing out ran a planted setter"
        )
      })
    )
  )

  // Object.prototype keys only: the logger Sys.log hands the fields on to (Effect's, then the console) is host code
  // that pushes onto arrays, which the README's trust model leaves open (an index setter there sees its arguments)
  it.effect("log fields: setters planted mid-copy never see the fields; the trace keeps them", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const body = {
          get first() {
            plantSetter(Object.prototype, "laterKey")
            plantSetter(Object.prototype, "otherKey")
            return "first"
          },
          laterKey: SECRET,
          nested: { laterKey: SECRET, otherKey: { laterKey: SECRET }, list: [SECRET, SECRET] },
          otherKey: [SECRET],
          tail: SECRET
        }
        yield* planting(Sys.log("info", "planted", body))
        const [fields] = logFields(yield* kernel.trace(), "planted")
        assert.isFalse(isDropped(fields), `the fields were dropped: ${show(fields)}`)
        assertPlantingCopy(fields, "log")
      })
    )
  )

  it.effect("tool scope: a setter planted mid-copy never sees the scope; the driver gets it whole", () =>
    withTools((tools, contexts) =>
      Effect.gen(function* () {
        const scope = {
          get first() {
            plantSetter(Object.prototype, "globs")
            plantSetter(Array.prototype, "0")
            return 1
          },
          globs: [SECRET]
        }
        const narrowed = yield* planting(Sys.attenuate(tools, { tools: { echo: { scope } } }))
        const handle = yield* Sys.open(narrowed)
        assert.strictEqual(yield* Sys.read(handle, { tool: "echo", input: { text: "hi" } }), "hi")
        assert.isFalse(
          seen.some((v) => holds(v)),
          "a planted setter saw the scope"
        )
        const given = contexts[0]!.scopes![0] as Record<string, unknown>
        assert.isTrue(Object.hasOwn(given, "globs"))
        assert.deepStrictEqual(given.globs, [SECRET])
      })
    )
  )

  // the kernel's copy of the request is safe; what it is handed to next (the VFS's Schema decode of the request, whose
  // output Effect builds by assignment) is where a planted setter reaches it
  it.effect("kernel-device request: a setter planted mid-copy never sees the data; the VFS keeps it", () =>
    withVfs((vfs) =>
      Effect.gen(function* () {
        const request = {
          op: "write",
          path: "/mem/working",
          get early() {
            plantSetter(Object.prototype, "data")
            plantSetter(Object.prototype, "secretField")
            return 1
          },
          data: { secretField: SECRET }
        }
        const result = yield* planting(attempt(Sys.write(vfs, request)))
        assert.isFalse(
          seen.some((v) => holds(v)),
          "a planted setter saw the request's data"
        )
        // refused as not plain data (it has an accessor) or written as given: never through the setter
        if (result === "succeeded") {
          const body = (yield* lastBody) as Record<string, unknown>
          assert.strictEqual(body.secretField, SECRET)
        } else assertArgumentError(result)
      })
    )
  )
})

// A typed pipe's decode (Effect's Schema, building its output by assignment) and the kernel's typed errors
// (`Schema.TaggedError`) are Effect's own combinators: in an open realm a setter or getter planted on `Object.prototype`
// sees what passes through them (README, "Trust model"); hardened mode makes the planting itself fail, which
// test/hardened/Hardened.test.ts attacks.

// =====================================================================================================================
// B. keys that name Object.prototype's own members
// =====================================================================================================================

const specialKeys = [
  "__proto__",
  "constructor",
  "toString",
  "hasOwnProperty",
  "valueOf",
  "isPrototypeOf",
  "propertyIsEnumerable",
  "toLocaleString",
  "__defineGetter__",
  "__defineSetter__",
  "__lookupGetter__",
  "__lookupSetter__"
]

/** A record with every special key as an own data property (JSON.parse makes `__proto__` an own key). */
const specialRecord = (): Record<string, unknown> =>
  JSON.parse(
    JSON.stringify(Object.fromEntries(specialKeys.map((k, i) => [k, i % 2 === 0 ? { polluted: SECRET } : SECRET])))
  ) as Record<string, unknown>

const assertSpecialCopy = (got: unknown, where: string) => {
  assert.strictEqual(Object.getPrototypeOf(got), Object.prototype, `${where}: the copy's prototype was changed`)
  assert.deepStrictEqual(Object.keys(got as object), specialKeys, `${where}: keys`)
  for (let i = 0; i < specialKeys.length; i++) {
    const d = Object.getOwnPropertyDescriptor(got, specialKeys[i]!)
    assert.isTrue(d !== undefined && "value" in d, `${where}: ${specialKeys[i]} is not an own data property`)
    assert.deepStrictEqual(d!.value, i % 2 === 0 ? { polluted: SECRET } : SECRET, `${where}: ${specialKeys[i]}`)
  }
  assert.isUndefined(({} as Record<string, unknown>).polluted, `${where}: Object.prototype was polluted`)
  assert.strictEqual(typeof Object.prototype.hasOwnProperty, "function", `${where}: Object.prototype was changed`)
}

describe("MemoryHostile2: keys named __proto__, constructor, toString, hasOwnProperty, …", () => {
  it.effect("send: own special keys arrive as own data properties, at the top, nested, in arrays, null-prototype", () =>
    run(() =>
      Effect.gen(function* () {
        assertSpecialCopy(yield* roundTrip(specialRecord()), "top")
        const nested = (yield* roundTrip({ a: specialRecord(), list: [specialRecord()] })) as {
          readonly a: unknown
          readonly list: ReadonlyArray<unknown>
        }
        assertSpecialCopy(nested.a, "nested")
        assertSpecialCopy(nested.list[0], "in an array")
        const bare = Object.assign(Object.create(null) as object, { x: 1 })
        define(bare, "__proto__", { value: SECRET, writable: true, enumerable: true, configurable: true })
        const got = (yield* roundTrip({ bare })) as { readonly bare: object }
        assert.strictEqual(Object.getPrototypeOf(got.bare), null)
        assert.strictEqual(Object.getOwnPropertyDescriptor(got.bare, "__proto__")?.value, SECRET)
      })
    )
  )

  it.effect("remember: own special keys are kept as own data, the kept copy's prototype is Object.prototype", () =>
    run(() =>
      Effect.gen(function* () {
        yield* Sys.remember(specialRecord())
        assertSpecialCopy(yield* lastBody, "remember")
        yield* Sys.remember([{ nested: specialRecord() }])
        assertSpecialCopy(((yield* lastBody) as ReadonlyArray<{ readonly nested: unknown }>)[0]!.nested, "remember[]")
      })
    )
  )

  it.effect("log fields: own special keys are kept as own data", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        yield* Sys.log("info", "special", specialRecord())
        const [fields] = logFields(yield* kernel.trace(), "special")
        assertSpecialCopy(fields, "log")
      })
    )
  )

  it.effect("tools: a request naming constructor/toString/__proto__, or a tool only inherited, is out of scope", () =>
    withTools((tools, contexts) =>
      Effect.gen(function* () {
        const handle = yield* Sys.open(yield* Sys.attenuate(tools, { tools: { echo: {} } }))
        for (const tool of ["constructor", "toString", "hasOwnProperty", "__proto__", "valueOf"]) {
          assertCapabilityError(yield* outcome(Sys.read(handle, { tool, input: { text: "x" } })), "out-of-scope")
        }
        // `tool` only through a prototype: an own `__proto__` key, an object over { tool }, Object.prototype.tool
        const viaProtoKey = JSON.parse('{"__proto__":{"tool":"echo"},"input":{"text":"x"}}') as unknown
        const r1 = yield* outcome(Sys.read(handle, viaProtoKey))
        if (tagOf(r1) !== "ArgumentError") assertCapabilityError(r1, "out-of-scope")
        const r2 = yield* outcome(Sys.read(handle, Object.assign(Object.create({ tool: "echo" }), { input: {} })))
        if (tagOf(r2) !== "ArgumentError") assertCapabilityError(r2, "out-of-scope")
        const r3 = yield* patchedDuring(
          () => [pollute(Object.prototype, "tool", { get: () => "echo", set() {} })],
          outcome(Sys.read(handle, { input: { text: "x" } }))
        )
        if (tagOf(r3) !== "ArgumentError") assertCapabilityError(r3, "out-of-scope")
        assert.strictEqual(contexts.length, 0, "a tool ran for a request that named none")
      })
    )
  )
})

// =====================================================================================================================
// C. proxies whose prototype answer changes
// =====================================================================================================================

/** A proxy over `target` whose getPrototypeOf answers Object.prototype first and `later` after. */
const shifty = (target: object, later: object | null) => {
  let calls = 0
  return new Proxy(target, {
    getPrototypeOf: () => (calls++ === 0 ? Object.prototype : later)
  })
}

describe("MemoryHostile2: a getPrototypeOf that answers Object.prototype first, something else later", () => {
  it.effect("send and remember: what arrives is a plain object of Object.prototype, never the proxy", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const laters: ReadonlyArray<object | null> = [
          Map.prototype,
          Array.prototype,
          Date.prototype,
          Uint8Array.prototype,
          Object.getPrototypeOf(me) as object,
          Object.create(null) as object,
          null
        ]
        for (const later of laters) {
          for (const wrap of [(p: object) => p, (p: object) => ({ inner: p }), (p: object) => [p]]) {
            const label = `${String((later as { constructor?: { name?: string } } | null)?.constructor?.name)} ${wrap.toString().slice(0, 30)}`
            const sent = yield* settled(roundTrip(wrap(shifty({ a: SECRET, n: 1 }, later))))
            if (!sent.ok) assertArgumentError(sent.error, "send")
            else {
              for (const o of objectsIn(sent.value)) {
                assert.isFalse(types.isProxy(o), `send ${label}: the receiver got a proxy`)
                const proto = Object.getPrototypeOf(o)
                assert.isTrue(
                  proto === Object.prototype || proto === Array.prototype,
                  `send ${label}: the receiver got an object of another prototype`
                )
              }
            }
            const kept = yield* attempt(Sys.remember(wrap(shifty({ a: SECRET, n: 1 }, later))))
            if (kept === "succeeded") {
              const body = yield* lastBody
              for (const o of objectsIn(body)) {
                assert.isFalse(types.isProxy(o), `remember ${label}: the segment is a proxy`)
                assert.isTrue(Object.isFrozen(o), `remember ${label}: a plain segment is not frozen whole`)
              }
            } else assertArgumentError(kept, "remember")
          }
        }
      })
    )
  )

  it.effect("a proxy over an array answering Object.prototype: a plain copy or an ArgumentError, never a defect", () =>
    run(() =>
      Effect.gen(function* () {
        for (const body of [
          shifty([SECRET, 1], Array.prototype),
          { a: shifty([SECRET, 1], Array.prototype) },
          shifty(new Map([[1, SECRET]]), Map.prototype)
        ]) {
          const got = yield* settled(roundTrip(body))
          if (!got.ok) {
            assertArgumentError(got.error, "send")
            continue
          }
          for (const o of objectsIn(got.value)) assert.isFalse(types.isProxy(o), "the receiver got a proxy")
        }
      })
    )
  )
})

// =====================================================================================================================
// D. cycles across the fast path / walk boundary
// =====================================================================================================================

/** Bodies that contain themselves: at depth 1, deep, through arrays, null-prototype objects, Maps, getters. */
const cyclic = (): ReadonlyArray<readonly [string, unknown]> => {
  const self: Record<string, unknown> = { x: 1 }
  self.self = self
  const viaRecord: Record<string, unknown> = { x: 1 }
  viaRecord.a = { b: viaRecord }
  const viaArray: Record<string, unknown> = { x: 1 }
  viaArray.list = ["a", viaArray]
  const viaBare: Record<string, unknown> = { x: 1 }
  const bare = Object.create(null) as Record<string, unknown>
  bare.back = viaBare
  viaBare.bare = bare
  const deep: Record<string, unknown> = { x: 1 }
  let at = deep
  for (let i = 0; i < 40; i++) at = at[`k${i}`] = { i }
  at.back = deep
  const viaMap: Record<string, unknown> = { x: 1 }
  viaMap.m = new Map([["k", viaMap]])
  const viaGetter: Record<string, unknown> = {
    get lazy() {
      return viaGetter
    }
  }
  const viaFreshWrapper: Record<string, unknown> = {
    get lazy() {
      return { back: viaFreshWrapper }
    }
  }
  class Node {
    back: unknown = undefined
  }
  const viaInstance: Record<string, unknown> = { x: 1 }
  const node = new Node()
  node.back = viaInstance
  viaInstance.node = node
  return [
    ["self at depth 1", self],
    ["through a record", viaRecord],
    ["through an array", viaArray],
    ["through a null-prototype object", viaBare],
    ["40 levels deep", deep],
    ["through a Map", viaMap],
    ["a getter answering the record", viaGetter],
    ["a getter answering a fresh wrapper", viaFreshWrapper],
    ["through a class instance", viaInstance]
  ]
}

describe("MemoryHostile2: a record that contains itself", () => {
  it.effect("send and remember: every cycle is an ArgumentError, not a defect and not a copy", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        for (const [label, body] of cyclic()) {
          const sent = yield* attempt(Sys.send(me, body))
          assert.strictEqual(tagOf(sent), "ArgumentError", `send ${label}: ${show(sent)}`)
          const kept = yield* attempt(Sys.remember(body))
          assert.strictEqual(tagOf(kept), "ArgumentError", `remember ${label}: ${show(kept)}`)
        }
        assert.strictEqual((yield* Sys.workingSet()).length, 0, "a cyclic body was kept")
      })
    )
  )

  it.effect("log fields, tool scopes and kernel-device requests: a cycle is refused (dropped marker / error)", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        for (const [label, body] of cyclic()) {
          const logged = yield* attempt(Sys.log("info", `cycle ${label}`, body as Record<string, unknown>))
          assert.strictEqual(logged, "succeeded", `log ${label}: ${show(logged)}`)
          const [fields] = logFields(yield* kernel.trace(), `cycle ${label}`)
          assert.isTrue(isDropped(fields), `log ${label}: ${show(fields)}`)
        }
      })
    ).pipe(
      Effect.andThen(
        withTools((tools) =>
          Effect.gen(function* () {
            for (const [label, scope] of cyclic()) {
              const r = yield* attempt(Sys.attenuate(tools, { tools: { echo: { scope } } }))
              assert.strictEqual(tagOf(r), "ArgumentError", `scope ${label}: ${show(r)}`)
            }
          })
        )
      ),
      Effect.andThen(
        withVfs((vfs) =>
          Effect.gen(function* () {
            for (const [label, data] of cyclic()) {
              const r = yield* attempt(Sys.write(vfs, { op: "write", path: "/mem/working", data }))
              assert.strictEqual(tagOf(r), "ArgumentError", `vfs ${label}: ${show(r)}`)
            }
          })
        )
      )
    )
  )
})

// =====================================================================================================================
// E. depth
// =====================================================================================================================

const nestRecord = (depth: number): unknown => {
  let v: unknown = "leaf"
  for (let i = 0; i < depth; i++) v = { a: v }
  return v
}
const nestBare = (depth: number): unknown => {
  let v: unknown = "leaf"
  for (let i = 0; i < depth; i++) v = Object.assign(Object.create(null) as object, { a: v })
  return v
}
const nestArray = (depth: number): unknown => {
  let v: unknown = "leaf"
  for (let i = 0; i < depth; i++) v = [v]
  return v
}
/** A record over arrays: the fast path at the top, the walk below. */
const nestMixed = (depth: number): unknown => ({ a: nestArray(depth - 1) })

/** The deepest of `depths` that `accepts` takes (scanning up; the first refusal stops). */
const deepestAccepted = (
  depths: ReadonlyArray<number>,
  accepts: (depth: number) => Effect.Effect<boolean, never, Sys.Sys>
) =>
  Effect.gen(function* () {
    let deepest = 0
    for (const d of depths) {
      if (!(yield* accepts(d))) break
      deepest = d
    }
    return deepest
  })

describe("MemoryHostile2: nesting past the depth bound", () => {
  it.effect("send and remember: the fast path takes no more (and no fewer) levels than the walk", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const depths = Array.from({ length: 12 }, (_, i) => 58 + i)
        const shapes = { record: nestRecord, bare: nestBare, array: nestArray, mixed: nestMixed }
        const sent: Record<string, number> = {}
        const kept: Record<string, number> = {}
        for (const [name, make] of Object.entries(shapes)) {
          sent[name] = yield* deepestAccepted(depths, (d) =>
            Effect.gen(function* () {
              const r = yield* attempt(Sys.send(me, make(d)))
              if (r === "succeeded") yield* Sys.recv()
              else assert.strictEqual(tagOf(r), "ArgumentError", `send ${name} ${d}: ${show(r)}`)
              return r === "succeeded"
            })
          )
          kept[name] = yield* deepestAccepted(depths, (d) =>
            Effect.gen(function* () {
              const r = yield* attempt(Sys.remember(make(d)))
              if (r !== "succeeded") assert.strictEqual(tagOf(r), "ArgumentError", `remember ${name} ${d}: ${show(r)}`)
              return r === "succeeded"
            })
          )
        }
        assert.deepStrictEqual(
          new Set(Object.values(sent)).size,
          1,
          `send: the deepest body taken differs by shape ${show(sent)}`
        )
        assert.deepStrictEqual(
          new Set(Object.values(kept)).size,
          1,
          `remember: the deepest body taken differs by shape ${show(kept)}`
        )
        assert.isAtMost(sent.record!, 64, "send takes bodies nested deeper than 64")
        assert.isAtMost(kept.record!, 64, "remember takes bodies nested deeper than 64")
      })
    )
  )

  it.effect("log fields (depth 16): the fast path takes no more levels than the walk", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const taken: Record<string, number> = {}
        for (const [name, make] of Object.entries({ record: nestRecord, mixed: nestMixed })) {
          taken[name] = yield* deepestAccepted(
            Array.from({ length: 8 }, (_, i) => 12 + i),
            (d) =>
              Effect.gen(function* () {
                yield* Sys.log("info", `depth ${name} ${d}`, make(d) as Record<string, unknown>)
                const [fields] = logFields(yield* kernel.trace(), `depth ${name} ${d}`)
                return !isDropped(fields)
              })
          )
        }
        assert.strictEqual(taken.record, taken.mixed, `log: ${show(taken)}`)
        assert.isAtMost(taken.record!, 16, "log fields nested deeper than 16 were kept")
      })
    )
  )

  it.effect("a getter that answers a fresh level on every read is refused at the bound, not a stack overflow", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const level = (): object => ({
          get a() {
            return level()
          }
        })
        const arrayLevel = (): object => [
          level(),
          {
            get b() {
              return arrayLevel()
            }
          }
        ]
        for (const body of [level(), { x: level() }, arrayLevel()]) {
          assertArgumentError(yield* outcome(Sys.send(me, body)), "send")
          assertArgumentError(yield* outcome(Sys.remember(body)), "remember")
        }
      })
    )
  )
})

// =====================================================================================================================
// F. sizes: sparse arrays in records, the fast path's bytes against the walk's, elements counted as nothing
// =====================================================================================================================

describe("MemoryHostile2: bytes and lengths", () => {
  it.effect("a sparse array of length 2^32-1 inside a record is refused from its length (send, log, scope, vfs)", () =>
    runOn((_, kernel) =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const sparse = () => new Array(2 ** 32 - 1)
        const started = Date.now()
        for (const body of [{ a: sparse() }, { a: { b: sparse() } }, { a: [1, sparse()] }, { a: "x", b: sparse() }]) {
          assertArgumentError(yield* outcome(Sys.send(me, body)), "send")
          yield* Sys.log("info", "sparse", body)
        }
        for (const fields of logFields(yield* kernel.trace(), "sparse")) {
          assert.isTrue(isDropped(fields), `log fields kept: ${show(fields).slice(0, 80)}`)
        }
        assert.isBelow(Date.now() - started, 2000, "the sparse arrays were walked element by element")
      })
    ).pipe(
      Effect.provide(small()),
      Effect.andThen(
        endOf(() => Sys.remember({ a: { b: new Array(2 ** 32 - 1) } }, { pin: true }), 100).pipe(
          Effect.map((reason) =>
            assert.include(["Quota", "Fault"], tagOf(reason), `remember of a sparse array: ${show(reason)}`)
          )
        )
      ),
      Effect.andThen(
        withTools((tools) =>
          Effect.gen(function* () {
            const r = yield* attempt(
              Sys.attenuate(tools, { tools: { echo: { scope: { a: new Array(2 ** 32 - 1) } } } })
            )
            assertArgumentError(r, "attenuate")
          })
        )
      ),
      Effect.andThen(
        withVfs((vfs) =>
          Effect.gen(function* () {
            const r = yield* attempt(
              Sys.write(vfs, { op: "write", path: "/mem/working", data: { a: new Array(2 ** 32 - 1) } })
            )
            assert.notStrictEqual(r, "succeeded", "a VFS write of a 2^32-1 sparse array was kept")
            assert.isFalse(typeof r === "string" && r.startsWith("died"), show(r))
          })
        )
      )
    )
  )

  it.effect("the fast path and the walk put messageBytesMax at the same size for the same record", () =>
    runOn(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const largest = (make: (n: number) => unknown) =>
          Effect.gen(function* () {
            let largest = -1
            for (let n = 480; n <= 520; n++) {
              const r = yield* attempt(Sys.send(me, make(n)))
              if (r === "succeeded") {
                yield* Sys.recv()
                largest = n
              } else assertArgumentError(r, "send")
            }
            return largest
          })
        const x = (n: number) => "x".repeat(n)
        const bare = (record: object) => Object.assign(Object.create(null) as object, record)
        const sizes = {
          record: yield* largest((n) => ({ a: x(n) })),
          bare: yield* largest((n) => bare({ a: x(n) })),
          array: yield* largest((n) => [x(n)]),
          nestedRecord: yield* largest((n) => ({ a: { b: x(n) } })),
          nestedBare: yield* largest((n) => bare({ a: bare({ b: x(n) }) })),
          recordOfNumbers: yield* largest((n) => ({ a: x(n), b: 1, c: true, d: undefined })),
          bareOfNumbers: yield* largest((n) => bare({ a: x(n), b: 1, c: true, d: undefined }))
        }
        assert.strictEqual(sizes.record, sizes.bare, `fast path vs walk: ${show(sizes)}`)
        assert.strictEqual(sizes.nestedRecord, sizes.nestedBare, `fast path vs walk, nested: ${show(sizes)}`)
        assert.strictEqual(sizes.recordOfNumbers, sizes.bareOfNumbers, `with numbers: ${show(sizes)}`)
        // the record's key "a" is two bytes; the array's one slot is eight: three characters of the string
        assert.strictEqual(sizes.record - sizes.array, 3, `record vs array: ${show(sizes)}`)
      })
    ).pipe(Effect.provide(small()))
  )

  it.effect("under messageBytesMax 7 an empty record is refused like an empty array (its 8 bytes are counted)", () =>
    runOn(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const outcomes = {
          array: tagOf(yield* outcome(Sys.send(me, []))),
          bare: tagOf(yield* outcome(Sys.send(me, Object.create(null)))),
          record: tagOf(yield* outcome(Sys.send(me, {})))
        }
        assert.deepStrictEqual(
          outcomes,
          { array: "ArgumentError", bare: "ArgumentError", record: "ArgumentError" },
          `the fast path takes an empty record past the bound: ${show(outcomes)}`
        )
      })
    ).pipe(Effect.provide(TestKernel.layer({ limits: { messageBytesMax: 7 } })))
  )

  it.effect('send: arrays of null or "" (counted as 0 bytes) do not carry more slots than messageBytesMax / 8', () =>
    runOn(() =>
      Effect.gen(function* () {
        // one 60-slot array shared 60 times: 3660 slots in the copy, under a bound that allows 128
        const bodies: ReadonlyArray<readonly [string, () => unknown]> = [
          ["nulls", () => Array(60).fill(Array(60).fill(null))],
          ["empty strings", () => Array(60).fill(Array(60).fill(""))],
          ["nulls in a record", () => ({ a: Array(60).fill(Array(60).fill(null)) })],
          [
            "a record of shared arrays",
            () => Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`k${i}`, Array(50).fill(null)]))
          ]
        ]
        const found: Array<string> = []
        for (const [label, make] of bodies) {
          const r = yield* settled(roundTrip(make()))
          if (!r.ok) {
            assertArgumentError(r.error, "send")
            continue
          }
          const n = slots(r.value)
          if (n * 8 > 1024) found.push(`${label}: ${n} slots (${n * 8} bytes) delivered under messageBytesMax 1024`)
        }
        assert.deepStrictEqual(found, [])
      })
    ).pipe(Effect.provide(small()))
  )

  it.effect("the copy's reads are bounded too: null elements do not let it read past bytesMax / 8 (send, log)", () =>
    runOn(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const found: Array<string> = []
        {
          const reads = { n: 0 }
          const inner = countedArray(60, null, reads)
          yield* attempt(Sys.send(me, { a: Array(60).fill(inner) }))
          if (reads.n > 1024 / 8) found.push(`send: ${reads.n} element reads under messageBytesMax 1024`)
        }
        {
          const reads = { n: 0 }
          const inner = countedArray(200, null, reads)
          yield* Sys.log("info", "reads", { a: Array(200).fill(inner) })
          if (reads.n > 4096 / 8) found.push(`log: ${reads.n} element reads under logFieldsBytesMax 4096`)
        }
        assert.deepStrictEqual(found, [])
      })
    ).pipe(Effect.provide(small()))
  )

  it.effect("remember: null elements do not let the copy read past the mem quota's bytes / 8", () =>
    Effect.gen(function* () {
      const reads = { n: 0 }
      const inner = countedArray(45, null, reads)
      const reason = yield* endOf(() => Sys.remember({ a: Array(45).fill(inner) }), 100)
      // mem 100 is 800 bytes: at most 100 elements of 8 bytes may be read before the copy stops
      assert.isAtMost(reads.n, 100, `remember under mem 100 read ${reads.n} elements (ended ${show(reason)})`)
    })
  )
})

// =====================================================================================================================
// G. a thrown value the kernel cannot describe
// =====================================================================================================================

const undescribable = (): ReadonlyArray<readonly [string, () => unknown]> => [
  ["Object.create(null)", () => Object.create(null)],
  [
    "an object whose toString throws",
    () => ({
      toString: () => {
        throw new Error("no")
      }
    })
  ],
  [
    "an Error whose message getter throws",
    () => {
      const e = new Error("x")
      define(e, "message", {
        get: () => {
          throw new Error("no")
        }
      })
      return e
    }
  ],
  [
    "an Error whose message is a symbol",
    () => {
      const e = new Error("x")
      define(e, "message", { value: Symbol("m") })
      return e
    }
  ],
  [
    "a proxy whose getPrototypeOf throws",
    () =>
      new Proxy(
        {},
        {
          getPrototypeOf: () => {
            throw new Error("no")
          }
        }
      )
  ]
]

const throwing = (value: () => unknown) => ({
  a: 1,
  get boom(): unknown {
    throw value()
  }
})

/** Options whose field `key` throws `value()` when read. */
const throwingAt = (key: string, value: () => unknown) => {
  const options = {}
  define(options, key, {
    enumerable: true,
    get() {
      throw value()
    }
  })
  return options
}

describe("MemoryHostile2: a getter throwing a value that cannot be described", () => {
  it.effect("send, remember, spawn, charge: an ArgumentError, never a defect", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const found: Array<string> = []
        for (const [label, value] of undescribable()) {
          const calls: ReadonlyArray<readonly [string, Effect.Effect<unknown, unknown, Sys.Sys>]> = [
            ["send", Sys.send(me, throwing(value))],
            ["send", Sys.send(me, [throwing(value)])],
            ["remember", Sys.remember(throwing(value))],
            ["remember", Sys.remember("x", throwingAt("tokens", value) as never)],
            [
              "spawn",
              Sys.spawn(
                Process.make("p", () => Effect.void),
                throwingAt("quota", value) as never
              )
            ],
            ["charge", Sys.charge(throwingAt("tokens", value) as never)]
          ]
          for (const [call, effect] of calls) {
            const r = yield* attempt(effect)
            if (tagOf(r) !== "ArgumentError") found.push(`${call} with ${label}: ${show(r)}`)
          }
        }
        assert.deepStrictEqual(found, [])
      })
    )
  )

  it.effect("log: the call succeeds (the fields become a marker), never a defect", () =>
    run(() =>
      Effect.gen(function* () {
        const found: Array<string> = []
        for (const [label, value] of undescribable()) {
          const r = yield* attempt(Sys.log("info", "throws", throwing(value) as Record<string, unknown>))
          if (r !== "succeeded") found.push(`log with ${label}: ${show(r)}`)
        }
        assert.deepStrictEqual(found, [])
      })
    )
  )

  it.effect("tool scope: an ArgumentError of attenuate, never a defect", () =>
    withTools((tools) =>
      Effect.gen(function* () {
        const found: Array<string> = []
        for (const [label, value] of undescribable()) {
          const r = yield* attempt(Sys.attenuate(tools, { tools: { echo: { scope: throwing(value) } } }))
          if (tagOf(r) !== "ArgumentError") found.push(`attenuate with ${label}: ${show(r)}`)
        }
        assert.deepStrictEqual(found, [])
      })
    )
  )

  it.effect("kernel-device request: an ArgumentError of write, never a defect", () =>
    withVfs((vfs) =>
      Effect.gen(function* () {
        const found: Array<string> = []
        for (const [label, value] of undescribable()) {
          const r = yield* attempt(Sys.write(vfs, { op: "write", path: "/mem/working", data: throwing(value) }))
          if (tagOf(r) !== "ArgumentError") found.push(`vfs write with ${label}: ${show(r)}`)
        }
        assert.deepStrictEqual(found, [])
      })
    )
  )
})

// =====================================================================================================================
// H. frozen-looking bodies given back to the kernel
// =====================================================================================================================

const deepFrozen = (value: unknown): boolean => objectsIn(value).every((o) => Object.isFrozen(o))

describe("MemoryHostile2: frozen-looking bodies given back", () => {
  it.effect("a segment body re-remembered inside a frozen record beside a mutable array is copied again", () =>
    run(() =>
      Effect.gen(function* () {
        yield* Sys.remember({ list: [1, 2], text: "first" })
        const segment = yield* lastBody
        assert.isTrue(deepFrozen(segment), "a plain segment is handed out frozen whole")
        const mutable: Array<unknown> = ["a"]
        const given = Object.freeze({ segment, mutable })
        yield* Sys.remember(given)
        mutable.push(SECRET, "x".repeat(10_000))
        const kept = (yield* lastBody) as { readonly segment: unknown; readonly mutable: ReadonlyArray<unknown> }
        assert.notStrictEqual(kept, given, "the kernel kept the process's frozen object")
        assert.deepStrictEqual(kept.mutable, ["a"], "the kept segment grew with the process's array")
        assert.isTrue(deepFrozen(kept), "a segment with a mutable child is handed out as it is")
        // the segment itself remembered again is kept as a copy, frozen whole
        yield* Sys.remember(segment)
        const again = yield* lastBody
        assert.notStrictEqual(again, segment, "a handed-out segment was kept as the same object")
        assert.deepStrictEqual(again, { list: [1, 2], text: "first" })
        assert.isTrue(deepFrozen(again))
      })
    )
  )

  it.effect("frozen tops over mutable children (arrays, records, a Date, a Map) are kept as copies", () =>
    run(() =>
      Effect.gen(function* () {
        const inner = [1]
        const record = { n: 1 }
        const date = new Date(0)
        const map = new Map([["k", "v"]])
        yield* Sys.remember(Object.freeze([Object.freeze({ inner, record }), Object.freeze({ date, map })]))
        inner.push(2)
        record.n = 2
        date.setTime(1000)
        map.set("grown", "x".repeat(10_000))
        const first = (yield* lastBody) as ReadonlyArray<Record<string, unknown>>
        assert.deepStrictEqual(first[0], { inner: [1], record: { n: 1 } })
        assert.strictEqual((first[1]!.date as Date).getTime(), 0)
        assert.deepStrictEqual([...(first[1]!.map as Map<string, string>)], [["k", "v"]])
        // what was handed out is the process's to change: a Date or a Map in it is a fresh copy each time
        try {
          ;(first[1]!.date as Date).setTime(5000)
          ;(first[1]!.map as Map<string, string>).set("grown", "y".repeat(10_000))
        } catch {
          // frozen: fine too
        }
        const second = (yield* lastBody) as ReadonlyArray<Record<string, unknown>>
        assert.strictEqual((second[1]!.date as Date).getTime(), 0, "a handed-out Date changed the kept one")
        assert.deepStrictEqual([...(second[1]!.map as Map<string, string>)], [["k", "v"]])
      })
    )
  )

  it.effect("a segment body sent to another process arrives as a copy; the receiver's changes reach nothing kept", () =>
    run(() =>
      Effect.gen(function* () {
        yield* Sys.remember({ list: [1], nested: { text: "kept" } })
        const segment = yield* lastBody
        const got = (yield* roundTrip(segment)) as { list: Array<number>; nested: { text: string } }
        assert.notStrictEqual(got, segment)
        assert.notStrictEqual(got.nested, (segment as { readonly nested: unknown }).nested)
        try {
          got.list.push(2)
          got.nested.text = SECRET
        } catch {
          // a frozen copy: fine too
        }
        assert.deepStrictEqual(yield* lastBody, { list: [1], nested: { text: "kept" } })
      })
    )
  )

  it.effect(
    "Object.isFrozen patched to answer true and Object.freeze to do nothing: the kept body is not handed out",
    () =>
      run(() =>
        Effect.gen(function* () {
          const first = yield* patchedDuring(
            () => [
              pollute(Object, "isFrozen", { value: () => true, writable: true }),
              pollute(Object, "freeze", { value: (o: unknown) => o, writable: true })
            ],
            Effect.andThen(Sys.remember({ list: [1], map: new Map([["k", "v"]]) }), lastBody)
          )
          const body = first as { readonly list: Array<unknown>; readonly map: Map<string, string> }
          try {
            body.list.push(SECRET)
          } catch {
            // frozen, as it should be
          }
          body.map.set("grown", "x".repeat(10_000))
          const second = (yield* lastBody) as {
            readonly list: ReadonlyArray<unknown>
            readonly map: Map<string, string>
          }
          assert.deepStrictEqual(second.list, [1], "the kept list grew")
          assert.deepStrictEqual([...second.map], [["k", "v"]], "the kept Map grew")
        })
      )
  )

  it.effect("a proxy answering differently each read, over a frozen list, is kept as one plain frozen copy", () =>
    run(() =>
      Effect.gen(function* () {
        let reads = 0
        // a frozen target cannot lie (the proxy invariants), so the record is frozen-looking only in its list
        const body = new Proxy(
          { a: "first", list: Object.freeze([1]) },
          {
            get: (target, key) =>
              key === "a" ? (reads++ === 0 ? "first" : "x".repeat(100_000)) : Reflect.get(target, key)
          }
        )
        yield* Sys.remember(body)
        const kept = yield* lastBody
        assert.isFalse(types.isProxy(kept), "the proxy was kept")
        assert.deepStrictEqual(kept, { a: "first", list: [1] })
        assert.isTrue(deepFrozen(kept))
        assert.deepStrictEqual(yield* lastBody, { a: "first", list: [1] })
      })
    )
  )
})

describe("MemoryHostile2: what a process dies with cannot stop its end", () => {
  it.effect("a defect whose message, toJSON and toString all throw still ends the process with a Fault", () =>
    run(() =>
      Effect.gen(function* () {
        const hostile: ReadonlyArray<() => unknown> = [
          () => {
            const error = new Error("x")
            Object.defineProperty(error, "message", {
              get() {
                throw new Error("no message")
              }
            })
            return error
          },
          () =>
            Object.assign(Object.create(null) as object, {
              toJSON() {
                throw new Error("no JSON")
              }
            }),
          () =>
            new Proxy(
              {},
              {
                get() {
                  throw new Error("no reads")
                },
                getPrototypeOf() {
                  throw new Error("no prototype")
                }
              }
            )
        ]
        for (const make of hostile) {
          const { cap } = yield* Sys.spawn(Process.make("dier", () => Effect.die(make())))
          const reason = yield* Sys.waitpid(cap)
          assert.strictEqual(reason._tag, "Fault", show(reason))
          assert.isString((reason as { readonly error: unknown }).error)
        }
      })
    )
  )
})

describe("MemoryHostile2: a journaled request's digest passes through no patched built-in", () => {
  it.effect("includes, push, sort, Object.keys, getPrototypeOf and view getters patched: none sees the request", () =>
    Effect.gen(function* () {
      const reached: Array<unknown> = []
      const seenByDriver: Array<unknown> = []
      // the test's own driver records with the push it had, not the image's patch
      const hostPush = Array.prototype.push
      const side = Device.make({
        name: "side",
        open: () =>
          Effect.succeed({
            read: (request: unknown) =>
              Effect.sync(() => {
                Reflect.apply(hostPush, seenByDriver, [request])
                return { value: "ok" }
              })
          })
      })
      const typedProto = Object.getPrototypeOf(Uint8Array.prototype) as object
      const program = Process.make<Kernel.BootGrant>("init", (grant) =>
        Effect.gen(function* () {
          const handle = yield* Sys.open(grant.devices.side!)
          const request = { sql: "SELECT 1", when: new Date(0), bytes: new Uint8Array([1, 2]), nested: { b: 1, a: 2 } }
          const saved = {
            includes: Array.prototype.includes,
            push: Array.prototype.push,
            sort: Array.prototype.sort,
            keys: Object.keys,
            getPrototypeOf: Object.getPrototypeOf,
            buffer: Object.getOwnPropertyDescriptor(typedProto, "buffer")!
          }
          const note = (value: unknown) => {
            if (typeof value === "object" && value !== null) Reflect.apply(saved.push, reached, [value])
          }
          try {
            Array.prototype.includes = function (this: Array<unknown>, value: unknown) {
              note(value)
              for (const item of this) note(item)
              return Reflect.apply(saved.includes, this, [value]) as boolean
            }
            Array.prototype.push = function (this: Array<unknown>, ...items: Array<unknown>) {
              for (const item of items) note(item)
              return Reflect.apply(saved.push, this, items) as number
            }
            Array.prototype.sort = function (this: Array<unknown>, ...args: Array<never>) {
              return Reflect.apply(saved.sort, this, args) as Array<unknown>
            }
            Object.keys = (o: object) => {
              note(o)
              return saved.keys(o)
            }
            Object.getPrototypeOf = (o: unknown) => {
              note(o)
              return saved.getPrototypeOf(o)
            }
            Object.defineProperty(typedProto, "buffer", {
              configurable: true,
              get(this: Uint8Array) {
                note(this)
                return Reflect.apply(saved.buffer.get!, this, []) as ArrayBufferLike
              }
            })
            yield* Sys.read(handle, request)
          } finally {
            Array.prototype.includes = saved.includes
            Array.prototype.push = saved.push
            Array.prototype.sort = saved.sort
            Object.keys = saved.keys
            Object.getPrototypeOf = saved.getPrototypeOf
            Object.defineProperty(typedProto, "buffer", saved.buffer)
          }
        })
      )
      const reason = yield* Effect.gen(function* () {
        const kernel = yield* Kernel.Kernel
        return yield* kernel.waitExit(yield* kernel.boot(program, { grant: ["side"] }))
      }).pipe(
        Effect.provide(Kernel.layer({ drivers: [side], journal: "record" })),
        Effect.provide(Layer.succeed(Journal.JournalStoreService)(Journal.makeMemoryStore()))
      )
      assert.deepStrictEqual(reason, Process.normal, show(reason))
      assert.strictEqual(seenByDriver.length, 1)
      const kept = seenByDriver[0] as Record<string, unknown>
      const kernelObjects = [kept, kept.when, kept.bytes, kept.nested]
      assert.isFalse(
        reached.some((o) => kernelObjects.includes(o)),
        "a patched built-in was handed the kernel's copy of the request"
      )
    })
  )
})

describe("MemoryHostile2: a request judged by policies cannot change before the driver runs it", () => {
  it.effect("the driver gets the judged copy frozen (plain parts): what the policy allowed is what runs", () =>
    Effect.gen(function* () {
      const got: Array<unknown> = []
      const side = Device.make({
        name: "side",
        open: () =>
          Effect.succeed({
            read: (request: unknown) =>
              Effect.sync(() => {
                got.push(request)
                return { value: "ok" }
              })
          })
      })
      const allow = yield* Policy.make([{ name: "all", decision: "allow" }])
      const original = { sql: "SELECT 1", params: [1, { a: "b" }] }
      const reason = yield* Effect.gen(function* () {
        const kernel = yield* Kernel.Kernel
        const init = Process.make<Kernel.BootGrant>("init", (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.side!)
            yield* Sys.read(handle, original)
          })
        )
        return yield* kernel.waitExit(yield* kernel.boot(init, { grant: ["side"], policies: allow }))
      }).pipe(Effect.provide(Kernel.layer({ drivers: [side] })))
      assert.deepStrictEqual(reason, Process.normal, show(reason))
      const request = got[0] as { sql: string; params: Array<unknown> }
      assert.notStrictEqual(request, original, "the driver gets the kernel's copy")
      for (const part of [request, request.params, request.params[1]]) assert.isTrue(Object.isFrozen(part))
      assert.throws(() => {
        request.sql = "DROP TABLE users"
      })
      assert.strictEqual(request.sql, "SELECT 1")
    })
  )
})
